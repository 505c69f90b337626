"""The prose sanitizer's handling of list markers the model runs into its sentences."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from llms.client import LLMClient
from reports.checks import untraced_numbers
from reports.models import SECTION_KEYS, SECTION_TITLES
from reports.prose import contradictions, leaked_markup, number_violations, repeated_sentences, unfinished
from researcher.analysis import analyze
from researcher.narrative import computed_effects, narrative
from researcher.writing import WritingContext, build_sections, gated_section, prose_gate
from simulator import load_scenario
from tests.doubles.scripted_openai_server import ScriptedOpenAIServer, reply


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> WritingContext:
    """A finished study in which final gini falls as m rises (H1 expects a decrease: supported)."""
    from tests.researcher.test_analysis import one_test, write_run

    run_dir = tmp_path_factory.mktemp("study")
    design, plan = one_test("decrease")
    with pytest.MonkeyPatch.context() as mp:  # figures are not what these tests look at
        mp.setattr("researcher.analysis.plot_timeseries", lambda *a, **k: None)
        mp.setattr("researcher.analysis.plot_sweep", lambda *a, **k: None)
        findings = analyze(write_run(run_dir, lambda x, rng: 1 - 0.2 * x + rng.normal(0, 0.01)), design, plan)
    return WritingContext(topic="Does a larger m make wealth more equal?", plan=plan, design=design,
                          spec=load_scenario("boltzmann_wealth"), findings=findings, run_dir=Path(run_dir),
                          config={"seeds": 6}, notes=[], models={"researcher": "scripted"})


def test_list_markers_at_sentence_starts_are_not_numbers():
    """The model runs lists into prose; its markers are not quantities to trace (or to remove)."""
    text = "Related questions: 1. Is it possible? 2. Does it matter?\n3) Who decides? (4) Why now?"
    assert untraced_numbers(text, []) == []


def test_numbers_inside_sentences_are_kept_and_still_flagged():
    text = "The share rose by 7. Then it fell to 3 agents. It was 12.5 percent."
    assert untraced_numbers(text, []) == ["7", "3", "12.5"]


def test_a_number_ending_a_clause_is_not_taken_for_a_list_marker():
    assert untraced_numbers("The number of agents that defected was: 37. This shows a shift.", []) == ["37"]
    assert untraced_numbers("The answer is: 1. That settles it.", []) == ["1"]  # a lone 1 is no list


def test_limitations_say_which_decision_model_drove_the_agents(tmp_path):
    from researcher.writing import agents_limitation

    assert agents_limitation(tmp_path) == "Agents followed the scenario's rule-based decision model."
    (tmp_path / "data").mkdir()
    agents = {"used": "llm", "reason": "auto: about 40 LLM calls fit the budget of 500", "model": "smollm2-135m",
              "llm_agent_types": ["patron"], "totals": {"llm_agent_decisions": 240, "llm_prompts": 40,
                                                        "llm_invalid": 3, "llm_failed": 1}}
    (tmp_path / "data" / "agents.json").write_text(json.dumps(agents))
    text = agents_limitation(tmp_path)
    assert "patron" in text and "smollm2-135m" in text and "240 agent decisions from 40 distinct prompts" in text
    assert "4 answers were invalid or failed" in text
    (tmp_path / "data" / "agents.json").write_text(json.dumps({**agents, "used": "rule", "reason": "rule mode"}))
    assert agents_limitation(tmp_path) == "Agents followed the scenario's rule-based decision model (rule mode)."


def test_a_low_score_without_comments_points_the_revision_at_the_weakest_dimension():
    from reports.models import RubricScores, SectionComment
    from researcher.reviewing import rubric_comments

    low = RubricScores(soundness=3, insight=2, structure=4, content=2, utility=3, overall=2)
    [comment] = rubric_comments(low, [], bar=4)
    assert comment.section == "discussion" and "insight 2/5" in comment.comment  # insight ties content, comes first
    assert rubric_comments(low, [SectionComment(section="results", comment="x", priority=1)], bar=4) == []
    assert rubric_comments(low, [SectionComment(section="results", comment="x", priority=3)], bar=4) != []
    assert rubric_comments(low.model_copy(update={"overall": 4}), [], bar=4) == []
    assert rubric_comments(None, [], bar=4) == []


def test_the_designs_own_counts_reach_a_report_only_in_the_codes_narrative(study):
    """'20 conditions, including 4 seeds' passed once because 20 and 4 were the design's own numbers."""
    assert number_violations("We ran 20 conditions, including 4 seeds.") == ["20", "4"]
    design = narrative("design", study)
    assert "over 4 values (1, 2, 3, 4)" in design and "6 seeds, 24 runs in all" in design


# ---- the prose gate in the writer, against a scripted model answering badly or well ---------------


class SectionWriter(ScriptedOpenAIServer):
    """Answers each section's prompt with `texts[section title]` (or `texts["*"]`), every time it is asked."""

    def __init__(self, texts: dict[str, str]) -> None:
        super().__init__()
        self.texts = texts

    def _next_step(self, body):
        super()._next_step(body)
        title = re.search(r"^Section: (.+)$", body["messages"][-1]["content"], re.MULTILINE).group(1)
        return reply(self.texts.get(title, self.texts["*"]))


# As SmolLM2-135M writes (the examples): loops, numbers, an unfinished end, markup, a claim
# against the data (gini falls with m in `study`).
TINY = {
    "*": "The Introduction of this study is about the simulation. The Introduction of this study is about the "
         "simulation. The Introduction of this study is about the simulation. The",
    "Abstract": "Gini rises with m in the simulated economy. Two of the runs were unequal.",
    "Results": "The study was conducted in a laboratory with 20 conditions, including 4 seeds. "
               "The gini of wealth settles in every run. {% for h in hypotheses %}Gini is high.{% endfor %}",
    "Discussion": "The gini fell from 10% to 5% over 20 steps. Gini rises with m, so inequality grows. "
                  "Reviewer comment: discuss more.",
}


def capable(study) -> dict[str, str]:
    """As a capable model writes: on topic, numbers only as placeholders, directions as computed."""
    rho, diff = (next(f.id for f in study.findings.facts if f.description.startswith(prefix))
                 for prefix in ("Spearman rank correlation", "Difference in mean"))
    return {
        "Abstract": "This study examines how the parameter m shapes wealth inequality in a simulated economy. "
                    "Final gini falls as m rises, which supports the stated hypothesis.",
        "Introduction and research questions": "Inequality is a central concern of economics, and simulation lets "
                    "us vary its causes at will. We ask whether raising m lowers the gini coefficient of wealth.",
        "Background": "Exchange models show how inequality can emerge among identical agents. The gini "
                      "coefficient summarises that inequality in a single figure.",
        "Simulation design": "Agents exchange wealth in pairs at every step, and m sets the terms of that exchange. "
                             "The experiment sweeps m and records the final gini of every seed.",
        "Results": f"Final gini declines steadily as m increases, with a Spearman correlation of {{{{{rho}}}}}. "
                   f"The gap in mean gini between the extreme values of m is {{{{{diff}}}}}.",
        "Discussion": "The results support the view that a larger m evens out wealth in this economy. Whether "
                      "the same holds outside the simulated range of m is open.",
        "Limitations": "The study varies m only; the parameters held fixed may shape gini in ways it cannot see.",
        "Conclusion": "Raising m lowers final gini in this simulated economy.",
        "Reproducibility": "The run folder holds the scenario, the seeds and the data, so the study of m and gini "
                           "can be rerun exactly.",
        "*": "unused",
    }


def write_with(texts: dict[str, str], study) -> tuple[list, list[str], int]:
    with SectionWriter(texts) as server:
        sections, notes = build_sections(LLMClient.from_spec(server.url), study)
        return sections, notes, server.request_count


def test_a_report_written_by_the_tiny_model_has_no_numbers_loops_unfinished_ends_or_contradictions(study):
    sections, notes, requests = write_with(TINY, study)
    effects = computed_effects(study.findings)
    assert [e.direction for e in effects] == ["decrease"]
    assert requests == 2 * len(SECTION_KEYS)  # every section failed once and got its one repair turn
    for s in sections:
        shown = f"{s.body}\n\n{s.generated.split(chr(10) * 2)[0] if s.prose_source != 'model' else ''}"
        assert number_violations(s.body) == [], s.key
        assert repeated_sentences(shown) == [] and unfinished(s.body or "x.") is None, s.key
        assert contradictions(shown, effects) == [] and leaked_markup(s.body) == [], s.key
        assert s.prose_source in ("code", "model+code") and s.dropped_sentences > 0, s.key
    results = next(s for s in sections if s.key == "results")
    assert results.prose_source == "model+code" and results.body == "The gini of wealth settles in every run."
    assert results.generated.startswith("H1 is supported. The final value of gini decreases significantly")
    limitations = next(s for s in sections if s.key == "limitations").generated.split("\n\n")[-1]
    # Reproducibility is not about the variables, so its first sentence needs no key term to stand
    assert limitations.startswith("Prose: the model's text beside the code's narrative in Results, Reproducibility; "
                                  "the code's narrative alone in Abstract, ")
    assert any("the prose gate dropped" in n for n in notes)


def test_a_capable_models_prose_passes_the_gate_whole(study):
    texts = capable(study)
    sections, notes, requests = write_with(texts, study)
    assert requests == len(SECTION_KEYS)  # no repair turn was needed
    assert [(s.prose_source, s.body, s.dropped_sentences) for s in sections] == [
        ("model", texts[SECTION_TITLES[k]], 0) for k in SECTION_KEYS]
    assert not any(s.generated.startswith(narrative(s.key, study)[:40]) for s in sections if narrative(s.key, study))
    assert "Prose: the model's text in Abstract, " in sections[SECTION_KEYS.index("limitations")].generated
    assert notes == []


def test_a_failing_section_gets_one_repair_turn_with_its_problems(study):
    good = capable(study)["Conclusion"]
    with ScriptedOpenAIServer([reply("Raising m raises final gini over twenty steps."), reply(good)]) as server:
        section, _ = gated_section(LLMClient.from_spec(server.url), "conclusion", study)
        repair_prompt = server.requests[1]["messages"][-1]["content"]
    assert (section.prose_source, section.body) == ("model", good)
    assert "twenty" in repair_prompt and "contradicts the data" in repair_prompt


@pytest.mark.parametrize("final_of, expected", [
    (lambda x, rng: 0.1 * x + rng.normal(0, 0.01), "increase"),
    (lambda x, rng: 1 - 0.1 * x + rng.normal(0, 0.01), "decrease"),
    (lambda x, rng, same=itertools.cycle([0.4, 0.5, 0.45, 0.55, 0.5, 0.6]): next(same), "none"),  # each m alike
])
def test_computed_effects_follow_the_trend_test(final_of, expected, tmp_path, monkeypatch):
    from tests.researcher.test_analysis import one_test, write_run

    monkeypatch.setattr("researcher.analysis.plot_timeseries", lambda *a, **k: None)
    monkeypatch.setattr("researcher.analysis.plot_sweep", lambda *a, **k: None)
    design, plan = one_test("no_effect" if expected == "none" else expected)
    findings = analyze(write_run(tmp_path, final_of), design, plan)
    [effect] = computed_effects(findings)
    assert (effect.metric, effect.parameter, effect.direction) == ("gini", "m", expected)
    assert findings.verdicts[0].verdict == "supported"


def test_a_revision_that_echoes_the_reviewers_comment_keeps_only_its_own_sentences(study):
    comment = "Discuss the size of the effect more carefully."
    echo = f"Revised as asked: {comment} Final gini falls as m rises."
    with ScriptedOpenAIServer(default=reply(echo)) as server:
        section, notes = gated_section(LLMClient.from_spec(server.url), "results", study, comment=comment,
                                       previous="Old text.")
        assert server.request_count == 2  # the revision and its one repair turn
    assert (section.prose_source, section.body, section.dropped_sentences) == ("model+code", "Final gini falls as m rises.", 1)
    assert section.generated.startswith("H1 is supported.") and notes == ["Results: the prose gate dropped 1 model sentence(s)."]


# ---- narrative and verdicts agree; each hypothesis is shown once, in the design's words -----------


def test_a_peak_is_narrated_where_it_is_and_gives_no_direction_to_check_against(tmp_path, monkeypatch):
    """A no-effect hypothesis refuted by an interior peak: the ends agree, so the old reading of the
    facts found 'no effect' and would have passed "m has no effect on gini"; the narrative said the
    data do not settle it."""
    from tests.researcher.test_analysis import one_test, write_run

    monkeypatch.setattr("researcher.analysis.plot_timeseries", lambda *a, **k: None)
    monkeypatch.setattr("researcher.analysis.plot_sweep", lambda *a, **k: None)
    design, plan = one_test("no_effect")
    same = itertools.cycle([0.4, 0.5, 0.45, 0.55, 0.5, 0.6])  # the ends alike: d = 0, no trend
    findings = analyze(write_run(tmp_path, lambda x, rng: next(same) + 0.5 * (x == 3)), design, plan)
    [verdict] = findings.verdicts
    peak = next(f.id for f in findings.facts if f.description.startswith("Value of m at which mean final gini peaks"))
    assert (verdict.verdict, verdict.effect) == ("refuted", None)
    assert computed_effects(findings) == []
    ctx = WritingContext(topic="Does m matter?", plan=plan, design=design, spec=load_scenario("boltzmann_wealth"),
                         findings=findings, run_dir=tmp_path, config={}, notes=[], models={})
    for key in ("abstract", "discussion", "conclusion"):
        text = narrative(key, ctx)
        assert f"its mean peaks at m = {{{{{peak}}}}} (H1, refuted)" in text and "do not settle" not in text, key


def test_a_verdict_records_the_direction_found_whatever_was_expected(study):
    assert [(v.verdict, v.effect) for v in study.findings.verdicts] == [("supported", "decrease")]
    legacy = study.findings.model_copy(update={"verdicts": [v.model_copy(update={"effect": None})
                                                            for v in study.findings.verdicts]})
    assert computed_effects(legacy) == []  # the direction comes from the verdict, not from fact descriptions


def test_each_hypothesis_is_shown_once_in_the_designs_words(study):
    from researcher.writing import generated_markdown, hypotheses_brief

    worded = "Raising m lowers the gini coefficient of wealth."
    tests = [t.model_copy(update={"statement": worded}) for t in study.design.tests]
    ctx = WritingContext(**{**study.__dict__, "design": study.design.model_copy(update={"tests": tests})})
    plans = study.plan.hypotheses[0].statement
    for text in (generated_markdown("abstract", ctx), generated_markdown("introduction", ctx),
                 hypotheses_brief(ctx, full=True), hypotheses_brief(ctx, full=False)):
        assert text.count(worded) == 1 and plans not in text
    intro = generated_markdown("introduction", study)  # no design statement: the plan's, once
    assert intro.count(plans) == 1 and "is expected to" not in intro


def test_the_reproducibility_section_needs_no_key_term(study):
    text = "The run folder holds everything needed to rerun the study exactly."
    assert prose_gate(text, "reproducibility", study).passed
    assert not prose_gate(text, "discussion", study).passed  # a section about the variables must name one


def test_a_citation_of_a_listed_reference_may_carry_its_year_any_other_year_goes(study):
    """The study's reference is Drăgulescu and Yakovenko (2000); a writer may drop the accent."""
    capable_text = ("Dragulescu and Yakovenko (2000) show how exchange alone makes gini rise among identical agents. "
                    "The simulation varies m to see how far that holds.")
    section, _ = gated_section_with(capable_text, "background", study)
    assert (section.prose_source, section.body) == ("model", capable_text)
    tiny_text = "In 2000 the gini of wealth was studied with m. The simulation varies m to see how far that holds."
    section, _ = gated_section_with(tiny_text, "background", study)
    assert (section.prose_source, section.body) == ("model+code", "The simulation varies m to see how far that holds.")


def gated_section_with(text: str, key: str, study):
    with ScriptedOpenAIServer(default=reply(text)) as server:
        return gated_section(LLMClient.from_spec(server.url), key, study)


@pytest.mark.parametrize("context, prose, asked", [("4096", "auto", False), ("32768", "auto", True),
                                                   ("4096", "model", True), ("32768", "code", False)])
def test_only_a_capable_writer_is_asked_for_prose(study, monkeypatch, context, prose, asked):
    """A 135M model's prose passes the gate and still makes claims about the world no check can read
    ("the results were replicated in other studies"): a small model is not asked, and the report
    is written by code from the data, saying so in its Limitations."""
    import dataclasses

    monkeypatch.setenv("SOCIETAS_LLM_CONTEXT", context)
    ctx = dataclasses.replace(study, config={**study.config, "prose": prose})
    answer = "The share of agents who agree is shown in the figures of this section, citing {{F1}}."
    with ScriptedOpenAIServer([], default=reply(answer)) as server:
        sections, _ = build_sections(LLMClient.from_spec(server.url), ctx)
        requests = len(server.requests)
    assert (requests > 0) is asked
    limitations = next(s for s in sections if s.key == "limitations")
    if asked:
        assert any(s.prose_source != "code" for s in sections)
    else:
        assert all(s.prose_source == "code" and not s.body for s in sections)
        assert "the writer model was not asked" in limitations.generated
        assert all(s.generated for s in sections)  # every section still says something, from the data
