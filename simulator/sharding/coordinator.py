"""The coordinator of a sharded run (`ShardedRun`) and the sharded runs of an experiment.

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
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from simulator.alloc import keep_freed_memory
from simulator.compile import compile_scenario
from simulator.engine import DecisionPolicy, RunResult
from simulator.ray_runtime import ensure_ray
from simulator.sharding.actors import process_usage, start_shards
from simulator.sharding.partitioned import cut_network
from simulator.sharding.planning import (
    PARTITION_HALO_BELOW,
    SHARD_STATES,
    agent_count,
    expected_halo_share,
    partition,
    partition_blocker,
    plan_segments,
)
from simulator.spec import ScenarioSpec
from societas.errors import SocietasError

log = logging.getLogger(__name__)


class ShardedRun:
    """One run split over ``shards`` Ray actors; `run()` returns what `Simulation.run()` would.

    ``actors`` (from `start_shards`) lets several runs reuse one set of actors. ``state``:
    "partitioned" (each shard holds its own agents and their neighbors, `simulator.sharding.partitioned`),
    "replicated" (each holds everyone), or "auto": partitioned wherever the scenario allows it.
    """

    def __init__(self, spec: ScenarioSpec | dict[str, Any], params: dict[str, float] | None = None, seed: int = 0,
                 *, shards: int = 2, population: int | None = None, max_steps: int | None = None,
                 checkpoint_every: int = 10, max_restarts: int = 3,
                 policy_factory: Callable[[], DecisionPolicy] | None = None, actors: list | None = None,
                 ahead: int = 2, state: str = "auto") -> None:
        import ray

        if not ray.is_initialized():
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
    t0 = time.perf_counter()
    keep_freed_memory()
    pieces = cut_network(compile_scenario(ScenarioSpec.model_validate(spec_data)), params, seed, population, bounds)
    return (*pieces, {"seconds": time.perf_counter() - t0, "peak_rss": process_usage()["peak_rss"]})


def _user_error(exc: Exception) -> Exception:
    """A shard's own `SocietasError` (e.g. not enough memory) as the one-line error it is."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, SocietasError) else exc


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
