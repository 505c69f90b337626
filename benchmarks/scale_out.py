"""Scale out: one network simulation split over Ray shard actors, 1 vs 2 shards, and a size ladder.

    python benchmarks/scale_out.py [--agents 1000000] [--steps 10] [--ladder 1e6,2e6,5e6,1e7]
                                   [--mean-degree 10] [--quick]

Workload: the scale benchmark's (`_common.network_spec`): Erdős–Rényi, mean degree 10, two rules
that update every agent every step (voter imitation of a random neighbor, DeGroot averaging),
metrics every step. Both configurations run through `simulator.sharding.coordinator.ShardedRun` (1 shard = one
actor, no exchange), so they pay the same Ray overheads; seconds per step is the pace of `--steps` steps after one warm-up step: the time from the
warm-up step's metrics reaching the coordinator to the last step's, over `--steps`; each step a
full lockstep (segments, barrier, exchange, metrics shared out). The two runs' metrics are compared bit for bit.

Printed: seconds per step for 1 and 2 shards and `speedup: <x>` (their ratio, wall clock); the
shards' CPU seconds per step and `speedup_cpu_time` (1 shard's CPU s/step over the busiest of the
2 shards': the speed-up if each shard had a core to itself; robust to other load); bytes the shards take in from each other per step for the
exchange; peak resident memory per shard (VmHWM of each actor process: set-up included); then
the ladder with 2 shards (`--quick`: 1M and 2M only), stopping after the first size slower than
one step per second (unless `--whole-ladder`), and `largest_at_1_step_per_s: <agents>`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import numpy as np
import psutil
from _common import load_line, machine_line, network_spec, now

from simulator.sharding.planning import SHARD_STATES

SEED = 0


def measure(spec, n: int, shards: int, steps: int, state: str = "auto") -> dict:
    """Build a sharded run of n agents and run `steps` + 1 steps; the first is the warm-up.

    Seconds per step: the pace from the warm-up step's metrics reaching the coordinator to the
    last step's (rounds are queued ahead, so single intervals come in bursts)."""
    from simulator.sharding.coordinator import ShardedRun

    t0 = now()
    run = ShardedRun(spec, None, SEED, shards=shards, population=n, max_steps=steps + 1, state=state)
    setup = now() - t0
    arrivals: list[float] = []
    try:
        cpu0 = [u["cpu_seconds"] for u in run.usage()]
        result = run.run(on_step=lambda step, total: arrivals.append(now()))
        usage = run.usage()
        exchanged = run.bytes_per_step()
        builder = run.build_usage()
    finally:
        run.shutdown()
    # Metrics arrive in bursts (rounds are queued ahead), so single intervals mean little: the pace
    # is the span from the warm-up step's metrics to the last step's, over the steps in between.
    pace = (arrivals[-1] - arrivals[0]) / steps
    cpu = [(u["cpu_seconds"] - c0) / (steps + 1) for u, c0 in zip(usage, cpu0)]  # warm-up step included
    return {"n": n, "shards": shards, "setup_s": setup, "sec_per_step": pace,
            "cpu_per_step": sum(cpu), "critical_cpu": max(cpu), "bytes_per_step": exchanged, "state": run.state_note, "builder": builder,
            "peak_rss": [u["peak_rss"] for u in usage], "values": result.values}


def line(r: dict) -> str:
    peaks = " / ".join(f"{p / 2**30:.2f}" for p in r["peak_rss"])
    builder = f"{r['builder']['peak_rss'] / 2**30:.2f}" if r["builder"] else "-"
    return (f"{r['n']:>11,} {r['shards']:>6} {r['state'].split()[0]:>11} {r['setup_s']:>8.1f} {r['sec_per_step']:>9.3f} "
            f"{r['cpu_per_step']:>10.3f} {r['bytes_per_step'] / 2**20:>10.1f}  {peaks:<13} {builder:>7}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=float, default=1e6, help="agents for the 1 vs 2 shards comparison")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per configuration, after one warm-up step")
    ap.add_argument("--ladder", default="1e6,2e6,5e6,1e7", help="agent counts to try with 2 shards")
    ap.add_argument("--mean-degree", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true", help="ladder 1M, 2M only")
    ap.add_argument("--network", default="erdos_renyi", choices=("erdos_renyi", "lattice"),
                    help="the workload's network (the issue's target is Erdős–Rényi)")
    ap.add_argument("--state", default="auto", choices=SHARD_STATES,
                    help="shard state: each shard its agents and their neighbors, or everyone (auto: "
                         "partitioned where the scenario allows)")
    ap.add_argument("--whole-ladder", action="store_true", help="go on past the first size slower than 1 step/s")
    args = ap.parse_args(argv)

    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    spec = network_spec(args.mean_degree)
    if args.network == "lattice":  # neighbors with nearby ids: contiguous shards share only their edges
        spec = spec.model_copy(update={"space": spec.space.model_copy(update={
            "network": "lattice", "neighborhood": "moore", "torus": True})})
    n = int(args.agents)
    where = (f"Erdős–Rényi, mean degree {args.mean_degree:g}" if args.network == "erdos_renyi"
             else "a Moore lattice (torus, degree 8)")
    print(f"Scale out: voter + DeGroot on {where}; "
          f"one run split over Ray shard actors")
    print(machine_line())
    print(f"at start: {load_line()}")
    head = (f"{'agents':>11} {'shards':>6} {'state':>11} {'setup s':>8} {'s/step':>9} {'cpu s/step':>10} "
            f"{'MiB/step':>10}  {'peak GiB/shard':<13} {'builder':>7}")
    print(head)
    one = measure(spec, n, 1, args.steps)
    print(line(one), flush=True)
    two = measure(spec, n, 2, args.steps, args.state)
    print(line(two), flush=True)
    identical = np.array_equal(one["values"], two["values"], equal_nan=True)

    ladder = [int(float(x)) for x in args.ladder.split(",")]
    if args.quick:
        ladder = [x for x in ladder if x <= 2_000_000]
    print(f"\nladder, 2 shards ({load_line()}):")
    print(head)
    largest = 0
    per_agent = max(two["peak_rss"]) / n
    for size in ladder:
        need = 2 * 1.2 * per_agent * size
        if need > 0.8 * psutil.virtual_memory().available:
            print(f"{size:>11,} skipped: needs about {need / 2**30:.1f} GiB")
            break
        r = two if size == n else measure(spec, size, 2, max(3, min(args.steps, 5)), args.state)
        print(line(r), flush=True)
        if r["sec_per_step"] > 1.0:
            if not args.whole_ladder:
                break
            continue
        largest = size

    print()
    print(f"at end: {load_line()}")
    print(f"sec_per_step_1_shard: {one['sec_per_step']:.4f}")
    print(f"sec_per_step_2_shards: {two['sec_per_step']:.4f}")
    print(f"cpu_sec_per_step (all shards): 1 shard {one['cpu_per_step']:.4f}, 2 shards {two['cpu_per_step']:.4f}")
    print(f"bytes_exchanged_per_step: {two['bytes_per_step']} (taken in by the 2 shards from each other, "
          f"through the object store; state {two['state']})")
    print("peak_memory_per_shard_bytes: " + ", ".join(f"{p:.0f}" for p in two["peak_rss"])
          + f" (1 shard: {one['peak_rss'][0]:.0f})")
    print(f"identical_metrics_1_vs_2_shards: {'yes' if identical else 'no'}")
    print(f"largest_at_1_step_per_s: {largest}")
    # The busiest shard's CPU time per step: the step time if every shard had a core to itself.
    print(f"speedup_cpu_time: {one['critical_cpu'] / two['critical_cpu']:.2f} (1 shard's CPU s/step over the "
          f"busiest of 2 shards' CPU s/step: {one['critical_cpu']:.4f} / {two['critical_cpu']:.4f})")
    print(f"speedup: {one['sec_per_step'] / two['sec_per_step']:.2f}")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
