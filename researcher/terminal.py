"""The research run at the terminal: stage progress as it streams, and a person's review of a
version (shown, then approved or commented on, typed or from a file)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from reports.human import HumanFeedback, section_key

Feedback = Callable[[dict[str, Any]], "HumanFeedback | None"]  # None: no answer, the run keeps waiting


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


def fixed_feedback(answer: HumanFeedback, console: Console | None = None) -> Feedback:
    """Feedback for `--comments FILE` / `--approve`: the answer once, then approval (its revision is the
    new version; the file has nothing more to say about it). With `console`, the request is shown."""
    given: list[bool] = []

    def respond(request: dict[str, Any]) -> HumanFeedback:
        if given:
            return HumanFeedback(approve=True, source=answer.source)
        given.append(True)
        if console is not None:
            show_request(request, console)
        return answer

    return respond


def show_request(request: dict[str, Any], console: Console) -> None:
    """The version, its review (scores, failed checks, comments) and its sections, for a person to read."""
    review = request.get("review") or {}
    scores = review.get("scores") or {}
    console.rule(f"Version {request['version']}: {request['title']}")
    if scores:
        console.print("scores: " + ", ".join(f"{k} {v}" for k, v in scores.items()))
    failed = [c for c in review.get("checks", []) if not c.get("ok")]
    console.print(f"checks: {len(review.get('checks', [])) - len(failed)}/{len(review.get('checks', []))} pass")
    for c in review.get("comments", []):
        console.print(f"  [{c.get('source', 'reviewer')}] {c.get('section')}: {c.get('comment')}", markup=False)
    for section in request["sections"]:
        console.print(f"\n[bold]## {section['key']}[/bold] ({section['title']})")
        text = section["text"]
        console.print(text[:600] + (" …" if len(text) > 600 else ""), markup=False)


def prompt_feedback(console: Console) -> Feedback:
    """Feedback typed at the terminal: approve, or a comment per section."""
    def respond(request: dict[str, Any]) -> HumanFeedback:
        show_request(request, console)
        keys = tuple(s["key"] for s in request["sections"])
        comments: dict[str, str] = {}
        while True:
            try:
                name = console.input("\nsection to comment on (key or title; empty when done): ").strip()
            except EOFError:  # input closed (not a terminal, or Ctrl-D): what was typed so far counts
                break
            if not name:
                break
            key = section_key(name, keys)
            if key is None:
                console.print("unknown section; one of: " + ", ".join(keys))
                continue
            try:
                text = console.input(f"comment on {key}: ").strip()
            except EOFError:
                break
            if text:
                comments[key] = text
        if comments:
            return HumanFeedback(comments=comments, source="prompt")
        # No comments: approve only when the person says so; closed input never approves by accident.
        try:
            answer = console.input(f"no comments: approve version {request['version']} as it is? [y/N] ")
        except EOFError:
            return None
        return HumanFeedback(approve=True, source="prompt") if answer.strip().lower() in {"y", "yes"} else None

    return respond
