"""Start, resume and watch a research run: the graph with checkpoints, progress, the manifest."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import prompts
from researcher.graph import compile_graph
from researcher.state import MAX_TOPIC_CHARS, Deps, ResearchConfig
from societas.errors import SocietasError
from societas.runs import RunFolder, base_manifest

log = logging.getLogger(__name__)


def prepare_topic(topic: str) -> tuple[str, list[str]]:
    """Refuse an empty topic; truncate a huge one (and say so)."""
    clean = " ".join((topic or "").replace("\x00", " ").split())
    if not clean:
        raise SocietasError("the research topic is empty",
                            hint='give a question, e.g. societas research "Does homophily increase polarization?"')
    notes = []
    if len(clean) > MAX_TOPIC_CHARS:
        notes.append(f"The topic was {len(clean):,} characters long; only the first {MAX_TOPIC_CHARS:,} were used.")
        clean = clean[:MAX_TOPIC_CHARS].rsplit(" ", 1)[0]
    return clean, notes


class ProgressView:
    """Renders the pipeline's stream events: one line per stage, a bar while simulating."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar: Progress | None = None
        self.task = None

    def __call__(self, event: dict[str, Any]) -> None:
        stage, kind = event.get("stage", "?"), event.get("event")
        if kind == "progress":
            if self.bar is None:
                self.bar = Progress(TextColumn("  simulating {task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TimeElapsedColumn(), console=self.console, transient=True)
                self.bar.start()
                self.task = self.bar.add_task(event.get("message", ""), total=event.get("total", 1))
            self.bar.update(self.task, completed=event.get("done", 0), description=event.get("message", ""))
            return
        if self.bar is not None and kind == "end":
            self.bar.stop()
            self.bar = None
        if kind == "start":
            self.console.print(f"[bold cyan]▶ {stage}[/bold cyan]")
        elif kind == "end":
            tokens = event.get("tokens", {})
            spent = tokens.get("prompt_tokens", 0) + tokens.get("completion_tokens", 0)
            extra = f", {tokens.get('calls', 0)} LLM calls, {spent:,} tokens" if tokens.get("calls") else ""
            self.console.print(f"[green]✓ {stage}[/green] ({event.get('seconds', 0):.1f} s{extra})")
        elif event.get("message"):
            self.console.print(f"  {event['message']}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def open_llms(config: ResearchConfig, folder: RunFolder):
    from llms.roles import LLMSet

    return LLMSet.from_options(config.llm, agents_llm=config.agents_llm, reviewer_llm=config.reviewer_llm,
                               model_path=config.model_path, run_folder=folder)


def start(topic: str, config: ResearchConfig, *, out: Path | None = None, console: Console | None = None,
          llms: Any = None) -> RunFolder:
    """A new run folder and the whole pipeline on it."""
    topic, notes = prepare_topic(topic)
    if out and (Path(out) / "manifest.json").exists():
        raise SocietasError(f"{out} already holds a run",
                            hint=f"continue it with `societas resume {out}`, or choose another --out")
    folder = RunFolder(Path(out)) if out else RunFolder.create(topic)
    try:
        folder.path.mkdir(parents=True, exist_ok=True)
        (folder.path / "data").mkdir(exist_ok=True)
    except OSError as exc:
        raise SocietasError(f"cannot create the run folder {folder.path}: {exc.strerror}",
                            hint="choose a writable folder with --out") from None
    manifest = base_manifest(sys.argv, config.model_dump())
    manifest.update(topic=topic, status="running", config_hash=config.digest())
    folder.update_manifest(**manifest)
    console = console or Console(stderr=True)
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(f"run [bold]{folder.id}[/bold] in {folder.path}")
    state = {"topic": topic, "config": config.model_dump(), "notes": notes}
    return _execute(folder, state, config, console, llms)


def resume(run: str | Path, *, console: Console | None = None, llms: Any = None) -> RunFolder:
    """Continue an interrupted or crashed run from its last checkpoint; finished stages are not repeated."""
    folder = RunFolder.open(run)
    manifest = folder.read_manifest()
    if not (folder.path / "checkpoints.sqlite").exists():
        raise SocietasError(f"run {folder.id} has no checkpoints to resume from",
                            hint="start a new run with `societas research`")
    config = ResearchConfig.model_validate(manifest.get("config", {}))
    console = console or Console(stderr=True)
    console.print(f"resuming run [bold]{folder.id}[/bold]")
    return _execute(folder, None, config, console, llms)


def _execute(folder: RunFolder, state: dict | None, config: ResearchConfig, console: Console, llms: Any) -> RunFolder:
    graph, conn = compile_graph(folder.path / "checkpoints.sqlite")
    cfg = {"configurable": {"thread_id": folder.id}}
    if state is None:
        snapshot = graph.get_state(cfg)
        if not snapshot.next:
            console.print("this run is already complete")
            conn.close()
            return folder
    llms = llms or open_llms(config, folder)
    view = ProgressView(console)
    deps = Deps(folder=folder, llms=llms)
    t0 = time.perf_counter()
    folder.update_manifest(status="running")
    try:
        for _mode, event in graph.stream(state, cfg, context=deps, stream_mode=["custom"], durability="sync"):
            view(event)
        final = graph.get_state(cfg).values
    except KeyboardInterrupt:
        view.close()
        folder.update_manifest(status="interrupted")
        console.print(f"[yellow]interrupted[/yellow]: resume with `societas resume {folder.id}`")
        raise
    except BaseException as exc:
        view.close()
        folder.update_manifest(status="failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        if isinstance(exc, SocietasError):
            exc.hint = (exc.hint + "; " if exc.hint else "") + f"then resume with `societas resume {folder.id}`"
        raise
    finally:
        conn.close()
    _finish_manifest(folder, final, llms, time.perf_counter() - t0)
    version = final.get("final_version")
    console.print(f"[bold green]report:[/bold green] {folder.path / 'report' / 'final' / 'report.md'}"
                  + (f" (version {version})" if version else ""))
    return folder


def _finish_manifest(folder: RunFolder, final: dict, llms: Any, seconds: float) -> None:
    reviews = final.get("reviews", [])
    scores = {r["version"]: (r.get("scores") or {}).get("overall") for r in reviews}
    snapshot = llms.snapshot() if hasattr(llms, "snapshot") else {}
    folder.update_manifest(
        status="complete",
        final_version=final.get("final_version"),
        versions=sorted({r["version"] for r in reviews} | {final.get("report_version", 0)} - {0}),
        scores=scores,
        timings=final.get("timings", {}),
        tokens=final.get("tokens", {}),
        llm=snapshot,
        prompt_hashes=prompts.template_hashes(),  # every template: a new one cannot be missed
        seeds=final.get("design", {}).get("seeds"),
        scenario=final.get("design", {}).get("scenario"),
        last_session_seconds=round(seconds, 2),
    )
