"""finalize: `report/final` points at the chosen version (a person's approval, else the best reviewed)."""

from __future__ import annotations

from reports.models import Review
from reports.versions import best_version, link_final
from researcher.stage import emit, stage
from researcher.state import Deps, ResearchState, human_revision_done


@stage("finalize")
def finalize(state: ResearchState, deps: Deps) -> dict:
    reviews = [Review.model_validate(r) for r in state.get("reviews", [])]
    latest = state["report_version"]
    reviewed = {r.version for r in reviews}
    chosen = best_version(reviews) if latest in reviewed or not reviews else latest
    human = state.get("human_feedback") or {}
    if human.get("approve") and human.get("version"):
        chosen = human["version"]  # a person's approval outranks the rubric
    elif human_revision_done(state):
        chosen = latest
    link_final(deps.run_dir, chosen)
    emit("finalize", f"final report: report/v{chosen}/report.md")
    return {"final_version": chosen}
