"""Figures: time series with CI bands per condition, final value against the swept parameter."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from scipy import stats

from reports.figures import forward_filled_runs, is_ragged, plot_sweep, plot_timeseries, t_interval
from simulator.stats import mean_ci


def metrics_frame(ends: dict[tuple[str, int], int]) -> pd.DataFrame:
    """One metric, value = step + seed, each run ending at its own last step."""
    parts = [pd.DataFrame({"condition": c, "seed": s, "step": np.arange(end + 1), "metric": "share",
                           "value": np.arange(end + 1, dtype=float) + s})
             for (c, s), end in ends.items()]
    return pd.concat(parts, ignore_index=True)


def final_frame() -> pd.DataFrame:
    rows = [{"condition": f"x={x}", "seed": s, "param.x": x, "share": x + 0.1 * s} for x in (1, 2, 3) for s in range(4)]
    return pd.DataFrame(rows)


def test_ragged_runs_are_forward_filled_in_plots(tmp_path):
    metrics = metrics_frame({("a", 0): 10, ("a", 1): 6, ("b", 0): 10})
    metrics.loc[(metrics["seed"] == 0) & (metrics["step"] == 3) & (metrics["condition"] == "a"), "value"] = np.nan
    steps = np.arange(11)
    values = forward_filled_runs(metrics, "share", "a", steps)
    assert values.shape == (2, 11)
    assert np.all(values[1, 7:] == 7.0)  # seed 1 ended at step 6 with value 7: held there
    assert np.isnan(values[0, 3])  # a NaN inside a run is not filled
    assert is_ragged(metrics) and not is_ragged(metrics[metrics["seed"] == 0])
    path = plot_timeseries(metrics, "share", tmp_path / "ts.png", title="share over time")
    assert imread(path).ndim == 3


def test_t_interval_matches_scipy_and_simulator_stats():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 3))
    mean, low, high = t_interval(x)
    for j in range(3):
        expected = stats.t.interval(0.95, 4, loc=x[:, j].mean(), scale=stats.sem(x[:, j]))
        assert (low[j], high[j]) == pytest.approx(expected)
        assert (mean[j], low[j], high[j]) == pytest.approx(mean_ci(x[:, j])[:3])
    one = t_interval(np.array([[2.0, np.nan], [np.nan, np.nan]]))
    assert one[0][0] == one[1][0] == one[2][0] == 2.0 and np.isnan(one[0][1])


def test_plots_are_valid_deterministic_pngs(tmp_path):
    metrics = metrics_frame({(c, s): 20 for c in ("x=1", "x=2", "x=3") for s in range(3)})
    a = plot_timeseries(metrics, "share", tmp_path / "a.png", title="t", condition_order=["x=3", "x=1", "x=2"])
    b = plot_timeseries(metrics, "share", tmp_path / "sub" / "b.png", title="t", condition_order=["x=3", "x=1", "x=2"])
    assert a.read_bytes() == b.read_bytes()
    s1 = plot_sweep(final_frame(), "x", "share", tmp_path / "s1.png", title="final share vs x")
    s2 = plot_sweep(final_frame(), "param.x", "share", tmp_path / "s2.png", title="final share vs x")
    assert s1.read_bytes() == s2.read_bytes()
    for path in (a, s1):
        image = imread(path)
        assert image.ndim == 3 and image.shape[1] > 500
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


def test_constant_and_single_condition_data_still_plot(tmp_path):
    final = pd.DataFrame({"condition": ["x=1"] * 3, "seed": [0, 1, 2], "param.x": [1.0] * 3, "share": [0.5] * 3})
    assert imread(plot_sweep(final, "x", "share", tmp_path / "s.png", title="flat")).ndim == 3
    metrics = metrics_frame({("x=1", 0): 5})
    metrics["value"] = 0.5
    assert imread(plot_timeseries(metrics, "share", tmp_path / "t.png", title="flat")).ndim == 3
