"""Start, resume, regenerate and review a research run: the graph with its checkpoints, the human in
the loop, the manifest. What the terminal shows and asks is `researcher.terminal`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from langgraph.types import Command
from rich.console import Console

import prompts
from reports.versions import render_status, report_dir, saved_versions
from researcher.graph import compile_graph
from researcher.state import MAX_TOPIC_CHARS, Deps, ResearchConfig
from researcher.terminal import Feedback, ProgressView
from societas.errors import SocietasError
from societas.runs import TOPIC_FILE, RunFolder, atomic_write_text, base_manifest

FORK_POINTS = {"analyze": ("analyze_results", "run_simulation"), "write": ("write_report", "analyze_results")}


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


def open_llms(config: ResearchConfig, folder: RunFolder):
    from llms.roles import LLMSet

    return LLMSet.from_options(config.llm, agents_llm=config.agents_llm, reviewer_llm=config.reviewer_llm,
                               model_path=config.model_path, run_folder=folder)


def start(topic: str, config: ResearchConfig, *, out: Path | None = None, console: Console | None = None,
          llms: Any = None, feedback: Feedback | None = None) -> RunFolder:
    """A new run folder and the whole pipeline on it."""
    topic, notes = prepare_topic(topic)
    if out and (Path(out) / "manifest.json").exists():
        raise SocietasError(f"{out} already holds a run",
                            hint=f"continue it with `societas resume {out}`, or choose another --out")
    folder = RunFolder.claim(out) if out else RunFolder.create(topic)
    manifest = base_manifest(sys.argv, config.model_dump())
    manifest.update(topic=topic, status="running", config_hash=config.digest())
    folder.update_manifest(**manifest)
    atomic_write_text(folder.file(TOPIC_FILE), topic)  # the whole topic, for the report's reproduce line
    console = console or Console(stderr=True)
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(f"run [bold]{folder.id}[/bold] in {folder.path}")
    state = {"topic": topic, "config": config.model_dump(), "notes": notes,
             "review_mode": "interactive" if feedback else None}
    return _execute(folder, state, config, console, llms, feedback)


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


def _pending(graph, cfg) -> dict | None:
    """The payload of the interrupt the thread waits on, if any."""
    snapshot = graph.get_state(cfg)
    interrupts = getattr(snapshot, "interrupts", ()) or [i for t in snapshot.tasks for i in t.interrupts]
    return interrupts[0].value if interrupts else None


def _execute(folder: RunFolder, state: dict | None, config: ResearchConfig, console: Console, llms: Any,
             feedback: Feedback | None = None) -> RunFolder:
    graph, conn = compile_graph(folder.path / "checkpoints.sqlite")
    cfg = {"configurable": {"thread_id": folder.run_id}}
    if state is None:
        snapshot = graph.get_state(cfg)
        if not snapshot.next:
            conn.close()
            if folder.read_manifest().get("status") != "complete":
                # Killed after the last checkpoint and before the manifest said so: the run is done,
                # and only its manifest needs finishing (the LLM usage of that session is lost).
                _finish_manifest(folder, snapshot.values, llms, 0.0)
                console.print("the run had finished before it stopped; its manifest is now complete")
            else:
                console.print("this run is already complete")
            return folder
    llms = llms or open_llms(config, folder)
    view = ProgressView(console)
    deps = Deps(folder=folder, llms=llms)
    t0 = time.perf_counter()
    folder.update_manifest(status="running")
    run_input: Any = state
    try:
        while True:
            for _mode, event in graph.stream(run_input, cfg, context=deps, stream_mode=["custom"],
                                             durability="sync"):
                view(event)
            view.close()
            request = _pending(graph, cfg)
            if request is None:
                break
            answer = feedback(request) if feedback is not None else None
            if answer is None:  # nobody to ask, or the person left without approving or commenting
                folder.update_manifest(status="awaiting review")
                console.print(f"[yellow]waiting for your review[/yellow] of version {request['version']}: "
                              f"`societas review {folder.id}`")
                conn.close()
                return folder
            run_input = Command(resume=answer.model_dump())
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
    status = render_status(folder.path, version) if version else {}
    if status.get("pdf"):
        console.print(f"[bold green]pdf:[/bold green] {folder.path / 'report' / 'final' / 'report.pdf'}")
    elif status.get("notice"):
        console.print(f"[yellow]note:[/yellow] {status['notice'].replace('RUN', folder.id)}")
    return folder


def _finish_manifest(folder: RunFolder, final: dict, llms: Any, seconds: float) -> None:
    versions = saved_versions(folder.path)
    snapshot = llms.snapshot() if hasattr(llms, "snapshot") else {}
    folder.update_manifest(
        status="complete",
        final_version=final.get("final_version"),
        versions=list(versions),
        scores=versions,
        human_reviewed=sorted(v for v in versions
                              if (report_dir(folder.path, v) / "human_comments.json").is_file()),
        timings=final.get("timings", {}),
        tokens=final.get("tokens", {}),
        llm=snapshot,
        prompt_hashes=prompts.template_hashes(),  # every template: a new one cannot be missed
        seeds=final.get("design", {}).get("seeds"),
        scenario=final.get("design", {}).get("scenario"),
        last_session_seconds=round(seconds, 2),
    )


def _open_finished(run: str | Path):
    """The run folder, its config and its compiled graph; refuses a run without checkpoints."""
    folder = RunFolder.open(run)
    if not (folder.path / "checkpoints.sqlite").exists():
        raise SocietasError(f"run {folder.id} has no checkpoints",
                            hint="only runs made by `societas research` can be regenerated or reviewed")
    config = ResearchConfig.model_validate(folder.read_manifest().get("config", {}))
    graph, conn = compile_graph(folder.path / "checkpoints.sqlite")
    return folder, config, graph, conn, {"configurable": {"thread_id": folder.run_id}}


def regenerate(run: str | Path, *, start_from: str = "analyze", llm: str | None = None,
               review_rounds: int | None = None, bib: str | None = None, console: Console | None = None,
               llms: Any = None) -> RunFolder:
    """A new report version from the saved data: the thread forks at the checkpoint after
    run_simulation (`analyze`) or analyze_results (`write`), so no earlier stage runs again."""
    if start_from not in FORK_POINTS:
        raise SocietasError(f"cannot regenerate from {start_from!r}", hint="use --from analyze or --from write")
    target, as_node = FORK_POINTS[start_from]
    folder, config, graph, conn, cfg = _open_finished(run)
    try:
        waiting = graph.get_state(cfg).next
        if waiting:
            how = f"societas review {folder.id}" if waiting == ("human_review",) else f"societas resume {folder.id}"
            raise SocietasError(f"run {folder.id} is not finished", hint=f"finish it with `{how}`, then regenerate")
        fork = next((s for s in graph.get_state_history(cfg) if s.next == (target,)), None)
        if fork is None:
            raise SocietasError(f"run {folder.id} has no checkpoint before {target}",
                                hint="regenerate needs a run whose simulation finished")
        changes: dict[str, Any] = {"max_extra_seed_rounds": fork.values.get("extra_seed_rounds", 0)}  # never simulate
        if llm is not None:
            changes["llm"] = llm
        if review_rounds is not None:
            changes["review_rounds"] = review_rounds
        if bib is not None:
            changes["bib"] = bib
        config = ResearchConfig.model_validate({**config.model_dump(), **changes})
        base = max(saved_versions(folder.path), default=0)
        graph.update_state(fork.config, {"config": config.model_dump(), "version_base": base, "review_mode": None,
                                         "human_feedback": {}, "reviews": [], "review_round": 0}, as_node=as_node)
    finally:
        conn.close()
    history = folder.read_manifest().get("regenerations", [])
    folder.update_manifest(config=config.model_dump(), config_hash=config.digest(),
                           regenerations=[*history, {"from": start_from, "after_version": base, **changes}])
    console = console or Console(stderr=True)
    console.print(f"regenerating run [bold]{folder.id}[/bold] from {target}: version {base + 1} and later")
    return _execute(folder, None, config, console, llms)


def review(run: str | Path, feedback: Feedback, *, console: Console | None = None, llms: Any = None) -> RunFolder:
    """A person reviews the latest version: the thread goes to human_review, which waits for `feedback`.

    A review that was cut short (killed mid-revision) is continued, not started again.
    """
    folder, config, graph, conn, cfg = _open_finished(run)
    console = console or Console(stderr=True)
    try:
        snapshot = graph.get_state(cfg)
        if snapshot.next and not snapshot.values.get("review_mode"):
            raise SocietasError(f"run {folder.id} is not finished",
                                hint=f"finish it with `societas resume {folder.id}`, then review it")
        if not snapshot.next:
            if not snapshot.values.get("reviews"):
                raise SocietasError(f"run {folder.id} has no reviewed report", hint="finish the run first")
            graph.update_state(cfg, {"review_mode": "once", "human_feedback": {}}, as_node="review_report")
        elif _pending(graph, cfg) is None:
            console.print("continuing the review that was interrupted")
    finally:
        conn.close()
    return _execute(folder, None, config, console, llms, feedback)
