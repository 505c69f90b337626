"""review_report: the deterministic checks first, then the reviewer model's rubric; `report/vN/review.json`."""

from __future__ import annotations

from reports.checks import comments_from_checks, run_checks
from reports.models import Review
from reports.versions import load_report, report_dir
from researcher.reviewing import llm_review, rubric_comments
from researcher.schemas import ResearchPlan
from researcher.stage import emit, stage
from researcher.state import Deps, ResearchConfig, ResearchState
from societas.runs import atomic_write_text


@stage("review_report")
def review_report(state: ResearchState, deps: Deps) -> dict:
    version = state["report_version"]
    report = load_report(deps.run_dir, version)
    plan = ResearchPlan.model_validate(state["plan"])
    checks = run_checks(report, [h.id for h in plan.hypotheses])  # the report carries the numbers it allows
    failed = [f"{c.name} ({c.section}): {c.message}" for c in checks if not c.ok]
    emit("review_report", f"version {version}: {len(checks) - len(failed)}/{len(checks)} checks pass")
    scores, comments, note = llm_review(deps.llms.reviewer, report, failed)
    comments = comments_from_checks(checks) + comments
    comments += rubric_comments(scores, comments, ResearchConfig.model_validate(state["config"]).score_bar)
    review = Review(version=version, scores=scores, comments=comments, checks=checks,
                    reviewer=str(getattr(deps.llms.reviewer, "label", "reviewer")))
    atomic_write_text(report_dir(deps.run_dir, version) / "review.json", review.model_dump_json(indent=2))
    if scores:
        emit("review_report", f"version {version}: overall {scores.overall}/5")
    return {"reviews": [*state.get("reviews", []), review.model_dump(mode="json")],
            "review_round": state.get("review_round", 0) + 1, "notes": [note] if note else []}
