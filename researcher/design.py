"""Designing an experiment (make_design): from a research plan to a scenario, a one-parameter sweep, seeds and steps.

Prefer the library: retrieve the closest scenarios (`researcher.retrieval`), let the LLM pick one
and map each hypothesis to a parameter and a metric, in small schemas whose fields are enums built
here, so even a tiny model can only name things that exist. Generate a spec only when nothing
fits, validate it (schema, compile, smoke run) with bounded repairs, else fall back to the best
library scenario. Every LLM failure has a deterministic fallback, recorded in `fallback_reason`.
Values, steps and agents are chosen by code, never by the LLM.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import ConfigDict, Field, create_model

import prompts
from llms.client import LLMClient
from llms.errors import LLMError, one_line
from researcher.budget import context_of, prompt_tokens
from researcher.hypothesis_mapping import map_hypotheses, settle_sweep, sweepable_parameters
from researcher.planning import describe_plan
from researcher.retrieval import rank_scenarios
from researcher.schemas import ExperimentDesign, ResearchPlan
from researcher.spec_generation import GENERATE_MAX_TOKENS, generate_spec, spec_messages
from simulator import (
    Condition,
    Experiment,
    Parameter,
    ScenarioSpec,
    Simulation,
    all_scenarios,
    compile_scenario,
)
from societas.errors import SocietasError

log = logging.getLogger(__name__)

Event = Callable[[str], None]

TOP_K = 5
FIT_THRESHOLD = 0.4  # below this retrieval score no library scenario is about the topic (benchmarks/retrieval.py)
# Scenarios scoring at least this share of the best are close contenders, and the model chooses
# among them; a best scenario with no contender is a clear leader, taken whatever the model says.
# On benchmarks/retrieval.py's fitting topics a clear leader was never a wrong one on the tuned set
# (44 of 45 had one), and once in 19 held-out topics.
CONTENDER_RATIO = 0.85
N_VALUES = 4
HUGE_RANGE = 20.0  # a range wider than this many defaults is swept around the default instead
POPULATION_CAP = 2000
TIME_BUDGET_S = 90.0  # the whole experiment (conditions x seeds), on this machine's cores
MIN_STEPS = 10
PROBE_STEPS = 5
CHOICE_MAX_TOKENS = 200


def make_design(
    plan: ResearchPlan,
    llm: LLMClient | None,
    *,
    seeds: int = 5,
    steps: int | None = None,
    agents: int | None = None,
    allow_generate: bool = True,
    force_generate: bool = False,
    on_event: Event | None = None,
    library: Sequence[ScenarioSpec] | None = None,
    topic: str | None = None,
) -> tuple[ExperimentDesign, ScenarioSpec]:
    """The design and the (library or generated) spec it runs; `library` defaults to the shipped one.

    Retrieval reads the user's `topic` first and the plan second. When nothing fits, a spec is
    generated if `allow_generate` and the model's context holds the spec prompt and an answer, or
    whatever the context if `force_generate`."""
    say = on_event or (lambda _msg: None)
    if seeds < 2:
        raise SocietasError(f"an experiment needs at least 2 seeds, got {seeds}", hint="use --seeds 2 or more")
    specs = [s for s in (all_scenarios() if library is None else library) if _sweepable(s)]
    if not specs:
        raise SocietasError("no library scenario has a parameter with a range to sweep",
                            hint="add a scenario to simulator/library")
    by_name = {s.name: s for s in specs}
    candidates = rank_scenarios(plan, specs, k=TOP_K, topic=topic)
    say("closest scenarios: " + ", ".join(f"{n} ({s:.2f})" for n, s in candidates))

    notes: list[str] = []
    fallbacks: list[str] = [] if llm is not None else ["no LLM: scenario and hypothesis mapping chosen by text retrieval"]
    generate = "off" if not allow_generate else "force" if force_generate else "auto"
    spec, generated = _pick_scenario(plan, llm, candidates, by_name, generate, notes, fallbacks, say)

    tests = map_hypotheses(plan, spec, llm, fallbacks)
    swept, tests, sweep_note = settle_sweep(tests, spec)
    notes.append(sweep_note)
    for t in tests:
        say(f"{t.hypothesis_id}: " + (f"{t.parameter} -> {t.metric}" if t.testable else f"untestable ({t.reason})"))

    values = sweep_values(spec.parameters[swept])
    population = agents or min(default_population(spec), POPULATION_CAP)
    values, run_steps, run_notes = _check_conditions(spec, swept, values, population, seeds, steps)
    notes += run_notes
    notes.append(f"Sweeps {swept} over {', '.join(f'{v:g}' for v in values)}; {run_steps} steps, "
                 f"{population} agents, {seeds} seeds per condition.")
    say(f"sweep {swept}: {', '.join(f'{v:g}' for v in values)}; {run_steps} steps, {population} agents")

    design = ExperimentDesign(
        scenario=spec.name, generated=generated, swept_parameter=swept, values=values,
        seeds=list(range(seeds)), steps=run_steps, population=population, tests=tests,
        candidates=candidates, rationale=" ".join(notes), fallback_reason="; ".join(fallbacks) or None,
    )
    return design, spec


def build_experiment(design: ExperimentDesign, spec: ScenarioSpec) -> Experiment:
    """One condition per swept value (named like `epsilon=0.1`), `fixed` parameters in every one."""
    if design.scenario != spec.name:
        raise ValueError(f"the design is for scenario {design.scenario!r}, the spec is {spec.name!r}")
    conditions = [
        Condition(name=condition_name(design.swept_parameter, v), params={**design.fixed, design.swept_parameter: v})
        for v in design.values
    ]
    # The spec's own population stays an expression of the parameters when the design did not change it.
    population = None if design.population == default_population(spec) else design.population
    return Experiment(scenario=spec, conditions=conditions, seeds=list(design.seeds), steps=design.steps,
                      population=population)


def condition_name(parameter: str, value: float) -> str:
    return f"{parameter}={value:g}"


# --- choosing the scenario ----------------------------------------------------------------------


def _pick_scenario(plan: ResearchPlan, llm: LLMClient | None, candidates: list[tuple[str, float]],
                   by_name: dict[str, ScenarioSpec], generate: Literal["auto", "force", "off"], notes: list[str],
                   fallbacks: list[str], say: Event) -> tuple[ScenarioSpec, bool]:
    """A library scenario (the clear retrieval leader, or the LLM's choice among close contenders) or,
    when none fits, a generated spec; the plan's domain becomes a library scenario's (noted)."""
    best, best_score = candidates[0]
    if best_score >= FIT_THRESHOLD:
        name, reason = choose_scenario(plan, llm, contenders(candidates), by_name, fallbacks)
        say(f"scenario: {name} ({reason})")
        notes.append(f"Scenario {name} (retrieval score {dict(candidates)[name]:.2f}): {reason.rstrip('.')}.")
        _note_domain(plan, by_name[name], notes)
        return by_name[name], False
    misfit = f"no library scenario fits the plan well (best: {best}, score {best_score:.2f} < {FIT_THRESHOLD:g})"
    attempt, why = _may_generate(plan, llm, by_name[best], generate)
    notes.append(f"{why[0].upper()}{why[1:]}.")
    if attempt and llm is not None:
        say(misfit + "; generating a scenario spec")
        spec, error = generate_spec(plan, llm, example=by_name[best], say=say)
        if spec is not None:
            notes.append(f"Generated scenario {spec.name} ({misfit}); it passed validation and a smoke run.")
            return spec, True
        fallbacks.append(f"{misfit}; {error}; used library scenario {best}, the closest available, not a fit")
    else:
        fallbacks.append(f"{misfit} and {why}; used library scenario {best}, the closest available, not a fit")
    say(f"scenario: {best} (fallback)")
    notes.append(f"Scenario {best} is the closest library scenario, not a fit for the topic "
                 f"(retrieval score {best_score:.2f}).")
    _note_domain(plan, by_name[best], notes)
    return by_name[best], False


def _note_domain(plan: ResearchPlan, spec: ScenarioSpec, notes: list[str]) -> None:
    """A library scenario settles the study's domain (design_experiment updates the plan); a changed one is noted."""
    if spec.domain != plan.domain:
        notes.append(f"The plan's domain {plan.domain} became {spec.domain}, the domain of scenario {spec.name}.")


def _may_generate(plan: ResearchPlan, llm: LLMClient | None, example: ScenarioSpec,
                  generate: Literal["auto", "force", "off"]) -> tuple[bool, str]:
    """Whether to ask the model for a spec, and why: only where its context holds the spec prompt and
    an answer, since a small model (4,096 tokens) cut off mid-spec costs minutes and always fails."""
    if llm is None:
        return False, "no LLM can generate a spec"
    if generate == "off":
        return False, "generating specs is turned off"
    context = context_of(llm)
    prompt = prompt_tokens(spec_messages(plan, example))
    need = f"about {prompt:,} tokens of prompt and up to {GENERATE_MAX_TOKENS:,} of answer"
    if generate == "force":
        return True, f"spec generation was forced (the model holds {context:,} tokens; a spec needs {need})"
    if prompt + GENERATE_MAX_TOKENS <= context:
        return True, f"the model holds {context:,} tokens, room for a generated spec ({need})"
    return False, f"spec generation was not attempted: the model holds {context:,} tokens, a spec needs {need}"


def contenders(candidates: Sequence[tuple[str, float]]) -> list[str]:
    """The retrieved names close enough to the best that the model may choose among them, best first."""
    best_score = candidates[0][1]
    return [n for n, score in candidates if score >= CONTENDER_RATIO * best_score]


def choose_scenario(plan: ResearchPlan, llm: LLMClient | None, names: list[str], by_name: dict[str, ScenarioSpec],
                    fallbacks: list[str]) -> tuple[str, str]:
    """The LLM's pick among the retrieved names (an enum), or the top-ranked one; (name, reason)."""
    if llm is None or len(names) == 1:
        return names[0], "the closest match by text" if len(names) > 1 else "the clear retrieval leader"
    choice_model = create_model(
        "ScenarioChoice", __config__=ConfigDict(extra="forbid"),
        scenario=(Literal[tuple(names)], ...),
        reason=(str, Field(max_length=200)),
    )
    messages = prompts.messages(
        "design_choose_scenario", plan=describe_plan(plan), names=", ".join(names),
        candidates="\n".join(f"- {n}: {_summary(by_name[n])}" for n in names),
    )
    try:
        choice = llm.complete(messages, schema=choice_model, temperature=0.0, seed=0, max_tokens=CHOICE_MAX_TOKENS)
    except LLMError as exc:
        fallbacks.append(f"the LLM's scenario choice failed ({one_line(exc.message, 160)}); "
                         f"used the top-ranked scenario {names[0]}")
        return names[0], "the closest match by text"
    reason = " ".join(choice.reason.split())
    # Tiny models often fill the reason with a few stray words; those do not belong in a report.
    return choice.scenario, reason if len(reason.split()) >= 4 else "chosen by the LLM"


# --- values, agents, steps ----------------------------------------------------------------------


def sweep_values(p: Parameter, n: int = N_VALUES) -> list[float]:
    """`n` values inside the range: the spec's suggested sweep, else spread over the range (or around
    the default when the range is huge)."""
    if p.sweep and len(set(p.sweep)) >= 2:
        return _tidy(list(p.sweep), p)
    lo, hi, d = p.min, p.max, p.default
    if lo is not None and hi is not None and (hi - lo) <= HUGE_RANGE * abs(d):
        raw = [lo + (hi - lo) * (2 * i + 1) / (2 * n) for i in range(n)]  # centres of n equal cells
        nearest = min(range(n), key=lambda i: abs(raw[i] - d))
        raw[nearest] = d
    else:
        raw = _around_default(d, lo, hi, n)
    values = _tidy(raw, p)
    if len(values) < 2 and lo is not None and hi is not None:
        values = _tidy([lo, hi], p)
    return values


def _around_default(d: float, lo: float | None, hi: float | None, n: int) -> list[float]:
    """Doublings and halvings of the default (or decades above zero when the default is zero)."""
    if d == 0:
        top = hi if hi is not None and hi > 0 else 1000.0
        side = [top * 10.0 ** -k for k in (3, 2, 1, 0)] if top > 0 else []
        if hi is not None and hi <= 0 and lo is not None:
            side = [lo * 10.0 ** -k for k in (3, 2, 1, 0)]
        return [0.0, *side][:n]
    out = [d]
    for k in (1, -1, 2, -2, 3, -3, 4, -4):
        v = d * 2.0 ** k
        if (lo is None or v >= lo) and (hi is None or v <= hi):
            out.append(v)
        if len(out) == n:
            break
    return out


def _tidy(raw: list[float], p: Parameter) -> list[float]:
    """Rounded (3 significant digits, or whole numbers), inside the range, distinct, sorted."""
    out = set()
    for v in raw:
        v = float(round(v)) if p.integer else float(f"{v:.3g}")
        if p.min is not None:
            v = max(v, math.ceil(p.min) if p.integer else p.min)
        if p.max is not None:
            v = min(v, math.floor(p.max) if p.integer else p.max)
        out.add(v)
    return sorted(out)


def default_population(spec: ScenarioSpec) -> int:
    """The number of agents the spec runs with at its default parameters."""
    if isinstance(spec.population, (int, float)):
        return int(round(spec.population))
    try:
        return Simulation(compile_scenario(spec), None, 0, max_steps=1).n
    except SocietasError:  # too many to build here; the cap applies
        return POPULATION_CAP


def _check_conditions(spec: ScenarioSpec, swept: str, values: list[float], population: int, seeds: int,
                      steps: int | None) -> tuple[list[float], int, list[str]]:
    """A few steps of every condition: drops values the engine rejects and caps steps to the time budget."""
    notes, kept, costs = [], [], []
    compiled = compile_scenario(spec)
    # Probing a huge population would take long; cost grows about linearly with the agents.
    probe_population = min(population, POPULATION_CAP)
    scale = population / probe_population
    for v in values:
        try:
            t0 = time.perf_counter()
            sim = Simulation(compiled, {swept: v}, 0, population=probe_population, max_steps=PROBE_STEPS)
            t1 = time.perf_counter()
            result = sim.run()
        except SocietasError as exc:
            notes.append(f"{condition_name(swept, v)} was dropped: {one_line(exc.message, 160)}.")
            continue
        kept.append(v)
        costs.append(((t1 - t0) * scale, (time.perf_counter() - t1) / max(1, int(result.steps[-1])) * scale))
    if len(kept) < 2:
        raise SocietasError(f"scenario {spec.name!r}: fewer than two values of {swept} can run ({'; '.join(notes)})",
                            hint="choose fewer agents (--agents) or another scenario")
    if steps is None:
        steps, note = _budget_steps(spec, costs, len(kept) * seeds)
        notes += [note] if note else []
    return kept, steps, notes


def _budget_steps(spec: ScenarioSpec, costs: list[tuple[float, float]], n_runs: int) -> tuple[int, str | None]:
    """The spec's steps, or fewer when (start-up + steps x per-step cost) x runs / cores exceeds the budget."""
    full = spec.stop.max_steps
    workers = max(1, min(n_runs, os.cpu_count() or 1))
    # Conditions run side by side, so their mean cost is what counts.
    init_s = sum(c[0] for c in costs) / len(costs)
    step_s = max(sum(c[1] for c in costs) / len(costs), 1e-6)
    per_run = TIME_BUDGET_S * workers / n_runs
    if init_s + step_s * full <= per_run:
        return full, None
    capped = min(full, max(MIN_STEPS, _nice_floor((per_run - init_s) / step_s)))
    return capped, (f"Steps capped at {capped} (the spec runs {full}) so that {n_runs} runs take about "
                    f"{TIME_BUDGET_S:.0f} s on {workers} cores.")


def _nice_floor(x: float) -> int:
    """The largest 1, 2 or 5 times a power of ten not above x: steps that do not jitter with timing."""
    if x < 1:
        return 1
    base = 10 ** int(math.floor(math.log10(x)))
    return max(m * base for m in (1, 2, 5) if m * base <= x)


def _sweepable(spec: ScenarioSpec) -> bool:
    return bool(sweepable_parameters(spec))


def _summary(spec: ScenarioSpec) -> str:
    first = spec.description.strip().split(". ")[0].rstrip(".")
    return f"{spec.title}. {first}. Parameters: {', '.join(spec.parameters)}. Metrics: {', '.join(spec.metrics)}."
