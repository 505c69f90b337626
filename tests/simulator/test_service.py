"""The Ray-hosted service: every (condition, seed) a task, data written as Parquet."""

import pandas as pd
import pytest

from simulator.catalog import load_scenario
from simulator.experiment import Condition, Experiment
from simulator.service import simulate, simulation_tool


@pytest.fixture(scope="module")
def experiment():
    return Experiment(
        scenario=load_scenario("deffuant"),
        conditions=[Condition(name="narrow", params={"epsilon": 0.1}), Condition(name="wide", params={"epsilon": 0.4})],
        seeds=[0, 1],
        steps=20,
        population=200,
    )


def test_simulate_on_ray_writes_long_metrics_and_finals(experiment, tmp_path):
    seen = []
    result = simulate(experiment, tmp_path, progress=lambda done, total, label: seen.append((done, total)))
    assert seen[-1] == (4, 4) and len(seen) == 4
    metrics = pd.read_parquet(tmp_path / "data" / "metrics.parquet")
    assert list(metrics.columns) == ["condition", "seed", "step", "metric", "value"]
    assert len(metrics) == 2 * 2 * 21 * 3  # conditions x seeds x (steps + 1) x metrics
    final = pd.read_parquet(tmp_path / "data" / "final.parquet")
    assert sorted(final["condition"].unique()) == ["narrow", "wide"]
    assert (final["steps_run"] == 20).all()
    assert (tmp_path / "scenario.yaml").exists() and (tmp_path / "experiment.json").exists()
    assert result.n_runs == 4


def test_ray_and_in_process_runs_give_identical_data(experiment, tmp_path):
    on_ray = simulate(experiment, None)
    local = simulate(experiment, None, use_ray=False)
    pd.testing.assert_frame_equal(on_ray.metrics, local.metrics)


def test_a_bad_condition_is_refused_before_any_run():
    with pytest.raises(Exception, match="outside its range"):
        Experiment(scenario=load_scenario("deffuant"), conditions=[Condition(name="x", params={"epsilon": 5})])


def test_unreachable_ray_cluster_is_a_one_line_error(monkeypatch):
    import ray

    from simulator.ray_runtime import ensure_ray
    from societas.errors import SocietasError

    if ray.is_initialized():
        ray.shutdown()
    with pytest.raises(SocietasError, match="could not start or join the cluster at 127.0.0.1:1"):
        ensure_ray("127.0.0.1:1")


def test_simulation_is_exposed_as_a_langchain_tool(experiment, tmp_path):
    tool = simulation_tool()
    out = tool.invoke({"experiment": experiment.model_dump(mode="json", by_alias=True), "out_dir": str(tmp_path)})
    assert out["n_runs"] == 4
    assert (tmp_path / "data" / "final.parquet").exists()
