"""Counter-based randomness: Philox4x32-10 known answers, purity per agent, rough uniformity."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from simulator.errors import SpecError
from simulator.rng import Stream, philox4x32

# Random123 tests/kat_vectors (DEShawResearch/random123, commit 9545ff64), the "philox4x32 10"
# lines: counter (4 words), key (2 words), expected output (4 words).
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, expected", KAT)
def test_philox_matches_random123_known_answers(counter, key, expected):
    out = philox4x32(np.array(counter, dtype=np.uint32)[:, None], np.array(key, dtype=np.uint32))
    assert out.dtype == np.uint32 and out.shape == (4, 1)
    assert out[:, 0].tolist() == list(expected)


def test_philox_takes_one_key_per_lane():
    counters = np.array([c for c, _, _ in KAT], dtype=np.uint32).T
    keys = np.array([k for _, k, _ in KAT], dtype=np.uint32).T
    assert philox4x32(counters, keys).T.tolist() == [list(e) for _, _, e in KAT]


def test_philox_lanes_are_independent_of_their_neighbors():
    counter = np.random.default_rng(0).integers(0, 2**32, size=(4, 1000), dtype=np.uint32)
    key = np.array([7, 9], dtype=np.uint32)
    whole = philox4x32(counter, key)
    assert np.array_equal(whole[:, 400:401], philox4x32(counter[:, 400:401], key))


def test_uniform_is_a_pure_function_of_seed_words_and_id():
    ids = np.arange(50_000)
    a = Stream(11, 3, 2, 1).uniform(ids)
    assert np.array_equal(a, Stream(11, 3, 2, 1).uniform(ids))
    assert a.dtype == np.float64 and a.shape == ids.shape
    assert ((a >= 0) & (a < 1)).all()


def test_uniform_does_not_depend_on_how_ids_are_split():
    stream = Stream(5, 10, 4, 2)
    ids = np.arange(20_000)
    whole = stream.uniform(ids, 3)
    parts = [stream.uniform(part, 3) for part in np.array_split(ids, 7)]
    assert np.array_equal(whole, np.concatenate(parts, axis=1))
    shuffled = np.random.default_rng(1).permutation(ids)
    assert np.array_equal(stream.uniform(shuffled, 3), whole[:, shuffled])


def test_large_agent_ids_take_the_general_path_consistently():
    stream = Stream(2, 1)
    big = np.array([2**32 + 5, 2**39 + 17, 3], dtype=np.int64)
    assert np.array_equal(stream.uniform(big), np.concatenate([stream.uniform(big[:2]), stream.uniform(big[2:])]))
    assert stream.uniform(big[:1])[0] != stream.uniform(np.array([5]))[0]  # the high bits count


def test_draw_j_is_the_same_whatever_k():
    stream = Stream(9, 1, 1, 1)
    ids = np.arange(1000)
    five = stream.uniform(ids, 5)
    assert np.array_equal(stream.uniform(ids, 2), five[:2])
    assert np.array_equal(stream.uniform(ids), five[0])


@pytest.mark.parametrize("other", [(1, 7, 2, 3), (0, 8, 2, 3), (0, 7, 3, 3), (0, 7, 2, 4)])
def test_distinct_seeds_steps_rules_and_slots_give_distinct_numbers(other):
    ids = np.arange(10_000)
    base = Stream(0, 7, 2, 3).uniform(ids)
    changed = Stream(*other).uniform(ids)
    assert np.mean(base == changed) < 0.001
    assert abs(np.corrcoef(base, changed)[0, 1]) < 0.05


def test_draws_and_agents_do_not_repeat_each_other():
    u = Stream(3, 1, 1, 1).uniform(np.arange(100_000), 4)
    assert np.unique(u).size == u.size


def test_uniform_is_roughly_uniform():
    u = Stream(123, 1, 2, 3).uniform(np.arange(100_000))
    assert abs(u.mean() - 0.5) < 0.005
    assert abs(u.var() - 1 / 12) < 0.002
    assert stats.kstest(u, "uniform").pvalue > 1e-4
    low_bits = (u * 2**53).astype(np.int64) & 0xFF  # the last bits are random too
    assert stats.chisquare(np.bincount(low_bits, minlength=256)).pvalue > 1e-4


def test_integers_are_uniform_below_high():
    stream = Stream(4, 2)
    ids = np.arange(60_000)
    k = stream.integers(ids, 6)
    assert k.dtype == np.int64 and k.min() == 0 and k.max() == 5
    assert stats.chisquare(np.bincount(k, minlength=6)).pvalue > 1e-4
    highs = np.arange(1, 60_001)
    per_id = stream.integers(ids, highs)
    assert ((per_id >= 0) & (per_id < highs)).all()
    with pytest.raises(ValueError):
        stream.integers(ids[:3], np.array([1, 0, 2]))


def test_normal_is_standard_normal():
    z = Stream(8, 1, 1).normal(np.arange(100_000))
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    assert stats.kstest(z, "norm").pvalue > 1e-4
    assert np.isfinite(z).all()


def test_empty_ids_give_empty_results():
    stream = Stream(1)
    assert stream.uniform(np.array([], dtype=np.int64)).shape == (0,)
    assert stream.uniform(np.array([], dtype=np.int64), 3).shape == (3, 0)


def test_bad_inputs_are_refused():
    with pytest.raises(SpecError):
        Stream(-1)
    with pytest.raises(ValueError):
        Stream(1, 2**32)
    with pytest.raises(ValueError):
        Stream(1, 0, 2**16)
    with pytest.raises(ValueError):
        Stream(1, 0, 0, 0, 0)
    with pytest.raises(ValueError):
        Stream(1).uniform(np.array([-1]))
    with pytest.raises(ValueError):
        Stream(1).uniform(np.array([2**40]))


def test_streams_are_value_objects():
    assert Stream(1, 2, 3, 4) == Stream(1, 2, 3, 4)
    assert len({Stream(1, 2, 3, 4), Stream(1, 2, 3, 4), Stream(1, 2, 3, 5)}) == 2
    assert Stream(1) == Stream(1, 0, 0, 0)
