"""Which faults are transient, and how long to wait before trying again (tenacity).

The openai SDK's own retries are off (`max_retries=0`) so this is the one place that
decides: connection errors, timeouts, HTTP 429 (honoring Retry-After), 5xx and unreadable
response bodies are retried with jittered exponential backoff, a bounded number of times.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import openai
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, stop_after_attempt


class MalformedResponse(Exception):
    """The server answered 200 but the body is not a chat completion."""


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded attempts, exponential backoff with jitter; all delays in seconds."""

    attempts: int = 4
    initial_wait: float = 0.5
    max_wait: float = 8.0
    jitter: float = 0.5
    max_retry_after: float = 30.0  # never sleep longer than this on a server's Retry-After

    @classmethod
    def from_env(cls) -> "RetryPolicy":
        """`SOCIETAS_LLM_RETRIES` (attempts) and `SOCIETAS_LLM_RETRY_WAIT` (initial wait) override."""
        return cls(
            attempts=int(os.environ.get("SOCIETAS_LLM_RETRIES", cls.attempts)),
            initial_wait=_env_float("SOCIETAS_LLM_RETRY_WAIT", cls.initial_wait),
        )

    def wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = retry_after_seconds(exc)
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        backoff = self.initial_wait * 2 ** (state.attempt_number - 1)
        return min(backoff, self.max_wait) + random.uniform(0, self.jitter * self.initial_wait)

    def _kwargs(self, on_retry: Callable[[RetryCallState], None] | None) -> dict:
        return {
            "stop": stop_after_attempt(self.attempts),
            "wait": self.wait,
            "retry": retry_if_exception(is_transient),
            "reraise": True,
            "before_sleep": on_retry,
        }

    def retrying(self, on_retry: Callable[[RetryCallState], None] | None = None) -> Retrying:
        return Retrying(**self._kwargs(on_retry))

    def async_retrying(self, on_retry: Callable[[RetryCallState], None] | None = None) -> AsyncRetrying:
        return AsyncRetrying(**self._kwargs(on_retry))


def is_transient(exc: BaseException) -> bool:
    """Worth another try: the same request may well succeed in a moment."""
    if isinstance(exc, (openai.APIConnectionError, MalformedResponse, json.JSONDecodeError)):
        return True  # APITimeoutError is an APIConnectionError
    if isinstance(exc, openai.APIResponseValidationError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 425, 429) or exc.status_code >= 500
    return False


def retry_after_seconds(exc: BaseException | None) -> float | None:
    """The server's Retry-After (seconds or an HTTP date; `retry-after-ms` too), if any."""
    response = getattr(exc, "response", None)
    if response is None or getattr(exc, "status_code", None) not in (429, 503):
        return None
    headers = response.headers
    if "retry-after-ms" in headers:
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def describe(exc: BaseException) -> str:
    """A short cause for an error message: `HTTP 500 ...`, `timed out`, `connection refused`."""
    if isinstance(exc, openai.APITimeoutError):
        return "request timed out"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        return f"connection failed ({cause})" if cause else "connection failed"
    if isinstance(exc, (json.JSONDecodeError, openai.APIResponseValidationError)):
        return f"malformed response body ({exc})"
    return f"{type(exc).__name__}: {exc}"
