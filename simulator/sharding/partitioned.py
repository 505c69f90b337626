"""A shard that holds only its own agents and their neighbors (halo), not the whole population.

Why: in the replicated mode (`simulator.sharding.replicated`) every shard keeps the whole state,
so sharding divides the work but not the memory, and every write goes to every shard. Where a
step only ever looks past an agent's own row through its network neighbors, a shard needs no
more than its own rows plus the rows of their neighbors owned elsewhere; after each phase it
receives just those rows (the halo) for the attributes that neighbor functions read. Metrics and
the stop condition look at everyone, so shard 0 also keeps whole-population copies of the
attributes they read (and only those), and measures and checks the stop condition there. The
network is built once, by a Ray task, and cut into one piece per shard (`cut_network`), so no
shard ever holds all of it.

Why it is exact. Rows are numbered locally in the order of their global ids, so each owned row's
neighbor list keeps its global order: sums and random picks see the same values in the same
order. Draws are keyed by global id (`ids_of`). The network is built from the seed exactly as in
one process, then cut down to the owned rows.

`simulator.sharding.planning.partition_blocker` says which scenarios qualify; the others run replicated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.alloc import LARGE_POPULATION, keep_freed_memory
from simulator.compile import CompiledScenario
from simulator.engine import Simulation
from simulator.sharding.checkpoints import checkpoint_state, restore_shared
from simulator.sharding.planning import neighbor_read, population_read
from simulator.space import NetworkSpace


class _Population(Simulation):
    """Whole-population copies of the attributes the metrics read (shard 0 only)."""

    def __init__(self, compiled: CompiledScenario, params: dict[str, float], seed: int,
                 type_counts: list[int], keep: frozenset[str]) -> None:
        self._begin_run(compiled, params, seed, None, None, int(sum(type_counts)))
        self._lay_out(np.arange(sum(self.type_counts), dtype=np.int64))
        self.space = None
        self.attrs = {}
        self._init_attributes()  # the same draws as everywhere: keyed by agent id
        self.attrs = {x: a for x, a in self.attrs.items() if x in keep or x in ("id", "index", "type")}


def cut_network(compiled: CompiledScenario, params: dict[str, float] | None, seed: int,
                population: int | None, bounds: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Build the run's network once, from the seed, and cut it into one piece per shard.

    A piece holds a shard's rows in local numbering (its halo below and above its own ids, all
    in global id order, so each neighbor list keeps its order), its neighbor lists, and who sends
    it which rows. Built once (as a Ray task, `simulator.sharding.coordinator.ShardedRun`), so that no shard
    ever holds the whole network.
    """
    shell = Simulation.__new__(Simulation)  # enough of one to build the space
    pctx = shell._begin_run(compiled, params, seed, None, None, population)
    shell.n = n = int(sum(shell.type_counts))
    shell._check_memory(pctx, cap=False)  # only the network is built here, once
    whole = shell._build_space(pctx)
    indptr, indices, _ = whole._lists()
    needs = []  # per shard: the ids outside its range that its rows have as neighbors
    mark = np.zeros(n, dtype=bool)
    for lo, hi in bounds:
        mark[:] = False
        mark[indices[indptr[lo]:indptr[hi]]] = True
        mark[lo:hi] = False
        needs.append(np.flatnonzero(mark))
    del mark
    local_of = np.empty(n, dtype=indices.dtype)  # global id -> local row, refilled per shard
    pieces = []
    for i, (lo, hi) in enumerate(bounds):
        halo = needs[i]
        before = int(np.searchsorted(halo, lo))
        ids = np.concatenate((halo[:before], np.arange(lo, hi), halo[before:])).astype(np.int64)
        m, own_stop = ids.size, before + hi - lo
        start, stop = int(indptr[lo]), int(indptr[hi])
        local_of[ids] = np.arange(m, dtype=local_of.dtype)
        local_indices = local_of[indices[start:stop]]
        local_indptr = np.empty(m + 1, dtype=np.int64)
        local_indptr[: before + 1] = 0
        local_indptr[before + 1 : own_stop + 1] = indptr[lo + 1 : hi + 1] - start
        local_indptr[own_stop + 1 :] = stop - start
        recv = [None if j == i else tuple(int(x) for x in np.searchsorted(ids, [lo_j, hi_j]))
                for j, (lo_j, hi_j) in enumerate(bounds)]
        pieces.append({
            "ids": ids, "own": (before, own_stop), "indptr": local_indptr, "indices": local_indices,
            # To shard x: my rows among its halo, as local positions.
            "send": [None if x == i else before + (h[(h >= lo) & (h < hi)] - lo) for x, h in enumerate(needs)],
            # From shard j: my halo rows it owns (a run of local rows).
            "recv": recv,
        })
    return pieces


class LocalShard(Simulation):
    """Shard ``index`` of ``len(bounds)``: its own agents (ids ``bounds[index]``) and their neighbors,
    from its piece of the network (`cut_network`)."""

    def __init__(self, compiled: CompiledScenario, params: dict[str, float] | None, seed: int, *,
                 population: int | None, max_steps: int | None, bounds: list[tuple[int, int]], index: int,
                 piece: dict[str, Any]) -> None:
        self._begin_run(compiled, params, seed, max_steps, None, population)
        self._counts_after: dict[int, dict[str, int]] = {}
        self.bounds, self.index = bounds, index
        self.lo, self.hi = bounds[index]
        self.n_total = int(sum(self.type_counts))
        self.env["n_agents"] = float(self.n_total)
        if self.n_total >= LARGE_POPULATION:
            keep_freed_memory()  # as `Simulation` does: see `simulator.alloc`
        self._take(piece)

        self.halo_attrs = neighbor_read(compiled)
        self.metric_attrs = population_read(compiled)
        self._rule_rows = [self._own_rows_of(r.types) for r in compiled.rules]
        for rows in self._rule_rows:
            self.register_span(rows)
        self._partner_mask = [None] * len(compiled.rules)
        self.attrs: dict[str, np.ndarray] = {}
        self._init_attributes()
        self.everyone = (_Population(compiled, self.params, seed, self.type_counts, self.metric_attrs)
                         if index == 0 else None)

    # --- set-up -------------------------------------------------------------------------
    def _take(self, piece: dict[str, Any]) -> None:
        # Copies: a piece read from the object store is read-only and would stay pinned there.
        self._lay_out(np.array(piece["ids"], dtype=np.int64))
        self.own = slice(*piece["own"])
        self.space = NetworkSpace.from_lists(np.array(piece["indptr"]), np.array(piece["indices"]))
        self.send_rows = [None if r is None else np.array(r) for r in piece["send"]]
        self.recv_rows = [None if r is None else slice(*r) for r in piece["recv"]]
        # Where my halo rows sit in their owners' ranges (to read them out of a whole slice).
        self.recv_offsets = [None if r is None else self.all_ids[r] - lo
                             for r, (lo, _) in zip(self.recv_rows, self.bounds)]

    def _own_rows_of(self, types: tuple[int, ...] | None) -> np.ndarray:
        slices = self.type_slices if types is None else [self.type_slices[t] for t in types]
        parts = [np.arange(max(s.start, self.own.start), min(s.stop, self.own.stop)) for s in slices]
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)

    def ids_of(self, rows: np.ndarray) -> np.ndarray:
        span = self.span_of(rows)
        return self.all_ids[span] if span is not None else self.all_ids[rows]

    # --- a round ------------------------------------------------------------------------
    def apply_rules(self, indices: list[int]) -> None:
        for i in indices:
            self._apply_rule(self.c.rules[i], self._rule_rows[i])

    def outgoing(self, names: list[str]) -> list[dict[str, Any] | None]:
        """Per shard: my rows of its halo for the attributes neighbors read; to shard 0 also my
        whole slice of the attributes the metrics read (which then covers its halo too)."""
        halo = [x for x in names if x in self.halo_attrs]
        whole = [x for x in names if x in self.metric_attrs]
        out: list[dict[str, Any] | None] = []
        for i, rows in enumerate(self.send_rows):
            if rows is None:
                out.append(None)
                continue
            part: dict[str, Any] = {}
            if i == 0 and whole:
                part["whole"] = {x: self.attrs[x][self.own] for x in whole}
            sent = set(part.get("whole", ()))
            if halo:
                part["halo"] = {x: self.attrs[x][rows] for x in halo if x not in sent}
            out.append(part)
        return out

    def receive(self, incoming: tuple[dict[str, Any] | None, ...]) -> None:
        wrote = False
        for j, part in enumerate(incoming):
            if j == self.index or not part:
                continue
            for x, values in part.get("halo", {}).items():
                self.attrs[x][self.recv_rows[j]] = values
                wrote = True
            for x, values in part.get("whole", {}).items():
                lo, hi = self.bounds[j]
                self.everyone.attrs[x][lo:hi] = values
                if x in self.halo_attrs:
                    self.attrs[x][self.recv_rows[j]] = values[self.recv_offsets[j]]
                wrote = True
        if wrote:
            self.touch()

    # --- observation --------------------------------------------------------------------
    def measure(self) -> np.ndarray:
        """All metrics, on shard 0 (the only one holding the whole population's attributes)."""
        pop = self.everyone
        if pop is None:
            return np.empty(0, dtype=np.float64)
        for x in pop.attrs:
            if x in self.metric_attrs:
                pop.attrs[x][self.lo:self.hi] = self.attrs[x][self.own]
        pop.step_no, pop.params, pop.env = self.step_no, dict(self.params), dict(self.env)
        pop.touch()
        return Simulation.measure(pop)

    measure_share = measure

    def should_stop(self) -> bool:
        """Shard 0's verdict (right after `measure`); the others cannot tell, go on, and are
        told by the coordinator, which stops queuing rounds: see `decisions_after`."""
        return self.everyone is not None and Simulation.should_stop(self.everyone)

    def begin_step(self) -> None:
        self._counts_after[self.step_no] = dict(self.decisions)
        self._counts_after.pop(self.step_no - 16, None)
        super().begin_step()

    def decisions_after(self, step: int) -> dict[str, int]:
        """Decision counts as they were at the end of ``step``: a shard other than 0 may have run
        a step or two past a stop it could not see."""
        return dict(self._counts_after.get(step, self.decisions)) if step < self.step_no else dict(self.decisions)

    # --- checkpoints --------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        return checkpoint_state(self, self.own, self.index)

    def restore(self, states: tuple[dict[str, Any], ...]) -> None:
        restore_shared(self, states, self.index)
        for j, state in enumerate(states):
            for x, values in state["attrs"].items():
                if j == self.index:
                    self.attrs[x][self.own] = values
                else:
                    self.attrs[x][self.recv_rows[j]] = values[self.recv_offsets[j]]
                if self.everyone is not None and x in self.everyone.attrs:
                    lo, hi = self.bounds[j]
                    self.everyone.attrs[x][lo:hi] = values
        self.touch()
