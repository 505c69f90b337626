"""`LLMSet`: the researcher, agents and reviewer clients of one run.

Built from `--llm`, `--agents-llm` and `--reviewer-llm` (the last two default to `--llm`).
Roles with equal specs share one backend (one embedded server, one concurrency limit);
all share the run's response cache and one `Accounting`, so the manifest gets one snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llms.accounting import ROLES, Accounting
from llms.backends import parse_backend
from llms.cache import ResponseCache
from llms.client import LLMClient
from llms.endpoints import open_backend


class LLMSet:
    """One client per role; `for_role(name)` or the `researcher`/`agents`/`reviewer` attributes."""

    def __init__(self, clients: Mapping[str, LLMClient], accounting: Accounting) -> None:
        self.clients = dict(clients)
        self.accounting = accounting

    @classmethod
    def from_options(
        cls,
        llm: str | None = None,
        *,
        agents_llm: str | None = None,
        reviewer_llm: str | None = None,
        model_path: str | Path | None = None,
        port: int | None = None,
        dialect: str | None = None,
        run_folder: str | Path | Any | None = None,
        use_cache: bool = True,
        **client_options: Any,
    ) -> "LLMSet":
        """Clients for the three roles; the cache is `<run_folder>/llm_cache.sqlite` when a folder is given."""
        folder = getattr(run_folder, "path", run_folder)  # a societas.runs.RunFolder or a path
        cache = ResponseCache.in_run(folder) if (folder is not None and use_cache) else None
        accounting = Accounting()
        texts = {"researcher": llm, "agents": agents_llm or llm, "reviewer": reviewer_llm or llm}
        clients = {}
        for role in ROLES:
            spec = parse_backend(texts[role], model_path=model_path, dialect=dialect, port=port)
            clients[role] = LLMClient(
                open_backend(spec), role=role, cache=cache, accounting=accounting, **client_options
            )
        return cls(clients, accounting)

    def for_role(self, role: str) -> LLMClient:
        try:
            return self.clients[role]
        except KeyError:
            raise KeyError(f"no LLM client for role {role!r}; roles: {', '.join(self.clients)}") from None

    @property
    def researcher(self) -> LLMClient:
        return self.clients["researcher"]

    @property
    def agents(self) -> LLMClient:
        return self.clients["agents"]

    @property
    def reviewer(self) -> LLMClient:
        return self.clients["reviewer"]

    def describe(self) -> dict[str, dict[str, Any]]:
        """Which backend and model each role uses, for the manifest and the report's Limitations."""
        return {
            role: {"backend": c.label, "model": c.model, "dialect": c.backend.dialect.value}
            for role, c in self.clients.items()
        }

    def snapshot(self) -> dict[str, Any]:
        """`{"models": describe(), "usage": per-role counters}` for `manifest.json`."""
        return {"models": self.describe(), "usage": self.accounting.snapshot()}
