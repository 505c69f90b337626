"""Agents on the distinct cells of a grid (Moore or von Neumann neighborhood, torus or not).

Sum, mean, count and same are computed on the cell grid (a stencil of shifted views, bit-identical
to the neighbor lists' results); the lists themselves (`simulator.space.NeighborLists`) are built
only when another operation needs them, once per arrangement of agents.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from simulator.errors import SpecError
from simulator.space import NEIGHBORHOODS, NeighborLists, as_rows, order_by, reduce_args


class GridSpace(NeighborLists):
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
        moved = movers[order_by(prio, movers)[:k]]
        targets = empty[order_by(cell_prio[empty], empty)[:k]]
        self.occupant[self.cell_of[moved]] = -1
        self.cell_of[moved] = targets
        self.occupant[targets] = moved
        self._cache = None
        self._occupancy = None
        return np.sort(moved)

    # -- stencil reductions: shifted views of the cell grid, no neighbor lists -------------------

    def degree(self, rows=None) -> np.ndarray:
        rows = as_rows(rows)
        cells = self.cell_of if rows is None else self.cell_of[rows]
        return self._occupied()[1][cells].astype(np.int64)

    def neighbor_reduce(self, values, op: str, rows=None, u=None) -> np.ndarray:
        """As :meth:`NeighborLists.neighbor_reduce`, with the same results bit for bit: sum,
        mean, count and same run on the cell grid (sums accumulate in neighbor-offset order, the
        CSR lists' order, adding exact zeros for empty cells; same counts in integers), the
        others on the neighbor lists."""
        if op not in ("sum", "mean", "count", "same"):
            return super().neighbor_reduce(values, op, rows, u)
        rows, values = reduce_args(self, values, op, rows, u)
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
