"""Engine semantics: reproducibility, synchronous rules, disjoint pairs, interventions, limits."""

import numpy as np
import pytest

from simulator.compile import compile_scenario
from simulator.engine import Simulation
from simulator.errors import SpecError
from tests.simulator.helpers import final, run, series, spec_from


def test_same_seed_reproduces_a_run_exactly_and_another_seed_differs():
    a = run("sir_network", seed=3, population=2000, steps=30)
    b = run("sir_network", seed=3, population=2000, steps=30)
    c = run("sir_network", seed=4, population=2000, steps=30)
    assert np.array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)


def test_update_rule_is_synchronous():
    spec = spec_from(
        agent_types=[{"name": "a", "attributes": {"x": 1, "y": 2}}],
        rules=[{"name": "swap", "kind": "update", "set": {"x": "y", "y": "x"}}],
        metrics={"x": "mean(x)", "y": "mean(y)"},
        stop={"max_steps": 1},
    )
    r = run(spec)
    assert final(r, "x") == 2 and final(r, "y") == 1


def test_interact_pairs_are_disjoint_each_step():
    spec = spec_from(
        agent_types=[{"name": "a", "attributes": {"met": 0}}],
        rules=[{"name": "meet", "kind": "interact", "partner": "random",
                "self": {"met": "met + 1"}, "other": {"met": "other.met + 1"}}],
        metrics={"max_met": "maximum(met)", "mean_met": "mean(met)"},
        stop={"max_steps": 1},
    )
    r = run(spec, population=101)
    assert final(r, "max_met") == 1
    assert final(r, "mean_met") == pytest.approx(100 / 101)  # 50 pairs, one agent left over


def test_neighbor_pairs_are_disjoint_and_conserve_wealth_on_a_network():
    spec = spec_from(
        space={"kind": "network", "network": "erdos_renyi", "mean_degree": 6},
        agent_types=[{"name": "a", "attributes": {"w": 3, "met": 0}}],
        rules=[{"name": "give", "kind": "interact", "partner": "neighbor",
                "self": {"w": "w - 1 if w > 0 else w", "met": "met + 1"},
                "other": {"w": "other.w + 1 if w > 0 else other.w", "met": "other.met + 1"}}],
        metrics={"total": "sum(w)", "max_met": "maximum(met)"},
        stop={"max_steps": 1},
    )
    r = run(spec, population=500)
    assert final(r, "max_met") == 1
    assert series(r, "total")[0] == series(r, "total")[-1] == 1500


def test_transition_moves_only_from_the_named_state():
    spec = spec_from(
        agent_types=[{"name": "a", "attributes": {"s": {"categories": ["S", "I", "R"], "init": "'I'"}}}],
        rules=[{"name": "t", "kind": "transition", "attribute": "s", "from": "S", "to": "R", "probability": 1}],
        metrics={"r": 'share(s == "R")', "i": 'share(s == "I")'},
    )
    r = run(spec)
    assert final(r, "r") == 0 and final(r, "i") == 1


def test_activation_probability_sets_the_share_of_acting_agents():
    spec = spec_from(rules=[{"name": "r", "kind": "update", "activation": "params.rate", "set": {"x": "x + 1"}}],
                     stop={"max_steps": 1})
    r = run(spec, {"rate": 0.3}, population=20000)
    assert final(r, "mean_x") == pytest.approx(0.3, abs=0.015)


def test_decide_fallback_weights_set_action_shares_and_record_the_choice():
    spec = spec_from(
        agent_types=[{"name": "a", "attributes": {
            "x": 0, "c": {"categories": ["up", "down"], "init": "'down'"}}}],
        rules=[{"name": "d", "kind": "decide", "record": "c",
                "actions": {"up": {"effects": {"x": "x + 1"}}, "down": {"effects": {"x": "x - 1"}}},
                "fallback": {"up": 3, "down": 1}}],
        metrics={"up": 'share(c == "up")', "x": "mean(x)"},
        stop={"max_steps": 1},
    )
    r = run(spec, population=20000)
    assert final(r, "up") == pytest.approx(0.75, abs=0.015)
    assert final(r, "x") == pytest.approx(2 * final(r, "up") - 1)


def test_intervention_sets_a_parameter_from_its_step():
    spec = spec_from(
        rules=[{"name": "r", "kind": "update", "set": {"x": "params.rate"}}],
        interventions=[{"step": 3, "target": "params.rate", "value": 0.9}],
        metrics={"x": "mean(x)"},
    )
    r = run(spec)
    assert series(r, "x") == pytest.approx([0, 0.5, 0.5, 0.9, 0.9, 0.9])


def test_environment_is_computed_before_rules_each_step():
    spec = spec_from(
        environment={"total": "sum(x)"},
        rules=[{"name": "r", "kind": "update", "set": {"x": "env.total + 1"}}],
        metrics={"x": "mean(x)"},
        stop={"max_steps": 2},
    )
    r = run(spec, population=10)
    assert list(series(r, "x")) == [0, 1, 11]


def test_stop_condition_ends_the_run_early():
    spec = spec_from(stop={"max_steps": 50, "when": "mean(x) >= 3"})
    r = run(spec)
    assert r.stopped_early and r.steps[-1] == 3


def test_shares_split_the_population_exactly():
    spec = spec_from(agent_types=[{"name": "a", "share": 1, "attributes": {"x": 0}},
                                  {"name": "b", "share": 2, "attributes": {"x": 1}}],
                     metrics={"b": 'share(self.type == "b")'})
    sim = Simulation(compile_scenario(spec), population=100)
    assert sim.type_counts == [33, 67] or sim.type_counts == [34, 66]
    assert sum(sim.type_counts) == 100


def test_too_many_agents_are_refused_before_allocating():
    spec = spec_from()
    with pytest.raises(SpecError, match="agents"):
        Simulation(compile_scenario(spec), population=10**9)
