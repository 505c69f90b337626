"""Report versions in a run folder: `report/vN/` written in every format, read back, listed, and
`report/final` pointing at the chosen one.

Each revision gets a new N, so earlier versions stay; Markdown is the source of truth and a failed
PDF compile never loses it or an older version's PDF.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from reports.html import render_html
from reports.latex import render_latex, section_at_line
from reports.markdown import render_markdown
from reports.models import Report, Review
from reports.pdf import compile_pdf, toolchain
from societas.runs import atomic_write_bytes, atomic_write_json, atomic_write_text


def report_dir(run_dir: Path, version: int) -> Path:
    return run_dir / "report" / f"v{version}"


@dataclass
class Rendered:
    """What one version's renderings came to; `render.json` in the version folder holds the same."""

    pdf: bool
    errors: list[str]
    error_sections: list[str]
    notice: str = ""
    seconds: float = 0.0


NO_TEX_NOTICE = ("No TeX toolchain (pdflatex) is installed, so there is no PDF: the report is in Markdown, HTML "
                 "and LaTeX (report.tex). Install TeX (scripts/setup.sh does) and run `societas regenerate RUN` "
                 "for a PDF.")


def _copy_figures(report: Report, run_dir: Path, out: Path) -> dict[str, str]:
    """Each figure's PNG beside the .tex (TeX may read nothing outside the version folder)."""
    paths = {}
    for fig in report.figures:
        source = run_dir / fig.path
        if source.is_file():
            atomic_write_bytes(out / "figures" / f"{fig.id}.png", source.read_bytes())
            paths[fig.id] = f"figures/{fig.id}.png"
    return paths


def last_good_pdf(run_dir: Path, before: int) -> Path | None:
    """The newest report.pdf of a version older than `before`."""
    for version in range(before - 1, 0, -1):
        pdf = report_dir(run_dir, version) / "report.pdf"
        if pdf.is_file():
            return pdf
    return None


def save_report(report: Report, run_dir: Path) -> Rendered:
    """report/vN/: report.json, report.md (the source of truth), report.html, report.tex and, when TeX
    compiles it, report.pdf. Each revision gets a new N, so earlier versions stay; a node re-run
    after a crash rewrites its own version, with the same content. A failed compile loses nothing:
    the Markdown is written first and an older version's PDF is never touched."""
    out = report_dir(run_dir, report.version)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.json", report.model_dump_json(indent=2))
    atomic_write_text(out / "report.md", render_markdown(report))
    atomic_write_text(out / "report.html", render_html(report, run_dir))
    tex_source = render_latex(report, _copy_figures(report, run_dir, out))
    atomic_write_text(out / "report.tex", tex_source)
    (out / "report.pdf").unlink(missing_ok=True)  # a stale PDF from a crashed earlier attempt is not this text
    if toolchain() is None:
        rendered = Rendered(pdf=False, errors=[], error_sections=[], notice=NO_TEX_NOTICE)
    else:
        result = compile_pdf(out / "report.tex")
        sections = sorted({key for line in result.error_lines if (key := section_at_line(tex_source, line))})
        notice = ""
        if not result.ok:
            previous = last_good_pdf(run_dir, report.version)
            notice = (f"The PDF of version {report.version} could not be built ({'; '.join(result.errors[:3])}); "
                      "its Markdown, HTML and LaTeX are complete"
                      + (f", and the last good PDF is {previous.relative_to(run_dir)}." if previous else "."))
        rendered = Rendered(pdf=result.ok, errors=result.errors, error_sections=sections, notice=notice,
                            seconds=result.seconds)
    atomic_write_json(out / "render.json", asdict(rendered))
    return rendered


def render_status(run_dir: Path, version: int) -> dict:
    """The version's render.json (empty when it was rendered before PDFs existed)."""
    path = report_dir(run_dir, version) / "render.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def load_report(run_dir: Path, version: int) -> Report:
    return Report.model_validate_json((report_dir(run_dir, version) / "report.json").read_text())


def saved_versions(run_dir: Path) -> dict[int, int | None]:
    """Every report version on disk with its overall review score (None when not reviewed or not scored)."""
    found: dict[int, int | None] = {}
    for path in (run_dir / "report").glob("v*"):
        if not (re.fullmatch(r"v\d+", path.name) and (path / "report.json").is_file()):
            continue
        review = path / "review.json"
        try:
            scores = json.loads(review.read_text()).get("scores") if review.is_file() else None
        except (OSError, json.JSONDecodeError):
            scores = None
        found[int(path.name[1:])] = (scores or {}).get("overall")
    return dict(sorted(found.items()))


def best_version(reviews: list[Review]) -> int:
    """The version with passing checks and the highest overall score; the latest among equals."""
    def key(r: Review):
        return (r.checks_pass, r.scores.overall if r.scores else 0, r.version)
    return max(reviews, key=key).version


def link_final(run_dir: Path, version: int) -> None:
    """`report/final` -> `vN`, swapped in atomically, and `report/final.json` naming the version."""
    final = run_dir / "report" / "final"
    tmp = final.with_name(".final.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(f"v{version}", tmp)
    os.replace(tmp, final)
    atomic_write_json(run_dir / "report" / "final.json", {"version": version})
