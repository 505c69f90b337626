"""What every node does around its work: progress events, timing, token accounting."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from researcher.state import Deps, ResearchState

log = logging.getLogger(__name__)

Node = Callable[[ResearchState, Deps], dict[str, Any]]


def emit(stage: str, message: str, **extra: Any) -> None:
    """A progress event for the CLI (no-op outside a streaming run)."""
    try:
        writer = get_stream_writer()
    except Exception:  # noqa: BLE001 - called outside a graph run (unit tests of a node)
        return
    writer({"stage": stage, "message": message, **extra})


def _totals(deps: Deps) -> dict[str, Any]:
    accounting = getattr(deps.llms, "accounting", None)
    return accounting.snapshot()["total"] if accounting is not None else {}


def stage(name: str) -> Callable[[Node], Callable[[ResearchState, Runtime[Deps]], dict[str, Any]]]:
    """Wrap a node `(state, deps) -> update` as a LangGraph node that reports and times itself."""

    def wrap(fn: Node):
        def node(state: ResearchState, runtime: Runtime[Deps]) -> dict[str, Any]:
            deps = runtime.context
            emit(name, "started", event="start")
            before = _totals(deps)
            t0 = time.perf_counter()
            update = fn(state, deps) or {}
            elapsed = time.perf_counter() - t0
            after = _totals(deps)
            used = {k: after.get(k, 0) - before.get(k, 0) for k in ("calls", "requests", "prompt_tokens",
                                                                    "completion_tokens", "cache_hits")}
            update.setdefault("timings", {})[name] = round(state.get("timings", {}).get(name, 0.0) + elapsed, 3)
            earlier = state.get("tokens", {}).get(name, {})  # a stage that runs again (review rounds) adds up
            update.setdefault("tokens", {})[name] = {k: earlier.get(k, 0) + v for k, v in used.items()}
            emit(name, "done", event="end", seconds=round(elapsed, 2), tokens=used)
            log.info("stage %s done in %.2fs", name, elapsed)
            return update

        # Not functools.wraps: LangGraph reads the signature to pass `runtime`, so keep ours.
        node.__name__, node.__qualname__, node.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        node.__module__ = fn.__module__
        return node

    return wrap
