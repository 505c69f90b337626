"""Deterministic checks: every number traces to a fact, every figure and hypothesis is covered."""

from hypothesis import given, settings
from hypothesis import strategies as st

from reports.checks import (
    FACTS_EXIST,
    FIGURES_REFERENCED,
    HYPOTHESES_HAVE_VERDICTS,
    NUMBERS_TRACED,
    REMOVED,
    SECTIONS_PRESENT,
    comments_from_checks,
    run_checks,
    strip_untraced_numbers,
    untraced_numbers,
)
from reports.models import SECTION_KEYS, SECTION_TITLES, Fact, Figure, Report, Section, Verdict

GINI = Fact(id="F1", description="final gini", value=0.4231, ci_low=0.4, ci_high=0.45, n=5, source="final.parquet")
SHARE = Fact(id="F2", description="share segregated", value=0.37, source="final.parquet")
FACTS = [GINI, SHARE]


def good_report() -> Report:
    bodies = {k: f"Prose of {k}." for k in SECTION_KEYS}
    bodies["results"] = "Gini reached {{F1}} ([Figure fig1]); [Figure fig2] shows the sweep."
    return Report(
        version=1,
        title="t",
        sections=[Section(key=k, title=SECTION_TITLES[k], body=bodies[k]) for k in SECTION_KEYS],
        facts=FACTS,
        figures=[Figure(id="fig1", path="figures/a.png", caption="a"), Figure(id="fig2", path="figures/b.png", caption="b")],
        verdicts=[Verdict(hypothesis_id="H1", statement="s", verdict="supported", reason="r")],
    )


def with_body(r: Report, key: str, body: str, generated: str = "") -> Report:
    r.sections = [s.model_copy(update={"body": body, "generated": generated}) if s.key == key else s for s in r.sections]
    return r


def failures(r: Report, name: str, hypotheses=("H1",), **kwargs) -> list:
    return [c for c in run_checks(r, list(hypotheses), **kwargs) if c.name == name and not c.ok]


# ---- what is a number -----------------------------------------------------------------------


def test_number_not_in_facts_is_flagged():
    assert untraced_numbers("Gini rose to 0.61 in 1,200 runs, or 55% of 2e-3.", FACTS) == ["0.61", "1,200", "55%", "2e-3"]


def test_placeholder_values_are_not_flagged():
    assert untraced_numbers("Gini was {{F1}} and {{F2}}; see [Figure fig3].", FACTS) == []


def test_numbers_equal_to_a_fact_or_its_interval_pass():
    text = "Gini was 0.423 (0.4 to 0.45, n = 5), about 0.42; the share was 37% or -0.37."
    assert untraced_numbers(text, FACTS) == []


def test_numbers_rounded_as_written_trace_to_their_fact():
    assert untraced_numbers("Gini was 0.42, i.e. 42% or 42.3%; the share 37.0%.", FACTS) == []


def test_rounding_to_one_significant_digit_does_not_trace():
    assert untraced_numbers("Gini was about 0.4 or 0.5.", [SHARE]) == ["0.4", "0.5"]


def test_digits_inside_identifiers_and_labels_are_not_numbers():
    text = "H1, F3, SIR2, 2D, fig1, COVID-19 and v1.2.3; Figure 2, Table 1 and Hypothesis 2 say two things."
    assert untraced_numbers(text, []) == []


def test_list_markers_urls_and_dois_are_not_numbers():
    text = "1. See https://example.org/run/42 and doi:10.1086/226707.\n2) Done."
    assert untraced_numbers(text, []) == []


def test_citation_years_in_allowed_list_pass():
    text = "Thresholds (Granovetter 1978) and segregation (Schelling, 1971)."
    assert untraced_numbers(text, [], allowed=["Granovetter, M. (1978). Threshold models.", 1971]) == []
    assert untraced_numbers(text, [], allowed=[1978]) == ["1971"]


def test_numbers_the_saved_report_allows_count_as_traced_in_later_checks():
    """A regenerate, a review or a test re-checking report.json agrees with the writer's sanitizer."""
    r = with_body(good_report(), "design", "We ran 4 conditions.")
    assert failures(r, NUMBERS_TRACED)
    r.allowed_numbers = ["4"]
    assert not failures(r, NUMBERS_TRACED)


# ---- the sanitizer --------------------------------------------------------------------------


def test_sanitizer_removes_only_untraced_numbers():
    text = "Gini was {{F1}}, i.e. 0.423, not 0.9 in 12 runs (H2)."
    assert strip_untraced_numbers(text, FACTS) == f"Gini was {{{{F1}}}}, i.e. 0.423, not {REMOVED} in {REMOVED} runs (H2)."


def test_sanitizer_catches_numbers_exposed_by_a_removal():
    assert untraced_numbers(strip_untraced_numbers("45%2", []), []) == []


_pieces = st.one_of(
    st.floats(-1e7, 1e7, allow_nan=False).map(lambda x: f"{x:.{abs(int(x)) % 4}f}"),
    st.integers(-10**7, 10**7).map(lambda i: f"{i:,}"),
    st.sampled_from(["{{F1}}", "{{F9}}", "[Figure fig1]", "H1", "COVID-19", "0.423", "37%", "1e-3", "%", ".", ",", "-", "Figure "]),
    st.text(alphabet="abcxyzE .,-%:/()\n0123456789", max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_pieces, max_size=12), st.sampled_from(["", " ", "\n"]))
def test_sanitized_text_has_no_untraced_numbers(pieces, separator):
    text = separator.join(pieces)
    assert untraced_numbers(strip_untraced_numbers(text, FACTS, allowed=[1978]), FACTS, allowed=[1978]) == []


# ---- the report checks ----------------------------------------------------------------------


def test_good_report_passes_every_check_once():
    checks = run_checks(good_report(), ["H1"])
    assert [c.name for c in checks] == [NUMBERS_TRACED, FACTS_EXIST, FIGURES_REFERENCED, HYPOTHESES_HAVE_VERDICTS, SECTIONS_PRESENT]
    assert all(c.ok for c in checks)


def test_untraced_numbers_are_reported_per_section():
    r = with_body(good_report(), "discussion", "Up 0.9, then 0.9 again, then 14.")
    r = with_body(r, "abstract", "About 3 runs.")
    found = failures(r, NUMBERS_TRACED)
    assert [(c.section, "0.9, 14" in c.message) for c in found] == [("abstract", False), ("discussion", True)]


def test_numbers_in_generated_markdown_are_trusted():
    assert failures(with_body(good_report(), "reproducibility", "See below.", "seeds: 1, 2, 3"), NUMBERS_TRACED) == []


def test_allowed_numbers_reach_the_number_check():
    r = with_body(good_report(), "background", "Granovetter (1978) proposed thresholds.")
    assert failures(r, NUMBERS_TRACED)
    assert failures(r, NUMBERS_TRACED, allowed_numbers=[1978]) == []


def test_unknown_and_malformed_placeholders_fail():
    r = with_body(good_report(), "discussion", "It was {{F9}}, and {F1} too.")
    messages = [c.message for c in failures(r, FACTS_EXIST)]
    assert len(messages) == 2 and "F9" in messages[0] and "{F1}" in messages[1]


def test_unreferenced_figure_fails():
    r = with_body(good_report(), "results", "Gini reached {{F1}} ([Figure fig1]).")
    (failure,) = failures(r, FIGURES_REFERENCED)
    assert failure.section == "results" and "fig2" in failure.message


def test_figure_referenced_in_generated_markdown_counts():
    r = with_body(good_report(), "results", "Gini reached {{F1}} ([Figure fig1]).", "[Figure fig2]: the sweep")
    assert failures(r, FIGURES_REFERENCED) == []


def test_reference_to_unknown_figure_fails_in_its_section():
    r = with_body(good_report(), "discussion", "As [Figure fig5] shows.")
    (failure,) = failures(r, FIGURES_REFERENCED)
    assert failure.section == "discussion" and "fig5" in failure.message


def test_every_hypothesis_needs_a_verdict():
    (failure,) = failures(good_report(), HYPOTHESES_HAVE_VERDICTS, hypotheses=("H1", "H2", "H3"))
    assert "H2, H3" in failure.message


def test_missing_section_fails():
    r = good_report()
    r.sections = [s for s in r.sections if s.key != "limitations"]
    (failure,) = failures(r, SECTIONS_PRESENT)
    assert failure.section == "limitations" and "missing" in failure.message


def test_empty_section_fails_unless_generated_text_stands_in():
    (failure,) = failures(with_body(good_report(), "conclusion", "  \n"), SECTIONS_PRESENT)
    assert failure.section == "conclusion" and "empty" in failure.message
    assert failures(with_body(good_report(), "reproducibility", "", "`societas run ...`"), SECTIONS_PRESENT) == []


def test_required_sections_can_be_narrowed():
    r = good_report()
    r.sections = [s for s in r.sections if s.key in ("abstract", "results")]
    assert failures(r, SECTIONS_PRESENT, required_sections=("abstract", "results")) == []


def test_failed_checks_become_must_fix_comments():
    r = with_body(good_report(), "discussion", "Up 0.9 per [Figure fig5].")
    comments = comments_from_checks(run_checks(r, ["H1"]))
    assert {(c.section, c.priority, c.source) for c in comments} == {("discussion", 1, "check")}
    assert [c.comment.split("]")[0] for c in comments] == [f"[{NUMBERS_TRACED}", f"[{FIGURES_REFERENCED}"]
