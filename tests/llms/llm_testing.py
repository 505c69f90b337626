"""Helpers shared by the llms tests."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from llms.backends import parse_backend
from llms.client import LLMClient
from llms.endpoints import Backend
from llms.retry import RetryPolicy

DOUBLES = Path(__file__).resolve().parents[1] / "doubles"

FAST_RETRY = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05, jitter=0.5, max_retry_after=2.0)
STAND_IN_VLLM = DOUBLES / "stand_in_vllm.py"


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
