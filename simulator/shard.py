"""One simulation split across Ray actors (shards) that step in bulk-synchronous lockstep.

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
every other shard takes them in. Where halos are enough, `simulator.partitioned` holds and sends
less.

Rounds, driven by `ShardedRun`: each shard runs one segment per round (segment 0 opens a step:
interventions, environment, the rules up to the first one that needs a remote write; each
further segment starts with the exchange it needs). A round takes the other shards' writes
from the round before as its inputs, so no shard starts it before all have finished theirs:
that data dependency is the barrier. The round after a step's last segment first measures
that step (each shard its share of the metrics, every shard the stop condition), then opens
the next one; the coordinator queues rounds ahead instead of waiting between them. Every
`checkpoint_every` steps each shard adds its owned rows to its report; when a shard actor dies,
Ray restarts it, every shard is restored to the last checkpoint and the steps since are
replayed: counter-based draws make the replay produce the same result.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from simulator.compile import CompiledRule, CompiledScenario, compile_scenario
from simulator.engine import RULE_METRICS, DecisionPolicy, RunResult, Simulation, _Ctx, _scalar, type_counts
from simulator.expr import CompiledExpr
from simulator.space import GridSpace
from simulator.spec import ScenarioSpec
from societas.errors import SocietasError

log = logging.getLogger(__name__)

SHARD_THRESHOLD = 2_000_000  # agents above which `simulate` shards a run unless told otherwise
SHARD_STATES = ("auto", "partitioned", "replicated")  # what each shard holds: see `ShardedRun`
BUILTINS = ("id", "index", "type")
ALL = frozenset({"*"})  # "every attribute": a phase whose reads cannot be narrowed


# --- what each rule reads and writes ---------------------------------------------------------

def rule_exprs(rule: CompiledRule) -> list[CompiledExpr]:
    """Every expression of a rule (none missing): what it may read."""
    exprs = [rule.when, rule.activation, rule.probability, *(e for _, e in rule.let),
             *rule.effects.values(), *rule.other_effects.values(), *rule.weights]
    for effects in rule.action_effects:
        exprs += effects.values()
    return [e for e in exprs if e is not None]


def rule_writes(rule: CompiledRule) -> frozenset[str]:
    """Attributes a rule writes on the rows it acts on (positions are not attributes)."""
    out = set(rule.effects) | set(rule.other_effects)
    if rule.kind == "transition" and rule.attribute:
        out.add(rule.attribute)
    for effects in rule.action_effects:
        out |= set(effects)
    if rule.record:
        out.add(rule.record)
    return frozenset(out)


def rule_remote_reads(rule: CompiledRule, has_policy: bool) -> frozenset[str]:
    """Attributes a shard reads for agents it does not own while applying this rule.

    Update, transition and decide rules act on owned rows: only neighbor functions and
    aggregates (`reads_all`) reach further. Interactions and moves are matched globally, so
    everything they read is read for everyone. An LLM policy may look at anything.
    """
    if rule.kind == "decide" and has_policy:
        return ALL
    out: set[str] = set()
    for e in rule_exprs(rule):
        out |= e.reads_all | e.reads_other
        if rule.kind in ("interact", "move"):
            out |= e.reads_self
    return frozenset(out)


def plan_segments(compiled: CompiledScenario, has_policy: bool = False) -> list[list[int]]:
    """Rules grouped so that no rule reads, for rows owned elsewhere, a write not yet exchanged."""
    segments: list[list[int]] = [[]]
    dirty: set[str] = set()
    for rule in compiled.rules:
        reads = rule_remote_reads(rule, has_policy)
        if dirty and (reads is ALL or reads & dirty):
            segments.append([])
            dirty = set()
        segments[-1].append(rule.index)
        dirty |= rule_writes(rule)
    return segments


def remotely_read(compiled: CompiledScenario, has_policy: bool = False) -> frozenset[str]:
    """Attributes that some shard reads, at some point of a step, for rows it does not own:
    the rules' remote reads, and whatever the environment, the metrics and the stop condition
    read (they look at everyone). Only these are ever exchanged."""
    out: set[str] = set(population_read(compiled))
    for rule in compiled.rules:
        reads = rule_remote_reads(rule, has_policy)
        if reads is ALL:
            return ALL
        out |= reads
    for _, e in compiled.env:
        out |= e.reads_self | e.reads_all
    return frozenset(out)


def population_read(compiled: CompiledScenario) -> frozenset[str]:
    """Attributes the metrics and the stop condition read (for everyone)."""
    out: set[str] = set()
    for e in [*(e for _, e in compiled.metrics), compiled.stop_when]:
        if e is not None:
            out |= e.reads_self | e.reads_all
    return frozenset(out)


def segment_writes(compiled: CompiledScenario, segment: list[int], has_policy: bool = False) -> list[str]:
    """What a segment's rules write that another shard will read: its exchange."""
    names: set[str] = set()
    for i in segment:
        names |= rule_writes(compiled.rules[i])
    needed = remotely_read(compiled, has_policy)
    return sorted(names if needed is ALL else names & needed)


def partition(n: int, k: int) -> list[tuple[int, int]]:
    """K contiguous id ranges of (nearly) equal size.

    Any partition gives the same result; ranges make a replicated exchange a slice copy, and
    they are also the graph-aware cut for our generators, which give neighbors nearby ids
    (lattices, rings, block models: a few percent of edges cross; see `simulator.partitioned`).
    """
    if not 1 <= k <= n:
        raise SocietasError(f"cannot split {n} agents into {k} shards", hint="use --shards between 1 and the agent count")
    cuts = [round(i * n / k) for i in range(k + 1)]
    return list(itertools.pairwise(cuts))


# --- one shard's simulation -------------------------------------------------------------------

def checkpoint_state(sim: Simulation, own: slice, index: int) -> dict[str, Any]:
    """A shard's checkpoint: its own rows of every mutable attribute and its decision counts;
    shard 0 adds the step, parameters and environment, which every shard shares."""
    state: dict[str, Any] = {
        "attrs": {x: a[own].copy() for x, a in sim.attrs.items() if x not in BUILTINS},
        "decisions": dict(sim.decisions),
    }
    if index == 0:
        state.update(step_no=sim.step_no, params=dict(sim.params), env=dict(sim.env),
                     env_overrides=dict(sim.env_overrides))
    return state


def restore_shared(sim: Simulation, states: tuple[dict[str, Any], ...], index: int) -> None:
    """The shared part of a restore (the caller puts the attributes back)."""
    shared = states[0]
    sim.step_no = shared["step_no"]
    sim.params = dict(shared["params"])
    sim.env = dict(shared["env"])
    sim.env_overrides = dict(shared["env_overrides"])
    sim.decisions = dict(states[index]["decisions"])


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
        ctx = _Ctx(self, None, None, RULE_METRICS)
        return np.array([_scalar(e, ctx) for i, (_, e) in enumerate(self.c.metrics) if i % k == self.index],
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
        ctx = _Ctx(self, a, b, rule.index + 1)
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


class ShardWorker:
    """The Ray actor around one `ShardSimulation`: `load` builds it, then one method per phase.

    The constructor takes nothing, so that Ray can restart a dead shard by itself; the
    coordinator then loads it again and restores the checkpoint. A user error while loading
    (memory, a bad density) is an ordinary task error, which reaches the driver with its message.
    """

    def __init__(self) -> None:
        self.sim: ShardSimulation | None = None

    def load(self, spec_data: dict[str, Any], params: dict[str, float] | None, seed: int,
             population: int | None, max_steps: int | None, bounds: list[tuple[int, int]], index: int,
             piece: dict[str, Any] | None = None, policy_factory: Callable[[], DecisionPolicy] | None = None) -> int:
        self.sim = None
        compiled = compile_scenario(ScenarioSpec.model_validate(spec_data))
        # Each shard opens its own LLM client: its agents' calls are issued from where they live.
        policy = policy_factory() if policy_factory is not None else None
        with np.errstate(all="ignore"):
            if piece is not None:  # partitioned: this shard's agents and their neighbors only
                from simulator.partitioned import LocalShard

                self.sim = LocalShard(compiled, params, seed, population=population, max_steps=max_steps,
                                      bounds=bounds, index=index, piece=piece)
            else:
                self.sim = ShardSimulation(compiled, params, seed, population=population, max_steps=max_steps,
                                           policy=policy, bounds=bounds, index=index)
        self.segments = plan_segments(compiled, policy is not None)
        # One shard alone has nobody to send its writes to.
        self.writes = [segment_writes(compiled, s, policy is not None) if len(bounds) > 1 else []
                       for s in self.segments]
        self.outputs = len(bounds) if piece is not None else 1
        self._at_step_start()
        return index

    def exchange_bytes(self) -> int:
        """Bytes of this shard's writes that other shards take in per step: what `outgoing` sends,
        counted once per receiving shard (a replicated shard's one object goes to all the others)."""
        readers = len(self.sim.bounds) - 1 if self.outputs == 1 else 1
        return readers * sum(_nbytes(part) for names in self.writes for part in self.sim.outgoing(names))

    def _at_step_start(self) -> None:
        self.next_segment = 0  # the segment the next round runs
        self.unmeasured = False  # the last step's metrics are still to be taken
        self.stopped = False

    def loaded(self) -> bool:
        return self.sim is not None

    def advance(self, checkpoint: bool, *incoming: dict[str, Any] | None) -> tuple:
        """One round of the lockstep: take in the other shards' last writes, then run the next
        segment. Returns a report for the coordinator, then this shard's writes: one object for
        all other shards (replicated state) or one per shard (partitioned: each its halo).

        A round that follows a step's last segment first measures that step (this shard's share
        of the metrics) and checks the stop condition: replicas are identical by then, so every
        shard reaches the same verdict and none begins a step after the end. (Partitioned, only
        shard 0 can tell; the others may run on for the rounds already queued, which change
        nothing reported: see `LocalShard.decisions_after`.) Measuring in
        the same call as the next step's first segment halves the rounds, and lets the
        coordinator queue rounds ahead: a round cannot start before its inputs, the other
        shards' writes from the round before, exist (the barrier). ``checkpoint`` adds this
        shard's state after the measured step to the report.
        """
        sim = self.sim
        report: dict[str, Any] = {}
        with np.errstate(all="ignore"):
            sim.receive(incoming)
            if self.unmeasured:
                self.unmeasured = False
                report["metrics"] = sim.measure_share()
                report["stop"] = sim.should_stop()
                if checkpoint:
                    report["checkpoint"] = sim.checkpoint()
                self.stopped = report["stop"] or sim.step_no >= sim.max_steps
            if self.stopped:
                return (report, *[None] * self.outputs)
            if self.next_segment == 0:
                sim.begin_step()
            i = self.next_segment
            sim.apply_rules(self.segments[i])
            self.next_segment = (i + 1) % len(self.segments)
            self.unmeasured = self.next_segment == 0
            return (report, *sim.outgoing(self.writes[i]))

    def measure(self) -> np.ndarray:
        with np.errstate(all="ignore"):
            return self.sim.measure()

    def checkpoint(self) -> dict[str, Any]:
        return {"checkpoint": self.sim.checkpoint()}

    def restore(self, *reports: dict[str, Any]) -> int:
        """Back to the state a checkpoint recorded (one report per shard, in shard order)."""
        self.sim.restore(tuple(r["checkpoint"] for r in reports))
        self._at_step_start()
        return self.sim.step_no

    def decisions(self, steps: int | None = None) -> tuple[dict[str, int], dict[str, list] | None]:
        """Decision counts after ``steps`` steps (default: all run), and the LLM policy's own
        counters and log when it keeps them."""
        policy = self.sim.policy
        counts = self.sim.decisions_after(steps) if steps is not None else dict(self.sim.decisions)
        if policy is None:
            return counts, None
        if hasattr(policy, "counters"):
            counts.update(policy.counters())
        log_columns = getattr(getattr(policy, "log", None), "columns", None)
        if hasattr(policy, "close"):
            policy.close()
        return counts, log_columns

    def params(self) -> dict[str, float]:
        return dict(self.sim.params)

    def usage(self) -> dict[str, float]:
        return process_usage()


def process_usage() -> dict[str, float]:
    """This process's CPU seconds and resident-set high-water mark (Linux VmHWM; else RSS)."""
    import psutil

    proc = psutil.Process()
    cpu = proc.cpu_times()
    peak = float(proc.memory_info().rss)
    try:
        with open("/proc/self/status") as f:
            peak = next(float(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        pass
    return {"cpu_seconds": cpu.user + cpu.system, "peak_rss": peak}


# --- the coordinator ----------------------------------------------------------------------------

def start_shards(k: int, max_restarts: int = 3, num_cpus: float | None = None) -> list:
    """K idle shard actors spread over the cluster, restarted by Ray if their process dies.

    Each reserves ``num_cpus``, by default one CPU or the cluster's CPUs / K if fewer (K shards
    on a 2-core machine must all start). A pool kept between runs should reserve 0, or the
    actors of other runs could wait for CPUs forever.
    """
    import ray

    if num_cpus is None:
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        num_cpus = min(1.0, math.floor(100 * cpus / k) / 100)
    actor = ray.remote(ShardWorker).options(num_cpus=num_cpus, max_restarts=max_restarts,
                                            scheduling_strategy="SPREAD")
    return [actor.remote() for _ in range(k)]


class ShardedRun:
    """One run split over ``shards`` Ray actors; `run()` returns what `Simulation.run()` would.

    ``actors`` (from `start_shards`) lets several runs reuse one set of actors. ``state``:
    "partitioned" (each shard holds its own agents and their neighbors, `simulator.partitioned`),
    "replicated" (each holds everyone), or "auto": partitioned wherever the scenario allows it.
    """

    def __init__(self, spec: ScenarioSpec | dict[str, Any], params: dict[str, float] | None = None, seed: int = 0,
                 *, shards: int = 2, population: int | None = None, max_steps: int | None = None,
                 checkpoint_every: int = 10, max_restarts: int = 3,
                 policy_factory: Callable[[], DecisionPolicy] | None = None, actors: list | None = None,
                 ahead: int = 2, state: str = "auto") -> None:
        import ray

        from simulator.partitioned import PARTITION_HALO_BELOW, expected_halo_share, partition_blocker

        if not ray.is_initialized():
            from simulator.service import ensure_ray

            ensure_ray()
        spec_data = spec if isinstance(spec, dict) else spec.model_dump(mode="json", by_alias=True)
        compiled = compile_scenario(ScenarioSpec.model_validate(spec_data))
        self.n = agent_count(compiled, params, population)
        self.spec_name = compiled.spec.name
        self.metric_names = compiled.metric_names
        self.seed = int(seed)
        self.max_steps = int(max_steps or compiled.spec.stop.max_steps)
        self.k = int(shards)
        self.bounds = partition(self.n, self.k)
        self.checkpoint_every = max(1, int(checkpoint_every))
        self.max_restarts = int(max_restarts)
        self.segments = plan_segments(compiled, policy_factory is not None)
        self.restarts = 0
        self.ahead = max(0, int(ahead))
        if state not in SHARD_STATES:
            raise SocietasError(f"unknown shard state {state!r}", hint=f"use one of {', '.join(SHARD_STATES)}")
        blocker = partition_blocker(compiled, policy_factory is not None)
        if state == "partitioned" and blocker is not None:
            raise SocietasError(f"{self.spec_name} cannot run with partitioned state: {blocker}",
                                hint="drop --shard-state (auto picks what the scenario allows) "
                                     "or use --shard-state replicated")
        halo = expected_halo_share(compiled, params, self.n, self.k) if blocker is None else 1.0
        self.partitioned = self.k > 1 and blocker is None and (
            state == "partitioned" or (state == "auto" and halo <= PARTITION_HALO_BELOW))
        self.state_note = "partitioned" if self.partitioned else "replicated" + (
            f" ({blocker})" if blocker else
            f" (a shard would mirror ~{halo:.0%} of the other shards' agents)" if state == "auto" else "")
        self._owns_actors = actors is None
        if actors is not None and len(actors) < self.k:
            raise ValueError(f"{self.k} shards need {self.k} actors, got {len(actors)}")
        self.actors = start_shards(self.k, max_restarts) if actors is None else list(actors[: self.k])
        self._load_args = (spec_data, params, seed, population, self.max_steps, self.bounds)
        self._build_stats_ref = None
        self._policy_factory = policy_factory
        try:
            self._load(range(self.k))
        except BaseException:
            self.shutdown()
            raise

    def _load(self, which) -> None:
        """Load shards ``which`` (all at the start; a restarted one after a failure). A partitioned
        run first builds and cuts the network (a Ray task), and lets go of the pieces once loaded:
        each shard keeps a copy, and a restart builds them again rather than the object store
        holding them for the whole run."""
        import ray

        which = list(which)
        pieces: list = [None] * self.k
        if self.partitioned and which:
            *pieces, stats = ray.remote(_cut_network).options(num_returns=self.k + 1, num_cpus=0).remote(
                *self._load_args[:4], self.bounds)
            self._build_stats_ref = self._build_stats_ref or stats
        refs = [self.actors[i].load.remote(*self._load_args, i, pieces[i], self._policy_factory) for i in which]
        try:
            ray.get(refs)
        except ray.exceptions.RayTaskError as exc:
            raise _user_error(exc) from None

    def _plan(self, start: int):
        """The rounds from a state where step ``start`` is complete and measured: (the step a
        round measures or None, whether it also checkpoints), the last one measuring only."""
        for t in range(start + 1, self.max_steps + 1):
            for s in range(len(self.segments)):
                measured = t - 1 if s == 0 and t - 1 > start else None
                yield measured, measured is not None and measured % self.checkpoint_every == 0
        if self.max_steps > start:
            yield self.max_steps, False

    def _checkpoint(self) -> list:
        import ray

        refs = [a.checkpoint.remote() for a in self.actors]
        ray.wait(refs, num_returns=len(refs), fetch_local=False)
        return refs

    def _restore(self, refs: list) -> None:
        """Bring every shard back to the checkpoint, waiting for Ray to restart a dead one."""
        import ray
        from ray.exceptions import RayActorError

        deadline = time.monotonic() + 120
        while True:
            try:
                loaded = ray.get([a.loaded.remote() for a in self.actors])
                self._load([i for i, ok in enumerate(loaded) if not ok])  # the restarted ones
                ray.get([a.restore.remote(*refs) for a in self.actors])
                return
            except RayActorError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def run(self, on_step: Callable[[int, int], None] | None = None) -> RunResult:
        """Every step in lockstep, `ahead` steps queued beyond the one being waited for.

        Each round's inputs are the other shards' outputs of the round before, so no shard can
        run ahead of the others (the barrier); queuing rounds keeps the shards from waiting on
        the coordinator between them. A lost shard: every shard back to the last checkpoint,
        the steps since run again (counter-based draws repeat them exactly).
        """
        import ray
        from ray.exceptions import RayActorError

        t0 = time.perf_counter()
        values = [ray.get(self.actors[0].measure.remote())]
        ckpt, ckpt_step = self._checkpoint(), 0
        stopped = False
        while True:
            try:
                pending: collections.deque = collections.deque()
                exchange: list = [None] * self.k  # per shard: its last round's outputs

                def collect() -> bool:
                    nonlocal ckpt, ckpt_step, stopped
                    step, refs, saves = pending.popleft()
                    reports = ray.get(refs)  # raises RayActorError if a shard died
                    measured = np.empty(len(self.metric_names), dtype=np.float64)
                    if self.partitioned:  # shard 0 measures everything
                        measured[:] = reports[0]["metrics"]
                    else:
                        for j, report in enumerate(reports):
                            measured[j::self.k] = report["metrics"]
                    values.append(measured)
                    assert len(values) == step + 1
                    if on_step is not None:
                        on_step(step, self.max_steps)
                    if saves:
                        ckpt, ckpt_step = refs, step
                    stopped = reports[0]["stop"] and step < self.max_steps
                    return reports[0]["stop"]

                done = False
                outputs = self.k if self.partitioned else 1
                for measured, saves in self._plan(len(values) - 1):
                    rounds = [a.advance.options(num_returns=1 + outputs).remote(saves, *self._inputs(exchange, j))
                              for j, a in enumerate(self.actors)]
                    exchange = [r[1:] for r in rounds]
                    if measured is not None:
                        pending.append((measured, [r[0] for r in rounds], saves))
                    while len(pending) > self.ahead and not done:
                        done = collect()
                    if done:
                        break
                while pending and not done:
                    done = collect()
                break
            except RayActorError as exc:
                self.restarts += 1
                if self.restarts > self.max_restarts:
                    raise SocietasError(f"a shard of {self.spec_name} failed {self.restarts} times "
                                        f"({type(exc).__name__})",
                                        hint="check the Ray logs (memory?) or use fewer agents per shard") from None
                log.warning("shard lost after step %d; resuming from the checkpoint at step %d",
                            len(values) - 1, ckpt_step)
                self._restore(ckpt)
                del values[ckpt_step + 1:]
        reports = ray.get([a.decisions.remote(len(values) - 1) for a in self.actors])
        counts: dict[str, int] = {}
        for c, _ in reports:
            for key, v in c.items():
                counts[key] = counts.get(key, 0) + v
        logs = [cols for _, cols in reports if cols is not None]
        return RunResult(
            scenario=self.spec_name, seed=self.seed, params=ray.get(self.actors[0].params.remote()), n_agents=self.n,
            metric_names=self.metric_names, steps=np.arange(len(values)), values=np.vstack(values),
            wall_seconds=time.perf_counter() - t0, stopped_early=stopped,
            decisions=counts,
            decision_log={k: [v for cols in logs for v in cols[k]] for k in logs[0]} if logs else None,
            shard_state=self.state_note,
        )

    def _inputs(self, exchange: list, j: int) -> list:
        """Shard ``j``'s inputs for a round: each other shard's output for it (its one output
        when the state is replicated, its j-th when partitioned), None in ``j``'s own place."""
        if exchange[0] is None:
            return [None] * self.k
        pick = j if self.partitioned else 0
        return [None if i == j else out[pick] for i, out in enumerate(exchange)]

    def bytes_per_step(self) -> int:
        """Bytes the shards take in from each other per step, all together (8 per value): every
        other shard's owned slices when replicated; halos, and the metrics' attributes for shard 0,
        when partitioned."""
        import ray

        return int(sum(ray.get([a.exchange_bytes.remote() for a in self.actors])))

    def build_usage(self) -> dict[str, float] | None:
        """The network builder's seconds and peak resident memory (partitioned runs only)."""
        import ray

        return ray.get(self._build_stats_ref) if self._build_stats_ref is not None else None

    def usage(self) -> list[dict[str, float]]:
        """Per shard: CPU seconds so far and peak resident memory (bytes)."""
        import ray

        return ray.get([a.usage.remote() for a in self.actors])

    def shutdown(self) -> None:
        """Kill the shard actors this run started (a pool passed in stays up for the next run)."""
        import ray

        if self._owns_actors:
            for a in self.actors:
                ray.kill(a, no_restart=True)


def _cut_network(spec_data: dict[str, Any], params: dict[str, float] | None, seed: int, population: int | None,
                 bounds: list[tuple[int, int]]) -> tuple:
    """The Ray task that builds a partitioned run's network: one piece per shard, then its own
    cost (seconds, peak resident memory)."""
    from simulator.alloc import keep_freed_memory
    from simulator.partitioned import cut_network

    t0 = time.perf_counter()
    keep_freed_memory()
    pieces = cut_network(compile_scenario(ScenarioSpec.model_validate(spec_data)), params, seed, population, bounds)
    return (*pieces, {"seconds": time.perf_counter() - t0, "peak_rss": process_usage()["peak_rss"]})


def _nbytes(part: Any) -> int:
    """Bytes of the arrays in an exchanged object (nested dicts of arrays, or None)."""
    if isinstance(part, dict):
        return sum(_nbytes(v) for v in part.values())
    return int(part.nbytes) if isinstance(part, np.ndarray) else 0


def _user_error(exc: Exception) -> Exception:
    """A shard's own `SocietasError` (e.g. not enough memory) as the one-line error it is."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, SocietasError) else exc


def agent_count(compiled: CompiledScenario, params: dict[str, float] | None, population: int | None) -> int:
    """The number of agents `Simulation` would create, without building anything."""
    return int(sum(type_counts(compiled, params, population)))


def run_sharded(spec: ScenarioSpec | dict[str, Any], params: dict[str, float] | None, seed: int, *,
                shards: int, population: int | None = None, max_steps: int | None = None,
                checkpoint_every: int = 10, policy_factory: Callable[[], DecisionPolicy] | None = None,
                actors: list | None = None, state: str = "auto") -> RunResult:
    """One run on ``shards`` Ray actors, bit-identical to `Simulation.run()` for the same seed."""
    run = ShardedRun(spec, params, seed, shards=shards, population=population, max_steps=max_steps,
                     checkpoint_every=checkpoint_every, policy_factory=policy_factory, actors=actors, state=state)
    try:
        return run.run()
    finally:
        run.shutdown()


def shard_count(compiled: CompiledScenario, experiment: Any, shards: int | None, use_ray: bool) -> int:
    """How many shards each run of `experiment` gets: ``shards`` if given, else more than one only
    above `SHARD_THRESHOLD` agents (one per `SHARD_THRESHOLD`, at most the cluster's CPUs)."""
    if shards is not None:
        if shards < 1:
            raise SocietasError(f"--shards must be 1 or more, got {shards}", hint="e.g. --shards 2")
        if shards > 1 and not use_ray:
            raise SocietasError("--shards needs Ray: a sharded run is a set of Ray actors",
                                hint="drop --local, or use --shards 1")
        return shards
    n = max(agent_count(compiled, c.params, experiment.population) for c in experiment.conditions)
    if not use_ray or n <= SHARD_THRESHOLD:
        return 1
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 2
    return max(2, min(cpus, math.ceil(n / SHARD_THRESHOLD)))


def run_all_sharded(spec_data: dict[str, Any], runs: list, experiment: Any, shards: int,
                    policy_factory: Callable[[], DecisionPolicy] | None,
                    progress: Callable[[int, int, str], None] | None, state: str = "auto") -> tuple[list, str]:
    """Every (condition, seed) of an experiment, one sharded run after another (each uses the
    cluster); returns the results and what the shards held (the first run's; all runs share a spec)."""
    results, note = [], ""
    compiled = compile_scenario(ScenarioSpec.model_validate(spec_data))
    for cond, seed in runs:
        n = agent_count(compiled, cond.params, experiment.population)
        res = run_sharded(spec_data, cond.params, seed, shards=min(shards, n), population=experiment.population,
                          max_steps=experiment.steps, policy_factory=policy_factory, state=state)
        note = note or res.shard_state
        results.append((cond, res))
        if progress:
            progress(len(results), len(runs), f"{cond.name} seed {seed} ({shards} shards)")
    log.info("sharded runs: %d shards each, state %s", shards, note)
    return results, note
