"""LLM agents: `decide` rules answered by a language model, grouped, concurrent and logged.

For a step's active agents of types with `decision: llm`, a prompt is built from the type's
persona and the rule's observation (own state, the rule's `let` values such as a neighbor
summary, the environment, the agent's last few choices). Numbers in a prompt are rounded to
the rule's `bucket` (per name: `buckets`), so agents alike write the same prompt: each
distinct prompt goes to the server once (an archetype) and its answer applies to every agent
that wrote it. The distinct prompts of a step go out concurrently, bounded by a limit, round
robin over the backend's endpoints; the response cache answers repeats across steps and seeds
(temperature 0, a fixed sampling seed: an answer is a function of its prompt). An answer
that fails after the client's retries and repairs leaves those agents to the rule's
`fallback` (drawn from the engine's Philox stream), and is counted.

`--agents-mode llm|rule|auto` picks whether LLM agents run; `auto` estimates the calls an
experiment needs (a pilot counts distinct prompts) and uses the LLM only within `--llm-budget`
(`resolve_agents`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

import prompts
from simulator.errors import SpecError
from societas.errors import ConfigError

if TYPE_CHECKING:  # hints only: `compile` imports this module, so run-time imports would be circular
    from llms.client import LLMClient
    from simulator.compile import CompiledRule, CompiledScenario
    from simulator.engine import Simulation
    from simulator.experiment import Experiment

log = logging.getLogger(__name__)

AgentsMode = Literal["llm", "rule", "auto"]
AGENTS_MODES: tuple[str, ...] = ("llm", "rule", "auto")
DEFAULT_LLM_BUDGET = 1000  # LLM calls; at ~2.5 calls/s on the embedded model, minutes at most
MAX_TOKENS = 48  # {"action": ..., "reason": <= 32 chars} is about 25 tokens
REASON_CHARS = 32  # within llms.structured.GRAMMAR_MAX_LENGTH, so llama.cpp's grammar enforces it
SAMPLING_SEED = 0  # with temperature 0, answers depend on the prompt only: the cache serves every seed
PROMPT = "agent_decide"

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?)\}")


# --- configuration and the mode choice -------------------------------------------------------

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


def estimate_decisions(experiment: Experiment, compiled: CompiledScenario) -> int:
    """Upper bound on LLM agent decisions: LLM agents x activation x steps x conditions x seeds.

    Before archetype grouping and the cache (which usually cut the calls by 5x or more), so
    `auto` errs towards the fallback; `when` conditions are ignored for the same reason.
    """
    from simulator.engine import _ParamsCtx, type_counts

    total = 0.0
    steps = experiment.steps or experiment.scenario.stop.max_steps
    for cond in experiment.conditions:
        params = {**experiment.scenario.parameter_defaults(), **cond.params}
        pctx = _ParamsCtx(params)
        counts = type_counts(compiled, params, experiment.population)
        for rule in llm_decide_rules(compiled):
            reach = [i for i in (rule.types or range(len(compiled.types))) if compiled.types[i].decision == "llm"]
            activation = _activation_bound(rule, pctx)
            total += sum(counts[i] for i in reach) * activation * steps * len(experiment.seeds)
    return math.ceil(total)


def _activation_bound(rule: CompiledRule, pctx: Any) -> float:
    """The activation probability when it is a constant or a parameter expression, else 1."""
    from simulator.engine import _scalar

    if rule.activation is None:
        return 1.0
    try:
        return float(min(max(_scalar(rule.activation, pctx), 0.0), 1.0))
    except (KeyError, AttributeError, TypeError):  # reads agents or env: bound it by 1
        return 1.0


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


PILOT_STEPS = 3
PILOT_AGENTS = 10_000  # the pilot's population at most: distinct prompts hardly grow beyond it


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
    from simulator.engine import Simulation, type_counts

    steps = experiment.steps or experiment.scenario.stop.max_steps
    cond, seed = experiment.conditions[0], experiment.seeds[0]
    params = {**experiment.scenario.parameter_defaults(), **cond.params}
    n = sum(type_counts(compiled, params, experiment.population))
    pilot_n = min(n, PILOT_AGENTS)
    counter = _PromptCounter(group)
    sim = Simulation(compiled, params, seed, population=pilot_n, max_steps=max(1, min(steps, PILOT_STEPS)),
                     policy=counter)
    with np.errstate(all="ignore"):
        for _ in range(sim.max_steps):
            sim.step()
    per_step = counter.calls / sim.max_steps
    if pilot_n < n and counter.calls >= 0.5 * max(counter.asked, 1):  # mostly distinct: grows with the agents
        per_step *= n / pilot_n
    return math.ceil(per_step * steps * len(experiment.conditions) * len(experiment.seeds))


# --- templates --------------------------------------------------------------------------------

def placeholders(template: str) -> list[str]:
    """The `{name}` / `{env.x}` / `{params.x}` names in a persona or observation template."""
    return _PLACEHOLDER.findall(template or "")


def check_templates(compiled: CompiledScenario) -> None:
    """Every placeholder of a persona or a decide rule's observation must name something that exists."""
    spec = compiled.spec
    attributes = set(compiled.attributes)
    env = {"step", "n_agents", *spec.environment}
    env |= {iv.target.split(".", 1)[1] for iv in spec.interventions if iv.target.startswith("env.")}
    persona_ok = attributes | {f"env.{e}" for e in env} | {f"params.{p}" for p in spec.parameters}
    for t in spec.agent_types:
        _check_names(t.persona, persona_ok, spec.name, f"agent type {t.name!r}, persona")
    for r in spec.rules:
        if r.kind == "decide":
            _check_names(r.observation, persona_ok | set(r.let), spec.name, f"rule {r.name!r} (decide), observation")


def _check_names(template: str, known: set[str], scenario: str, where: str) -> None:
    for name in placeholders(template):
        if name not in known:
            raise SpecError(f"unknown placeholder {{{name}}}", scenario=scenario, where=where,
                            hint="use an attribute, a `let` name of the rule, {env.NAME} or {params.NAME}")


def _decimals(step: float) -> int:
    """Digits after the point that multiples of `step` need (0.25 -> 2, 0.1 -> 1, 5 -> 0), at most 6."""
    return len(f"{step:.6f}".rstrip("0").partition(".")[2])


def _number_texts(values: np.ndarray, step: float) -> np.ndarray:
    """Numbers as prompt text: rounded to multiples of `step` (0: 4 significant digits)."""
    x = np.asarray(values, dtype=np.float64)
    if step > 0:
        x = np.round(x / step) * step
    uniq, inverse = np.unique(x, return_inverse=True)  # format each distinct value once
    texts = np.array([_fmt(v, step) for v in uniq], dtype=object)
    return texts[inverse.reshape(-1)]


def _fmt(v: float, step: float) -> str:
    if not np.isfinite(v):
        return "unknown"
    text = f"{v:.{_decimals(step)}f}" if step > 0 else f"{v:.4g}"
    if "." in text and "e" not in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


class _Renderer:
    """Fills templates for many agents at once; each placeholder is formatted once per distinct value."""

    def __init__(self, sim: Simulation, rule: CompiledRule, rows: np.ndarray,
                 local_values: dict[str, Any], positions: np.ndarray, rounding: bool) -> None:
        self.sim, self.rule, self.rows, self.pos = sim, rule, rows, positions
        self.local_values = local_values
        self.rounding = rounding
        self._texts: dict[str, np.ndarray] = {}

    def step_for(self, name: str) -> float:
        """The rounding for a placeholder; parameters are the same for everyone, so shown exactly by default."""
        if not self.rounding:
            return 0.0
        spec = self.rule.spec
        return float(spec.buckets.get(name, 0.0 if name.startswith("params.") else spec.bucket))

    def texts(self, name: str) -> np.ndarray:
        """One string per selected agent for this placeholder."""
        if name not in self._texts:
            self._texts[name] = self._compute(name)
        return self._texts[name]

    def _compute(self, name: str) -> np.ndarray:
        size = len(self.pos)
        scope, _, key = name.partition(".")
        if key and scope == "env":
            return np.full(size, _number_texts(np.array([self.sim.env[key]]), self.step_for(name))[0], dtype=object)
        if key and scope == "params":
            return np.full(size, _number_texts(np.array([self.sim.params[key]]), self.step_for(name))[0], dtype=object)
        if name in self.local_values:
            value = self.local_values[name]
            values = np.broadcast_to(np.asarray(value), (len(self.rows),))[self.pos] if np.ndim(value) else \
                np.full(size, float(value))
            return _number_texts(values, self.step_for(name))
        values = self.sim.attrs[name][self.rows[self.pos]]
        labels = self.sim.c.attributes.get(name)
        if labels:
            table = np.array([*labels, "none"], dtype=object)
            return table[np.where(values >= 0, values, len(labels))]
        return _number_texts(values, self.step_for(name))

    def fill(self, template: str) -> np.ndarray:
        """The template for every selected agent (an object array of strings)."""
        parts = _PLACEHOLDER.split(template)  # literal, name, literal, name, ...
        out = np.full(len(self.pos), parts[0], dtype=object)
        for i in range(1, len(parts), 2):
            out = out + self.texts(parts[i]) + parts[i + 1]
        return out


def default_observation(sim: Simulation, rule: CompiledRule, type_index: int) -> str:
    """The observation when a rule gives none: own attributes, the rule's `let` values, the environment."""
    spec = sim.spec
    own = [a for a in spec.agent_types[type_index].attribute_specs() if a != rule.record]
    lines = []
    if own:
        lines.append("Your state: " + "; ".join(f"{a.replace('_', ' ')} {{{a}}}" for a in own) + ".")
    if rule.spec.let:
        lines.append("Around you: " + "; ".join(f"{n.replace('_', ' ')} {{{n}}}" for n in rule.spec.let) + ".")
    if spec.environment:
        lines.append("Everyone: " + "; ".join(f"{e.replace('_', ' ')} {{env.{e}}}" for e in spec.environment) + ".")
    return "\n".join(lines)


# --- the structured answer ---------------------------------------------------------------------

def _cut_reason(value: Any) -> Any:
    """A long reason is cut, not repaired: servers without grammar support may overrun it."""
    return value[:REASON_CHARS] if isinstance(value, str) else value


def decision_schema(rule_name: str, actions: list[str]) -> type[BaseModel]:
    """`{"action": <one of the rule's actions>, "reason": <= 32 chars}`; the enum is what the server enforces."""
    name = "Decision_" + rule_name
    return create_model(
        name,
        action=(Literal[tuple(actions)], Field(description="One of the options.")),
        reason=(str, Field(max_length=REASON_CHARS, description="Why, in a few words.")),
        __validators__={"cut_reason": field_validator("reason", mode="before")(_cut_reason)},
    )


# --- the decision log ------------------------------------------------------------------------

LOG_COLUMNS = ("agent", "step", "rule", "prompt_hash", "action", "reason", "latency_s", "group_size", "outcome")


@dataclass
class DecisionLog:
    """Every LLM decision, one row per agent: what `data/decisions.parquet` holds (with condition, seed)."""

    columns: dict[str, list] = field(default_factory=lambda: {c: [] for c in LOG_COLUMNS})

    def extend(self, **cols: Any) -> None:
        n = len(cols["agent"])
        for c in LOG_COLUMNS:
            v = cols[c]
            self.columns[c].extend(list(v) if isinstance(v, (list, np.ndarray)) else [v] * n)

    def __len__(self) -> int:
        return len(self.columns["agent"])


@dataclass
class _Pending:
    """A decide call's LLM rows, kept until `chosen` says which action each finally took."""

    positions: np.ndarray
    hashes: np.ndarray
    reasons: np.ndarray
    latency: np.ndarray
    group_size: np.ndarray
    outcome: np.ndarray


# --- the policy --------------------------------------------------------------------------------

def llm_positions(sim: Simulation, rows: np.ndarray) -> np.ndarray:
    """Positions in `rows` of the agents whose type decides by LLM."""
    llm_type = np.array([t.decision == "llm" for t in sim.c.types])
    return np.flatnonzero(llm_type[sim.type_code[rows]])


class LLMDecisions:
    """The engine's `DecisionPolicy` for LLM agents; one per run (it holds each agent's memory).

    Calls run on a private event loop in a background thread, so the engine (plain synchronous
    code, in a Ray worker or a LangGraph node) can use it whether or not a loop is running.
    """

    def __init__(self, client: LLMClient, *, group: bool = True) -> None:
        self.client = client  # its backend bounds the requests in flight (`--llm-concurrency`)
        self.group = group
        self.log = DecisionLog()
        self.counts = {"llm_agent_decisions": 0, "llm_prompts": 0, "llm_invalid": 0, "llm_failed": 0}
        self.llm_seconds = 0.0
        self._history: dict[int, np.ndarray] = {}
        self._schemas: dict[int, type[BaseModel]] = {}
        self._pending: dict[int, _Pending] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def open(cls, setup: AgentsSetup) -> LLMDecisions:
        """A policy with its own client on the setup's backend (what each Ray task builds)."""
        from llms.backends import parse_backend
        from llms.endpoints import Backend

        backend = Backend(parse_backend(setup.llm, model_path=setup.model_path), max_concurrency=setup.concurrency)
        return cls(agents_client(backend, setup.cache_path), group=setup.group)

    # -- DecisionPolicy -------------------------------------------------------------------
    def decide(self, sim: Simulation, rule: CompiledRule, rows: np.ndarray,
               local_values: dict[str, Any]) -> np.ndarray | None:
        positions = llm_positions(sim, rows)
        self._pending.pop(rule.index, None)
        if len(positions) == 0:
            return None
        personas, observations = self._texts(sim, rule, rows, local_values, positions)
        keys = personas + "\x00" + observations
        if self.group:  # archetypes: one request per distinct prompt
            _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        else:
            first = inverse = np.arange(len(keys))
        asks = [self._render(sim, rule, personas[i], observations[i]) for i in first]
        started = time.perf_counter()
        answers = self._run(self._ask_all(asks, self._schema(rule)))
        self.llm_seconds += time.perf_counter() - started
        index = {a: j for j, a in enumerate(rule.actions)}
        ask_choice = np.array([index[a.action] if isinstance(a, BaseModel) else -1 for a, _ in answers], dtype=np.int64)
        outcome = np.array(["llm" if isinstance(a, BaseModel) else _failure_kind(a) for a, _ in answers], dtype=object)
        inverse = inverse.reshape(-1)
        group_size = np.bincount(inverse, minlength=len(asks))
        choice = np.full(len(rows), -1, dtype=np.int64)
        choice[positions] = ask_choice[inverse]
        hashes = np.array([_hash(m[0]["content"] + "\x00" + m[1]["content"]) for m in asks], dtype=object)
        self._pending[rule.index] = _Pending(
            positions=positions, hashes=hashes[inverse],
            reasons=np.array([a.reason if isinstance(a, BaseModel) else "" for a, _ in answers], dtype=object)[inverse],
            latency=np.array([lat for _, lat in answers])[inverse],
            group_size=group_size[inverse], outcome=outcome[inverse])
        self.counts["llm_prompts"] += len(asks)
        self.counts["llm_agent_decisions"] += int((choice >= 0).sum())
        self.counts["llm_invalid"] += int((outcome[inverse] == "invalid").sum())
        self.counts["llm_failed"] += int((outcome[inverse] == "failed").sum())
        return choice

    def chosen(self, sim: Simulation, rule: CompiledRule, rows: np.ndarray, choice: np.ndarray) -> None:
        memory = rule.spec.memory
        if memory and len(rows):
            hist = self._history.get(rule.index)
            if hist is None:
                hist = self._history[rule.index] = np.full((sim.n, memory), -1, dtype=np.int16)
            hist[rows, :-1] = hist[rows, 1:]
            hist[rows, -1] = choice
        pending = self._pending.pop(rule.index, None)
        if pending is None:
            return
        names = np.array([*rule.actions, ""], dtype=object)
        final = choice[pending.positions]
        self.log.extend(agent=rows[pending.positions], step=sim.step_no, rule=rule.name,
                        prompt_hash=pending.hashes, action=names[np.where(final >= 0, final, len(rule.actions))],
                        reason=pending.reasons, latency_s=np.round(pending.latency, 4),
                        group_size=pending.group_size, outcome=pending.outcome)

    # -- prompts ------------------------------------------------------------------------
    def _texts(self, sim: Simulation, rule: CompiledRule, rows: np.ndarray, local_values: dict[str, Any],
               positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each selected agent's persona and observation (with its memory), numbers rounded when grouping."""
        spec = rule.spec
        personas = np.empty(len(positions), dtype=object)
        observations = np.empty(len(positions), dtype=object)
        type_of = sim.type_code[rows[positions]]
        for t in np.unique(type_of):
            sel = np.flatnonzero(type_of == t)
            agent_type = sim.spec.agent_types[int(t)]
            renderer = _Renderer(sim, rule, rows, local_values, positions[sel], self.group)
            personas[sel] = renderer.fill(agent_type.persona or f"You are one of the {agent_type.name}s.")
            observations[sel] = renderer.fill(spec.observation or default_observation(sim, rule, int(t)))
        return personas, observations + self._memory_texts(rule, rows[positions])

    def _render(self, sim: Simulation, rule: CompiledRule, persona: str, observation: str) -> list[dict[str, str]]:
        """Chat messages: persona and rules (system, a prefix the server can cache) first, the observation last."""
        spec = rule.spec
        return prompts.messages(
            PROMPT, persona=persona, situation=spec.description or sim.spec.description,
            options="\n".join(f"- {a}: {spec.actions[a].description or a}" for a in rule.actions),
            names=", ".join(f'"{a}"' for a in rule.actions), observation=observation)

    def _memory_texts(self, rule: CompiledRule, agents: np.ndarray) -> np.ndarray:
        hist = self._history.get(rule.index)
        empty = np.full(len(agents), "", dtype=object)
        if hist is None or not rule.spec.memory:
            return empty
        names = np.array([*rule.actions], dtype=object)
        rows, inverse = np.unique(hist[agents], axis=0, return_inverse=True)
        texts = []
        for r in rows:
            done = [names[c] for c in r if c >= 0]
            texts.append(f"\nYour last choices, oldest first: {', '.join(done)}." if done else "")
        return np.array(texts, dtype=object)[inverse.reshape(-1)]

    def _schema(self, rule: CompiledRule) -> type[BaseModel]:
        if rule.index not in self._schemas:
            self._schemas[rule.index] = decision_schema(rule.name, rule.actions)
        return self._schemas[rule.index]

    # -- calls --------------------------------------------------------------------------
    async def _ask_all(self, asks: list[list[dict[str, str]]], schema: type[BaseModel]) -> list[tuple[Any, float]]:
        """Every distinct prompt concurrently (the backend bounds how many are in flight), each
        with its latency; failures are returned, not raised."""
        from llms.errors import LLMError

        async def one(msgs: list[dict[str, str]]) -> tuple[Any, float]:
            t0 = time.perf_counter()
            try:
                answer: Any = await self.client.acomplete(msgs, schema, role="agents", stage="agents",
                                                          temperature=0.0, seed=SAMPLING_SEED, max_tokens=MAX_TOKENS)
            except LLMError as exc:
                log.info("LLM agent decision failed, using the fallback: %s", exc)
                answer = exc
            return answer, time.perf_counter() - t0

        return list(await asyncio.gather(*(one(m) for m in asks)))

    def _run(self, coro: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="llm-agents", daemon=True)
            self._thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def counters(self) -> dict[str, int]:
        """What this run cost and how it went, merged into `RunResult.decisions`."""
        usage = self.client.accounting.usage("agents")
        return {**self.counts, "llm_requests": usage.requests, "llm_cache_hits": usage.cache_hits,
                "llm_repairs": usage.repairs, "llm_retries": usage.retries,
                "llm_prompt_tokens": usage.prompt_tokens, "llm_completion_tokens": usage.completion_tokens,
                "llm_ms": round(self.llm_seconds * 1000)}

    def close(self) -> None:
        """Close the async clients and stop the loop thread (the servers keep running for reuse)."""
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self.client.backend.aclose(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join()
            self._loop.close()
            self._loop = self._thread = None
        self.client.close()


def agents_client(backend: Any, cache_path: str | Path | None) -> LLMClient:
    """The LLM agents' client on ``backend``: their role, the run's cache, deterministic sampling."""
    from llms.cache import ResponseCache
    from llms.client import LLMClient

    return LLMClient(backend, role="agents", cache=ResponseCache(cache_path) if cache_path else None,
                     temperature=0.0, seed=SAMPLING_SEED, max_tokens=MAX_TOKENS)


class _PromptCounter(LLMDecisions):
    """Renders the prompts LLM agents would send and counts the distinct ones; asks no server."""

    def __init__(self, group: bool) -> None:  # no client: nothing is sent
        self.group = group
        self.calls = 0  # distinct prompts (every prompt when not grouping)
        self.asked = 0  # LLM agents' decisions
        self._history = {}
        self._pending = {}

    def decide(self, sim: Simulation, rule: CompiledRule, rows: np.ndarray,
               local_values: dict[str, Any]) -> np.ndarray | None:
        positions = llm_positions(sim, rows)
        if len(positions):
            self.asked += len(positions)
            personas, observations = self._texts(sim, rule, rows, local_values, positions)
            self.calls += len(np.unique(personas + "\x00" + observations)) if self.group else len(positions)
        return None  # the rules' fallback drives the pilot


def _failure_kind(exc: BaseException) -> str:
    from llms.errors import LLMOutputInvalid

    return "invalid" if isinstance(exc, LLMOutputInvalid) else "failed"


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def start_backend(setup: AgentsSetup) -> str | None:
    """Bring up the agents' server in the driver and ask it one short question, so an unreachable or
    broken backend is one `LLMError` before any run starts (not a fallback for every agent); returns the
    model it serves."""
    from llms.backends import parse_backend
    from llms.client import LLMClient
    from llms.endpoints import open_backend

    client = LLMClient(open_backend(parse_backend(setup.llm, model_path=setup.model_path)), role="agents")
    client.complete("Reply with the word OK.", max_tokens=2, use_cache=False, stage="agents")
    return client.model
