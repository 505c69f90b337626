"""Scenario expressions: semantics of every operator and function, type errors that point at the
column, random draws, and hostile input that must end in a clean SpecError."""

from __future__ import annotations

import copy
import math
import time
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.errors import SpecError
from simulator.expr import (
    BOOL,
    FUNCTIONS,
    NUMBER,
    Categorical,
    CompiledExpr,
    Names,
    SlotAllocator,
    compile_expr,
    describe_functions,
    describe_language,
)
from simulator.functions import factorize_rows, largest_component_share, reduce_neighbors

STATES = ("S", "I", "R")
NAN = float("nan")


class ArrayContext:
    """An EvalContext over plain arrays. `rows` picks the row agents among all agents, `partners`
    their partners; the graph is given as adjacency lists; draws are keyed by (seed, slot, agent)."""

    def __init__(self, attrs, *, rows=None, partners=None, params=None, env=None, local=None,
                 adjacency=None, seed=0):
        self.attrs = {name: np.asarray(values) for name, values in attrs.items()}
        self.n = len(next(iter(self.attrs.values())))
        self.attrs.setdefault("id", np.arange(self.n))
        self.attrs.setdefault("index", np.arange(self.n))
        self.rows = np.arange(self.n) if rows is None else np.asarray(rows)
        self.size = len(self.rows)
        self.partners = None if partners is None else np.asarray(partners)
        self.params, self.env_values, self.locals = params or {}, env or {}, local or {}
        adjacency = adjacency if adjacency is not None else [[] for _ in range(self.n)]
        self.indptr = np.cumsum([0] + [len(a) for a in adjacency])
        self.indices = np.array([j for a in adjacency for j in a], dtype=np.intp)
        self.seed = seed

    def attr(self, name):
        return self.attrs[name][self.rows]

    def other(self, name):
        return self.attrs[name][self.partners]

    def param(self, name):
        return self.params[name]

    def env(self, name):
        return self.env_values[name]

    def local(self, name):
        return self.locals[name]

    def population(self):
        everyone = copy.copy(self)
        everyone.rows, everyone.size = np.arange(self.n), self.n
        return everyone

    def neighbor_reduce(self, values_all, op, slot=None):
        u = self.draw(slot) if op == "random" else None
        return reduce_neighbors(self.indptr, self.indices, self.rows, values_all, op, u)

    def draw(self, slot, k=1):
        generator = np.random.Generator(np.random.Philox(key=[self.seed, slot]))
        u = generator.random((k, self.n))[:, self.rows]
        return u[0] if k == 1 else u

    def regions(self, keys_all):
        return largest_component_share(self.indptr, self.indices, keys_all)


class FixedDraws(ArrayContext):
    """Draws given per slot, to check how random functions turn uniforms into values."""

    def __init__(self, attrs, draws, **kwargs):
        super().__init__(attrs, **kwargs)
        self.fixed = {slot: np.asarray(u, dtype=float) for slot, u in draws.items()}

    def draw(self, slot, k=1):
        u = self.fixed[slot]
        return u if k == 1 else u.reshape(k, -1)


NAMES = Names(
    attributes={"x": None, "y": None, "w": None, "state": STATES, "trait": ("a", "b")},
    params=frozenset({"beta", "gamma"}),
    env=frozenset({"price"}),
    allow_other=True,
    agent_types=("wolf", "sheep"),
)
ROWS = {
    "x": [-2.0, 0.0, 0.5, 3.0],
    "y": [1.0, 2.0, 0.0, 3.0],
    "w": [1.0, 1.0, 1.0, 1.0],
    "state": [0, 1, 2, 1],
    "trait": [0, 0, 1, 1],
    "type": [0, 1, 1, 0],
}


def context(**kwargs) -> ArrayContext:
    kwargs.setdefault("params", {"beta": 0.5, "gamma": 2.0})
    kwargs.setdefault("env", {"price": 10.0})
    kwargs.setdefault("partners", [3, 3, 1, 1])
    return ArrayContext(ROWS, **kwargs)


def evaluate(source, names=NAMES, ctx=None, **kwargs):
    return compile_expr(source, names, **kwargs)(ctx or context())


def spec_error(source, names=NAMES, **kwargs) -> SpecError:
    with pytest.raises(SpecError) as info:
        compile_expr(source, names, **kwargs)
    return info.value


# --- operators ----------------------------------------------------------------------------------

INF = float("inf")


@pytest.mark.parametrize(
    "source, expected",
    [
        ("x + y", [-1, 2, 0.5, 6]),
        ("x - y", [-3, -2, 0.5, 0]),
        ("x * y", [-2, 0, 0, 9]),
        ("x / y", [-2, 0, INF, 1]),
        ("x // y", [-2, 0, INF, 1]),
        ("x % y", [0, 0, NAN, 0]),
        ("y ** 2", [1, 4, 0, 9]),
        ("x ** 0.5", [NAN, 0, 0.5**0.5, 3**0.5]),
        ("-x", [2, 0, -0.5, -3]),
        ("+x", [-2, 0, 0.5, 3]),
        ("7 // 2 + 7 % 2 + x * 0", [4, 4, 4, 4]),
        ("(x > 0) + (y > 0)", [1, 1, 1, 2]),
        ("-(x > 0)", [0, 0, -1, -1]),
        ("(x > 0) - (y > 1)", [0, -1, 1, 0]),
        ("x if y > 1 else -1", [-1, 0, -1, 3]),
        ("params.beta * x + env.price", [9, 10, 10.25, 11.5]),
        ("self.x + self.id", [-2, 1, 2.5, 6]),
        ("other.x", [3, 3, 0, 0]),
    ],
)
def test_arithmetic_has_float_semantics(source, expected):
    np.testing.assert_allclose(evaluate(source), expected)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("x > 0", [False, False, True, True]),
        ("x >= 0", [False, True, True, True]),
        ("x < y", [True, True, False, False]),
        ("x <= 0.5", [True, True, True, False]),
        ("x == 0", [False, True, False, False]),
        ("x != 0", [True, False, True, True]),
        ("0 <= x < 3", [False, True, True, False]),
        ("-3 < x < y <= 3", [True, True, False, False]),
        ("x > 0 and y > 0", [False, False, False, True]),
        ("x > 0 or y > 1", [False, True, True, True]),
        ("not x > 0", [True, True, False, False]),
        ("not x", [False, True, False, False]),  # a number is true when nonzero
        ("x in (0, 3)", [False, True, False, True]),
        ("x not in [0, 3]", [True, False, True, False]),
        ("True and x > 0", [False, False, True, True]),
    ],
)
def test_comparisons_and_logic_are_elementwise(source, expected):
    result = evaluate(source)
    assert result.dtype == bool
    assert result.tolist() == expected


def test_division_by_zero_gives_inf_and_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluate("x / (y - y) + log(x) * 0 + sqrt(x) * 0")
    assert np.isnan(result[1]) and np.isnan(result[0])
    assert result[3] == INF


def test_huge_powers_are_float_and_fast():
    start = time.perf_counter()
    assert compile_expr("10**10**10**10", NAMES).constant == INF
    assert compile_expr("9**9**9**9**9", NAMES).constant == INF
    assert compile_expr("(-2) ** 0.5", NAMES).constant is not None
    assert time.perf_counter() - start < 1.0


def test_constants_fold_to_floats_and_scalars_return_python_values():
    compiled = compile_expr("2 ** 10 - 24", NAMES)
    assert compiled.constant == 1000.0 and compiled.is_scalar
    assert compiled(context()) == 1000.0 and isinstance(compiled(context()), float)
    assert evaluate("params.gamma * 3") == 6.0
    assert evaluate("True") is True


def test_numbers_given_directly_compile_to_constants():
    assert compile_expr(0.5, NAMES)(context()) == 0.5
    assert compile_expr(3, NAMES, expect="number").result_type == NUMBER
    assert compile_expr(True, NAMES).result_type == BOOL
    assert compile_expr(2, NAMES, expect="bool")(context()) is True
    with pytest.raises(SpecError, match="too large"):
        compile_expr(10**400, NAMES)
    with pytest.raises(SpecError, match="string or a number"):
        compile_expr([1, 2], NAMES)


def test_row_results_never_alias_context_arrays():
    ctx = context()
    result = evaluate("x", ctx=ctx)
    result[:] = 99
    assert ctx.attrs["x"][0] == -2.0


def test_scalar_results_broadcast_in_row_expressions():
    result = evaluate("where(x > 100, 1, 2)")
    assert result.shape == (4,) and result.tolist() == [2, 2, 2, 2]


# --- categoricals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, expected",
    [
        ("state == \"I\"", [False, True, False, True]),
        ("'I' == self.state", [False, True, False, True]),
        ("state != 'S'", [False, True, True, True]),
        ("state in ('S', 'R')", [True, False, True, False]),
        ("state not in ('S',)", [False, True, True, True]),
        ("state == other.state", [False, True, False, True]),
        ("self.type == 'sheep'", [False, True, True, False]),
        ("state == 'I' and trait == 'b'", [False, False, False, True]),
        ("'I' in (state, other.state, 'S')", [True, True, True, True]),
        ("'R' in (state, other.state)", [False, False, True, False]),
    ],
)
def test_categoricals_compare_with_labels_as_codes(source, expected):
    assert evaluate(source).tolist() == expected


def test_label_branches_resolve_against_the_expected_categorical():
    expect = Categorical(STATES)
    assert evaluate("'R' if x > 0 else state", expect=expect).tolist() == [0, 1, 2, 2]
    assert evaluate("where(x > 0, 'I', 'S')", expect=expect).tolist() == [0, 0, 1, 1]
    assert evaluate("other.state", expect=expect).tolist() == [1, 1, 1, 1]
    assert evaluate("'I' if x > 0 else ('R' if y > 1 else 'S')", expect=expect).tolist() == [0, 2, 1, 1]
    compiled = compile_expr("R", NAMES, expect=expect)  # YAML `state: R`
    assert compiled.constant == 2 and compiled.result_type == expect


# --- type errors point at the column ----------------------------------------------------------


@pytest.mark.parametrize(
    "source, kwargs, column, fragment",
    [
        ("x + state", {}, 5, "categorical (S, I, R)"),
        ("state == 'Q'", {}, 10, "valid labels: S, I, R"),
        ("state < 'I'", {}, 1, "no order"),
        ("state == 1", {}, 1, "comparison with a number"),
        ("state == trait", {}, 1, "different categories"),
        ("'I' + 1", {}, 1, "category label"),
        ("'I' if x > 0 else 'S'", {}, 1, "category label"),
        ("state if x > 0 else 1", {}, 21, "expected one of the labels"),
        ("not state", {}, 5, "categorical"),
        ("mean(x) + x", {"expect": "scalar"}, 11, "differs from agent to agent"),
        ("neighbor_mean(x) > 0", {"expect": "scalar"}, 1, "one for the whole population"),
        ("uniform()", {"expect": "scalar"}, 1, "one for the whole population"),
        ("x + 1", {"expect": Categorical(STATES)}, 1, "expected one of the labels"),
        ("trait", {"expect": Categorical(STATES)}, 1, "categories (a, b)"),
        ("state", {"expect": "number"}, 1, "categorical"),
        ("quantile(x, x)", {}, 13, "same for every agent"),
        ("1 + mean(other.x)", {}, 10, "cannot be used inside"),
        ("   state + 1", {}, 4, "categorical"),
        ("x +\n  state", {}, 7, "categorical"),
        ("ｘ + state", {}, 5, "categorical"),  # column in characters, not UTF-8 bytes
        ("x + 1e999", {}, 5, "too large"),
        ("x + (1", {}, 5, "not a valid expression"),
    ],
)
def test_type_errors_name_the_problem_and_column(source, kwargs, column, fragment):
    error = spec_error(source, **kwargs)
    assert error.position == column
    assert fragment in str(error)
    assert error.expression == source


def test_other_needs_a_pairwise_rule():
    names = Names(attributes={"x": None})
    error = spec_error("x + other.x", names)
    assert error.position == 5 and "pairwise" in str(error)


def test_errors_carry_the_place_in_the_spec():
    error = spec_error("x +", where="rule 'spread', field 'probability'")
    assert str(error).startswith("rule 'spread', field 'probability'")
    assert error.located(scenario="sir").scenario == "sir"


@pytest.mark.parametrize(
    "source, hint",
    [
        ("welth", "did you mean wealth"),
        ("beta", "params.beta"),
        ("params.bta", "params.beta"),
        ("state == S", "quotes"),
        ("mean", "call it"),
        ("math.exp(wealth)", "exp(x)"),
        ("avg(wealth)", "functions:"),
        ("min(wealth)", "minimum(x)"),
        ("clip(wealth, 1)", "clip(x, lo, hi)"),
        ("uniform(1)", "uniform([lo, hi])"),
        ("mean(wealth, y=1)", "mean(x[, filter])"),
        ("x & y", "and"),
        ("x is y", "=="),
    ],
)
def test_errors_suggest_the_fix(source, hint):
    names = Names(attributes={"wealth": None, "state": STATES, "x": None, "y": None},
                  params={"beta"})
    assert hint in str(spec_error(source, names))


def test_a_local_shadowing_an_attribute_is_an_error_at_its_use():
    local = compile_expr("y * 2", NAMES)
    names = Names(attributes={"x": None, "y": None}, locals={"x": local})
    error = spec_error("1 + x", names)
    assert error.position == 5 and "rename" in str(error)


# --- rule-local variables ---------------------------------------------------------------------


def test_locals_are_read_from_the_context_and_reported():
    doubled = compile_expr("y * 2", NAMES)
    rate = compile_expr("params.beta / 2", NAMES)
    names = Names(attributes={"y": None, "z": None}, params={"beta"},
                  locals={"doubled": doubled, "rate": rate})
    ctx = context(local={"doubled": np.array([2.0, 4.0, 0.0, 6.0]), "rate": 0.25})
    compiled = compile_expr("doubled + rate + mean(rate + z)", names)
    assert compiled.locals_used == {"doubled", "rate"}
    ctx.attrs["z"] = np.zeros(4)
    np.testing.assert_allclose(compiled(ctx), [2.5, 4.5, 0.5, 6.5])
    assert compile_expr("rate * 2", names, expect="scalar").is_scalar
    error = spec_error("mean(doubled)", names)
    assert error.position == 6 and "rule's agents only" in str(error)


# --- what an expression reads -----------------------------------------------------------------


def test_compiled_expression_reports_what_it_reads():
    compiled = compile_expr(
        "x + neighbor_mean(y) + other.x + params.beta + env.price"
        " + mean(w, filter=state == 'S') + uniform()", NAMES)
    assert compiled.reads_self == {"x"}
    assert compiled.reads_other == {"x"}
    assert compiled.reads_all == {"y", "w", "state"}
    assert compiled.params_used == {"beta"} and compiled.env_used == {"price"}
    assert compiled.uses_neighbors and compiled.uses_random and not compiled.is_scalar
    assert compiled.slots == (0,)
    plain = compile_expr("share(state == 'I') > params.beta", NAMES, expect="scalar")
    assert plain.is_scalar and not plain.uses_neighbors and not plain.uses_random
    assert plain.reads_self == set() and plain.reads_all == {"state"}
    assert plain(context()) is False


# --- elementwise functions --------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, expected",
    [
        ("abs(x)", [2, 0, 0.5, 3]),
        ("exp(y) * 0 + exp(0)", [1, 1, 1, 1]),
        ("log(x)", [NAN, -INF, math.log(0.5), math.log(3)]),
        ("sqrt(y)", [1, 2**0.5, 0, 3**0.5]),
        ("floor(x + 0.7)", [-2, 0, 1, 3]),
        ("ceil(x + 0.2)", [-1, 1, 1, 4]),
        ("round(x)", [-2, 0, 1, 3]),
        ("round(x - 0.5)", [-3, -1, 0, 3]),  # halves away from zero: -2.5 -> -3, -0.5 -> -1
        ("sign(x)", [-1, 0, 1, 1]),
        ("sigmoid(x * 0)", [0.5, 0.5, 0.5, 0.5]),
        ("sigmoid(1000 * x)", [0, 0.5, 1, 1]),
        ("min(x, y)", [-2, 0, 0, 3]),
        ("min(x, y, 0.25)", [-2, 0, 0, 0.25]),
        ("max(x, y, 2.5)", [2.5, 2.5, 2.5, 3]),
        ("clip(x, 0, 1)", [0, 0, 0.5, 1]),
        ("clip(x, lo=-1, hi=y)", [-1, 0, 0, 3]),
        ("where(x > 0, x, y)", [1, 2, 0.5, 3]),
    ],
)
def test_elementwise_functions(source, expected):
    np.testing.assert_allclose(evaluate(source), expected)


# --- random functions -------------------------------------------------------------------------

U = [0.0, 0.25, 0.5, 0.75]


@pytest.mark.parametrize(
    "source, expected",
    [
        ("uniform()", U),
        ("random(2, 4)", [2, 2.5, 3, 3.5]),
        ("bernoulli(0.5)", [True, True, False, False]),
        ("bernoulli(y / 4)", [True, True, False, False]),
        ("randint(1, 4)", [1, 1, 2, 3]),
        ("randint(0, 0)", [NAN] * 4),
        ("exponential(2)", [-2 * math.log(1 - u) for u in U]),
        # true arguments per row: {1, 2}, {1, 2}, {0, 2}, {0, 1, 2}; u picks the floor(u * count)-th
        ("pick(x > 0, y > 0, True)", [1, 1, 2, 2]),
        ("pick(x > 100, x > 100)", [-1, -1, -1, -1]),
    ],
)
def test_random_functions_transform_the_contexts_draws(source, expected):
    ctx = FixedDraws(ROWS, {0: U})
    np.testing.assert_allclose(compile_expr(source, NAMES)(ctx), expected)


def test_pick_chooses_among_true_arguments_uniformly():
    ctx = FixedDraws({"x": [0, 0, 0, 0]}, {0: [0.1, 0.4, 0.6, 0.9]})
    # every row has arguments 0 and 2 true: u < 0.5 -> 0, else 2
    assert compile_expr("pick(True, False, True)", NAMES)(ctx).tolist() == [0, 0, 2, 2]


def test_normal_uses_box_muller_on_two_draws():
    ctx = FixedDraws({"x": [0.0, 0.0]}, {0: [[0.5, 0.9], [0.0, 0.25]]})
    expected = [1 + 2 * math.sqrt(-2 * math.log(1 - u1)) * math.cos(2 * math.pi * u2)
                for u1, u2 in [(0.5, 0.0), (0.9, 0.25)]]
    np.testing.assert_allclose(compile_expr("normal(1, 2)", NAMES)(ctx), expected, atol=1e-12)


def test_random_draws_are_reproducible_and_each_call_site_is_independent():
    big = ArrayContext({"x": np.zeros(20_000)}, seed=7)
    twice = compile_expr("uniform() - uniform()", NAMES)
    assert twice.slots == (0, 1)
    assert np.abs(twice(big)).min() > 0
    a = compile_expr("uniform()", NAMES)
    np.testing.assert_array_equal(a(big), a(ArrayContext({"x": np.zeros(20_000)}, seed=7)))
    assert not np.array_equal(a(big), a(ArrayContext({"x": np.zeros(20_000)}, seed=8)))
    shared = SlotAllocator()
    first = compile_expr("uniform()", NAMES, slots=shared)
    second = compile_expr("uniform()", NAMES, slots=shared)
    assert (first.slots, second.slots) == ((0,), (1,))
    assert abs(np.corrcoef(first(big), second(big))[0, 1]) < 0.03


def test_random_functions_have_the_documented_distributions():
    big = ArrayContext({"x": np.zeros(40_000)}, seed=1)
    normal = compile_expr("normal(1, 2)", NAMES)(big)
    assert abs(normal.mean() - 1) < 0.05 and abs(normal.std() - 2) < 0.05
    assert abs(compile_expr("bernoulli(0.3)", NAMES)(big).mean() - 0.3) < 0.01
    assert set(np.unique(compile_expr("randint(-1, 2)", NAMES)(big))) == {-1.0, 0.0, 1.0}
    uniform = compile_expr("uniform(2, 3)", NAMES)(big)
    assert uniform.min() >= 2 and uniform.max() < 3
    assert abs(compile_expr("exponential(3)", NAMES)(big).mean() - 3) < 0.1
    picks = compile_expr("pick(True, True, True, False)", NAMES)(big)
    assert set(np.unique(picks)) == {0.0, 1.0, 2.0}


# --- neighbor functions -----------------------------------------------------------------------

# 0 - 1, 0 - 2, 1 - 2, 2 - 3; agent 4 has no neighbors
GRAPH = [[1, 2], [0, 2], [0, 1, 3], [2], []]
AGENTS = {"x": [1.0, 2.0, 3.0, 4.0, 5.0], "state": [0, 1, 1, 0, 2]}


def graph_context(**kwargs):
    return ArrayContext(AGENTS, adjacency=GRAPH, **kwargs)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("neighbor_mean(x)", [2.5, 2, 7 / 3, 3, NAN]),
        ("neighbor_sum(x)", [5, 4, 7, 3, 0]),
        ("neighbor_count()", [2, 2, 3, 1, 0]),
        ("neighbor_share(state == 'I')", [1, 0.5, 1 / 3, 1, NAN]),
        ("neighbor_max(x)", [3, 3, 4, 3, NAN]),
        ("neighbor_min(x)", [2, 1, 1, 3, NAN]),
        ("neighbor_same(state)", [0, 0.5, 1 / 3, 0, NAN]),
        ("neighbor_mean(x * 2) - x", [4, 2, 5 / 3, 2, NAN]),
        ("neighbor_mean(neighbor_count())", [2.5, 2.5, 5 / 3, 3, NAN]),
    ],
)
def test_neighbor_functions_reduce_over_each_rows_neighbors(source, expected):
    np.testing.assert_allclose(compile_expr(source, NAMES)(graph_context()), expected)


def test_neighbor_arguments_are_read_over_all_agents_not_just_the_rows():
    rows = graph_context(rows=[2, 4])
    np.testing.assert_allclose(compile_expr("neighbor_mean(x) + x", NAMES)(rows), [7 / 3 + 3, NAN])


def test_neighbor_random_picks_a_neighbors_value():
    values = compile_expr("neighbor_random(x)", NAMES)(graph_context(seed=3))
    for agent, value in enumerate(values[:4]):
        assert value in [AGENTS["x"][j] for j in GRAPH[agent]]
    assert np.isnan(values[4])
    states = compile_expr("neighbor_random(state)", NAMES, expect=Categorical(STATES))
    codes = states(graph_context(seed=3))
    assert codes.dtype.kind == "i" and codes[4] == 2  # no neighbors: keeps its own state
    assert states.reads_self == {"state"} and states.reads_all == {"state"}


# --- population aggregates --------------------------------------------------------------------


def aggregate(source, values, **extra):
    attrs = {"x": np.asarray(values, dtype=float), **extra}
    return compile_expr(source, NAMES)(ArrayContext(attrs))


@pytest.mark.parametrize(
    "source, values, expected",
    [
        ("gini(x)", [1, 1, 1, 1], 0.0),
        ("gini(x)", [0, 0, 0, 1], 0.75),
        ("gini(x)", [1, 2, 3, 4], 0.25),
        ("gini(x)", [0, 0, 0, 0], 0.0),
        ("polarization(x)", [0, 0, 1, 1], 2 / 3),
        ("polarization(x)", [0, 1, 2], 4 / 3),
        ("polarization(x)", [5], 0.0),
        ("clusters(x, 0.1)", [0, 0.05, 0.1, 0.5, 0.52, 1.0], 3),
        ("clusters(x, 0.1, 0.25)", [0, 0.05, 0.1, 0.5, 0.52, 1.0], 2),
        ("clusters(x, tol=1)", [0, 0.05, 0.1, 0.5, 0.52, 1.0], 1),
        ("mean(x)", [1, 2, NAN, 6], 3.0),
        ("sum(x)", [1, 2, NAN, 6], 9.0),
        ("count(x > 1)", [1, 2, NAN, 6], 2.0),
        ("share(x > 1)", [1, 2, 3, 6], 0.75),
        ("var(x)", [1, 3, NAN], 1.0),
        ("std(x)", [1, 3, NAN], 1.0),
        ("median(x)", [5, 1, 3, NAN], 3.0),
        ("quantile(x, 0.25)", [0, 1, 2, 3, 4], 1.0),
        ("quantile(x, 1.5)", [0, 1], NAN),
        ("minimum(x)", [3, NAN, -1], -1.0),
        ("maximum(x)", [3, NAN, -1], 3.0),
        ("distinct(x)", [1, 1, 2, NAN, NAN], 3.0),
        ("mean(x, x > 100)", [1, 2], NAN),
        ("sum(x, x > 100)", [1, 2], 0.0),
        ("count(x > 100)", [1, 2], 0.0),
        ("minimum(x, filter=x > 100)", [1, 2], NAN),
        ("gini(x, x > 100)", [1, 2], 0.0),
        ("clusters(x, 0.1)", [NAN], 0.0),
        ("mean(x, filter=x > 1)", [1, 2, 4], 3.0),
        ("mean(x > 1) + mean(1)", [1, 2, 4], 2 / 3 + 1),
    ],
)
def test_aggregates(source, values, expected):
    result = aggregate(source, values)
    assert isinstance(result, float)
    np.testing.assert_allclose(result, expected)


def test_aggregates_with_categorical_filters_and_tuples():
    attrs = {"a": [1, 1, 2, 1], "b": [0, 0, 1, 1]}
    names = Names(attributes={"a": None, "b": None, "state": STATES})
    ctx = ArrayContext({**attrs, "state": [0, 1, 1, 2]})
    assert compile_expr("distinct(a, b)", names)(ctx) == 3.0
    assert compile_expr("mean(a, state == 'I')", names)(ctx) == 1.5
    assert compile_expr("share(state == 'I', filter=b == 0)", names)(ctx) == 0.5


def test_largest_region_uses_the_graph():
    # only 1 - 2 agree (both I): components {1, 2}, {0}, {3}, {4}
    assert compile_expr("largest_region(state)", NAMES)(graph_context()) == pytest.approx(0.4)
    # everyone agrees on x > 0: the connected {0, 1, 2, 3} holds 4 of 5
    assert compile_expr("largest_region(x > 0)", NAMES)(graph_context()) == pytest.approx(0.8)


def test_mean_neighbor_similarity_nests_neighbor_functions_in_aggregates():
    value = compile_expr("mean(neighbor_same(state))", NAMES, expect="scalar")(graph_context())
    assert value == pytest.approx((0 + 0.5 + 1 / 3 + 0) / 4)


def test_factorize_rows_labels_value_tuples():
    codes, count = factorize_rows([np.array([1.0, 1.0, 2.0, NAN, NAN]), np.array([0, 0, 0, 1, 1])])
    assert count == 3 and codes[0] == codes[1] and codes[3] == codes[4] and codes[2] != codes[0]


# --- the function registry --------------------------------------------------------------------


def test_every_function_is_described_for_the_prompt():
    reference = describe_functions()
    for function in FUNCTIONS.values():
        assert function.description
        assert f"{function.signature}: {function.description}" in reference
    assert "quantile(x, q[, filter])" in reference and "min(a, b, ...)" in reference
    assert reference in describe_language()


# --- hostile input ----------------------------------------------------------------------------

HOSTILE = [
    "__import__('os').system('touch PWNED')",
    "self.__class__.__mro__",
    "().__class__",
    "().__class__.__bases__[0].__subclasses__()",
    "params.__dict__",
    "env.__class__",
    "x.__class__",
    "lambda: 0",
    "(lambda: 0)()",
    "[x for x in y]",
    "{x for x in y}",
    "{1: 2}",
    "{1}",
    "(1, 2)",
    "x[0]",
    "x[0:1]",
    "x.real",
    "x.foo()",
    "foo.bar.baz",
    "f'{x}'",
    "(y := 1)",
    "abs(*x)",
    "abs(**x)",
    "abs(y=1)",
    "b'x'",
    "1j",
    "None",
    "...",
    "yield x",
    "await x",
    "x @ y",
    "x ^ y",
    "~x",
    "x << 1",
    "exec('1')",
    "eval('1')",
    "open('f')",
    "getattr(x, 'y')",
    "print(1)",
    "globals()",
    "self",
    "params",
    "np.exp(x)",
    "x; y",
    "x = 1",
    "import os",
    "def f(): pass",
    "x if",
    "",
    "   ",
    "\x00",
    "x\x00",
    "x + # comment\n 1",
    "(" * 10_000 + ")" * 10_000,
    "x" * 100_000,
    "1 +" * 600 + "1",
    "-" * 1999 + "1",
    "not " * 45 + "x",
    "abs(" * 45 + "x" + ")" * 45,
    "+".join(["x"] * 300),
    "é + 1",
    "ｐａｒａｍｓ.__dict__",
    "x if y else",
    "\ud800",
]


def test_python_syntax_warnings_stay_inside():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compile_expr("1if x else 2", NAMES).reads_self == {"x"}
        with pytest.raises(SpecError, match="use =="):
            compile_expr("x is 1", NAMES)


@pytest.mark.parametrize("source", HOSTILE, ids=lambda s: repr(s[:40]))
def test_hostile_input_is_a_clean_spec_error(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    with pytest.raises(SpecError):
        compile_expr(source, NAMES)
    assert time.perf_counter() - start < 1.0
    assert not (tmp_path / "PWNED").exists()


def test_unicode_identifiers_are_normalized_then_checked():
    # Python folds compatibility characters (NFKC): fullwidth x is x, so this is valid.
    assert compile_expr("ｘ + 1", NAMES).reads_self == {"x"}


def assert_clean(source, names=NAMES, ctx=None, expect="any"):
    """Compiling either fails with SpecError or gives an expression that evaluates cleanly; no
    warning escapes either step."""
    ctx = ctx or graph_context(partners=[1, 0, 3, 2, 4], params={"beta": 0.5, "gamma": -1.0},
                               env={"price": NAN})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            compiled = compile_expr(source, names, expect=expect)
        except SpecError:
            return
        value = compiled(ctx)
    assert isinstance(compiled, CompiledExpr)
    if compiled.is_scalar:
        assert isinstance(value, {NUMBER: float, BOOL: bool}.get(compiled.result_type, int))
    else:
        assert isinstance(value, np.ndarray) and value.shape == (ctx.size,)
        if isinstance(compiled.result_type, Categorical):
            assert value.dtype.kind in "iu"
            assert ((0 <= value) & (value < len(compiled.result_type.domain))).all()


HYPOTHESIS = settings(max_examples=250, deadline=2000, derandomize=True,
                      suppress_health_check=[HealthCheck.too_slow])
GRAPH_NAMES = Names(attributes={"x": None, "state": STATES}, params={"beta", "gamma"},
                    env={"price"}, allow_other=True)


@HYPOTHESIS
@given(st.text(max_size=300))
def test_any_text_compiles_or_is_a_spec_error(source):
    assert_clean(source, GRAPH_NAMES)


@HYPOTHESIS
@given(st.text(alphabet="xstae()+-*/%<>=!.,'\" 0123456789_[]{}:#\nIS", max_size=60))
def test_expression_like_text_compiles_or_is_a_spec_error(source):
    assert_clean(source, GRAPH_NAMES)


LEAVES = st.sampled_from([
    "x", "self.x", "other.x", "state", "other.state", "self.id", "params.beta", "env.price",
    "'I'", "'Q'", "0", "1", "2.5", "-1", "1e308", "10**400", "True", "False", "None", "b'x'",
    "__import__", "self.__class__", "unknown", "params.nope", "x.y.z", "1j", "...",
])
CALLABLES = st.sampled_from(sorted(FUNCTIONS) + ["eval", "exec", "open", "x.foo", "__import__"])


def _forms(children):
    one, two = children, st.tuples(children, children)
    ops = st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", ">=", "and",
                           "or", "&", "|", "^", "<<", "@", "in", "is", "not in"])
    return st.one_of(
        st.builds(lambda a, op, b: f"({a} {op} {b})", children, ops, children),
        st.builds(lambda op, a: f"({op}{a})", st.sampled_from(["-", "+", "not ", "~"]), one),
        st.builds(lambda t: f"({t[0]} if {t[1]} else {t[0]})", two),
        st.builds(lambda f, args: f"{f}({', '.join(args)})", CALLABLES,
                  st.lists(children, max_size=4)),
        st.builds(lambda f, a, b: f"{f}({a}, filter={b})", CALLABLES, children, children),
        st.builds(lambda t: f"({t[0]} in ({t[1]}, 'S'))", two),
        st.builds(lambda a: f"[{a}]", one),
        st.builds(lambda a: f"({a},)", one),
        st.builds(lambda a: f"{a}[0]", one),
        st.builds(lambda a: f"(lambda: {a})", one),
        st.builds(lambda a: f"[v for v in {a}]", one),
        st.builds(lambda a: f"(z := {a})", one),
        st.builds(lambda a: f"f'{{{a}}}'", one),
        st.builds(lambda a: f"*{a}", one),
        st.builds(lambda a: f"{a}.real", one),
    )


EXPRESSIONS = st.recursive(LEAVES, _forms, max_leaves=12)


@HYPOTHESIS
@given(EXPRESSIONS, st.sampled_from(["any", "number", "bool", "scalar", Categorical(STATES)]))
def test_generated_expressions_compile_or_are_spec_errors(source, expect):
    assert_clean(source, GRAPH_NAMES, expect=expect)


VALID_LEAVES = st.sampled_from([
    "x", "other.x", "params.beta", "env.price", "0", "2", "0.5", "-3", "state", "other.state",
    "'S'", "(state == 'I')", "uniform()", "normal()", "neighbor_mean(x)", "neighbor_same(state)",
    "neighbor_random(state)", "mean(x)", "var(x)", "count(x > 1)", "clusters(x, 0.1)",
    "distinct(x, state)", "largest_region(state)", "pick(x > 0, True)",
])
FUNCTION_NAMES = st.sampled_from(sorted(FUNCTIONS))


def _valid_forms(c):
    return st.one_of(
        st.builds(lambda a, op, b: f"({a} {op} {b})", c, st.sampled_from(
            ["+", "-", "*", "/", "//", "%", "**", "<", "==", "!=", "and", "or"]), c),
        st.builds(lambda f, args: f"{f}({', '.join(args)})", FUNCTION_NAMES,
                  st.lists(c, min_size=1, max_size=3)),
        st.builds(lambda a, b, d: f"({a} if {b} else {d})", c, c, c),
        st.builds(lambda a, b: f"({a} in ({b}, 'S'))", c, c),
        st.builds(lambda a: f"(not {a})", c),
    )


@HYPOTHESIS
@given(st.recursive(VALID_LEAVES, _valid_forms, max_leaves=10),
       st.sampled_from(["any", "number", "bool", "scalar", Categorical(STATES)]))
def test_well_formed_expressions_evaluate_without_exceptions_or_warnings(source, expect):
    assert_clean(source, GRAPH_NAMES, expect=expect)
