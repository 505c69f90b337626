"""Effect statistics behind each verdict: the trend test of a metric against a parameter, the gap
between the extremes (Welch interval, Cohen's d) and interior peaks or troughs.

Split from researcher.analysis; it records its numbers in researcher.facts' table and is read by
the stage's verdicts, so it imports the facts module and never the stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from reports.models import format_number
from researcher.facts import LEVEL, Bounds, FactTable, RunData, interval_method, round_off
from simulator import UNBOUNDED, mean_ci

SD_TOL = 1e-6  # a pooled SD below this fraction of the metric's scale leaves Cohen's d not defined


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
    scale: float = 0.0  # the metric's magnitude (see RunData.scale)
    bounds: Bounds = UNBOUNDED
    turns: list[tuple[str, str]] = field(default_factory=list)  # ("peaks" or "troughs", location fact id)
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


def cohens_d(low: np.ndarray, high: np.ndarray, scale: float | None = None) -> float | None:
    """(mean(high) - mean(low)) / pooled SD; None (not defined) when the pooled SD is below SD_TOL of
    the metric's `scale` (default: the largest |value| given), where the ratio measures round-off
    (a d of -105 from two near-constant groups), not an effect."""
    a, b = np.asarray(low, float), np.asarray(high, float)
    dof = len(a) + len(b) - 2
    if dof <= 0:
        return None
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1 if len(a) > 1 else 0)
                        + (len(b) - 1) * b.var(ddof=1 if len(b) > 1 else 0)) / dof)
    scale = float(np.abs(np.concatenate([a, b])).max()) if scale is None else scale
    if pooled <= SD_TOL * scale or pooled == 0:
        return None
    return float(b.mean() - a.mean()) / pooled


def measure_trend(data: RunData, parameter: str, metric: str, facts: FactTable, notes: list[str]) -> Trend:
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
    trend.scale, trend.bounds = data.scale(metric), data.bounds_of(metric)
    counts = runs.groupby("x")["y"].size()
    trend.min_n = int(counts.min()) if len(counts) else 0
    trend.problem = _trend_problem(runs, counts, metric, parameter, notes, trend.scale)
    if trend.problem:
        return trend
    _extremes(runs, trend, facts)
    _turns(runs, trend, facts)
    _correlation(runs, trend, facts)
    if not (trend.ids.get("rho") and trend.ids.get("p")):
        trend.problem = "test failed"
        notes.append(f"The trend test of {metric} against {parameter} gave no finite result.")
    return trend


def _trend_problem(runs: pd.DataFrame, counts: pd.Series, metric: str, parameter: str,
                   notes: list[str], scale: float) -> str | None:
    if runs.empty:
        return "all nan"  # noted once per metric by metric_facts
    if len(counts) < 2:
        notes.append(f"Only one value of {parameter} was run; no trend of {metric} can be tested.")
        return "single value"
    y = runs["y"].to_numpy()
    if np.ptp(y) <= round_off(scale):
        notes.append(f"Final {metric} is the same in every run: the scenario does not move it, so no "
                     f"trend against {parameter} can be estimated.")
        return "constant"
    if len(runs) < 3:
        notes.append(f"Too few runs with a defined final {metric} to test a trend against {parameter}.")
        return "too few runs"
    return None


def _extremes(runs: pd.DataFrame, trend: Trend, facts: FactTable) -> None:
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
        f"param.{p}={format_number(x_low)}, Welch 95% CI", ci=(lo, hi), n=len(low) + len(high), scale=trend.scale)
    trend.d = cohens_d(low, high, trend.scale)
    if trend.d is not None:
        trend.ids["d"] = facts.add(
            f"Cohen's d of final {m} between {between}", trend.d,
            f"final.parquet: metric={m}, (mean at param.{p}={format_number(x_high)} minus mean at "
            f"param.{p}={format_number(x_low)}) / pooled SD", n=len(low) + len(high))


def _turns(runs: pd.DataFrame, trend: Trend, facts: FactTable) -> None:
    """An interior peak (trough): the highest (lowest) mean at an inner parameter value whose 95% CI
    lies wholly above (below) the CIs at both ends. Separate intervals are stricter than a test at
    ALPHA, so a turn is never claimed from noise; unlike a significant quadratic term, a curve that
    rises and then levels off is not taken for one that turns."""
    groups = [(float(x), *mean_ci(y, LEVEL, trend.bounds)) for x, y in runs.groupby("x")["y"]]
    if len(groups) < 3 or min(g[4] for g in groups) < 2:
        return  # a single seed's "interval" is a point: no evidence of a turn
    first, last, inner = groups[0], groups[-1], groups[1:-1]
    top, bottom = max(inner, key=lambda g: g[1]), min(inner, key=lambda g: g[1])
    if top[2] > max(first[3], last[3]):  # its CI's low end above both ends' high ends
        _add_turn(trend, facts, "peaks", top[0], first[0], last[0], len(runs))
    if bottom[3] < min(first[2], last[2]):
        _add_turn(trend, facts, "troughs", bottom[0], first[0], last[0], len(runs))


def _add_turn(trend: Trend, facts: FactTable, kind: str, at: float, start: float, end: float, n: int) -> None:
    p, m = trend.parameter, trend.metric
    side, extreme = ("above", "highest") if kind == "peaks" else ("below", "lowest")
    fid = facts.add(
        f"Value of {p} at which mean final {m} {kind} (its 95% CI lies {side} the CIs at both ends of the {p} range)",
        at, f"final.parquet: metric={m} vs param.{p}, means per value of {p} with {interval_method(trend.bounds)}; "
        f"the inner value with the {extreme} mean, its CI {side} those at param.{p}={format_number(start)} and "
        f"param.{p}={format_number(end)}", n=n)
    if fid:
        trend.turns.append((kind, fid))
        trend.ids[kind] = fid


def _correlation(runs: pd.DataFrame, trend: Trend, facts: FactTable) -> None:
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
        ci=(fit.slope - half, fit.slope + half), n=n, scale=trend.scale / max(float(np.ptp(x)), 1e-300))
