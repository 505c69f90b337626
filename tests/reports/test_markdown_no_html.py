"""report.md carries no raw HTML: a hostile bibliography entry or model prose shows as text, never as a
live tag, while code spans and ordinary comparisons read as written."""

from __future__ import annotations

import re

from reports.citations import parse_bibtex
from reports.markdown import no_raw_html, render_markdown
from tests.reports.test_latex import report

HOSTILE_BIB = r"""
@article{evil2020,
  author = {Mallory, <img src=x onerror=alert(1)>},
  title = {Models <script>alert("bib")</script> of Trust},
  journal = {J. <iframe src=//evil>}, year = 2020,
}
"""
LIVE_TAG = re.compile(r"<\s*/?\s*(script|img|iframe|svg|a|style)\b", re.IGNORECASE)


def test_a_hostile_bibliography_entry_leaves_no_live_tag_in_report_md():
    refs = parse_bibtex(HOSTILE_BIB)
    md = render_markdown(report(references=refs))
    assert not LIVE_TAG.search(md), md
    assert "Models &lt;script>alert" in md  # the text is kept, shown literally


def test_model_prose_and_the_title_leave_no_live_tag():
    r = report(bodies={"discussion": "Trust <script>steal()</script> grows <img src=x onerror=alert(1)>."},
               title="On <svg onload=alert(1)> trust")
    md = render_markdown(r)
    assert not LIVE_TAG.search(md), md


def test_code_spans_and_comparisons_are_kept_as_written():
    assert no_raw_html("run `a <b>` then") == "run `a <b>` then"
    assert no_raw_html("x < 3 and 2 > 1") == "x < 3 and 2 > 1"
    assert no_raw_html(r"an escaped \`<script>\` is not a span") == r"an escaped \`&lt;script>\` is not a span"
    assert no_raw_html("<!-- c --> <?php ?> </b>") == "&lt;!-- c --> &lt;?php ?> &lt;/b>"
