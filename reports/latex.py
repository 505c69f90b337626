"""The LaTeX report, generated with PyLaTeX from the `Report` model; every piece of text is escaped.

Text (prose a model wrote, titles, fact descriptions, references) passes through `tex()`: control
characters are dropped, characters the T1/Latin Modern fonts cannot set become a visible `[?]`
(so CJK, Arabic, Cyrillic, ... never break pdflatex; the Markdown and HTML keep them), very long
words get break points, and PyLaTeX's `escape_latex` escapes every special character. Only
LaTeX this module writes itself is wrapped in `NoEscape`. Numbers enter through facts, exactly
as in the Markdown, and `[Figure fig1]` becomes a `\\ref` to the figure's label.

Each section starts with a `%% section: <key>` line so a compile error's line number can be traced
back to the section that produced it (`section_at_line`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence

from pylatex import Command, Document, NoEscape, Package
from pylatex.utils import escape_latex

from reports import blocks
from reports.markdown import FACT_HEADER, VERDICT_HEADER, fact_rows, substitute, verdict_rows
from reports.models import FIGURE_RE, SECTION_TITLES, Fact, Figure, Report, Section

MARKER = r"\unrenderable{}"
_BREAK, _UNRENDERABLE = "\x01", "\x02"
_SECTION_LINE = "%% section: "
# Typographic characters Latin Modern (T1/TS1) sets under utf8 inputenc, besides Latin-1 and Latin Extended-A.
_PUNCTUATION = set("–—‘’‚“”„…•†‡‰‹›€")
_REPLACEMENTS = {"\u2212": "-", "\u2010": "-", "\u2011": "-", "\u00ad": "", "\u2009": " ", "\u202f": " ",
                 "\u200b": "", "\ufeff": "", "\u2032": "'", "\u2033": "''", "\u2192": "->", "\u2190": "<-",
                 "\u2264": "<=", "\u2265": ">=", "\u2260": "!=", "\u2248": "~", "\u221e": "infinity"}
# Not declared for T1 under utf8 inputenc (found by compiling every code point of U+00A0-U+017F).
_UNSET = set("\u0126\u0127\u0138\u013f\u0140\u0149\u0166\u0167\u017f\u00ad")
_LONG_WORD = 30


def _renderable(ch: str) -> bool:
    o = ord(ch)
    return (32 <= o < 127 or ch == "\n" or (0xA0 <= o <= 0x17F and ch not in _UNSET)
            or ch in _PUNCTUATION)


def _plain(ch: str) -> str:
    """A character the fonts can set, an ASCII transliteration (é̃ -> e, ﬁ -> fi), or the marker."""
    if ch in _REPLACEMENTS:
        return _REPLACEMENTS[ch]
    if _renderable(ch):
        return ch
    if unicodedata.category(ch)[0] in "CZ":  # controls, formats, separators: whitespace at most
        return " " if ch in "\t\r\u2028\u2029" or unicodedata.category(ch) == "Zs" else ""
    ascii_form = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    if ascii_form and all(_renderable(c) and c != "\n" for c in ascii_form):
        return ascii_form
    return _UNRENDERABLE


def _breakable(word: str) -> str:
    return _BREAK.join(word[i : i + _LONG_WORD] for i in range(0, len(word), _LONG_WORD))


def tex(text: object) -> str:
    """Any text as LaTeX that sets it literally (one paragraph: newlines become spaces)."""
    text = unicodedata.normalize("NFC", str(text))
    clean = "".join(_plain(ch) for ch in text).replace("\n", " ")
    clean = re.sub(_UNRENDERABLE + "+", _UNRENDERABLE, clean)
    clean = re.sub(r"\S{%d,}" % (_LONG_WORD + 1), lambda m: _breakable(m.group()), clean)
    escaped = str(escape_latex(clean))
    return escaped.replace(_BREAK, r"\allowbreak{}").replace(_UNRENDERABLE, MARKER)


def _label(kind: str, key: str) -> str:
    return f"{kind}:" + (re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-") or "x")


def _inline(text: str) -> str:
    styles = {"": "{}", "b": r"\textbf{{{}}}", "i": r"\emph{{{}}}", "code": r"\texttt{{{}}}"}
    return "".join(styles[style].format(tex(part)) for style, part in blocks.inline(text))


def _with_figure_refs(text: str, figures: Sequence[Figure], markup: bool = True) -> str:
    """Escaped text in which `[Figure figN]` refers to the figure's label; `markup` reads the Markdown
    subset (code-made text), without it the text is taken literally (model prose)."""
    known = {f.id for f in figures}
    literal = _inline if markup else tex
    out, last = [], 0
    for m in FIGURE_RE.finditer(text):
        out.append(literal(text[last : m.start()]))
        out.append(rf"Figure~\ref{{{_label('fig', m.group(1))}}}" if m.group(1) in known
                   else tex(f"[missing figure {m.group(1)}]"))
        last = m.end()
    out.append(literal(text[last:]))
    return "".join(out)


def _prose(body: str, facts: Mapping[str, Fact], figures: Sequence[Figure]) -> list[str]:
    """Model prose: facts filled in, then escaped as plain paragraphs (never parsed as Markdown)."""
    return [_with_figure_refs(para, figures, markup=False) for para in blocks.paragraphs(substitute(body, facts))]


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], widths: Sequence[float]) -> str:
    spec = "".join(rf">{{\raggedright\arraybackslash}}p{{{w:.2f}\linewidth}}" for w in widths)
    head = " & ".join(rf"\textbf{{{_inline(h)}}}" for h in header)
    lines = [r"{\small", rf"\begin{{longtable}}{{@{{}}{spec}@{{}}}}", r"\toprule", head + r" \\", r"\midrule",
             r"\endhead"]
    lines += [" & ".join(_inline(str(c)) for c in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{longtable}}"]
    return "\n".join(lines)


def _even(n: int) -> list[float]:
    return [0.94 / n - 0.02] * n


def _generated(markdown: str, figures: Sequence[Figure]) -> list[str]:
    out = []
    for block in blocks.parse(markdown):
        if block.kind == "table":
            out.append(_table(block.header, block.rows, _even(len(block.header))))
        elif block.kind == "list":
            items = "\n".join(r"\item " + _with_figure_refs(item, figures) for item in block.lines)
            out.append("\\begin{itemize}\n" + items + "\n\\end{itemize}")
        else:
            out.append(_with_figure_refs(block.lines[0], figures))
    return out


def facts_table(facts: Sequence[Fact]) -> str:
    return _table(FACT_HEADER, fact_rows(facts), (0.05, 0.27, 0.1, 0.15, 0.05, 0.26))


def figure_latex(figure: Figure, path: str | None) -> str:
    """A float with the image (when its file is there), caption and label."""
    image = (rf"\includegraphics[width=0.9\linewidth,height=0.4\textheight,keepaspectratio]{{{path}}}" if path
             else r"\fbox{" + tex(f"figure file {figure.path} is missing") + "}")
    return "\n".join([r"\begin{figure}[!htbp]", r"\centering", image, rf"\caption{{{tex(figure.caption)}}}",
                      rf"\label{{{_label('fig', figure.id)}}}", r"\end{figure}"])


def _results_extras(report: Report, figure_paths: Mapping[str, str]) -> tuple[list[str], list[str]]:
    figs = [figure_latex(f, figure_paths.get(f.id)) for f in report.figures]
    tables = []
    if report.facts:
        tables += [r"\subsection*{Facts}", facts_table(report.facts)]
    if report.verdicts:
        tables += [r"\subsection*{Hypothesis verdicts}",
                   _table(VERDICT_HEADER, verdict_rows(report.verdicts, report.fact_map()), (0.38, 0.13, 0.43))]
    return figs, tables


def _section(section: Section, report: Report, figure_paths: Mapping[str, str]) -> list[str]:
    facts = report.fact_map()
    parts = [_SECTION_LINE + section.key]
    if section.key == "abstract":
        parts.append(r"\begin{abstract}")
    else:
        parts.append(rf"\section{{{tex(section.title)}}}\label{{{_label('sec', section.key)}}}")
    parts += _prose(section.body, facts, report.figures)
    figs, tables = _results_extras(report, figure_paths) if section.key == "results" else ([], [])
    parts += figs
    parts += _generated(substitute(section.generated, facts), report.figures)
    if section.key == "background" and report.references:
        cites = ", ".join(rf"\cite{{{r.key}}}" for r in report.references)
        parts.append(r"\noindent This study draws on the following literature: " + cites + ".")
    parts += tables
    if section.key == "abstract":
        parts.append(r"\end{abstract}")
    return parts


def render_latex(report: Report, figure_paths: Mapping[str, str] | None = None) -> str:
    """The whole document; `figure_paths` maps figure ids to image files relative to the .tex file."""
    figure_paths = figure_paths or {}
    doc = Document(documentclass="article", document_options=["11pt", "a4paper"], page_numbers=False,
                   geometry_options={"margin": "2.5cm"})
    for package in ("graphicx", "booktabs", "longtable", "array", "parskip"):
        doc.packages.append(Package(package))
    doc.preamble.append(NoEscape(r"\newcommand{\unrenderable}{\textbf{[?]}}"))
    doc.preamble.append(NoEscape(r"\setlength{\emergencystretch}{3em}"))
    doc.preamble.append(Command("title", NoEscape(tex(report.title))))
    doc.preamble.append(Command("author", "societas"))
    doc.preamble.append(Command("date", NoEscape(f"Report version {report.version}")))
    body = [r"\maketitle"]
    for section in report.sections:
        body += _section(section, report, figure_paths)
    if report.section("results") is None and (report.figures or report.facts or report.verdicts):
        body += _section(Section(key="results", title=SECTION_TITLES["results"]), report, figure_paths)
    if report.references:
        body += [_SECTION_LINE + "references", r"\begin{thebibliography}{99}"]
        body += [rf"\bibitem{{{r.key}}} {tex(r.render())}" for r in report.references]
        body.append(r"\end{thebibliography}")
    text = "\n\n".join(body)
    if MARKER in text:
        notice = (r"\noindent\emph{" + tex("Characters the PDF fonts cannot show (for example non-Latin scripts) "
                                          "appear as [?]; the Markdown and HTML versions show them.") + "}")
        text = text.replace(r"\maketitle", r"\maketitle" + "\n\n" + notice, 1)
    doc.append(NoEscape(text))
    return doc.dumps() + "\n"


def section_at_line(tex_source: str, line: int) -> str | None:
    """The section key whose LaTeX contains `line` (1-based), or None for the preamble."""
    key = None
    for n, text in enumerate(tex_source.splitlines(), start=1):
        if n > line:
            break
        if text.startswith(_SECTION_LINE):
            key = text[len(_SECTION_LINE):].strip()
    return key
