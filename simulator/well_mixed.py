"""The well-mixed population: everyone is everyone else's neighbor, and nothing is stored per pair."""

from __future__ import annotations

import numpy as np

from simulator.errors import SpecError
from simulator.space import as_rows, match_inputs, order_by, pick_index, reduce_args, value_of_random_neighbor


class WellMixed:
    """Everyone is everyone else's neighbor; nothing is stored per pair."""

    def __init__(self, n: int) -> None:
        if int(n) < 0:
            raise SpecError(f"a population needs n >= 0 agents, got {n}")
        self.n = int(n)

    def __repr__(self) -> str:
        return f"WellMixed(n={self.n})"

    def degree(self, rows=None) -> np.ndarray:
        rows = as_rows(rows)
        size = self.n if rows is None else rows.size
        return np.full(size, max(self.n - 1, 0), dtype=np.int64)

    def neighbor_reduce(self, values, op: str, rows=None, u=None) -> np.ndarray:
        rows, values = reduce_args(self, values, op, rows, u)
        if values is None:  # op == "count": the degree, whatever the values
            return self.degree(rows).astype(np.float64)
        own = values if rows is None else values[rows]
        others = self.n - 1
        if op == "random":
            return value_of_random_neighbor(self, values, rows, u)
        if others <= 0:
            fill = 0.0 if op in ("sum", "count") else np.nan
            return np.full(own.size, fill)
        if op in ("sum", "mean"):
            x = values.astype(np.float64, copy=False)
            total = x.sum() - own.astype(np.float64)
            return total / others if op == "mean" else total
        if op in ("max", "min"):
            return _extreme_of_others(values.astype(np.float64, copy=False), own, op)
        return self._same(values, rows) / others

    def _same(self, values: np.ndarray, rows) -> np.ndarray:
        """Number of other agents sharing each row's value."""
        # equal_nan=False: NaN equals nothing, as with == on a network
        _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True, equal_nan=False)
        inverse = inverse.reshape(-1)
        equal = counts[inverse if rows is None else inverse[rows]] - 1
        return equal.astype(np.float64)

    def random_neighbor(self, rows, u) -> np.ndarray:
        rows = as_rows(rows).astype(np.int64)
        u = np.asarray(u, dtype=np.float64)
        if u.shape != rows.shape:
            raise ValueError(f"u must have one uniform per row: shape {rows.shape}, got {u.shape}")
        if self.n < 2:
            return np.full(rows.size, -1, dtype=np.int64)
        other = pick_index(u, np.int64(self.n - 1))
        other += other >= rows  # skip oneself
        return other

    def match_neighbors(self, candidates, coin, pick, prio) -> tuple[np.ndarray, np.ndarray]:
        """Candidates in order of ``prio`` (ties: id); the first half is paired with the second."""
        candidates, coin, pick, prio = match_inputs(self.n, candidates, coin, pick, prio)
        ids = np.flatnonzero(candidates)
        order = ids[order_by(prio[ids], ids)]
        half = order.size // 2
        initiators, partners = order[:half], order[half : 2 * half]
        by_initiator = np.argsort(initiators)
        return initiators[by_initiator].astype(np.int64), partners[by_initiator].astype(np.int64)

    def largest_region(self, labels) -> float:
        """All agents with one label form one region: the share of the commonest label."""
        if self.n == 0:
            return float("nan")
        _, counts = np.unique(np.asarray(labels), return_counts=True)
        return float(counts.max()) / self.n

    def memory_bytes(self) -> int:
        return 0


def _extreme_of_others(values: np.ndarray, own: np.ndarray, op: str) -> np.ndarray:
    """Max (min) of everyone but oneself: the top value, or the runner-up for its sole holder.

    As on a network, a NaN among the others makes the result NaN.
    """
    sign = 1.0 if op == "max" else -1.0
    signed, own_signed = sign * values, sign * own.astype(np.float64)
    nan = np.isnan(signed)
    finite = signed[~nan]
    top = finite.max() if finite.size else np.nan
    holders = np.count_nonzero(finite == top)
    below = finite[finite < top]
    runner_up = below.max() if below.size else (top if holders > 1 else np.nan)
    out = np.where((own_signed == top) & (holders == 1), runner_up, top)
    out[np.count_nonzero(nan) - np.isnan(own_signed) > 0] = np.nan
    return sign * out
