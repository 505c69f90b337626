"""`societas research`, `societas resume`, `societas runs`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table


DEFAULT_TOPIC = "Does greater tolerance of differing opinions lead to consensus rather than polarization?"


def register(app: typer.Typer) -> None:
    app.command("research", help="Research a topic: plan, simulate, analyse, write and review a report.")(research_cmd)
    app.command("resume", help="Continue an interrupted or crashed run from its last checkpoint.")(resume_cmd)
    app.command("runs", help="List runs with topic, status, report versions and scores.")(runs_cmd)


def research_cmd(
    topic: str = typer.Argument(DEFAULT_TOPIC, help="The research question, in any language."),
    llm: Optional[str] = typer.Option(None, "--llm", help="Backend for every role: embedded (default), a URL, vllm:MODEL."),
    agents_llm: Optional[str] = typer.Option(None, "--agents-llm", help="Backend for LLM agents (default: --llm)."),
    reviewer_llm: Optional[str] = typer.Option(None, "--reviewer-llm", help="Backend for the reviewer (default: --llm)."),
    model_path: Optional[Path] = typer.Option(None, "--model-path", help="Another GGUF for the embedded server."),
    agents: Optional[int] = typer.Option(None, "--agents", min=10, help="Agents per run (default: sized for 2 cores)."),
    seeds: int = typer.Option(5, "--seeds", min=2, max=100, help="Seeds per condition."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Steps per run (default: the scenario's)."),
    review_rounds: int = typer.Option(2, "--review-rounds", min=0, max=10, help="Most revision rounds."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<timestamp>-<slug>)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", envvar="RAY_ADDRESS",
                                              help="Join this Ray cluster instead of starting a local one."),
) -> None:
    """Take a topic to a reviewed report; every number in it comes from the simulation it runs."""
    from researcher.runner import start
    from researcher.state import ResearchConfig

    config = ResearchConfig(seeds=seeds, steps=steps, agents=agents, review_rounds=review_rounds, llm=llm,
                            agents_llm=agents_llm, reviewer_llm=reviewer_llm,
                            model_path=str(model_path) if model_path else None, ray_address=ray_address)
    start(topic, config, out=out)


def resume_cmd(run: str = typer.Argument(..., help="Run id (see `societas runs`) or run folder path.")) -> None:
    """Finished stages are not repeated; the simulation data are reused."""
    from researcher.runner import resume

    resume(run)


def runs_cmd(
    root: Path = typer.Option(Path("runs"), "--root", help="Folder that holds the runs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    rows = []
    for path in sorted(root.glob("*/manifest.json")) if root.is_dir() else []:
        try:
            m = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if "topic" not in m:
            continue  # a simulator-only run
        rows.append({"run": path.parent.name, "topic": m.get("topic", ""), "status": m.get("status", "?"),
                     "versions": m.get("versions", []), "final": m.get("final_version"),
                     "scores": m.get("scores", {})})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        Console().print(f"no research runs under {root}")
        return
    table = Table(title=f"{len(rows)} research runs")
    for col in ("run", "status", "versions", "scores", "topic"):
        table.add_column(col)
    for r in rows:
        scores = ", ".join(f"v{k}: {v}" for k, v in r["scores"].items() if v is not None)
        table.add_row(r["run"], r["status"], ", ".join(f"v{v}" for v in r["versions"]), scores, r["topic"][:60])
    Console().print(table)
