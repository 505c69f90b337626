"""design_experiment: a library scenario (or a generated, validated spec), a sweep, seeds."""

from __future__ import annotations

from researcher.design import make_design
from researcher.schemas import ResearchPlan
from researcher.stage import emit, stage
from researcher.state import Deps, ResearchConfig, ResearchState
from societas.runs import atomic_write_json, atomic_write_text


@stage("design_experiment")
def design_experiment(state: ResearchState, deps: Deps) -> dict:
    plan = ResearchPlan.model_validate(state["plan"])
    config = ResearchConfig.model_validate(state["config"])
    design, spec = make_design(plan, deps.llms.researcher, seeds=config.seeds, steps=config.steps,
                               agents=config.agents, allow_generate=config.allow_generate,
                               on_event=lambda msg: emit("design_experiment", msg), topic=state["topic"])
    if not design.generated and spec.domain != plan.domain:
        # A library scenario settles the study's domain (the design's rationale says so): a small
        # model's plan names one at random, and plan.json is what the report and `runs` read.
        plan = plan.model_copy(update={"domain": spec.domain})
        atomic_write_json(deps.run_dir / "plan.json", plan.model_dump(mode="json"))
    atomic_write_text(deps.run_dir / "scenario.yaml", spec.to_yaml())
    atomic_write_json(deps.run_dir / "design.json", design.model_dump(mode="json"))
    notes = [f"Experiment design fallback: {design.fallback_reason}"] if design.fallback_reason else []
    emit("design_experiment", f"scenario {design.scenario}, sweeping {design.swept_parameter} over "
         f"{len(design.values)} values x {len(design.seeds)} seeds")
    return {"design": design.model_dump(mode="json"), "plan": plan.model_dump(mode="json"), "notes": notes}
