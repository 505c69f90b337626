"""The Ray actor around one shard (`ShardWorker`) and the pool of them (`start_shards`).

An actor owns one piece of state, its shard's simulation, and has one method per phase of a
round; `simulator.sharding.coordinator` drives them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from simulator.compile import compile_scenario
from simulator.engine import DecisionPolicy
from simulator.sharding.partitioned import LocalShard
from simulator.sharding.planning import plan_segments, segment_writes
from simulator.sharding.replicated import ShardSimulation
from simulator.spec import ScenarioSpec


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


def _nbytes(part: Any) -> int:
    """Bytes of the arrays in an exchanged object (nested dicts of arrays, or None)."""
    if isinstance(part, dict):
        return sum(_nbytes(v) for v in part.values())
    return int(part.nbytes) if isinstance(part, np.ndarray) else 0


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
