"""Spaces and network generators: exact neighbor reductions, matchings, moves, degree laws."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from simulator import networks
from simulator.errors import SpecError
from simulator.grid import GridSpace
from simulator.networks import build_network
from simulator.space import NetworkSpace, Space
from simulator.well_mixed import WellMixed

NAN = float("nan")


def graph(n: int, edges: list[tuple[int, int]]) -> NetworkSpace:
    u, v = np.array(edges, dtype=np.int64).T if edges else (np.empty(0, int), np.empty(0, int))
    a = sp.coo_matrix((np.ones(2 * len(edges)), (np.r_[u, v], np.r_[v, u])), shape=(n, n)).tocsr()
    return NetworkSpace(a)


def neighbor_sets(space) -> list[list[int]]:
    """Each agent's neighbors, in the space's own order, by asking random_neighbor at every u."""
    out = []
    for i in range(space.n):
        d = int(space.degree(np.array([i]))[0])
        us = (np.arange(d) + 0.5) / max(d, 1)
        out.append(space.random_neighbor(np.full(d, i), us).tolist())
    return out


def reference_reduce(nbrs: list[list[int]], values: np.ndarray, op: str, u=None) -> np.ndarray:
    out = []
    for i, js in enumerate(nbrs):
        vals = values[js]
        if op == "count":
            out.append(len(js))
        elif op == "sum":
            out.append(vals.sum() if js else 0.0)
        elif not js:
            out.append(NAN)
        elif op == "mean":
            out.append(vals.mean())
        elif op == "max":
            out.append(vals.max())
        elif op == "min":
            out.append(vals.min())
        elif op == "same":
            out.append(np.mean(vals == values[i]))
        elif op == "random":
            out.append(values[js[min(int(u[i] * len(js)), len(js) - 1)]])
    return np.array(out, dtype=np.float64)


def assert_same(a, b):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-12, atol=1e-12, equal_nan=True)


# -- a hand-made graph: 0-1, 1-2, 1-3, and 4 alone ----------------------------------------------

STAR = [(0, 1), (1, 2), (1, 3)]
VALUES = np.array([1.0, 2.0, 3.0, 4.0, 5.0])


@pytest.mark.parametrize(
    "op, expected",
    [
        ("sum", [2, 8, 2, 2, 0]),
        ("mean", [2, 8 / 3, 2, 2, NAN]),
        ("count", [1, 3, 1, 1, 0]),
        ("max", [2, 4, 2, 2, NAN]),
        ("min", [2, 1, 2, 2, NAN]),
    ],
)
def test_network_reductions_on_a_small_graph(op, expected):
    g = graph(5, STAR)
    assert_same(g.neighbor_reduce(VALUES, op), expected)
    assert_same(g.neighbor_reduce(VALUES, op, rows=np.array([1])), [expected[1]])  # the sliced path
    assert_same(g.neighbor_reduce(VALUES, op, rows=np.array([4, 1, 1])), [expected[i] for i in (4, 1, 1)])


def test_same_is_the_share_of_neighbors_sharing_ones_value():
    labels = np.array([0, 0, 1, 0, 1])
    assert_same(graph(5, STAR).neighbor_reduce(labels, "same"), [1, 2 / 3, 0, 1, NAN])


def test_random_takes_the_value_of_the_neighbor_u_points_at():
    g = graph(5, STAR)
    rows = np.array([1, 1, 1, 0, 4])
    u = np.array([0.0, 0.5, 0.99, 0.7, 0.3])
    assert_same(g.neighbor_reduce(VALUES, "random", rows=rows, u=u), [1, 3, 4, 2, NAN])
    assert g.random_neighbor(rows, u).tolist() == [0, 2, 3, 1, -1]


def test_degree_and_memory():
    g = graph(5, STAR)
    assert g.degree().tolist() == [1, 3, 1, 1, 0]
    assert g.degree(np.array([1, 4])).tolist() == [3, 0]
    assert g.n_edges == 3 and g.memory_bytes() > 0
    assert isinstance(g, Space) and isinstance(WellMixed(3), Space)


def test_network_refuses_directed_or_looped_adjacency():
    with pytest.raises(ValueError, match="symmetric"):
        NetworkSpace(sp.csr_matrix(np.array([[0, 1], [0, 0]])))
    with pytest.raises(ValueError, match="self loops"):
        NetworkSpace(sp.csr_matrix(np.array([[1, 0], [0, 0]])))


@pytest.mark.parametrize("op", ["sum", "mean", "count", "max", "min", "same", "random"])
def test_every_reduction_matches_a_plain_python_reference(op):
    rng = np.random.default_rng(3)
    g = networks.erdos_renyi(300, 3, seed=4)  # has isolated nodes too
    values = rng.integers(0, 3, size=300).astype(np.float64)
    u = rng.random(300)
    expected = reference_reduce(neighbor_sets(g), values, op, u)
    assert_same(g.neighbor_reduce(values, op, u=u), expected)
    for rows in (np.arange(0, 300, 7), np.arange(0, 300, 2), np.array([], dtype=np.int64)):
        got = g.neighbor_reduce(values, op, rows=rows, u=u[rows])
        assert_same(got, expected[rows])
    mask = values > 0
    assert_same(g.neighbor_reduce(values, op, rows=mask, u=u[mask]), expected[mask])
    # A run of ids given as a slice (a shard's own rows): the same values as the ids themselves.
    for run in (slice(40, 210), slice(0, 300), slice(299, 300)):
        assert_same(g.neighbor_reduce(values, op, rows=run, u=u[run]), expected[run])


# -- the grid ------------------------------------------------------------------------------------


def test_grid_torus_wraps_around_the_edges():
    # 4 x 4 torus, Moore: agent 0 at the corner (0, 0); the others on its wrapped neighbors.
    cells = np.array([0, 15, 3, 12, 5, 10])  # (0,0) (3,3) (3,0) (0,3) (1,1) (2,2)
    g = GridSpace(4, 4, 6, torus=True, neighborhood="moore", cells=cells)
    assert sorted(neighbor_sets(g)[0]) == [1, 2, 3, 4]
    assert g.degree().tolist() == [4, 4, 3, 3, 2, 2]
    vn = GridSpace(4, 4, 6, torus=True, neighborhood="von_neumann", cells=cells)
    assert sorted(neighbor_sets(vn)[0]) == [2, 3]  # left and up, wrapped


def test_grid_without_torus_stops_at_the_edges():
    cells = np.array([0, 15, 3, 12, 5, 10])
    g = GridSpace(4, 4, 6, torus=False, neighborhood="moore", cells=cells)
    assert neighbor_sets(g)[0] == [4]
    assert g.degree().tolist() == [1, 1, 0, 0, 2, 2]
    assert g.neighbor_cells(np.array([0])).tolist() == [[-1, -1, -1, -1, 1, -1, 4, 5]]


def test_grid_reductions_match_the_reference():
    g = GridSpace(12, 9, 70, torus=False, neighborhood="moore", seed=2)
    rng = np.random.default_rng(0)
    values, u = rng.integers(0, 2, 70).astype(float), rng.random(70)
    nbrs = neighbor_sets(g)
    # the neighbors are exactly the agents on adjacent cells
    for i, js in enumerate(nbrs):
        x, y = g.cell_of[i] % 12, g.cell_of[i] // 12
        near = [j for j in range(70) if j != i and max(abs(g.cell_of[j] % 12 - x), abs(g.cell_of[j] // 12 - y)) == 1]
        assert sorted(js) == near
    for op in ("sum", "mean", "count", "max", "min", "same", "random"):
        expected = reference_reduce(nbrs, values, op, u)
        assert_same(g.neighbor_reduce(values, op, u=u), expected)
        assert_same(g.neighbor_reduce(values, op, rows=slice(10, 50), u=u[10:50]), expected[10:50])  # a shard's run


def test_move_to_empty_fills_only_cells_empty_at_the_start():
    g = GridSpace(10, 10, 90, seed=5)
    empty_before = set(np.flatnonzero(g.occupant < 0).tolist())
    movers = np.arange(0, 90, 3)  # 30 movers, 10 empty cells
    rng = np.random.default_rng(1)
    prio, cell_prio = rng.random(movers.size), rng.random(100)
    old_cells = g.cell_of.copy()
    moved = g.move_to_empty(movers, prio, cell_prio)
    assert moved.size == 10
    assert set(moved.tolist()) == set(movers[np.argsort(prio)[:10]].tolist())  # lowest prio first
    assert set(g.cell_of[moved].tolist()) == empty_before
    assert (g.cell_of[np.setdiff1d(np.arange(90), moved)] == old_cells[np.setdiff1d(np.arange(90), moved)]).all()
    assert_grid_consistent(g)
    assert set(np.flatnonzero(g.occupant < 0).tolist()) == set(old_cells[moved].tolist())


def test_moves_never_double_book_and_neighbors_follow():
    g = GridSpace(30, 30, 600, torus=True, neighborhood="von_neumann", seed=1)
    rng = np.random.default_rng(2)
    for _ in range(20):
        movers = np.flatnonzero(rng.random(600) < 0.3)
        g.move_to_empty(movers, rng.random(movers.size), rng.random(900))
        assert_grid_consistent(g)
    values = rng.random(600)
    fresh = GridSpace(30, 30, 600, torus=True, neighborhood="von_neumann", cells=g.cell_of)
    assert_same(g.neighbor_reduce(values, "sum"), fresh.neighbor_reduce(values, "sum"))
    with pytest.raises(ValueError, match="twice"):
        g.move_to_empty(np.array([1, 1]), np.array([0.1, 0.2]), rng.random(900))


def assert_grid_consistent(g: GridSpace) -> None:
    assert np.unique(g.cell_of).size == g.n
    assert (g.occupant[g.cell_of] == np.arange(g.n)).all()
    assert np.count_nonzero(g.occupant >= 0) == g.n


def test_grid_refuses_more_agents_than_cells_and_tiny_tori():
    with pytest.raises(SpecError, match="do not fit"):
        GridSpace(3, 3, 10)
    with pytest.raises(SpecError, match="torus"):
        GridSpace(2, 5, 3, torus=True)
    with pytest.raises(SpecError, match="neighborhood"):
        GridSpace(5, 5, 3, neighborhood="hex")
    GridSpace(3, 3, 9)  # full is fine


def test_grid_placement_is_seeded():
    assert (GridSpace(20, 20, 100, seed=3).cell_of == GridSpace(20, 20, 100, seed=3).cell_of).all()
    assert (GridSpace(20, 20, 100, seed=3).cell_of != GridSpace(20, 20, 100, seed=4).cell_of).any()


# -- the well-mixed population ---------------------------------------------------------------------


def test_well_mixed_reductions_exclude_oneself():
    w = WellMixed(4)
    v = np.array([1.0, 2.0, 3.0, 4.0])
    assert_same(w.neighbor_reduce(v, "sum"), [9, 8, 7, 6])
    assert_same(w.neighbor_reduce(v, "mean"), [3, 8 / 3, 7 / 3, 2])
    assert_same(w.neighbor_reduce(v, "count"), [3, 3, 3, 3])
    assert_same(w.neighbor_reduce(v, "max"), [4, 4, 4, 3])
    assert_same(w.neighbor_reduce(v, "min"), [2, 1, 1, 1])
    assert_same(w.neighbor_reduce(np.array([0, 0, 1, 0]), "same"), [2 / 3, 2 / 3, 0, 2 / 3])
    assert_same(w.neighbor_reduce(np.array([4.0, 4.0, 1.0, 2.0]), "max"), [4, 4, 4, 4])
    assert_same(w.neighbor_reduce(v, "sum", rows=np.array([3, 0])), [6, 9])
    assert_same(w.neighbor_reduce(v, "sum", rows=slice(1, 3)), [8, 7])
    assert w.random_neighbor(np.array([0, 1, 2, 3]), np.array([0.0, 0.0, 0.99, 0.99])).tolist() == [1, 0, 3, 2]
    assert_same(WellMixed(1).neighbor_reduce(np.array([5.0]), "mean"), [NAN])


@pytest.mark.parametrize("op", ["sum", "mean", "count", "max", "min", "same", "random"])
def test_well_mixed_equals_the_complete_network(op):
    rng = np.random.default_rng(5)
    n = 40
    values = rng.integers(0, 4, n).astype(float)
    values[7] = NAN if op in ("max", "min") else values[7]  # a NaN neighbor poisons max/min
    u = rng.random(n)
    assert_same(WellMixed(n).neighbor_reduce(values, op, u=u), networks.complete(n).neighbor_reduce(values, op, u=u))


# -- matching --------------------------------------------------------------------------------------


def reference_matching(nbrs, candidates, coin, pick, prio):
    proposals = {}
    for i in range(len(nbrs)):
        if candidates[i] and coin[i] < 0.5:
            eligible = [j for j in nbrs[i] if candidates[j] and coin[j] >= 0.5]
            if eligible:
                j = eligible[min(int(pick[i] * len(eligible)), len(eligible) - 1)]
                proposals.setdefault(j, []).append(i)
    pairs = sorted((min(ps, key=lambda i: (prio[i], i)), j) for j, ps in proposals.items())
    return [p[0] for p in pairs], [p[1] for p in pairs]


@pytest.mark.parametrize(
    "space",
    [
        networks.erdos_renyi(400, 6, seed=1),
        networks.barabasi_albert(400, 2, seed=1),
        GridSpace(25, 25, 450, torus=True, neighborhood="moore", seed=2),
    ],
    ids=["er", "ba", "grid"],
)
def test_matching_follows_the_proposal_protocol(space):
    rng = np.random.default_rng(7)
    n = space.n
    candidates = rng.random(n) < 0.8
    coin, pick, prio = rng.random((3, n))
    a, b = space.match_neighbors(candidates, coin, pick, prio)
    nbrs = neighbor_sets(space)
    assert (a.tolist(), b.tolist()) == reference_matching(nbrs, candidates, coin, pick, prio)
    assert np.unique(np.r_[a, b]).size == 2 * a.size  # disjoint
    assert all(j in nbrs[i] for i, j in zip(a, b))  # along edges
    assert candidates[a].all() and candidates[b].all()
    assert a.size > n // 10


def test_well_mixed_matching_pairs_candidates_by_priority():
    rng = np.random.default_rng(8)
    candidates = rng.random(101) < 0.7
    coin, pick, prio = rng.random((3, 101))
    a, b = WellMixed(101).match_neighbors(candidates, coin, pick, prio)
    c = np.flatnonzero(candidates)
    assert a.size == c.size // 2 and np.unique(np.r_[a, b]).size == 2 * a.size
    assert set(np.r_[a, b].tolist()) <= set(c.tolist())
    order = c[np.argsort(prio[c])]
    assert set(a.tolist()) == set(order[: a.size].tolist()) and (np.diff(a) > 0).all()


def test_receivers_break_priority_ties_by_lowest_id():
    g = graph(5, STAR)  # 0, 2 and 3 all propose to 1
    coin = np.array([0.1, 0.9, 0.2, 0.3, 0.4])
    a, b = g.match_neighbors(np.ones(5, bool), coin, np.zeros(5), np.zeros(5))
    assert (a.tolist(), b.tolist()) == ([0], [1])
    prio = np.array([0.5, 0.0, 0.5, 0.1, 0.0])
    assert g.match_neighbors(np.ones(5, bool), coin, np.zeros(5), prio)[0].tolist() == [3]
    a, b = WellMixed(5).match_neighbors(np.ones(5, bool), coin, np.zeros(5), np.zeros(5))
    assert (a.tolist(), b.tolist()) == ([0, 1], [2, 3])


def test_matching_inputs_must_cover_every_agent():
    with pytest.raises(ValueError, match="shape"):
        graph(5, STAR).match_neighbors(np.ones(4, bool), np.zeros(5), np.zeros(5), np.zeros(5))


# -- regions ---------------------------------------------------------------------------------------


def test_largest_region_on_two_triangles_and_a_loner():
    g = graph(7, [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3)])
    assert g.largest_region(np.zeros(7)) == pytest.approx(6 / 7)
    assert g.largest_region(np.array([0, 0, 0, 1, 1, 1, 0])) == pytest.approx(3 / 7)
    assert g.largest_region(np.array([0, 1, 0, 1, 0, 1, 2])) == pytest.approx(2 / 7)
    assert WellMixed(5).largest_region(np.array([1, 2, 2, 3, 2])) == pytest.approx(3 / 5)


def test_largest_region_on_a_grid():
    # a 5 x 1 strip would be a torus too small; use 5 x 3 without torus, agents on the top row
    g = GridSpace(5, 3, 5, torus=False, neighborhood="von_neumann", cells=np.arange(5))
    assert g.largest_region(np.array([1, 1, 0, 1, 1])) == pytest.approx(2 / 5)
    assert g.largest_region(np.array([1, 1, 1, 1, 0])) == pytest.approx(4 / 5)


# -- generators ------------------------------------------------------------------------------------


def assert_simple(g: NetworkSpace) -> None:
    a = g.to_csr()
    assert (a != a.T).nnz == 0 and a.diagonal().sum() == 0 and a.has_canonical_format
    assert g.indices.dtype == np.int32


def test_erdos_renyi_has_the_asked_mean_degree_and_poisson_spread():
    g = networks.erdos_renyi(20_000, 8, seed=1)
    assert_simple(g)
    d = g.degree()
    assert abs(d.mean() - 8) < 0.15 and abs(d.var() - 8) < 0.5
    assert networks.erdos_renyi(50, 49, seed=1).degree().tolist() == [49] * 50  # p = 1
    assert networks.erdos_renyi(50, 0, seed=1).n_edges == 0


def test_barabasi_albert_has_min_degree_m_and_a_heavy_tail():
    n, m = 20_000, 3
    g = networks.barabasi_albert(n, m, seed=2)
    assert_simple(g)
    d = g.degree()
    assert d.min() == m and g.n_edges == m + (n - m - 1) * m
    assert abs(np.mean(d == m) - 2 / (m + 2)) < 0.02  # P(k = m) -> 2 / (m + 2)
    assert d.max() > 30 * m  # heavy tail: ~ m sqrt(n)
    assert np.mean(d >= 10 * m) > 0.002


def test_watts_strogatz_is_a_ring_before_rewiring_and_keeps_its_edges_after():
    ring = networks.watts_strogatz(1000, 3, 0.0, seed=1)
    assert (ring.degree() == 6).all()
    assert neighbor_sets(ring)[0] == [1, 2, 3, 997, 998, 999]
    for p in (0.1, 1.0):
        g = networks.watts_strogatz(5000, 3, p, seed=2)
        assert_simple(g)
        assert g.n_edges == 5000 * 3 and g.degree().mean() == 6
        assert g.degree().min() >= 3  # a node keeps the edges it started
    assert (networks.watts_strogatz(5000, 3, 0.5, seed=2).degree() != 6).any()


def test_stochastic_block_densities():
    g = networks.stochastic_block([600, 400], 0.05, 0.002, seed=3)
    assert_simple(g)
    a = g.to_csr()
    within = (a[:600, :600].nnz + a[600:, 600:].nnz) / 2
    across = a[:600, 600:].nnz
    assert within / (600 * 599 / 2 + 400 * 399 / 2) == pytest.approx(0.05, rel=0.05)
    assert across / (600 * 400) == pytest.approx(0.002, rel=0.15)


def test_lattice_degrees():
    assert (networks.lattice(6, 5).degree() == 4).all()
    assert (networks.lattice(6, 5, neighborhood="moore").degree() == 8).all()
    open_grid = networks.lattice(4, 3, periodic=False, neighborhood="moore")
    assert open_grid.degree().tolist() == [3, 5, 5, 3, 5, 8, 8, 5, 3, 5, 5, 3]
    assert_simple(open_grid)
    assert (networks.lattice(2, 5).degree() == 3).all()  # a 2-wide torus: left = right


def test_complete_network_and_its_limit():
    g = networks.complete(30)
    assert (g.degree() == 29).all() and g.n_edges == 435
    with pytest.raises(SpecError, match="well-mixed"):
        networks.complete(networks.COMPLETE_MAX_NODES + 1)


@pytest.mark.parametrize(
    "build",
    [
        lambda s: networks.erdos_renyi(3000, 5, seed=s),
        lambda s: networks.watts_strogatz(3000, 2, 0.2, seed=s),
        lambda s: networks.barabasi_albert(3000, 2, seed=s),
        lambda s: networks.stochastic_block([1000, 2000], 0.01, 0.001, seed=s),
    ],
    ids=["er", "ws", "ba", "sbm"],
)
def test_generators_are_determined_by_the_seed(build):
    a, b, c = build(1), build(1), build(2)
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    assert not (np.array_equal(a.indptr, c.indptr) and np.array_equal(a.indices, c.indices))


def test_triangle_positions_map_to_every_pair_once():
    n = 37
    i, j = networks._triangle_pairs(np.arange(n * (n - 1) // 2), n)
    assert ((i >= 0) & (i < j) & (j < n)).all()
    assert np.unique(i * n + j).size == n * (n - 1) // 2
    big = 10**7  # float precision near the end of a 10M-node triangle
    last = big * (big - 1) // 2 - 1
    i, j = networks._triangle_pairs(np.array([0, last - 1, last]), big)
    assert i.tolist() == [0, big - 3, big - 2] and j.tolist() == [1, big - 1, big - 1]


# -- building from a spec --------------------------------------------------------------------------


def test_build_network_dispatches_and_accepts_aliases():
    assert build_network("Erdős–Rényi", 500, {"mean_degree": 4}, 1).n == 500
    assert build_network("ba", 500, {"m": 2}, 1).degree().min() == 2
    assert (build_network("watts-strogatz", 500, {"mean_degree": 6, "p": 0}, 1).degree() == 6).all()
    assert (build_network("watts_strogatz", 500, {"k": 2, "p": 0.1}, 1).degree().mean() == 4)
    assert build_network("sbm", 500, {"blocks": 3, "p_in": 0.1, "p_out": 0.01}, 1).n == 500
    assert build_network("lattice", 36, {"neighborhood": "moore", "periodic": True}, 1).degree().tolist() == [8] * 36
    assert build_network("lattice", 24, {"width": 6}, 1).n == 24
    assert build_network("complete", 10, {}, 1).n_edges == 45
    assert build_network("er", 100, {"p": 0.5}, 1).degree().mean() == pytest.approx(49.5, rel=0.1)


@pytest.mark.parametrize(
    "kind, n, params, message",
    [
        ("hypercube", 10, {}, "unknown network kind"),
        ("erdos_renyi", 10, {"mean_degree": 10}, "mean degree"),
        ("erdos_renyi", 10, {}, "exactly one"),
        ("erdos_renyi", 10, {"mean_degree": 2, "k": 3}, "unknown parameter"),
        ("erdos_renyi", 10, {"mean_degree": "four"}, "must be a number"),
        ("watts_strogatz", 10, {"k": 5, "p": 0.1}, "k < n/2"),
        ("watts_strogatz", 10, {"mean_degree": 3, "p": 0.1}, "even"),
        ("watts_strogatz", 10, {"k": 2, "p": 1.5}, r"\[0, 1\]"),
        ("barabasi_albert", 10, {"m": 10}, "1 <= m < n"),
        ("barabasi_albert", 10, {"m": 2.5}, "whole number"),
        ("stochastic_block", 10, {"sizes": [3, 3], "p_in": 0.1, "p_out": 0.1}, "sum to 6"),
        ("stochastic_block", 10, {"blocks": 2, "p_in": 2, "p_out": 0.1}, "p_in"),
        ("lattice", 10, {}, "not a square"),
        ("lattice", 10, {"width": 3}, "width x height"),
        ("complete", 0, {}, "nodes >= 1"),
    ],
)
def test_build_network_explains_bad_parameters(kind, n, params, message):
    with pytest.raises(SpecError, match=message):
        build_network(kind, n, params, seed=1)


def test_too_dense_networks_are_refused_before_allocating():
    with pytest.raises(SpecError, match="too many"):
        networks.erdos_renyi(10**6, 5000, seed=1)
    assert math.isfinite(networks.MAX_DIRECTED_EDGES)
