"""`societas regenerate`: a new report version from the saved data, forked from the checkpoint; nothing
before the fork point runs again (no simulator call, no LLM call), and no earlier version changes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

import researcher.nodes.run_simulation as run_simulation_node
from reports.versions import saved_versions
from researcher.runner import regenerate, start
from researcher.state import ResearchConfig
from societas.errors import SocietasError
from tests.doubles.capable_server import CapableServer
from tests.doubles.schema_server import SchemaAwareServer

TOPIC = "Why do neighbourhoods become divided even when residents are fairly tolerant?"
PLANNING_PROMPTS = ("analyze_topic", "design_choose_scenario", "design_generate_spec", "design_map_hypotheses")


@pytest.fixture
def simulations(monkeypatch):
    """Counts calls of the simulator tool made by the pipeline."""
    calls = []
    real = run_simulation_node.simulate

    def counted(*args, **kw):
        calls.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(run_simulation_node, "simulate", counted)
    return calls


def config(server, **kw) -> ResearchConfig:
    base = dict(llm=server.url, seeds=2, agents=100, steps=15, review_rounds=1, use_ray=False,
                max_extra_seed_rounds=0)
    return ResearchConfig(**(base | kw))


def digests(run: Path) -> dict[str, str]:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((run / "report").glob("v*/*")) if p.is_file()}


def quiet() -> tuple[Console, StringIO]:
    buf = StringIO()
    return Console(file=buf, width=200), buf


def planning_requests(server, since: int) -> list[str]:
    """System prompts of the requests since `since` that belong to the stages before the fork."""
    from prompts import load

    firsts = {name: load(name).split("\n", 1)[0].strip() for name in PLANNING_PROMPTS}
    found = []
    for body in server.requests[since:]:
        text = "\n".join(m["content"] for m in body["messages"])
        found += [name for name, first in firsts.items() if first and first in text]
    return found


@pytest.mark.parametrize("start_from", ["analyze", "write"])
def test_regenerate_makes_version_n_plus_1_with_no_simulation_and_no_planning_calls(
        start_from, server, simulations, tmp_path):
    first = len(server.requests)
    folder = start(TOPIC, config(server), out=tmp_path / "run", console=quiet()[0])
    assert len(simulations) == 1 and "analyze_topic" in planning_requests(server, first)  # the counters count
    before = saved_versions(folder.path)
    kept = digests(folder.path)
    sent = len(server.requests)
    console, out = quiet()
    regenerate(folder.path, start_from=start_from, review_rounds=0, console=console)
    assert len(simulations) == 1, "regenerate ran the simulator"
    assert planning_requests(server, sent) == []
    ran = set(line.split("▶ ")[1].strip() for line in out.getvalue().splitlines() if "▶ " in line)
    assert ran == ({"analyze_results"} if start_from == "analyze" else set()) | {"write_report", "review_report",
                                                                                  "finalize"}
    after = saved_versions(folder.path)
    n = max(before)
    assert list(after) == [*before, n + 1]
    assert {k: v for k, v in digests(folder.path).items() if k in kept} == kept  # v1..vN untouched
    manifest = json.loads((folder.path / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["final_version"] == n + 1
    assert manifest["regenerations"][-1]["from"] == start_from
    assert (folder.path / "report" / "final" / "report.pdf").is_file()
    assert json.loads((folder.path / "report" / f"v{n + 1}" / "report.json").read_text())["version"] == n + 1


def test_regenerate_with_another_llm_writes_with_it_and_asks_the_first_one_nothing(server, simulations, tmp_path):
    folder = start(TOPIC, config(server), out=tmp_path / "run", console=quiet()[0])
    sent = len(server.requests)
    with SchemaAwareServer(prose="A better model writes this careful prose about {{F1}}.") as better:
        regenerate(folder.path, start_from="write", llm=better.url, review_rounds=0, console=quiet()[0])
        assert len(better.requests) >= 9  # every section written by the new model
    assert len(server.requests) == sent and len(simulations) == 1
    n = max(saved_versions(folder.path))
    report = json.loads((folder.path / "report" / f"v{n}" / "report.json").read_text())
    assert all(s["body"].startswith("A better model writes") for s in report["sections"])
    assert json.loads((folder.path / "manifest.json").read_text())["config"]["llm"] == better.url


def test_regenerate_twice_keeps_numbering_forward(server, tmp_path):
    folder = start(TOPIC, config(server, review_rounds=0), out=tmp_path / "run", console=quiet()[0])
    regenerate(folder.path, start_from="write", console=quiet()[0])
    regenerate(folder.path, start_from="analyze", console=quiet()[0])
    assert list(saved_versions(folder.path)) == [1, 2, 3]


def test_regenerate_refuses_an_unknown_fork_point_and_a_run_without_checkpoints(tmp_path):
    with pytest.raises(SocietasError, match="--from analyze or --from write"):
        regenerate(tmp_path, start_from="design")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text("{}")
    with pytest.raises(SocietasError, match="no checkpoints"):
        regenerate(tmp_path / "run")
    (tmp_path / "run" / "checkpoints.sqlite").write_bytes(b"not a database, just damage" * 40)
    with pytest.raises(SocietasError, match="checkpoints .* cannot be read") as info:
        regenerate(tmp_path / "run")
    assert "\n" not in str(info.value)


def test_regenerate_command_line(server, tmp_path):
    folder = start(TOPIC, config(server, review_rounds=0), out=tmp_path / "run", console=quiet()[0])
    done = subprocess.run([sys.executable, "-m", "societas.cli", "regenerate", str(folder.path), "--from", "write",
                           "--review-rounds", "0"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "▶ run_simulation" not in done.stderr and "version 2" in done.stderr
    listed = subprocess.run([sys.executable, "-m", "societas.cli", "runs", "--root", str(tmp_path), "--json"],
                            capture_output=True, text=True, timeout=120)
    row = json.loads(listed.stdout)[0]
    assert row["versions"] == [1, 2] and row["final"] == 2 and set(row["scores"]) == {"1", "2"}


def test_without_tex_a_run_completes_with_one_notice_and_regenerate_adds_the_pdf(server, tmp_path, monkeypatch):
    import os

    from reports.versions import NO_TEX_NOTICE

    path = os.environ["PATH"]
    monkeypatch.setenv("PATH", str(tmp_path / "no-tex-here"))  # no pdflatex, no latexmk
    console, out = quiet()
    folder = start(TOPIC, config(server, review_rounds=0), out=tmp_path / "run", console=console)
    text = out.getvalue()
    assert text.count("No TeX toolchain") == 1 and NO_TEX_NOTICE.split(":")[0] in text
    final = folder.path / "report" / "final"
    assert (final / "report.md").is_file() and (final / "report.tex").is_file() and not (final / "report.pdf").exists()
    assert json.loads((folder.path / "manifest.json").read_text())["status"] == "complete"
    monkeypatch.setenv("PATH", path)
    regenerate(folder.path, start_from="write", console=quiet()[0])
    assert (folder.path / "report" / "final" / "report.pdf").is_file()


def test_a_latex_error_in_a_section_goes_back_to_the_writer_once(tmp_path, monkeypatch):
    """TeX here is a stand-in that fails the first compile in the Results section, as a real error would.
    The writer is a capable model, so Results has model prose to send back (the code's narrative is not
    the model's to rewrite)."""
    import reports.versions as versions
    from reports.pdf import CompileResult

    real, calls = versions.compile_pdf, []

    def failing_once(tex_path, *args, **kw):
        calls.append(tex_path)
        if len(calls) > 1:
            return real(tex_path, *args, **kw)
        line = Path(tex_path).read_text().splitlines().index("%% section: results") + 3
        return CompileResult(ok=False, errors=[f"line {line}: Undefined control sequence"], error_lines=[line])

    monkeypatch.setattr(versions, "compile_pdf", failing_once)
    with CapableServer() as server:
        folder = start(TOPIC, config(server, review_rounds=0), out=tmp_path / "run", console=quiet()[0])
    asked = [m["content"] for body in server.requests for m in body["messages"]
             if "The LaTeX compiler failed on this section" in m["content"]]
    assert len(asked) == 1 and "Undefined control sequence" in asked[0] and "Section: Results" in asked[0]
    assert len(calls) == 2 and (folder.path / "report" / "v1" / "report.pdf").is_file()
    assert json.loads((folder.path / "report" / "v1" / "render.json").read_text())["pdf"] is True
