"""`python -m llms.watchdog --state FILE --idle S -- CMD...`: keeps a model server alive while used.

The CLI exits after each command but the server should survive it (loading a model costs
seconds to minutes), so `llms.server` starts this watchdog detached, in its own session.
The watchdog runs the server as its child and stops it when
- the state file has not been touched (clients touch it on use) for `--idle` seconds,
- the state file disappears or names another process (`llm stop`, or a replacement), or
- it receives SIGTERM/SIGINT.
It exits with the server's code when the server dies on its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("llms.watchdog")


def _read_state(state_path: Path) -> tuple[int | None, bool]:
    """(the pid the state file names, whether the server was seen ready)."""
    try:
        state = json.loads(state_path.read_text())
        return int(state["pid"]), bool(state.get("ready"))
    except (OSError, ValueError, KeyError, TypeError):
        return None, False


def _last_used(state_path: Path, default: float) -> float:
    try:
        return state_path.stat().st_mtime
    except OSError:
        return default


def _stop(child: subprocess.Popen, grace: float = 10.0) -> None:
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(grace)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def watch(argv: list[str], state_path: Path, idle_seconds: float, claim_timeout: float) -> int:
    """Run `argv` until idle, replaced or told to stop; returns the exit code."""
    stopping = False

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    started = time.time()
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    log.info("started server pid %d (watchdog pid %d)", child.pid, os.getpid())
    claimed = False  # the launcher writes the state file just after starting us
    poll = 0.2
    while not stopping:
        code = child.poll()
        if code is not None:
            log.warning("server exited with code %s", code)
            return code
        owner, ready = _read_state(state_path)
        if owner == os.getpid():
            claimed = True
        elif claimed or time.time() - started > claim_timeout:
            log.info("state file %s no longer names this server; stopping", state_path)
            break
        if ready and idle_seconds > 0 and time.time() - _last_used(state_path, started) > idle_seconds:
            log.info("idle for %.0f s; stopping", idle_seconds)
            break
        time.sleep(poll)
        poll = min(poll * 1.5, 2.0)
    _stop(child)
    if _read_state(state_path)[0] == os.getpid():
        state_path.unlink(missing_ok=True)
    return 0


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llms.watchdog")
    parser.add_argument("--state", required=True, type=Path)
    parser.add_argument("--idle", type=float, default=0.0, help="seconds unused before stopping; 0 = never")
    parser.add_argument("--claim-timeout", type=float, default=60.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    ns = parser.parse_args(args)
    command = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    if not command:
        parser.error("no server command given after --")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s watchdog: %(message)s")
    return watch(command, ns.state, ns.idle, ns.claim_timeout)


if __name__ == "__main__":
    sys.exit(main())
