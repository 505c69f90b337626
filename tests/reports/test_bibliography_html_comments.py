"""Citations only from a bibliography file, the self-contained HTML, and the human comments format."""

from __future__ import annotations

import re

import pytest

from reports.citations import load_bibliography, match_references, parse_bibtex, shipped
from reports.html import render_html
from reports.human import parse_comments
from reports.markdown import render_markdown
from societas.errors import SocietasError
from tests.reports.test_latex import png, report

USER_BIB = r"""
@comment{ a user's own file }
@Article{doe2020,
  author = "Doe, Jane and Roe, Richard",
  title = {A {Study} of {\"U}ber-Models},
  journal = {Journal of Tests}, year = 2020,
}
@book{nokeywords, author = {Smith, Adam}, title = {The Wealth of Nations}, year = {1776}}
"""


def test_shipped_bibliography_covers_the_library_scenarios():
    keys = {r.key for r in shipped()}
    assert {"schelling1971", "granovetter1978", "axelrod1997", "deffuant2000", "bass1969", "arthur1994",
            "kermack1927", "dragulescu2000", "maki1973", "daley1965", "becker1968", "holley1975",
            "fehr2000"} <= keys
    assert all(r.year and r.title and r.authors for r in shipped())


def test_theories_match_entries_by_keyword_and_nothing_is_invented():
    refs = match_references(["Schelling's segregation model", "Smith (2023) Quantum Opinion Theory"], shipped())
    assert [r.key for r in refs] == ["schelling1971"]
    assert match_references(["voter model"], shipped()) == match_references(["Voter Model"], shipped())
    assert not match_references(["a theory nobody wrote"], shipped())


def test_user_bibliography_is_parsed_and_added():
    refs = parse_bibtex(USER_BIB)
    assert [r.key for r in refs] == ["doe2020", "nokeywords"]
    assert refs[0].title == "A Study of Über-Models" and refs[0].year == "2020"
    assert refs[1].keywords == ["Smith"]  # no keywords: the first author's surname


def test_unreadable_or_empty_user_bibliography_is_a_user_error(tmp_path):
    with pytest.raises(SocietasError, match="cannot read"):
        load_bibliography(tmp_path / "missing.bib")
    (tmp_path / "empty.bib").write_text("% nothing\n")
    with pytest.raises(SocietasError, match="no usable entries"):
        load_bibliography(tmp_path / "empty.bib")
    (tmp_path / "user.bib").write_text(USER_BIB)
    assert {"doe2020", "schelling1971"} <= {r.key for r in load_bibliography(tmp_path / "user.bib")}


def test_odd_authors_and_unclosed_quotes_in_a_user_bibliography_do_not_crash(tmp_path):
    bib = tmp_path / "odd.bib"
    bib.write_text("@article{a, author = {,}, title = {T}}\n@article{b, author = {, John}, title = {U}}\n")
    assert {r.key: r.keywords for r in parse_bibtex(bib.read_text())} == {"a": [], "b": []}
    bib.write_text('@article{c, author = "Unclosed, title = {T}}\n')
    with pytest.raises(SocietasError, match="unterminated quoted value of author"):
        load_bibliography(bib)


def test_markdown_lists_the_references_and_cites_them_in_background():
    md = render_markdown(report())
    assert "## References\n\n1. Schelling, Thomas C. (1971). Dynamic Models of Segregation." in md
    assert "This study draws on the following literature: [1]." in md


def test_html_is_self_contained_with_figures_inlined_and_text_escaped(tmp_path):
    png(tmp_path / "figures" / "a.png")
    png(tmp_path / "figures" / "b.png")
    page = render_html(report({"results": "<script>alert(1)</script> see [Figure fig2] {{F1}}"}), tmp_path)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 2
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # nothing external
    assert '<a href="#fig2">Figure 2</a>' in page and "0.423 (95% CI 0.4 to 0.45, n = 5)" in page
    assert "<h2>Results</h2>" in page and "<table>" in page


def test_comments_file_names_sections_by_key_or_title():
    feedback = parse_comments("# my notes\npreamble ignored\n## results\nSay more about F1.\n\nAnd the CI.\n"
                              "## Simulation design\nName the seeds.\n")
    assert feedback.comments == {"results": "Say more about F1.\n\nAnd the CI.", "design": "Name the seeds."}
    assert not feedback.approves
    assert parse_comments("  Approve \n").approves


def test_comments_file_with_an_unknown_section_or_no_comment_is_refused():
    with pytest.raises(SocietasError, match="unknown section 'Appendix'"):
        parse_comments("## Appendix\ntext")
    with pytest.raises(SocietasError, match="no comments"):
        parse_comments("## results\n\n")
