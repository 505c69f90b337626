"""Scale: a network scenario of mean degree 10 at 10k, 100k and 1M agents (10M with --big).

    python benchmarks/scale.py [--sizes 10000,100000,1000000] [--big] [--steps 10] [--repeats 3]
                               [--mean-degree 10]

Workload (built in memory from the library's `voter` spec; no YAML is edited): agents on an
Erdős–Rényi network of mean degree 10, two rules that each update *every* agent *every* step,
so "agent-updates" has a plain meaning:

- imitate: opinion <- opinion of one uniformly random neighbor (voter model, activation 1): a
  counter-based random draw per agent and a gather along the neighbor lists;
- average: belief <- 0.5 * belief + 0.5 * neighbor_mean(belief) (DeGroot averaging): a sparse
  mat-vec over all edges;
- metrics every step: share(opinion == 1), mean(belief).

agent-updates/s = agents x rules (2) x steps / seconds, where seconds time `sim.step()` +
`sim.measure()` (what `Simulation.run()` does per step, metrics included): wall clock (the
headline and the target), and process CPU time as a check robust to competing processes. Each size runs in
its own fresh process; a size is timed as `--repeats` blocks of `--steps` consecutive steps of
one simulation and the fastest block counts. Network build time is the time of the engine's
`_build_space` (the Erdős–Rényi generator and CSR conversion) inside `Simulation(...)`;
"set-up" is the whole constructor (network, attribute initialisation).

Memory: peak RSS delta, i.e. the process's resident-set high-water mark (Linux VmHWM, reset via
/proc/self/clear_refs after imports and a warm-up run) minus the RSS just before building the
simulation; it covers set-up (network generation temporaries included) and all timed steps.
bytes/agent = that peak / agents. Also printed: the live engine arrays after the run (attributes
plus the space's CSR arrays, from `nbytes`), per agent.

Targets on the 2-core reference machine: 1M agents at >= 5M agent-updates/s and < 1 KB peak
memory per agent, printed as `target_met: yes/no` lines.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from _common import (cpu, fmt_rate, load_line, machine_line, network_spec, now,  # noqa: E402
                     peak_rss_bytes, reset_peak_rss, rss_bytes)

TARGET_RATE = 5e6  # agent-updates/s at 1M agents
TARGET_BYTES = 1024  # peak bytes per agent at 1M agents
TARGET_N = 1_000_000
BIG_N = 10_000_000
RULES = 2  # both rules update every agent every step


def _one(n: int, steps: int, repeats: int, mean_degree: float, seed: int) -> dict:
    """Measure one size in this process (called in a fresh subprocess by `main`)."""
    from simulator.compile import compile_scenario
    from simulator.engine import Simulation, estimate_bytes_per_agent

    class TimedSimulation(Simulation):
        """The engine's Simulation, timing its network build."""

        def _build_space(self, pctx):
            t0 = now()
            space = super()._build_space(pctx)
            self.build_seconds = now() - t0
            return space

    compiled = compile_scenario(network_spec(mean_degree))
    with np.errstate(all="ignore"):
        TimedSimulation(compiled, None, seed=seed, population=1000, max_steps=2).run()  # warm-up

    # Break the step down by rule (an instance-level wrapper: one perf_counter per rule call).
    rule_seconds = {r.name: 0.0 for r in compiled.rules}

    base_rss = rss_bytes()
    peak_ok = reset_peak_rss()
    t0 = now()
    sim = TimedSimulation(compiled, None, seed=seed, population=n, max_steps=steps)
    setup_seconds = now() - t0
    setup_peak = peak_rss_bytes() - base_rss

    apply_rule = sim._apply_rule

    def timed_apply(rule, rows):
        t = now()
        apply_rule(rule, rows)
        rule_seconds[rule.name] += now() - t

    sim._apply_rule = timed_apply

    blocks, cpu_blocks, measure_seconds = [], [], 0.0
    with np.errstate(all="ignore"):
        sim.measure()
        for _ in range(repeats):
            t_block, c_block = now(), cpu()
            for _ in range(steps):
                sim.step()
                t = now()
                values = sim.measure()
                measure_seconds += now() - t
            blocks.append(now() - t_block)
            cpu_blocks.append(cpu() - c_block)
    total_steps = steps * repeats
    best = min(blocks)
    peak = peak_rss_bytes() - base_rss
    live = sum(a.nbytes for a in sim.attrs.values()) + sim.space.memory_bytes()
    return {
        "n": sim.n,
        "edges": int(sim.space.n_edges),
        "mean_degree": 2 * sim.space.n_edges / sim.n,
        "build_seconds": sim.build_seconds,
        "setup_seconds": setup_seconds,
        "sec_per_step": best / steps,
        "block_seconds": blocks,
        "updates_per_s": sim.n * RULES * steps / best,
        "cpu_updates_per_s": sim.n * RULES * steps / min(cpu_blocks),
        "rule_ms_per_step": {k: 1e3 * v / total_steps for k, v in rule_seconds.items()},
        "measure_ms_per_step": 1e3 * measure_seconds / total_steps,
        "peak_rss_delta": peak,
        "setup_peak_rss_delta": setup_peak,
        "rss_delta_after": rss_bytes() - base_rss,
        "peak_is_hwm": peak_ok,
        "live_array_bytes": live,
        "engine_estimate_bytes_per_agent": estimate_bytes_per_agent(compiled, mean_degree),
        "final": dict(zip(sim.c.metric_names, map(float, values))),
    }


def _run_child(n: int, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(n), "--steps", str(args.steps),
           "--repeats", str(args.repeats), "--mean-degree", str(args.mean_degree), "--seed", str(args.seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"size {n} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000", help="agent counts (default 10k,100k,1M)")
    ap.add_argument("--big", action="store_true", help=f"also {BIG_N:,} agents, if memory allows")
    ap.add_argument("--steps", type=int, default=10, help="steps per timed block (default 10)")
    ap.add_argument("--repeats", type=int, default=3, help="timed blocks; the fastest counts (default 3)")
    ap.add_argument("--mean-degree", type=float, default=10.0, help="Erdős–Rényi mean degree (default 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # internal: one size, JSON out
    args = ap.parse_args(argv)

    if args.one is not None:
        print(json.dumps(_one(args.one, args.steps, args.repeats, args.mean_degree, args.seed)))
        return 0

    sizes = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    if args.big and BIG_N not in sizes:
        sizes.append(BIG_N)
    print(f"Scale: voter (neighbor_random) + DeGroot (neighbor_mean) on Erdős–Rényi, mean degree "
          f"{args.mean_degree:g}; {RULES} rules, every agent updated every step")
    print(machine_line())
    print(f"timing: fastest of {args.repeats} blocks of {args.steps} steps (step + per-step metrics); "
          f"memory: peak RSS delta (VmHWM) over set-up + steps, one fresh process per size")
    print(f"{'agents':>11} {'edges':>11} {'deg':>5} {'net build s':>11} {'setup s':>8} {'s/step':>8} "
          f"{'updates/s':>10} {'(cpu)':>7} {'peak MB':>8} {'B/agent':>8} {'live B/ag':>9}  per-rule ms/step")
    results = {}
    for n in sizes:
        if n >= BIG_N:
            per_agent = results[TARGET_N]["peak_rss_delta"] / TARGET_N if TARGET_N in results else TARGET_BYTES
            need = 1.3 * per_agent * n
            avail = psutil.virtual_memory().available
            if need > 0.8 * avail:
                print(f"{n:>11,} skipped: needs about {need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available")
                continue
        r = _run_child(n, args)
        results[n] = r
        rules = ", ".join(f"{k} {v:.1f}" for k, v in r["rule_ms_per_step"].items())
        print(f"{r['n']:>11,} {r['edges']:>11,} {r['mean_degree']:>5.2f} {r['build_seconds']:>11.3f} "
              f"{r['setup_seconds']:>8.3f} {r['sec_per_step']:>8.4f} {fmt_rate(r['updates_per_s']):>10} "
              f"{fmt_rate(r['cpu_updates_per_s']):>7} "
              f"{r['peak_rss_delta'] / 2**20:>8.1f} {r['peak_rss_delta'] / r['n']:>8.0f} "
              f"{r['live_array_bytes'] / r['n']:>9.0f}  {rules}, metrics {r['measure_ms_per_step']:.1f}",
              flush=True)
    print()
    print(f"updates/s: agents x 2 rules x steps / wall seconds; (cpu): / process CPU seconds ({load_line()}).")
    print("B/agent: peak RSS delta / agents (set-up incl. network "
          "temporaries, and steps). live B/ag: attribute + CSR arrays held after the run.")
    for n, r in results.items():
        print(f"  {n:,}: set-up peak {r['setup_peak_rss_delta'] / n:.0f} B/agent, RSS after run "
              f"{r['rss_delta_after'] / n:.0f} B/agent, engine's own estimate {r['engine_estimate_bytes_per_agent']} "
              f"B/agent; final {json.dumps({k: round(v, 4) for k, v in r['final'].items()})}")
    if TARGET_N in results:
        r = results[TARGET_N]
        bpa = r["peak_rss_delta"] / TARGET_N
        print(f"agent_updates_per_s_1M: {r['updates_per_s']:.4g}")
        print(f"agent_updates_per_s_1M_cpu_time: {r['cpu_updates_per_s']:.4g}")
        print(f"bytes_per_agent_1M: {bpa:.0f}")
        print(f"target_met: {'yes' if r['updates_per_s'] >= TARGET_RATE else 'no'} "
              f"(1M agents >= {TARGET_RATE:.0e} agent-updates/s: {fmt_rate(r['updates_per_s'])})")
        print(f"target_met: {'yes' if bpa < TARGET_BYTES else 'no'} (1M agents < {TARGET_BYTES} B peak per agent: "
              f"{bpa:.0f} B)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
