"""`societas research`, `societas resume`, `societas runs`, `societas regenerate`, `societas review`."""

from __future__ import annotations

import sys
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
    app.command("regenerate", help="A new report version from a run's saved data; nothing is simulated again.")(
        regenerate_cmd)
    app.command("review", help="Review a run's latest report version yourself: approve, or comment per section.")(
        review_cmd)


def research_cmd(
    topic: Optional[str] = typer.Argument(None, help="The research question, in any language (default: an "
                                          "example question)."),
    topic_file: Optional[Path] = typer.Option(None, "--topic-file", help="Read the topic from this file "
                                              "('-': standard input), for a topic too long for the command line."),
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
    agents_mode: str = typer.Option("auto", "--agents-mode",
                                    help="How agents with `decision: llm` choose: llm, rule (the fallback), or auto "
                                    "(llm when the estimated LLM calls fit --llm-budget)."),
    llm_budget: int = typer.Option(500, "--llm-budget", min=0,
                                   help="auto mode: the most LLM calls (distinct prompts after grouping, estimated by a pilot)."),
    interactive: bool = typer.Option(False, "--interactive",
                                     help="Pause after the automated review so you can approve or comment."),
    bib: Optional[Path] = typer.Option(None, "--bib", help="A BibTeX file the report may cite besides the shipped one."),
    prose: str = typer.Option("auto", "--prose", help="Who writes the report's prose: model (checked by the prose "
                              "gate), code (a plain narrative from the data), or auto: the model only when its context "
                              "holds 16k tokens or more (a small model's claims cannot be trusted)."),
) -> None:
    """Take a topic to a reviewed report; every number in it comes from the simulation it runs."""
    from researcher.runner import start
    from researcher.state import ResearchConfig
    from researcher.terminal import prompt_feedback
    from simulator import check_agents_mode

    config = ResearchConfig(seeds=seeds, steps=steps, agents=agents, review_rounds=review_rounds, llm=llm,
                            agents_llm=agents_llm, reviewer_llm=reviewer_llm,
                            model_path=str(model_path) if model_path else None, ray_address=ray_address,
                            agents_mode=check_agents_mode(agents_mode), llm_budget=llm_budget,
                            bib=_bib(bib), prose=_prose(prose))
    start(read_topic(topic, topic_file), config, out=out, feedback=prompt_feedback(Console(stderr=True)) if interactive else None)


def _prose(value: str) -> str:
    from societas.errors import SocietasError

    if value not in ("auto", "model", "code"):
        raise SocietasError(f"unknown --prose {value!r}", hint="use --prose auto, model or code")
    return value


def read_topic(topic: Optional[str], topic_file: Optional[Path]) -> str:
    """The topic from the argument, or from `--topic-file` (a path, or '-' for stdin); never both."""
    from societas.errors import SocietasError

    if topic_file is None:
        return DEFAULT_TOPIC if topic is None else topic
    if topic is not None:
        raise SocietasError("a topic argument and --topic-file exclude each other", hint="give one of them")
    if str(topic_file) == "-":
        return sys.stdin.read()
    try:
        return topic_file.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SocietasError(f"cannot read the topic file {topic_file}: {exc.strerror or exc}",
                            hint="give a readable text file, or '-' to read standard input") from None


def resume_cmd(run: str = typer.Argument(..., help="Run id (see `societas runs`) or run folder path.")) -> None:
    """Finished stages are not repeated; the simulation data are reused."""
    from researcher.runner import resume

    resume(run)


def runs_cmd(
    root: Path = typer.Option(Path("runs"), "--root", help="Folder that holds the runs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    from societas import strict_json
    from societas.errors import SocietasError
    from societas.runs import read_manifest_file

    rows = []
    for path in sorted(root.glob("*/manifest.json")) if root.is_dir() else []:
        try:
            m = read_manifest_file(path)
        except (OSError, SocietasError):  # listed, not hidden: the user should learn a run is damaged
            rows.append({"run": path.parent.name, "topic": "", "status": "unreadable manifest", "versions": [],
                         "final": None, "scores": {}})
            continue
        if "topic" not in m:
            continue  # a simulator-only run
        rows.append({"run": path.parent.name, "topic": m.get("topic", ""), "status": m.get("status", "?"),
                     "versions": m.get("versions", []), "final": m.get("final_version"),
                     "scores": m.get("scores", {})})
    if as_json:
        typer.echo(strict_json.dumps(rows, indent=2))
        return
    if not rows:
        Console().print(f"no research runs under {root}")
        return
    table = Table(title=f"{len(rows)} research runs")
    for col in ("run", "status", "versions", "scores", "topic"):
        table.add_column(col)
    for r in rows:
        scores = ", ".join(f"v{k}: {v}" for k, v in r["scores"].items() if v is not None)
        versions = ", ".join(f"v{v}" + (" (final)" if v == r["final"] else "") for v in r["versions"])
        table.add_row(r["run"], r["status"], versions, scores, r["topic"][:60])
    Console().print(table)


def _bib(path: Optional[Path]) -> Optional[str]:
    """The --bib file as an absolute path, checked now so a bad file fails before any work."""
    if path is None:
        return None
    from reports.citations import load_bibliography

    load_bibliography(path)
    return str(path.resolve())


def regenerate_cmd(
    run: str = typer.Argument(..., help="Run id (see `societas runs`) or run folder path."),
    start_from: str = typer.Option("analyze", "--from", help="analyze: redo the analysis and the report; "
                                   "write: only the report."),
    llm: Optional[str] = typer.Option(None, "--llm", help="Another backend to write (and review) the report."),
    review_rounds: Optional[int] = typer.Option(None, "--review-rounds", min=0, max=10, help="Most revision rounds."),
    bib: Optional[Path] = typer.Option(None, "--bib", help="A BibTeX file the report may cite besides the shipped one."),
) -> None:
    """Forks the run's checkpoint after the simulation: versions v1..vN stay, the new ones follow."""
    from researcher.runner import regenerate

    regenerate(run, start_from=start_from, llm=llm, review_rounds=review_rounds, bib=_bib(bib))


def review_cmd(
    run: str = typer.Argument(..., help="Run id (see `societas runs`) or run folder path."),
    comments: Optional[Path] = typer.Option(None, "--comments", help="Comments per section: '## <section>' "
                                            "lines, each followed by the comment (see README); or just 'approve'."),
    approve: bool = typer.Option(False, "--approve", help="Approve the latest version as it is."),
) -> None:
    """Shows the latest version and its review; revises only the sections you comment on."""
    from reports.human import HumanFeedback, read_comments
    from researcher.runner import review
    from researcher.terminal import fixed_feedback, prompt_feedback
    from societas.errors import SocietasError

    if comments and approve:
        raise SocietasError("--comments and --approve exclude each other", hint="give one of them")
    console = Console(stderr=True)
    if approve:
        feedback = fixed_feedback(HumanFeedback(approve=True, source="--approve"), console)
    elif comments:
        feedback = fixed_feedback(read_comments(comments), console)
    else:
        feedback = prompt_feedback(console)
    review(run, feedback, console=console)
