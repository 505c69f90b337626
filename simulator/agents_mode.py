"""Which decision model LLM agents use in a run: `--agents-mode llm|rule|auto` and the call budget.

`auto` estimates the calls an experiment needs and uses the LLM only within `--llm-budget`
(`resolve_agents`): a bound on the agents' decisions first, and where that exceeds the budget, a
pilot that runs the first steps in rule mode and counts the distinct prompts the LLM agents would
send (`estimate_calls`), since archetype grouping is what makes LLM agents affordable. No server
is asked here; the decision policy itself is `simulator.llm_agents.LLMDecisions`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from simulator.agent_prompts import AgentMemory, agent_texts, llm_positions
from simulator.compile import CompiledRule, CompiledScenario
from simulator.engine import ParamsContext, Simulation, scalar_value, type_counts
from simulator.experiment import Experiment
from societas.errors import ConfigError

AgentsMode = Literal["llm", "rule", "auto"]
AGENTS_MODES: tuple[str, ...] = ("llm", "rule", "auto")
DEFAULT_LLM_BUDGET = 1000  # LLM calls; at ~2.5 calls/s on the embedded model, minutes at most
PILOT_STEPS = 3
PILOT_AGENTS = 10_000  # the pilot's population at most: distinct prompts hardly grow beyond it


class AgentsSetup(BaseModel):
    """How agents decide in a run; small and serialisable, so it travels to every Ray task."""

    model_config = ConfigDict(extra="forbid")

    mode: AgentsMode = "auto"
    budget: int = Field(DEFAULT_LLM_BUDGET, ge=0, description="auto: most LLM calls (distinct prompts) to spend.")
    llm: str | None = Field(None, description="Backend for the agents (a --llm value); None: embedded.")
    model_path: str | None = None
    cache_path: str | None = Field(None, description="SQLite response cache shared by every run.")
    concurrency: int | None = Field(None, ge=1, le=1024, description="Requests in flight per run (default: the backend's).")
    group: bool = Field(True, description="Archetypes: round numbers to the rule's buckets and ask each prompt once.")


class AgentsChoice(BaseModel):
    """Which decision model ran, and why: for the manifest and the report's Limitations."""

    requested: AgentsMode
    used: Literal["llm", "rule"]
    reason: str
    estimated_decisions: int = Field(description="Agent decisions the LLM would make (before grouping and the cache).")
    estimated_calls: int = Field(0, description="Server calls after archetype grouping, from a pilot of the first "
                                                "steps (before the cache, which only lowers it); the decision count "
                                                "when that already fits the budget and no pilot ran.")
    budget: int | None = None
    backend: str | None = None
    model: str | None = Field(None, description="The model the agents' backend served (known once it answered).")
    llm_agent_types: list[str] = Field(default_factory=list)
    grouped: bool = True


def check_agents_mode(mode: str) -> AgentsMode:
    """A `--agents-mode` value, checked: a bad one is a one-line user error."""
    if mode not in AGENTS_MODES:
        raise ConfigError(f"unknown --agents-mode {mode!r}", hint="use llm, rule or auto")
    return mode  # type: ignore[return-value]


def llm_decide_rules(compiled: CompiledScenario) -> list[CompiledRule]:
    """Decide rules that reach at least one agent type with `decision: llm`."""
    llm_types = {i for i, t in enumerate(compiled.types) if t.decision == "llm"}
    out = []
    for r in compiled.rules:
        reach = set(range(len(compiled.types))) if r.types is None else set(r.types)
        if r.kind == "decide" and reach & llm_types:
            out.append(r)
    return out


def resolve_agents(setup: AgentsSetup, experiment: Experiment, compiled: CompiledScenario) -> AgentsChoice:
    """Apply `--agents-mode` and `--llm-budget` to this experiment; no server is touched."""
    llm_types = [t.name for t in compiled.types if t.decision == "llm"]
    rules = llm_decide_rules(compiled)
    estimate = estimate_decisions(experiment, compiled) if rules else 0
    calls = estimate  # never more calls than decisions (the pilot's activation draws vary)
    if rules and setup.mode == "auto" and estimate > setup.budget:  # within budget already: no pilot needed
        calls = min(estimate, estimate_calls(experiment, compiled, group=setup.group))
    backend = setup.llm or "embedded"
    common = {"requested": setup.mode, "estimated_decisions": estimate, "estimated_calls": calls,
              "llm_agent_types": llm_types, "grouped": setup.group,
              "budget": setup.budget if setup.mode == "auto" else None}
    if not rules:
        return AgentsChoice(used="rule", reason="the scenario has no decide rule for agents with `decision: llm`",
                            **common)
    if setup.mode == "rule":
        return AgentsChoice(used="rule", reason="rule mode was requested (--agents-mode rule)", **common)
    if setup.mode == "llm":
        return AgentsChoice(used="llm", backend=backend, reason="LLM mode was requested (--agents-mode llm)", **common)
    if calls <= setup.budget:
        return AgentsChoice(used="llm", backend=backend, reason=(
            f"auto: about {calls:,} LLM calls ({estimate:,} agent decisions, grouped) fit the budget of "
            f"{setup.budget:,}"), **common)
    return AgentsChoice(used="rule", reason=(
        f"auto: about {calls:,} LLM calls ({estimate:,} agent decisions, grouped) exceed the budget of "
        f"{setup.budget:,} (raise --llm-budget, or use fewer agents, steps or seeds); agents used the rules' "
        "fallback"), **common)


# --- the estimates ----------------------------------------------------------------------------

def estimate_decisions(experiment: Experiment, compiled: CompiledScenario) -> int:
    """Upper bound on LLM agent decisions: LLM agents x activation x steps x conditions x seeds.

    Before archetype grouping and the cache (which usually cut the calls by 5x or more), so
    `auto` errs towards the fallback; `when` conditions are ignored for the same reason.
    """
    total = 0.0
    steps = experiment.steps or experiment.scenario.stop.max_steps
    for cond in experiment.conditions:
        params = {**experiment.scenario.parameter_defaults(), **cond.params}
        pctx = ParamsContext(params)
        counts = type_counts(compiled, params, experiment.population)
        for rule in llm_decide_rules(compiled):
            reach = [i for i in (rule.types or range(len(compiled.types))) if compiled.types[i].decision == "llm"]
            activation = _activation_bound(rule, pctx)
            total += sum(counts[i] for i in reach) * activation * steps * len(experiment.seeds)
    return math.ceil(total)


def _activation_bound(rule: CompiledRule, pctx: Any) -> float:
    """The activation probability when it is a constant or a parameter expression, else 1."""
    if rule.activation is None:
        return 1.0
    try:
        return float(min(max(scalar_value(rule.activation, pctx), 0.0), 1.0))
    except (KeyError, AttributeError, TypeError):  # reads agents or env: bound it by 1
        return 1.0


def estimate_calls(experiment: Experiment, compiled: CompiledScenario, *, group: bool = True) -> int:
    """Server calls the LLM agents would make: distinct prompts per step, counted in a pilot.

    The budget is in calls, and archetype grouping is what makes LLM agents affordable, so an
    estimate before grouping would turn them off where they cost little. The pilot runs the
    first condition and seed for a few steps in rule mode, renders every prompt the LLM agents
    would send (no server is asked), and extrapolates the mean calls per step to every step,
    condition and seed; the cache, which answers repeats across seeds, only lowers the real count.
    Above `PILOT_AGENTS` agents the pilot runs that many (a full-size pilot took 24 s at 1M agents,
    and could not run at all beyond one process's size); where nearly every prompt it saw was
    distinct, its count is scaled up to the real population.
    """
    steps = experiment.steps or experiment.scenario.stop.max_steps
    cond, seed = experiment.conditions[0], experiment.seeds[0]
    params = {**experiment.scenario.parameter_defaults(), **cond.params}
    n = sum(type_counts(compiled, params, experiment.population))
    pilot_n = min(n, PILOT_AGENTS)
    counter = PromptCounter(group)
    sim = Simulation(compiled, params, seed, population=pilot_n, max_steps=max(1, min(steps, PILOT_STEPS)),
                     policy=counter)
    with np.errstate(all="ignore"):
        for _ in range(sim.max_steps):
            sim.step()
    per_step = counter.calls / sim.max_steps
    if pilot_n < n and counter.calls >= 0.5 * max(counter.asked, 1):  # mostly distinct: grows with the agents
        per_step *= n / pilot_n
    return math.ceil(per_step * steps * len(experiment.conditions) * len(experiment.seeds))


class PromptCounter:
    """The pilot's decision policy: renders the prompts LLM agents would send and counts the
    distinct ones, asks no server, and leaves every choice to the rules' fallback."""

    def __init__(self, group: bool) -> None:
        self.group = group
        self.calls = 0  # distinct prompts (every prompt when not grouping)
        self.asked = 0  # LLM agents' decisions
        self.memory = AgentMemory()

    def decide(self, sim: Simulation, rule: CompiledRule, rows: np.ndarray,
               local_values: dict[str, Any]) -> np.ndarray | None:
        positions = llm_positions(sim, rows)
        if len(positions):
            self.asked += len(positions)
            personas, observations = agent_texts(sim, rule, rows, local_values, positions,
                                                 rounding=self.group, memory=self.memory)
            self.calls += len(np.unique(personas + "\x00" + observations)) if self.group else len(positions)
        return None  # the rules' fallback drives the pilot

    def chosen(self, sim: Simulation, rule: CompiledRule, rows: np.ndarray, choice: np.ndarray) -> None:
        self.memory.remember(sim, rule, rows, choice)
