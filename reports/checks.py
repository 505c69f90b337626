"""Deterministic checks on a report, run before any LLM review; failures become must-fix comments.

What counts as a number in prose (`numbers_traced`): a token that is purely numeric: integers,
decimals (`0.42`, `.5`), thousands separators (`12,000`), scientific notation (`2e-3`),
percentages (`45%`), with an optional minus sign. Digits inside identifiers are not numbers:
`H1`, `F3`, `SIR2`, `2D`, `fig1`, `COVID-19`, `1.2.3`. Neither are label numbers (`Figure 2`,
`Table 1`, `Hypothesis 1`), ordered-list markers, or digits inside fact placeholders, figure
references, URLs and DOIs. Number words ("two", "first") are never numbers here (the prose gate,
`reports.prose`, which the writer applies to model prose, allows no number at all and catches number
words; this check traces the numbers of any saved report, old ones included). Everything else must
trace to a fact or to `allowed` (e.g. citation years from the plan's references), where a number
traces when its magnitude (signs are often spoken as "fell by") equals a fact's value, CI bound or
n under `format_number`, within a relative 1e-3, or rounded to the decimals written (two
significant digits at least, so "1" does not trace to 0.95). A percentage also traces via value/100.

`sections_present` covers missing and empty sections alike: a section is empty when neither
its prose nor its generated Markdown has text, so a section that is all tables passes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

from reports.models import (
    FACT_RE,
    FIGURE_RE,
    SECTION_KEYS,
    CheckResult,
    Fact,
    Report,
    SectionComment,
    format_number,
)

NUMBERS_TRACED = "numbers_traced"
FACTS_EXIST = "facts_exist"
FIGURES_REFERENCED = "figures_referenced"
HYPOTHESES_HAVE_VERDICTS = "hypotheses_have_verdicts"
SECTIONS_PRESENT = "sections_present"
CHECK_NAMES = (NUMBERS_TRACED, FACTS_EXIST, FIGURES_REFERENCED, HYPOTHESES_HAVE_VERDICTS, SECTIONS_PRESENT)

REMOVED = "[unverified number removed]"
WHOLE_REPORT = "report"  # section named by a comment about a check that names no section

_NUMBER_RE = re.compile(
    r"(?<![\w.])(?<![^\W\d][-−])"  # not the tail of an identifier (H1, x.5) nor of COVID-19
    r"(?>[-−]?(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?(?: ?%)?)"
    r"(?!\.?\w)"  # nor the head of one (2D, 1.2.3)
)
_LABEL_RE = re.compile(r"(?i)\b(?:figures?|fig\.|tables?|sections?|hypothes[ie]s|questions?|equations?|eq\.|appendix)\s*$")
_PROTECTED_RE = re.compile(
    "|".join(
        (
            FACT_RE.pattern,
            FIGURE_RE.pattern,
            r"https?://\S+",
            r"\bdoi:\s*\S+",
            r"^[ \t]*\d+[.)](?=[ \t])",  # ordered-list marker
        )
    ),
    re.MULTILINE,
)
_LINE_MARKER_RE = re.compile(r"^[ \t]*\(?(\d+)[.)](?=[ \t])", re.MULTILINE)
_RUN_IN_MARKER_RE = re.compile(r"(?<=[:;.?!]\s)\(?(\d{1,2})[.)](?=\s+[A-Z\"'])")  # "questions: 1. Is ... 2) Does"
_PARAGRAPH_RE = re.compile(r"(?:[^\n]|\n(?![ \t]*\n))+")
_MALFORMED_PLACEHOLDER_RE = re.compile(r"\{\{?\s*F\d+\s*\}?\}")


# ---- numbers --------------------------------------------------------------------------------


def _run_in_markers(text: str) -> list[tuple[int, int]]:
    """Spans of list markers run into prose ("questions: 1. Is it? 2. Does it?"). A marker counts
    only as part of a numbered sequence in its paragraph (k after a k - 1, or a 1 with a 2), so
    a quantity that merely ends a clause ("defected was: 37. This shows") is still a number."""
    spans: list[tuple[int, int]] = []
    for para in _PARAGRAPH_RE.finditer(text):
        run_in = list(_RUN_IN_MARKER_RE.finditer(text, para.start(), para.end()))
        if not run_in:
            continue
        numbers = {int(m.group(1)) for m in run_in}
        numbers |= {int(m.group(1)) for m in _LINE_MARKER_RE.finditer(text, para.start(), para.end())}
        spans += [m.span() for m in run_in
                  if int(m.group(1)) - 1 in numbers or (int(m.group(1)) == 1 and 2 in numbers)]
    return spans


def _number_matches(text: str) -> list[re.Match[str]]:
    """Number tokens in `text` outside protected spans, in order."""
    protected = sorted([m.span() for m in _PROTECTED_RE.finditer(text)] + _run_in_markers(text))
    matches: list[re.Match[str]] = []
    start = 0
    for span in [*protected, None]:
        if span is not None and span[0] < start:  # inside the span before
            continue
        end = span[0] if span else len(text)
        # A gap is cut where a span starts, so nothing before a span reads as part of it; what
        # ends a span (`}`, `]`, the space after a URL) reads like a space to the lookbehind.
        gap = text[:end]
        for m in _NUMBER_RE.finditer(gap, start):
            if not _LABEL_RE.search(gap, max(0, m.start() - 24), m.start()):
                matches.append(m)
        start = span[1] if span else end
    return matches


def number_tokens(text: str) -> list[str]:
    """The number tokens of `text` as written, in order, by the rules of the module docstring: the one
    tokenizer behind the number check here and the prose gate (`reports.prose`)."""
    return [m.group() for m in _number_matches(text)]


def _parse(token: str) -> tuple[float, int | None, int, bool]:
    """(value, decimals written or None with an exponent, significant digits, is a percentage)."""
    plain = token.rstrip("% ").replace("−", "-").replace(",", "").lower()
    mantissa, _, exponent = plain.partition("e")
    value = float(plain)
    decimals = None if exponent else len(mantissa.partition(".")[2])
    significant = len(mantissa.lstrip("-").replace(".", "").lstrip("0"))
    return value, decimals, significant, token.endswith("%")


def _traces_to(value: float, decimals: int | None, significant: int, candidate: float) -> bool:
    value, candidate = abs(value), abs(candidate)
    if format_number(value) == format_number(candidate) or math.isclose(value, candidate, rel_tol=1e-3):
        return True
    return decimals is not None and significant >= 2 and math.isclose(round(candidate, decimals), value, rel_tol=1e-9)


def _candidates(facts: Iterable[Fact] | Mapping[str, Fact], allowed: Iterable[float | str]) -> list[float]:
    values: list[float] = []
    for fact in facts.values() if isinstance(facts, Mapping) else facts:
        values += [x for x in (fact.value, fact.ci_low, fact.ci_high, fact.n) if x is not None]
    for item in allowed:
        if isinstance(item, str):  # a reference or any text: every number in it is allowed
            values += [_parse(m.group())[0] for m in _NUMBER_RE.finditer(item)]
        else:
            values.append(float(item))
    return [v for v in values if math.isfinite(v)]


def _is_traced(token: str, candidates: Sequence[float]) -> bool:
    value, decimals, significant, percent = _parse(token)
    readings = [(value, decimals)]
    if percent:  # 42% reads as 0.42, to two more decimals
        readings.append((value / 100, None if decimals is None else decimals + 2))
    return any(_traces_to(v, d, significant, c) for v, d in readings for c in candidates)


def untraced_numbers(
    text: str, facts: Iterable[Fact] | Mapping[str, Fact], allowed: Iterable[float | str] = ()
) -> list[str]:
    """Number tokens in prose that trace to no fact and no allowed number, as written, in order."""
    candidates = _candidates(facts, allowed)
    return [m.group() for m in _number_matches(text) if not _is_traced(m.group(), candidates)]


def strip_untraced_numbers(
    text: str, facts: Iterable[Fact] | Mapping[str, Fact], allowed: Iterable[float | str] = ()
) -> str:
    """Last resort for the writer: replace each untraced number with a visible REMOVED marker."""
    candidates = _candidates(facts, allowed)
    # Removing a token can expose a neighbour that was not a token before ("45%2"), so repeat;
    # every pass removes digits and adds none, so this ends.
    while untraced := [m for m in _number_matches(text) if not _is_traced(m.group(), candidates)]:
        pieces, last = [], 0
        for m in untraced:
            pieces += [text[last : m.start()], REMOVED]
            last = m.end()
        text = "".join(pieces) + text[last:]
    return text


# ---- the checks -----------------------------------------------------------------------------


def _failure(name: str, section: str, message: str) -> CheckResult:
    return CheckResult(name=name, ok=False, section=section, message=message)


def _check_numbers(report: Report, allowed: Sequence[float | str]) -> list[CheckResult]:
    facts = report.fact_map()
    results = []
    for section in report.sections:
        numbers = list(dict.fromkeys(untraced_numbers(section.body, facts, allowed)))
        if numbers:
            results.append(
                _failure(
                    NUMBERS_TRACED,
                    section.key,
                    f"Numbers not traced to any fact: {', '.join(numbers)}. Refer to facts by "
                    "placeholder ({{F1}}) or remove the numbers.",
                )
            )
    return results


def _check_facts(report: Report) -> list[CheckResult]:
    known = report.fact_map()
    results = []
    for section in report.sections:
        unknown = [i for i in dict.fromkeys(FACT_RE.findall(section.body)) if i not in known]
        malformed = [m.group() for m in _MALFORMED_PLACEHOLDER_RE.finditer(section.body) if not FACT_RE.fullmatch(m.group())]
        if unknown:
            results.append(
                _failure(FACTS_EXIST, section.key, f"Placeholders name no fact: {', '.join(unknown)}. Use only the listed fact ids.")
            )
        if malformed:
            results.append(
                _failure(FACTS_EXIST, section.key, f"Malformed placeholders: {', '.join(malformed)}. Write them as {{{{F1}}}}.")
            )
    return results


def _check_figures(report: Report) -> list[CheckResult]:
    known = {f.id for f in report.figures}
    referenced: set[str] = set()
    results = []
    for section in report.sections:
        ids = FIGURE_RE.findall(section.body) + FIGURE_RE.findall(section.generated)
        referenced.update(ids)
        unknown = [i for i in dict.fromkeys(ids) if i not in known]
        if unknown:
            results.append(
                _failure(FIGURES_REFERENCED, section.key, f"References to figures that do not exist: {', '.join(unknown)}.")
            )
    unreferenced = [f.id for f in report.figures if f.id not in referenced]
    if unreferenced:
        results.append(
            _failure(
                FIGURES_REFERENCED,
                "results",
                f"Figures never referenced: {', '.join(unreferenced)}. Discuss each as [Figure figN].",
            )
        )
    return results


def _check_verdicts(report: Report, hypothesis_ids: Sequence[str]) -> list[CheckResult]:
    judged = {v.hypothesis_id for v in report.verdicts}
    missing = [h for h in hypothesis_ids if h not in judged]
    if not missing:
        return []
    return [_failure(HYPOTHESES_HAVE_VERDICTS, "results", f"Hypotheses without a verdict: {', '.join(missing)}.")]


def _check_sections(report: Report, required: Sequence[str]) -> list[CheckResult]:
    results = []
    present = {s.key for s in report.sections}
    for key in required:
        if key not in present:
            results.append(_failure(SECTIONS_PRESENT, key, f"Section '{key}' is missing."))
    for section in report.sections:
        if not section.body.strip() and not section.generated.strip():
            results.append(_failure(SECTIONS_PRESENT, section.key, f"Section '{section.key}' is empty."))
    return results


def run_checks(
    report: Report,
    hypothesis_ids: Sequence[str],
    required_sections: Sequence[str] = SECTION_KEYS,
    allowed_numbers: Sequence[float | str] = (),
) -> list[CheckResult]:
    """One failing result per (check, section), and one passing result for each check that passes.

    Numbers the report itself allows (`Report.allowed_numbers`) count as traced, besides `allowed_numbers`.
    """
    found = {
        NUMBERS_TRACED: _check_numbers(report, [*report.allowed_numbers, *allowed_numbers]),
        FACTS_EXIST: _check_facts(report),
        FIGURES_REFERENCED: _check_figures(report),
        HYPOTHESES_HAVE_VERDICTS: _check_verdicts(report, hypothesis_ids),
        SECTIONS_PRESENT: _check_sections(report, required_sections),
    }
    return [result for name, failures in found.items() for result in failures or [CheckResult(name=name, ok=True)]]


def comments_from_checks(checks: Iterable[CheckResult]) -> list[SectionComment]:
    """Failed checks as must-fix comments for the reviser."""
    return [
        SectionComment(section=c.section or WHOLE_REPORT, comment=f"[{c.name}] {c.message}", priority=1, source="check")
        for c in checks
        if not c.ok
    ]
