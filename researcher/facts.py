"""The run data and the facts table the analysis stage builds from it: per-condition means,
convergence (settling) and the round-off rules every fact goes through.

Split from researcher.analysis so the stage module holds only the stage and its verdicts; the
effect statistics (researcher.effects) and the stage both build on this module, never the reverse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reports.models import Fact, FactUnit, format_number
from researcher.schemas import ExperimentDesign
from simulator import UNBOUNDED, mean_ci, wilson_interval

CONVERGENCE_TAIL = 0.10  # a run has settled when, over at least its last 10% of steps, ...
CONVERGENCE_TOL = 0.01  # ... it stays within 1% of the metric's range (over all runs) of its final value
LEVEL = 0.95
ROUND_OFF = 1e-9  # a value within this fraction of its metric's scale is floating-point noise: it is 0
Bounds = tuple[float, float]


def round_off(scale: float) -> float:
    """How near 0 a quantity of magnitude `scale` must be to be floating-point noise (shown as 0).

    Relative to the scale, so a polarization of -1.6e-18 among values near 0.3 is 0; absolute
    below a scale of ROUND_OFF, where every value of the metric is noise.
    """
    return ROUND_OFF * scale if scale > ROUND_OFF else ROUND_OFF


def _snap(x: float | None, scale: float | None) -> float | None:
    if scale is None or x is None or not math.isfinite(x):
        return x
    return 0.0 if abs(x) <= round_off(scale) else x


def interval_method(bounds: Bounds) -> str:
    limits = " and ".join(f"{word} {format_number(bound)}" for word, bound in zip(("at least", "at most"), bounds)
                          if math.isfinite(bound))
    return "Student-t 95% CI" + (f" clipped to the metric's possible range ({limits})" if limits else "")


# ---------------------------------------------------------------------------------------------
# Facts


class FactTable:
    """Numbers in order of addition, ids F1, F2, ...; a non-finite value is never a fact."""

    def __init__(self) -> None:
        self.facts: list[Fact] = []

    def add(self, description: str, value: float, source: str, *, ci: tuple[float, float] | None = None,
            n: int | None = None, unit: FactUnit = "value", scale: float | None = None) -> str | None:
        """`scale`: the magnitude of the quantity (in metric units); values within round-off of 0 become 0."""
        if value is None or not math.isfinite(value):
            return None
        low, high = ci if ci is not None and all(map(_finite, ci)) else (None, None)
        value, low, high = (_snap(x, scale) for x in (value, low, high))
        fact = Fact(id=f"F{len(self.facts) + 1}", description=description, value=float(value),
                    ci_low=low, ci_high=high, n=n, unit=unit, source=source)
        self.facts.append(fact)
        return fact.id


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


@dataclass
class RunData:
    """The two tables plus what the analysis asks of them repeatedly."""

    metrics: pd.DataFrame
    final: pd.DataFrame
    design: ExperimentDesign
    bounds: dict[str, Bounds] = field(default_factory=dict)  # metric -> its possible range
    conditions: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.conditions = self._condition_order()

    def bounds_of(self, metric: str) -> Bounds:
        return self.bounds.get(metric, UNBOUNDED)

    def scale(self, metric: str) -> float:
        """The metric's magnitude: its largest |value| over all runs and steps, final values included."""
        values = np.concatenate([self.metrics.loc[self.metrics["metric"] == metric, "value"].to_numpy(float),
                                 self.final_values(metric)["y"].to_numpy(float)])
        values = values[np.isfinite(values)]
        return float(np.abs(values).max()) if len(values) else 0.0

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


def describe_runs(data: RunData, facts: FactTable) -> str | None:
    """Facts on the experiment's size; returns the id of the number of runs."""
    seeds = data.seeds_per_condition()
    runs_id = facts.add(f"Simulation runs ({len(seeds)} conditions of {data.design.swept_parameter}, each under "
              f"{seed_phrase(seeds)})", float(len(data.final)),
              "final.parquet: number of rows (one per condition and seed)", unit="count")
    facts.add("Seeds per condition" + (" (fewest in any condition)" if seeds.nunique() > 1 else ""),
              float(seeds.min()) if len(seeds) else math.nan,
              "final.parquet: distinct seeds per condition, minimum over conditions", unit="count")
    if len(data.metrics):
        facts.add("Steps in the longest run", float(data.metrics["step"].max()),
                  "metrics.parquet: largest step over all runs", unit="steps")
    return runs_id


def seed_phrase(seeds: pd.Series) -> str:
    if len(seeds) and seeds.nunique() == 1:
        return f"{int(seeds.iloc[0])} seeds"
    return f"{int(seeds.min()) if len(seeds) else 0} to {int(seeds.max()) if len(seeds) else 0} seeds"


def tested_metrics(design: ExperimentDesign) -> list[str]:
    return list(dict.fromkeys(t.metric for t in design.tests if t.testable and t.metric))


def metric_facts(data: RunData, metric: str, facts: FactTable, notes: list[str]) -> None:
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
    scale, bounds = data.scale(metric), data.bounds_of(metric)
    for condition in data.conditions:
        values = runs.loc[runs["condition"] == condition, "y"]
        mean, low, high, n = mean_ci(values, LEVEL, bounds)
        facts.add(f"Mean final {metric} at {data.label(condition)} over {n} seeds", mean,
                  f"final.parquet: metric={metric}, condition={condition}, mean over {n} seeds, "
                  + interval_method(bounds), ci=(low, high), n=n, scale=scale)
    _convergence(data, metric, facts, notes)


SETTLE_RULE = "stayed within 1% of its range of its final value for at least the last 10% of its steps"


@dataclass(frozen=True)
class Settling:
    """When one run entered its settle band for good, and whether that was early enough to count."""

    step: float  # first step after which it stays in the band; a run that has not settled: its last step
    settled: bool


def settle_time(steps: np.ndarray, values: np.ndarray, band: float) -> Settling | None:
    """Time to settle of one run (sorted by step): the first step after which the metric stays within
    `band` of its final value. It has settled when that leaves at least the last CONVERGENCE_TAIL of
    its steps; otherwise it counts at its last step, a lower bound. None: too short to judge."""
    keep = np.isfinite(values)
    steps, values = np.asarray(steps, float)[keep], np.asarray(values, float)[keep]
    if len(steps) < 2 or steps[-1] - steps[0] < 1:
        return None
    outside = np.flatnonzero(np.abs(values - values[-1]) > band)
    first = float(steps[outside[-1] + 1]) if len(outside) else float(steps[0])
    tail_start = steps[-1] - max(1, math.ceil(CONVERGENCE_TAIL * (steps[-1] - steps[0])))
    settled = first <= tail_start
    return Settling(first if settled else float(steps[-1]), bool(settled))


def _convergence(data: RunData, metric: str, facts: FactTable, notes: list[str]) -> None:
    """The share of runs that settled (Wilson interval) and, per condition, the time to settle."""
    rows = data.metrics[data.metrics["metric"] == metric]
    values = rows["value"].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return
    band = CONVERGENCE_TOL * float(np.ptp(values))
    runs: dict[tuple[str, int], Settling] = {}
    for key, run in rows.sort_values("step").groupby(["condition", "seed"], sort=True):
        found = settle_time(run["step"].to_numpy(), run["value"].to_numpy(dtype=float), band)
        if found is not None:
            runs[key] = found
    if not runs:
        notes.append(f"Convergence of {metric} could not be judged: runs are too short.")
        return
    settled = sum(s.settled for s in runs.values())
    fid = facts.add(f"Share of runs in which {metric} settled ({SETTLE_RULE})", settled / len(runs),
                    f"metrics.parquet: metric={metric}, all runs; per run, the first step after which it stays "
                    "within 1% of the range over all runs and steps of its final value; Wilson 95% CI",
                    ci=wilson_interval(settled, len(runs), LEVEL), n=len(runs), unit="share")
    for condition in data.conditions:
        _settle_steps(data, metric, condition, [s for (c, _), s in runs.items() if c == condition], facts)
    if settled < len(runs):
        order = {c: i for i, c in enumerate(data.conditions)}
        unsettled = sorted({c for (c, _), s in runs.items() if not s.settled},
                           key=lambda c: (order.get(c, len(order)), c))
        notes.append(f"{metric} had not settled in every run (share settled: {{{{{fid}}}}}; unsettled in "
                     f"{', '.join(unsettled)}): final values may still drift, and longer runs would make "
                     "them more reliable.")


def _settle_steps(data: RunData, metric: str, condition: str, runs: list[Settling], facts: FactTable) -> None:
    """Mean steps to settle over the seeds of one condition; runs that never settled are counted."""
    if not runs:
        return
    mean, low, high, n = mean_ci([s.step for s in runs], LEVEL, (0.0, math.inf))
    open_runs = sum(not s.settled for s in runs)
    counted = (f"; {open_runs} of {n} runs had not settled and count at their last step, so this is a lower bound"
               if open_runs else "")
    facts.add(f"Steps until {metric} settled at {data.label(condition)} (mean over {n} seeds{counted})", mean,
              f"metrics.parquet: metric={metric}, condition={condition}; per run, the first step after which "
              f"it stays within 1% of the range over all runs and steps of its final value; mean over {n} "
              "seeds, Student-t 95% CI", ci=(low, high), n=n, unit="steps")
