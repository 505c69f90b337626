"""The functions scenario expressions may call: one registry entry per function, with its implementation.

`expr.py` type-checks the arguments and evaluates them; an implementation only computes. The calling
convention depends on the function's kind:

- ``elementwise``: ``impl(*values)`` on the row values (arrays or scalars, broadcast by numpy);
- ``random``: ``impl(u, *values)``, ``u`` the context's uniform [0, 1) draws for the call site,
  shape ``(size,)`` or ``(draws, size)``;
- ``neighbor``: ``impl(ctx, values_all, slot)``, ``values_all`` the argument evaluated over all
  agents; the context reduces it over each row's neighbors;
- ``aggregate``: ``impl(ctx, *values)``, data arguments as arrays over all agents (already filtered
  by the optional ``filter`` argument), ``scalar`` arguments as floats; returns a float.

Argument types: ``number`` (booleans count as 0/1), ``cond`` (a condition; a number is true when
nonzero), ``value`` (a number, condition or categorical code), ``scalar`` (a number that is the same
for every agent: a constant, ``params.x``, ``env.x`` or an aggregate).

To add a function: write the implementation and one `_add(...)` line; `describe_functions()` and the
compiler pick it up. Also here: `reduce_neighbors` and `largest_component_share`, reference
implementations of `EvalContext.neighbor_reduce` and `.regions` over a CSR adjacency.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Any, Callable

import numpy as np

ELEMENTWISE = "elementwise"
RANDOM = "random"
NEIGHBOR = "neighbor"
AGGREGATE = "aggregate"
KINDS = (ELEMENTWISE, RANDOM, NEIGHBOR, AGGREGATE)

NUMBER = "number"
COND = "cond"
VALUE = "value"
SCALAR = "scalar"

FILTER = "filter"  # the optional last parameter of aggregates: a condition selecting the agents
NEIGHBOR_OPS = ("sum", "mean", "count", "max", "min", "random", "same")

# Parameter types follow the parameter's name unless an entry says otherwise.
_TYPE_BY_PARAM = {"cond": COND, FILTER: COND, "q": SCALAR, "tol": SCALAR, "min_share": SCALAR}

_KIND_TITLES = {
    ELEMENTWISE: "Elementwise (per agent)",
    RANDOM: "Random (each call is an independent draw, one value per agent)",
    NEIGHBOR: "Neighbors (argument over all agents, reduced over each agent's neighbors; "
    "no neighbors: mean/share/same/max/min/random give NaN, sum/count 0)",
    AGGREGATE: "Population aggregates (one value for the whole population; NaN ignored; "
    "optional `filter` = condition selecting agents)",
}


@dataclass(frozen=True)
class Function:
    """One callable of the expression language."""

    name: str
    kind: str
    params: tuple[str, ...]
    types: tuple[str, ...]  # per parameter: number | cond | value | scalar
    required: int  # how many leading parameters must be given
    impl: Callable[..., Any]
    description: str
    result: str = NUMBER  # number | bool | like (the type of the value argument(s))
    variadic: bool = False  # the last parameter repeats
    draws: int = 0  # uniforms per row taken from the context (random functions, neighbor_random)
    arities: tuple[int, ...] | None = None  # allowed argument counts, when not every count is
    hint: str = ""  # shown with a wrongly called function

    @property
    def signature(self) -> str:
        required = list(self.params[: self.required])
        optional = list(self.params[self.required :])
        text = ", ".join(required)
        if self.variadic:
            text += ", ..."
        elif optional and self.arities:  # optional parameters that come together
            text += ("[, " if text else "[") + ", ".join(optional) + "]"
        else:
            for name in optional:
                text += f"[, {name}]" if text else f"[{name}]"
        return f"{self.name}({text})"

    def param_type(self, position: int) -> str:
        return self.types[min(position, len(self.types) - 1)]


FUNCTIONS: dict[str, Function] = {}


def _add(name, kind, params, impl, description, *, required=None, types=None, **extra) -> None:
    names = tuple(p.strip() for p in params.split(",") if p.strip())
    kinds = tuple(types) if types else tuple(_TYPE_BY_PARAM.get(p, NUMBER) for p in names)
    FUNCTIONS[name] = Function(
        name=name,
        kind=kind,
        params=names,
        types=kinds,
        required=len(names) if required is None else required,
        impl=impl,
        description=description,
        **extra,
    )


def describe_functions() -> str:
    """A compact reference of every function, grouped by kind: signature and one line each."""
    lines = []
    for kind in KINDS:
        lines.append(f"{_KIND_TITLES[kind]}:")
        for function in FUNCTIONS.values():
            if function.kind == kind:
                lines.append(f"  {function.signature}: {function.description}")
    return "\n".join(lines)


# --- elementwise ------------------------------------------------------------------------------


def _round(x):
    return np.copysign(np.floor(np.abs(x) + 0.5), x)  # halves away from zero, unlike np.round


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _clip(x, lo, hi):
    return np.minimum(np.maximum(x, lo), hi)


_add("abs", ELEMENTWISE, "x", np.abs, "absolute value")
_add("exp", ELEMENTWISE, "x", np.exp, "e to the power x")
_add("log", ELEMENTWISE, "x", np.log, "natural logarithm (log(0) = -inf, negative -> NaN)")
_add("sqrt", ELEMENTWISE, "x", np.sqrt, "square root (negative -> NaN)")
_add("floor", ELEMENTWISE, "x", np.floor, "largest whole number <= x")
_add("ceil", ELEMENTWISE, "x", np.ceil, "smallest whole number >= x")
_add("round", ELEMENTWISE, "x", _round, "nearest whole number, halves away from zero")
_add("sign", ELEMENTWISE, "x", np.sign, "-1, 0 or 1 by the sign of x")
_add("sigmoid", ELEMENTWISE, "x", _sigmoid, "logistic function 1 / (1 + exp(-x))")
_min_max_hint = "for the smallest/largest value over the population use minimum(x)/maximum(x)"
_add("min", ELEMENTWISE, "a, b", lambda *v: reduce(np.minimum, v), "smallest of its arguments, "
     "per agent", variadic=True, hint=_min_max_hint)
_add("max", ELEMENTWISE, "a, b", lambda *v: reduce(np.maximum, v), "largest of its arguments, "
     "per agent", variadic=True, hint=_min_max_hint)
_add("clip", ELEMENTWISE, "x, lo, hi", _clip, "x limited to the interval [lo, hi]")
_add("where", ELEMENTWISE, "cond, a, b", np.where, "a where cond is true, else b (like `a if cond "
     "else b`; a and b may be category labels)", types=(COND, VALUE, VALUE), result="like")


# --- random -----------------------------------------------------------------------------------


def _uniform(u, lo=0.0, hi=1.0):
    return lo + (hi - lo) * u


def _normal(u, mu=0.0, sd=1.0):
    # Box-Muller; 1 - u is in (0, 1], so the logarithm is finite.
    return mu + sd * np.sqrt(-2.0 * np.log1p(-u[0])) * np.cos(2.0 * np.pi * u[1])


def _bernoulli(u, p):
    return u < p


def _randint(u, lo, hi):
    lo, hi = np.ceil(lo), np.ceil(hi)
    return np.where(hi > lo, lo + np.floor(u * (hi - lo)), np.nan)


def _exponential(u, scale=1.0):
    return -scale * np.log1p(-u)


def _pick(u, *conds):
    """Index of a uniformly random true condition per row, -1 where none is true."""
    flags = np.stack(np.broadcast_arrays(u, *conds)[1:]).astype(bool)
    true_count = flags.sum(axis=0)
    wanted = np.floor(u * true_count)  # which of the true ones, 0-based
    index = np.argmax(np.cumsum(flags, axis=0) > wanted, axis=0)
    return np.where(true_count > 0, index, -1).astype(np.float64)


_add("uniform", RANDOM, "lo, hi", _uniform, "uniform random number in [lo, hi), default [0, 1)",
     required=0, arities=(0, 2), draws=1)
_add("random", RANDOM, "lo, hi", _uniform, "same as uniform", required=0, arities=(0, 2), draws=1)
_add("normal", RANDOM, "mu, sd", _normal, "normal random number, default mean 0 and sd 1",
     required=0, arities=(0, 2), draws=2)
_add("bernoulli", RANDOM, "p", _bernoulli, "true with probability p", result="bool", draws=1)
_add("randint", RANDOM, "lo, hi", _randint, "random whole number n with lo <= n < hi (NaN if none)",
     draws=1)
_add("exponential", RANDOM, "scale", _exponential, "exponential random number with mean scale "
     "(default 1)", required=0, draws=1)
_add("pick", RANDOM, "cond", _pick, "0-based position of a uniformly random true argument, -1 if "
     "none is true", variadic=True, draws=1)


# --- neighbors --------------------------------------------------------------------------------


def _reduce(op: str) -> Callable[..., np.ndarray]:
    return lambda ctx, values, slot: ctx.neighbor_reduce(values, op)


def _neighbor_share(ctx, values, slot):
    return ctx.neighbor_reduce(values.astype(np.float64), "mean")


def _neighbor_random(ctx, values, slot):
    return ctx.neighbor_reduce(values, "random", slot=slot)


_add("neighbor_mean", NEIGHBOR, "x", _reduce("mean"), "mean of x over the agent's neighbors")
_add("neighbor_sum", NEIGHBOR, "x", _reduce("sum"), "sum of x over the agent's neighbors")
_add("neighbor_count", NEIGHBOR, "", _reduce("count"), "number of neighbors (degree)")
_add("neighbor_share", NEIGHBOR, "cond", _neighbor_share, "share of neighbors for which cond is "
     "true")
_add("neighbor_max", NEIGHBOR, "x", _reduce("max"), "largest x among the agent's neighbors")
_add("neighbor_min", NEIGHBOR, "x", _reduce("min"), "smallest x among the agent's neighbors")
_add("neighbor_random", NEIGHBOR, "x", _neighbor_random, "x of one uniformly random neighbor "
     "(categorical x: an agent without neighbors keeps its own)", types=(VALUE,), result="like",
     draws=1)
_add("neighbor_same", NEIGHBOR, "x", _reduce("same"), "share of neighbors whose x equals the "
     "agent's own x", types=(VALUE,))


# --- population aggregates --------------------------------------------------------------------


def _present(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[~np.isnan(x)]


def _nan_if_empty(statistic: Callable[[np.ndarray], Any]) -> Callable[..., float]:
    def aggregate(ctx, x):
        values = _present(x)
        return float(statistic(values)) if values.size else float("nan")

    return aggregate


def _sum(ctx, x):
    return float(np.sum(_present(x)))


def _count(ctx, cond):
    return float(np.count_nonzero(cond))


def _share(ctx, cond):
    return float(np.mean(cond)) if np.size(cond) else float("nan")


def _quantile(ctx, x, q):
    values = _present(x)
    if not values.size or not 0.0 <= q <= 1.0:  # also false for a NaN q
        return float("nan")
    return float(np.quantile(values, q))


def _pairwise_abs_sum(sorted_values: np.ndarray) -> float:
    """Sum of |x_i - x_j| over unordered pairs, from sorted values in O(n)."""
    n = sorted_values.size
    return float(np.dot(2.0 * np.arange(n) - n + 1.0, sorted_values))


def _gini(ctx, x):
    """G = sum_i sum_j |x_i - x_j| / (2 n^2 mean); 0 for no values or a zero total."""
    values = np.sort(_present(x))
    total = values.sum()
    if values.size == 0 or total == 0:
        return 0.0
    return _pairwise_abs_sum(values) / (values.size * total)


def _polarization(ctx, x):
    """Mean |x_i - x_j| over unordered pairs i < j; 0 for one value, NaN for none."""
    values = np.sort(_present(x))
    n = values.size
    if n < 2:
        return 0.0 if n == 1 else float("nan")
    return _pairwise_abs_sum(values) / (n * (n - 1) / 2.0)


def _clusters(ctx, x, tol, min_share=0.0):
    values = np.sort(_present(x))
    n = values.size
    if n == 0:
        return 0.0
    cuts = np.flatnonzero(np.diff(values) > tol) + 1
    sizes = np.diff(np.concatenate(([0], cuts, [n])))
    return float(np.count_nonzero(sizes >= min_share * n))


def factorize_rows(columns) -> tuple[np.ndarray, int]:
    """Label each position of equal-length columns by its tuple of values: int64 codes 0..k-1, k.

    NaNs count as one value.
    """
    columns = [np.asarray(c).reshape(-1) for c in columns]
    n = columns[0].size if columns else 0
    codes = np.zeros(n, dtype=np.int64)
    if n == 0:
        return codes, 0
    count = 1
    for column in columns:
        uniques, inverse = np.unique(column, return_inverse=True)
        # Re-factorize after each column so the combined code stays below n * n.
        combined_uniques, codes = np.unique(codes * len(uniques) + inverse.reshape(-1),
                                            return_inverse=True)
        codes, count = codes.reshape(-1).astype(np.int64), len(combined_uniques)
    return codes, count


def _distinct(ctx, *columns):
    return float(factorize_rows(columns)[1])


def _largest_region(ctx, *columns):
    return float(ctx.regions(factorize_rows(columns)[0]))


_add("mean", AGGREGATE, "x, filter", _nan_if_empty(np.mean), "mean of x", required=1)
_add("sum", AGGREGATE, "x, filter", _sum, "sum of x (0 if none)", required=1)
_add("count", AGGREGATE, "cond", _count, "number of agents for which cond is true")
_add("share", AGGREGATE, "cond, filter", _share, "share of agents for which cond is true",
     required=1)
_add("var", AGGREGATE, "x, filter", _nan_if_empty(np.var), "population variance of x", required=1)
_add("std", AGGREGATE, "x, filter", _nan_if_empty(np.std), "population standard deviation of x",
     required=1)
_add("median", AGGREGATE, "x, filter", _nan_if_empty(np.median), "median of x", required=1)
_add("quantile", AGGREGATE, "x, q, filter", _quantile, "q-quantile of x, 0 <= q <= 1 (linear "
     "interpolation)", required=2)
_add("minimum", AGGREGATE, "x, filter", _nan_if_empty(np.min), "smallest x over the population",
     required=1)
_add("maximum", AGGREGATE, "x, filter", _nan_if_empty(np.max), "largest x over the population",
     required=1)
_add("gini", AGGREGATE, "x, filter", _gini, "Gini coefficient of nonnegative x: sum|xi-xj| / "
     "(2 n^2 mean); 0 if empty or all zero", required=1)
_add("polarization", AGGREGATE, "x, filter", _polarization, "mean |xi - xj| over all pairs of "
     "agents", required=1)
_add("clusters", AGGREGATE, "x, tol, min_share", _clusters, "number of groups when the sorted x "
     "are split at gaps > tol, counting groups with at least min_share of the agents (default 0)",
     required=2)
_add("distinct", AGGREGATE, "x", _distinct, "number of distinct combinations of the arguments' "
     "values (e.g. cultures)", types=(VALUE,), variadic=True)
_add("largest_region", AGGREGATE, "x", _largest_region, "share of agents in the largest connected "
     "group of neighbors agreeing on all arguments", types=(VALUE,), variadic=True)


# --- reference reductions for EvalContext implementations -------------------------------------


def reduce_neighbors(indptr, indices, rows, values_all, op: str, u=None) -> np.ndarray:
    """`EvalContext.neighbor_reduce` over a CSR adjacency: reduce `values_all` over each row's neighbors.

    `rows` are the rows' agent indices; `u` the rows' uniform draws (op "random" only).
    """
    indptr, indices = np.asarray(indptr), np.asarray(indices)
    values_all, rows = np.asarray(values_all), np.asarray(rows, dtype=np.intp)
    starts = indptr[rows]
    degree = indptr[rows + 1] - starts
    has = degree > 0
    if op == "count":
        return degree.astype(np.float64)
    if op == "random":
        offset = np.minimum(np.floor(np.asarray(u) * degree).astype(np.intp), degree - 1)
        out = np.full(rows.size, np.nan)
        out[has] = values_all[indices[(starts + offset)[has]]]
        return out
    segment = np.repeat(np.arange(rows.size), degree)
    first = np.cumsum(degree) - degree
    neighbors = indices[np.repeat(starts, degree) + np.arange(degree.sum()) - first[segment]]
    values = values_all[neighbors]
    if op == "same":
        values, op = values == values_all[rows][segment], "mean"
    values = values.astype(np.float64)
    if op in ("sum", "mean"):
        total = np.bincount(segment, weights=values, minlength=rows.size)
        if op == "sum":
            return total
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / degree
    if op in ("max", "min"):
        out = np.full(rows.size, np.nan)
        ufunc = np.maximum if op == "max" else np.minimum
        if values.size:
            out[has] = ufunc.reduceat(values, first[has])
        return out
    raise ValueError(f"unknown neighbor op {op!r}; expected one of {NEIGHBOR_OPS}")


def largest_component_share(indptr, indices, keys) -> float:
    """`EvalContext.regions` over a CSR adjacency: share of agents in the largest connected
    component of the graph keeping only edges whose endpoints have equal keys."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    keys = np.asarray(keys)
    n = keys.size
    if n == 0:
        return float("nan")
    indptr, indices = np.asarray(indptr), np.asarray(indices)
    source = np.repeat(np.arange(n), np.diff(indptr))
    keep = keys[source] == keys[indices]
    graph = csr_matrix((np.ones(int(keep.sum())), (source[keep], indices[keep])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return float(np.bincount(labels).max() / n)
