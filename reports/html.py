"""A self-contained HTML report: one file, figures inlined as data URIs, for reading in a browser.

All text is escaped with `html.escape`; model prose is plain paragraphs, the code-made parts use
the same Markdown subset as the LaTeX renderer (`reports.blocks`). No script, no external link.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

from reports import blocks
from reports.markdown import FACT_HEADER, VERDICT_HEADER, fact_rows, figure_numbers, substitute, verdict_rows
from reports.models import FIGURE_RE, SECTION_TITLES, Figure, Report, Section

STYLE = """
body{font-family:Georgia,'Times New Roman',serif;max-width:52rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#222}
h1{font-size:1.8rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem;width:100%}
th,td{border-top:1px solid #ccc;border-bottom:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}
figure{margin:1.5rem 0;text-align:center}figure img{max-width:100%}figcaption{font-style:italic}
.abstract{background:#f6f6f6;padding:.5rem 1rem}.meta{color:#666}p,li,td{overflow-wrap:anywhere}
"""


def _inline(text: str, numbers: Mapping[str, int]) -> str:
    out = []
    for style, part in blocks.inline(text):
        out.append({"": "{}", "b": "<strong>{}</strong>", "i": "<em>{}</em>", "code": "<code>{}</code>"}[style]
                   .format(_refs(part, numbers)))
    return "".join(out)


def _refs(text: str, numbers: Mapping[str, int]) -> str:
    """Escaped text with `[Figure figN]` as a link to the figure."""
    out, last = [], 0
    for m in FIGURE_RE.finditer(text):
        out.append(html.escape(text[last : m.start()]))
        n = numbers.get(m.group(1))
        out.append(f'<a href="#{m.group(1)}">Figure {n}</a>' if n else html.escape(f"[missing figure {m.group(1)}]"))
        last = m.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], numbers: Mapping[str, int]) -> str:
    head = "".join(f"<th>{_inline(str(h), numbers)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_inline(str(c), numbers)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _generated(markdown: str, numbers: Mapping[str, int]) -> list[str]:
    out = []
    for block in blocks.parse(markdown):
        if block.kind == "table":
            out.append(_table(block.header, block.rows, numbers))
        elif block.kind == "list":
            out.append("<ul>" + "".join(f"<li>{_inline(i, numbers)}</li>" for i in block.lines) + "</ul>")
        else:
            out.append(f"<p>{_inline(block.lines[0], numbers)}</p>")
    return out


def image_data_uri(path: Path) -> str | None:
    """The PNG as a data URI, or None when the file is missing."""
    try:
        return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()
    except OSError:
        return None


def _figure(figure: Figure, number: int, run_dir: Path | None) -> str:
    uri = image_data_uri(run_dir / figure.path) if run_dir is not None else None
    caption = html.escape(f"Figure {number}: {figure.caption}")
    image = (f'<img src="{uri}" alt="{caption}">' if uri
             else f"<p>{html.escape(f'(figure file {figure.path} is missing)')}</p>")
    return f'<figure id="{html.escape(figure.id)}">{image}<figcaption>{caption}</figcaption></figure>'


def _results_extras(report: Report, run_dir: Path | None, numbers: Mapping[str, int]) -> tuple[list[str], list[str]]:
    figs = [_figure(f, numbers[f.id], run_dir) for f in report.figures]
    tables = []
    if report.facts:
        tables += ["<h3>Facts</h3>", _table(FACT_HEADER, fact_rows(report.facts), {})]
    if report.verdicts:
        tables += ["<h3>Hypothesis verdicts</h3>",
                   _table(VERDICT_HEADER, verdict_rows(report.verdicts, report.fact_map()), {})]
    return figs, tables


def _section(section: Section, report: Report, run_dir: Path | None) -> list[str]:
    numbers = figure_numbers(report.figures)
    facts = report.fact_map()
    css = ' class="abstract"' if section.key == "abstract" else ""
    parts = [f'<section id="{html.escape(section.key)}"{css}>', f"<h2>{html.escape(section.title)}</h2>"]
    parts += [f"<p>{_refs(p, numbers)}</p>" for p in blocks.paragraphs(substitute(section.body, facts))]
    figs, tables = _results_extras(report, run_dir, numbers) if section.key == "results" else ([], [])
    parts += figs
    parts += _generated(substitute(section.generated, facts), numbers)
    if section.key == "background" and report.references:
        parts.append("<p>This study draws on the following literature: "
                     + ", ".join(f'<a href="#ref-{html.escape(r.key)}">[{n}]</a>'
                                 for n, r in enumerate(report.references, start=1)) + ".</p>")
    parts += tables
    return parts + ["</section>"]


def render_html(report: Report, run_dir: Path | None = None) -> str:
    """The whole report as one HTML file; figure files are read from `run_dir` and inlined."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(report.title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(report.title)}</h1>", f'<p class="meta">Report version {report.version}, by societas</p>']
    for section in report.sections:
        parts += _section(section, report, run_dir)
    if report.section("results") is None and (report.figures or report.facts or report.verdicts):
        parts += _section(Section(key="results", title=SECTION_TITLES["results"]), report, run_dir)
    if report.references:
        parts.append('<section id="references"><h2>References</h2><ol>')
        parts += [f'<li id="ref-{html.escape(r.key)}">{html.escape(r.render())}</li>' for r in report.references]
        parts.append("</ol></section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
