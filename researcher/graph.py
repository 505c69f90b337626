"""The research pipeline as one LangGraph `StateGraph`, assembled here so the flow reads top to bottom.

    topic -> analyze_topic -> design_experiment -> run_simulation -> analyze_results -> write_report
          -> review_report -> (revise_report -> review_report)* -> [human_review -> revise_report ...] -> finalize

analyze_results may send the run back to run_simulation once with more seeds (low power);
review_report loops through revise_report until the score bar, a plateau or the round limit.
human_review (only when the state's `review_mode` asks for a person: `research --interactive`,
`societas review`) pauses the run with `interrupt()`; comments send it to revise_report.
`regenerate` forks the thread after run_simulation or analyze_results (see researcher.runner).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from researcher.nodes.analyze_results import analyze_results, needs_rerun
from researcher.nodes.analyze_topic import analyze_topic
from researcher.nodes.design_experiment import design_experiment
from researcher.nodes.human_review import after_human_review, human_review
from researcher.nodes.report import after_review, finalize, review_report, revise_report, write_report
from researcher.nodes.run_simulation import run_simulation
from researcher.state import Deps, ResearchState
from societas.errors import SocietasError

STAGES = ("analyze_topic", "design_experiment", "run_simulation", "analyze_results", "write_report",
          "review_report", "revise_report", "human_review", "finalize")


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

    g.add_edge(START, "analyze_topic")
    g.add_edge("analyze_topic", "design_experiment")
    g.add_edge("design_experiment", "run_simulation")
    g.add_edge("run_simulation", "analyze_results")
    g.add_conditional_edges("analyze_results", lambda s: "run_simulation" if needs_rerun(s) else "write_report",
                            ["run_simulation", "write_report"])
    g.add_edge("write_report", "review_report")
    g.add_conditional_edges("review_report", after_review, ["revise_report", "human_review", "finalize"])
    g.add_edge("revise_report", "review_report")
    g.add_conditional_edges("human_review", after_human_review, ["revise_report", "finalize"])
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
