"""The report's reproduce line is safe to paste into a shell and reproduces the whole topic; a topic can
come from a file or stdin (a long one cannot pass as an argument)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from researcher.cli import read_topic
from researcher.state import MAX_TOPIC_CHARS
from researcher.writing import research_command
from societas.errors import SocietasError

HOSTILE = "Does `touch BACKTICK` spread $(touch DOLLAR) faster; touch SEMI ' \" \\ when $HOME is near?"
CONFIG = {"seeds": 3, "agents": 200, "steps": 40, "llm": "http://x:1/v1", "review_rounds": 1}


def command_for(topic: str, run_dir: Path) -> str:
    return research_command(SimpleNamespace(topic=topic, config=CONFIG, run_dir=run_dir))


def argv_in_a_shell(command: str, cwd: Path) -> list[str]:
    """What a shell passes to `societas` when the line is pasted (societas replaced by a printer)."""
    assert command.startswith("societas research ")
    printer = "printf '%s\\0' " + command.removeprefix("societas ")
    out = subprocess.run(["bash", "-c", printer], capture_output=True, text=True, cwd=cwd, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.split("\0")[:-1]


def the_topic(argv: list[str], cwd: Path) -> str:
    if "--topic-file" in argv:
        return (cwd / argv[argv.index("--topic-file") + 1]).read_text(encoding="utf-8")
    return argv[1]


@pytest.mark.parametrize("topic", [HOSTILE, "Short and plain?", "Wörter über Meinungen – 意見は分かれるか?"])
def test_pasting_the_reproduce_line_runs_no_code_and_passes_the_topic_unchanged(topic, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "topic.txt").write_text(topic, encoding="utf-8")
    argv = argv_in_a_shell(command_for(topic, Path("run")), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing touched
    assert the_topic(argv, tmp_path) == topic
    assert argv[argv.index("--seeds") + 1] == "3" and argv[argv.index("--llm") + 1] == "http://x:1/v1"


def test_the_reproduce_line_keeps_a_long_topic_whole_through_the_run_folder(tmp_path):
    topic = " ".join(["Does tolerance matter?"] * 86)  # 1,977 characters: the run used them all
    assert 1000 < len(topic) <= MAX_TOPIC_CHARS
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "topic.txt").write_text(topic, encoding="utf-8")
    command = command_for(topic, Path("run"))
    assert "`" not in command and len(command) < 400  # it fits a Markdown code span and a line
    assert the_topic(argv_in_a_shell(command, tmp_path), tmp_path) == topic


def test_read_topic_from_a_file_from_stdin_and_not_both(tmp_path, monkeypatch):
    big = "Why do rumours stop? " * 10_000  # 210 KB: more than one argument may carry
    path = tmp_path / "topic.txt"
    path.write_text(big, encoding="utf-8")
    assert read_topic(None, path) == big
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(read=lambda: "From stdin?"))
    assert read_topic(None, Path("-")) == "From stdin?"
    assert read_topic("An argument?", None) == "An argument?"
    with pytest.raises(SocietasError, match="--topic-file"):
        read_topic("An argument?", path)
    with pytest.raises(SocietasError, match="cannot read"):
        read_topic(None, tmp_path / "missing.txt")


def test_research_reads_a_200_kb_topic_from_stdin(tmp_path):
    """Through the CLI. The run stops before any model runs: an empty topic is refused first, a read one
    gets as far as the (occupied) --out folder, so the message tells which happened."""
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("x")

    def research(stdin: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "societas.cli", "research", "--topic-file", "-",
                               "--out", str(occupied)], input=stdin, capture_output=True, text=True, timeout=120)

    read = research("Why do rumours stop spreading? " * 7000)
    assert read.returncode == 2 and "Traceback" not in read.stderr
    assert "not empty" in read.stderr, read.stderr
    empty = research("  \n")
    assert empty.returncode == 2 and "topic is empty" in empty.stderr, empty.stderr
