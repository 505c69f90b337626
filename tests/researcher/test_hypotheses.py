"""Hypotheses typed to the scenario: ids by code, statements that name their variables and direction
(else composed by code), and "untestable, with the reason" never forced onto a nearest name.

Two scripted models answer here: a capable one (answers as a strong model would write them, chosen
by what each request asks) and a tiny one (the embedded model's habits: "Yes" for a statement,
`{{id}}` for an id, the first enum option, `testable` at random).
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest

import researcher.hypothesis_mapping as mapping_module
from researcher.analysis import analyze
from researcher.design import make_design
from researcher.hypothesis_mapping import MAP_SIMILARITY, NO_MATCH, text_mapping
from researcher.planning import normalise, stated_direction, statement_names
from researcher.retrieval import best_matches
from researcher.runner import start
from researcher.schemas import Hypothesis, HypothesisTest, ResearchPlan
from researcher.state import ResearchConfig
from simulator import load_scenario
from tests.doubles.schema_server import SchemaAwareServer, instance
from tests.doubles.scripted_openai_server import ScriptedOpenAIServer, Step, json_reply
from tests.llms.llm_testing import client_for
from tests.researcher.test_analysis import design_for, increasing, plan_for, write_run


@pytest.fixture(autouse=True)
def _skip_rendering(monkeypatch):
    monkeypatch.setattr("researcher.analysis.plot_timeseries", lambda *a, **k: None)
    monkeypatch.setattr("researcher.analysis.plot_sweep", lambda *a, **k: None)


def _schema(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = body.get("response_format") or {}
    return fmt.get("schema") or (fmt.get("json_schema") or {}).get("schema")


class CapableServer(ScriptedOpenAIServer):
    """Answers each structured request as a strong model would, from what the request asks."""

    def __init__(self, mappings: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.mappings = mappings  # dependent variable -> the mapping a careful reader gives

    def _next_step(self, body: dict[str, Any]) -> Step:
        super()._next_step(body)
        schema = _schema(body) or {}
        prompt = body["messages"][-1]["content"]
        if schema.get("title") == "HypothesisMapping":
            dependent = re.search(r"What it measures: (.*)", prompt).group(1).strip()
            return json_reply(self.mappings[dependent])
        if schema.get("title") == "ScenarioChoice":
            return json_reply({"scenario": "deffuant", "reason": "bounded confidence is about tolerance of opinions"})
        return json_reply(instance(schema))


class TinyServer(SchemaAwareServer):
    """The embedded model's habits under a schema: first enum options, `testable` at random, garbage text."""

    def __init__(self, *args: Any, seed: int = 0, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.rng = random.Random(seed)

    def _next_step(self, body: dict[str, Any]) -> Step:
        step = super()._next_step(body)
        schema = _schema(body)
        if not schema or step.content is None or not step.content.startswith("{"):
            return step
        obj = json.loads(step.content)
        if "testable" in obj:
            obj["testable"] = self.rng.random() < 0.5
        if "reason" in obj:
            obj["reason"] = "{{reason}}"
        return json_reply(obj)


GARBAGE_PLAN = {
    "title": "Tolerance and polarization", "domain": "politics",
    "summary": "Does tolerance of differing opinions lead to consensus rather than polarization?",
    "research_questions": ["Does tolerance reduce polarization?"],
    "hypotheses": [
        {"id": "{{id}}", "statement": "Yes", "independent_variable": "tolerance",
         "dependent_variable": "polarization", "direction": "decrease"},
        {"id": "{{id}}", "statement": "No,", "independent_variable": "depression",
         "dependent_variable": "polarization", "direction": "increase"},
        {"id": "H7", "statement": "{{statement}}", "independent_variable": "{{independent_variable}}",
         "dependent_variable": "opinion", "direction": "increase"},
    ],
    "theories": [],
}


def plan_of(*hypotheses: Hypothesis) -> ResearchPlan:
    return ResearchPlan(title="Tolerance and opinions", domain="politics",
                        summary="Does tolerance of differing opinions lead to consensus or polarization?",
                        research_questions=["Does tolerance reduce polarization?"], hypotheses=list(hypotheses))


def hyp(statement: str, iv: str, dv: str, direction: str) -> Hypothesis:
    return Hypothesis(statement=statement, independent_variable=iv, dependent_variable=dv, direction=direction)


def shown_statement_is_sound(statement: str, source: str, cause: str, effect: str, direction: str) -> bool:
    """What the report may show: the model's wording that passes the check, or code's sentence."""
    if "{{" in statement or "{%" in statement:
        return False
    return source == "code" or statement_names(statement, cause, effect, direction)


# --- the plan ----------------------------------------------------------------------------------------


def test_ids_are_renumbered_and_garbage_statements_are_composed_by_code() -> None:
    plan = normalise(ResearchPlan.model_validate(GARBAGE_PLAN))

    assert [h.id for h in plan.hypotheses] == ["H1", "H2"]  # the markup variable's hypothesis is dropped
    h1, h2 = plan.hypotheses
    assert (h1.statement, h1.statement_source) == ("Raising tolerance decreases polarization.", "code")
    assert (h2.statement, h2.statement_source) == ("Raising depression increases polarization.", "code")
    assert "{{" not in plan.model_dump_json()


def test_a_statement_that_names_its_variables_and_direction_is_kept() -> None:
    kept = hyp("Greater tolerance of differing opinions reduces polarization.", "tolerance", "polarization",
               "decrease")
    contrary = hyp("Greater tolerance increases polarization.", "tolerance of others", "polarization", "decrease")
    off_topic = hyp("Media exposure reduces polarization.", "tolerance of differing views", "polarization",
                    "decrease")
    plan = normalise(plan_of(kept, contrary, off_topic))

    assert [(h.statement_source, h.statement) for h in plan.hypotheses] == [
        ("model", kept.statement),
        ("code", "Raising tolerance of others decreases polarization."),
        ("code", "Raising tolerance of differing views decreases polarization."),
    ]
    duplicate = hyp("Tolerance lowers polarization.", "Tolerance", "polarization ", "decrease")
    assert len(normalise(plan_of(kept, duplicate)).hypotheses) == 1


@pytest.mark.parametrize("statement, direction", [
    ("Greater tolerance reduces polarization", "decrease"),
    ("Less tolerance increases polarization", "decrease"),
    ("Higher tolerance leads to more consensus", "increase"),
    ("Tolerance has no effect on polarization", "no_effect"),
    ("Tolerance does not reduce polarization", None),
    ("Tolerance and polarization", None),
])
def test_the_stated_direction_follows_the_signs_of_its_words(statement, direction) -> None:
    assert stated_direction(statement) == direction


def test_the_model_is_not_asked_for_ids() -> None:
    assert "id" not in ResearchPlan.model_json_schema()["$defs"]["Hypothesis"]["properties"]


# --- mapping onto the scenario ----------------------------------------------------------------------

# (scenario, parameter or metric, phrase, the right name or None when nothing in the scenario fits).
LABELLED = [
    ("deffuant", "p", "tolerance", "epsilon"), ("deffuant", "p", "confidence bound", "epsilon"),
    ("deffuant", "p", "depression", None), ("deffuant", "p", "media exposure", None),
    ("deffuant", "p", "speed of convergence", "mu"), ("deffuant", "m", "polarization", "polarization"),
    ("deffuant", "m", "share of agents in the largest cluster", None), ("deffuant", "m", "consensus", None),
    ("deffuant", "m", "number of opinion clusters", "clusters"), ("schelling", "p", "population density", "density"),
    ("schelling", "p", "income", None), ("schelling", "m", "crime", None), ("schelling", "m", "segregation", "similarity"),
    ("sir_network", "p", "transmission probability", "beta"), ("sir_network", "p", "number of contacts", "mean_degree"),
    ("sir_network", "p", "vaccination", None), ("sir_network", "m", "deaths", None),
    ("sir_network", "m", "share infected", "infected"), ("public_goods", "p", "punishment", None),
    ("public_goods", "p", "multiplication factor", "r"), ("public_goods", "m", "cooperation", "cooperation"),
    ("public_goods", "m", "trust", None), ("compliance", "p", "audit probability", "audit"),
    ("compliance", "p", "tax rate", None), ("compliance", "m", "tax compliance", "compliance"),
    ("boltzmann_wealth", "p", "initial wealth", "mean_wealth"), ("boltzmann_wealth", "m", "wealth inequality", "gini"),
    ("boltzmann_wealth", "m", "economic growth", None), ("rumor", "p", "contact rate", "contact_rate"),
    ("rumor", "p", "media trust", None), ("voter", "p", "media influence", None), ("voter", "m", "consensus", "consensus"),
    ("voter", "m", "time to consensus", None), ("el_farol", "p", "bar capacity", "capacity"),
    ("info_sharing", "p", "story credibility", "credibility"), ("info_sharing", "p", "fact checking", None),
    ("axelrod", "p", "number of traits", "q"), ("axelrod", "m", "size of the largest region", "largest_region"),
]


def test_text_matching_maps_only_above_the_stated_similarity() -> None:
    """The constant's justification: no wrong best match reaches it, and most right ones do."""
    right_above, rights = 0, 0
    for scenario, kind, phrase, right in LABELLED:
        spec = load_scenario(scenario)
        docs = mapping_module._parameter_docs(spec) if kind == "p" else mapping_module._metric_docs(spec)
        name, score = best_matches(phrase, docs)[0]
        if name != right:
            assert score < MAP_SIMILARITY, (scenario, phrase, name, score)
        else:
            rights += 1
            right_above += score >= MAP_SIMILARITY
    assert right_above >= 0.6 * rights


def test_text_fallback_below_the_similarity_is_untestable_with_the_reason() -> None:
    spec = load_scenario("deffuant")
    h = hyp("A wider confidence bound raises the share of agents in the largest cluster.", "confidence bound",
            "share of agents in the largest cluster", "increase")
    test = text_mapping(h.model_copy(update={"id": "H2"}), spec)

    assert (test.testable, test.parameter, test.metric) == (False, None, None)  # clusters was the nearest name
    assert "no metric of deffuant matches 'share of agents in the largest cluster'" in test.reason


def test_a_capable_model_marking_h2_untestable_keeps_it_untestable_and_its_verdict_too(tmp_path) -> None:
    plan = normalise(plan_of(
        hyp("Greater tolerance of differing opinions reduces polarization.", "tolerance", "polarization", "decrease"),
        hyp("A wider confidence bound raises the share of agents in the largest cluster.", "confidence bound",
            "share of agents in the largest cluster", "increase")))
    answers = {
        "polarization": {"parameter": "epsilon", "metric": "polarization", "testable": True,
                         "reason": "The confidence bound is the tolerance of differing opinions."},
        "share of agents in the largest cluster": {
            "parameter": "epsilon", "metric": NO_MATCH, "testable": False,
            "reason": "No metric measures the share of agents in the largest cluster; clusters counts them."},
    }
    with CapableServer(answers) as server:
        design, spec = make_design(plan, client_for(server.url))
        mapping = next(_schema(b) for b in server.requests if (_schema(b) or {}).get("title") == "HypothesisMapping")

    assert NO_MATCH in mapping["properties"]["parameter"]["enum"] and NO_MATCH in mapping["properties"]["metric"]["enum"]
    h1, h2 = design.tests
    assert (h1.parameter, h1.metric, h1.testable) == ("epsilon", "polarization", True)
    assert (h1.statement, h1.statement_source) == (plan.hypotheses[0].statement, "model")
    assert (h2.parameter, h2.metric, h2.testable) == (None, None, False)  # not forced onto `clusters`
    assert "clusters counts them" in h2.reason

    # Data in which the swept parameter raises and lowers everything: H2 still gets no verdict but untestable.
    toy = design_for(HypothesisTest(hypothesis_id="H1", parameter="m", metric="gini", direction="increase"),
                     h2.model_copy(update={"parameter": None}))
    verdicts = {v.hypothesis_id: v for v in analyze(write_run(tmp_path, increasing), toy,
                                                     plan_for("increase", "decrease")).verdicts}
    assert verdicts["H2"].verdict == "untestable" and "clusters counts them" in verdicts["H2"].reason


def test_a_test_without_a_parameter_is_never_judged_on_the_swept_one(tmp_path) -> None:
    forced = HypothesisTest(hypothesis_id="H1", metric="gini", direction="decrease")  # testable, no parameter
    (verdict,) = analyze(write_run(tmp_path, increasing), design_for(forced), plan_for("decrease")).verdicts
    assert verdict.verdict == "untestable"


def test_a_statement_naming_another_parameter_is_replaced_by_a_composed_one() -> None:
    plan = normalise(plan_of(hyp("A higher convergence rate reduces opinion polarization.", "tolerance",
                                 "polarization", "decrease")))
    spec = load_scenario("deffuant")
    test = mapping_module.with_statement(
        HypothesisTest(hypothesis_id="H1", parameter="epsilon", metric="polarization", direction="decrease"),
        plan.hypotheses[0], spec)

    assert test.statement_source == "code"
    assert test.statement == "Raising the confidence bound (epsilon) decreases polarization."


def test_with_a_tiny_model_every_test_statement_is_sound() -> None:
    plan = normalise(ResearchPlan.model_validate(GARBAGE_PLAN))
    for seed in range(4):
        with TinyServer(seed=seed) as server:
            design, spec = make_design(plan, client_for(server.url), allow_generate=False)
        for h, t in zip(plan.hypotheses, design.tests, strict=True):
            cause, effect = ((f"{t.parameter} {spec.parameters[t.parameter].description}", t.metric) if t.testable
                             else (h.independent_variable, h.dependent_variable))
            assert shown_statement_is_sound(t.statement, t.statement_source, cause, effect, t.direction), t
            assert t.testable or (t.reason and "{{" not in t.reason), t
        depression = design.tests[1]
        assert not depression.testable and depression.parameter is None  # no parameter of deffuant is depression


# --- the whole pipeline with the tiny model -----------------------------------------------------------


def test_no_garbage_statement_or_template_id_reaches_the_plan_design_or_report(tmp_path) -> None:
    with TinyServer([json_reply(GARBAGE_PLAN)], seed=1) as server:
        config = ResearchConfig(llm=server.url, seeds=2, agents=100, steps=15, review_rounds=0, use_ray=False,
                                max_extra_seed_rounds=0, allow_generate=False)
        folder = start("Does tolerance of differing opinions lead to consensus rather than polarization?", config,
                       out=tmp_path / "run")
    plan = json.loads((folder.path / "plan.json").read_text())
    design = json.loads((folder.path / "design.json").read_text())
    report = (folder.path / "report" / "final" / "report.md").read_text()

    assert [h["id"] for h in plan["hypotheses"]] == ["H1", "H2"]
    shown = {t["hypothesis_id"]: t["statement"] for t in design["tests"] if t["statement"]}
    for h in plan["hypotheses"]:
        assert shown_statement_is_sound(h["statement"], h["statement_source"], h["independent_variable"],
                                        h["dependent_variable"], h["direction"]), h
        assert shown.get(h["id"], h["statement"]) in report  # the design's wording where it has one
    for t in design["tests"]:
        assert "{{" not in t["statement"] and (t["testable"] or t["reason"])
    assert "{{id}}" not in report and not re.search(r"H\d: (Yes|No,)", report)


WEALTH_TOPIC = "How does the rule by which people hand money to one another shape the inequality of wealth?"


def test_a_plan_copied_from_the_prompt_example_is_not_kept_for_another_topic() -> None:
    """Seen with the embedded model on a wealth topic: the prompt's example hypothesis (tolerance ->
    polarization), a sentence with a number as a variable, an unrelated question, and the prompt's
    own instruction as the summary. None of it is about the topic, so none of it is kept."""
    plan = ResearchPlan(
        title=WEALTH_TOPIC, domain="economics", summary="The topic is a research question, in one or two sentences.",
        research_questions=["What causes greater tolerance for different types of behavior?"],
        hypotheses=[hyp("Greater tolerance reduces polarization", "tolerance", "polarization", "increase"),
                    hyp("Richer people", "more than 10% of the population is richer than the average person.",
                        "wealth distribution,", "decrease")])
    out = normalise(plan, WEALTH_TOPIC)
    assert [h.independent_variable for h in out.hypotheses] == ["main driver"]  # the honest, untestable one
    assert "tolerance" not in out.model_dump_json().lower()
    assert "one or two sentences" not in out.summary and "wealth" in out.summary
    assert out.research_questions == [WEALTH_TOPIC]


def test_an_on_topic_plan_keeps_its_questions_and_hypotheses() -> None:
    plan = ResearchPlan(
        title="Exchange and inequality", domain="economics",
        summary="Random exchange of money between people may by itself produce unequal wealth.",
        research_questions=["Does random exchange of money produce wealth inequality?"],
        hypotheses=[hyp("Larger initial wealth lowers inequality", "initial wealth", "wealth inequality", "decrease")])
    out = normalise(plan, WEALTH_TOPIC)
    assert out.research_questions == plan.research_questions and out.summary == plan.summary
    assert [h.independent_variable for h in out.hypotheses] == ["initial wealth"]


def test_a_small_model_does_not_map_hypotheses_and_the_generic_one_stays_untestable(monkeypatch) -> None:
    """Seen with the embedded model: asked to map the generic hypothesis ('main driver' -> 'collective
    outcome'), it named mean_wealth and gini, a test nobody stated. A small model's mapping is luck:
    text matching maps (only above MAP_SIMILARITY), and the generic hypothesis is never mapped."""
    from researcher.planning import generic_hypothesis

    monkeypatch.setenv("SOCIETAS_LLM_CONTEXT", "4096")
    plan = plan_of(hyp("Greater tolerance lowers polarization", "confidence bound tolerance", "polarization",
                       "decrease"), generic_hypothesis("tolerance and opinions"))
    plan = plan.model_copy(update={"hypotheses": [h.model_copy(update={"id": f"H{i + 1}"})
                                                  for i, h in enumerate(plan.hypotheses)]})
    with TinyServer(seed=0) as server:
        design, _ = make_design(plan, client_for(server.url), allow_generate=False)
        mapping_requests = [r for r in server.requests if "HypothesisMapping" in json.dumps(r.get("response_format", {}))]
    assert mapping_requests == []
    first, generic = design.tests
    assert first.testable and first.parameter == "epsilon" and first.metric == "polarization"
    assert not generic.testable and generic.parameter is None and "no variable" in generic.reason
    assert "too small a model to map hypotheses" in (design.fallback_reason or "")
