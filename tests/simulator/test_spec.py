"""The scenario spec: schema, YAML round trip, and semantic errors that say where."""

import json

import pytest

from simulator.catalog import all_scenarios, library_paths, load_scenario
from simulator.compile import compile_scenario
from simulator.errors import SpecError
from simulator.spec import (
    DOMAINS,
    load_spec,
    load_spec_text,
    parse_param_overrides,
    scenario_json_schema,
)
from tests.simulator.helpers import spec_from


def test_library_has_twelve_scenarios_over_six_domains():
    specs = all_scenarios()
    assert len(specs) >= 12
    assert len({s.domain for s in specs}) >= 6
    assert {s.domain for s in specs} <= set(DOMAINS)
    for required in ("schelling", "boltzmann_wealth", "sir_network", "deffuant", "axelrod", "granovetter", "voter"):
        assert required in library_paths()


@pytest.mark.parametrize("name", sorted(library_paths()))
def test_every_library_scenario_compiles_and_round_trips_through_yaml(name):
    spec = load_scenario(name)
    compile_scenario(spec)
    again = load_spec_text(spec.to_yaml())
    assert again == spec


def test_json_schema_names_every_rule_kind():
    schema = scenario_json_schema()
    text = json.dumps(schema)
    for kind in ("update", "transition", "interact", "move", "decide"):
        assert f'"{kind}"' in text
    assert set(schema["required"]) >= {"name", "domain", "agent_types", "rules", "metrics"}


def test_malformed_yaml_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n  title: [unclosed\n")
    with pytest.raises(SpecError, match=r"not valid YAML at line \d+"):
        load_spec(bad)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SpecError, match="no scenario file"):
        load_spec(tmp_path / "nope.yaml")


def test_wrong_type_names_the_field():
    with pytest.raises(SpecError, match=r"field stop\.max_steps"):
        spec_from(stop={"max_steps": "many"})


def test_unknown_function_names_scenario_rule_and_field():
    spec = spec_from(rules=[{"name": "grow", "kind": "update", "set": {"x": "explode(x)"}}])
    with pytest.raises(SpecError) as err:
        compile_scenario(spec)
    text = str(err.value)
    assert "tiny" in text and "grow" in text and "explode" in text


def test_unknown_attribute_in_effect_target():
    spec = spec_from(rules=[{"name": "grow", "kind": "update", "set": {"y": "1"}}])
    with pytest.raises(SpecError, match="unknown attribute 'y'"):
        compile_scenario(spec)


def test_unknown_category_label_is_refused():
    spec = spec_from(
        agent_types=[{"name": "a", "attributes": {"s": {"categories": ["S", "I"], "init": "'S'"}}}],
        rules=[{"name": "t", "kind": "transition", "attribute": "s", "from": "S", "to": "X", "probability": 0.1}],
    )
    with pytest.raises(SpecError, match="'X' is not a category"):
        compile_scenario(spec)


def test_metric_must_be_scalar():
    spec = spec_from(metrics={"bad": "x + 1"})
    with pytest.raises(SpecError, match="metric 'bad'"):
        compile_scenario(spec)


def test_move_rule_needs_a_grid():
    spec = spec_from(rules=[{"name": "go", "kind": "move"}])
    with pytest.raises(SpecError, match="needs a grid"):
        compile_scenario(spec)


def test_parameter_default_outside_its_range_is_refused():
    with pytest.raises(SpecError, match="above max"):
        spec_from(parameters={"rate": {"default": 2, "min": 0, "max": 1}})


def test_param_overrides_are_checked_against_ranges():
    spec = spec_from()
    assert parse_param_overrides(["rate=0.25"], spec) == {"rate": 0.25}
    with pytest.raises(SpecError, match="outside its range"):
        parse_param_overrides(["rate=3"], spec)
    with pytest.raises(SpecError, match="unknown parameter 'speed'"):
        parse_param_overrides(["speed=1"], spec)
    with pytest.raises(SpecError, match="not a number"):
        parse_param_overrides(["rate=fast"], spec)


def test_unknown_library_scenario_suggests_close_names():
    with pytest.raises(SpecError, match="did you mean schelling"):
        load_scenario("schelin")


def test_suggested_sweep_values_must_lie_in_the_parameter_range():
    with pytest.raises(SpecError, match="sweep value 2"):
        spec_from(parameters={"rate": {"default": 0.5, "min": 0, "max": 1, "sweep": [0.1, 2]}})


@pytest.mark.parametrize("name", sorted(library_paths()))
def test_every_library_scenario_suggests_a_sweep(name):
    spec = load_scenario(name)
    assert any(p.sweep and len(set(p.sweep)) >= 2 for p in spec.parameters.values())


def test_a_one_sided_range_is_reported_without_crashing():
    spec = spec_from(parameters={"rate": {"default": 0.5, "min": 0}})
    with pytest.raises(SpecError, match=r"outside its range \[0, inf\]"):
        parse_param_overrides(["rate=-1"], spec)
