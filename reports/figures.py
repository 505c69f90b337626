"""Figures from the simulation data: metric over time per condition, final value against a parameter.

Figures are drawn on a bare Agg canvas (no pyplot, no display, no global state), with the
Okabe-Ito palette, and written atomically. The same data gives the same PNG bytes.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from scipy import stats

from societas.runs import atomic_write_bytes

DPI = 120
SIZE = (7.0, 4.2)
# Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
LINESTYLES = ("-", "--", "-.", ":")


ANY_VALUE = (-np.inf, np.inf)


def t_interval(values: np.ndarray, level: float = 0.95,
               bounds: tuple[float, float] = ANY_VALUE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column-wise mean and Student-t interval of a (runs x points) array, NaNs ignored.

    Where only one run has a value the interval is the point itself; the interval is clipped to the
    metric's possible range `bounds`, as in `simulator.stats.mean_ci`, so figure and facts agree.
    """
    x = np.asarray(values, dtype=float)
    n = np.isfinite(x).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(x, axis=0) / np.where(n > 0, n, np.nan)
        dev = np.where(np.isfinite(x), x - mean, 0.0)
        sd = np.sqrt((dev**2).sum(axis=0) / np.where(n > 1, n - 1, np.nan))
        tcrit = stats.t.ppf(0.5 + level / 2, np.where(n > 1, n - 1, np.nan))
        half = np.where(n > 1, tcrit * sd / np.sqrt(n), 0.0)
    # Never past the mean, which round-off can put a hair outside the range (error bars must be >= 0).
    low = np.fmin(np.fmax(mean - half, bounds[0]), mean)
    return mean, low, np.fmax(np.fmin(mean + half, bounds[1]), mean)


def forward_filled_runs(metrics: pd.DataFrame, metric: str, condition: str, steps: np.ndarray) -> np.ndarray:
    """(seeds x steps) values of one metric in one condition; a run that stopped early keeps its last value."""
    rows = metrics[(metrics["metric"] == metric) & (metrics["condition"] == condition)]
    wide = rows.pivot_table(index="step", columns="seed", values="value", aggfunc="last", dropna=False)
    wide = wide.reindex(steps)
    last_step = rows.groupby("seed")["step"].max().reindex(wide.columns)
    filled = wide.ffill()
    # Fill only past each run's end; a NaN inside a run stays a NaN.
    beyond = np.asarray(steps)[:, None] > last_step.to_numpy()[None, :]
    return np.where(beyond, filled.to_numpy(), wide.to_numpy()).T


def is_ragged(metrics: pd.DataFrame, metric: str | None = None) -> bool:
    """Whether runs end at different steps (so time-series plots forward-fill the shorter ones)."""
    rows = metrics if metric is None else metrics[metrics["metric"] == metric]
    ends = rows.groupby(["condition", "seed"])["step"].max()
    return ends.nunique() > 1


def plot_timeseries(metrics: pd.DataFrame, metric: str, path: Path, *, title: str,
                    condition_order: list[str] | None = None, bounds: tuple[float, float] = ANY_VALUE) -> Path:
    """Mean of `metric` over seeds per condition with a 95% t-interval band; ragged runs forward-filled."""
    rows = metrics[metrics["metric"] == metric]
    conditions = condition_order or list(dict.fromkeys(rows["condition"]))
    steps = np.sort(rows["step"].unique())
    fig, ax = _new_figure()
    for i, condition in enumerate(c for c in conditions if (rows["condition"] == c).any()):
        values = forward_filled_runs(rows, metric, condition, steps)
        mean, low, high = t_interval(values, bounds=bounds)
        color = PALETTE[i % len(PALETTE)]
        style = LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)]
        ax.fill_between(steps, low, high, color=color, alpha=0.18, linewidth=0)
        ax.plot(steps, mean, color=color, linestyle=style, linewidth=1.8,
                label=f"{condition} (n = {values.shape[0]})")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(title)
    if len(steps):
        ax.set_xlim(steps[0], steps[-1] if steps[-1] > steps[0] else steps[0] + 1)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="condition (seeds)", fontsize=8, title_fontsize=8, frameon=False,
                  loc="center left", bbox_to_anchor=(1.01, 0.5))
    note = "mean over seeds; band: 95% CI"
    if is_ragged(rows):
        note += "; runs that stopped early held at their last value"
    ax.text(0.0, -0.16, note, transform=ax.transAxes, fontsize=7.5, color="#444444", va="top")
    return _save(fig, path)


def plot_sweep(final: pd.DataFrame, parameter: str, metric: str, path: Path, *, title: str,
               bounds: tuple[float, float] = ANY_VALUE) -> Path:
    """Final `metric` against `parameter`: per-value mean with 95% t-interval bars, each seed a faint dot."""
    column = parameter if parameter in final.columns else f"param.{parameter}"
    data = final[[column, metric]].astype(float).dropna()
    xs = np.sort(data[column].unique())
    groups = [data.loc[data[column] == x, metric].to_numpy() for x in xs]
    fig, ax = _new_figure()
    span = float(xs[-1] - xs[0]) if len(xs) > 1 else 1.0
    for x, ys in zip(xs, groups):
        # A fixed spread (not random) keeps overlapping seeds visible and the PNG reproducible.
        offsets = np.linspace(-0.012, 0.012, len(ys)) * span if len(ys) > 1 else np.zeros(len(ys))
        ax.scatter(x + offsets, ys, s=16, color=PALETTE[0], alpha=0.45, linewidths=0, zorder=2)
    if len(xs):
        stats_ = [t_interval(ys[:, None], bounds=bounds) for ys in groups]
        mean = np.array([s[0][0] for s in stats_])
        low = np.array([s[1][0] for s in stats_])
        high = np.array([s[2][0] for s in stats_])
        ax.errorbar(xs, mean, yerr=[mean - low, high - mean], color=PALETTE[3], marker="o", markersize=5,
                    linewidth=1.6, capsize=4, zorder=3, label="mean, 95% CI")
        ax.scatter([], [], s=16, color=PALETTE[0], alpha=0.6, label="one seed")
        ax.legend(fontsize=8, frameon=False, loc="best")
        ax.set_xticks(xs)
        ax.set_xticklabels([_tick(x) for x in xs])
    ax.set_xlabel(parameter.removeprefix("param."))
    ax.set_ylabel(f"final {metric}")
    ax.set_title(title)
    return _save(fig, path)


def _tick(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.3g}"


def _new_figure():
    fig = MplFigure(figsize=SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.title.set_fontsize(11)
    return fig, ax


def _save(fig: MplFigure, path: Path) -> Path:
    path = Path(path)
    buf = BytesIO()
    # No software/version metadata: identical data gives identical bytes.
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    atomic_write_bytes(path, buf.getvalue())
    return path


__all__ = ["plot_timeseries", "plot_sweep", "t_interval", "forward_filled_runs", "is_ragged", "PALETTE"]
