"""Bad sizes and sweeps are refused before Ray starts or a run folder exists, each with a hint that works."""

from __future__ import annotations

import subprocess
import sys

import pytest

from simulator.catalog import load_scenario
from simulator.cli import parse_sweep
from simulator.compile import compile_scenario
from simulator.errors import SpecError
from simulator.experiment import Condition, Experiment
from simulator.service import check_population, simulate
from tests.simulator.helpers import spec_from


def experiment(spec, population=None) -> Experiment:
    return Experiment(scenario=spec, conditions=[Condition(name="default", params={})], seeds=[0],
                      steps=2, population=population)


def test_a_repeated_sweep_value_is_a_one_line_error():
    with pytest.raises(SpecError, match="twice"):
        parse_sweep("epsilon=0.1,0.1", load_scenario("deffuant"))
    with pytest.raises(SpecError, match="twice"):
        parse_sweep("epsilon=0.1,0.10", load_scenario("deffuant"))


@pytest.mark.parametrize("population", [-5, 0])
def test_a_negative_or_empty_population_is_refused_before_ray_starts(population):
    import ray

    assert not ray.is_initialized()
    spec = spec_from(population=population)
    with pytest.raises(SpecError, match="population"):
        simulate(experiment(spec), None, use_ray=True)
    assert not ray.is_initialized()


def test_simulate_of_a_negative_population_leaves_no_run_folder(tmp_path):
    spec = tmp_path / "neg.yaml"
    spec.write_text(spec_from(population=-5).to_yaml())
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "societas.cli", "simulate", str(spec), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "population" in p.stderr and not out.exists()


def test_too_many_agents_for_a_scenario_that_cannot_be_partitioned_does_not_suggest_partitioning():
    spec = load_scenario("voter")  # well mixed: every shard would need every agent
    with pytest.raises(SpecError) as info:
        check_population(experiment(spec, 10**10), compile_scenario(spec))
    assert "partitioned" not in (info.value.hint or "") and "50,000,000" in str(info.value)


def test_too_many_agents_for_a_network_scenario_is_left_to_partitioned_sharding():
    spec = load_scenario("sir_network")  # neighbors only: a partitioned run can hold it
    compiled = compile_scenario(spec)
    check_population(experiment(spec, 10**10), compiled, shard_state="partitioned")
    with pytest.raises(SpecError, match="partitioned"):
        check_population(experiment(spec, 10**10), compiled, shard_state="replicated")
