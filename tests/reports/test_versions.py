"""Each version folder gets every format; a failed or impossible PDF loses nothing and says so once."""

from __future__ import annotations

import json

from reports.versions import NO_TEX_NOTICE, render_status, save_report
from tests.reports.test_latex import png, report


def run_folder(tmp_path):
    png(tmp_path / "figures" / "a.png")
    png(tmp_path / "figures" / "b.png")
    return tmp_path


def test_a_version_folder_holds_md_html_tex_pdf_and_its_figures(tmp_path):
    run = run_folder(tmp_path)
    rendered = save_report(report(), run)
    folder = run / "report" / "v1"
    assert rendered.pdf and not rendered.notice
    for name in ("report.json", "report.md", "report.html", "report.tex", "report.pdf", "render.json",
                 "figures/fig1.png", "figures/fig2.png"):
        assert (folder / name).is_file(), name
    assert not (folder / ".build").exists()
    assert render_status(run, 1)["pdf"] is True


def test_a_failed_compile_keeps_the_markdown_and_the_previous_good_pdf(tmp_path):
    run = run_folder(tmp_path)
    save_report(report(), run)
    good = (run / "report" / "v1" / "report.pdf").read_bytes()
    (run / "figures" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken" * 50)  # pdflatex cannot read it
    rendered = save_report(report(version=2), run)
    assert not rendered.pdf and rendered.errors
    assert "could not be built" in rendered.notice and "report/v1/report.pdf" in rendered.notice
    assert (run / "report" / "v2" / "report.md").read_text().startswith("# Segregation")
    assert (run / "report" / "v2" / "report.tex").is_file() and not (run / "report" / "v2" / "report.pdf").exists()
    assert (run / "report" / "v1" / "report.pdf").read_bytes() == good
    assert json.loads((run / "report" / "v2" / "render.json").read_text())["notice"] == rendered.notice


def test_without_a_tex_toolchain_a_version_has_md_html_tex_and_one_notice(tmp_path, monkeypatch):
    run = run_folder(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "no-tex-here"))
    rendered = save_report(report(), run)
    assert not rendered.pdf and rendered.notice == NO_TEX_NOTICE and not rendered.errors
    folder = run / "report" / "v1"
    assert all((folder / n).is_file() for n in ("report.md", "report.html", "report.tex"))
    assert not (folder / "report.pdf").exists()
