"""human_review: the report and its review go to a person; the graph waits for their answer.

`interrupt()` pauses the run (its state is checkpointed); the CLI resumes it with
`Command(resume=feedback)`. On resume the node runs again from the top, so everything before
`interrupt()` only reads.
"""

from __future__ import annotations

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from reports.human import HumanFeedback
from reports.markdown import substitute
from reports.versions import load_report
from researcher.stage import emit
from researcher.state import Deps, ResearchState


def review_request(state: ResearchState, deps: Deps) -> dict:
    """What the person sees: the latest version's sections (facts filled in) and its review."""
    version = state["report_version"]
    report = load_report(deps.run_dir, version)
    return {
        "run": deps.folder.id,
        "version": version,
        "title": report.title,
        "sections": [{"key": s.key, "title": s.title, "text": substitute(s.body, report.facts, report.figures)}
                     for s in report.sections],
        "review": (state.get("reviews") or [{}])[-1],
    }


def human_review(state: ResearchState, runtime: Runtime[Deps]) -> dict:
    """Not a `stage`: its progress is reported once, after the person answered (the node runs twice)."""
    request = review_request(state, runtime.context)
    feedback = HumanFeedback.model_validate(interrupt(request))
    emit("human_review", "started", event="start")
    version = request["version"]
    if feedback.approves:
        emit("human_review", f"version {version} approved")
        update = {"human_feedback": {"version": version, "approve": True, "source": feedback.source}}
    else:
        emit("human_review", "comments on " + ", ".join(feedback.comments))
        update = {"human_feedback": {"version": version, "approve": False, "comments": feedback.comments,
                                     "source": feedback.source}}
    emit("human_review", "done", event="end", seconds=0.0, tokens={})
    return update
