"""Intervals stay inside what a quantity can be: shares of runs, bounded metrics, figure bands."""

import math

import numpy as np
import pytest
from scipy import stats

from reports.figures import t_interval
from simulator.stats import mean_ci, metric_bounds, wilson_interval


def test_wilson_interval_stays_in_zero_to_one_at_the_edges():
    assert wilson_interval(10, 10) == (pytest.approx(0.7225, abs=1e-4), 1.0)
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    low, high = wilson_interval(5, 10)
    assert low < 0.5 < high and (low, high) == pytest.approx((1 - high, 1 - low))  # symmetric at one half


@pytest.mark.parametrize("expression, bounds", [
    ("share(state == 'S')", (0, 1)),
    ("1 - share(state == 'S')", (0, 1)),
    ("abs(share(vote == 'yes') - 0.5) * 2", (0, 1)),
    ("mean(neighbor_same(group))", (0, 1)),
    ("share(a) == 0 or share(a) == 1", (0, 1)),
    ("polarization(opinion)", (0, math.inf)),
    ("mean(wealth)", (-math.inf, math.inf)),  # nothing known of an attribute's range
    ("sum(w, w > 1) / sum(w)", (-math.inf, math.inf)),
    ("not valid (", (-math.inf, math.inf)),
])
def test_metric_bounds_follow_the_expression(expression, bounds):
    assert metric_bounds(expression) == bounds


def test_mean_ci_and_figure_bands_are_clipped_to_the_metric_range():
    values = np.array([1.0, 1.0, 1.0, 0.9, 1.0])
    plain = stats.t.interval(0.95, 4, loc=values.mean(), scale=stats.sem(values))
    assert plain[1] > 1  # the unclipped interval leaves [0, 1]
    mean, low, high, n = mean_ci(values, bounds=(0.0, 1.0))
    assert (mean, low, high, n) == (pytest.approx(values.mean()), pytest.approx(plain[0]), 1.0, 5)
    band = t_interval(values[:, None], bounds=(0.0, 1.0))
    assert (band[1][0], band[2][0]) == (pytest.approx(low), 1.0)
