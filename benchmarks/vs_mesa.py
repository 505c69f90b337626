"""Schelling segregation: this engine against Mesa's own example, at equal parameters and steps.

    python benchmarks/vs_mesa.py [--steps 20] [--repeats 3] [--sizes 50,100,200]
                                 [--ours-only 500,1000] [--tol 0.05] [--quick]

Mesa side: `mesa.examples.basic.schelling.model.Schelling` (Mesa 3.x), unmodified. Its
parameters, read from its model.py / agents.py, and ours set to match:

- homophily is a *fraction*: an agent is unhappy when (similar neighbors / neighbors) < homophily
  (the docstring says "number", the code divides). So Mesa homophily 0.3 == our `wish` 0.3.
- density 0.8: Mesa fills each cell independently with probability 0.8 (the population is
  random, ~0.8 * cells); ours places exactly round(0.8 * side^2) agents, and our grid side is
  ceil(sqrt(population / density)), which then equals `side` (checked).
- minority_pc 0.5: each agent is type 1 with probability 0.5 (ours: minority_share 0.5).
- radius 1 Moore neighborhood (8 cells) on an `OrthogonalMooreGrid` with Mesa's default
  torus=False. Our library spec uses a torus, so ours runs an in-memory copy with
  `space.torus = False` (and `stop.when` removed so that both run a fixed number of steps).
- An agent with no neighbors: Mesa counts it unhappy (similarity 0), ours content (the share is
  undefined). At density 0.8 such agents are ~0.2^8 of the interior: negligible.
- Moves: both decide who is unhappy from the state at the start of a step. Mesa then moves the
  unhappy agents one by one in random order, each to a uniformly random cell empty at that
  moment (cells vacated earlier in the same step can be taken); ours moves them all at once to
  distinct cells that were empty at the start of the step (synchronous). The dynamics are
  therefore not identical step by step, but the segregation they reach should agree: we compare
  the mean similarity after the same number of steps within an absolute tolerance.

Similarity (both): mean over agents with >= 1 neighbor of the share of same-type neighbors (our
metric `similarity`, computed for Mesa the same way after its last step).

Timing covers only the steps: model construction and the initial state (Mesa's constructor
runs assign_state and the first collect; ours we measure once before the clock starts) are
excluded. A timed step is, for Mesa, `model.step()` as shipped (moves, assign_state for every
agent, DataCollector.collect) and, for us, `sim.step()` followed by `sim.measure()` (the per-step
metrics `similarity` and `unhappy`), which is exactly what `Simulation.run()` does per step.
Mesa is also timed "lean", with its DataCollector disabled; the speedup against it is printed
as the conservative ratio. Agent-steps/s = agents x steps / seconds, min over `--repeats`
seeds (0, 1, ...), the same seeds for both, ours and Mesa interleaved seed by seed. Wall-clock
seconds are the headline; the same runs are also timed on process CPU time, which other
processes competing for the two cores disturb much less (printed as `speedup_vs_mesa_cpu_time`).

The last line is `speedup_vs_mesa: <x>` at the largest common size (our agent-steps/s over
Mesa's, as shipped). Target: >= 100.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from _common import cpu, fmt_rate, load_line, machine_line, now, schelling_spec  # noqa: E402
from simulator.compile import compile_scenario  # noqa: E402
from simulator.engine import Simulation  # noqa: E402

DENSITY = 0.8
MINORITY = 0.5
TARGET = 100.0


# --- ours ------------------------------------------------------------------------------------

def run_ours(compiled, side: int, steps: int, seed: int, wish: float) -> dict:
    n = int(round(side * side * DENSITY))
    sim = Simulation(compiled, {"wish": wish, "density": DENSITY, "minority_share": MINORITY},
                     seed=seed, population=n, max_steps=steps)
    if (sim.space.width, sim.space.height) != (side, side):
        raise RuntimeError(f"our grid is {sim.space.width}x{sim.space.height}, expected {side}x{side}")
    names = sim.c.metric_names
    t_step = t_measure = 0.0
    with np.errstate(all="ignore"):  # as in Simulation.run
        first = sim.measure()  # the initial state: not timed (Mesa's constructor does the same)
        c0 = cpu()
        for _ in range(steps):
            t0 = now()
            sim.step()
            t1 = now()
            last = sim.measure()
            t_measure += now() - t1
            t_step += t1 - t0
        cpu_seconds = cpu() - c0
    return {
        "n": sim.n,
        "seconds": t_step + t_measure,
        "cpu_seconds": cpu_seconds,
        "step_seconds": t_step,
        "sim0": float(first[names.index("similarity")]),
        "sim": float(last[names.index("similarity")]),
        "unhappy": float(last[names.index("unhappy")]),
    }


# --- Mesa ------------------------------------------------------------------------------------

def mesa_similarity(model) -> float:
    """Mean over agents with >= 1 neighbor of the share of same-type neighbors (as ours)."""
    shares = []
    for agent in model.agents:
        neighbors = list(agent.cell.get_neighborhood(radius=1).agents)  # as in assign_state
        if neighbors:
            shares.append(sum(nb.type == agent.type for nb in neighbors) / len(neighbors))
    return float(np.mean(shares)) if shares else float("nan")


def run_mesa(side: int, steps: int, seed: int, wish: float, lean: bool) -> dict:
    from mesa.examples.basic.schelling.model import Schelling

    model = Schelling(height=side, width=side, density=DENSITY, minority_pc=MINORITY,
                      homophily=wish, radius=1, seed=seed)
    if lean:
        model.datacollector.collect = lambda _model: None
    sim0 = mesa_similarity(model)
    c0, t0 = cpu(), now()
    for _ in range(steps):
        model.step()
    seconds, cpu_seconds = now() - t0, cpu() - c0
    n = len(model.agents)
    return {"n": n, "seconds": seconds, "cpu_seconds": cpu_seconds, "sim0": sim0, "sim": mesa_similarity(model),
            "unhappy": 1.0 - model.happy / n}


# --- driver ------------------------------------------------------------------------------------

def _sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def measure_size(side: int, args, compiled, with_mesa: bool) -> dict:
    ours, mesa, lean = [], [], []
    for seed in range(args.repeats):
        ours.append(run_ours(compiled, side, args.steps, seed, args.wish))
        if with_mesa:
            mesa.append(run_mesa(side, args.steps, seed, args.wish, lean=False))
            lean.append(run_mesa(side, args.steps, seed, args.wish, lean=True))

    def outcome(who: str, runs: list[dict]) -> dict:
        """Seconds per step and the segregation reached, the same way for both engines."""
        return {
            f"{who}_sec_per_step": min(r["seconds"] for r in runs) / args.steps,
            f"{who}_sim": statistics.fmean(r["sim"] for r in runs),
            f"{who}_sim_sd": statistics.pstdev(r["sim"] for r in runs),
            f"{who}_sim0": statistics.fmean(r["sim0"] for r in runs),
            f"{who}_unhappy": statistics.fmean(r["unhappy"] for r in runs),
        }

    def rate(runs: list[dict], key: str = "seconds") -> float:
        return max(r["n"] * args.steps / r[key] for r in runs)  # fastest run = min time per agent-step

    out = {
        "side": side,
        "ours_n": ours[0]["n"],
        "ours_rate": rate(ours),
        "ours_step_rate": rate(ours, "step_seconds"),
        "ours_cpu_rate": rate(ours, "cpu_seconds"),
        **outcome("ours", ours),
    }
    if with_mesa:
        out.update({
            "mesa_n": round(statistics.fmean(r["n"] for r in mesa)),
            "mesa_rate": rate(mesa),
            "mesa_lean_rate": rate(lean),
            "mesa_cpu_rate": rate(mesa, "cpu_seconds"),
            "mesa_lean_cpu_rate": rate(lean, "cpu_seconds"),
            **outcome("mesa", mesa),
        })
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20, help="fixed number of steps for both (default 20)")
    ap.add_argument("--repeats", type=int, default=3, help="seeds per size; timings are the min (default 3)")
    ap.add_argument("--sizes", default="50,100,200", help="grid sides run by both (default 50,100,200)")
    ap.add_argument("--ours-only", default="500,1000", help="grid sides run by ours only (default 500,1000)")
    ap.add_argument("--wish", type=float, default=0.3, help="similarity wish = Mesa homophily (default 0.3)")
    ap.add_argument("--tol", type=float, default=0.05, help="agreement tolerance on mean similarity (default 0.05)")
    ap.add_argument("--quick", action="store_true", help="a fast check: sizes 50,100, ours-only 500, 2 seeds")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.ours_only, args.repeats = "50,100", "500", 2
    common, solo = _sizes(args.sizes), _sizes(args.ours_only)
    warnings.filterwarnings("ignore")

    print("Schelling: societas engine vs Mesa example (mesa.examples.basic.schelling)")
    print(machine_line())
    try:
        import mesa

        print(f"mesa {mesa.__version__}")
    except ImportError:
        print("mesa is not installed: pip install 'mesa>=3.1'  (ours-only sizes still run)")
        solo, common = sorted(set(common + solo)), []
    print(f"density {DENSITY}, minority share {MINORITY}, wish/homophily {args.wish} (a fraction), Moore radius 1, "
          f"no torus, {args.steps} steps, min time of {args.repeats} seeds; set-up excluded, steps timed")

    compiled = compile_scenario(schelling_spec(torus=False))
    run_ours(compiled, 20, 2, 0, args.wish)  # warm up imports and caches

    rows = []
    header = (f"{'grid':>9} {'agents':>8} {'ours ag-st/s':>13} {'(step only)':>12} {'ms/step':>8} "
              f"{'mesa ag-st/s':>13} {'(lean)':>9} {'ms/step':>8} {'speedup':>8} {'(lean)':>7} "
              f"{'sim ours':>9} {'sim mesa':>9} {'|diff|':>7} agree")
    print(header)
    for side in common + solo:
        r = measure_size(side, args, compiled, with_mesa=side in common)
        rows.append(r)
        line = (f"{side:>4}x{side:<4} {r['ours_n']:>8} {fmt_rate(r['ours_rate']):>13} "
                f"{fmt_rate(r['ours_step_rate']):>12} {1e3 * r['ours_sec_per_step']:>8.2f} ")
        if "mesa_rate" in r:
            diff = abs(r["ours_sim"] - r["mesa_sim"])
            r["speedup"] = r["ours_rate"] / r["mesa_rate"]
            r["speedup_lean"] = r["ours_rate"] / r["mesa_lean_rate"]
            r["agree"] = diff <= args.tol
            line += (f"{fmt_rate(r['mesa_rate']):>13} {fmt_rate(r['mesa_lean_rate']):>9} "
                     f"{1e3 * r['mesa_sec_per_step']:>8.2f} {r['speedup']:>8.1f} {r['speedup_lean']:>7.1f} "
                     f"{r['ours_sim']:>9.4f} {r['mesa_sim']:>9.4f} {diff:>7.4f} {'yes' if r['agree'] else 'NO'}")
        else:
            line += f"{'-':>13} {'-':>9} {'-':>8} {'-':>8} {'-':>7} {r['ours_sim']:>9.4f} {'-':>9} {'-':>7} -"
        print(line, flush=True)

    print()
    print(f"on CPU time (robust to other processes; {load_line()}):")
    for r in rows:
        text = f"  {r['side']}x{r['side']}: ours {fmt_rate(r['ours_cpu_rate'])} agent-steps/s"
        if "mesa_cpu_rate" in r:
            r["speedup_cpu"] = r["ours_cpu_rate"] / r["mesa_cpu_rate"]
            r["speedup_lean_cpu"] = r["ours_cpu_rate"] / r["mesa_lean_cpu_rate"]
            text += (f" | mesa {fmt_rate(r['mesa_cpu_rate'])} (lean {fmt_rate(r['mesa_lean_cpu_rate'])})"
                     f" | speedup {r['speedup_cpu']:.1f} (lean {r['speedup_lean_cpu']:.1f})")
        print(text)
    print("similarity at step 0 (random placement, expect ~0.5) and share unhappy at the end:")
    for r in rows:
        text = f"  {r['side']}x{r['side']}: ours sim0 {r['ours_sim0']:.4f} unhappy {r['ours_unhappy']:.5f}"
        if "mesa_sim0" in r:
            text += f" | mesa sim0 {r['mesa_sim0']:.4f} unhappy {r['mesa_unhappy']:.5f}"
        text += f" | final similarity sd over seeds: ours {r['ours_sim_sd']:.4f}"
        if "mesa_sim_sd" in r:
            text += f", mesa {r['mesa_sim_sd']:.4f}"
        print(text)
    print()
    print("ours ag-st/s: agent-steps per second of sim.step() + sim.measure() (= Simulation.run per step);")
    print("(step only): without the per-step metrics. mesa: model.step() as shipped, incl. DataCollector;")
    print(f"(lean): DataCollector disabled. agree: |mean similarity ours - mesa| <= {args.tol} after "
          f"{args.steps} steps (synchronous vs sequential moves: see the module docstring).")
    with_mesa = [r for r in rows if "speedup" in r]
    if not with_mesa:
        return 0
    top = max(with_mesa, key=lambda r: r["side"])
    print(f"similarity_agree: {'yes' if all(r['agree'] for r in with_mesa) else 'no'}")
    print(f"target_met: {'yes' if top['speedup'] >= TARGET else 'no'} (speedup >= {TARGET:g} at "
          f"{top['side']}x{top['side']})")
    print(f"speedup_vs_mesa_cpu_time: {top['speedup_cpu']:.1f}")
    print(f"speedup_vs_mesa_lean: {top['speedup_lean']:.1f}")
    print(f"speedup_vs_mesa: {top['speedup']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
