"""The simulator hosted on Ray: every (condition, seed) run is a Ray task.

`simulate(experiment, out_dir)` is the one entry point the pipeline uses (also wrapped as a
LangChain tool by `simulation_tool`). It starts a local Ray instance on demand, or joins the
cluster named by `ray_address` / `RAY_ADDRESS`, and writes the data to the output folder:
`data/metrics.parquet` (long: condition, seed, step, metric, value) and `data/final.parquet`.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from llms.cache import CACHE_FILE
from simulator.agents_backend import start_backend
from simulator.agents_mode import AgentsChoice, AgentsSetup, resolve_agents
from simulator.compile import compile_scenario
from simulator.engine import MAX_AGENTS, RunResult, Simulation, type_counts
from simulator.errors import SpecError
from simulator.experiment import Condition, Experiment
from simulator.llm_agents import LOG_COLUMNS, LLMDecisions
from simulator.ray_runtime import ensure_ray
from simulator.sharding.coordinator import run_all_sharded
from simulator.sharding.planning import partition_blocker, shard_count
from simulator.spec import ScenarioSpec
from societas.errors import SocietasError
from societas.runs import atomic_write_bytes, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]  # (runs done, runs total, label of the run just finished)


@dataclass
class SimulationResult:
    """Where the data went, and a summary small enough to keep in pipeline state."""

    metrics_path: Path | None
    final_path: Path | None
    n_runs: int
    wall_seconds: float
    final: pd.DataFrame = field(repr=False)
    metrics: pd.DataFrame = field(repr=False)
    agents: AgentsChoice | None = None
    decisions: pd.DataFrame | None = field(default=None, repr=False)  # the LLM decision log
    decisions_path: Path | None = None
    sharding: dict[str, Any] | None = None  # shards per run and their state, when runs were split

    def summary(self) -> dict[str, Any]:
        out = {
            "metrics_path": str(self.metrics_path) if self.metrics_path else None,
            "final_path": str(self.final_path) if self.final_path else None,
            "n_runs": self.n_runs,
            "wall_seconds": round(self.wall_seconds, 3),
        }
        if self.sharding is not None:
            out["sharding"] = self.sharding
        if self.agents is not None:
            out["agents"] = agents_summary(self.agents, self.final)
            out["decisions_path"] = str(self.decisions_path) if self.decisions_path else None
        return out


def agents_summary(choice: AgentsChoice, final: pd.DataFrame) -> dict[str, Any]:
    """The agents-mode choice with what the LLM agents did: for the manifest and the report's Limitations."""
    totals = {c.removeprefix("decisions_"): int(final[c].sum()) for c in final.columns
              if c.startswith("decisions_") and len(final)}
    return {**choice.model_dump(mode="json"), "totals": totals}


def run_one(spec_data: dict[str, Any], params: dict[str, float], seed: int,
            population: int | None, steps: int | None, agents: AgentsSetup | None = None) -> RunResult:
    """One run in this process (what each Ray task executes).

    With `agents.mode == "llm"` the run builds its own LLM client from the backend spec and
    issues its agents' calls itself, so a cluster's workers share the load, not one driver.
    """
    spec = ScenarioSpec.model_validate(spec_data)
    policy = LLMDecisions.open(agents) if agents is not None and agents.mode == "llm" else None
    try:
        sim = Simulation(compile_scenario(spec), params, seed, population=population, max_steps=steps, policy=policy)
        result = sim.run()
    finally:
        if policy is not None:
            policy.close()
    if policy is not None:
        result.decisions.update(policy.counters())
        result.decision_log = policy.log.columns
    return result


def smoke_run(spec: ScenarioSpec, *, agents: int = 50, steps: int = 3, seed: int = 0) -> RunResult:
    """A few agents for a few steps, in process: the check a generated spec must pass."""
    sim = Simulation(compile_scenario(spec), None, seed, population=agents, max_steps=steps)
    result = sim.run()
    if not np.isfinite(result.values[0]).any():
        log.info("smoke run of %s: every initial metric is NaN", spec.name)
    return result


def check_population(experiment: Experiment, compiled: Any, shard_state: str = "auto") -> None:
    """Refuse a population no run can hold, before Ray starts or a run folder exists: under one agent
    (or a negative count of a type), or more than one process holds when the scenario cannot be
    partitioned (each shard would need every agent), or when `shard_state` rules partitioning out."""
    spec = experiment.scenario
    for c in experiment.conditions:
        counts = type_counts(compiled, c.params, experiment.population)
        n = int(sum(counts))
        if n < 1 or min(counts) < 0:
            raise SpecError(f"the population is {n:,} agents" + ("" if min(counts) >= 0 else " (a negative count)")
                            + f" under condition {c.name}", scenario=spec.name,
                            hint="give --agents 1 or more, or a positive population (and counts) in the spec")
        if n <= MAX_AGENTS:
            continue
        blocker = partition_blocker(compiled)
        if blocker is not None:
            raise SpecError(f"{n:,} agents is more than one process holds ({MAX_AGENTS:,}), and this scenario "
                            f"cannot be partitioned ({blocker})", scenario=spec.name,
                            hint=f"use at most {MAX_AGENTS:,} agents (--agents)")
        if shard_state == "replicated":
            raise SpecError(f"{n:,} agents is more than one process holds ({MAX_AGENTS:,}); replicated shards "
                            "each hold every agent", scenario=spec.name,
                            hint="use --shard-state partitioned, or fewer agents")


def _remote_run():
    import ray

    return ray.remote(run_one).options(num_cpus=1, max_retries=1)


def simulate(
    experiment: Experiment,
    out_dir: str | Path | None = None,
    *,
    ray_address: str | None = None,
    progress: Progress | None = None,
    use_ray: bool = True,
    agents: AgentsSetup | None = None,
    shards: int | None = None,
    shard_state: str = "auto",
) -> SimulationResult:
    """Run every (condition, seed) of the experiment and write the data to `out_dir`.

    `agents` says how `decide` rules of LLM agent types are answered (`--agents-mode`); None
    keeps every agent on the rules' fallback and records no choice. `shards` splits each run
    over that many Ray actors (`simulator.sharding`; same results); None shards only runs above
    `sharding.planning.SHARD_THRESHOLD` agents. `shard_state`: what each shard holds (`ShardedRun`'s `state`).
    """
    compiled = compile_scenario(experiment.scenario)  # fail fast, in the driver, on a bad spec
    check_population(experiment, compiled, shard_state)  # before Ray starts
    spec_data = experiment.scenario.model_dump(mode="json", by_alias=True)
    runs = experiment.runs()
    choice, setup = _agents_for(agents, experiment, compiled, out_dir)
    t0 = time.perf_counter()
    results: list[tuple[Condition, RunResult]] = []
    sharding = None
    if use_ray:
        ensure_ray(ray_address)
    k = shard_count(compiled, experiment, shards, use_ray)
    if k > 1:
        factory = functools.partial(LLMDecisions.open, setup) if setup is not None else None
        results, state = run_all_sharded(spec_data, runs, experiment, k, factory, progress, shard_state)
        sharding = {"shards": k, "state": state}
    elif use_ray:
        import ray

        remote = _remote_run()
        spec_ref = ray.put(spec_data)
        pending = {
            remote.remote(spec_ref, c.params, s, experiment.population, experiment.steps, setup): c for c, s in runs
        }
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                cond = pending.pop(ref)
                try:
                    res = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    if isinstance(cause, SocietasError):
                        raise cause from None
                    raise
                results.append((cond, res))
                if progress:
                    progress(len(results), len(runs), f"{cond.name} seed {res.seed}")
    else:
        for c, s in runs:
            res = run_one(spec_data, c.params, s, experiment.population, experiment.steps, setup)
            results.append((c, res))
            if progress:
                progress(len(results), len(runs), f"{c.name} seed {s}")
    order = {(c.name, s): i for i, (c, s) in enumerate(runs)}
    results.sort(key=lambda cr: order[(cr[0].name, cr[1].seed)])
    metrics, final = _frames(experiment, results)
    decisions = _decision_frame(results) if setup is not None else None
    wall = time.perf_counter() - t0
    metrics_path = final_path = decisions_path = None
    if out_dir is not None:
        metrics_path, final_path = write_data(Path(out_dir), experiment, metrics, final)
        if choice is not None:
            decisions_path = write_agents(Path(out_dir), agents_summary(choice, final), decisions)
    return SimulationResult(metrics_path, final_path, len(results), wall, final, metrics, choice, decisions,
                            decisions_path, sharding)


def _agents_for(agents: AgentsSetup | None, experiment: Experiment, compiled: Any,
                out_dir: str | Path | None) -> tuple[AgentsChoice | None, AgentsSetup | None]:
    """The mode choice, and the setup each run gets (None: rules only)."""
    if agents is None:
        return None, None
    choice = resolve_agents(agents, experiment, compiled)
    log.info("agents: %s (%s)", choice.used, choice.reason)
    if choice.used != "llm":
        return choice, None
    cache = agents.cache_path or (str(Path(out_dir) / CACHE_FILE) if out_dir is not None else None)
    setup = agents.model_copy(update={"mode": "llm", "cache_path": cache})
    choice.model = start_backend(setup)
    return choice, setup


def _decision_frame(results: list[tuple[Condition, RunResult]]) -> pd.DataFrame:
    """Every LLM decision of every run: condition, seed, agent, step, rule, prompt hash, action, reason, ..."""
    parts = []
    for cond, res in results:
        cols = res.decision_log or {c: [] for c in LOG_COLUMNS}
        n = len(cols["agent"])
        parts.append(pd.DataFrame({"condition": [cond.name] * n, "seed": np.full(n, res.seed, dtype=np.int64),
                                   **{c: cols[c] for c in LOG_COLUMNS}}))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["condition", "seed", *LOG_COLUMNS])
    return frame.astype({"agent": "int64", "step": "int64", "latency_s": "float64", "group_size": "int64",
                         "condition": str, "rule": str, "prompt_hash": str, "action": str, "reason": str,
                         "outcome": str})


def write_agents(out: Path, summary: dict[str, Any], decisions: pd.DataFrame | None) -> Path | None:
    """`data/agents.json` (which decision model ran, and why) and `data/decisions.parquet` (LLM runs)."""
    import io

    (out / "data").mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "data" / "agents.json", summary)
    if decisions is None:
        return None
    buf = io.BytesIO()
    decisions.to_parquet(buf, index=False)
    path = out / "data" / "decisions.parquet"
    atomic_write_bytes(path, buf.getvalue())
    return path


def _frames(experiment: Experiment, results: list[tuple[Condition, RunResult]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    parts, finals = [], []
    for cond, res in results:
        cols = res.long_rows()
        n = len(cols["step"])
        parts.append(pd.DataFrame({
            "condition": np.full(n, cond.name, dtype=object),
            "seed": np.full(n, res.seed, dtype=np.int64),
            **cols,
        }))
        row: dict[str, Any] = {"condition": cond.name, "seed": res.seed}
        row.update({f"param.{k}": v for k, v in res.params.items()})
        row.update(res.final())
        row.update({"steps_run": int(res.steps[-1]), "n_agents": res.n_agents,
                    "wall_seconds": res.wall_seconds, "stopped_early": res.stopped_early,
                    "decisions_llm": res.decisions.get("llm", 0),
                    "decisions_fallback": res.decisions.get("fallback", 0)})
        row.update({f"decisions_{k}": v for k, v in res.decisions.items() if k.startswith("llm_")})
        finals.append(row)
    metrics = pd.concat(parts, ignore_index=True)
    metrics["metric"] = metrics["metric"].astype(str)
    return metrics, pd.DataFrame(finals)


def write_data(out: Path, experiment: Experiment, metrics: pd.DataFrame,
               final: pd.DataFrame) -> tuple[Path, Path]:
    import io

    try:
        (out / "data").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SocietasError(f"cannot write to {out}: {exc.strerror}", hint="choose a writable folder with --out") from None
    paths = []
    for name, frame in (("metrics", metrics), ("final", final)):
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        path = out / "data" / f"{name}.parquet"
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    atomic_write_text(out / "scenario.yaml", experiment.scenario.to_yaml())
    atomic_write_json(out / "experiment.json", experiment.model_dump(mode="json", by_alias=True,
                                                                     exclude={"scenario"}))
    return paths[0], paths[1]


def simulation_tool():
    """`simulate` as a LangChain tool, for agents that call tools."""
    from langchain_core.tools import StructuredTool

    def _tool(experiment: dict[str, Any], out_dir: str) -> dict[str, Any]:
        return simulate(Experiment.model_validate(experiment), out_dir).summary()

    return StructuredTool.from_function(
        _tool,
        name="simulate",
        description="Run an agent-based simulation experiment (scenario spec, conditions, seeds) on Ray "
        "and write metrics.parquet and final.parquet to out_dir.",
    )
