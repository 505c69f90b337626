"""The engine's memo of neighbor reductions and aggregates, and the grid's stencil reductions.

Memoized values must be exactly what recomputing gives: every kind of state write invalidates
them, random functions are never memoized, and the grid's stencil path gives the CSR path's
results bit for bit.
"""

import numpy as np
import pytest

from simulator.catalog import load_scenario
from simulator.compile import compile_scenario
from simulator.engine import RowsContext, Simulation
from simulator.expr import Names, compile_expr
from simulator.grid import GridSpace
from simulator.space import NeighborLists
from tests.simulator.helpers import spec_from


def _no_memo(monkeypatch):
    monkeypatch.setattr(Simulation, "memo", lambda self, key, rows, compute: compute())


def _values(spec, population=300, steps=6, seed=5):
    return Simulation(compile_scenario(spec), None, seed, population=population, max_steps=steps).run().values


# One spec per kind of write. Each step: the environment computes the watched quantities
# (filling the memo), rule "write" changes the state, rule "after" reads the same quantities
# again into y / z. If a write did not invalidate the memo, y / z would hold the values from
# before the write, and the metrics would tell them apart from the final state.
_STATE = {"s": {"categories": ["sus", "inf"], "init": "'inf' if uniform() < 0.5 else 'sus'"}, "y": 0.0, "z": 0.0, "w": 0.0}
_WATCHED = {"before_share": 'share(s == "inf")', "before_nb": 'mean(neighbor_sum(s == "inf"))'}
_AFTER = {"name": "after", "kind": "update", "set": {"y": 'share(s == "inf")', "z": 'neighbor_sum(s == "inf")',
                                                   "w": "env.before_share"}}
_METRICS = {"y": "maximum(y)", "share": 'share(s == "inf")', "z": "mean(z)", "nb": 'mean(neighbor_sum(s == "inf"))',
            "before": "maximum(w)"}
_NETWORK = {"kind": "network", "network": "erdos_renyi", "mean_degree": 6}
_GRID = {"kind": "grid", "neighborhood": "moore", "torus": True, "density": 0.6}

_WRITES = {
    "update": (_NETWORK, {"name": "write", "kind": "update", "activation": "0.3",
                          "set": {"s": "'sus' if s == 'inf' else 'inf'"}}),
    "transition": (_NETWORK, {"name": "write", "kind": "transition", "attribute": "s", "from": "sus",
                              "to": "inf", "probability": 0.3}),
    "move": (_GRID, {"name": "write", "kind": "move", "when": 'neighbor_same(s) < 0.6'}),
    "decide_effects": (_NETWORK, {"name": "write", "kind": "decide",
                                  "actions": {"flip": {"effects": {"s": "'sus' if s == 'inf' else 'inf'"}},
                                              "keep": {"effects": {}}},
                                  "fallback": {"flip": 1, "keep": 2}}),
    "decide_record": (_NETWORK, {"name": "write", "kind": "decide", "record": "s",
                                 "actions": {"sus": {"effects": {}}, "inf": {"effects": {}}},
                                 "fallback": {"sus": 1, "inf": 1}}),
    "interact": (_NETWORK, {"name": "write", "kind": "interact", "partner": "neighbor",
                            "self": {"s": "other.s"}, "other": {"s": "'inf'"}}),
}


@pytest.mark.parametrize("kind", sorted(_WRITES))
def test_memo_is_invalidated_by_every_kind_of_write(kind, monkeypatch):
    space, write = _WRITES[kind]
    spec = spec_from(space=space, agent_types=[{"name": "a", "attributes": _STATE}],
                     environment=_WATCHED, rules=[write, _AFTER], metrics=_METRICS, stop={"max_steps": 6})
    sim = Simulation(compile_scenario(spec), None, 5, population=300)
    version = sim.version
    result = sim.run()
    assert sim.version > version
    v = dict(zip(result.metric_names, result.values[1:].T))
    # What the rule after the write read is the state after it, not the memo from before it.
    assert np.array_equal(v["y"], v["share"])
    assert np.array_equal(v["z"], v["nb"])
    if kind == "move":
        assert not np.array_equal(v["z"][1:], v["nb"][:-1])  # agents did move
    else:
        assert not np.array_equal(v["before"], v["share"])  # the write changed the watched share
    # And the whole run equals one without the memo.
    memoized = result.values
    _no_memo(monkeypatch)
    assert np.array_equal(memoized, _values(spec), equal_nan=True)


def test_every_library_scenario_gives_the_same_values_without_the_memo(monkeypatch):
    names = ["schelling", "axelrod", "sir_network", "public_goods", "el_farol", "voter", "deffuant"]
    with_memo = {n: _values(load_scenario(n), population=150, steps=8) for n in names}
    _no_memo(monkeypatch)
    for n in names:
        assert np.array_equal(with_memo[n], _values(load_scenario(n), population=150, steps=8), equal_nan=True), n


def test_shared_neighbor_reduction_is_computed_once_per_state():
    sim = Simulation(compile_scenario(load_scenario("schelling")), None, 1, population=400)
    calls = []
    reduce = sim.space.neighbor_reduce
    sim.space.neighbor_reduce = lambda *a, **k: calls.append(a[1]) or reduce(*a, **k)
    sim.measure()
    sim.should_stop()
    for _ in range(3):
        sim.step()  # the move rule's `when` reuses the metrics' value: the state has not changed
        sim.measure()
        sim.should_stop()
    assert calls == ["same"] * 4


def test_random_neighbor_functions_are_not_memoized():
    # Two call sites in one expression draw from different slots: equal only if memoized.
    spec = spec_from(space=_NETWORK, agent_types=[{"name": "a", "attributes": {"x": "uniform()"}}],
                     metrics={"a": "mean(neighbor_random(x)) - mean(neighbor_random(x))",
                              "b": "mean(neighbor_mean(x + uniform()) - neighbor_mean(x + uniform()))"},
                     stop={"max_steps": 1})
    values = _values(spec, population=500, steps=1)
    assert np.all(values != 0)


def test_memoized_values_are_not_shared_with_callers():
    spec = spec_from(space=_NETWORK, agent_types=[{"name": "a", "attributes": {"x": "uniform()"}}],
                     metrics={"m": "mean(neighbor_sum(x))"})
    compiled = compile_scenario(spec)
    sim = Simulation(compiled, None, 0, population=50)
    expr = compile_expr("neighbor_sum(x)", Names(attributes=compiled.attributes))
    ctx = RowsContext(sim, None)
    first = expr(ctx)
    first[:] = -1.0  # a caller may write to what it gets
    second = expr(ctx)
    assert not np.array_equal(second, first)
    assert sim.measure()[0] == float(np.mean(second))


# --- the grid's stencil reductions ---------------------------------------------------------------


def _csr(space, values, op, rows):
    return NeighborLists.neighbor_reduce(space, values, op, rows)


def _bits(a):
    return np.asarray(a, dtype=np.float64).view(np.int64)


GRID_CASES = [(torus, shape) for torus in (True, False) for shape in [(7, 5), (3, 3), (1, 6), (2, 9), (40, 31)]
              if not (torus and min(shape) < 3)]  # a torus needs 3 x 3: GridSpace refuses smaller ones


@pytest.mark.parametrize("neighborhood", ["moore", "von_neumann"])
@pytest.mark.parametrize("torus, shape", GRID_CASES)
def test_grid_stencil_matches_neighbor_lists(torus, neighborhood, shape):
    width, height = shape
    rng = np.random.default_rng(width * 100 + height)
    cells = width * height
    for n in sorted({0, 1, cells // 2, cells * 4 // 5, cells}):
        space = GridSpace(width, height, n, torus=torus, neighborhood=neighborhood, seed=n + 7)
        floats = rng.normal(size=n) * 10.0 ** rng.integers(-3, 4, size=n)
        if n:
            floats[rng.integers(0, n, size=max(1, n // 10))] = np.nan
            floats[rng.integers(0, n, size=max(1, n // 10))] = -0.0
        columns = {
            "float": floats,
            "codes": rng.integers(-1, 3, size=n),
            "bool": rng.random(n) < 0.5,
            "big": rng.integers(0, 3, size=n) * 10**12,  # no small dtype: the masked path
            "float32": rng.integers(0, 3, size=n).astype(np.float32),
        }
        row_sets = [None, np.arange(n), rng.permutation(n)[: n // 5], rng.permutation(n)[: max(0, n - 2)],
                    rng.random(n) < 0.5]
        for _ in range(2):
            for name, values in columns.items():
                for op in ("sum", "mean", "count", "same"):
                    for rows in row_sets:
                        got = space.neighbor_reduce(values, op, rows)
                        want = _csr(space, values, op, rows)
                        assert got.dtype == np.float64 and got.shape == want.shape
                        assert np.array_equal(_bits(got), _bits(want)), (name, op, n)
            assert np.array_equal(space.degree(), NeighborLists.degree(space))
            # After a move the stencil's occupancy and the lists are rebuilt.
            empty = np.flatnonzero(space.occupant < 0)
            if n and empty.size:
                movers = rng.permutation(n)[: min(n, 5)]
                space.move_to_empty(movers, rng.random(movers.size), rng.random(cells))
