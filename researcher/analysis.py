"""The analysis stage: simulation data in; facts, verdicts and figures out. Statistics, never an LLM.

Every number a report may print is a `Fact` with an id (F1, F2, ... in a fixed order) and a
`source` that says which file, metric, filter and statistic it came from. Verdicts are decided
by a trend test (Spearman rank correlation of the final metric against the swept parameter
across all runs, two-sided, alpha = 0.05) and explained in sentences that cite facts by
placeholder (`{{F7}}`), never by raw number.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from reports.figures import is_ragged, plot_sweep, plot_timeseries
from reports.models import Fact, Figure, Verdict, format_number
from researcher.schemas import ExperimentDesign, Hypothesis, HypothesisTest, ResearchPlan
from simulator import mean_ci
from societas.errors import SocietasError
from societas.runs import atomic_write_text

FINDINGS_FILE = "findings.json"
ALPHA = 0.05
LOW_POWER_P = 0.3  # an inconclusive trend with ALPHA <= p < this may resolve with more seeds
MIN_SEEDS = 5  # fewer seeds per parameter value than this is low power on its own
NO_EFFECT_D = 0.5  # |Cohen's d| between the extreme values below this counts as "no effect"
CONVERGENCE_TAIL = 0.10  # the last 10% of a run's steps ...
CONVERGENCE_TOL = 0.01  # ... must move by less than 1% of the metric's range over all runs
LEVEL = 0.95


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
    data = _Data(metrics, final, design)
    facts = _FactTable()
    notes: list[str] = []
    runs_id = _describe_runs(data, facts)
    tested = _tested_metrics(design)
    for metric in tested:
        _metric_facts(data, metric, facts, notes)
    trends: dict[tuple[str, str], Trend] = {}
    for test in design.tests:
        if test.testable and test.metric and data.has_metric(test.metric):
            key = (_parameter(test, design), test.metric)
            if key not in trends:
                trends[key] = _trend(data, *key, facts, notes)
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


# ---------------------------------------------------------------------------------------------
# Facts


class _FactTable:
    """Numbers in order of addition, ids F1, F2, ...; a non-finite value is never a fact."""

    def __init__(self) -> None:
        self.facts: list[Fact] = []

    def add(self, description: str, value: float, source: str, *, ci: tuple[float, float] | None = None,
            n: int | None = None, unit: str = "") -> str | None:
        if value is None or not math.isfinite(value):
            return None
        low, high = ci if ci is not None and all(map(_finite, ci)) else (None, None)
        fact = Fact(id=f"F{len(self.facts) + 1}", description=description, value=float(value),
                    ci_low=low, ci_high=high, n=n, unit=unit, source=source)
        self.facts.append(fact)
        return fact.id


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


@dataclass
class _Data:
    """The two tables plus what the analysis asks of them repeatedly."""

    metrics: pd.DataFrame
    final: pd.DataFrame
    design: ExperimentDesign
    conditions: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.conditions = self._condition_order()

    def _condition_order(self) -> list[str]:
        names = list(dict.fromkeys(self.final["condition"]))
        column = f"param.{self.design.swept_parameter}"
        if column not in self.final.columns:
            return names
        value = self.final.groupby("condition", sort=False)[column].first()
        return sorted(names, key=lambda c: (float(value[c]), names.index(c)))

    def has_metric(self, metric: str) -> bool:
        return metric in self.final.columns or metric in set(self.metrics["metric"])

    def final_values(self, metric: str) -> pd.DataFrame:
        """One row per run: condition, seed, param.* columns and y, the metric's final value."""
        keep = ["condition", "seed"] + [c for c in self.final.columns if c.startswith("param.")]
        runs = self.final[keep].copy()
        if metric in self.final.columns:
            runs["y"] = pd.to_numeric(self.final[metric], errors="coerce").astype(float)
            return runs
        rows = self.metrics[self.metrics["metric"] == metric].sort_values("step")
        last = rows.groupby(["condition", "seed"])["value"].last().rename("y").reset_index()
        return runs.merge(last, on=["condition", "seed"], how="left")

    def label(self, condition: str) -> str:
        """'epsilon = 0.1' when the swept parameter is recorded, else the condition's name."""
        column = f"param.{self.design.swept_parameter}"
        values = self.final.loc[self.final["condition"] == condition, column] if column in self.final else []
        if len(values) and values.nunique() == 1:
            return f"{self.design.swept_parameter} = {format_number(float(values.iloc[0]))}"
        return f"condition {condition}"

    def seeds_per_condition(self) -> pd.Series:
        return self.final.groupby("condition")["seed"].nunique()


def _describe_runs(data: _Data, facts: _FactTable) -> str | None:
    """Facts on the experiment's size; returns the id of the number of runs."""
    seeds = data.seeds_per_condition()
    runs_id = facts.add(f"Simulation runs ({len(seeds)} conditions of {data.design.swept_parameter}, each under "
              f"{_seed_phrase(seeds)})", float(len(data.final)),
              "final.parquet: number of rows (one per condition and seed)")
    facts.add("Seeds per condition" + (" (fewest in any condition)" if seeds.nunique() > 1 else ""),
              float(seeds.min()) if len(seeds) else math.nan,
              "final.parquet: distinct seeds per condition, minimum over conditions")
    if len(data.metrics):
        facts.add("Steps in the longest run", float(data.metrics["step"].max()),
                  "metrics.parquet: largest step over all runs")
    return runs_id


def _seed_phrase(seeds: pd.Series) -> str:
    if len(seeds) and seeds.nunique() == 1:
        return f"{int(seeds.iloc[0])} seeds"
    return f"{int(seeds.min()) if len(seeds) else 0} to {int(seeds.max()) if len(seeds) else 0} seeds"


def _tested_metrics(design: ExperimentDesign) -> list[str]:
    return list(dict.fromkeys(t.metric for t in design.tests if t.testable and t.metric))


def _metric_facts(data: _Data, metric: str, facts: _FactTable, notes: list[str]) -> None:
    """Per condition: the mean final value with its t interval; then the metric's convergence."""
    if not data.has_metric(metric):
        notes.append(f"The metric {metric} named by the design is not in the simulation data "
                     f"(recorded: {', '.join(sorted(set(data.metrics['metric'])))}).")
        return
    runs = data.final_values(metric)
    undefined = int(runs["y"].isna().sum())
    if undefined == len(runs):
        notes.append(f"Final {metric} is undefined (NaN) in every run; it cannot be analysed.")
    elif undefined:
        notes.append(f"Final {metric} is undefined (NaN) in {undefined} of {len(runs)} runs; "
                     "those runs are left out of its statistics.")
    for condition in data.conditions:
        values = runs.loc[runs["condition"] == condition, "y"]
        mean, low, high, n = mean_ci(values, LEVEL)
        facts.add(f"Mean final {metric} at {data.label(condition)} over {n} seeds", mean,
                  f"final.parquet: metric={metric}, condition={condition}, mean over {n} seeds, "
                  "Student-t 95% CI", ci=(low, high), n=n)
    _convergence(data, metric, facts, notes)


def _convergence(data: _Data, metric: str, facts: _FactTable, notes: list[str]) -> None:
    rows = data.metrics[data.metrics["metric"] == metric]
    values = rows["value"].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return
    tolerance = CONVERGENCE_TOL * float(np.ptp(values))
    settled: dict[tuple[str, int], bool] = {}
    for key, run in rows.sort_values("step").groupby(["condition", "seed"], sort=True):
        verdict = _run_settled(run["step"].to_numpy(), run["value"].to_numpy(dtype=float), tolerance)
        if verdict is not None:
            settled[key] = verdict
    if not settled:
        notes.append(f"Convergence of {metric} could not be judged: runs are too short.")
        return
    share = sum(settled.values()) / len(settled)
    fid = facts.add(f"Share of runs in which {metric} settled (moved by less than 1% of its range "
                    "over the last 10% of steps)", share,
                    f"metrics.parquet: metric={metric}, all runs; per run, range over the last 10% of its "
                    "steps compared with 1% of the range over all runs and steps", n=len(settled))
    if share < 1:
        unsettled = sorted({c for (c, _), ok in settled.items() if not ok}, key=lambda c: (c not in data.conditions, data.conditions.index(c) if c in data.conditions else 0, c))
        notes.append(f"{metric} had not settled in every run (share settled: {{{{{fid}}}}}; unsettled in "
                     f"{', '.join(unsettled)}): final values may still drift, and longer runs would make "
                     "them more reliable.")


def _run_settled(steps: np.ndarray, values: np.ndarray, tolerance: float) -> bool | None:
    """Whether one run moved by at most `tolerance` over its last 10% of steps (None: too short)."""
    span = steps.max() - steps.min() if len(steps) else 0
    if span < 1:
        return None
    start = steps.max() - max(1, math.ceil(CONVERGENCE_TAIL * span))
    tail = values[(steps >= start) & np.isfinite(values)]
    if len(tail) < 2:
        return None
    return bool(np.ptp(tail) <= tolerance)


# ---------------------------------------------------------------------------------------------
# Trend tests


@dataclass
class Trend:
    """The statistics behind one (parameter, metric) test, and the fact ids that carry them."""

    parameter: str
    metric: str
    problem: str | None = None
    rho: float = math.nan
    p: float = math.nan
    d: float | None = None
    n: int = 0
    min_n: int = 0
    all_runs: bool = True
    ids: dict[str, str | None] = field(default_factory=dict)


def welch_interval(low: np.ndarray, high: np.ndarray, level: float = LEVEL) -> tuple[float, float | None, float | None]:
    """mean(high) - mean(low) with a Welch (unequal variances) t interval; no interval below 2 runs each."""
    a, b = np.asarray(low, float), np.asarray(high, float)
    diff = float(b.mean() - a.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, None, None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se <= 1e-12 * max(1.0, abs(diff)):
        return diff, diff, diff
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return diff, diff - half, diff + half


def cohens_d(low: np.ndarray, high: np.ndarray) -> float | None:
    """(mean(high) - mean(low)) / pooled SD; 0 when nothing varies, None when only the means differ."""
    a, b = np.asarray(low, float), np.asarray(high, float)
    dof = len(a) + len(b) - 2
    diff = float(b.mean() - a.mean())
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1 if len(a) > 1 else 0)
                        + (len(b) - 1) * b.var(ddof=1 if len(b) > 1 else 0)) / dof) if dof > 0 else 0.0
    scale = 1e-12 * max(1.0, abs(float(a.mean())), abs(float(b.mean())))
    if pooled <= scale:
        return 0.0 if abs(diff) <= scale else None
    return diff / pooled


def _trend(data: _Data, parameter: str, metric: str, facts: _FactTable, notes: list[str]) -> Trend:
    trend = Trend(parameter, metric)
    column = f"param.{parameter}"
    if column not in data.final.columns:
        trend.problem = "parameter missing"
        notes.append(f"The parameter {parameter} is not recorded in final.parquet; its hypotheses "
                     "cannot be tested.")
        return trend
    runs = data.final_values(metric)
    runs = runs.assign(x=pd.to_numeric(runs[column], errors="coerce"))
    runs = runs[np.isfinite(runs["x"]) & np.isfinite(runs["y"])]
    trend.n, trend.all_runs = len(runs), len(runs) == len(data.final)
    counts = runs.groupby("x")["y"].size()
    trend.min_n = int(counts.min()) if len(counts) else 0
    trend.problem = _trend_problem(runs, counts, metric, parameter, notes)
    if trend.problem:
        return trend
    _extremes(runs, trend, facts)
    _correlation(runs, trend, facts)
    if not (trend.ids.get("rho") and trend.ids.get("p")):
        trend.problem = "test failed"
        notes.append(f"The trend test of {metric} against {parameter} gave no finite result.")
    return trend


def _trend_problem(runs: pd.DataFrame, counts: pd.Series, metric: str, parameter: str,
                   notes: list[str]) -> str | None:
    if runs.empty:
        return "all nan"  # noted once per metric by _metric_facts
    if len(counts) < 2:
        notes.append(f"Only one value of {parameter} was run; no trend of {metric} can be tested.")
        return "single value"
    y = runs["y"].to_numpy()
    if np.ptp(y) <= 1e-12 * max(1.0, float(np.abs(y).max())):
        notes.append(f"Final {metric} is the same in every run: the scenario does not move it, so no "
                     f"trend against {parameter} can be estimated.")
        return "constant"
    if len(runs) < 3:
        notes.append(f"Too few runs with a defined final {metric} to test a trend against {parameter}.")
        return "too few runs"
    return None


def _extremes(runs: pd.DataFrame, trend: Trend, facts: _FactTable) -> None:
    """Highest minus lowest parameter value: the difference of means and Cohen's d."""
    x_low, x_high = runs["x"].min(), runs["x"].max()
    low = runs.loc[runs["x"] == x_low, "y"].to_numpy()
    high = runs.loc[runs["x"] == x_high, "y"].to_numpy()
    p, m = trend.parameter, trend.metric
    between = f"{p} = {format_number(x_high)} and {p} = {format_number(x_low)}"
    diff, lo, hi = welch_interval(low, high)
    trend.ids["diff"] = facts.add(
        f"Difference in mean final {m} between {between} (highest minus lowest)", diff,
        f"final.parquet: metric={m}, mean at param.{p}={format_number(x_high)} minus mean at "
        f"param.{p}={format_number(x_low)}, Welch 95% CI", ci=(lo, hi), n=len(low) + len(high))
    trend.d = cohens_d(low, high)
    if trend.d is not None:
        trend.ids["d"] = facts.add(
            f"Cohen's d of final {m} between {between}", trend.d,
            f"final.parquet: metric={m}, (mean at param.{p}={format_number(x_high)} minus mean at "
            f"param.{p}={format_number(x_low)}) / pooled SD", n=len(low) + len(high))


def _correlation(runs: pd.DataFrame, trend: Trend, facts: _FactTable) -> None:
    """Spearman rho (the verdict's test) and an OLS slope with its t interval, over all runs."""
    p, m, n = trend.parameter, trend.metric, len(runs)
    x, y = runs["x"].to_numpy(float), runs["y"].to_numpy(float)
    result = stats.spearmanr(x, y)
    trend.rho, trend.p = float(result.statistic), float(result.pvalue)
    over = f"over {n} runs" if trend.all_runs else f"over the {n} runs with a defined value"
    trend.ids["rho"] = facts.add(f"Spearman rank correlation of final {m} with {p}", trend.rho,
                                 f"final.parquet: metric={m} vs param.{p}, Spearman rho {over}", n=n)
    trend.ids["p"] = facts.add(f"p-value of the Spearman correlation of final {m} with {p}", trend.p,
                               f"final.parquet: metric={m} vs param.{p}, two-sided p of Spearman rho {over}",
                               n=n)
    fit = stats.linregress(x, y)
    half = float(stats.t.ppf(0.5 + LEVEL / 2, n - 2)) * float(fit.stderr)
    trend.ids["slope"] = facts.add(
        f"OLS slope of final {m} per unit of {p}", float(fit.slope),
        f"final.parquet: metric={m} vs param.{p}, scipy.stats.linregress slope {over}, t-based 95% CI",
        ci=(fit.slope - half, fit.slope + half), n=n)


# ---------------------------------------------------------------------------------------------
# Verdicts


def _parameter(test: HypothesisTest, design: ExperimentDesign) -> str:
    return (test.parameter or design.swept_parameter).removeprefix("param.")


def _test_for(h: Hypothesis, design: ExperimentDesign) -> HypothesisTest | None:
    return _test_for_id(h.id, design)


def _test_for_id(hypothesis_id: str, design: ExperimentDesign) -> HypothesisTest | None:
    return next((t for t in design.tests if t.hypothesis_id == hypothesis_id), None)


def _verdict(h: Hypothesis, test: HypothesisTest | None, design: ExperimentDesign, data: _Data,
             trends: dict[tuple[str, str], Trend], facts: _FactTable) -> Verdict:
    base = dict(hypothesis_id=h.id, statement=h.statement)
    if test is None:
        return Verdict(**base, verdict="untestable",
                       reason="The experiment design did not map this hypothesis to a parameter and a metric.")
    if not test.testable:
        return Verdict(**base, verdict="untestable", parameter=test.parameter, metric=test.metric,
                       reason=test.reason or "The design judged this hypothesis untestable in the scenario.")
    parameter = _parameter(test, design)
    base.update(parameter=parameter, metric=test.metric)
    if not test.metric:
        return Verdict(**base, verdict="untestable", reason="The design names no metric for this hypothesis.")
    if not data.has_metric(test.metric):
        return Verdict(**base, verdict="inconclusive",
                       reason=f"The metric {test.metric} is not in the simulation data, so the hypothesis "
                              "could not be tested.")
    trend = trends[(parameter, test.metric)]
    if trend.problem:
        cited = _metric_fact_ids(facts, test.metric)[:1] if trend.problem == "constant" else []
        return Verdict(**base, verdict="inconclusive", reason=_problem_reason(trend, cited), fact_ids=cited)
    kind, claim = _decide(test.direction, trend)
    return Verdict(**base, verdict=kind, reason=f"{claim}: {_evidence(trend)}.",
                   fact_ids=sorted((i for i in trend.ids.values() if i), key=lambda i: int(i[1:])))


def _decide(direction: str, trend: Trend) -> tuple[str, str]:
    """The verdict and the sentence that states it, from the trend test at ALPHA."""
    m, p = trend.metric, trend.parameter
    significant = trend.p < ALPHA
    moves = "increases" if trend.rho > 0 else "decreases"
    if direction == "no_effect":
        if significant:
            return "refuted", f"The final value of {m} {moves} significantly with {p}, contrary to the expected absence of an effect"
        if trend.d is not None and abs(trend.d) < NO_EFFECT_D:
            return "supported", (f"No significant trend of final {m} with {p}, and the extremes differ by less "
                                 "than half a pooled standard deviation")
        return "inconclusive", (f"No significant trend of final {m} with {p}, but the extremes differ by at least "
                                "half a pooled standard deviation, so an effect cannot be ruled out")
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


def _metric_fact_ids(facts: _FactTable, metric: str) -> list[str]:
    return [f.id for f in facts.facts if f.source.startswith(f"final.parquet: metric={metric}, condition=")]


def _low_power(trend: Trend | None, test: HypothesisTest | None) -> bool:
    """An inconclusive verdict that more seeds could plausibly settle (not a structural problem)."""
    if trend is None or test is None or trend.problem:
        return False
    if test.direction == "no_effect":
        return True  # not significant but the effect is not small: the interval is too wide
    return ALPHA <= trend.p < LOW_POWER_P or trend.min_n < MIN_SEEDS


# ---------------------------------------------------------------------------------------------
# Figures


def _figures(run_dir: Path, data: _Data, design: ExperimentDesign, trends: dict[tuple[str, str], Trend],
             notes: list[str]) -> list[Figure]:
    figures: list[Figure] = []
    seeds = _seed_phrase(data.seeds_per_condition())
    scenario = design.scenario
    for metric in _tested_metrics(design):
        if not np.isfinite(data.metrics.loc[data.metrics["metric"] == metric, "value"]).any():
            continue  # missing or undefined everywhere: nothing to draw (already noted)
        rel = f"figures/timeseries_{_slug(metric)}.png"
        plot_timeseries(data.metrics, metric, run_dir / rel, title=f"{metric} over time ({scenario})",
                        condition_order=data.conditions)
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
                   run_dir / rel, title=f"Final {metric} vs {parameter} ({scenario})")
        caption = (f"Scenario {scenario}: final {metric} against {parameter}; markers are means over {seeds} "
                   "per value with 95% confidence-interval error bars (Student t), faint dots are "
                   "individual seeds.")
        figures.append(Figure(id=f"fig{len(figures) + 1}", path=rel, caption=caption, kind="sweep"))
    return figures


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "metric"
