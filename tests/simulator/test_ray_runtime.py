"""Ray's local instance goes away with the command that started it."""

import subprocess
import sys
import time

import psutil


def _agents() -> set[int]:
    found = set()
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if cmd and cmd[0] in ("ray::DashboardAgent", "ray::RuntimeEnvAgent"):
            found.add(p.pid)
    return found


def test_a_command_leaves_no_ray_agents_behind(tmp_path):
    """Seen before: `ray::DashboardAgent` and `ray::RuntimeEnvAgent` orphaned for 2-3 minutes
    after every run."""
    before = _agents()
    done = subprocess.run([sys.executable, "-m", "societas.cli", "scenarios", "run", "voter", "--agents", "100",
                           "--steps", "3", "--seeds", "1", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 10
    while (left := _agents() - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"Ray agents still running after the command ended: {sorted(left)}"
