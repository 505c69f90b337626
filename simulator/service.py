"""The simulator hosted on Ray: every (condition, seed) run is a Ray task.

`simulate(experiment, out_dir)` is the one entry point the pipeline uses (also wrapped as a
LangChain tool by `simulation_tool`). It starts a local Ray instance on demand, or joins the
cluster named by `ray_address` / `RAY_ADDRESS`, and writes the data to the output folder:
`data/metrics.parquet` (long: condition, seed, step, metric, value) and `data/final.parquet`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from simulator.compile import compile_scenario
from simulator.engine import RunResult, Simulation
from simulator.experiment import Condition, Experiment
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

    def summary(self) -> dict[str, Any]:
        return {
            "metrics_path": str(self.metrics_path) if self.metrics_path else None,
            "final_path": str(self.final_path) if self.final_path else None,
            "n_runs": self.n_runs,
            "wall_seconds": round(self.wall_seconds, 3),
        }


def run_one(spec_data: dict[str, Any], params: dict[str, float], seed: int,
            population: int | None, steps: int | None) -> RunResult:
    """One run in this process (what each Ray task executes)."""
    spec = ScenarioSpec.model_validate(spec_data)
    sim = Simulation(compile_scenario(spec), params, seed, population=population, max_steps=steps)
    return sim.run()


def smoke_run(spec: ScenarioSpec, *, agents: int = 50, steps: int = 3, seed: int = 0) -> RunResult:
    """A few agents for a few steps, in process: the check a generated spec must pass."""
    sim = Simulation(compile_scenario(spec), None, seed, population=agents, max_steps=steps)
    result = sim.run()
    if not np.isfinite(result.values[0]).any():
        log.info("smoke run of %s: every initial metric is NaN", spec.name)
    return result


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start (or join) Ray once per process; a failure is a one-line user error."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "ignore_reinit_error": True,
        "logging_level": logging.ERROR,
        "configure_logging": True,
    }
    if address:
        _check_reachable(address)
        kwargs["address"] = address
    else:
        # "local": a fresh instance of our own, even when `ray start --head` runs on this machine
        # (plain ray.init() would join that one, and refuse num_cpus).
        kwargs["address"] = "local"
        kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
    try:
        ray.init(**kwargs)
    except Exception as exc:  # noqa: BLE001 - Ray raises many types; all mean "could not start"
        where = f"the cluster at {address}" if address else "a local Ray instance"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SocietasError(
            f"could not start or join {where}: {first}",
            hint="check --ray-address / RAY_ADDRESS, or run `ray stop` to clear a stale local instance",
        ) from None


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """Ray retries an unreachable head for minutes; a quick TCP probe fails in seconds instead."""
    import socket

    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise SocietasError(f"invalid Ray address {address!r}",
                            hint="give host:port (e.g. 10.0.0.5:6379), ray://host:10001, or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise SocietasError(
            f"could not start or join the cluster at {address}: {exc.strerror or exc}",
            hint="check that the head node runs (`ray start --head`) and the address is right",
        ) from None


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
) -> SimulationResult:
    """Run every (condition, seed) of the experiment and write the data to `out_dir`."""
    compile_scenario(experiment.scenario)  # fail fast, in the driver, on a bad spec
    spec_data = experiment.scenario.model_dump(mode="json", by_alias=True)
    runs = experiment.runs()
    t0 = time.perf_counter()
    results: list[tuple[Condition, RunResult]] = []
    if use_ray:
        import ray

        ensure_ray(ray_address)
        remote = _remote_run()
        spec_ref = ray.put(spec_data)
        pending = {
            remote.remote(spec_ref, c.params, s, experiment.population, experiment.steps): c for c, s in runs
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
            res = run_one(spec_data, c.params, s, experiment.population, experiment.steps)
            results.append((c, res))
            if progress:
                progress(len(results), len(runs), f"{c.name} seed {s}")
    order = {(c.name, s): i for i, (c, s) in enumerate(runs)}
    results.sort(key=lambda cr: order[(cr[0].name, cr[1].seed)])
    metrics, final = _frames(experiment, results)
    wall = time.perf_counter() - t0
    metrics_path = final_path = None
    if out_dir is not None:
        metrics_path, final_path = write_data(Path(out_dir), experiment, metrics, final)
    return SimulationResult(metrics_path, final_path, len(results), wall, final, metrics)


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
