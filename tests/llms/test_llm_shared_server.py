"""One managed server shared by several commands: busy is alive, replacement and port rules,
servers that never answer, and request counts across processes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.doubles.scripted_openai_server import ScriptedOpenAIServer, hang, http_error, reply

from llms.backends import parse_backend
from llms.client import LLMClient
from llms.endpoints import Backend
from llms.errors import ConfigError, LLMUnavailable
from llms.server import ManagedServer, ServerState, free_port, is_healthy
from llms.vllm import vllm_launch
from tests.llms.llm_testing import FAST_RETRY, client_for, mute_watchdog

ROOT = Path(__file__).resolve().parents[2]
# Another command, as a separate process with its own backend; it asks when told to (its
# imports take seconds on a busy machine, longer than the first command's answer).
SECOND_COMMAND = """
import sys
from llms.backends import parse_backend
from llms.client import LLMClient
from llms.endpoints import Backend
print("ready", flush=True)
sys.stdin.readline()
client = LLMClient(Backend(parse_backend(sys.argv[1])))
print(client.complete("the second command's question"))
print(client.accounting.usage("researcher").retries)
"""


def _in_background(call: Callable[[], Any]) -> dict[str, Any]:
    """Runs `call` in a daemon thread; the dict gets `result` or `error` (a hang cannot block the test run)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    outcome["thread"] = threading.Thread(target=run, daemon=True)
    outcome["thread"].start()
    return outcome


def test_two_commands_share_a_busy_server_and_lose_no_request(busy_llama: str, monkeypatch) -> None:
    monkeypatch.setenv("STAND_IN_GENERATE_SECONDS", "4")  # longer than a start-up probe used to wait
    first = LLMClient(Backend(parse_backend(busy_llama)), retry=FAST_RETRY)
    first.backend.start()
    [server] = first.backend.servers
    before = server.state()

    second = subprocess.Popen([sys.executable, "-c", SECOND_COMMAND, busy_llama], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert second.stdout.readline() == "ready\n"
    asked = _in_background(lambda: first.complete("the first command's long question"))
    time.sleep(0.5)  # the server is generating the first answer now
    output, errors = second.communicate("go\n", timeout=60)
    asked["thread"].join(30)

    assert second.returncode == 0, errors
    assert output.split() == ["ok", "0"]  # answered, with no retry
    assert asked.get("result") == "ok", asked.get("error")
    assert first.accounting.usage("researcher").retries == 0
    after = server.state()
    assert (after.pid, after.port) == (before.pid, before.port)  # never replaced


@contextmanager
def _generating(llm: str) -> Iterator[ServerState]:
    """`llm`'s managed server, generating an answer meanwhile (one that must still arrive)."""
    client = LLMClient(Backend(parse_backend(llm)), retry=FAST_RETRY)
    client.backend.start()
    asked = _in_background(lambda: client.complete("keep it busy"))
    time.sleep(0.5)
    yield client.backend.servers[0].state()
    asked["thread"].join(30)
    assert asked.get("result") == "ok", asked.get("error")


def test_a_busy_server_counts_as_healthy(busy_llama: str) -> None:
    with _generating(busy_llama) as state:
        started = time.monotonic()
        assert is_healthy(state)  # what `societas llm status` shows, and what `ensure` asks
        assert time.monotonic() - started < 1.0


def test_a_held_port_is_refused_before_the_running_server_is_stopped(busy_llama: str) -> None:
    running = ManagedServer(vllm_launch("stand-in-llama")).ensure()
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} is already in use"):
            ManagedServer(vllm_launch("stand-in-llama"), port=port).ensure()

    assert is_healthy(running)
    assert ManagedServer(vllm_launch("stand-in-llama")).state() == running


def test_a_busy_server_is_not_moved_to_another_port(busy_llama: str) -> None:
    with _generating(busy_llama) as running:
        with pytest.raises(ConfigError, match=f"already runs on port {running.port}, busy"):
            ManagedServer(vllm_launch("stand-in-llama"), port=free_port()).ensure()


def test_a_silent_server_is_kept_while_a_request_is_in_flight(stand_in_vllm: str, monkeypatch) -> None:
    monkeypatch.setenv("SOCIETAS_LLM_STALE_SECONDS", "1")
    server = ManagedServer(vllm_launch(stand_in_vllm))
    mute, state = mute_watchdog(server, stand_in_vllm)

    with server.in_flight(state):  # a command waits on a long answer from it
        assert server.ensure().pid == mute.pid

    started = time.monotonic()
    fresh = server.ensure()  # nothing in flight: replaced after the stated silence
    assert fresh.pid != mute.pid and is_healthy(fresh)
    assert time.monotonic() - started >= 1.0
    assert mute.wait(10) is not None


def test_a_server_that_accepts_and_never_answers_fails_fast_in_one_line(monkeypatch) -> None:
    monkeypatch.setenv("SOCIETAS_LLM_FIRST_BYTE_TIMEOUT", "1")
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(16)  # the kernel accepts connections; nothing ever reads or answers
        url = f"http://127.0.0.1:{mute.getsockname()[1]}/v1"
        client = LLMClient(Backend(parse_backend(url)))  # the default timeout (120 s) and retries
        started = time.monotonic()
        asked = _in_background(lambda: client.complete("hi"))
        asked["thread"].join(10)
        elapsed = time.monotonic() - started

    error = asked.get("error")
    assert isinstance(error, LLMUnavailable), asked
    assert elapsed < 5.0
    assert "accepted the connection but answered nothing within 1 s" in str(error)
    assert "\n" not in str(error) and "SOCIETAS_LLM_FIRST_BYTE_TIMEOUT" in error.hint


def test_a_server_that_hangs_mid_run_fails_at_the_next_retry(monkeypatch) -> None:
    monkeypatch.setenv("SOCIETAS_LLM_FIRST_BYTE_TIMEOUT", "0.5")
    with ScriptedOpenAIServer() as server:
        client = client_for(server.url, timeout=0.5)
        client.complete("first")
        monkeypatch.setattr(server._httpd.RequestHandlerClass, "do_GET", lambda handler: time.sleep(2))  # /health too
        server.default = hang(2.0)
        started = time.monotonic()
        with pytest.raises(LLMUnavailable, match="answered nothing within 0.5 s"):
            client.complete("second")
        assert time.monotonic() - started < 2.5  # one request timeout and one probe, not every retry


def test_the_journal_counts_every_request_across_clients(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SOCIETAS_LLM_JOURNAL", str(tmp_path / "journal"))
    with ScriptedOpenAIServer() as server:
        server.push(http_error(500), reply("ok"))
        client_for(server.url).complete("retried once")
        server.default = http_error(503)
        with pytest.raises(LLMUnavailable):
            client_for(server.url).complete("lost")

    totals = dict.fromkeys(("sent", "requests", "retries", "lost"), 0)
    for path in (tmp_path / "journal").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            for name in totals:
                totals[name] += json.loads(line).get(name, 0)
    assert totals == {"sent": 2 + FAST_RETRY.attempts, "requests": 1, "retries": FAST_RETRY.attempts, "lost": 1}
