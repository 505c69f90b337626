"""LLM agents against a scripted OpenAI-compatible server (a test double; no model runs here).

Specifies: answers map to the actions' effects; identical prompts in a step go out once; an
invalid answer or an outage falls back for those agents, is counted, and never loses the
step; a warm cache reproduces a run exactly; `auto` mode keeps to the budget; Ray tasks call
the server themselves; the decision log lands in `data/decisions.parquet`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llms.cache import ResponseCache
from simulator.catalog import load_scenario
from simulator.compile import compile_scenario
from simulator.engine import Simulation
from simulator.experiment import Condition, Experiment
from simulator.agents_mode import AgentsSetup, resolve_agents
from simulator.llm_agents import LLMDecisions, decision_schema
from simulator.service import simulate
from societas.errors import SocietasError
from tests.doubles.scripted_openai_server import (
    ScriptedOpenAIServer,
    http_error,
    json_reply,
)
from tests.llms.llm_testing import client_for
from tests.simulator.helpers import spec_from


def mood_spec(**rule_fields):
    """Agents with a numeric `x` and a taste (two archetypes once rounded); each step they move x up or down."""
    rule = {
        "name": "step_x", "kind": "decide", "description": "Move your number.",
        "observation": "Your number is {x}.", "memory": 0,
        "actions": {"up": {"description": "Add one.", "effects": {"x": "x + 1"}},
                    "down": {"description": "Take one away.", "effects": {"x": "x - 1"}}},
        "fallback": {"up": 0, "down": 1},
        "record": "last",
        **rule_fields,
    }
    return spec_from(
        agent_types=[{"name": "a", "decision": "llm", "persona": "Your taste is {taste}.",
                      "attributes": {"x": 0, "taste": "0.2 if index < 30 else 0.8",
                                     "last": {"categories": ["up", "down"], "init": "'down'"}}}],
        rules=[rule],
        metrics={"mean_x": "mean(x)", "share_up": 'share(last == "up")'},
        population=60,
    )


def run_with(policy: LLMDecisions, spec, steps: int = 3, seed: int = 0, population: int | None = None,
             params: dict | None = None):
    try:
        return Simulation(compile_scenario(spec), params, seed, population=population, max_steps=steps,
                          policy=policy).run()
    finally:
        policy.close()


@pytest.fixture
def server():
    with ScriptedOpenAIServer(default=json_reply({"action": "up", "reason": "higher is better"})) as s:
        yield s


def test_llm_answers_are_applied_through_the_actions_effects(server):
    policy = LLMDecisions(client_for(server.url))
    result = run_with(policy, mood_spec())
    assert result.final() == {"mean_x": 3.0, "share_up": 1.0}  # 3 steps of "up": the fallback would say down
    assert result.decisions["llm"] == 180 and result.decisions["fallback"] == 0
    body = server.requests[0]
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["action"]["enum"] == ["up", "down"]
    assert body["max_tokens"] <= 64 and body["temperature"] == 0
    system, user = body["messages"][0]["content"], body["messages"][1]["content"]
    assert system.startswith("Your taste is") and "- up: Add one." in system  # persona and rules first
    assert user.startswith("Your number is")  # the observation last


def test_identical_prompts_in_a_step_go_to_the_server_once(server):
    policy = LLMDecisions(client_for(server.url))
    result = run_with(policy, mood_spec())
    # Two tastes and one x per step: 2 distinct prompts a step for 60 agents.
    assert server.request_count == 2 * 3
    assert policy.counters()["llm_prompts"] == 6
    log = pd.DataFrame(policy.log.columns)
    assert len(log) == 180 and set(log["group_size"]) == {30}
    assert log.groupby("step")["prompt_hash"].nunique().tolist() == [2, 2, 2]
    assert result.decisions["llm"] == 180


def test_without_grouping_every_agent_asks_and_calls_run_concurrently(server):
    spec = mood_spec()
    policy = LLMDecisions(client_for(server.url, max_concurrency=8), group=False)
    run_with(policy, spec, steps=1)
    assert server.request_count == 60
    assert server.max_in_flight > 1


def test_a_steps_calls_are_spread_over_every_endpoint(server):
    with ScriptedOpenAIServer(default=json_reply({"action": "up", "reason": "ok"})) as second:
        policy = LLMDecisions(client_for(f"{server.url},{second.url}", max_concurrency=8), group=False)
        result = run_with(policy, mood_spec(), steps=1)
        assert second.request_count > 0 and server.request_count > 0
        assert server.request_count + second.request_count == 60
    assert result.decisions["llm"] == 60


def test_rounding_to_buckets_makes_archetypes_and_zero_keeps_values(server):
    spec = spec_from(
        agent_types=[{"name": "a", "decision": "llm", "persona": "Your taste is {taste}.",
                      "attributes": {"x": 0, "taste": "index / 100"}}],
        rules=[{"name": "r", "kind": "decide", "observation": "Go?", "memory": 0, "bucket": 0.25,
                "actions": {"up": {"effects": {"x": "x + 1"}}, "down": {}}, "fallback": {"down": 1}}],
        population=100)
    run_with(LLMDecisions(client_for(server.url)), spec, steps=1)
    assert server.request_count == 5  # 0, 0.25, 0.5, 0.75, 1
    tastes = {m["messages"][0]["content"].split("\n")[0] for m in server.requests}
    assert tastes == {f"Your taste is {t}." for t in ("0", "0.25", "0.5", "0.75", "1")}
    exact = spec.model_copy(update={"rules": [spec.rules[0].model_copy(update={"bucket": 0.0})]})
    with ScriptedOpenAIServer(default=json_reply({"action": "up", "reason": "ok"})) as other:
        run_with(LLMDecisions(client_for(other.url, max_concurrency=16)), exact, steps=1)
        assert other.request_count == 100


def test_invalid_answers_fall_back_for_those_agents_and_are_counted():
    with ScriptedOpenAIServer(default=json_reply({"action": "jump", "reason": "not an option"})) as server:
        policy = LLMDecisions(client_for(server.url, repairs=1))
        result = run_with(policy, mood_spec(), steps=2)
        assert server.request_count == 2 * 2 * 2  # 2 prompts a step, each asked and repaired once
    counts = policy.counters()
    assert counts["llm_invalid"] == 120 and counts["llm_agent_decisions"] == 0
    assert (result.decisions["llm"], result.decisions["fallback"]) == (0, 120)
    assert result.final()["mean_x"] == -2.0  # the fallback says down every time
    log = pd.DataFrame(policy.log.columns)
    assert set(log["outcome"]) == {"invalid"} and set(log["action"]) == {"down"}


def test_a_server_outage_mid_step_is_retried_then_falls_back_without_losing_the_step():
    # One prompt answered, then the server fails every attempt at the other (3 tries), then recovers.
    script = [json_reply({"action": "up", "reason": "ok"}), http_error(500), http_error(503), http_error(500)]
    with ScriptedOpenAIServer(script, default=json_reply({"action": "up", "reason": "back"})) as server:
        policy = LLMDecisions(client_for(server.url, max_concurrency=1))
        sim = Simulation(compile_scenario(mood_spec()), None, 0, max_steps=2, policy=policy)
        try:
            sim.step()
            first = sim.attrs["x"].copy()
            sim.step()
        finally:
            policy.close()
    assert sorted(np.unique(first)) == [-1.0, 1.0]  # every agent acted: half by the LLM, half by the fallback
    assert (first == 1).sum() == 30 and (first == -1).sum() == 30
    counts = policy.counters()
    assert counts["llm_failed"] == 30 and counts["llm_retries"] == 2
    assert counts["llm_agent_decisions"] == 30 + 60  # the next step is answered again
    log = pd.DataFrame(policy.log.columns)
    assert log.loc[log["outcome"] == "failed", "step"].unique().tolist() == [1]


def test_the_same_seed_with_a_warm_cache_reproduces_the_run_exactly(tmp_path, monkeypatch):
    monkeypatch.setenv("SOCIETAS_LLM_MODEL", "scripted-model")  # the cache keys on the model, not the port
    spec = load_scenario("el_farol")
    # Answers that differ by prompt (alternating in arrival order), so the run depends on which prompt got what.
    answers = [json_reply({"action": a, "reason": "r"}) for a in ("go", "stay") * 200]
    cache = tmp_path / "llm_cache.sqlite"
    with ScriptedOpenAIServer(answers) as server:
        first_policy = LLMDecisions(client_for(server.url, cache=ResponseCache(cache), max_concurrency=1))
        first = run_with(first_policy, spec, steps=4, seed=3, population=80)
        assert server.request_count > 0
    with ScriptedOpenAIServer(default=http_error(500)) as down:  # only the cache can answer now
        again_policy = LLMDecisions(client_for(down.url, cache=ResponseCache(cache)))
        again = run_with(again_policy, spec, steps=4, seed=3, population=80)
        assert down.request_count == 0
    np.testing.assert_array_equal(first.values, again.values)
    assert pd.DataFrame(first_policy.log.columns).drop(columns="latency_s").equals(
        pd.DataFrame(again_policy.log.columns).drop(columns="latency_s"))
    assert again_policy.counters()["llm_cache_hits"] == first_policy.counters()["llm_prompts"]


def test_memory_reminds_agents_of_their_last_choices(server):
    run_with(LLMDecisions(client_for(server.url)), mood_spec(memory=2), steps=3)
    users = [r["messages"][1]["content"] for r in server.requests]
    assert not any("last choices" in u for u in users[:2])
    assert any("Your last choices, oldest first: up, up." in u for u in users[-2:])


def test_decision_schema_enumerates_the_actions_and_cuts_long_reasons():
    schema = decision_schema("vote", ["yes", "no"])
    assert schema.model_json_schema()["properties"]["action"]["enum"] == ["yes", "no"]
    answer = schema.model_validate({"action": "yes", "reason": "x" * 100})
    assert len(answer.reason) == 32
    with pytest.raises(ValueError):
        schema.model_validate({"action": "maybe", "reason": ""})


def test_an_unknown_placeholder_is_a_spec_error():
    with pytest.raises(SocietasError, match=r"unknown placeholder \{mood\}"):
        compile_scenario(mood_spec(observation="You feel {mood}."))


def experiment(name="el_farol", seeds=(0, 1), steps=3, population=40):
    return Experiment(scenario=load_scenario(name), conditions=[Condition(name="default")], seeds=list(seeds),
                      steps=steps, population=population)


def test_auto_mode_uses_llm_agents_within_the_budget_of_calls_and_the_fallback_beyond():
    exp = experiment()  # 40 agents x 3 steps x 2 seeds = 240 decisions
    compiled = compile_scenario(exp.scenario)
    # Budget 0: the decisions do not fit, so the pilot counts the calls.
    calls = resolve_agents(AgentsSetup(mode="auto", budget=0), exp, compiled).estimated_calls
    assert 0 < calls < 240  # archetypes: the pilot finds agents alike, so fewer calls than decisions
    ungrouped = resolve_agents(AgentsSetup(mode="auto", budget=0, group=False), exp, compiled)
    assert ungrouped.estimated_calls == 240  # without grouping every decision is a call
    within = resolve_agents(AgentsSetup(mode="auto", budget=calls), exp, compiled)
    beyond = resolve_agents(AgentsSetup(mode="auto", budget=calls - 1), exp, compiled)
    assert (within.used, within.estimated_decisions) == ("llm", 240)
    assert beyond.used == "rule" and f"exceed the budget of {calls - 1}" in beyond.reason
    assert resolve_agents(AgentsSetup(mode="rule"), exp, compiled).used == "rule"
    assert resolve_agents(AgentsSetup(mode="llm", budget=0), exp, compiled).used == "llm"
    # public_goods reconsiders with activation params.reconsider (0.2): the estimate scales with it.
    pg = experiment("public_goods", seeds=(0,), steps=10, population=100)
    assert resolve_agents(AgentsSetup(), pg, compile_scenario(pg.scenario)).estimated_decisions == 200
    plain = experiment("voter")
    assert resolve_agents(AgentsSetup(mode="llm"), plain, compile_scenario(plain.scenario)).used == "rule"


def test_the_pilot_runs_a_sample_of_a_large_population(monkeypatch):
    import simulator.agents_mode as agents_mode
    from simulator import engine

    exp = experiment(population=400)
    compiled = compile_scenario(exp.scenario)
    full = agents_mode.estimate_calls(exp, compiled)
    full_ungrouped = agents_mode.estimate_calls(exp, compiled, group=False)
    built = []
    original = engine.Simulation.__init__

    def spy(self, *args, **kwargs):
        built.append(kwargs.get("population"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(engine.Simulation, "__init__", spy)
    monkeypatch.setattr(agents_mode, "PILOT_AGENTS", 100)
    sampled = agents_mode.estimate_calls(exp, compiled)
    ungrouped = agents_mode.estimate_calls(exp, compiled, group=False)
    assert set(built) == {100}  # never the full 400
    assert ungrouped == full_ungrouped == 400 * 3 * 2  # every prompt distinct: scaled up to everyone
    assert 0 < sampled <= full  # archetypes: a sample finds (at most) the prompts the whole finds


@pytest.mark.parametrize("use_ray", [False, True])
def test_simulate_in_llm_mode_writes_the_decision_log_and_the_choice(tmp_path, use_ray):
    with ScriptedOpenAIServer(default=json_reply({"action": "go", "reason": "fun"})) as server:
        setup = AgentsSetup(mode="auto", budget=1000, llm=server.url)
        result = simulate(experiment(), tmp_path, agents=setup, use_ray=use_ray)
        requests = server.request_count
    assert result.agents.used == "llm" and result.agents.model == "scripted-model"
    decisions = pd.read_parquet(tmp_path / "data" / "decisions.parquet")
    assert len(decisions) == 40 * 3 * 2  # every agent-decision of both seeds, made in the runs themselves
    assert set(decisions["seed"]) == {0, 1} and set(decisions["action"]) == {"go"}
    assert {"agent", "step", "prompt_hash", "action", "reason", "latency_s"} <= set(decisions.columns)
    agents = json.loads((tmp_path / "data" / "agents.json").read_text())
    assert agents["used"] == "llm" and agents["totals"]["llm"] == 240
    assert result.summary()["agents"]["reason"].startswith("auto:")
    assert requests == agents["totals"]["llm_requests"] + 1 > 1  # and the driver's one probe
    final = pd.read_parquet(tmp_path / "data" / "final.parquet")
    assert (final["attendance"] == 1.0).all()  # everyone was told to go: the LLM's choice is the state


def test_an_unreachable_agents_backend_is_one_error_before_any_run(tmp_path, monkeypatch):
    monkeypatch.setenv("SOCIETAS_LLM_RETRIES", "1")
    with ScriptedOpenAIServer() as gone:
        url = gone.url  # a port that nothing listens on once the server is stopped
    with pytest.raises(SocietasError, match="unavailable"):
        simulate(experiment(), tmp_path, agents=AgentsSetup(mode="llm", llm=url), use_ray=False)


def test_rule_mode_runs_the_fallback_and_says_so(tmp_path):
    result = simulate(experiment(), tmp_path, agents=AgentsSetup(mode="rule"), use_ray=False)
    assert result.agents.used == "rule" and not (tmp_path / "data" / "decisions.parquet").exists()
    assert json.loads((tmp_path / "data" / "agents.json").read_text())["totals"]["fallback"] == 240


def test_cli_agents_mode_is_checked_and_recorded_in_the_manifest(tmp_path):
    def societas(*args):
        return subprocess.run([sys.executable, "-m", "societas.cli", *args], capture_output=True, text=True,
                              check=False, timeout=300, cwd=Path(__file__).resolve().parents[2])

    bad = societas("scenarios", "run", "voting", "--agents-mode", "magic", "--local", "--out", str(tmp_path / "x"))
    assert bad.returncode != 0 and "unknown --agents-mode 'magic'" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = societas("scenarios", "run", "voting", "--model-path", str(tmp_path / "none.gguf"), "--local",
                       "--out", str(tmp_path / "y"))
    assert missing.returncode != 0 and "GGUF model file not found" in missing.stderr
    assert not (tmp_path / "y").exists()  # refused before a run folder was made
    ok = societas("scenarios", "run", "voting", "--agents", "50", "--steps", "3", "--seeds", "2", "--local",
                  "--agents-mode", "auto", "--llm-budget", "10", "--out", str(tmp_path / "run"), "--json")
    assert ok.returncode == 0, ok.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["agents"]["used"] == "rule" and manifest["agents"]["estimated_decisions"] == 300


@pytest.mark.parametrize("scenario, params, action, metric, expected", [
    ("voting", {"initial_yes": 0.2}, "yes", "yes_share", 1.0),  # the rule would drive "yes" out
    ("info_sharing", {"share_prob": 0.6}, "ignore", "spread", None),  # stays at the seeds
    ("public_goods", {"r": 8.0, "reconsider": 1.0}, "none", "cooperation", 0.0),  # the rule would keep 0.5
    ("el_farol", {}, "stay", "attendance", 0.0),
])
def test_each_llm_scenario_lets_the_llm_choice_drive_its_metric(scenario, params, action, metric, expected):
    with ScriptedOpenAIServer(default=json_reply({"action": action, "reason": "scripted"})) as server:
        result = run_with(LLMDecisions(client_for(server.url)), load_scenario(scenario), steps=3, population=200,
                          params=params)
        assert server.request_count > 0
    values = result.values[:, result.metric_names.index(metric)]
    if expected is None:
        assert values[-1] == values[0] > 0  # nobody passed the story on
    else:
        assert values[-1] == expected
    assert result.decisions["llm"] > 0
