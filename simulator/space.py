"""Where agents are and who their neighbors are: the interface every space implements, neighbor
lists, and networks.

Agents are the integer ids ``0..n-1``; every method takes and returns numpy arrays. The three
spaces share one interface, :class:`Space`: a network (:class:`NetworkSpace`, here), a grid
(`simulator.grid`) and the well-mixed population (`simulator.well_mixed`). Networks and grids
both reduce to a neighbor list in CSR form (``indptr``, ``indices``), so every operation is
written once, in :class:`NeighborLists`; the helpers below it (rows, checks, random picks,
tie-broken orders) serve every space.

Random choices come in as uniforms the engine draws from ``rng.Stream`` per agent (or per
cell), so every result is a pure function of the state and those draws, however the agents
are split across processes.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

__all__ = ["Space", "NetworkSpace", "NeighborLists", "REDUCE_OPS", "NEIGHBORHOODS"]

REDUCE_OPS = ("sum", "mean", "count", "max", "min", "random", "same")
# Offsets (dx, dy) of the neighboring cells.
NEIGHBORHOODS = {
    "von_neumann": ((0, -1), (-1, 0), (1, 0), (0, 1)),
    "moore": ((-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)),
}


@runtime_checkable
class Space(Protocol):
    """Who is whose neighbor; ``rows`` are agent ids (or a boolean mask), None meaning everyone."""

    n: int

    def neighbor_reduce(
        self, values: np.ndarray, op: str, rows: np.ndarray | None = None, u: np.ndarray | None = None
    ) -> np.ndarray:
        """``values`` (length n) reduced over each row's neighbors: float64, one per row.

        sum; mean; count (the number of neighbors: ``values`` is ignored, count true ones with
        sum); max; min; random (the value of a uniformly chosen neighbor, ``u`` one uniform per
        row); same (share of neighbors whose value equals the row's own). With no neighbors:
        sum and count 0, the others NaN.
        """
        ...

    def random_neighbor(self, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
        """A uniformly chosen neighbor id per row (``u``: one uniform per row); -1 if it has none."""
        ...

    def degree(self, rows: np.ndarray | None = None) -> np.ndarray: ...

    def match_neighbors(
        self, candidates: np.ndarray, coin: np.ndarray, pick: np.ndarray, prio: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Disjoint (initiator, partner) pairs of neighboring candidates, sorted by initiator."""
        ...

    def largest_region(self, labels: np.ndarray) -> float: ...

    def memory_bytes(self) -> int: ...


def as_rows(rows) -> np.ndarray | None:
    """Rows as agent ids (None: everyone). A slice is a run of ids (a shard's own rows); spaces
    with a faster path for runs check for one before calling this."""
    if rows is None:
        return None
    if isinstance(rows, slice):
        return np.arange(rows.start, rows.stop)
    rows = np.asarray(rows)
    if rows.dtype == bool:
        return np.flatnonzero(rows)
    if rows.dtype.kind not in "iu":
        raise ValueError(f"rows must be agent ids (integers) or a boolean mask, got {rows.dtype}")
    return rows


def reduce_args(space, values, op: str, rows, u) -> tuple[np.ndarray | None, np.ndarray | None]:
    """`neighbor_reduce`'s common checks: (rows as ids or None, values as an array; None for count)."""
    _check_op(op, u)
    rows = as_rows(rows)
    if op == "count":
        return rows, None
    values = np.asarray(values)
    if values.shape != (space.n,):
        raise ValueError(f"values must have shape ({space.n},), got {values.shape}")
    return rows, values


def _check_op(op: str, u) -> None:
    if op not in REDUCE_OPS:
        raise ValueError(f"unknown neighbor reduction {op!r}; expected one of {', '.join(REDUCE_OPS)}")
    if op == "random" and u is None:
        raise ValueError("neighbor_reduce(op='random') needs u, one uniform per row")


def value_of_random_neighbor(space: "Space", values: np.ndarray, rows, u) -> np.ndarray:
    ids = space.random_neighbor(np.arange(space.n) if rows is None else rows, u)
    out = values[np.maximum(ids, 0)].astype(np.float64)
    out[ids < 0] = np.nan
    return out


def pick_index(u: np.ndarray, count: np.ndarray) -> np.ndarray:
    """floor(u * count) as int64, kept below count (which may be 0: the caller masks those)."""
    pick = (np.asarray(u, dtype=np.float64) * count).astype(np.int64)
    return np.minimum(pick, np.maximum(count - 1, 0), out=pick)


def _segment_reduce(ufunc: np.ufunc, x: np.ndarray, indptr: np.ndarray, empty: float) -> np.ndarray:
    """``ufunc`` over each segment ``x[indptr[i]:indptr[i+1]]``; ``empty`` for empty segments."""
    out = np.full(indptr.size - 1, empty, dtype=np.float64)
    starts = indptr[:-1]
    nonempty = starts < indptr[1:]
    if x.size:
        # reduceat over the starts of nonempty segments only: each then runs to the next start,
        # which is exactly its own end because the empty segments in between hold nothing.
        out[nonempty] = ufunc.reduceat(x, starts[nonempty])
    return out


class NeighborLists:
    """Every operation of :class:`Space` on a neighbor list in CSR form.

    Subclasses provide ``n`` and ``_lists()``, returning ``(indptr, indices, matrix)``:
    row ``i``'s neighbors are ``indices[indptr[i]:indptr[i+1]]`` and ``matrix`` is the same
    structure as a float64 ``csr_matrix`` of ones (sums are sparse mat-vecs, the fastest path).
    """

    n: int

    def _lists(self) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
        raise NotImplementedError

    # -- the public interface ------------------------------------------------------------------

    def degree(self, rows=None) -> np.ndarray:
        indptr = self._lists()[0]
        if isinstance(rows, slice):
            return np.diff(indptr[rows.start : rows.stop + 1]).astype(np.int64)
        rows = as_rows(rows)
        if rows is None:
            return np.diff(indptr).astype(np.int64)
        return (indptr[rows + 1] - indptr[rows]).astype(np.int64)

    def neighbor_reduce(self, values, op: str, rows=None, u=None) -> np.ndarray:
        if isinstance(rows, slice) and op in ("random", "sum", "mean", "count"):  # a run: views, no gathers
            _check_op(op, u)
            if op == "count":
                return self.degree(rows).astype(np.float64)
            if op == "random":
                return value_of_random_neighbor(self, np.asarray(values), rows, u)
            return self._sum_like(np.asarray(values), op, rows)
        rows, values = reduce_args(self, values, op, rows, u)
        if values is None:  # op == "count": the degree, whatever the values
            return self.degree(rows).astype(np.float64)
        if op == "random":
            return value_of_random_neighbor(self, values, rows, u)
        if op in ("sum", "mean"):
            return self._sum_like(values, op, rows)
        # max / min / same gather along edges; for most rows at once it is cheaper to do all.
        if rows is not None and rows.size * 3 < self.n:
            return self._gather_reduce(values, op, rows)
        full = self._gather_reduce(values, op, None)
        return full if rows is None else full[rows]

    def random_neighbor(self, rows, u) -> np.ndarray:
        indptr, indices, _ = self._lists()
        if isinstance(rows, slice):
            start = indptr[rows.start : rows.stop].astype(np.int64)
            deg = indptr[rows.start + 1 : rows.stop + 1] - start
        else:
            rows = as_rows(rows)
            start = indptr[rows].astype(np.int64)
            deg = indptr[rows + 1] - start
        u = np.asarray(u, dtype=np.float64)
        if u.shape != start.shape:
            raise ValueError(f"u must have one uniform per row: shape {start.shape}, got {u.shape}")
        out = np.full(start.size, -1, dtype=np.int64)
        has = deg > 0
        out[has] = indices[start[has] + pick_index(u[has], deg[has])]
        return out

    def match_neighbors(self, candidates, coin, pick, prio) -> tuple[np.ndarray, np.ndarray]:
        """Candidates with ``coin < 0.5`` propose to one uniformly chosen neighboring candidate
        with ``coin >= 0.5`` (chosen by ``pick``); each receiver takes the proposer of lowest
        ``prio`` (ties: lowest id). Returns (initiators, partners), sorted by initiator."""
        candidates, coin, pick, prio = match_inputs(self.n, candidates, coin, pick, prio)
        initiators = np.flatnonzero(candidates & (coin < 0.5))
        receiver = candidates & (coin >= 0.5)
        indptr, nbrs = self._rows_lists(initiators)
        eligible = receiver[nbrs]
        counts = _segment_counts(eligible, indptr)
        proposing = counts > 0
        # A proposer's eligible edges are eligible_at[first:first + count].
        first = np.cumsum(counts) - counts
        eligible_at = np.flatnonzero(eligible)
        chosen = eligible_at[first[proposing] + pick_index(pick[initiators[proposing]], counts[proposing])]
        return _accept_lowest_prio(initiators[proposing], nbrs[chosen].astype(np.int64), prio, self.n)

    def largest_region(self, labels) -> float:
        """Share of agents in the largest component of the graph of equal-label neighbors."""
        labels = np.asarray(labels)
        if self.n == 0:
            return float("nan")
        indptr, indices, _ = self._lists()
        same = labels[indices] == np.repeat(labels, np.diff(indptr))
        kept_indptr = np.concatenate(([0], np.cumsum(_segment_counts(same, indptr))))
        kept = indices[same]
        graph = sp.csr_matrix((np.ones(kept.size, dtype=np.int8), kept, kept_indptr), shape=(self.n, self.n))
        _, component = connected_components(graph, directed=False)
        return float(np.bincount(component).max()) / self.n

    # -- internals -----------------------------------------------------------------------------

    def _sum_like(self, values: np.ndarray, op: str, rows) -> np.ndarray:
        _, _, matrix = self._lists()
        x = values.astype(np.float64, copy=False)
        if isinstance(rows, slice):
            matrix = _row_block(matrix, rows)
        elif rows is not None:
            run = _as_range(rows)
            # A contiguous run of ids (a shard's own rows): a view of those rows, nothing copied.
            matrix = _row_block(matrix, run) if run is not None else matrix[rows]
        total = matrix @ x
        if op != "mean":
            return total
        deg = self.degree(rows)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(deg > 0, total / np.maximum(deg, 1), np.nan)

    def _gather_reduce(self, values: np.ndarray, op: str, rows) -> np.ndarray:
        indptr, nbrs = self._rows_lists(rows)
        around = values[nbrs]
        if op == "max":
            return _segment_reduce(np.maximum, around.astype(np.float64, copy=False), indptr, np.nan)
        if op == "min":
            return _segment_reduce(np.minimum, around.astype(np.float64, copy=False), indptr, np.nan)
        own = values if rows is None else values[rows]
        deg = np.diff(indptr)
        equal = around == np.repeat(own, deg)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(deg > 0, _segment_counts(equal, indptr) / np.maximum(deg, 1), np.nan)

    def _rows_lists(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """(indptr, neighbor ids) restricted to ``rows`` (all if None), without touching other rows."""
        indptr, indices, _ = self._lists()
        if rows is None:
            return indptr, indices
        start = indptr[rows].astype(np.int64)
        deg = indptr[rows + 1] - start
        sub_indptr = np.zeros(rows.size + 1, dtype=np.int64)
        np.cumsum(deg, out=sub_indptr[1:])
        # Edge positions: each row's run start..start+deg, laid end to end.
        positions = np.repeat(start - sub_indptr[:-1], deg)
        positions += np.arange(sub_indptr[-1], dtype=np.int64)
        return sub_indptr, indices[positions]


def _as_range(rows: np.ndarray) -> slice | None:
    """``rows`` as a slice when they are consecutive ascending ids, else None."""
    if rows.size < 2 or int(rows[-1]) - int(rows[0]) + 1 != rows.size:
        return None
    return slice(int(rows[0]), int(rows[-1]) + 1) if bool(np.all(np.diff(rows) == 1)) else None


def _row_block(matrix: sp.csr_matrix, run: slice) -> sp.csr_matrix:
    """Rows ``run`` of a CSR matrix sharing its data and indices (only indptr is new)."""
    start, stop = run.start, run.stop
    indptr = matrix.indptr[start : stop + 1]
    lo, hi = int(indptr[0]), int(indptr[-1])
    return sp.csr_matrix((matrix.data[lo:hi], matrix.indices[lo:hi], (indptr - lo).astype(matrix.indices.dtype)),
                         shape=(stop - start, matrix.shape[1]), copy=False)


def _segment_counts(mask: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Number of True entries of ``mask`` in each CSR segment, as int64."""
    running = np.zeros(mask.size + 1, dtype=np.int32 if mask.size < 2**31 else np.int64)
    np.cumsum(mask, out=running[1:])
    return (running[indptr[1:]] - running[indptr[:-1]]).astype(np.int64)


def order_by(key: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Indices sorting ``key`` ascending, equal keys by ``ids``: the same order however computed."""
    order = np.argsort(key)  # the fast unstable sort; ties (rare for 53-bit uniforms) fixed below
    ordered = key[order]
    if np.any(ordered[1:] == ordered[:-1]):
        return np.lexsort((ids, key))
    return order


def match_inputs(n: int, candidates, coin, pick, prio):
    candidates = np.asarray(candidates, dtype=bool)
    arrays = [np.asarray(a, dtype=np.float64) for a in (coin, pick, prio)]
    for name, a in zip(("candidates", "coin", "pick", "prio"), [candidates, *arrays]):
        if a.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    return (candidates, *arrays)


def _accept_lowest_prio(proposers: np.ndarray, targets: np.ndarray, prio: np.ndarray, n: int):
    """Each target keeps the proposer with the lowest prio (then lowest id); proposers ascending."""
    best = np.full(n, np.inf)
    p = prio[proposers]
    np.minimum.at(best, targets, p)
    wins = p == best[targets]
    if np.any(np.bincount(targets[wins], minlength=n) > 1):  # equal prios: rare with 53-bit draws
        lowest_id = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(lowest_id, targets[wins], proposers[wins])
        wins &= proposers == lowest_id[targets]
    return proposers[wins].astype(np.int64), targets[wins]


class NetworkSpace(NeighborLists):
    """Agents on an undirected simple graph, held as CSR (int32 indices while they fit)."""

    def __init__(self, csr, *, validate: bool = True) -> None:
        matrix = sp.csr_matrix(csr)
        if matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"a network's adjacency must be square, got {matrix.shape}")
        matrix.sum_duplicates()  # canonical: sorted indices, no repeats
        if validate:
            if matrix.diagonal().any():
                raise ValueError("a network must have no self loops")
            if (matrix != matrix.T).nnz:
                raise ValueError("a network must be undirected: its adjacency must be symmetric")
        self.n = matrix.shape[0]
        index_dtype = np.int32 if max(matrix.nnz, self.n) < 2**31 else np.int64
        self.indptr = matrix.indptr.astype(index_dtype, copy=False)
        self.indices = matrix.indices.astype(index_dtype, copy=False)
        self._matrix = sp.csr_matrix(
            (np.ones(self.indices.size), self.indices, self.indptr), shape=(self.n, self.n), copy=False
        )

    @classmethod
    def from_lists(cls, indptr: np.ndarray, indices: np.ndarray) -> "NetworkSpace":
        """From a canonical symmetric CSR structure (sorted, no duplicates, no self loops), unchecked."""
        n = indptr.size - 1
        return cls(sp.csr_matrix((np.ones(indices.size, dtype=np.int8), indices, indptr), shape=(n, n)), validate=False)

    def __repr__(self) -> str:
        return f"NetworkSpace(n={self.n}, edges={self.n_edges})"

    @property
    def n_edges(self) -> int:
        return int(self.indices.size // 2)

    def _lists(self):
        return self.indptr, self.indices, self._matrix

    def to_csr(self) -> sp.csr_matrix:
        return self._matrix

    def memory_bytes(self) -> int:
        return int(self.indptr.nbytes + self.indices.nbytes + self._matrix.data.nbytes)
