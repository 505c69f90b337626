"""Fixtures for the llms tests: an isolated cache dir, scripted servers, a stand-in vllm."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from llms.server import stop_all
from tests.doubles.scripted_openai_server import ScriptedOpenAIServer
from tests.llms.llm_testing import STAND_IN_LLAMA, STAND_IN_VLLM

_ENV_TO_CLEAR = (
    "OPENAI_API_KEY",
    "SOCIETAS_LLM_API_KEY",
    "SOCIETAS_LLM_PORT",
    "SOCIETAS_LLM_MODEL",
    "SOCIETAS_LLM_DIALECT",
    "SOCIETAS_LLM_CONCURRENCY",
    "SOCIETAS_LLM_TIMEOUT",
    "SOCIETAS_LLM_IDLE_SECONDS",
    "SOCIETAS_LLM_STALE_SECONDS",
    "SOCIETAS_LLM_CONNECT_TIMEOUT",
    "SOCIETAS_LLM_FIRST_BYTE_TIMEOUT",
    "SOCIETAS_LLM_JOURNAL",
    "SOCIETAS_VLLM_BIN",
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test gets its own server-state folder; servers it started are stopped after it."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SOCIETAS_CACHE_DIR", str(cache))
    for name in _ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    yield cache
    if cache.exists():
        stop_all(cache)


@pytest.fixture
def server() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer() as scripted:
        yield scripted


@pytest.fixture
def stand_in_vllm(monkeypatch: pytest.MonkeyPatch) -> str:
    """`SOCIETAS_VLLM_BIN` pointing at the stand-in executable; returns the model name to serve."""
    monkeypatch.setenv("SOCIETAS_VLLM_BIN", f"{shlex.quote(sys.executable)} {shlex.quote(str(STAND_IN_VLLM))}")
    monkeypatch.setenv("STAND_IN_REPLY", '{"action": "move", "reason": "stand-in"}')
    return "test-org/tiny-model"


@pytest.fixture
def busy_llama(monkeypatch: pytest.MonkeyPatch) -> str:
    """A managed server busy the way llama-cpp-python is (`stand_in_llama.py`: one request at a
    time, 2 s each, `/v1/models` waits for it); returns the `--llm` value that starts it."""
    monkeypatch.setenv("SOCIETAS_VLLM_BIN", f"{shlex.quote(sys.executable)} {shlex.quote(str(STAND_IN_LLAMA))}")
    monkeypatch.setenv("STAND_IN_GENERATE_SECONDS", "2")
    return "vllm:stand-in-llama"
