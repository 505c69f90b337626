"""Each library scenario reproduces the known result of the variant it implements.

The variants and figures are those of shared/VALIDATION.md or derived in the scenario's ODD
text. Tolerances are stated per test: they cover sampling error over the seeds used and the
finite population. Means over seeds are compared, never a single run.
"""

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from simulator.catalog import load_scenario
from simulator.compile import compile_scenario
from simulator.engine import Simulation
from simulator.stats import mean_ci
from tests.simulator.helpers import final, run, series


def finals(name, metric, seeds, params=None, **kw):
    return np.array([final(run(name, params, seed=s, **kw), metric) for s in seeds])


def test_schelling_similarity_climbs_from_half_to_well_above_seventy_percent():
    # Two equal groups, density 0.8, Moore torus, wish 0.3 (VALIDATION.md: ~0.5 -> well above 0.7).
    results = [run("schelling", {"wish": 0.3}, seed=s, population=2000, steps=60) for s in range(3)]
    start = np.mean([series(r, "similarity")[0] for r in results])
    end = np.mean([final(r, "similarity") for r in results])
    assert start == pytest.approx(0.5, abs=0.03)
    assert end > 0.72


@pytest.mark.parametrize("m", [1, 5])
def test_boltzmann_asynchronous_exchange_gini_matches_geometric_law(m):
    # Disjoint random pairs == asynchronous unit exchange: stationary wealth is geometric with
    # mean m, Gini (1+m)/(1+2m): 0.667 (m=1), 0.545 (m=5). Average the last third of the run over
    # seeds; 0.02 covers the finite-N bias and sampling noise at N=2000.
    expected = (1 + m) / (1 + 2 * m)
    steps = 300 if m == 1 else 1500
    ginis = []
    for s in range(3):
        r = run("boltzmann_wealth", {"mean_wealth": m}, seed=s, population=2000, steps=steps)
        ginis.append(series(r, "gini")[-steps // 3:].mean())
    assert np.mean(ginis) == pytest.approx(expected, abs=0.02)


def sir_transmissibility(beta, gamma):
    # Infection happens before recovery in a step, and the newly infected may recover in the same
    # step: L (steps an agent is infectious to a neighbor) is geometric P(L=l) = (1-g)^l g.
    return 1 - gamma / (1 - (1 - gamma) * (1 - beta))


def test_sir_on_erdos_renyi_final_size_matches_percolation():
    beta, gamma, c = 0.1, 0.2, 7.0
    t = sir_transmissibility(beta, gamma)
    assert c * t == pytest.approx(2.0, abs=1e-9)
    z = brentq(lambda z: z - (1 - math.exp(-c * t * z)), 1e-6, 1)  # 0.797
    sizes = finals("sir_network", "attack_rate", range(4), {"beta": beta, "gamma": gamma, "mean_degree": c},
                   population=20000)
    # 0.02: seeding (0.2% initially infected) adds ~0.005; the rest is sampling error at N=20000.
    assert sizes.mean() == pytest.approx(z, abs=0.02)


def test_sir_below_the_epidemic_threshold_stays_small():
    sizes = finals("sir_network", "attack_rate", range(3), {"beta": 0.1, "gamma": 0.2, "mean_degree": 2.5},
                   population=20000)  # c T = 0.71 < 1
    assert sizes.mean() < 0.05


@pytest.mark.parametrize("epsilon, low, high", [(0.35, 1, 1), (0.2, 1.5, 3.0), (0.1, 3.5, 6.0)])
def test_deffuant_consensus_for_wide_bounds_and_about_one_over_two_epsilon_clusters(epsilon, low, high):
    # Major clusters (>= 2% of agents); Deffuant et al. 2000: floor(1/(2 eps)) for small eps.
    k = finals("deffuant", "clusters", range(4), {"epsilon": epsilon}, population=1000, steps=300)
    assert low <= k.mean() <= high


def test_axelrod_few_traits_give_one_culture_many_traits_give_fragmentation():
    # F = 5 on a 10x10 lattice (Axelrod 1997; Castellano et al. 2000); runs stop once frozen.
    few = [run("axelrod", {"q": 5}, seed=s) for s in range(2)]
    many = [run("axelrod", {"q": 30}, seed=s) for s in range(2)]
    assert all(final(r, "active") == 0 for r in few + many)  # absorbing states reached
    assert np.mean([final(r, "largest_region") for r in few]) >= 0.8
    assert np.mean([final(r, "largest_region") for r in many]) <= 0.3


def test_granovetter_uniform_thresholds_riot_and_removing_one_instigator_stops_it():
    assert final(run("granovetter", {"spread": 1}), "acting_share") == 1.0
    assert final(run("granovetter", {"spread": 1, "gap": 1}), "acting_share") == pytest.approx(0.01)


def test_granovetter_final_share_is_the_smallest_fixed_point_of_the_threshold_cdf():
    spec = load_scenario("granovetter")
    for seed in range(3):
        sim = Simulation(compile_scenario(spec), {"spread": 1, "noise": 15}, seed, population=200)
        thresholds = sim.attrs["threshold"].copy()
        result = sim.run()
        acting = 0
        while True:  # r -> F(r) from r = F(0), in counts
            nxt = int((thresholds <= acting).sum())
            if nxt == acting:
                break
            acting = nxt
        assert final(result, "acting_share") * 200 == acting


def test_voter_model_reaches_consensus_and_opinion_one_wins_with_its_initial_share():
    # Well mixed (regular): P(opinion 1 wins) equals its initial share (a martingale).
    starts, wins = [], []
    for s in range(240):
        r = run("voter", {"initial_share": 0.3}, seed=s, population=40)
        assert final(r, "consensus") == 1
        starts.append(series(r, "share_one")[0])
        wins.append(final(r, "share_one"))
    se = math.sqrt(0.3 * 0.7 / len(wins))
    assert abs(np.mean(wins) - np.mean(starts)) < 3 * se


@pytest.mark.parametrize("r, low, high", [(2.0, 0.0, 0.05), (8.0, 0.9, 1.0)])
def test_public_goods_cooperation_dies_for_low_return_and_wins_for_high_return(r, low, high):
    # Group size G = 5 on a ring with 4 neighbors: r/G = 0.4 vs 1.6.
    coop = finals("public_goods", "cooperation", range(3), {"r": r}, population=1000, steps=300)
    assert low <= coop.mean() <= high


def test_el_farol_attendance_converges_to_capacity():
    means = [series(run("el_farol", {"capacity": 0.6}, seed=s), "attendance")[-100:].mean() for s in range(3)]
    assert np.mean(means) == pytest.approx(0.6, abs=0.03)


def test_rumor_leaves_about_a_fifth_of_people_ignorant():
    x = brentq(lambda x: x - math.exp(-2 * (1 - x)), 1e-6, 0.99)  # 0.2032
    ign = finals("rumor", "ignorant", range(4), population=5000)
    # 0.02: contact_rate 0.1 is an Euler step of 0.05, biasing the share down by about 0.01 (ODD
    # text); the rest is sampling error at N = 5000.
    assert ign.mean() == pytest.approx(x, abs=0.02)


@pytest.mark.parametrize("audit, low, high", [(0.3, 0.0, 0.1), (0.8, 0.9, 1.0)])
def test_compliance_takes_over_exactly_when_the_expected_fine_exceeds_the_gain(audit, low, high):
    # gain 1, fine 2: audit * fine = 0.6 < 1 (evasion pays) vs 1.6 > 1 (deterrence works).
    comp = finals("compliance", "compliance", range(3), {"audit": audit, "fine": 2, "gain": 1}, steps=300)
    assert low <= comp.mean() <= high


def test_bass_adoption_follows_the_discrete_bass_recursion():
    p, q, steps = 0.01, 0.3, 60
    expected = [0.0]
    for _ in range(steps):
        a = expected[-1]
        expected.append(a + (1 - a) * min(1, p + q * a))
    curves = np.array([series(run("bass_diffusion", {"p": p, "q": q}, seed=s, population=5000, steps=steps),
                              "adopters") for s in range(3)])
    assert np.abs(curves.mean(axis=0) - np.array(expected)).max() < 0.02


def test_probability_matching_share_predicting_a_tends_to_pi():
    shares = [series(run("probability_matching", {"pi": 0.7}, seed=s), "share_predicting_a")[-50:].mean()
              for s in range(3)]
    mean, lo, hi, _ = mean_ci(shares)
    assert mean == pytest.approx(0.7, abs=0.015)
    assert hi - lo < 0.03  # three seeds agree: the result is not one lucky run


def test_voting_majority_of_three_follows_galams_recursion():
    # Everyone deliberates: p' = p^3 + 3 p^2 (1 - p) (Galam 2002), from each run's own initial share so
    # that only the per-round sampling noise remains; 0.02 is about 5 standard errors at N = 10000.
    for s in range(3):
        shares = series(run("voting", {"initial_yes": 0.3}, seed=s, population=10000, steps=12), "yes_share")
        expected = [shares[0]]
        for _ in range(12):
            expected.append(3 * expected[-1] ** 2 - 2 * expected[-1] ** 3)
        assert np.abs(shares - np.array(expected)).max() < 0.02


@pytest.mark.parametrize("initial_yes, winner_share", [(0.45, 0.0), (0.55, 1.0)])
def test_voting_a_slight_majority_becomes_unanimity(initial_yes, winner_share):
    shares = finals("voting", "yes_share", range(3), {"initial_yes": initial_yes})
    assert np.abs(shares - winner_share).max() < 0.01


def test_info_sharing_spread_matches_site_percolation_on_the_network():
    # q = 0.4, c = 6 (q c = 2.4): S = q (1 - exp(-c S)) = 0.351 share, A = 1 - exp(-c S) = 0.879 saw it.
    # 0.03: seeds (1%) add about 0.01, the rest is finite N = 2000 and three seeds.
    q, c = 0.4, 6.0
    s = brentq(lambda s: s - q * (1 - math.exp(-c * s)), 1e-6, 1)
    spread = finals("info_sharing", "spread", range(3), {"share_prob": q, "mean_degree": c})
    aware = finals("info_sharing", "aware", range(3), {"share_prob": q, "mean_degree": c})
    assert spread.mean() == pytest.approx(s, abs=0.03)
    assert aware.mean() == pytest.approx(1 - math.exp(-c * s), abs=0.03)


def test_info_sharing_stays_small_below_the_cascade_threshold():
    # q c = 0.6 < 1: each seed's cascade has about 1 / (1 - q c) = 2.5 sharers on average.
    spread = finals("info_sharing", "spread", range(3), {"share_prob": 0.1, "mean_degree": 6})
    assert spread.mean() < 0.05
