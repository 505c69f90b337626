"""run_simulation: the experiment on the Ray-hosted simulator; data to `data/*.parquet`.

LLM agents (`--agents-mode`, `--llm-budget`) use the agents' backend (`--agents-llm`, else
`--llm`) and the run's response cache; which decision model ran, and why, goes to the state
(`simulation.agents`), the manifest (`agents`) and `data/agents.json`.
"""

from __future__ import annotations

from researcher.design import build_experiment
from researcher.schemas import ExperimentDesign
from researcher.stage import emit, stage
from researcher.state import Deps, ResearchConfig, ResearchState
from simulator import AgentsSetup, load_spec, simulate


def agents_setup(config: ResearchConfig) -> AgentsSetup:
    """How the run's LLM agents decide, from the research config."""
    return AgentsSetup(mode=config.agents_mode, budget=config.llm_budget, llm=config.agents_llm or config.llm,
                       model_path=config.model_path, concurrency=config.llm_concurrency)


@stage("run_simulation")
def run_simulation(state: ResearchState, deps: Deps) -> dict:
    config = ResearchConfig.model_validate(state["config"])
    design = ExperimentDesign.model_validate(state["design"])
    spec = load_spec(deps.run_dir / "scenario.yaml")
    experiment = build_experiment(design, spec)

    def progress(done: int, total: int, label: str) -> None:
        emit("run_simulation", label, event="progress", done=done, total=total)

    result = simulate(experiment, deps.run_dir, ray_address=config.ray_address, progress=progress,
                      use_ray=config.use_ray, agents=agents_setup(config))
    summary = result.summary()
    if result.agents is not None:
        emit("run_simulation", f"agents: {result.agents.used} ({result.agents.reason})")
        deps.folder.update_manifest(agents=summary["agents"])
    return {"simulation": {**summary, "seeds": list(design.seeds),
                           "conditions": [c.name for c in experiment.conditions]}}
