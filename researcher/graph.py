"""The research pipeline as one LangGraph `StateGraph`, assembled here so the flow reads top to bottom.

    topic -> analyze_topic -> design_experiment -> run_simulation -> analyze_results -> write_report
          -> review_report -> (revise_report -> review_report)* -> [human_review -> revise_report ...] -> finalize

analyze_results may send the run back to run_simulation once with more seeds (low power);
review_report loops through revise_report until the score bar, a plateau or the round limit.
human_review (only when the state's `review_mode` asks for a person: `research --interactive`,
`societas review`) pauses the run with `interrupt()`; comments send it to revise_report.
`regenerate` forks the thread after run_simulation or analyze_results (see researcher.runner).
The routers, pure functions of the state, stand beside the graph they steer.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from reports.models import Review
from researcher.nodes.analyze_results import analyze_results
from researcher.nodes.analyze_topic import analyze_topic
from researcher.nodes.design_experiment import design_experiment
from researcher.nodes.finalize import finalize
from researcher.nodes.human_review import human_review
from researcher.nodes.review_report import review_report
from researcher.nodes.revise_report import revise_report
from researcher.nodes.run_simulation import run_simulation
from researcher.nodes.write_report import write_report
from researcher.state import Deps, ResearchConfig, ResearchState, human_revision_done
from societas.errors import SocietasError


def after_analysis(state: ResearchState) -> str:
    """Back to the simulator when analyze_results just enlarged the design (low power), else on to writing."""
    seeds = state["design"]["seeds"]
    simulated = state.get("simulation", {}).get("seeds", seeds)
    return "run_simulation" if len(seeds) != len(simulated) else "write_report"


def after_review(state: ResearchState) -> str:
    """The automated loop, then the human when one is asked (`review_mode`); after a human's
    revision only the human decides again (interactive) or the run ends (one review round)."""
    mode = state.get("review_mode")
    if mode == "once" and not state.get("human_feedback"):
        return "human_review"  # `societas review` on a finished run: straight to the person
    if human_revision_done(state):
        return "human_review" if mode == "interactive" else "finalize"
    decision = _automated(state)
    return "human_review" if decision == "finalize" and mode else decision


def _automated(state: ResearchState) -> str:
    """Revise while rounds are left, the bar is not reached and scores still improve."""
    config = ResearchConfig.model_validate(state["config"])
    reviews = [Review.model_validate(r) for r in state.get("reviews", [])]
    last = reviews[-1]
    revisions_done = state.get("review_round", 1) - 1
    if revisions_done >= config.review_rounds or not last.sections_to_revise():
        return "finalize"
    score = last.scores.overall if last.scores else 0
    if last.checks_pass and score >= config.score_bar:
        return "finalize"
    if len(reviews) >= 2 and last.checks_pass and reviews[-2].scores and score <= reviews[-2].scores.overall:
        return "finalize"  # plateau
    return "revise_report"


def after_human_review(state: ResearchState) -> str:
    """Approval ends the run; comments go to the reviser."""
    return "finalize" if state.get("human_feedback", {}).get("approve", True) else "revise_report"


def build_graph() -> StateGraph:
    g = StateGraph(ResearchState, context_schema=Deps)
    g.add_node("analyze_topic", analyze_topic)
    g.add_node("design_experiment", design_experiment)
    g.add_node("run_simulation", run_simulation)
    g.add_node("analyze_results", analyze_results)
    g.add_node("write_report", write_report)
    g.add_node("review_report", review_report)
    g.add_node("revise_report", revise_report)
    g.add_node("human_review", human_review)
    g.add_node("finalize", finalize)

    # topic -> plan -> experiment -> data -> findings, each stage reading what the one before wrote
    g.add_edge(START, "analyze_topic")
    g.add_edge("analyze_topic", "design_experiment")
    g.add_edge("design_experiment", "run_simulation")
    g.add_edge("run_simulation", "analyze_results")
    # low power: once more through the simulator with twice the seeds; else on to the report
    g.add_conditional_edges("analyze_results", after_analysis, ["run_simulation", "write_report"])
    # the first version is reviewed
    g.add_edge("write_report", "review_report")
    # below the bar with rounds left: revise; then the person (when asked), else the final link
    g.add_conditional_edges("review_report", after_review, ["revise_report", "human_review", "finalize"])
    # every revision is reviewed again
    g.add_edge("revise_report", "review_report")
    # the person approves (final) or comments (one more revision)
    g.add_conditional_edges("human_review", after_human_review, ["revise_report", "finalize"])
    # report/final points at the chosen version; the run is complete
    g.add_edge("finalize", END)
    return g


def compile_graph(checkpoint_path: Path):
    """The graph with a SQLite checkpointer at `checkpoint_path` (thread id = run id)."""
    conn = sqlite3.connect(str(checkpoint_path), check_same_thread=False)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a damaged file fails here, not mid-run
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise SocietasError(f"the run's checkpoints ({checkpoint_path}) cannot be read: {exc}",
                            hint="the file is damaged; start the research again (its data/ and report/ stay)") from None
    return build_graph().compile(checkpointer=SqliteSaver(conn)), conn
