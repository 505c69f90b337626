"""Designing an experiment (make_design): from a research plan to a scenario, a one-parameter sweep, seeds and steps.

Prefer the library: retrieve the closest scenarios (`researcher.retrieval`), let the LLM pick one
and map each hypothesis to a parameter and a metric, in small schemas whose fields are enums built
here, so even a tiny model can only name things that exist. Generate a spec only when nothing
fits, validate it (schema, compile, smoke run) with bounded repairs, else fall back to the best
library scenario. Every LLM failure has a deterministic fallback, recorded in `fallback_reason`.
Values, steps and agents are chosen by code, never by the LLM.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import ConfigDict, Field, create_model

import prompts
from llms.client import LLMClient
from llms.errors import LLMError, LLMOutputInvalid, one_line
from researcher.retrieval import best_matches, rank_scenarios
from researcher.schemas import ExperimentDesign, Hypothesis, HypothesisTest, ResearchPlan
from simulator import (
    Condition,
    Experiment,
    Parameter,
    ScenarioSpec,
    Simulation,
    SpecError,
    all_scenarios,
    compile_scenario,
    describe_functions,
    parse_spec,
    smoke_run,
)
from societas.errors import SocietasError

log = logging.getLogger(__name__)

Event = Callable[[str], None]

TOP_K = 5
FIT_THRESHOLD = 0.3  # below this retrieval score no library scenario is about the plan
CONTENDER_RATIO = 0.6  # the LLM chooses among scenarios scoring at least this share of the best
N_VALUES = 4
HUGE_RANGE = 20.0  # a range wider than this many defaults is swept around the default instead
POPULATION_CAP = 2000
TIME_BUDGET_S = 90.0  # the whole experiment (conditions x seeds), on this machine's cores
MIN_STEPS = 10
PROBE_STEPS = 5
CHOICE_MAX_TOKENS = 200
GENERATE_MAX_TOKENS = 1800  # the embedded model has a 4096-token context; the prompt takes ~2000
GENERATE_REPAIRS = 2
GENERATE_DEADLINE_S = 120.0  # no repair turn starts after this


def make_design(
    plan: ResearchPlan,
    llm: LLMClient | None,
    *,
    seeds: int = 5,
    steps: int | None = None,
    agents: int | None = None,
    allow_generate: bool = True,
    on_event: Event | None = None,
    library: Sequence[ScenarioSpec] | None = None,
) -> tuple[ExperimentDesign, ScenarioSpec]:
    """The design and the (library or generated) spec it runs; `library` defaults to the shipped one."""
    say = on_event or (lambda _msg: None)
    if seeds < 2:
        raise SocietasError(f"an experiment needs at least 2 seeds, got {seeds}", hint="use --seeds 2 or more")
    specs = [s for s in (all_scenarios() if library is None else library) if _sweepable(s)]
    if not specs:
        raise SocietasError("no library scenario has a parameter with a range to sweep",
                            hint="add a scenario to simulator/library")
    by_name = {s.name: s for s in specs}
    candidates = rank_scenarios(plan, specs, k=TOP_K)
    say("closest scenarios: " + ", ".join(f"{n} ({s:.2f})" for n, s in candidates))

    notes: list[str] = []
    fallbacks: list[str] = [] if llm is not None else ["no LLM: scenario and hypothesis mapping chosen by text retrieval"]
    spec, generated = _pick_scenario(plan, llm, candidates, by_name, allow_generate, notes, fallbacks, say)

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
                   by_name: dict[str, ScenarioSpec], allow_generate: bool, notes: list[str], fallbacks: list[str],
                   say: Event) -> tuple[ScenarioSpec, bool]:
    """A library scenario (the LLM's choice among close contenders) or, when none fits, a generated spec."""
    best, best_score = candidates[0]
    if best_score >= FIT_THRESHOLD:
        contenders = [n for n, score in candidates if score >= CONTENDER_RATIO * best_score]
        name, reason = choose_scenario(plan, llm, contenders, by_name, fallbacks)
        say(f"scenario: {name} ({reason})")
        notes.append(f"Scenario {name} (retrieval score {dict(candidates)[name]:.2f}): {reason.rstrip('.')}.")
        return by_name[name], False
    misfit = f"no library scenario fits the plan well (best: {best}, score {best_score:.2f})"
    if allow_generate and llm is not None:
        say(misfit + "; generating a scenario spec")
        spec, error = generate_spec(plan, llm, example=by_name[best], say=say)
        if spec is not None:
            notes.append(f"Generated scenario {spec.name} ({misfit}); it passed validation and a smoke run.")
            return spec, True
        fallbacks.append(f"{misfit}; {error}; used library scenario {best}")
    else:
        why = "generating specs is turned off" if not allow_generate else "no LLM can generate one"
        fallbacks.append(f"{misfit} and {why}; used library scenario {best}")
    say(f"scenario: {best} (fallback)")
    notes.append(f"Scenario {best}, the closest library scenario (retrieval score {best_score:.2f}).")
    return by_name[best], False


def choose_scenario(plan: ResearchPlan, llm: LLMClient | None, names: list[str], by_name: dict[str, ScenarioSpec],
                    fallbacks: list[str]) -> tuple[str, str]:
    """The LLM's pick among the retrieved names (an enum), or the top-ranked one; (name, reason)."""
    if llm is None or len(names) == 1:
        return names[0], "the closest match by text" if len(names) > 1 else "the only close match by text"
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


# --- hypotheses -> (parameter, metric) ------------------------------------------------------------


def map_hypotheses(plan: ResearchPlan, spec: ScenarioSpec, llm: LLMClient | None,
                   fallbacks: list[str]) -> list[HypothesisTest]:
    """One test per hypothesis, by the LLM (enums of real names) or by text matching."""
    tests = []
    for h in plan.hypotheses:
        test = _llm_mapping(h, spec, llm, fallbacks) if llm is not None else None
        tests.append(test or text_mapping(h, spec))
    return tests


def _llm_mapping(h: Hypothesis, spec: ScenarioSpec, llm: LLMClient, fallbacks: list[str]) -> HypothesisTest | None:
    """The LLM's (parameter, metric); None (use text matching) when it fails or finds nothing testable."""
    # Options ordered by text match, best first: a tiny model that takes the first one does no harm.
    params = [n for n, _ in best_matches(h.independent_variable, _parameter_docs(spec))]
    metrics = [n for n, _ in best_matches(h.dependent_variable, _metric_docs(spec))]
    mapping_model = create_model(
        "HypothesisMapping", __config__=ConfigDict(extra="forbid"),
        parameter=(Literal[tuple(params)], ...),
        metric=(Literal[tuple(metrics)], ...),
        testable=(bool, ...),
    )
    messages = prompts.messages(
        "design_map_hypotheses", scenario=f"{spec.title}. {spec.description.strip()}",
        statement=h.statement, independent=h.independent_variable, dependent=h.dependent_variable,
        parameters="\n".join(f"- {n}: {spec.parameters[n].description or n}" for n in params),
        metrics="\n".join(f"- {n}: {spec.metrics[n]}" for n in metrics),
        parameter_names=", ".join(params), metric_names=", ".join(metrics),
    )
    try:
        m = llm.complete(messages, schema=mapping_model, temperature=0.0, seed=0, max_tokens=CHOICE_MAX_TOKENS)
    except LLMError as exc:
        fallbacks.append(f"the LLM's mapping of {h.id} failed ({one_line(exc.message, 160)}); matched by text")
        return None
    if not m.testable:
        # Small models say "not testable" at random; text matching decides whether anything fits.
        test = text_mapping(h, spec)
        return test.model_copy(update={"reason": f"the LLM found no match; {test.reason}"})
    return HypothesisTest(hypothesis_id=h.id, parameter=m.parameter, metric=m.metric, direction=h.direction,
                          reason="mapped by the LLM")


def text_mapping(h: Hypothesis, spec: ScenarioSpec) -> HypothesisTest:
    """Deterministic: the parameter and metric whose names and descriptions share the most words."""
    param_docs = _parameter_docs(spec)
    param, p_score = best_matches(h.independent_variable, param_docs)[0]
    if p_score <= 0:
        param, p_score = best_matches(h.statement, param_docs)[0]
    metric, m_score = best_matches(h.dependent_variable, _metric_docs(spec))[0]
    if p_score <= 0:
        return HypothesisTest(
            hypothesis_id=h.id, parameter=None, metric=metric if m_score > 0 else None, direction=h.direction,
            testable=False,
            reason=f"no parameter of {spec.name} matches {h.independent_variable!r} "
                   f"(parameters: {', '.join(param_docs)})",
        )
    reason = f"matched by text: {h.independent_variable!r} ~ {param}"
    if m_score > 0:
        reason += f", {h.dependent_variable!r} ~ {metric}"
    else:
        metric = next(iter(spec.metrics))
        reason += f"; no metric matches {h.dependent_variable!r}, so the scenario's first metric {metric} is used"
    return HypothesisTest(hypothesis_id=h.id, parameter=param, metric=metric, direction=h.direction, reason=reason)


def _parameter_docs(spec: ScenarioSpec) -> dict[str, str]:
    return {n: f"{n} {spec.parameters[n].description}" for n in sweepable_parameters(spec)}


def _metric_docs(spec: ScenarioSpec) -> dict[str, str]:
    return {n: f"{n} {e}" for n, e in spec.metrics.items()}


def settle_sweep(tests: list[HypothesisTest], spec: ScenarioSpec) -> tuple[str, list[HypothesisTest], str]:
    """The one swept parameter (the first testable hypothesis's); tests about others become untestable."""
    testable = [t for t in tests if t.testable and t.parameter in spec.parameters]
    if not testable:
        swept = sweepable_parameters(spec)[0]
        note = f"No hypothesis maps to a parameter of {spec.name}; an exploratory sweep of {swept}."
        return swept, tests, note
    swept = testable[0].parameter
    out = []
    for t in tests:
        if t.testable and t.parameter != swept:
            t = t.model_copy(update={"testable": False, "reason": f"this design sweeps {swept} only "
                                     f"({t.parameter} stays at its default)"})
        out.append(t)
    return swept, out, f"Tests {', '.join(t.hypothesis_id for t in out if t.testable)} by sweeping {swept}."


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


# --- generating a spec when nothing fits ----------------------------------------------------------


def generate_spec(plan: ResearchPlan, llm: LLMClient, *, example: ScenarioSpec,
                  say: Event) -> tuple[ScenarioSpec | None, str]:
    """A new spec that passes validation and a smoke run, with bounded repairs; (spec, "") or (None, why)."""
    messages = prompts.messages("design_generate_spec", plan=describe_plan(plan), example=example.to_yaml(),
                                functions=describe_functions())
    # Repairs happen here, where the semantic errors are known; the client's own would only see shape
    # errors. One attempt per turn: a spec that timed out (a tiny model on a busy CPU) would time out
    # again, and the library is a good fallback.
    writer = copy.copy(llm)
    writer.repairs = 0
    writer.retry = dataclasses.replace(llm.retry, attempts=1)
    deadline = time.monotonic() + GENERATE_DEADLINE_S
    error = ""
    for attempt in range(1 + GENERATE_REPAIRS):
        if attempt and time.monotonic() > deadline:
            error += " (no time left to repair it)"
            break
        answer = None
        try:
            draft = writer.complete(messages, schema=ScenarioSpec, temperature=0.0, seed=attempt,
                                    max_tokens=GENERATE_MAX_TOKENS)
            answer = draft.model_dump_json(by_alias=True, exclude_defaults=True)
            return check_generated(draft), ""
        except LLMOutputInvalid as exc:
            # The message is "<backend> gave no valid ScenarioSpec after N repair(s): <problem>"; keep the problem.
            error = one_line(exc.message.rpartition("repair(s): ")[2] or exc.message, 200)
        except LLMError as exc:  # unreachable or rejected: another turn will not help
            return None, f"spec generation failed: {one_line(exc.message, 200)}"
        except SocietasError as exc:
            error = one_line(str(exc), 200)
        say(f"generated spec rejected (attempt {attempt + 1}): {error}")
        messages = [*messages, *([{"role": "assistant", "content": answer}] if answer else []),
                    {"role": "user", "content": prompts.render("design_repair_spec", error=error)}]
    return None, f"generated spec failed validation: {error}"


def check_generated(spec: ScenarioSpec) -> ScenarioSpec:
    """Schema, meaning and a smoke run of 50 agents for 3 steps; the plain spec, or `SocietasError`."""
    spec = parse_spec(spec.model_dump(mode="json", by_alias=True), source="generated spec")
    if not _sweepable(spec):
        raise SpecError("the spec needs a parameter with a min and max to sweep (min below max)", scenario=spec.name,
                        hint="add parameters: {name: {default, min, max, description}}")
    compile_scenario(spec)
    try:
        smoke_run(spec, agents=50, steps=3)
    except SocietasError:
        raise
    except Exception as exc:  # noqa: BLE001 - a generated spec that crashes the engine is rejected, not fatal
        log.warning("smoke run of generated spec %s crashed", spec.name, exc_info=True)
        raise SpecError(f"the smoke run failed: {type(exc).__name__}: {one_line(exc, 160)}",
                        scenario=spec.name) from None
    return spec


# --- small shared pieces ----------------------------------------------------------------------------


def sweepable_parameters(spec: ScenarioSpec) -> list[str]:
    """Parameters with room to vary: not pinned to a single value."""
    return [n for n, p in spec.parameters.items() if p.min is None or p.max is None or p.max > p.min]


def _sweepable(spec: ScenarioSpec) -> bool:
    return bool(sweepable_parameters(spec))


def describe_plan(plan: ResearchPlan) -> str:
    lines = [f"Title: {plan.title}", f"Domain: {plan.domain}", f"Summary: {plan.summary}", "Hypotheses:"]
    lines += [f"- {h.id}: {h.statement} (varies: {h.independent_variable}; measures: {h.dependent_variable}; "
              f"expected: {h.direction.replace('_', ' ')})" for h in plan.hypotheses]
    return "\n".join(lines)


def _summary(spec: ScenarioSpec) -> str:
    first = spec.description.strip().split(". ")[0].rstrip(".")
    return f"{spec.title}. {first}. Parameters: {', '.join(spec.parameters)}. Metrics: {', '.join(spec.metrics)}."
