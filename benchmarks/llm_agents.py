"""LLM agents at scale: does the simulator keep the LLM server busy, and what do archetypes save?

    python benchmarks/llm_agents.py [--llm-url URL] [--model-path X.gguf] [--scenario el_farol] [--metric M]
                                    [--agents 1000] [--steps 4]
                                    [--runs 1] [--concurrency 4] [--saturation-decisions 24]
                                    [--compare-agents 24] [--compare-steps 3] [--compare-seeds 3]

1. The server's saturated decisions/s, measured as `llm_throughput.py` measures it (its
   `saturated()`: distinct Decision-shaped requests, as many in flight as the simulation has:
   concurrency x runs), before and after
   the simulation (the mean of both is the reference: other work on the cores drifts).
2. A 1,000-agent El Farol run in LLM mode (`library/el_farol.yaml`; every patron decides every
   week) with a fresh response cache: server calls per second while the run is going, its
   ratio to (1) as `busy_ratio`, and agent decisions per server call as `calls_saved`
   (archetype grouping within a step plus cache hits across steps). `--runs K` runs seeds
   0..K-1 at once (as Ray tasks would), each with its own client and concurrency limit: what
   a GPU server with a large batch needs to be kept busy.
3. Grouped against ungrouped runs (`AgentsSetup.group`: prompts with rounded numbers and one
   call per distinct prompt, against exact numbers and one call per agent) at the same seeds,
   smaller because ungrouped costs one call per agent: the difference in the main metric
   (default: the scenario's first metric, e.g. El Farol's attendance; mean over the run's steps)
   with its 95% CI over seeds.

Prints `decisions_per_s`, `saturated_decisions_per_s`, `busy_ratio: <x>`, `calls_saved: <x>`
and `grouping_effect: <diff> [<low>, <high>]` last. `--llm http://host:8000/v1` runs it
against a vLLM server instead of the embedded model (raise --concurrency and --runs, e.g. 64 and 4,
and --saturation-decisions to a few hundred).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llm_throughput

from llms.backends import parse_backend
from llms.client import LLMClient
from llms.endpoints import Backend
from simulator.agents_backend import agents_client
from simulator.catalog import load_scenario
from simulator.compile import compile_scenario
from simulator.engine import RunResult, Simulation
from simulator.llm_agents import LLMDecisions
from simulator.stats import mean_ci

console = Console(highlight=False, markup=False, soft_wrap=True)  # key: value lines never wrap


def run(backend: Backend, cache_path: Path, *, scenario: str, agents: int, steps: int, seed: int, group: bool,
        concurrency: int) -> tuple[RunResult, dict[str, int], float]:
    policy = LLMDecisions(agents_client(backend, cache_path), group=group)
    sim = Simulation(compile_scenario(load_scenario(scenario)), None, seed, population=agents, max_steps=steps,
                     policy=policy)
    started = time.perf_counter()
    try:
        result = sim.run()
    finally:
        policy.close()
    return result, policy.counters(), time.perf_counter() - started


def concurrent_runs(backend: Backend, cache_path: Path, k: int, **kw) -> tuple[list[RunResult], dict[str, int], float]:
    """Seeds 0..k-1 at once, each in its own thread with its own policy (as k Ray tasks would be)."""
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    with ThreadPoolExecutor(k) as pool:
        done = list(pool.map(lambda seed: run(backend, cache_path, seed=seed, **kw), range(k)))
    wall = time.perf_counter() - started
    totals = {key: sum(c[key] for _, c, _ in done) for key in done[0][1]}
    return [r for r, _, _ in done], totals, wall


def saturation(backend: Backend, concurrency: int, n: int, offset: int) -> float:
    """`llm_throughput.saturated` with `concurrency` requests in flight (the simulation's total)."""
    wide = Backend(backend.spec, max_concurrency=concurrency, timeout=600, idle_seconds=600)  # same servers
    rate, repairs, failures = llm_throughput.saturated(LLMClient(wide, role="agents", repairs=2), n, offset)
    console.print(f"  saturated: {rate:.2f} decisions/s (repairs {repairs}, failures {failures})")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llm", "--llm-url", dest="llm", default=None,
                    help="agents' backend (default: embedded); e.g. http://gpu:8000/v1 (a vLLM server)")
    ap.add_argument("--model-path", default=None)
    ap.add_argument("--scenario", default="el_farol", help="a library scenario with LLM agents")
    ap.add_argument("--metric", default=None, help="its main metric (default: the first)")
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--runs", type=int, default=1, help="seeds run at once in part 2")
    ap.add_argument("--concurrency", type=int, default=4, help="requests in flight, simulation and saturation alike")
    ap.add_argument("--saturation-decisions", type=int, default=24)
    ap.add_argument("--compare-agents", type=int, default=24)
    ap.add_argument("--compare-steps", type=int, default=3)
    ap.add_argument("--compare-seeds", type=int, default=3)
    args = ap.parse_args()
    metric = args.metric or next(iter(load_scenario(args.scenario).metrics))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the servers
    os.environ.setdefault("SOCIETAS_CACHE_DIR", tempfile.mkdtemp(prefix="societas-bench-"))
    work = Path(tempfile.mkdtemp(prefix="societas-llm-agents-"))
    backend = Backend(parse_backend(args.llm, model_path=args.model_path), max_concurrency=args.concurrency,
                      timeout=600, idle_seconds=600)
    console.print(f"backend: {backend.label}   cores: {os.cpu_count()}   concurrency: {args.concurrency}")
    console.print("load average before: %.2f %.2f %.2f (other work on the cores skews every number)" % os.getloadavg())
    try:
        warm = LLMClient(backend, role="agents")
        for _ in range(max(1, len(backend.servers))):
            warm.complete("warm up", max_tokens=8, use_cache=False)
        console.print("1. server saturation (llm_throughput.saturated)")
        in_flight = args.concurrency * args.runs
        before = saturation(backend, in_flight, args.saturation_decisions, 0)

        console.print(f"2. {args.scenario}: {args.agents} LLM agents x {args.steps} steps x {args.runs} run(s) at once, "
                      "fresh cache, grouped")
        results, counts, wall = concurrent_runs(backend, work / "main.sqlite", args.runs, scenario=args.scenario,
                                                agents=args.agents,
                                                steps=args.steps, group=True, concurrency=args.concurrency)
        result = results[0]
        requests = counts["llm_requests"]
        decided = counts["llm_agent_decisions"] + counts["llm_invalid"] + counts["llm_failed"]
        console.print(f"  {decided} agent decisions, {counts['llm_prompts']} distinct prompts, {requests} server "
                      f"requests, {counts['llm_cache_hits']} cache hits, {counts['llm_invalid']} invalid, "
                      f"{counts['llm_failed']} failed; {wall:.1f} s ({counts['llm_ms'] / 1000:.1f} s waiting on "
                      f"the LLM); {metric} by step: "
                      + " ".join(f"{v:.2f}" for v in result.values[:, result.metric_names.index(metric)]))
        after = saturation(backend, in_flight, args.saturation_decisions, args.saturation_decisions)
        reference = (before + after) / 2

        console.print(f"3. grouped vs ungrouped: {args.compare_agents} agents x {args.compare_steps} steps, "
                      f"seeds 0..{args.compare_seeds - 1}")
        diffs = []
        for seed in range(args.compare_seeds):
            means = {}
            for group in (True, False):
                res, cnt, secs = run(backend, work / "compare.sqlite", scenario=args.scenario, agents=args.compare_agents,
                                     steps=args.compare_steps, seed=seed, group=group, concurrency=args.concurrency)
                means[group] = float(res.values[1:, res.metric_names.index(metric)].mean())
                console.print(f"  seed {seed} {'grouped  ' if group else 'ungrouped'}: {metric} {means[group]:.3f}, "
                              f"{cnt['llm_requests']} requests, {secs:.1f} s")
            diffs.append(means[True] - means[False])
        diff, low, high, n = mean_ci(diffs)
    finally:
        backend.stop_servers()
    rate = requests / wall
    console.print("load average after: %.2f %.2f %.2f" % os.getloadavg())
    console.print(f"agent_decisions_per_s: {decided / wall:.2f}")
    console.print(f"decisions_per_s: {rate:.2f}  (server calls per second during the run)")
    console.print(f"saturated_decisions_per_s: {reference:.2f}  (before {before:.2f}, after {after:.2f})")
    console.print(f"busy_ratio: {rate / reference:.2f}")
    console.print(f"calls_saved: {decided / max(requests, 1):.1f}")
    console.print(f"grouping_effect: {diff:+.3f} [{low:+.3f}, {high:+.3f}]  ({metric}, grouped - ungrouped, "
                  f"mean over steps, 95% CI over {n} seeds)")


if __name__ == "__main__":
    main()
