"""analyze_results: statistics by code (CIs, effect sizes, trend tests, verdicts) and figures."""

from __future__ import annotations

from researcher.analysis import FINDINGS_FILE, analyze
from researcher.schemas import ExperimentDesign, ResearchPlan
from researcher.stage import stage
from researcher.state import Deps, ResearchConfig, ResearchState


@stage("analyze_results")
def analyze_results(state: ResearchState, deps: Deps) -> dict:
    design = ExperimentDesign.model_validate(state["design"])
    plan = ResearchPlan.model_validate(state["plan"])
    findings = analyze(deps.run_dir, design, plan)  # also writes findings.json and figures/
    update: dict = {"findings_path": str(deps.run_dir / FINDINGS_FILE), "notes": list(findings.notes)}
    config = ResearchConfig.model_validate(state["config"])
    rounds = state.get("extra_seed_rounds", 0)
    if findings.needs_more_seeds and rounds < config.max_extra_seed_rounds:
        # Low power: double the seeds once; the simulation node re-runs with the larger design.
        more = design.seeds + list(range(max(design.seeds) + 1, max(design.seeds) + 1 + len(design.seeds)))
        update["design"] = design.model_copy(update={"seeds": more}).model_dump(mode="json")
        update["extra_seed_rounds"] = rounds + 1
        update["notes"] = update["notes"] + [
            f"Some verdicts were inconclusive with {len(design.seeds)} seeds; the experiment was re-run with {len(more)}."]
    return update
