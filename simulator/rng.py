"""Counter-based randomness: every random number is a pure function of (seed, step, rule, slot, agent, draw).

Philox4x32-10 (Salmon et al., SC'11; Random123) maps a 128-bit counter and a 64-bit key to 128
random bits. Because nothing carries over from one number to the next, a run reproduces
exactly however its agents are split across worker processes.

Counter layout of the block that holds draws ``2b`` and ``2b + 1`` of agent ``i`` in
``Stream(seed, step, rule, slot)``, key ``(seed & 0xFFFFFFFF, seed >> 32)``::

    c0 = i & 0xFFFFFFFF               agent id, low 32 bits
    c1 = (i >> 32) | (b << 8)         agent id bits 32..39, block index b < 2**24
    c2 = step                         < 2**32
    c3 = (rule << 16) | slot          each < 2**16

The map is injective for agent ids < 2**40, draws < 2**25 (so draw blocks < 2**24),
steps < 2**32, rules and slots < 2**16: distinct inputs never share a counter. Each block gives
two float64 uniforms of 53 bits, from words (0, 1) and (2, 3).
"""

from __future__ import annotations

import numpy as np

from simulator.errors import SpecError

__all__ = ["philox4x32", "Stream", "MAX_AGENT_ID", "MAX_DRAWS"]

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
ROUNDS = 10
MAX_AGENT_ID = 1 << 40
MAX_DRAWS = 1 << 25
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_TWO_POW_M53 = 2.0**-53
# Lanes per chunk: all ten rounds of a chunk run while its arrays sit in cache.
_CHUNK = 1 << 15
# The key schedule is the same for every lane: precomputed per round, as Python ints.
_BUMPS = [((r * W0) & 0xFFFFFFFF, (r * W1) & 0xFFFFFFFF) for r in range(ROUNDS)]


def philox4x32(counter: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Philox4x32-10 of counters ``(4, n)`` under keys ``(2,)`` or ``(2, n)``; returns ``(4, n)`` uint32."""
    counter = np.asarray(counter, dtype=np.uint32)
    key = np.asarray(key, dtype=np.uint32)
    if counter.ndim != 2 or counter.shape[0] != 4:
        raise ValueError(f"counter must have shape (4, n), got {counter.shape}")
    if key.shape not in ((2,), (2, counter.shape[1])):
        raise ValueError(f"key must have shape (2,) or (2, {counter.shape[1]}), got {key.shape}")
    lanes = counter.astype(np.uint64)
    k = key.astype(np.uint64) if key.ndim == 2 else [int(key[0]), int(key[1])]
    return _philox_lanes(lanes[0], lanes[1], lanes[2], lanes[3], k[0], k[1]).astype(np.uint32)


def _philox_lanes(c0, c1, c2, c3, k0, k1) -> np.ndarray:
    """Philox on uint64 arrays holding 32-bit values or on Python ints; returns ``(4, n)`` uint64.

    A lane given as a Python int is the same for every counter (the step, say): the first rounds
    then run partly on scalars. Keys are Python ints (one key) or uint64 arrays (one per lane).
    Works chunk by chunk so that the temporaries of a round stay in cache.
    """
    n = max(c.size for c in (c0, c1, c2, c3, k0) if isinstance(c, np.ndarray))
    out = np.empty((4, n), dtype=np.uint64)
    per_lane_key = isinstance(k0, np.ndarray)
    for lo in range(0, n, _CHUNK):
        hi = min(lo + _CHUNK, n)
        x = [c if isinstance(c, int) else c[lo:hi] for c in (c0, c1, c2, c3)]
        keys = (k0[lo:hi], k1[lo:hi]) if per_lane_key else (k0, k1)
        for j, lane in enumerate(_rounds(x, *keys)):
            out[j, lo:hi] = lane
    return out


def _rounds(x: list, k0, k1) -> list:
    """Ten Philox rounds on four lanes, each a Python int or a uint64 array."""
    x0, x1, x2, x3 = x
    r = 0
    # While some lane is still a scalar, plain operators keep scalars scalar.
    while r < ROUNDS and not all(isinstance(v, np.ndarray) for v in (x0, x1, x2, x3)):
        ka, kb = _round_keys(k0, k1, r)
        p0, p1 = x0 * M0, x2 * M1
        x0, x1, x2, x3 = (p1 >> 32) ^ x1 ^ ka, p1 & 0xFFFFFFFF, (p0 >> 32) ^ x3 ^ kb, p0 & 0xFFFFFFFF
        r += 1
    if r == ROUNDS:
        return [np.asarray(v, dtype=np.uint64) for v in (x0, x1, x2, x3)]
    x0, x1, x2, x3 = (np.array(v, dtype=np.uint64) for v in (x0, x1, x2, x3))  # own, writable
    p0, p1 = np.empty_like(x0), np.empty_like(x0)
    m0, m1 = np.uint64(M0), np.uint64(M1)
    for r in range(r, ROUNDS):
        ka, kb = _round_keys(k0, k1, r)
        np.multiply(x0, m0, out=p0)  # both factors < 2**32: the product fits in 64 bits
        np.multiply(x2, m1, out=p1)
        np.right_shift(p1, _SHIFT32, out=x0)
        np.bitwise_xor(x0, x1, out=x0)
        np.bitwise_xor(x0, ka, out=x0)
        np.bitwise_and(p1, _LOW32, out=x1)
        np.right_shift(p0, _SHIFT32, out=x2)
        np.bitwise_xor(x2, x3, out=x2)
        np.bitwise_xor(x2, kb, out=x2)
        np.bitwise_and(p0, _LOW32, out=x3)
    return [x0, x1, x2, x3]


def _round_keys(k0, k1, r: int):
    """The key of round ``r``: the seed key bumped ``r`` times by (W0, W1), mod 2**32."""
    if isinstance(k0, np.ndarray):
        return (k0 + np.uint64(_BUMPS[r][0])) & _LOW32, (k1 + np.uint64(_BUMPS[r][1])) & _LOW32
    return (k0 + _BUMPS[r][0]) & 0xFFFFFFFF, (k1 + _BUMPS[r][1]) & 0xFFFFFFFF


class Stream:
    """The random numbers of one (seed, step, rule, slot): ``Stream(seed, step, rule, slot)``.

    Draw ``j`` of agent ``i`` depends only on (seed, words, i, j), never on which other ids are
    asked for at the same time. Methods of one stream share their draws (``integers`` and
    ``uniform`` of the same ids are the same numbers scaled): use distinct slots for
    independent purposes.
    """

    __slots__ = ("seed", "words", "_k0", "_k1", "_c2", "_c3")

    def __init__(self, seed: int, *words: int) -> None:
        seed = int(seed)
        if not 0 <= seed < 1 << 64:
            raise SpecError(f"seed must be an integer in [0, 2**64), got {seed}", hint="use a non-negative seed")
        if len(words) > 3:
            raise ValueError(f"Stream takes at most 3 words (step, rule, slot), got {len(words)}")
        step, rule, slot = (tuple(int(w) for w in words) + (0, 0, 0))[:3]
        if not 0 <= step < 1 << 32:
            raise ValueError(f"step must be in [0, 2**32), got {step}")
        if not 0 <= rule < 1 << 16 or not 0 <= slot < 1 << 16:
            raise ValueError(f"rule and slot must be in [0, 2**16), got {rule}, {slot}")
        self.seed = seed
        self.words = (step, rule, slot)
        self._k0, self._k1 = seed & 0xFFFFFFFF, seed >> 32
        self._c2, self._c3 = step, (rule << 16) | slot

    def __repr__(self) -> str:
        return f"Stream({self.seed}, {', '.join(map(str, self.words))})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stream) and (self.seed, self.words) == (other.seed, other.words)

    def __hash__(self) -> int:
        return hash((self.seed, self.words))

    def uniform(self, ids: np.ndarray, k: int = 1) -> np.ndarray:
        """Float64 uniforms in [0, 1): shape ``(len(ids),)`` for ``k == 1``, else ``(k, len(ids))``."""
        ids = _check_ids(ids)
        if not 1 <= k <= MAX_DRAWS:
            raise ValueError(f"k must be in [1, 2**25], got {k}")
        n = ids.size
        blocks = (k + 1) // 2
        out = np.empty((2 * blocks, n), dtype=np.float64)
        lo = ids & _LOW32
        high = ids >> _SHIFT32
        if n and not high.any():
            high = 0  # ids < 2**32: the whole lane is one scalar, which speeds up the first rounds
        for b in range(blocks):
            c1 = high | (b << 8)
            words = _philox_lanes(lo, c1, self._c2, self._c3, self._k0, self._k1)
            _to_unit(words[0], words[1], out[2 * b])
            if 2 * b + 1 < k:
                _to_unit(words[2], words[3], out[2 * b + 1])
        return out[0] if k == 1 else out[:k]

    def integers(self, ids: np.ndarray, high) -> np.ndarray:
        """Uniform int64 in ``[0, high)`` per id; ``high`` a scalar or an array like ids, each >= 1."""
        high = np.asarray(high)
        if high.size and np.min(high) < 1:
            raise ValueError("integers needs high >= 1")
        u = self.uniform(ids)
        out = (u * high).astype(np.int64)
        # u * high can round up to high when high is near 2**53; keep the bound strict.
        return np.minimum(out, np.asarray(high, dtype=np.int64) - 1, out=out)

    def normal(self, ids: np.ndarray) -> np.ndarray:
        """Standard normal per id (Box-Muller on draws 0 and 1)."""
        u = self.uniform(ids, 2)
        radius = np.sqrt(-2.0 * np.log1p(-u[0]))  # 1 - u in (0, 1]: log is finite
        return radius * np.cos(2.0 * np.pi * u[1])


def _check_ids(ids) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be one-dimensional, got shape {ids.shape}")
    if ids.size == 0:
        return ids.astype(np.uint64)
    if ids.dtype.kind not in "iu":
        raise ValueError(f"ids must be integers, got {ids.dtype}")
    if ids.dtype.kind == "i" and ids.min() < 0 or ids.max() >= MAX_AGENT_ID:
        raise ValueError("agent ids must be in [0, 2**40)")
    return ids.astype(np.uint64, copy=False)


def _to_unit(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """53-bit float in [0, 1) from two 32-bit words: 27 bits of ``a``, 26 of ``b``."""
    a >>= np.uint64(5)
    a <<= np.uint64(26)
    b >>= np.uint64(6)
    a |= b
    np.multiply(a, _TWO_POW_M53, out=out)
