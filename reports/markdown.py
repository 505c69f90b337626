"""The Markdown report, the source of truth: prose with facts and figure numbers filled in, tables.

The report lives at `<run>/report/vN/report.md` and figure paths are relative to `<run>`, so
images are linked as `../../<figure.path>`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from reports.models import FACT_RE, FIGURE_RE, SECTION_TITLES, Fact, Figure, Report, Verdict

RUN_FROM_REPORT = "../../"  # from <run>/report/vN/ back to <run>/
# A code span (an unescaped run of backticks up to the same run), and a `<` that would open raw HTML
# (a tag, a closing tag, a comment, a processing instruction) in CommonMark.
_CODE_SPAN_RE = re.compile(r"(?<![`\\])(`+)(?!`).+?(?<!`)\1(?!`)", re.DOTALL)
_TAG_OPEN_RE = re.compile(r"<(?=[A-Za-z/!?])")


def no_raw_html(text: str) -> str:
    """`text` with every `<` that could open raw HTML written as `&lt;`, outside code spans (where it is
    shown as written anyway). Model prose, a user's bibliography and topics reach report.md, and a
    Markdown viewer would run a `<script>` or `<img onerror>` in them; escaped, they read as text."""
    out, last = [], 0
    for m in _CODE_SPAN_RE.finditer(text):
        out += [_TAG_OPEN_RE.sub("&lt;", text[last:m.start()]), m.group()]
        last = m.end()
    out.append(_TAG_OPEN_RE.sub("&lt;", text[last:]))
    return "".join(out)


def figure_numbers(figures: Sequence[Figure]) -> dict[str, int]:
    """Figures are numbered 1, 2, ... in the order the report lists them."""
    return {f.id: n for n, f in enumerate(figures, start=1)}


def substitute(text: str, facts: Iterable[Fact] | Mapping[str, Fact], figures: Sequence[Figure] | None = None) -> str:
    """Fill `{{F3}}` with the fact's value and interval; with `figures`, `[Figure fig1]` with `Figure 1`."""
    by_id = facts if isinstance(facts, Mapping) else {f.id: f for f in facts}

    def fact(m) -> str:
        found = by_id.get(m.group(1))
        return found.render() if found else f"[missing fact {m.group(1)}]"

    text = FACT_RE.sub(fact, text)
    if figures is None:
        return text
    numbers = figure_numbers(figures)

    def figure(m) -> str:
        n = numbers.get(m.group(1))
        return f"Figure {n}" if n else f"[missing figure {m.group(1)}]"

    return FIGURE_RE.sub(figure, text)


def _cell(value: object) -> str:
    return no_raw_html(" ".join(str(value).split()).replace("|", r"\|"))


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


FACT_HEADER = ("id", "description", "value", "95% CI", "n", "source")
VERDICT_HEADER = ("hypothesis", "verdict", "reason")


def fact_rows(facts: Sequence[Fact]) -> list[tuple[object, ...]]:
    """The facts table's rows, shared by every renderer."""
    return [(f.id, f.description, f.shown_value(), f.interval() or "—", "—" if f.n is None else f.n, f.source)
            for f in facts]


def verdict_rows(verdicts: Sequence[Verdict], facts: Iterable[Fact] | Mapping[str, Fact] = ()) -> list[tuple[str, ...]]:
    """The verdicts table's rows (placeholders in the reasons filled from `facts`), shared by every renderer."""
    return [(f"{v.hypothesis_id}: {v.statement}", v.verdict, substitute(v.reason, facts)) for v in verdicts]


def facts_table(facts: Sequence[Fact]) -> str:
    """Every fact with its interval, sample size and origin; empty when there are none."""
    return _table(FACT_HEADER, fact_rows(facts)) if facts else ""


def verdicts_table(verdicts: Sequence[Verdict], facts: Iterable[Fact] | Mapping[str, Fact] = ()) -> str:
    """One row per hypothesis; placeholders in the reasons are filled from `facts`."""
    return _table(VERDICT_HEADER, verdict_rows(verdicts, facts)) if verdicts else ""


def figure_markdown(figure: Figure, number: int) -> str:
    path = figure.path if figure.path.startswith("/") else RUN_FROM_REPORT + figure.path.removeprefix("./")
    target = f"<{path}>" if any(c.isspace() for c in path) else path
    caption = no_raw_html(" ".join(figure.caption.split()))
    return f"![Figure {number}: {caption}]({target})\n\n*Figure {number}: {caption}*"


def _figures(report: Report) -> list[str]:
    return [figure_markdown(f, n) for n, f in enumerate(report.figures, start=1)]


def _tables(report: Report) -> list[str]:
    parts = []
    if report.facts:
        parts += ["### Facts", facts_table(report.facts)]
    if report.verdicts:
        parts += ["### Hypothesis verdicts", verdicts_table(report.verdicts, report.fact_map())]
    return parts


def render_markdown(report: Report) -> str:
    """The whole report. Results gets the figures after its prose and the tables after its generated
    part; when the report has no Results section one is appended, so no figure or fact is lost."""
    facts = report.fact_map()
    parts = [no_raw_html(f"# {report.title}")]
    for section in report.sections:
        parts.append(f"## {section.title}")
        parts.append(no_raw_html(substitute(section.body, facts, report.figures).strip()))
        if section.key == "results":
            parts += _figures(report)
        parts.append(no_raw_html(substitute(section.generated, facts, report.figures).strip()))
        if section.key == "background" and report.references:
            parts.append("This study draws on the following literature: "
                         + ", ".join(f"[{n}]" for n in range(1, len(report.references) + 1)) + ".")
        if section.key == "results":
            parts += _tables(report)
    if report.section("results") is None and (report.figures or report.facts or report.verdicts):
        parts.append(f"## {SECTION_TITLES['results']}")
        parts += _figures(report)
        parts += _tables(report)
    if report.references:
        parts.append("## References")
        parts.append("\n".join(f"{n}. {_cell(r.render())}" for n, r in enumerate(report.references, start=1)))
    return "\n\n".join(p for p in parts if p) + "\n"
