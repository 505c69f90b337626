"""run_simulation: the experiment on the Ray-hosted simulator; data to `data/*.parquet`."""

from __future__ import annotations

from researcher.design import build_experiment
from researcher.nodes._stage import emit, stage
from researcher.schemas import ExperimentDesign
from researcher.state import Deps, ResearchConfig, ResearchState
from simulator.service import simulate
from simulator.spec import load_spec


@stage("run_simulation")
def run_simulation(state: ResearchState, deps: Deps) -> dict:
    config = ResearchConfig.model_validate(state["config"])
    design = ExperimentDesign.model_validate(state["design"])
    spec = load_spec(deps.run_dir / "scenario.yaml")
    experiment = build_experiment(design, spec)

    def progress(done: int, total: int, label: str) -> None:
        emit("run_simulation", label, event="progress", done=done, total=total)

    result = simulate(experiment, deps.run_dir, ray_address=config.ray_address, progress=progress,
                      use_ray=config.use_ray)
    return {"simulation": {**result.summary(), "seeds": list(design.seeds),
                           "conditions": [c.name for c in experiment.conditions]}}
