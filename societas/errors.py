"""The one exception type for user mistakes.

The CLI prints a `SocietasError` as a single line (no traceback) and exits non-zero;
anything else is a bug and raises normally. Messages name the problem *and* the fix.
"""

from __future__ import annotations


class SocietasError(Exception):
    """A problem the user can fix: bad input, a missing file, an unreachable server."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(SocietasError):
    """A command-line option or configuration value is invalid."""
