"""One simulation split over Ray actors must give the single-process result bit for bit."""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.catalog import load_scenario
from simulator.compile import compile_scenario
from simulator.engine import Simulation
from simulator.experiment import Condition, Experiment
from simulator.spec import ScenarioSpec
from simulator.sharding.actors import start_shards
from simulator.sharding.coordinator import ShardedRun, run_sharded
from simulator.sharding.planning import (
    PARTITION_HALO_BELOW,
    expected_halo_share,
    partition,
    partition_blocker,
    plan_segments,
    segment_writes,
    shard_count,
)
from societas.errors import SocietasError
from tests.simulator.helpers import spec_from

LIBRARY = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "simulator" / "library").glob("*.yaml"))
AGENTS, STEPS, SEED = 150, 5, 7


@pytest.fixture(scope="module")
def ray_local():
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def pool(ray_local):
    """Four shard actors reused by the runs below (starting a Ray actor costs about a second).
    They reserve no CPU, so the tests that start their own shards are not kept waiting."""
    actors = start_shards(4, num_cpus=0)
    yield actors
    for a in actors:
        ray_local.kill(a, no_restart=True)


def _same(a, b) -> bool:
    return (np.array_equal(a.values, b.values, equal_nan=True) and a.metric_names == b.metric_names
            and a.params == b.params and a.decisions == b.decisions and a.stopped_early == b.stopped_early)


def test_every_library_scenario_is_covered():
    assert len(LIBRARY) >= 13 and "schelling" in LIBRARY and "sir_network" in LIBRARY


@pytest.mark.parametrize("name", LIBRARY)
def test_sharded_run_matches_single_process(pool, name):
    spec = load_scenario(name)
    single = Simulation(compile_scenario(spec), None, SEED, population=AGENTS, max_steps=STEPS).run()
    assert len(single.values) > 2, f"{name} stops too early to test anything"
    for k in (2, 3, 4):
        sharded = run_sharded(spec, None, SEED, shards=k, population=AGENTS, max_steps=STEPS, actors=pool)
        assert _same(single, sharded), f"{name}: {k} shards differ from one process"


@pytest.mark.parametrize(("name", "kill_at"), [("deffuant", 5), ("schelling", 3)])  # schelling: grid moves
def test_killed_shard_resumes_from_checkpoint_to_same_result(ray_local, name, kill_at):
    spec = load_scenario(name)
    single = Simulation(compile_scenario(spec), None, SEED, population=AGENTS, max_steps=8).run()
    run = ShardedRun(spec, None, SEED, shards=2, population=AGENTS, max_steps=8, checkpoint_every=2)
    killed = []

    def kill_once(step: int, total: int) -> None:
        if step == kill_at and not killed:
            ray_local.kill(run.actors[1], no_restart=False)  # Ray restarts it (max_restarts)
            killed.append(step)

    try:
        result = run.run(on_step=kill_once)
    finally:
        run.shutdown()
    assert killed and run.restarts == 1
    assert len(single.values) > kill_at + 1  # the run went on after the kill
    assert _same(single, result)


def test_exchange_waits_only_for_remote_reads():
    # `b` reads a neighbor's `a`, written by the rule before: the writes must be exchanged first.
    needs = spec_from(space={"kind": "network", "network": "erdos_renyi", "mean_degree": 4},
                      agent_types=[{"name": "a", "attributes": {"x": 0, "y": 0}}],
                      rules=[{"name": "r1", "kind": "update", "set": {"x": "x + 1"}},
                             {"name": "r2", "kind": "update", "set": {"y": "neighbor_mean(x)"}}])
    # Here the second rule reads only its own row's `x`: one phase, no exchange between them.
    local = spec_from(agent_types=[{"name": "a", "attributes": {"x": 0, "y": 0}}],
                      rules=[{"name": "r1", "kind": "update", "set": {"x": "x + 1"}},
                             {"name": "r2", "kind": "update", "set": {"y": "x * 2"}}])
    assert plan_segments(compile_scenario(needs)) == [[0], [1]]
    assert plan_segments(compile_scenario(local)) == [[0, 1]]


def test_only_attributes_read_for_other_shards_rows_are_exchanged(pool):
    # `y` is read only on its own row and by no metric: its owner alone needs it.
    spec = spec_from(space={"kind": "network", "network": "erdos_renyi", "mean_degree": 4},
                     agent_types=[{"name": "a", "attributes": {"x": "uniform()", "y": 0}}],
                     rules=[{"name": "r1", "kind": "update", "set": {"y": "y + x"}},
                            {"name": "r2", "kind": "update", "set": {"x": "0.5 * x + 0.5 * (neighbor_mean(x) if neighbor_count() > 0 else x) + 0.01 * y"}}],
                     metrics={"mean_x": "mean(x)"})
    compiled = compile_scenario(spec)
    assert [segment_writes(compiled, s) for s in plan_segments(compiled)] == [["x"]]
    counted = spec_from(**{**spec.model_dump(mode="json", by_alias=True, exclude_none=True),
                           "metrics": {"mean_x": "mean(x)", "mean_y": "mean(y)"}})
    assert [segment_writes(compile_scenario(counted), s) for s in plan_segments(compile_scenario(counted))] == [["x", "y"]]
    single = Simulation(compiled, None, SEED, population=AGENTS, max_steps=6).run()
    assert _same(single, run_sharded(spec, None, SEED, shards=3, population=AGENTS, max_steps=6, actors=pool))


def test_partition_covers_every_agent_once_in_balanced_ranges():
    bounds = partition(10, 3)
    assert bounds[0][0] == 0 and bounds[-1][1] == 10
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert [b - a for a, b in bounds] in ([3, 3, 4], [3, 4, 3], [4, 3, 3])
    with pytest.raises(SocietasError):
        partition(3, 4)


def test_shards_without_ray_is_a_one_line_error():
    spec = load_scenario("voter")
    exp = Experiment(scenario=spec, conditions=[Condition(name="default", params={})], seeds=[0], population=100)
    with pytest.raises(SocietasError, match="--shards needs Ray") as info:
        shard_count(compile_scenario(spec), exp, 2, use_ray=False)
    assert "\n" not in str(info.value)
    assert shard_count(compile_scenario(spec), exp, None, use_ray=True) == 1  # small runs stay whole


def test_a_user_error_inside_a_shard_is_the_engines_one_line_error(pool):
    data = load_scenario("voter").model_dump(mode="json", by_alias=True)
    data["space"] = {"kind": "grid", "density": 1.5}
    with pytest.raises(SocietasError, match="density 1.5 must be in"):
        run_sharded(data, None, 0, shards=2, population=100, max_steps=2, actors=pool)


def test_simulate_with_shards_writes_the_same_data(ray_local):
    from simulator.service import simulate

    spec = load_scenario("schelling")
    exp = Experiment(scenario=spec, conditions=[Condition(name="default", params={})], seeds=[0, 1],
                     population=AGENTS, steps=4)
    tasks = simulate(exp, None)
    sharded = simulate(exp, None, shards=2)
    pd.testing.assert_frame_equal(tasks.metrics, sharded.metrics)
    cols = [c for c in tasks.final.columns if c != "wall_seconds"]
    pd.testing.assert_frame_equal(tasks.final[cols], sharded.final[cols])
    assert sharded.summary()["sharding"] == {"shards": 2, "state": "replicated (space 'grid': only a network "
                                                                   "bounds who reads whom)"}
    assert "sharding" not in tasks.summary()


def test_simulate_with_partitioned_shards_writes_the_same_data(ray_local):
    from simulator.service import simulate

    spec = ScenarioSpec.model_validate(PARTITIONABLE["sir_lattice"])
    exp = Experiment(scenario=spec, conditions=[Condition(name="default", params={})], seeds=[0, 1],
                     population=AGENTS, steps=4)
    tasks = simulate(exp, None)
    sharded = simulate(exp, None, shards=3, shard_state="partitioned")
    pd.testing.assert_frame_equal(tasks.metrics, sharded.metrics)
    assert sharded.summary()["sharding"] == {"shards": 3, "state": "partitioned"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_joins_a_local_head_started_with_ray_start(tmp_path):
    """`ray start --head` here, then `societas scenarios run ... --ray-address auto --shards 2`."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    port = _free_port()
    head = subprocess.Popen(
        [str(bin_dir / "ray"), "start", "--head", f"--port={port}", "--block", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        session = None
        deadline = time.monotonic() + 90
        for line in head.stdout:  # the head prints its session folder once it is up
            found = re.search(r"saved to: (\S+/session_[^/]+)/logs", line)
            if found:
                session = Path(found.group(1))
                break
            assert time.monotonic() < deadline, "ray start --head did not come up"
        assert session is not None, "ray start --head exited"
        out = tmp_path / "run"
        proc = subprocess.run(
            [str(bin_dir / "societas"), "scenarios", "run", "voter", "--agents", "120", "--steps", "3", "--seeds",
             "1", "--shards", "2", "--ray-address", "auto", "--out", str(out), "--json"],
            check=False, capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert (out / "data" / "metrics.parquet").exists()
        # The run's driver connected to this head: its log is in the head's session folder.
        assert any(p.name.startswith("python-core-driver") for p in (session / "logs").iterdir())
    finally:
        _stop_group(head)
        current = Path("/tmp/ray/ray_current_cluster")  # where `auto` finds a head: ours is gone
        if current.exists() and current.read_text().strip().endswith(f":{port}"):
            current.unlink(missing_ok=True)


def _stop_group(head: subprocess.Popen) -> None:
    """Stop the head and the Ray processes it started (its process group), not anyone else's."""
    try:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        os.killpg(head.pid, signal.SIGKILL)  # gcs_server and raylet outlive a SIGTERM to the head
    except ProcessLookupError:
        pass
    head.wait(timeout=10)


def test_neighbor_sums_over_a_shards_id_range_equal_the_whole_arrays_bit_for_bit():
    from simulator.networks import build_network

    space = build_network("erdos_renyi", 2000, {"mean_degree": 6.0}, 3)
    x = np.random.default_rng(0).normal(size=2000) * 1e6
    for op in ("sum", "mean"):
        whole = space.neighbor_reduce(x, op)
        for rows in (np.arange(500, 1500), np.arange(0, 2000, 2), np.array([7, 3, 9])):
            assert np.array_equal(space.neighbor_reduce(x, op, rows), whole[rows], equal_nan=True)


# -- partitioned state: each shard holds its own agents and their neighbors ----------------------

LATTICE = {"kind": "network", "network": "lattice", "neighborhood": "moore", "torus": True}


def _variant(name: str, **changes) -> dict:
    data = load_scenario(name).model_dump(mode="json", by_alias=True, exclude_none=True)
    data.update(changes)
    return data


def _two_types() -> dict:
    """Voting with a second agent type, and the rule restricted to it (the last ids)."""
    data = _variant("voting", space={"kind": "network", "network": "watts_strogatz", "k": 4, "rewire": 0.2})
    citizen = {**data["agent_types"][0], "share": 1.0}
    citizen.pop("count", None)
    data["agent_types"] = [citizen, {**citizen, "name": "stubborn", "count": 40, "share": None}]
    data["agent_types"][1].pop("share")
    data["rules"][0]["agents"] = ["stubborn"]
    return data


PARTITIONABLE = {
    "info_sharing": _variant("info_sharing"),
    "sir_network": _variant("sir_network"),  # transitions, categories, a stop condition
    "sir_no_stop": _variant("sir_network", stop={"max_steps": 8}),
    "sir_lattice": _variant("sir_network", stop={"max_steps": 8}, space=LATTICE),
    "voting_lattice": _variant("voting", space=LATTICE),  # a decide rule with a record, activation draws
    "voting_small_world": _variant("voting", space={"kind": "network", "network": "watts_strogatz", "k": 4,
                                                    "rewire": 0.1}),
    "voting_two_types": _two_types(),
    "sir_sparse": _variant("sir_network", stop={"max_steps": 8},  # many agents without neighbors
                           space={"kind": "network", "network": "erdos_renyi", "mean_degree": 0.7}),
}


@pytest.mark.parametrize("name", sorted(PARTITIONABLE))
def test_partitioned_run_matches_single_process(pool, name):
    data = PARTITIONABLE[name]
    spec = ScenarioSpec.model_validate(data)
    assert partition_blocker(compile_scenario(spec)) is None
    single = Simulation(compile_scenario(spec), None, SEED, population=AGENTS, max_steps=8).run()
    for k in (2, 3, 4):
        run = ShardedRun(data, None, SEED, shards=k, population=AGENTS, max_steps=8, actors=pool, state="partitioned")
        try:
            result = run.run()
        finally:
            run.shutdown()
        assert run.partitioned and _same(single, result), f"{name}: {k} partitioned shards differ from one process"


def test_partitioned_shards_exchange_halos_not_everything(pool):
    data = PARTITIONABLE["sir_lattice"]
    sizes = {}
    for state in ("partitioned", "replicated"):
        run = ShardedRun(data, None, SEED, shards=4, population=400, max_steps=2, actors=pool, state=state)
        try:
            sizes[state] = run.bytes_per_step()
        finally:
            run.shutdown()
    # Replicated: every shard takes in the other 3/4 of `state` (8 bytes a value) every step.
    assert sizes["replicated"] == 8 * 400 * 3
    # Partitioned: halos (a lattice's edge rows) plus the metrics' attribute for shard 0.
    assert sizes["partitioned"] < 0.6 * sizes["replicated"]


def test_auto_partitions_where_a_shard_would_mirror_few_of_the_others():
    lattice = compile_scenario(ScenarioSpec.model_validate(PARTITIONABLE["sir_lattice"]))
    dense = compile_scenario(ScenarioSpec.model_validate(PARTITIONABLE["sir_no_stop"]))  # Erdős–Rényi
    assert expected_halo_share(lattice, None, 10**6, 2) == 0.0
    assert expected_halo_share(dense, None, 10**6, 2) > 0.9 > PARTITION_HALO_BELOW  # nearly everyone
    assert expected_halo_share(dense, None, 10**6, 64) < PARTITION_HALO_BELOW
    assert "grid" in partition_blocker(compile_scenario(load_scenario("schelling")))
    assert "interact" in partition_blocker(compile_scenario(load_scenario("public_goods")))
    clusters = _variant("info_sharing", metrics={"cluster": "largest_region(state)"})
    assert partition_blocker(compile_scenario(ScenarioSpec.model_validate(clusters))) == "metric 'cluster' needs the network"


def test_auto_state_follows_the_network(pool):
    notes = {}
    for name in ("sir_lattice", "sir_no_stop"):
        run = ShardedRun(PARTITIONABLE[name], None, SEED, shards=2, population=AGENTS, max_steps=2, actors=pool)
        notes[name] = run.state_note
        run.shutdown()
    assert notes["sir_lattice"] == "partitioned"
    assert notes["sir_no_stop"].startswith("replicated (a shard would mirror ~")


def test_asking_for_partitioned_state_where_it_cannot_be_is_a_one_line_error(pool):
    with pytest.raises(SocietasError, match="cannot run with partitioned state: space 'grid'") as info:
        ShardedRun(load_scenario("schelling"), None, SEED, shards=2, population=AGENTS, actors=pool,
                   state="partitioned")
    assert "\n" not in str(info.value)


def test_killed_partitioned_shard_resumes_from_checkpoint_to_same_result(ray_local):
    data = PARTITIONABLE["voting_lattice"]
    spec = ScenarioSpec.model_validate(data)
    single = Simulation(compile_scenario(spec), None, SEED, population=AGENTS, max_steps=8).run()
    run = ShardedRun(data, None, SEED, shards=2, population=AGENTS, max_steps=8, checkpoint_every=2,
                     state="partitioned")
    killed = []

    def kill_once(step: int, total: int) -> None:
        if step == 5 and not killed:
            ray_local.kill(run.actors[1], no_restart=False)
            killed.append(step)

    try:
        result = run.run(on_step=kill_once)
    finally:
        run.shutdown()
    assert killed and run.restarts == 1 and run.partitioned
    assert _same(single, result)


@pytest.mark.parametrize(("name", "params", "stop"), [
    ("sir_network", {"gamma": 0.9, "beta": 0.05, "initial_infected": 0.05}, None),  # the epidemic dies out
    ("voting", {}, "env.step >= 4"),  # decisions every step: the other shards' step 5 must not count
])
def test_partitioned_run_stops_where_one_process_stops(pool, name, params, stop):
    data = _variant(name, space=LATTICE) if name == "voting" else _variant(name)
    if stop:
        data["stop"] = {"max_steps": 30, "when": stop}
    spec = ScenarioSpec.model_validate(data)
    single = Simulation(compile_scenario(spec), params, SEED, population=300, max_steps=30).run()
    assert single.stopped_early and len(single.values) < 31
    for k in (2, 3):
        result = run_sharded(data, params, SEED, shards=k, population=300, max_steps=30, actors=pool,
                             state="partitioned")
        assert result.shard_state == "partitioned" and _same(single, result), f"{name}: {k} shards"
