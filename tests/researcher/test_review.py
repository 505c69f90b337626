"""`societas review` and `research --interactive`: a person approves or comments per section; only the
commented sections are revised, the checks re-run, and the new version keeps the comments beside it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from reports.human import HumanFeedback
from reports.versions import saved_versions
from researcher.runner import start
from researcher.state import ResearchConfig
from researcher.writing import PROSE_LINE
from tests.doubles.schema_server import SchemaAwareServer
from tests.doubles.scripted_openai_server import reply

TOPIC = "Do more frequent audits reduce tax evasion?"
COMMENTS = "## results\nDiscuss the size of the effect more carefully.\n\n## Discussion\nAdd the caveats of a toy model.\n"


class RevisingServer(SchemaAwareServer):
    """Answers a revision request with a plausible revision that cites a fact (one that copied the
    comment back would be an echo, which the prose gate drops)."""

    def _next_step(self, body):
        text = body["messages"][-1]["content"]
        asked = re.search(r"Reviewer comment to address: (.+?)\n\nWrite the revised section", text, re.S)
        if asked:  # the comment's last word tells one revision from the next, and echoes nothing
            return reply(f"Revised as asked, citing {{{{F1}}}} on {re.findall(r'[a-z]+', asked.group(1).lower())[-1]}.")
        return super()._next_step(body)


@pytest.fixture(scope="module")
def server():
    with RevisingServer() as s:
        yield s


def finished_run(server, out: Path, **kw) -> Path:
    config = ResearchConfig(**(dict(llm=server.url, seeds=2, agents=100, steps=10, review_rounds=1, use_ray=False,
                                    max_extra_seed_rounds=0) | kw))
    return start(TOPIC, config, out=out, console=Console(file=StringIO())).path


def sections(run: Path, version: int) -> dict[str, dict]:
    report = json.loads((run / "report" / f"v{version}" / "report.json").read_text())
    return {s["key"]: s for s in report["sections"]}


def review_cmd(run: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "societas.cli", "review", str(run), *args]


def without_prose_line(section: dict) -> dict:
    """The Limitations' line on whose prose each section shows reports on the revised sections too, so it
    changes with them; the rest of an untouched section must not."""
    lines = [p for p in section["generated"].split("\n\n") if not p.startswith(PROSE_LINE)]
    return {**section, "generated": "\n\n".join(lines)}


def assert_revised_exactly(run: Path, old: int, new: int, keys: set[str]) -> None:
    before, after = sections(run, old), sections(run, new)
    assert set(before) == set(after)
    for key in before:
        if key in keys:
            assert after[key]["body"].startswith("Revised as asked, citing {{F1}} on "), key
            assert after[key]["body"] != before[key]["body"], key
            assert after[key]["prose_source"] == "model", key
        else:
            assert json.dumps(without_prose_line(after[key]), sort_keys=True) == \
                json.dumps(without_prose_line(before[key]), sort_keys=True), key


def assert_reviewed_version(run: Path, old: int, new: int) -> None:
    assert list(saved_versions(run))[-1] == new and new == old + 1
    recorded = json.loads((run / "report" / f"v{new}" / "human_comments.json").read_text())
    assert recorded["reviewed_version"] == old and recorded["version"] == new
    assert recorded["comments"] == {"results": "Discuss the size of the effect more carefully.",
                                    "discussion": "Add the caveats of a toy model."}
    review = json.loads((run / "report" / f"v{new}" / "review.json").read_text())
    assert review["version"] == new and review["checks"]  # the checks re-ran on the new version
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["final_version"] == new
    assert new in manifest["human_reviewed"]
    assert (run / "report" / "final" / "report.md").resolve() == (run / "report" / f"v{new}" / "report.md").resolve()


def test_review_comments_file_revises_exactly_the_commented_sections(server, tmp_path):
    run = finished_run(server, tmp_path / "run")
    latest = max(saved_versions(run))
    (tmp_path / "comments.md").write_text(COMMENTS)
    done = subprocess.run(review_cmd(run, "--comments", str(tmp_path / "comments.md")), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "▶ human_review" in done.stderr and "▶ write_report" not in done.stderr
    assert_reviewed_version(run, latest, latest + 1)
    assert_revised_exactly(run, latest, latest + 1, {"results", "discussion"})


def test_review_approve_makes_no_new_version_and_finalizes_the_latest(server, tmp_path):
    run = finished_run(server, tmp_path / "run", review_rounds=0)
    latest = max(saved_versions(run))
    done = subprocess.run(review_cmd(run, "--approve"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(saved_versions(run))[-1] == latest
    assert json.loads((run / "manifest.json").read_text())["final_version"] == latest


def test_review_prompt_takes_comments_typed_at_the_terminal(server, tmp_path):
    run = finished_run(server, tmp_path / "run", review_rounds=0)
    latest = max(saved_versions(run))
    typed = "nonsense\nresults\nDiscuss the size of the effect more carefully.\n\n"
    done = subprocess.run(review_cmd(run), input=typed, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "unknown section" in done.stderr and "## results" in done.stderr  # the sections were shown
    assert_revised_exactly(run, latest, latest + 1, {"results"})


@pytest.mark.slow
def test_review_killed_mid_revision_continues_cleanly(server, tmp_path):
    run = finished_run(server, tmp_path / "run")
    latest = max(saved_versions(run))
    (tmp_path / "comments.md").write_text(COMMENTS)
    cmd = review_cmd(run, "--comments", str(tmp_path / "comments.md"))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "▶ revise_report" in line:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert any("▶ revise_report" in line for line in seen), "".join(seen)
    assert json.loads((run / "manifest.json").read_text())["status"] == "running"  # killed, not finished
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "continuing the review" in again.stderr and "▶ human_review" not in again.stderr
    assert_reviewed_version(run, latest, latest + 1)
    assert_revised_exactly(run, latest, latest + 1, {"results", "discussion"})


def test_research_interactive_pauses_at_human_review_until_approval(server, tmp_path):
    asked: list[dict] = []
    answers = [HumanFeedback(comments={"results": "Discuss the size of the effect more carefully.",
                                       "discussion": "Add the caveats of a toy model."}, source="test"),
               HumanFeedback(approve=True, source="test")]

    def person(request: dict) -> HumanFeedback:
        asked.append(request)
        return answers[len(asked) - 1]

    config = ResearchConfig(llm=server.url, seeds=2, agents=100, steps=10, review_rounds=1, use_ray=False,
                            max_extra_seed_rounds=0)
    run = start(TOPIC, config, out=tmp_path / "run", console=Console(file=StringIO()), feedback=person).path
    assert len(asked) == 2
    first, second = asked[0]["version"], asked[1]["version"]
    assert second == first + 1 and [s["key"] for s in asked[0]["sections"]][0] == "abstract"
    assert asked[0]["review"]["version"] == first  # the person sees the automated review too
    assert_reviewed_version(run, first, second)
    assert_revised_exactly(run, first, second, {"results", "discussion"})


def test_review_prompt_never_approves_on_closed_input(server, tmp_path):
    """A script that pipes nothing (or Ctrl-D) must not approve a version by accident."""
    run = finished_run(server, tmp_path / "run", review_rounds=0)
    final_before = json.loads((run / "manifest.json").read_text())["final_version"]
    done = subprocess.run(review_cmd(run), input="", capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "waiting for your review" in done.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "awaiting review" and manifest["final_version"] == final_before
    from researcher.runner import regenerate  # a run waiting for its review is finished by `review`
    from societas.errors import SocietasError

    with pytest.raises(SocietasError) as info:
        regenerate(run)
    assert f"`societas review {run.name}`" in info.value.hint
    approved = subprocess.run(review_cmd(run), input="\ny\n", capture_output=True, text=True, timeout=300)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert json.loads((run / "manifest.json").read_text())["status"] == "complete"
