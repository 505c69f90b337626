"""Shared by the pipeline tests: a schema-aware test server, and no user LLM state leaking in."""

from __future__ import annotations

import pytest

from tests.doubles.schema_server import SchemaAwareServer


@pytest.fixture(scope="module")
def server():
    """Answers any JSON schema the pipeline asks for (a module may override it with its own double)."""
    with SchemaAwareServer() as s:
        yield s


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Servers' state files in the test's own folder, and no real API key."""
    monkeypatch.setenv("SOCIETAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
