"""`societas llm check`: one schema-constrained round trip and a generation-speed probe.

A tiny sentiment task (prompt `llm_check`) tests the part that matters most to the pipeline:
the backend returns output that validates against a schema. Unavailable backends raise
(one-line user errors); output that never validates is reported as `structured_ok: false`.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, Field

import prompts
from llms.client import LLMClient
from llms.errors import LLMOutputInvalid

CHECK_PROMPT = "llm_check"
SPEED_PROMPT = "Write a long story about a cat who learns to sail."


class SentimentCheck(BaseModel):
    sentiment: Literal["positive", "negative"]
    reason: str = Field(max_length=120)


def run_check(client: LLMClient, *, message: str = "I love this sunny day, everything went well!") -> dict[str, Any]:
    """Backend, model, structured_ok, latency and completion tokens/s, as a plain dict."""
    started = time.perf_counter()
    result: dict[str, Any] = {"backend": client.label, "dialect": client.backend.dialect.value}
    try:
        answer = client.complete(
            prompts.messages(CHECK_PROMPT, message=message), schema=SentimentCheck, max_tokens=64, use_cache=False
        )
        result.update(structured_ok=True, answer=answer.model_dump())
    except LLMOutputInvalid as exc:
        result.update(structured_ok=False, error=str(exc))
    result["latency_s"] = round(time.perf_counter() - started, 3)  # includes a server start, if any

    before = client.accounting.usage(client.role)
    speed_started = time.perf_counter()
    client.complete(SPEED_PROMPT, max_tokens=64, use_cache=False)
    elapsed = time.perf_counter() - speed_started
    tokens = client.accounting.usage(client.role).completion_tokens - before.completion_tokens
    result.update(
        model=client.model,
        urls=client.backend.urls,
        completion_tokens=tokens,
        tokens_per_s=round(tokens / elapsed, 1) if elapsed > 0 else None,
        prompt_template_hash=prompts.template_hash(CHECK_PROMPT),
    )
    return result
