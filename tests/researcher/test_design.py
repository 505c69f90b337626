"""make_design against a scripted LLM server and without an LLM: choices, fallbacks, sweeps."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

import researcher.design as design_module
import researcher.hypothesis_mapping as mapping_module
import researcher.spec_generation as generation_module
from researcher.design import build_experiment, make_design, sweep_values
from researcher.schemas import ExperimentDesign, Hypothesis, ResearchPlan
from simulator.catalog import all_scenarios, load_scenario
from simulator.experiment import Experiment
from simulator.spec import Parameter, ScenarioSpec
from societas.errors import SocietasError
from tests.doubles.scripted_openai_server import ScriptedOpenAIServer, http_error, json_reply
from tests.llms.llm_testing import client_for
from tests.simulator.helpers import spec_from


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SOCIETAS_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def server() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer(default=json_reply({"unexpected": True})) as scripted:
        yield scripted


def hypothesis(i: int, iv: str, dv: str, direction: str = "increase") -> Hypothesis:
    return Hypothesis(id=f"H{i}", statement=f"More {iv} changes {dv}.", independent_variable=iv,
                      dependent_variable=dv, direction=direction)


def make_plan(title: str, domain: str, *hypotheses: Hypothesis) -> ResearchPlan:
    return ResearchPlan(title=title, domain=domain, summary=title, research_questions=[title],
                        hypotheses=list(hypotheses))


OPINIONS = make_plan("Does imitation of opinions lead to consensus or polarization?", "politics",
                     hypothesis(1, "confidence bound (tolerance)", "polarization", "decrease"))
OFF_TOPIC = make_plan("How does fertility respond to childcare subsidies?", "demographics",
                      hypothesis(1, "childcare subsidy", "birth rate"))


def sent_schema(server: ScriptedOpenAIServer, i: int) -> dict:
    fmt = server.response_formats[i]
    return fmt.get("schema") or fmt["json_schema"]["schema"]


def assert_sound(design: ExperimentDesign, spec: ScenarioSpec, plan: ResearchPlan) -> None:
    """Every hypothesis is accounted for, and everything named exists in the spec."""
    assert [t.hypothesis_id for t in design.tests] == [h.id for h in plan.hypotheses]
    for t in design.tests:
        if t.testable:
            assert t.parameter == design.swept_parameter and t.metric in spec.metrics
        else:
            assert t.reason
    p = spec.parameters[design.swept_parameter]
    assert all(p.min <= v <= p.max for v in design.values)
    assert isinstance(build_experiment(design, spec), Experiment)


# --- the LLM's choices ---------------------------------------------------------------------------


def test_the_llms_valid_scenario_choice_and_mapping_are_used(server, monkeypatch) -> None:
    monkeypatch.setattr(design_module, "CONTENDER_RATIO", 0.6)  # voter (0.70) becomes a contender of deffuant (0.84)
    server.push(json_reply({"scenario": "voter", "reason": "the voter model is about imitation of opinions"}),
                json_reply({"parameter": "initial_share", "metric": "consensus", "testable": True}))
    events: list[str] = []
    design, spec = make_design(OPINIONS, client_for(server.url), on_event=events.append)

    assert design.scenario == spec.name == "voter" and not design.generated
    assert design.swept_parameter == "initial_share"
    assert (design.tests[0].parameter, design.tests[0].metric, design.tests[0].testable) == \
        ("initial_share", "consensus", True)
    assert design.fallback_reason is None
    assert "imitation of opinions" in design.rationale
    assert any("voter" in e for e in events)
    # The choices were enums of real names: the candidates, then the voter model's parameters and metrics.
    assert set(sent_schema(server, 0)["properties"]["scenario"]["enum"]) == {"deffuant", "voter"}
    mapping = sent_schema(server, 1)["properties"]
    assert set(mapping["parameter"]["enum"]) == {*load_scenario("voter").parameters, mapping_module.NO_MATCH}
    assert set(mapping["metric"]["enum"]) == {*load_scenario("voter").metrics, mapping_module.NO_MATCH}
    assert_sound(design, spec, OPINIONS)


def test_an_out_of_enum_choice_falls_back_to_the_top_ranked_scenario_and_says_so(server, monkeypatch) -> None:
    monkeypatch.setattr(design_module, "CONTENDER_RATIO", 0.6)  # two contenders, so the LLM is asked
    server.default = json_reply({"scenario": "schelling", "reason": "not a candidate at all"})
    design, spec = make_design(OPINIONS, client_for(server.url))

    assert design.scenario == design.candidates[0][0] == "deffuant"
    assert "scenario choice failed" in design.fallback_reason and "deffuant" in design.fallback_reason
    assert "mapping of H1 failed" in design.fallback_reason
    assert design.swept_parameter == "epsilon" and design.tests[0].metric == "polarization"
    assert_sound(design, spec, OPINIONS)


def test_an_unreachable_llm_gives_the_same_design_as_no_llm(server) -> None:
    server.default = http_error(500)
    with_failures, _ = make_design(OPINIONS, client_for(server.url))
    without, _ = make_design(OPINIONS, None)

    for field in ("scenario", "swept_parameter", "values", "steps", "population", "seeds", "tests"):
        assert getattr(with_failures, field) == getattr(without, field), field
    assert "unavailable" in with_failures.fallback_reason
    assert without.fallback_reason.startswith("no LLM")


def test_a_hypothesis_the_llm_calls_untestable_stays_untestable(server) -> None:
    server.push(json_reply({"scenario": "deffuant", "reason": "bounded confidence is about tolerance"}),
                json_reply({"parameter": "mu", "metric": "clusters", "testable": False}))
    design, spec = make_design(OPINIONS, client_for(server.url))

    test = design.tests[0]
    assert (test.parameter, test.metric, test.testable) == (None, None, False)  # text matching would map it
    assert test.reason.startswith("the LLM found") and "exploratory sweep" in design.rationale
    assert_sound(design, spec, OPINIONS)


# --- the deterministic path ------------------------------------------------------------------------


def test_without_an_llm_every_hypothesis_is_mapped_or_marked_untestable() -> None:
    plan = make_plan("Does tolerance of differing views prevent political fragmentation?", "politics",
                     hypothesis(1, "tolerance (confidence bound)", "polarization", "decrease"),
                     hypothesis(2, "convergence rate", "opinion clusters"),
                     hypothesis(3, "weather", "rainfall"))
    design, spec = make_design(plan, None)

    assert design.scenario == "deffuant" and design.swept_parameter == "epsilon"
    h1, h2, h3 = design.tests
    assert h1.testable and h1.parameter == "epsilon" and h1.direction == "decrease"
    assert not h2.testable and h2.parameter == "mu" and "sweeps epsilon only" in h2.reason
    assert not h3.testable and h3.parameter is None and "no parameter of deffuant matches" in h3.reason
    assert "no LLM" in design.fallback_reason
    assert_sound(design, spec, plan)


def test_when_no_hypothesis_maps_the_sweep_is_exploratory_and_says_so() -> None:
    plan = make_plan("Why do neighbourhoods segregate?", "sociology", hypothesis(1, "weather", "rainfall"))
    design, spec = make_design(plan, None)

    assert design.scenario == "schelling" and not design.tests[0].testable
    assert design.swept_parameter == next(iter(spec.parameters))
    assert "exploratory sweep" in design.rationale
    assert_sound(design, spec, plan)


def test_steps_agents_and_seeds_follow_the_arguments() -> None:
    design, spec = make_design(OPINIONS, None, seeds=3, steps=7, agents=123)
    experiment = build_experiment(design, spec)

    assert (design.steps, design.population, design.seeds) == (7, 123, [0, 1, 2])
    assert (experiment.steps, experiment.population, experiment.seeds) == (7, 123, [0, 1, 2])


def test_population_is_capped_and_steps_default_to_the_spec() -> None:
    plan = make_plan("Does network density change epidemic size?", "demographics",
                     hypothesis(1, "network density", "attack rate"))
    design, spec = make_design(plan, None)

    assert spec.population > design_module.POPULATION_CAP == design.population
    assert design.steps == spec.stop.max_steps
    assert (design.swept_parameter, design.tests[0].metric) == ("mean_degree", "attack_rate")


def test_steps_are_capped_to_the_time_budget(monkeypatch) -> None:
    monkeypatch.setattr(design_module, "TIME_BUDGET_S", 1e-3)
    design, spec = make_design(OPINIONS, None)

    assert design.steps == design_module.MIN_STEPS < spec.stop.max_steps
    assert "capped" in design.rationale


def test_fewer_than_two_seeds_is_refused() -> None:
    with pytest.raises(SocietasError, match="at least 2 seeds"):
        make_design(OPINIONS, None, seeds=1)


# --- swept values ---------------------------------------------------------------------------------------


LIBRARY_PARAMETERS = [(s.name, n, p) for s in all_scenarios() for n, p in s.parameters.items()]


@pytest.mark.parametrize(("scenario", "name", "p"), LIBRARY_PARAMETERS,
                         ids=[f"{s}.{n}" for s, n, _ in LIBRARY_PARAMETERS])
def test_swept_values_lie_in_range_for_every_library_parameter(scenario, name, p) -> None:
    values = sweep_values(p)
    assert 2 <= len(values) <= 4
    assert values == sorted(set(values))
    assert all(p.min <= v <= p.max for v in values)
    if p.integer:
        assert all(v == int(v) for v in values)


def test_values_spread_over_a_range_and_include_the_default() -> None:
    assert sweep_values(Parameter(default=0.2, min=0.01, max=1.0)) == [0.2, 0.381, 0.629, 0.876]


def test_a_huge_range_is_swept_around_the_default() -> None:
    assert sweep_values(Parameter(default=0.01, min=0.0, max=1.0)) == [0.005, 0.01, 0.02, 0.04]
    assert sweep_values(Parameter(default=1, min=1, max=100, integer=True)) == [1, 2, 4, 8]
    assert sweep_values(Parameter(default=0, min=0, max=1000)) == [0, 1, 10, 100]
    assert sweep_values(Parameter(default=3)) == [1.5, 3, 6, 12]


def test_a_narrow_integer_range_gives_each_whole_number_once() -> None:
    assert sweep_values(Parameter(default=1, min=0, max=2, integer=True)) == [0, 1, 2]
    assert sweep_values(Parameter(default=0, min=0, max=1, integer=True)) == [0, 1]


# --- generated specs ------------------------------------------------------------------------------------


def _spec_json(**overrides) -> dict:
    return spec_from(name="childcare", **overrides).model_dump(mode="json", by_alias=True)


BROKEN = _spec_json(metrics={"births": "mean(births)"})  # names an attribute that does not exist


def test_a_generated_spec_that_stays_invalid_is_repaired_then_falls_back(server) -> None:
    server.push(*[json_reply(BROKEN)] * (1 + generation_module.GENERATE_REPAIRS))
    started = time.monotonic()
    design, spec = make_design(OFF_TOPIC, client_for(server.url))

    assert time.monotonic() - started < 10
    assert not design.generated and design.scenario == design.candidates[0][0] == spec.name
    assert design.fallback_reason.startswith("no library scenario fits the plan well")
    assert "generated spec failed validation: " in design.fallback_reason
    assert "births" in design.fallback_reason and f"used library scenario {spec.name}" in design.fallback_reason
    generation = [i for i in range(server.request_count) if sent_schema(server, i).get("title") == "ScenarioSpec"]
    assert generation == list(range(1 + generation_module.GENERATE_REPAIRS))
    # The full schema goes to json_schema servers (vLLM, OpenAI); the llama dialect's grammar-safe
    # copy is llms.structured.grammar_safe's job, tested in tests/llms.
    assert sent_schema(server, 0)["properties"]["interventions"]
    repair = server.requests[1]["messages"]
    assert repair[-2]["role"] == "assistant" and json.loads(repair[-2]["content"])["name"] == "childcare"
    assert "births" in repair[-1]["content"]
    assert_sound(design, spec, OFF_TOPIC)


def test_a_generated_spec_repaired_once_is_used(server) -> None:
    server.push(json_reply(BROKEN), json_reply(_spec_json()),
                json_reply({"parameter": "rate", "metric": "mean_x", "testable": True}))
    events: list[str] = []
    design, spec = make_design(OFF_TOPIC, client_for(server.url), on_event=events.append)

    assert design.generated and spec.name == design.scenario == "childcare"
    assert design.swept_parameter == "rate" and design.tests[0].testable
    assert design.fallback_reason is None
    assert any("rejected (attempt 1)" in e for e in events)
    assert_sound(design, spec, OFF_TOPIC)


def test_a_generated_spec_without_a_parameter_range_is_rejected(server) -> None:
    server.push(*[json_reply(_spec_json(parameters={}))] * (1 + generation_module.GENERATE_REPAIRS))
    design, _ = make_design(OFF_TOPIC, client_for(server.url))

    assert not design.generated and "parameter with a min and max" in design.fallback_reason


def test_with_generation_off_the_closest_library_scenario_is_used_and_the_misfit_recorded(server) -> None:
    server.default = json_reply({"parameter": "beta", "metric": "attack_rate", "testable": True})
    design, spec = make_design(OFF_TOPIC, client_for(server.url), allow_generate=False)

    assert not design.generated and spec.name == design.candidates[0][0]
    assert "no library scenario fits" in design.fallback_reason and "turned off" in design.fallback_reason
    assert all(sent_schema(server, i).get("title") != "ScenarioSpec" for i in range(server.request_count))


# --- building the experiment ------------------------------------------------------------------------------


def test_build_experiment_names_one_condition_per_value_and_applies_fixed_parameters() -> None:
    design, spec = make_design(OPINIONS, None, seeds=2)
    design = design.model_copy(update={"fixed": {"mu": 0.3}})
    experiment = build_experiment(design, spec)

    assert [c.name for c in experiment.conditions] == ["epsilon=0.1", "epsilon=0.2", "epsilon=0.3", "epsilon=0.5"]
    assert all(c.params["mu"] == 0.3 for c in experiment.conditions)
    assert [c.params["epsilon"] for c in experiment.conditions] == design.values
    assert experiment.seeds == [0, 1] and experiment.population is None  # the spec's own 1000 agents
    assert Experiment.model_validate(experiment.model_dump(by_alias=True)) == experiment


def test_build_experiment_refuses_a_spec_of_another_scenario() -> None:
    design, _ = make_design(OPINIONS, None)
    with pytest.raises(ValueError, match="voter"):
        build_experiment(design, load_scenario("voter"))


def test_a_population_written_as_an_expression_of_parameters_stays_one() -> None:
    spec = spec_from(population="200 * params.rate")  # 100 agents at the default rate
    design, _ = make_design(make_plan("tiny", "sociology", hypothesis(1, "rate", "mean x")), None,
                                  library=[spec])

    assert design.population == 100 and design.swept_parameter == "rate"
    assert build_experiment(design, spec).population is None  # each condition's rate sets its own count


def test_a_generation_the_server_fails_is_not_retried_and_falls_back(server) -> None:
    server.push(http_error(503))
    server.default = json_reply({"parameter": "beta", "metric": "attack_rate", "testable": True})
    design, spec = make_design(OFF_TOPIC, client_for(server.url))

    generation = [i for i in range(server.request_count) if sent_schema(server, i).get("title") == "ScenarioSpec"]
    assert generation == [0]
    assert not design.generated and "spec generation failed" in design.fallback_reason
    assert "unavailable" in design.fallback_reason
    assert f"used library scenario {spec.name}" in design.fallback_reason


def test_the_spec_suggested_sweep_is_used_when_present() -> None:
    from simulator.catalog import load_scenario

    p = load_scenario("deffuant").parameters["epsilon"]
    assert design_module.sweep_values(p) == sorted(p.sweep)
    bare = p.model_copy(update={"sweep": None})
    assert design_module.sweep_values(bare) != sorted(p.sweep)  # without it: spread over the range


# --- the user's words decide the scenario (issue 11) -------------------------------------------------

# What the embedded model wrote for every topic in issue 11: domain "economics", words about opinions.
TINY_PLAN = make_plan("Economic opinion dynamics", "economics", hypothesis(1, "opinion tolerance", "opinion clusters"))
SEGREGATION = "How do residents' tolerance thresholds shape segregation?"
WEALTH = "How does wealth inequality evolve under a transfer rule between agents?"
SELLERS = "How does the number of sellers in a market affect price dispersion?"


def requests_for(server: ScriptedOpenAIServer, title: str) -> list[int]:
    return [i for i in range(server.request_count) if sent_schema(server, i).get("title") == title]


@pytest.mark.parametrize(("topic", "expected"), [(SEGREGATION, "schelling"), (WEALTH, "boltzmann_wealth")])
def test_a_clear_retrieval_leader_is_taken_whatever_the_model_would_choose(server, topic, expected) -> None:
    server.default = json_reply({"scenario": "deffuant", "reason": "the plan is about opinions and tolerance"})
    design, spec = make_design(TINY_PLAN, client_for(server.url), topic=topic)

    assert design.scenario == spec.name == expected
    assert requests_for(server, "ScenarioChoice") == []  # the model was not asked to choose
    assert "clear retrieval leader" in design.rationale
    assert f"domain economics became {spec.domain}" in design.rationale or spec.domain == "economics"


def test_without_the_topic_the_tiny_models_plan_would_have_led_elsewhere() -> None:
    """The old behaviour (query = the plan) picked deffuant for the segregation topic."""
    assert make_design(TINY_PLAN, None)[0].scenario == "deffuant"
    assert make_design(TINY_PLAN, None, topic=SEGREGATION)[0].scenario == "schelling"


@pytest.mark.parametrize("capable", [True, False], ids=["capable", "tiny"])
def test_the_model_chooses_only_among_close_contenders(server, capable) -> None:
    topic = "Do opinions converge to consensus?"
    close = design_module.contenders(make_design(OPINIONS, None, topic=topic)[0].candidates)
    assert len(close) >= 2
    pick = close[1] if capable else "schelling"  # a tiny model names a scenario that is not a contender
    server.push(json_reply({"scenario": pick, "reason": "it models imitation of discrete opinions until consensus"}))
    design, _ = make_design(OPINIONS, client_for(server.url), topic=topic)

    assert set(sent_schema(server, 0)["properties"]["scenario"]["enum"]) == set(close)
    if capable:
        assert design.scenario == close[1] and "imitation of discrete opinions" in design.rationale
    else:
        assert design.scenario == close[0] and "scenario choice failed" in design.fallback_reason


def test_a_topic_nothing_fits_is_run_on_the_closest_scenario_and_says_it_is_not_a_fit() -> None:
    design, spec = make_design(TINY_PLAN, None, topic=SELLERS)

    assert design.candidates[0][1] < design_module.FIT_THRESHOLD
    assert "no library scenario fits" in design.fallback_reason
    assert f"used library scenario {spec.name}, the closest available, not a fit" in design.fallback_reason
    assert "not a fit for the topic" in design.rationale


@pytest.mark.parametrize(("context", "force", "attempted"), [
    ("4096", False, False),  # the embedded model's size: the spec prompt and an answer do not fit
    ("32768", False, True),
    ("4096", True, True),  # forced: one attempt, no repair turn, the answer sized to what is left
])
def test_spec_generation_is_attempted_only_where_the_context_holds_it(server, monkeypatch, context, force,
                                                                      attempted) -> None:
    monkeypatch.setenv("SOCIETAS_LLM_CONTEXT", context)
    server.default = json_reply(BROKEN)
    design, spec = make_design(OFF_TOPIC, client_for(server.url), force_generate=force, topic=OFF_TOPIC.title)

    generation = requests_for(server, "ScenarioSpec")
    assert not design.generated and spec.name == design.candidates[0][0]
    assert bool(generation) == attempted
    assert f"holds {int(context):,} tokens" in design.rationale
    if not attempted:
        assert "spec generation was not attempted" in design.rationale.lower()
        assert "spec generation was not attempted" in design.fallback_reason
    if force:
        assert len(generation) == 1 and "no room left in the model's context" in design.fallback_reason
        assert server.requests[generation[0]]["max_tokens"] < generation_module.GENERATE_MAX_TOKENS


def test_design_experiment_gives_the_plan_the_chosen_scenarios_domain(tmp_path) -> None:
    from types import SimpleNamespace

    from researcher.nodes.design_experiment import design_experiment
    from researcher.state import ResearchConfig

    state = {"topic": SEGREGATION, "plan": TINY_PLAN.model_dump(mode="json"),
             "config": ResearchConfig(seeds=2, agents=100, steps=5, use_ray=False).model_dump()}
    deps = SimpleNamespace(llms=SimpleNamespace(researcher=None), run_dir=tmp_path)
    update = design_experiment(state, SimpleNamespace(context=deps))

    assert update["design"]["scenario"] == "schelling"
    assert update["plan"]["domain"] == "sociology"
    assert json.loads((tmp_path / "plan.json").read_text())["domain"] == "sociology"
    assert "domain economics became sociology" in update["design"]["rationale"]
