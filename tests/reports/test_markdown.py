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
    fact = Fact(id="F3", description="a | b\nc", value=1.5, unit="%", source="x|y")
    assert "| F3 | a \\| b c | 1.5 % | — | — | x\\|y |" in facts_table([fact])
    verdict = Verdict(hypothesis_id="H2", statement="s", verdict="refuted", reason="{{F1}} | low")
    assert "| H2: s | refuted | 0.423 (95% CI 0.4 to 0.45, n = 5) \\| low |" in verdicts_table([verdict], [GINI])


def test_empty_tables_render_nothing():
    assert facts_table([]) == "" and verdicts_table([]) == ""


def test_prose_is_not_escaped():
    r = with_section(report(), "discussion", body="*Emphasis* and a_b and <tag> stay as written.")
    assert "*Emphasis* and a_b and <tag> stay as written." in render_markdown(r)
