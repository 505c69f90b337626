"""A shard that holds the whole state (a replica) and computes rules only for the agents it owns.

Why it is exact. Every shard holds the whole state (a replica built from the same seed) but
computes each rule only for the agents it owns, a contiguous range of ids. Draws are keyed
by agent id and per-row neighbor reductions read the same ordered values, so an owned row
gets the same bits as in one process. After a rule, an owner's writes exist only on its own
replica; before any phase that reads those attributes for rows owned elsewhere (a neighbor
function, `other.*`, an aggregate, the environment, the metrics, a global matching or move),
every shard sends the owned slices of the attributes written since the last exchange through
the object store, and every shard copies them in. So global operations (pair matching, grid
moves, environment variables, metrics) are computed by the unchanged single-process code on
identical replicas: no partial sums, no reordered floating point.

What it costs. Memory is not divided: each shard holds the full state (agents' attributes
and the space). Compute is divided for update, transition and decide rules and for pairwise
effects; matchings, moves, `when` filters of global rules and the environment are computed
redundantly by every shard; metrics are shared out (shard j computes every K-th). Each
exchange puts, per attribute written, the owner's n / K values into the object store once, and
every other shard takes them in. Where halos are enough, `simulator.sharding.partitioned` holds and sends
less.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.compile import CompiledRule, CompiledScenario
from simulator.engine import RULE_METRICS, DecisionPolicy, RowsContext, Simulation, scalar_value
from simulator.sharding.checkpoints import checkpoint_state, restore_shared
from simulator.grid import GridSpace


class ShardSimulation(Simulation):
    """A full replica that computes rules only for its own id range ``[lo, hi)``."""

    def __init__(self, compiled: CompiledScenario, params: dict[str, float] | None, seed: int, *,
                 population: int | None, max_steps: int | None, policy: DecisionPolicy | None = None,
                 bounds: list[tuple[int, int]], index: int) -> None:
        super().__init__(compiled, params, seed, population=population, max_steps=max_steps, policy=policy)
        self.bounds = bounds
        self.index = index
        self.lo, self.hi = bounds[index]
        self.owned = np.zeros(self.n, dtype=bool)
        self.owned[self.lo:self.hi] = True
        # Rows kept whole stay the same object: the engine's whole-array path recognises `all_ids`.
        self._own_rows = [rows if (self.lo, self.hi) == (0, self.n) else rows[(rows >= self.lo) & (rows < self.hi)]
                          for rows in self._rule_rows]
        for rows in self._own_rows:
            if rows is not self.all_ids:
                self.register_span(rows)

    def measure_share(self) -> np.ndarray:
        """This shard's share of the metrics (every K-th, from its index): replicas are identical after
        the step's last exchange, so each metric is the same bits wherever it is computed, and the
        shards measure side by side instead of all waiting for shard 0."""
        k = len(self.bounds)
        ctx = RowsContext(self, None, None, RULE_METRICS)
        return np.array([scalar_value(e, ctx) for i, (_, e) in enumerate(self.c.metrics) if i % k == self.index],
                        dtype=np.float64)

    def apply_rules(self, indices: list[int]) -> None:
        for i in indices:
            rule = self.c.rules[i]
            if rule.kind in ("interact", "move"):  # matched / placed globally, identically everywhere
                self._apply_rule(rule, self._rule_rows[i])
            else:
                self._apply_rule(rule, self._own_rows[i])

    def _pair_effects(self, rule: CompiledRule, a: np.ndarray, b: np.ndarray) -> None:
        """Only the pairs touching owned agents, and only the owned side of each is written."""
        own_a, own_b = self.owned[a], self.owned[b]
        mine = own_a | own_b
        if not mine.any():
            return
        a, b, own_a, own_b = a[mine], b[mine], own_a[mine], own_b[mine]
        ctx = RowsContext(self, a, b, rule.index + 1)
        self._locals(rule, ctx)
        new_self = {x: e(ctx) for x, e in rule.effects.items()}
        new_other = {x: e(ctx) for x, e in rule.other_effects.items()}
        for x, v in new_self.items():
            self._assign(x, a[own_a], np.broadcast_to(v, a.shape)[own_a])
        for x, v in new_other.items():
            self._assign(x, b[own_b], np.broadcast_to(v, b.shape)[own_b])

    def outgoing(self, names: list[str]) -> list[dict[str, np.ndarray]]:
        """One object for every other shard: the owned slices of ``names``."""
        return [{x: self.attrs[x][self.lo:self.hi] for x in names}]

    def decisions_after(self, step: int) -> dict[str, int]:
        """Decision counts at the end of ``step``: every replica stops where the run stops."""
        return dict(self.decisions)

    def receive(self, incoming: tuple[dict[str, np.ndarray] | None, ...]) -> None:
        """Copy in the other shards' owned slices (one dict per shard, in shard order)."""
        wrote = False
        for j, part in enumerate(incoming):
            if j == self.index or not part:
                continue
            lo, hi = self.bounds[j]
            for x, values in part.items():
                self.attrs[x][lo:hi] = values
                wrote = True
        if wrote:
            self.touch()

    def checkpoint(self) -> dict[str, Any]:
        """Owned rows of every mutable attribute; shard 0 adds what every replica shares."""
        state = checkpoint_state(self, slice(self.lo, self.hi), self.index)
        if self.index == 0 and isinstance(self.space, GridSpace):
            state["grid"] = (self.space.cell_of.copy(), self.space.occupant.copy())
        return state

    def restore(self, states: tuple[dict[str, Any], ...]) -> None:
        restore_shared(self, states, self.index)
        shared = states[0]
        for (lo, hi), state in zip(self.bounds, states):
            for x, values in state["attrs"].items():
                self.attrs[x][lo:hi] = values
        if "grid" in shared:
            cell_of, occupant = shared["grid"]
            self.space.cell_of[:] = cell_of
            self.space.occupant[:] = occupant
            self.space._cache = None
            self.space._occupancy = None
        self.touch()
