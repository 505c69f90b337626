"""Run folders are safe to point at: a command that writes a run refuses a non-empty folder it did not
create and system folders; a run's identity lives inside its folder, so a moved or copied run still
resumes, regenerates and reviews; a corrupt manifest is a one-line error, and `runs` shows it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from reports.human import HumanFeedback
from reports.versions import saved_versions
from researcher.runner import regenerate, resume, review, start
from researcher.state import ResearchConfig
from societas.errors import SocietasError
from societas.runs import RunFolder
from tests.doubles.schema_server import SchemaAwareServer

TOPIC = "Why do neighbourhoods become divided even when residents are fairly tolerant?"


def societas(*args, cwd=None, stdin=None):
    return subprocess.run([sys.executable, "-m", "societas.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, input=stdin)


def a_users_folder(tmp_path: Path) -> tuple[Path, bytes]:
    """A folder of someone else's files, one of them named as a run's manifest."""
    folder = tmp_path / "mine"
    folder.mkdir()
    theirs = b'{"my": "own manifest"}\n'
    (folder / "manifest.json").write_bytes(theirs)
    (folder / "notes.txt").write_text("keep me")
    return folder, theirs


def one_line_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    return lines[0]


# --- refusing folders --------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [("simulate", "SPEC"), ("scenarios", "run", "voter")])
def test_simulator_commands_refuse_a_non_empty_folder_and_leave_it_untouched(command, tmp_path):
    spec = tmp_path / "voter.yaml"
    spec.write_text(societas("scenarios", "show", "voter", "--yaml").stdout)
    folder, theirs = a_users_folder(tmp_path)
    args = [str(spec) if a == "SPEC" else a for a in command]
    line = one_line_error(societas(*args, "--agents", "20", "--steps", "2", "--seeds", "1", "--local",
                                   "--out", str(folder)))
    assert "not empty" in line and "--out" in line
    assert (folder / "manifest.json").read_bytes() == theirs
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "notes.txt"]


def test_research_refuses_a_non_empty_folder_that_is_not_a_run(tmp_path):
    folder, theirs = a_users_folder(tmp_path)
    (folder / "manifest.json").unlink()
    with pytest.raises(SocietasError, match="not empty"):
        start(TOPIC, ResearchConfig(seeds=2, use_ray=False), out=folder)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_an_empty_or_new_folder_is_accepted(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert RunFolder.claim(empty).path == empty
    assert (RunFolder.claim(tmp_path / "a" / "b").path / "data").is_dir()


@pytest.mark.parametrize("path", ["/", "/etc", "/usr/local/societas-run", "/boot/x", "/proc/self/x", "/var/lib/x"])
def test_system_folders_are_refused_before_anything_is_written(path):
    with pytest.raises(SocietasError, match="system folder"):
        RunFolder.claim(Path(path))
    assert not Path(path).exists() or path in ("/", "/etc")


@pytest.mark.parametrize("make", ["file", "under_a_file"])
def test_simulate_at_an_unwritable_out_is_one_line(make, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker if make == "file" else blocker / "run"
    line = one_line_error(societas("scenarios", "run", "voter", "--agents", "20", "--steps", "2", "--seeds", "1",
                                   "--local", "--out", str(out)))
    assert str(out) in line


def test_an_existing_folder_without_write_permission_is_one_line(tmp_path, monkeypatch, capsys):
    """As a user without write permission sees it (emulated: the tests may run as root, who can write anywhere)."""
    import tempfile

    from societas.cli import main

    locked = tmp_path / "locked"
    locked.mkdir()
    real_mkdir, real_mkstemp = Path.mkdir, tempfile.mkstemp

    def mkdir(self, *args, **kw):
        if self.parent == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kw)

    def mkstemp(*args, dir=None, **kw):
        if dir is not None and Path(dir) == locked:
            raise PermissionError(13, "Permission denied", str(dir))
        return real_mkstemp(*args, dir=dir, **kw)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    code = main(["scenarios", "run", "voter", "--agents", "20", "--steps", "2", "--seeds", "1", "--local",
                 "--out", str(locked)])
    assert code == 2
    assert "permission denied" in capsys.readouterr().err.lower()
    assert list(locked.iterdir()) == []


# --- a corrupt manifest ------------------------------------------------------------------------------

def test_resume_of_a_run_with_a_corrupt_manifest_is_one_line_and_runs_lists_it(tmp_path):
    run = tmp_path / "runs" / "20260101-000000-broken"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text('{"topic": "half a fi')
    (run / "checkpoints.sqlite").write_bytes(b"")
    line = one_line_error(societas("resume", str(run)))
    assert "manifest.json" in line and "corrupt" in line
    listed = json.loads(societas("runs", "--root", str(tmp_path / "runs"), "--json").stdout)
    assert [(r["run"], r["status"]) for r in listed] == [("20260101-000000-broken", "unreadable manifest")]


def test_review_of_a_missing_folder_says_it_is_missing(tmp_path):
    line = one_line_error(societas("review", str(tmp_path / "no" / "such" / "dir"), "--approve"))
    assert "invalid run id" not in line and "no run folder" in line


# --- a run's identity lives in its folder ------------------------------------------------------------

@pytest.fixture(scope="module")
def server():
    with SchemaAwareServer() as s:
        yield s


def small_config(server) -> ResearchConfig:
    return ResearchConfig(llm=server.url, seeds=2, agents=100, steps=15, review_rounds=0, use_ray=False,
                          max_extra_seed_rounds=0)


def quiet() -> tuple[Console, StringIO]:
    buf = StringIO()
    return Console(file=buf, width=300), buf


def test_a_moved_run_waiting_for_review_is_reviewed_not_called_complete(server, tmp_path, monkeypatch):
    monkeypatch.setenv("SOCIETAS_CACHE_DIR", str(tmp_path / "cache"))
    first = tmp_path / "first"
    start(TOPIC, small_config(server), out=first, console=quiet()[0], feedback=lambda request: None)
    assert json.loads((first / "manifest.json").read_text())["status"] == "awaiting review"
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    shutil.move(first, moved)
    console, buf = quiet()
    resume(moved, console=console)
    assert "already complete" not in buf.getvalue()
    assert "waiting for your review" in buf.getvalue()
    review(moved, lambda request: HumanFeedback(approve=True, source="test"), console=quiet()[0])
    manifest = json.loads((moved / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["final_version"] == 1


def test_a_copied_finished_run_regenerates_in_the_copy_only(server, tmp_path, monkeypatch):
    monkeypatch.setenv("SOCIETAS_CACHE_DIR", str(tmp_path / "cache"))
    original = tmp_path / "original"
    start(TOPIC, small_config(server), out=original, console=quiet()[0])
    copy = tmp_path / "copy"
    shutil.copytree(original, copy, symlinks=True)  # as `cp -r` copies: report/final stays a link
    regenerate(copy, start_from="write", console=quiet()[0])
    assert list(saved_versions(copy)) == [1, 2]
    assert list(saved_versions(original)) == [1]
