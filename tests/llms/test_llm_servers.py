"""Managed servers: the vllm lifecycle on a stand-in executable, reuse, stale state, idle stop."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from llms.backends import parse_backend
from llms.cli import app
from llms.endpoints import Backend
from llms.errors import ConfigError
from llms.server import ManagedServer, ServerState, answers, free_port, is_healthy, requests_in_flight, servers_dir
from llms.vllm import vllm_launch
from tests.llms.llm_testing import FAST_RETRY, Decision, mute_watchdog


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


def test_vllm_server_starts_becomes_ready_serves_and_stops(stand_in_vllm: str, monkeypatch) -> None:
    monkeypatch.setenv("STAND_IN_STARTUP_DELAY", "0.5")  # readiness must wait for the "model load"
    from llms.client import LLMClient

    client = LLMClient(Backend(parse_backend(f"vllm:{stand_in_vllm}")), retry=FAST_RETRY)
    assert client.complete("decide", schema=Decision).action == "move"

    [server] = client.backend.servers
    state = server.state()
    assert state is not None and is_healthy(state)
    assert state.model == stand_in_vllm

    assert server.stop()
    assert _wait_gone(state.pid)
    assert not answers(state.port, timeout=0.5)
    assert server.state() is None


def test_client_restarts_a_server_stopped_under_it(stand_in_vllm: str) -> None:
    from llms.client import LLMClient

    client = LLMClient(Backend(parse_backend(f"vllm:{stand_in_vllm}")), retry=FAST_RETRY)
    client.complete("before")
    [server] = client.backend.servers
    old = server.state()
    server.stop()  # `societas llm stop` from another terminal, or the idle watchdog

    assert client.complete("after") == '{"action": "move", "reason": "stand-in"}'
    assert server.state().pid != old.pid
    assert client.accounting.usage("researcher").retries == 1


def test_running_server_is_reused_by_the_next_command(stand_in_vllm: str) -> None:
    first = ManagedServer(vllm_launch(stand_in_vllm)).ensure()
    second = ManagedServer(vllm_launch(stand_in_vllm)).ensure()  # as another CLI process would
    assert (second.pid, second.port) == (first.pid, first.port)


def test_state_with_a_dead_pid_is_replaced(stand_in_vllm: str) -> None:
    server = ManagedServer(vllm_launch(stand_in_vllm))
    stale = ServerState(
        key=server.launch.key, kind="vllm", name="old", model=stand_in_vllm,
        pid=_dead_pid(), port=free_port(), log="", started_at=0.0,
    )  # fmt: skip
    stale.write(server.state_path)

    fresh = server.ensure()
    assert fresh.pid != stale.pid and is_healthy(fresh)


def test_state_whose_port_does_not_answer_is_replaced_and_its_process_stopped(stand_in_vllm: str, monkeypatch) -> None:
    monkeypatch.setenv("SOCIETAS_LLM_STALE_SECONDS", "1")  # how long a silent, idle server gets
    server = ManagedServer(vllm_launch(stand_in_vllm))
    mute, _ = mute_watchdog(server, stand_in_vllm)

    fresh = server.ensure()
    assert fresh.pid != mute.pid and is_healthy(fresh)
    assert mute.wait(10) is not None


def test_a_request_marker_counts_only_while_its_process_lives(tmp_path: Path) -> None:
    state = ServerState(key="k", kind="vllm", name="n", model="m", pid=4242, port=1, log="", started_at=0.0)
    server_state = tmp_path / "k.json"
    markers = tmp_path / "k.busy"
    markers.mkdir()
    (markers / f"{_dead_pid()}-4242").touch()  # a command killed mid-request
    (markers / "1-4242").touch()  # init: alive
    (markers / "1-999").touch()  # alive, but on an earlier server

    assert requests_in_flight(server_state, state) == 1
    assert sorted(p.name for p in markers.iterdir()) == ["1-4242", "1-999"]


def test_idle_server_stops_itself(stand_in_vllm: str) -> None:
    server = ManagedServer(vllm_launch(stand_in_vllm), idle_seconds=1.0)
    state = server.ensure()
    assert _wait_gone(state.pid, seconds=10)
    assert server.state() is None


def test_requested_port_in_use_is_a_user_error(stand_in_vllm: str, monkeypatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} is already in use"):
            ManagedServer(vllm_launch(stand_in_vllm), port=port).ensure()
        monkeypatch.setenv("SOCIETAS_LLM_PORT", str(port))
        with pytest.raises(ConfigError, match="already in use"):
            ManagedServer(vllm_launch(stand_in_vllm)).ensure()


def test_requested_free_port_is_used(stand_in_vllm: str) -> None:
    port = free_port()
    assert ManagedServer(vllm_launch(stand_in_vllm), port=port).ensure().port == port


def test_unwritable_cache_dir_is_a_user_error(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SOCIETAS_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(ConfigError, match="cannot write to the cache folder") as caught:
        servers_dir()
    assert "SOCIETAS_CACHE_DIR" in caught.value.hint


def test_missing_vllm_is_a_user_error(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="vllm is not installed"):
        vllm_launch("some/model")


def test_cli_status_and_stop(stand_in_vllm: str) -> None:
    state = ManagedServer(vllm_launch(stand_in_vllm)).ensure()
    runner = CliRunner()

    status = runner.invoke(app, ["status"])
    assert status.exit_code == 0 and f"vllm:{stand_in_vllm}" in status.output and "healthy" in status.output

    stop = runner.invoke(app, ["stop"])
    assert stop.exit_code == 0 and "stopped" in stop.output
    assert _wait_gone(state.pid)
    assert "no local LLM server" in runner.invoke(app, ["status"]).output
