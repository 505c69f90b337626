"""Helpers shared by the llms tests."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import psutil

from pydantic import BaseModel, Field

from llms.backends import parse_backend
from llms.client import LLMClient
from llms.endpoints import Backend
from llms.retry import RetryPolicy
from llms.server import ManagedServer, ServerState, free_port

DOUBLES = Path(__file__).resolve().parents[1] / "doubles"

FAST_RETRY = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05, jitter=0.5, max_retry_after=2.0)
STAND_IN_VLLM = DOUBLES / "stand_in_vllm.py"
STAND_IN_LLAMA = DOUBLES / "stand_in_llama.py"


class Decision(BaseModel):
    """The shape of an agent decision, as the simulator asks for it."""

    action: Literal["stay", "move"]
    reason: str = Field(max_length=80)


VALID = {"action": "stay", "reason": "neighbors agree"}


def client_for(url: str, *, timeout: float = 2.0, max_concurrency: int | None = None, dialect: str | None = None, **kw) -> LLMClient:
    """A client on its own backend (not the process-wide shared one), with fast retries."""
    backend = Backend(parse_backend(url, dialect=dialect), timeout=timeout, max_concurrency=max_concurrency)
    kw.setdefault("retry", FAST_RETRY)
    return LLMClient(backend, **kw)


def mute_watchdog(server: ManagedServer, model: str) -> tuple[subprocess.Popen, ServerState]:
    """A watchdog recorded as `server`'s, whose "server" never listens: alive, answering nothing."""
    mute = subprocess.Popen(
        [sys.executable, "-m", "llms.watchdog", "--state", str(server.state_path), "--",
         sys.executable, "-c", "import time; time.sleep(60)"],
        start_new_session=True,
    )  # fmt: skip
    state = ServerState(
        key=server.launch.key, kind=server.launch.kind, name="mute", model=model,
        pid=mute.pid, port=free_port(), log="", started_at=0.0, ready=True,
    )  # fmt: skip
    state.write(server.state_path)
    deadline = time.monotonic() + 10
    while not psutil.Process(mute.pid).children():  # the watchdog is up and watching
        assert time.monotonic() < deadline, "the watchdog did not start"
        time.sleep(0.05)
    return mute, state
