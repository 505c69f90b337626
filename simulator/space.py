"""Where agents are and who their neighbors are: networks, grids and the well-mixed population.

Agents are the integer ids ``0..n-1``; every method takes and returns numpy arrays. The three
spaces share one interface, :class:`Space`. Networks and grids both reduce to a neighbor list
in CSR form (``indptr``, ``indices``), so every operation is written once, in
:class:`_NeighborLists`. The grid computes sum/mean/count/same on the cell grid instead (a
stencil of shifted views, bit-identical to the lists' results) and builds its lists only when
another operation needs them, once per arrangement of agents.

Random choices come in as uniforms the engine draws from ``rng.Stream`` per agent (or per
cell), so every result is a pure function of the state and those draws, however the agents
are split across processes.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from simulator.errors import SpecError

__all__ = ["Space", "NetworkSpace", "GridSpace", "WellMixed", "REDUCE_OPS", "NEIGHBORHOODS"]

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


def _as_rows(rows) -> np.ndarray | None:
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


def _reduce_args(space, values, op: str, rows, u) -> tuple[np.ndarray | None, np.ndarray | None]:
    """`neighbor_reduce`'s common checks: (rows as ids or None, values as an array; None for count)."""
    _check_op(op, u)
    rows = _as_rows(rows)
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


def _value_of_random_neighbor(space: "Space", values: np.ndarray, rows, u) -> np.ndarray:
    ids = space.random_neighbor(np.arange(space.n) if rows is None else rows, u)
    out = values[np.maximum(ids, 0)].astype(np.float64)
    out[ids < 0] = np.nan
    return out


def _pick_index(u: np.ndarray, count: np.ndarray) -> np.ndarray:
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


class _NeighborLists:
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
        rows = _as_rows(rows)
        if rows is None:
            return np.diff(indptr).astype(np.int64)
        return (indptr[rows + 1] - indptr[rows]).astype(np.int64)

    def neighbor_reduce(self, values, op: str, rows=None, u=None) -> np.ndarray:
        if isinstance(rows, slice) and op in ("random", "sum", "mean", "count"):  # a run: views, no gathers
            _check_op(op, u)
            if op == "count":
                return self.degree(rows).astype(np.float64)
            if op == "random":
                return _value_of_random_neighbor(self, np.asarray(values), rows, u)
            return self._sum_like(np.asarray(values), op, rows)
        rows, values = _reduce_args(self, values, op, rows, u)
        if values is None:  # op == "count": the degree, whatever the values
            return self.degree(rows).astype(np.float64)
        if op == "random":
            return _value_of_random_neighbor(self, values, rows, u)
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
            rows = _as_rows(rows)
            start = indptr[rows].astype(np.int64)
            deg = indptr[rows + 1] - start
        u = np.asarray(u, dtype=np.float64)
        if u.shape != start.shape:
            raise ValueError(f"u must have one uniform per row: shape {start.shape}, got {u.shape}")
        out = np.full(start.size, -1, dtype=np.int64)
        has = deg > 0
        out[has] = indices[start[has] + _pick_index(u[has], deg[has])]
        return out

    def match_neighbors(self, candidates, coin, pick, prio) -> tuple[np.ndarray, np.ndarray]:
        """Candidates with ``coin < 0.5`` propose to one uniformly chosen neighboring candidate
        with ``coin >= 0.5`` (chosen by ``pick``); each receiver takes the proposer of lowest
        ``prio`` (ties: lowest id). Returns (initiators, partners), sorted by initiator."""
        candidates, coin, pick, prio = _match_inputs(self.n, candidates, coin, pick, prio)
        initiators = np.flatnonzero(candidates & (coin < 0.5))
        receiver = candidates & (coin >= 0.5)
        indptr, nbrs = self._rows_lists(initiators)
        eligible = receiver[nbrs]
        counts = _segment_counts(eligible, indptr)
        proposing = counts > 0
        # A proposer's eligible edges are eligible_at[first:first + count].
        first = np.cumsum(counts) - counts
        eligible_at = np.flatnonzero(eligible)
        chosen = eligible_at[first[proposing] + _pick_index(pick[initiators[proposing]], counts[proposing])]
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


def _order(key: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Indices sorting ``key`` ascending, equal keys by ``ids``: the same order however computed."""
    order = np.argsort(key)  # the fast unstable sort; ties (rare for 53-bit uniforms) fixed below
    ordered = key[order]
    if np.any(ordered[1:] == ordered[:-1]):
        return np.lexsort((ids, key))
    return order


def _match_inputs(n: int, candidates, coin, pick, prio):
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


class NetworkSpace(_NeighborLists):
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


class GridSpace(_NeighborLists):
    """Agents on distinct cells of a ``width x height`` grid; cell id ``y * width + x``.

    ``cell_of[agent]`` is an agent's cell, ``occupant[cell]`` the agent there or -1.
    Neighbors are the agents on the 8 (Moore) or 4 (von Neumann) surrounding cells.
    """

    def __init__(
        self,
        width: int,
        height: int,
        n_agents: int,
        torus: bool = True,
        neighborhood: str = "moore",
        seed: int = 0,
        cells: np.ndarray | None = None,
    ) -> None:
        """Agents placed on distinct random cells drawn from ``seed``, or on the given ``cells``."""
        width, height, n_agents = int(width), int(height), int(n_agents)
        _check_grid(width, height, n_agents, torus, neighborhood)
        self.width, self.height, self.n = width, height, n_agents
        self.torus, self.neighborhood = bool(torus), neighborhood
        n_cells = width * height
        index_dtype = np.int32 if n_cells < 2**31 else np.int64
        if cells is None:
            cells = np.random.Generator(np.random.Philox(seed)).permutation(n_cells)[:n_agents]
        cells = np.asarray(cells)
        if cells.shape != (n_agents,) or (cells < 0).any() or (cells >= n_cells).any():
            raise ValueError(f"cells must be {n_agents} cell ids in [0, {n_cells})")
        self.cell_of = cells.astype(index_dtype)
        self.occupant = np.full(n_cells, -1, dtype=index_dtype)
        self.occupant[self.cell_of] = np.arange(n_agents, dtype=index_dtype)
        if np.count_nonzero(self.occupant >= 0) != n_agents:
            raise ValueError("two agents cannot share a cell")
        self._cache = None  # CSR lists, built on demand (random, matching, regions, max/min)
        self._occupancy = None  # padded occupied-cell grid and neighbor count per cell

    def __repr__(self) -> str:
        return (
            f"GridSpace({self.width}x{self.height}, n={self.n}, torus={self.torus}, "
            f"neighborhood={self.neighborhood!r})"
        )

    @property
    def n_cells(self) -> int:
        return self.width * self.height

    def neighbor_cells(self, cells: np.ndarray) -> np.ndarray:
        """``(len(cells), k)`` ids of each cell's neighboring cells, -1 past a non-torus edge."""
        dtype = self.occupant.dtype
        cells = np.asarray(cells).astype(dtype, copy=False)
        x, y = cells % self.width, cells // self.width
        offsets = NEIGHBORHOODS[self.neighborhood]
        out = np.empty((cells.size, len(offsets)), dtype=dtype)
        for j, (dx, dy) in enumerate(offsets):
            # Small per-axis tables (wrapped, or -1 outside) are cheaper than dividing per agent.
            column = _shifted(self.width, dx, self.torus, dtype)[x]
            row = _shifted(self.height, dy, self.torus, dtype)[y]
            if self.torus:
                np.add(row * self.width, column, out=out[:, j])
            else:
                out[:, j] = np.where((column >= 0) & (row >= 0), row * self.width + column, -1)
        return out

    def move_to_empty(self, movers, prio, cell_prio) -> np.ndarray:
        """Movers, in order of ``prio`` (one uniform per mover), take the empty cells in order of
        ``cell_prio`` (one uniform per cell) until either runs out; returns the ids that moved.

        Only cells empty when the call starts are offered: cells vacated by this call's movers
        open up at the next call, so no cell is ever given twice.
        """
        movers = np.asarray(movers, dtype=np.int64)
        prio = np.asarray(prio, dtype=np.float64)
        cell_prio = np.asarray(cell_prio, dtype=np.float64)
        if prio.shape != movers.shape or cell_prio.shape != (self.n_cells,):
            raise ValueError("move_to_empty needs one prio per mover and one cell_prio per cell")
        seen = np.zeros(self.n, dtype=bool)
        seen[movers] = True
        if np.count_nonzero(seen) != movers.size:
            raise ValueError("move_to_empty got the same mover twice")
        empty = np.flatnonzero(self.occupant < 0)
        k = min(movers.size, empty.size)
        if k == 0:
            return np.empty(0, dtype=np.int64)
        moved = movers[_order(prio, movers)[:k]]
        targets = empty[_order(cell_prio[empty], empty)[:k]]
        self.occupant[self.cell_of[moved]] = -1
        self.cell_of[moved] = targets
        self.occupant[targets] = moved
        self._cache = None
        self._occupancy = None
        return np.sort(moved)

    # -- stencil reductions: shifted views of the cell grid, no neighbor lists -------------------

    def degree(self, rows=None) -> np.ndarray:
        rows = _as_rows(rows)
        cells = self.cell_of if rows is None else self.cell_of[rows]
        return self._occupied()[1][cells].astype(np.int64)

    def neighbor_reduce(self, values, op: str, rows=None, u=None) -> np.ndarray:
        """As :meth:`_NeighborLists.neighbor_reduce`, with the same results bit for bit: sum,
        mean, count and same run on the cell grid (sums accumulate in neighbor-offset order, the
        CSR lists' order, adding exact zeros for empty cells; same counts in integers), the
        others on the neighbor lists."""
        if op not in ("sum", "mean", "count", "same"):
            return super().neighbor_reduce(values, op, rows, u)
        rows, values = _reduce_args(self, values, op, rows, u)
        if values is None:  # op == "count": the degree, whatever the values
            return self.degree(rows).astype(np.float64)
        if rows is not None and rows.size * 3 < self.n:
            return self._reduce_rows(values, op, rows)
        cells = self.cell_of if rows is None else self.cell_of[rows]
        deg = self._occupied()[1][cells].astype(np.int64)
        if op == "same":
            found = self._count_equal(values)[cells].astype(np.int64)
        else:
            found = self._sum_cells(values.astype(np.float64, copy=False))[cells]
            if op == "sum":
                return found
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(deg > 0, found / np.maximum(deg, 1), np.nan)

    def _occupied(self) -> tuple[np.ndarray, np.ndarray]:
        """(padded grid of occupied cells, number of occupied neighbor cells per cell (flat))."""
        if self._occupancy is None:
            present = self._padded((self.occupant >= 0).reshape(self.height, self.width), False)
            count = np.zeros((self.height, self.width), dtype=np.uint8)
            for view in self._views(present):
                count += view
            self._occupancy = (present, count.reshape(-1))
        return self._occupancy

    def _padded(self, grid: np.ndarray, fill) -> np.ndarray:
        """The grid with a one-cell border: the opposite edge on a torus, else ``fill``."""
        if self.torus:
            return np.pad(grid, 1, mode="wrap")
        return np.pad(grid, 1, mode="constant", constant_values=fill)

    def _views(self, padded: np.ndarray):
        """For each neighbor offset (in order), the padded grid shifted so that ``view[y, x]`` is
        the value at the neighbor ``(x + dx, y + dy)`` of cell ``(x, y)``."""
        h, w = self.height, self.width
        for dx, dy in NEIGHBORHOODS[self.neighborhood]:
            yield padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    def _cell_grid(self, values: np.ndarray, fill) -> np.ndarray:
        grid = np.full(self.n_cells, fill, dtype=values.dtype)
        grid[self.cell_of] = values
        return grid.reshape(self.height, self.width)

    def _sum_cells(self, x: np.ndarray) -> np.ndarray:
        """Per cell, the sum of ``x`` over the agents on its neighbor cells (flat).

        In offset order from 0.0, as the CSR mat-vec adds each row's neighbors; an empty cell
        adds +0.0, which leaves every partial sum unchanged (they start at +0.0, so none is -0.0).
        """
        padded = self._padded(self._cell_grid(x, 0.0), 0.0)
        total = np.zeros((self.height, self.width))
        for view in self._views(padded):
            total += view
        return total.reshape(-1)

    def _count_equal(self, values: np.ndarray) -> np.ndarray:
        """Per cell, how many agents on neighbor cells have the value of the agent on the cell
        (flat; meaningless for empty cells). Compared with ``==`` like the CSR path: NaN matches
        nothing. Empty cells hold a value no agent has, where one fits a small dtype."""
        grid, fill = _compact_codes(values)
        h, w = self.height, self.width
        count = np.zeros((h, w), dtype=np.uint8)
        equal = np.empty((h, w), dtype=bool)
        if fill is not None:
            padded = self._padded(self._cell_grid(grid, fill), fill)
            center = padded[1 : 1 + h, 1 : 1 + w]
            for view in self._views(padded):
                np.equal(view, center, out=equal)
                count += equal
        else:  # no free sentinel value: mask the empty cells
            filler = np.zeros(1, dtype=grid.dtype)[0]
            padded = self._padded(self._cell_grid(grid, filler), filler)
            present = self._occupied()[0]
            center = padded[1 : 1 + h, 1 : 1 + w]
            for view, here in zip(self._views(padded), self._views(present)):
                np.equal(view, center, out=equal)
                equal &= here
                count += equal
        return count.reshape(-1)

    def _reduce_rows(self, values: np.ndarray, op: str, rows: np.ndarray) -> np.ndarray:
        """sum / mean / same for a few rows: gather their neighbor cells directly."""
        cells = self.neighbor_cells(self.cell_of[rows])
        nbrs = self.occupant[np.maximum(cells, 0)]
        present = (cells >= 0) & (nbrs >= 0)
        deg = present.sum(axis=1, dtype=np.int64)
        if op == "same":
            own = values[rows]
            found = np.zeros(rows.size, dtype=np.int64)
            for j in range(cells.shape[1]):
                found += present[:, j] & (values[nbrs[:, j]] == own)
        else:
            x = values.astype(np.float64, copy=False)
            found = np.zeros(rows.size)
            for j in range(cells.shape[1]):
                found += np.where(present[:, j], x[nbrs[:, j]], 0.0)
            if op == "sum":
                return found
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(deg > 0, found / np.maximum(deg, 1), np.nan)

    def _lists(self):
        if self._cache is None:
            cells = self.neighbor_cells(self.cell_of)
            neighbors = self.occupant[np.maximum(cells, 0)]
            neighbors[cells < 0] = -1  # past a non-torus edge
            present = neighbors >= 0
            indptr = np.zeros(self.n + 1, dtype=self.occupant.dtype)
            np.cumsum(present.sum(axis=1, dtype=indptr.dtype), out=indptr[1:])
            indices = neighbors[present]  # row-major: grouped by agent, in offset order
            matrix = sp.csr_matrix((np.ones(indices.size), indices, indptr), shape=(self.n, self.n), copy=False)
            self._cache = (indptr, indices, matrix)
        return self._cache

    def memory_bytes(self) -> int:
        cached = 0 if self._cache is None else sum(a.nbytes for a in self._cache[:2]) + self._cache[2].data.nbytes
        if self._occupancy is not None:
            cached += sum(a.nbytes for a in self._occupancy)
        return int(self.cell_of.nbytes + self.occupant.nbytes + cached)


def _compact_codes(values: np.ndarray) -> tuple[np.ndarray, object]:
    """``values`` for equality tests on the grid, and a fill value equal to none of them (None if
    there is none to spare): small integers (and booleans) as int8/int16, floats with NaN."""
    if values.dtype.kind == "f":
        return values, np.nan
    if values.dtype.kind in "iub" and values.size:
        lo, hi = int(values.min()), int(values.max())
        for dtype in (np.int8, np.int16):
            info = np.iinfo(dtype)
            if info.min < lo and hi <= info.max:
                return values.astype(dtype), dtype(lo - 1)
    return values, None


def _check_grid(width: int, height: int, n_agents: int, torus: bool, neighborhood: str) -> None:
    if width < 1 or height < 1:
        raise SpecError(f"a grid needs width and height >= 1, got {width} x {height}")
    if neighborhood not in NEIGHBORHOODS:
        raise SpecError(f"unknown grid neighborhood {neighborhood!r}", hint=f"use one of {', '.join(NEIGHBORHOODS)}")
    if torus and min(width, height) < 3:
        raise SpecError(
            f"a torus needs width and height >= 3, got {width} x {height}: on smaller ones a cell "
            "would be its own neighbor",
            hint="make the grid larger or set torus to false",
        )
    if not 0 <= n_agents <= width * height:
        raise SpecError(
            f"{n_agents} agents do not fit on a {width} x {height} grid ({width * height} cells)",
            hint="lower the density or the agent count, or enlarge the grid",
        )


def _shifted(size: int, step: int, wrap: bool, dtype) -> np.ndarray:
    """Coordinate ``i + step`` for each ``i < size``: wrapped around, or -1 when outside."""
    moved = np.arange(size, dtype=np.int64) + step
    if wrap:
        return (moved % size).astype(dtype)
    return np.where((moved >= 0) & (moved < size), moved, -1).astype(dtype)


class WellMixed:
    """Everyone is everyone else's neighbor; nothing is stored per pair."""

    def __init__(self, n: int) -> None:
        if int(n) < 0:
            raise SpecError(f"a population needs n >= 0 agents, got {n}")
        self.n = int(n)

    def __repr__(self) -> str:
        return f"WellMixed(n={self.n})"

    def degree(self, rows=None) -> np.ndarray:
        rows = _as_rows(rows)
        size = self.n if rows is None else rows.size
        return np.full(size, max(self.n - 1, 0), dtype=np.int64)

    def neighbor_reduce(self, values, op: str, rows=None, u=None) -> np.ndarray:
        rows, values = _reduce_args(self, values, op, rows, u)
        if values is None:  # op == "count": the degree, whatever the values
            return self.degree(rows).astype(np.float64)
        own = values if rows is None else values[rows]
        others = self.n - 1
        if op == "random":
            return _value_of_random_neighbor(self, values, rows, u)
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
        rows = _as_rows(rows).astype(np.int64)
        u = np.asarray(u, dtype=np.float64)
        if u.shape != rows.shape:
            raise ValueError(f"u must have one uniform per row: shape {rows.shape}, got {u.shape}")
        if self.n < 2:
            return np.full(rows.size, -1, dtype=np.int64)
        other = _pick_index(u, np.int64(self.n - 1))
        other += other >= rows  # skip oneself
        return other

    def match_neighbors(self, candidates, coin, pick, prio) -> tuple[np.ndarray, np.ndarray]:
        """Candidates in order of ``prio`` (ties: id); the first half is paired with the second."""
        candidates, coin, pick, prio = _match_inputs(self.n, candidates, coin, pick, prio)
        ids = np.flatnonzero(candidates)
        order = ids[_order(prio[ids], ids)]
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
