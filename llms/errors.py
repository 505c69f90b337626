"""The user-facing LLM failures, all `SocietasError`s so the CLI prints them in one line.

Each message names the backend (or URL) and the cause; the hint names the fix.
"""

from __future__ import annotations

from societas.errors import ConfigError, SocietasError

__all__ = ["ConfigError", "LLMError", "LLMOutputInvalid", "LLMRejected", "LLMUnavailable", "one_line"]


def one_line(text: object, limit: int = 240) -> str:
    """Collapse a cause (an exception text, a server body) to one short line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class LLMError(SocietasError):
    """Something about the LLM backend the user can fix or has to know about."""


class LLMUnavailable(LLMError):
    """The backend could not be reached or kept failing after every retry."""


class LLMRejected(LLMError):
    """The backend answered with a non-transient error (bad request, wrong key, unknown model)."""


class LLMOutputInvalid(LLMError):
    """The model's output did not validate, even after the bounded repairs."""
