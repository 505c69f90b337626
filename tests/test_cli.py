"""How the `societas` console script leaves after Ctrl-C."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

# A node still running in a worker thread when Ctrl-C reaches the main thread: the CLI must
# not wait for it (with a slow model that wait was minutes, and a second Ctrl-C in it crashed).
SCRIPT = textwrap.dedent(
    """
    import threading, time
    import societas.cli as cli

    def interrupted_main(argv=None):
        threading.Thread(target=time.sleep, args=(60,)).start()  # non-daemon, like a pool worker
        return 130

    cli.main = interrupted_main
    cli.entry()
    """
)


def test_ctrl_c_exits_at_once_even_with_a_worker_thread_still_busy():
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=50)
    assert done.returncode == 130, done.stderr
    assert time.monotonic() - t0 < 30


def test_other_exit_codes_pass_through():
    script = "import societas.cli as cli\ncli.main = lambda argv=None: 3\ncli.entry()"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50)
    assert done.returncode == 3, done.stderr


def test_version_names_the_installed_distribution():
    from importlib.metadata import version

    done = subprocess.run([sys.executable, "-m", "societas.cli", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"societas {version('societas')}"
