"""Model servers this package starts itself (embedded llama.cpp, `vllm serve`), reused across commands.

A server is identified by a key (its kind and what it serves). Its state file
`<cache>/servers/<key>.json` (pid, port, model) says where a running one listens; a file
lock serialises start-up across processes, so two commands never start the same server
twice. The process is a detached `llms.watchdog` that owns the server and stops it when
idle (`SOCIETAS_LLM_IDLE_SECONDS`, default 30 min) or on `societas llm stop`.

Liveness never asks the model: llama-cpp-python answers nothing that needs the model (its
`/v1/models` included) while it generates. A server is alive while its process is and either
its HTTP loop answers (`llms.health.probe`) or some command has a request in flight on it
(one marker file per client process in `<key>.busy/`, see `ManagedServer.in_flight`). It is
replaced only when its process is gone, or when it has answered nothing for
`SOCIETAS_LLM_STALE_SECONDS` (default 60) with no request in flight. A requested port is
checked before anything is stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import platformdirs
import psutil
from filelock import FileLock, Timeout

from llms.errors import ConfigError, LLMUnavailable, one_line
from llms.health import Probe, probe

log = logging.getLogger(__name__)

DEFAULT_IDLE_SECONDS = 1800.0
DEFAULT_STALE_SECONDS = 60.0
# A request marker untouched this long belongs to a frozen client: every request ends (answered
# or timed out, SOCIETAS_LLM_TIMEOUT) well within it, and each one that starts or ends touches it.
MARKER_MAX_AGE_S = 3600.0
HOST = "127.0.0.1"
PORT_PLACEHOLDER = "{port}"


def cache_dir() -> Path:
    """`SOCIETAS_CACHE_DIR`, else the user cache dir (e.g. ~/.cache/societas)."""
    return Path(os.environ.get("SOCIETAS_CACHE_DIR") or platformdirs.user_cache_dir("societas"))


def servers_dir(root: Path | None = None) -> Path:
    path = (root or cache_dir()) / "servers"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-probe-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot write to the cache folder {path}: {exc.strerror or exc}",
            hint="set SOCIETAS_CACHE_DIR to a writable folder",
        ) from exc
    return path


def requested_port(port: int | None = None) -> int | None:
    """An explicit `--port`, else `SOCIETAS_LLM_PORT`, else None (pick a free one)."""
    if port is not None:
        return port
    value = os.environ.get("SOCIETAS_LLM_PORT")
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"SOCIETAS_LLM_PORT={value!r} is not a port number", hint="set it to e.g. 8765") from None


@dataclass(frozen=True)
class ServerLaunch:
    """How to start one kind of server; `argv` holds `{port}` where the port goes."""

    kind: str
    name: str  # for messages: "embedded (SmolLM2-135M-Instruct-Q8_0.gguf)"
    model: str  # the model id clients request
    identity: Mapping[str, Any]  # what makes two servers interchangeable
    argv: tuple[str, ...]
    start_timeout: float = 120.0
    env: Mapping[str, str | None] = field(default_factory=dict)  # None removes a variable

    @property
    def key(self) -> str:
        digest = hashlib.sha256(json.dumps(dict(self.identity), sort_keys=True).encode()).hexdigest()
        return f"{self.kind}-{digest[:12]}"

    def command(self, port: int) -> list[str]:
        return [arg.replace(PORT_PLACEHOLDER, str(port)) for arg in self.argv]


@dataclass(frozen=True)
class ServerState:
    """What the state file records about a running server."""

    key: str
    kind: str
    name: str
    model: str
    pid: int
    port: int
    log: str
    started_at: float
    ready: bool = False  # the watchdog starts its idle clock only once this is true

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @classmethod
    def read(cls, path: Path) -> "ServerState | None":
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable server state %s: %s", path, exc)
            return None

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)


def answers(port: int, timeout: float = 2.0) -> bool:
    """Does an OpenAI-compatible server answer `GET /v1/models` on this port?"""
    try:
        return httpx.get(f"http://{HOST}:{port}/v1/models", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _process(state: ServerState) -> psutil.Process | None:
    """The state's watchdog process, if it is alive and really ours (pids get reused)."""
    try:
        proc = psutil.Process(state.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return proc if "llms.watchdog" in cmdline and any(state.key in arg for arg in cmdline) else None


def is_healthy(state: ServerState) -> bool:
    """Its process lives and its HTTP loop answers (true while it generates, unlike `answers`)."""
    return _process(state) is not None and probe(state.base_url) is Probe.ANSWERS


# -- requests in flight: one marker file per client process and server ----------------------

_in_flight_counts: dict[Path, int] = {}
_in_flight_lock = threading.Lock()


def _markers_dir(state_path: Path) -> Path:
    return state_path.with_suffix(".busy")


@contextmanager
def _in_flight(state_path: Path, state: ServerState) -> Iterator[None]:
    """Marks one request of this process in flight on `state`'s server (so no one replaces it)."""
    marker = _markers_dir(state_path) / f"{os.getpid()}-{state.pid}"
    with _in_flight_lock:
        _in_flight_counts[marker] = _in_flight_counts.get(marker, 0) + 1
        _touch(marker)
    try:
        yield
    finally:
        with _in_flight_lock:
            count = _in_flight_counts.pop(marker) - 1
            if count:
                _in_flight_counts[marker] = count
                _touch(marker)
            else:
                marker.unlink(missing_ok=True)


def _touch(marker: Path) -> None:
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass  # an unwritable cache folder: the request still runs, only unprotected


def requests_in_flight(state_path: Path, state: ServerState) -> int:
    """How many live client processes have a request in flight on `state`'s server."""
    now = time.time()
    count = 0
    for marker in _markers_dir(state_path).glob(f"*-{state.pid}"):
        try:
            touched = marker.stat().st_mtime
            client_started = psutil.Process(int(marker.name.partition("-")[0])).create_time()
        except (psutil.NoSuchProcess, ValueError):
            marker.unlink(missing_ok=True)  # its process died mid-request
            continue
        except (psutil.AccessDenied, OSError):
            continue
        if client_started <= touched and now - touched < MARKER_MAX_AGE_S:  # not a reused pid, not frozen
            count += 1
    return count


def terminate(state: ServerState, grace: float = 15.0) -> bool:
    """Stop a server's watchdog and everything in its process group; True if one was running."""
    proc = _process(state)
    if proc is None:
        return False
    try:
        os.killpg(state.pid, signal.SIGTERM)  # the watchdog leads its own session
    except ProcessLookupError:
        return False
    except PermissionError:
        proc.terminate()
    gone, alive = psutil.wait_procs([proc], timeout=grace)
    if alive:
        log.warning("server %s (pid %d) ignored SIGTERM; killing it", state.name, state.pid)
        try:
            os.killpg(state.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        psutil.wait_procs(alive, timeout=5)
    return True


class ManagedServer:
    """One server this package starts on demand and shares between processes."""

    def __init__(
        self,
        launch: ServerLaunch,
        *,
        port: int | None = None,
        idle_seconds: float | None = None,
        root: Path | None = None,
    ) -> None:
        self.launch = launch
        self.port = requested_port(port)
        env_idle = os.environ.get("SOCIETAS_LLM_IDLE_SECONDS")
        self.idle_seconds = idle_seconds if idle_seconds is not None else float(env_idle or DEFAULT_IDLE_SECONDS)
        self.stale_seconds = float(os.environ.get("SOCIETAS_LLM_STALE_SECONDS") or DEFAULT_STALE_SECONDS)
        self._root = root
        self._last_touch = 0.0

    @property
    def _dir(self) -> Path:
        return servers_dir(self._root)

    @property
    def state_path(self) -> Path:
        return self._dir / f"{self.launch.key}.json"

    @property
    def log_path(self) -> Path:
        return self._dir / f"{self.launch.key}.log"

    def state(self) -> ServerState | None:
        return ServerState.read(self.state_path)

    def ensure(self) -> ServerState:
        """A live server: the running one (busy or not), else a freshly started one."""
        lock = FileLock(str(self._dir / f"{self.launch.key}.lock"), timeout=self.launch.start_timeout + 60)
        try:
            with lock:
                state = self.state()
                moving = self.port is not None and (state is None or state.port != self.port)
                if moving:
                    self._check_port_free()  # before anything is stopped
                if state is not None:
                    if not moving and self._alive(state):
                        self.touch(force=True)
                        return state
                    if moving and requests_in_flight(self.state_path, state):
                        raise ConfigError(
                            f"{self.launch.name} already runs on port {state.port}, busy with another command",
                            hint=f"use port {state.port} (or leave --port and SOCIETAS_LLM_PORT unset), "
                            "or wait for that command to finish",
                        )
                    log.info("replacing server state %s (pid %d, port %d)", self.state_path, state.pid, state.port)
                    terminate(state)
                    self.state_path.unlink(missing_ok=True)
                return self._start()
        except Timeout:
            raise LLMUnavailable(
                f"{self.launch.name}: another process has been starting this server for too long",
                hint=f"check {self.log_path}, or run `societas llm stop`",
            ) from None

    def _alive(self, state: ServerState) -> bool:
        """Its process lives, and it answers or has a request in flight; a silent, idle server
        gets `stale_seconds` to answer before it counts as dead."""
        deadline = time.monotonic() + self.stale_seconds
        while _process(state) is not None:
            if probe(state.base_url) is Probe.ANSWERS or requests_in_flight(self.state_path, state):
                return True
            if time.monotonic() >= deadline:
                log.warning(
                    "%s (pid %d) answered nothing for %.0f s with no request in flight; replacing it",
                    self.launch.name, state.pid, self.stale_seconds,
                )  # fmt: skip
                return False
            time.sleep(min(1.0, self.stale_seconds / 4))
        return False

    def _check_port_free(self) -> None:
        if not port_free(self.port):
            raise ConfigError(
                f"port {self.port} is already in use",
                hint="choose another with --port or SOCIETAS_LLM_PORT, or leave both unset to pick a free port",
            )

    def in_flight(self, state: ServerState) -> AbstractContextManager[None]:
        """Around one request to `state`'s server: no command replaces it meanwhile."""
        return _in_flight(self.state_path, state)

    def _start(self) -> ServerState:
        if self.port is not None:
            self._check_port_free()
        port = self.port if self.port is not None else free_port()
        watchdog = [
            sys.executable, "-m", "llms.watchdog",
            "--state", str(self.state_path),
            "--idle", str(self.idle_seconds),
            "--claim-timeout", str(self.launch.start_timeout + 30),
            "--", *self.launch.command(port),
        ]  # fmt: skip
        env = {**os.environ}
        for name, value in self.launch.env.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        log.info("starting %s on port %d (log: %s)", self.launch.name, port, self.log_path)
        with open(self.log_path, "ab") as log_file:
            proc = subprocess.Popen(
                watchdog,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the CLI exiting and its Ctrl-C
                env=env,
            )
        state = ServerState(
            key=self.launch.key,
            kind=self.launch.kind,
            name=self.launch.name,
            model=self.launch.model,
            pid=proc.pid,
            port=port,
            log=str(self.log_path),
            started_at=time.time(),
        )
        state.write(self.state_path)
        self._wait_ready(proc, state)
        state = replace(state, ready=True)
        state.write(self.state_path)
        return state

    def _wait_ready(self, proc: subprocess.Popen, state: ServerState) -> None:
        deadline = time.monotonic() + self.launch.start_timeout
        delay = 0.05
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.state_path.unlink(missing_ok=True)
                raise LLMUnavailable(
                    f"{self.launch.name} exited during start-up (code {proc.returncode}): {self._log_tail()}",
                    hint=f"see {self.log_path}",
                )
            if answers(state.port, timeout=1.0):
                log.info("%s ready on port %d", self.launch.name, state.port)
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        terminate(state)
        proc.wait(5)
        self.state_path.unlink(missing_ok=True)
        raise LLMUnavailable(
            f"{self.launch.name} did not become ready within {self.launch.start_timeout:.0f} s",
            hint=f"see {self.log_path}; raise SOCIETAS_LLM_START_TIMEOUT for large models",
        )

    def _log_tail(self) -> str:
        try:
            lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return "no log"
        return one_line(lines[-1] if lines else "no output")

    def touch(self, *, force: bool = False) -> None:
        """Tell the watchdog the server is in use (throttled: at most every 5 s)."""
        now = time.monotonic()
        if not force and now - self._last_touch < 5.0:
            return
        self._last_touch = now
        try:
            os.utime(self.state_path)
        except OSError:
            pass  # stopped meanwhile; the next failed request re-ensures it

    def stop(self) -> bool:
        """Stop this server if it runs; True if one was stopped."""
        state = self.state()
        if state is None:
            return False
        stopped = terminate(state)
        self.state_path.unlink(missing_ok=True)
        return stopped


def list_servers(root: Path | None = None) -> list[tuple[ServerState, bool]]:
    """Every recorded server with whether it is healthy now."""
    result = []
    for path in sorted(servers_dir(root).glob("*.json")):
        state = ServerState.read(path)
        if state is not None:
            result.append((state, is_healthy(state)))
    return result


def stop_all(root: Path | None = None) -> list[ServerState]:
    """Stop every recorded server (stale state files are removed too); returns those stopped."""
    stopped = []
    for path in sorted(servers_dir(root).glob("*.json")):
        state = ServerState.read(path)
        if state is not None and terminate(state):
            stopped.append(state)
        path.unlink(missing_ok=True)
    return stopped
