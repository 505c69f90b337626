"""The Markdown report: facts and figure numbers filled in, figures linked from report/vN/, tables."""

from reports.markdown import facts_table, render_markdown, substitute, verdicts_table
from reports.models import SECTION_KEYS, SECTION_TITLES, Fact, Figure, Report, Section, Verdict

GINI = Fact(id="F1", description="final gini, m=1", value=0.4231, ci_low=0.4, ci_high=0.45, n=5, source="final.parquet: gini")
COUNT = Fact(id="F2", description="clusters", value=12, source="final.parquet: clusters")


def report(**overrides) -> Report:
    sections = [Section(key=k, title=SECTION_TITLES[k], body=f"Prose of {k}.") for k in SECTION_KEYS]
    fields = dict(
        version=1,
        title="Segregation from mild preferences",
        sections=sections,
        facts=[GINI, COUNT],
        figures=[
            Figure(id="fig1", path="figures/timeseries_gini.png", caption="Gini over time"),
            Figure(id="fig2", path="figures/sweep_gini.png", caption="Gini against m"),
        ],
        verdicts=[Verdict(hypothesis_id="H1", statement="Gini rises with m", verdict="supported", reason="trend p < .01")],
    )
    return Report(**(fields | overrides))


def with_section(r: Report, key: str, **fields) -> Report:
    r.sections = [s.model_copy(update=fields) if s.key == key else s for s in r.sections]
    return r


def test_placeholder_is_replaced_by_value_with_interval():
    assert substitute("Gini was {{F1}}.", [GINI]) == "Gini was 0.423 (95% CI 0.4 to 0.45, n = 5)."
    assert substitute("{{ F2 }} clusters", {"F2": COUNT}) == "12 clusters"


def test_unknown_placeholder_renders_as_missing_fact():
    assert substitute("Gini was {{F9}}.", [GINI]) == "Gini was [missing fact F9]."


def test_figure_references_are_numbered_in_report_order():
    figures = report().figures
    assert substitute("See [Figure fig2] and [Figure fig1].", [], figures) == "See Figure 2 and Figure 1."
    assert substitute("See [Figure fig7].", [], figures) == "See [missing figure fig7]."
    assert substitute("See [Figure fig2].", []) == "See [Figure fig2]."  # no figures given: left alone


def test_report_has_title_and_sections_in_order():
    md = render_markdown(report())
    assert md.startswith("# Segregation from mild preferences\n")
    positions = [md.index(f"## {SECTION_TITLES[k]}\n") for k in SECTION_KEYS]
    assert positions == sorted(positions)


def test_body_then_generated_markdown_with_both_substituted():
    r = with_section(report(), "design", body="Gini {{F1}}, see [Figure fig1].", generated="| a |\n| --- |\n| {{F2}} |")
    md = render_markdown(r)
    assert "Gini 0.423 (95% CI 0.4 to 0.45, n = 5), see Figure 1.\n\n| a |\n| --- |\n| 12 |" in md


def test_figures_are_embedded_in_results_relative_to_report_folder():
    md = render_markdown(report())
    results = md[md.index("## Results") : md.index("## Discussion")]
    assert "![Figure 1: Gini over time](../../figures/timeseries_gini.png)" in results
    assert "![Figure 2: Gini against m](../../figures/sweep_gini.png)" in results
    assert md.count("![Figure") == 2


def test_results_gets_facts_and_verdicts_tables():
    md = render_markdown(report())
    results = md[md.index("## Results") : md.index("## Discussion")]
    assert "| F1 | final gini, m=1 | 0.423 | 0.4 to 0.45 | 5 | final.parquet: gini |" in results
    assert "| F2 | clusters | 12 | — | — | final.parquet: clusters |" in results
    assert "| H1: Gini rises with m | supported | trend p < .01 |" in results


def test_figures_and_tables_survive_a_missing_results_section():
    r = report()
    r.sections = [s for s in r.sections if s.key != "results"]
    md = render_markdown(r)
    assert "## Results" in md and "../../figures/sweep_gini.png" in md and "| F1 |" in md


def test_table_cells_escape_pipes_and_newlines():
    fact = Fact(id="F3", description="a | b\nc", value=1.5, source="x|y")
    assert "| F3 | a \\| b c | 1.5 | — | — | x\\|y |" in facts_table([fact])
    verdict = Verdict(hypothesis_id="H2", statement="s", verdict="refuted", reason="{{F1}} | low")
    assert "| H2: s | refuted | 0.423 (95% CI 0.4 to 0.45, n = 5) \\| low |" in verdicts_table([verdict], [GINI])


SHARE = Fact(id="F4", description="Share of runs that settled", value=0.45, ci_low=0.38, ci_high=0.52, n=20,
             unit="share", source="metrics.parquet")


def test_a_share_reads_as_a_percentage_in_placeholders_and_the_facts_table():
    assert substitute("Settled in {{F4}} of runs.", [SHARE]) == "Settled in 45% (95% CI 38% to 52%, n = 20) of runs."
    assert substitute("{{F4}}", [SHARE.model_copy(update={"value": 1.0, "ci_low": 1.0, "ci_high": 1.0})]) == "100%"
    assert "| F4 | Share of runs that settled | 45% | 38% to 52% | 20 | metrics.parquet |" in facts_table([SHARE])


def test_a_share_reads_as_a_percentage_in_latex_and_html_too():
    from reports.html import render_html
    from reports.latex import render_latex

    r = with_section(report(facts=[GINI, COUNT, SHARE]), "results", body="Settled in {{F4}} of runs.")
    assert r"Settled in 45\% (95\% CI 38\% to 52\%, n = 20) of runs." in render_latex(r)
    assert r"45\% & 38\% to 52\%" in render_latex(r)
    html = render_html(r)
    assert "Settled in 45% (95% CI 38% to 52%, n = 20) of runs." in html and "<td>45%</td><td>38% to 52%</td>" in html


def test_steps_carry_their_unit_and_facts_saved_before_units_still_load():
    steps = Fact(id="F5", description="Steps until it settled", value=12, ci_low=10, ci_high=14.5, n=6, unit="steps",
                 source="metrics.parquet")
    assert steps.render() == "12 steps (95% CI 10 to 14.5, n = 6)"
    old = Fact.model_validate_json('{"id": "F6", "description": "d", "value": 0.25, "unit": "", "source": "s"}')
    assert old.unit == "value" and old.render() == "0.25"


def test_empty_tables_render_nothing():
    assert facts_table([]) == "" and verdicts_table([]) == ""


def test_prose_is_not_escaped_but_raw_html_is():
    r = with_section(report(), "discussion", body="*Emphasis* and a_b and x < 3 stay; <tag> does not.")
    assert "*Emphasis* and a_b and x < 3 stay; &lt;tag> does not." in render_markdown(r)
