"""Small statistics over seeds, shared by the CLI summary and the analysis stage.

Intervals never leave what a quantity can be: `mean_ci` clips to the metric's possible range
(`metric_bounds`, read from its expression), and a share of runs gets a Wilson interval.
"""

from __future__ import annotations

import ast
import math

import numpy as np
from scipy import stats

Bounds = tuple[float, float]
UNBOUNDED: Bounds = (-math.inf, math.inf)
_UNIT: Bounds = (0.0, 1.0)
_NONNEGATIVE: Bounds = (0.0, math.inf)
# What each aggregate or neighbor function can return, whatever its arguments (simulator/functions.py).
_FUNCTION_BOUNDS: dict[str, Bounds] = {
    "share": _UNIT, "largest_region": _UNIT, "gini": _UNIT, "neighbor_share": _UNIT, "neighbor_same": _UNIT,
    "bernoulli": _UNIT, "sigmoid": _UNIT,
    "count": _NONNEGATIVE, "var": _NONNEGATIVE, "std": _NONNEGATIVE, "polarization": _NONNEGATIVE,
    "clusters": _NONNEGATIVE, "distinct": _NONNEGATIVE, "neighbor_count": _NONNEGATIVE, "exp": _NONNEGATIVE,
}
# Functions whose value lies within the range of their first argument.
_WITHIN_ARGUMENT = {"mean", "median", "quantile", "minimum", "maximum", "neighbor_mean", "round"}


def mean_ci(values, level: float = 0.95, bounds: Bounds = UNBOUNDED) -> tuple[float, float, float, int]:
    """Mean and a Student-t confidence interval over independent runs (NaNs dropped).

    Returns (mean, low, high, n); with one value the interval is the point itself. The interval is
    clipped to `bounds`, the metric's possible range: the true mean lies in that range, so clipping
    never loses coverage, and unlike a logit interval it works when every run sits at 0 or 1.
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
    low, high = bounds  # never past the mean, which round-off can put a hair outside the range
    return m, min(max(m - half, low), m), max(min(m + half, high), m), n


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a share k/n: inside [0, 1] and sensible at 0 of n and n of n."""
    if n <= 0:
        return math.nan, math.nan
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # At 0 of n (n of n) the bound is exactly 0 (1); round-off would leave 1e-17 (0.99999...).
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


def metric_bounds(expression: str) -> Bounds:
    """The range a metric expression can take, by interval arithmetic over its syntax tree.

    Only what the expression guarantees counts (share(...) is in [0, 1], 1 - share(...) too, a
    comparison is 0 or 1); anything not understood is unbounded, so no interval is clipped wrongly.
    The text is parsed, never evaluated.
    """
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError):
        return UNBOUNDED
    return _bounds(tree.body)


def _bounds(node: ast.AST) -> Bounds:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value), float(node.value)
    if isinstance(node, (ast.Compare, ast.BoolOp)) or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
        return _UNIT
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        low, high = _bounds(node.operand)
        return -high, -low
    if isinstance(node, ast.BinOp):
        return _binary(node)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return _call(node.func.id, node.args)
    return UNBOUNDED


def _binary(node: ast.BinOp) -> Bounds:
    (a, b), (c, d) = _bounds(node.left), _bounds(node.right)
    if isinstance(node.op, ast.Add):
        return a + c, b + d
    if isinstance(node.op, ast.Sub):
        return a - d, b - c
    if isinstance(node.op, ast.Mult) and all(map(math.isfinite, (a, b, c, d))):
        products = (a * c, a * d, b * c, b * d)
        return min(products), max(products)
    return UNBOUNDED


def _call(name: str, args: list[ast.expr]) -> Bounds:
    if name in _FUNCTION_BOUNDS:
        return _FUNCTION_BOUNDS[name]
    if name in _WITHIN_ARGUMENT and args:
        return _bounds(args[0])
    if name == "abs" and args:
        low, high = _bounds(args[0])
        return (low if low >= 0 else -high if high <= 0 else 0.0), max(abs(low), abs(high))
    if name == "clip" and len(args) == 3:
        return _bounds(args[1])[0], _bounds(args[2])[1]
    return UNBOUNDED
