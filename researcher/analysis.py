"""The analysis stage: simulation data in; facts, verdicts and figures out. Statistics, never an LLM.

Every number a report may print is a `Fact` with an id (F1, F2, ... in a fixed order) and a
`source` that says which file, metric, filter and statistic it came from. Verdicts are decided
by a trend test (Spearman rank correlation of the final metric against the swept parameter
across all runs, two-sided, alpha = 0.05) and explained in sentences that cite facts by
placeholder (`{{F7}}`), never by raw number.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from reports.figures import is_ragged, plot_sweep, plot_timeseries
from reports.models import Fact, Figure, Verdict
from researcher.effects import Trend, measure_trend
from researcher.facts import Bounds, FactTable, RunData, describe_runs, metric_facts, seed_phrase, tested_metrics
from researcher.schemas import ExperimentDesign, Hypothesis, HypothesisTest, ResearchPlan
from simulator import SpecError, load_spec, metric_bounds
from societas.errors import SocietasError
from societas.runs import atomic_write_text

FINDINGS_FILE = "findings.json"
ALPHA = 0.05
LOW_POWER_P = 0.3  # an inconclusive trend with ALPHA <= p < this may resolve with more seeds
MIN_SEEDS = 5  # fewer seeds per parameter value than this is low power on its own
NO_EFFECT_D = 0.5  # |Cohen's d| between the extreme values below this counts as "no effect"


class Findings(BaseModel):
    """What analyze_results produces; stored as findings.json in the run folder."""

    model_config = ConfigDict(extra="forbid")

    facts: list[Fact] = Field(default_factory=list)
    verdicts: list[Verdict] = Field(default_factory=list)
    figures: list[Figure] = Field(default_factory=list)
    needs_more_seeds: bool = False
    notes: list[str] = Field(default_factory=list)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Findings":
        return cls.model_validate_json(text)

    def save(self, run_dir: Path) -> Path:
        path = Path(run_dir) / FINDINGS_FILE
        atomic_write_text(path, self.to_json())
        return path

    @classmethod
    def load(cls, path: Path) -> "Findings":
        """From a run folder or from the findings.json file itself."""
        path = Path(path)
        return cls.from_json((path / FINDINGS_FILE if path.is_dir() else path).read_text())

    def fact_map(self) -> dict[str, Fact]:
        return {f.id: f for f in self.facts}


def analyze(run_dir: Path, design: ExperimentDesign, plan: ResearchPlan) -> Findings:
    """Facts, verdicts and figures from `run_dir/data/*.parquet`; writes figures/ and findings.json."""
    run_dir = Path(run_dir)
    metrics, final = load_data(run_dir)
    data = RunData(metrics, final, design, _metric_bounds(run_dir))
    facts = FactTable()
    notes: list[str] = []
    runs_id = describe_runs(data, facts)
    tested = tested_metrics(design)
    # With no hypothesis to test (a small model's plan often has none), the sweep still ran: every
    # metric's movement with the swept parameter is reported as facts, without a verdict.
    exploratory = [] if tested else list(dict.fromkeys(data.metrics["metric"]))
    if exploratory:
        notes.append(f"No hypothesis could be tested; the facts describe how each metric moves with "
                     f"{design.swept_parameter} (an exploratory sweep).")
    for metric in tested or exploratory:
        metric_facts(data, metric, facts, notes)
    keys = [(_parameter(t, design), t.metric) for t in design.tests
            if t.testable and t.metric and data.has_metric(t.metric)]
    keys += [(design.swept_parameter, m) for m in exploratory if data.has_metric(m)]
    trends: dict[tuple[str, str], Trend] = {}
    for key in dict.fromkeys(keys):
        trends[key] = measure_trend(data, *key, facts, notes)
        trends[key].ids["runs"] = runs_id if trends[key].all_runs else None
    verdicts = [_verdict(h, _test_for(h, design), design, data, trends, facts) for h in plan.hypotheses]
    low_power = [v.hypothesis_id for v in verdicts if v.verdict == "inconclusive"
                 and _low_power(trends.get((v.parameter or "", v.metric or "")), _test_for_id(v.hypothesis_id, design))]
    if low_power:
        notes.append(f"Inconclusive with low power: {', '.join(low_power)}; more seeds may settle "
                     "the verdict.")
    figures = _figures(run_dir, data, design, trends, notes)
    findings = Findings(facts=facts.facts, verdicts=verdicts, figures=figures,
                        needs_more_seeds=bool(low_power), notes=list(dict.fromkeys(notes)))
    findings.save(run_dir)
    return findings


def load_data(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics, final) from the run folder; a missing file is a user-fixable error."""
    paths = [Path(run_dir) / "data" / name for name in ("metrics.parquet", "final.parquet")]
    for path in paths:
        if not path.exists():
            raise SocietasError(f"no simulation data at {path}",
                                hint="run the simulation first (societas resume RUN)")
    metrics, final = (pd.read_parquet(p) for p in paths)
    metrics["metric"] = metrics["metric"].astype(str)
    metrics["condition"] = metrics["condition"].astype(str)
    final["condition"] = final["condition"].astype(str)
    return metrics, final


def _metric_bounds(run_dir: Path) -> dict[str, Bounds]:
    """Each metric's possible range, from the run's scenario.yaml; without one nothing is clipped."""
    path = Path(run_dir) / "scenario.yaml"
    if not path.is_file():
        return {}
    try:
        spec = load_spec(path)
    except SpecError:
        return {}
    return {name: metric_bounds(str(expression)) for name, expression in spec.metrics.items()}


# ---------------------------------------------------------------------------------------------
# Verdicts


def _parameter(test: HypothesisTest, design: ExperimentDesign) -> str:
    return (test.parameter or design.swept_parameter).removeprefix("param.")


def _test_for(h: Hypothesis, design: ExperimentDesign) -> HypothesisTest | None:
    return _test_for_id(h.id, design)


def _test_for_id(hypothesis_id: str, design: ExperimentDesign) -> HypothesisTest | None:
    return next((t for t in design.tests if t.hypothesis_id == hypothesis_id), None)


def _verdict(h: Hypothesis, test: HypothesisTest | None, design: ExperimentDesign, data: RunData,
             trends: dict[tuple[str, str], Trend], facts: FactTable) -> Verdict:
    # The design's statement was checked against the test's parameter and metric (or composed from them).
    base = dict(hypothesis_id=h.id, statement=test.statement if test and test.statement else h.statement)
    if test is None:
        return Verdict(**base, verdict="untestable",
                       reason="The experiment design did not map this hypothesis to a parameter and a metric.")
    if not test.testable:
        return Verdict(**base, verdict="untestable", parameter=test.parameter, metric=test.metric,
                       reason=test.reason or "The design judged this hypothesis untestable in the scenario.")
    if not (test.parameter and test.metric):  # never judged against a name the design did not give
        return Verdict(**base, verdict="untestable", parameter=test.parameter, metric=test.metric,
                       reason="The design names no parameter and metric for this hypothesis.")
    parameter = _parameter(test, design)
    base.update(parameter=parameter, metric=test.metric)
    if not data.has_metric(test.metric):
        return Verdict(**base, verdict="inconclusive",
                       reason=f"The metric {test.metric} is not in the simulation data, so the hypothesis "
                              "could not be tested.")
    trend = trends[(parameter, test.metric)]
    if trend.problem:
        cited = _metric_fact_ids(facts, test.metric)[:1] if trend.problem == "constant" else []
        return Verdict(**base, verdict="inconclusive", reason=_problem_reason(trend, cited), fact_ids=cited)
    kind, claim = _decide(test.direction, trend)
    # The direction found, whatever was expected, by the rules _decide judges with; none where the
    # metric turns inside the range (neither way describes it).
    effect = None if trend.turns else (
        ("increase" if trend.rho > 0 else "decrease") if trend.p < ALPHA and trend.rho != 0
        else "none" if trend.p >= ALPHA and trend.d is not None and abs(trend.d) < NO_EFFECT_D else None)
    return Verdict(**base, verdict=kind, reason=f"{claim}: {_evidence(trend)}.", effect=effect,
                   fact_ids=sorted((i for i in trend.ids.values() if i), key=lambda i: int(i[1:])))


def _decide(direction: str, trend: Trend) -> tuple[str, str]:
    """The verdict and the sentence that states it, from the trend test at ALPHA and the shape test:
    an interior peak or trough outranks the rank correlation, which cannot see one."""
    m, p = trend.metric, trend.parameter
    significant = trend.p < ALPHA
    moves = "increases" if trend.rho > 0 else "decreases"
    turns = " and ".join(f"its mean {kind} at {p} = {{{{{fid}}}}}" for kind, fid in trend.turns)
    if direction == "no_effect":
        if turns:
            return "refuted", (f"The final value of {m} changes with {p} ({turns}), contrary to the expected "
                               "absence of an effect")
        if significant:
            return "refuted", f"The final value of {m} {moves} significantly with {p}, contrary to the expected absence of an effect"
        if trend.d is None:
            return "inconclusive", (f"No significant trend of final {m} with {p}, but Cohen's d between the extremes "
                                    "is not defined (their runs barely vary), so the size of the gap cannot be judged")
        if abs(trend.d) < NO_EFFECT_D:
            return "supported", (f"No significant trend of final {m} with {p}, and the extremes differ by less "
                                 "than half a pooled standard deviation")
        return "inconclusive", (f"No significant trend of final {m} with {p}, but the extremes differ by at least "
                                "half a pooled standard deviation, so an effect cannot be ruled out")
    if turns:
        return "non-monotonic", (f"The final value of {m} is non-monotonic in {p} ({turns}, beyond both ends of the "
                                 f"range), so it does not simply {direction} with {p}")
    expected = "increases" if direction == "increase" else "decreases"
    if significant and moves == expected:
        return "supported", f"The final value of {m} {moves} significantly with {p}, as expected"
    if significant:
        return "refuted", f"The final value of {m} {moves} significantly with {p}, opposite to the expected {direction}"
    return "inconclusive", f"No significant trend of final {m} with {p} (expected an {direction})"


def _evidence(trend: Trend) -> str:
    ids = trend.ids
    runs = f" across {{{{{ids['runs']}}}}} runs" if ids.get("runs") else " across the runs with a defined value"
    parts = [f"Spearman rho = {{{{{ids['rho']}}}}} (p = {{{{{ids['p']}}}}}){runs}"]
    if ids.get("slope"):
        parts.append(f"OLS slope = {{{{{ids['slope']}}}}} per unit of {trend.parameter}")
    if ids.get("diff"):
        gap = f"highest minus lowest {trend.parameter}: {{{{{ids['diff']}}}}}"
        if ids.get("d"):
            gap += f" (Cohen's d = {{{{{ids['d']}}}}})"
        elif trend.d is None:
            gap += " (Cohen's d not defined: the runs at either end barely vary)"
        parts.append(gap)
    return "; ".join(parts)


def _problem_reason(trend: Trend, fact_ids: list[str]) -> str:
    m, p = trend.metric, trend.parameter
    value = f" ({{{{{fact_ids[0]}}}}})" if fact_ids else ""
    return {
        "parameter missing": f"The parameter {p} is not recorded in the simulation data, so no trend could be tested.",
        "all nan": f"Final {m} is undefined (NaN) in every run, so no trend could be tested.",
        "single value": f"Only one value of {p} was run, so there is no variation to test final {m} against.",
        "constant": f"Final {m} takes the same value{value} in every run, so no trend with {p} can be estimated.",
        "too few runs": f"Too few runs have a defined final {m} to test a trend with {p}.",
        "test failed": f"The trend test of final {m} against {p} gave no finite result.",
    }[trend.problem]


def _metric_fact_ids(facts: FactTable, metric: str) -> list[str]:
    return [f.id for f in facts.facts if f.source.startswith(f"final.parquet: metric={metric}, condition=")]


def _low_power(trend: Trend | None, test: HypothesisTest | None) -> bool:
    """An inconclusive verdict that more seeds could plausibly settle (not a structural problem)."""
    if trend is None or test is None or trend.problem:
        return False
    if test.direction == "no_effect":
        # not significant but the effect is not small: the interval is too wide (with no variance to
        # measure the effect against, more seeds would not help)
        return trend.d is not None
    return ALPHA <= trend.p < LOW_POWER_P or trend.min_n < MIN_SEEDS


# ---------------------------------------------------------------------------------------------
# Figures


def _figures(run_dir: Path, data: RunData, design: ExperimentDesign, trends: dict[tuple[str, str], Trend],
             notes: list[str]) -> list[Figure]:
    figures: list[Figure] = []
    seeds = seed_phrase(data.seeds_per_condition())
    scenario = design.scenario
    for metric in tested_metrics(design):
        if not np.isfinite(data.metrics.loc[data.metrics["metric"] == metric, "value"]).any():
            continue  # missing or undefined everywhere: nothing to draw (already noted)
        rel = f"figures/timeseries_{_slug(metric)}.png"
        plot_timeseries(data.metrics, metric, run_dir / rel, title=f"{metric} over time ({scenario})",
                        condition_order=data.conditions, bounds=data.bounds_of(metric))
        caption = (f"Scenario {scenario}: {metric} over time, one line per value of {design.swept_parameter}; "
                   f"lines are means over {seeds} per condition and shaded bands are 95% confidence "
                   "intervals (Student t).")
        if is_ragged(data.metrics, metric):
            caption += " Runs that stopped early are held at their last value (forward-filled) to the longest run."
            notes.append(f"Time-series figure of {metric}: runs that stopped early were forward-filled "
                         "to the longest run.")
        figures.append(Figure(id=f"fig{len(figures) + 1}", path=rel, caption=caption, kind="timeseries"))
    for (parameter, metric), trend in trends.items():
        if trend.problem in ("parameter missing", "all nan"):
            continue
        suffix = "" if parameter == design.swept_parameter else f"_by_{_slug(parameter)}"
        rel = f"figures/sweep_{_slug(metric)}{suffix}.png"
        plot_sweep(data.final_values(metric).rename(columns={"y": metric}), f"param.{parameter}", metric,
                   run_dir / rel, title=f"Final {metric} vs {parameter} ({scenario})", bounds=trend.bounds)
        caption = (f"Scenario {scenario}: final {metric} against {parameter}; markers are means over {seeds} "
                   "per value with 95% confidence-interval error bars (Student t), faint dots are "
                   "individual seeds.")
        figures.append(Figure(id=f"fig{len(figures) + 1}", path=rel, caption=caption, kind="sweep"))
    return figures


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "metric"
