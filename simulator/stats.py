"""Small statistics over seeds, shared by the CLI summary and the analysis stage."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float, int]:
    """Mean and a Student-t confidence interval over independent runs (NaNs dropped).

    Returns (mean, low, high, n); with one value the interval is the point itself.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    m = float(x.mean())
    if n == 1:
        return m, m, m, 1
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return m, m - half, m + half, n
