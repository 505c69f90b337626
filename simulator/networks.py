"""Network generators: vectorized, seeded, int32, fit for 1M-10M nodes.

Each returns a :class:`~simulator.space.NetworkSpace` (undirected, simple). A network is built
once per run from ``np.random.Generator(np.random.Philox(seed))``, so the same seed gives the
same graph; it need not be split-invariant, only the per-step draws must be.

Bernoulli graphs (Erdős–Rényi, stochastic block) are exact: the present pairs of a block of
candidate pairs are found by geometric skips between successes, never by looking at all pairs.
"""

from __future__ import annotations

import math
import unicodedata

import numpy as np
import scipy.sparse as sp

from simulator.errors import SpecError
from simulator.space import NEIGHBORHOODS, NetworkSpace

__all__ = [
    "complete",
    "erdos_renyi",
    "watts_strogatz",
    "barabasi_albert",
    "stochastic_block",
    "lattice",
    "build_network",
    "NETWORK_KINDS",
]

COMPLETE_MAX_NODES = 10_000  # 10^8 directed edges, about 1.2 GB: beyond that use a well-mixed space
MAX_DIRECTED_EDGES = 1 << 30  # about 12 GB of adjacency: refuse rather than exhaust memory


def _rng(seed: int) -> np.random.Generator:
    seed = int(seed)
    if seed < 0:
        raise SpecError(f"seed must be a non-negative integer, got {seed}")
    return np.random.Generator(np.random.Philox(seed))


def _check_n(n, minimum: int = 1) -> int:
    if int(n) != n or n < minimum:
        raise SpecError(f"a network needs an integer number of nodes >= {minimum}, got {n}")
    return int(n)


def _check_size(n: int, expected_edges: float, what: str) -> None:
    if 2 * expected_edges > MAX_DIRECTED_EDGES:
        raise SpecError(
            f"{what} on {n} nodes would have about {expected_edges:.3g} edges, too many to hold in memory",
            hint="lower the mean degree or the number of agents",
        )


def _from_edges(n: int, u: np.ndarray, v: np.ndarray, *, ordered: bool = False) -> NetworkSpace:
    """The simple undirected graph with edges (u, v): self loops dropped, repeats merged.

    ``ordered``: the pairs are distinct, ``u < v``, sorted by (u, v) (as Bernoulli sampling
    yields them). Listing each edge first as (v, u) then as (u, v) then fills every CSR row
    already sorted, so the conversion needs no sort.
    """
    if not ordered:
        keep = u != v
        u, v = u[keep], v[keep]
    dtype = np.int32 if n < 2**31 else np.int64
    m = u.size
    rows, cols = np.empty(2 * m, dtype=dtype), np.empty(2 * m, dtype=dtype)
    rows[:m], rows[m:] = v, u
    cols[:m], cols[m:] = u, v
    del u, v
    # COO -> CSR is an O(edges) counting sort in C (stable); it sorts rows and merges repeats
    # only when they are not already canonical.
    csr = sp.coo_matrix((np.ones(2 * m, dtype=np.int8), (rows, cols)), shape=(n, n)).tocsr()
    del rows, cols
    csr.sum_duplicates()
    return NetworkSpace(csr, validate=False)


def _bernoulli_slots(n_slots: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions in ``[0, n_slots)`` each present with probability ``p``, independently.

    The gaps between successive successes are geometric, so the cost is in the successes.
    """
    if p <= 0 or n_slots <= 0:
        return np.empty(0, dtype=np.int64)
    if p >= 1:
        return np.arange(n_slots, dtype=np.int64)
    chunks, last = [], -1
    while True:
        remaining = (n_slots - 1 - last) * p
        gaps = rng.geometric(p, size=int(remaining + 6 * math.sqrt(remaining) + 64))
        positions = np.cumsum(gaps)
        positions += last
        if positions[-1] >= n_slots:
            chunks.append(positions[: np.searchsorted(positions, n_slots)])
            return np.concatenate(chunks)
        chunks.append(positions)
        last = int(positions[-1])


def _triangle_pairs(position: np.ndarray, size) -> tuple[np.ndarray, np.ndarray]:
    """Pair (i, j), i < j < size, at ``position`` in the row-major upper triangle of a size x size
    matrix; ``size`` a scalar or one per position."""
    size = np.asarray(size, dtype=np.int64)
    b = (2 * size - 1).astype(np.float64)
    row = np.floor((b - np.sqrt(np.maximum(b * b - 8.0 * position, 0.0))) / 2).astype(np.int64)

    def before(r):  # slots in the rows above row r
        return r * (2 * size - r - 1) // 2

    while True:  # the float estimate can be off by one either way
        start = before(row)
        low = start > position
        high = start + (size - 1 - row) <= position
        if not (low.any() or high.any()):
            break
        row += high.astype(np.int64) - low.astype(np.int64)
    return row, position - start + row + 1


def complete(n: int) -> NetworkSpace:
    """Everyone linked to everyone; only for small n (a well-mixed space is the same, for free)."""
    n = _check_n(n)
    if n > COMPLETE_MAX_NODES:
        raise SpecError(
            f"a complete network on {n} nodes needs {n * (n - 1)} stored edges; the limit is "
            f"{COMPLETE_MAX_NODES} nodes",
            hint="use a well-mixed space: everyone is everyone's neighbor, with no edges stored",
        )
    everyone = np.arange(n, dtype=np.int32)
    indices = np.broadcast_to(everyone, (n, n))[~np.eye(n, dtype=bool)]
    indptr = np.arange(n + 1, dtype=np.int32) * (n - 1)
    return NetworkSpace.from_lists(indptr, indices)


def erdos_renyi(n: int, mean_degree: float, seed: int = 0) -> NetworkSpace:
    """G(n, p) with p = mean_degree / (n - 1): each pair linked independently (exact)."""
    n = _check_n(n)
    if not 0 <= mean_degree <= n - 1:
        raise SpecError(
            f"an Erdős–Rényi network on {n} nodes needs a mean degree in [0, {n - 1}], got {mean_degree}",
            hint="a node can have at most n - 1 neighbors",
        )
    _check_size(n, n * mean_degree / 2, "an Erdős–Rényi network")
    p = mean_degree / (n - 1) if n > 1 else 0.0
    u, v = _triangle_pairs(_bernoulli_slots(n * (n - 1) // 2, p, _rng(seed)), n)
    return _from_edges(n, u, v, ordered=True)


def stochastic_block(sizes, p_in: float, p_out: float, seed: int = 0) -> NetworkSpace:
    """Blocks of the given sizes (ids in block order); pairs linked with p_in within a block and
    p_out across (exact)."""
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1)
    if sizes.size == 0 or (sizes < 1).any():
        raise SpecError(f"a stochastic block network needs block sizes >= 1, got {sizes.tolist()}")
    for name, p in (("p_in", p_in), ("p_out", p_out)):
        if not 0 <= p <= 1:
            raise SpecError(f"stochastic block {name} must be a probability in [0, 1], got {p}")
    n = int(sizes.sum())
    within_slots = sizes * (sizes - 1) // 2
    total_slots = n * (n - 1) // 2
    _check_size(n, p_in * within_slots.sum() + p_out * (total_slots - within_slots.sum()), "a block network")
    rng = _rng(seed)
    starts = np.concatenate(([0], np.cumsum(sizes)))
    # Within blocks: the blocks' triangles laid end to end.
    slot_starts = np.concatenate(([0], np.cumsum(within_slots)))
    within = _bernoulli_slots(int(slot_starts[-1]), p_in, rng)
    block = np.searchsorted(slot_starts, within, side="right") - 1
    i, j = _triangle_pairs(within - slot_starts[block], sizes[block])
    u_in, v_in = i + starts[block], j + starts[block]
    # Across blocks: Bernoulli(p_out) over all pairs, keeping those that cross.
    u_out, v_out = _triangle_pairs(_bernoulli_slots(total_slots, p_out, rng), n)
    crossing = np.searchsorted(starts, u_out, side="right") != np.searchsorted(starts, v_out, side="right")
    return _from_edges(n, np.concatenate((u_in, u_out[crossing])), np.concatenate((v_in, v_out[crossing])))


def watts_strogatz(n: int, k: int, p: float, seed: int = 0) -> NetworkSpace:
    """Ring of n nodes each linked to its k nearest on either side (degree 2k), then each edge's
    far end rewired with probability p to a uniform node, avoiding self loops and repeated edges
    (redrawn until free), so the edge count and mean degree 2k are kept."""
    n = _check_n(n)
    k = int(k)
    if k < 1 or 2 * k >= n:
        raise SpecError(
            f"a Watts–Strogatz ring of {n} nodes needs 1 <= k < n/2 neighbors on each side, got k={k}",
            hint="k counts neighbors on each side: the degree is 2k",
        )
    if not 0 <= p <= 1:
        raise SpecError(f"Watts–Strogatz rewiring probability p must be in [0, 1], got {p}")
    _check_size(n, n * k, "a Watts–Strogatz network")
    rng = _rng(seed)
    u = np.repeat(np.arange(n, dtype=np.int64), k)
    v = (u + np.tile(np.arange(1, k + 1, dtype=np.int64), n)) % n
    rewired = rng.random(u.size) < p
    pending = np.flatnonzero(rewired)
    taken = np.empty(0, dtype=np.int64)  # sorted keys of accepted rewired edges
    for _ in range(1000):
        if pending.size == 0:
            break
        a, b = u[pending], rng.integers(0, n, size=pending.size)
        v[pending] = b
        key = np.minimum(a, b) * n + np.maximum(a, b)
        bad = (a == b) | _is_kept_ring_edge(a, b, n, k, rewired) | _in_sorted(key, taken)
        first = np.zeros(pending.size, dtype=bool)
        good = np.flatnonzero(~bad)
        _, first_good = np.unique(key[good], return_index=True)  # repeats among this round's draws
        first[good[first_good]] = True
        taken = np.sort(np.concatenate((taken, key[first])))
        pending = pending[~first]
    keep = np.ones(u.size, dtype=bool)
    keep[pending] = False  # only if 1000 rounds found no free pair: a nearly complete ring
    return _from_edges(n, u[keep], v[keep])


def _is_kept_ring_edge(a: np.ndarray, b: np.ndarray, n: int, k: int, rewired: np.ndarray) -> np.ndarray:
    """Whether (a, b) is a ring edge (circular distance 1..k) that was not rewired away."""
    forward = (b - a) % n  # b = a + forward
    backward = (a - b) % n
    near = (forward >= 1) & (forward <= k) | (backward >= 1) & (backward <= k)
    # The ring edge is stored as (s, s + d) with d <= k, at index s * k + d - 1.
    start = np.where(forward <= k, a, b)
    d = np.minimum(forward, backward)
    index = np.where(near, start * k + d - 1, 0)
    return near & ~rewired[index]


def _in_sorted(x: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    if sorted_keys.size == 0:
        return np.zeros(x.size, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, x), sorted_keys.size - 1)
    return sorted_keys[at] == x


def barabasi_albert(n: int, m: int, seed: int = 0) -> NetworkSpace:
    """Preferential attachment: from a star on m + 1 nodes, each new node links to m distinct
    earlier nodes chosen with probability proportional to their degree (networkx's
    ``barabasi_albert_graph`` model, same distribution, not the same graphs).

    Vectorized Batagelj–Brandes: each new edge picks a uniform endpoint ("slot") of the edges
    before its node, which is a degree-proportional node; a slot that is itself a picked target
    is resolved by following the picks back to a source, for all edges at once. A node's
    repeated targets are redrawn until its m are distinct. A repeat is redrawn only once its
    node's targets are final (no pick they copy can still change), so each node's targets are
    the first m distinct of i.i.d. degree-proportional draws, as in the sequential process.
    """
    n, m = _check_n(n), int(m)
    if not 1 <= m < n:
        raise SpecError(f"a Barabási–Albert network on {n} nodes needs 1 <= m < n edges per new node, got m={m}")
    _check_size(n, m * n, "a Barabási–Albert network")
    return _from_edges(n, *_preferential_edges(n, m, _rng(seed)))


def _preferential_edges(n: int, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n_new = n - m - 1
    edges = m + n_new * m
    dtype = np.int32 if 2 * edges < 2**31 else np.int64
    # Edge e < m is the star's (e + 1, 0); edge e >= m is node m + 1 + (e - m) // m's pick.
    # Slot 2e is edge e's source, slot 2e + 1 its target.
    source = np.concatenate((np.arange(1, m + 1), np.repeat(np.arange(m + 1, n), m))).astype(dtype)
    first_slot = np.repeat(2 * (m + np.arange(n_new) * m), m)  # slots before the node's own edges
    picked = np.zeros(edges, dtype=dtype)
    picked[m:] = rng.integers(0, first_slot)
    target = np.zeros(edges, dtype=dtype)  # the star's edges point at node 0
    copies = _Copies(picked, m)
    affected = np.arange(m, edges)
    waiting = np.empty(0, dtype=np.int64)  # nodes (0 = node m + 1) with repeats not yet final
    for _ in range(100_000):
        _resolve_targets(picked, source, target, affected, m)
        nodes = _sorted_unique((affected - m) // m)
        if waiting.size:
            nodes = np.union1d(nodes, waiting)
        rows, cols = _repeated_picks(target[m:].reshape(n_new, m)[nodes])
        if rows.size == 0:
            return source, target
        repeats = m + nodes[rows] * m + cols
        # A node's repeat is real only if none of its picks copies a pick that may still change.
        unsettled = np.zeros(edges, dtype=bool)
        unsettled[copies.reached_from(repeats, include_start=False)] = True
        node_unsettled = unsettled[m:].reshape(n_new, m)[nodes].any(axis=1)
        redraw = repeats[~node_unsettled[rows]]
        waiting = nodes[rows[node_unsettled[rows]]]
        picked[redraw] = rng.integers(0, first_slot[redraw - m])
        copies.repointed(redraw)
        affected = copies.reached_from(redraw, include_start=True)
    raise RuntimeError("Barabási–Albert: repeated targets did not settle")


class _Copies:
    """Which edges copy their target, directly or through others, from given edges."""

    def __init__(self, picked: np.ndarray, m: int) -> None:
        self.picked, self.m = picked, m
        edges = np.arange(m, picked.size)
        parent = self._parents(edges)
        copying = parent >= m
        size = picked.size
        self.children = sp.csr_matrix(
            (np.ones(int(copying.sum()), dtype=np.int8), (parent[copying], edges[copying])), shape=(size, size)
        )
        self.extra_parent = np.empty(0, dtype=np.int64)  # links made by redraws
        self.extra_child = np.empty(0, dtype=np.int64)

    def _parents(self, edges: np.ndarray) -> np.ndarray:
        slot = self.picked[edges].astype(np.int64)
        return np.where((slot & 1) == 1, slot >> 1, -1)  # an odd slot copies edge slot >> 1's target

    def reached_from(self, start: np.ndarray, include_start: bool) -> np.ndarray:
        """Sorted edges that copy from ``start`` (and ``start`` itself if asked).

        Links left by redrawn picks stay in ``children``: they only add edges, never miss one.
        """
        seen = np.zeros(self.picked.size, dtype=bool)
        frontier = np.unique(start)
        if include_start:
            seen[frontier] = True
        while frontier.size:
            kids = np.concatenate(
                (self.children[frontier].indices, self.extra_child[np.isin(self.extra_parent, frontier)])
            ).astype(np.int64)
            frontier = np.unique(kids[~seen[kids]])
            seen[frontier] = True
        return np.flatnonzero(seen)

    def repointed(self, edges: np.ndarray) -> None:
        parent = self._parents(edges)
        copying = parent >= self.m
        self.extra_parent = np.concatenate((self.extra_parent, parent[copying]))
        self.extra_child = np.concatenate((self.extra_child, edges[copying]))


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    """The distinct values of an ascending array."""
    return x[np.concatenate(([True], x[1:] != x[:-1]))] if x.size else x


def _resolve_targets(picked, source, target, edges: np.ndarray, m: int) -> None:
    """Targets of ``edges``: follow slot -> (odd) an earlier edge's pick -> ... to a source slot."""
    slot = picked[edges]
    while edges.size:
        earlier = slot >> 1
        at_source = (slot & 1) == 0
        target[edges[at_source]] = source[earlier[at_source]]
        at_star = ~at_source & (earlier < m)  # the star's targets are all node 0
        target[edges[at_star]] = 0
        follow = ~(at_source | at_star)
        edges, slot = edges[follow], picked[earlier[follow]]


def _repeated_picks(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of each target already picked by an earlier column of the same row."""
    order = np.argsort(targets, axis=1, kind="stable")
    ordered = np.take_along_axis(targets, order, axis=1)
    repeat = ordered[:, 1:] == ordered[:, :-1]  # the later of two equal picks (stable order)
    rows, cols = np.nonzero(repeat)
    return rows, order[rows, cols + 1]


def lattice(width: int, height: int, periodic: bool = True, neighborhood: str = "von_neumann") -> NetworkSpace:
    """A width x height grid graph, node ``y * width + x``; 4 (von Neumann) or 8 (Moore) neighbors."""
    width, height = _check_n(width), _check_n(height)
    if neighborhood not in NEIGHBORHOODS:
        raise SpecError(f"unknown lattice neighborhood {neighborhood!r}", hint=f"use one of {', '.join(NEIGHBORHOODS)}")
    n = width * height
    node = np.arange(n, dtype=np.int64)
    x, y = node % width, node // width
    us, vs = [], []
    for dx, dy in NEIGHBORHOODS[neighborhood]:
        if (dy, dx) <= (0, 0):
            continue  # each undirected edge once: only the offsets pointing "forward"
        nx, ny = x + dx, y + dy
        if periodic:
            us.append(node)
            vs.append((ny % height) * width + nx % width)
        else:
            inside = (nx >= 0) & (nx < width) & (ny < height)
            us.append(node[inside])
            vs.append(ny[inside] * width + nx[inside])
    return _from_edges(n, np.concatenate(us), np.concatenate(vs))


# -- building from a spec --------------------------------------------------------------------

NETWORK_KINDS = {
    "complete": (),
    "erdos_renyi": ("mean_degree", "p"),
    "watts_strogatz": ("k", "mean_degree", "p"),
    "barabasi_albert": ("m",),
    "stochastic_block": ("sizes", "blocks", "p_in", "p_out"),
    "lattice": ("width", "height", "periodic", "neighborhood"),
}
_ALIASES = {
    "er": "erdos_renyi",
    "gnp": "erdos_renyi",
    "random": "erdos_renyi",
    "ws": "watts_strogatz",
    "small_world": "watts_strogatz",
    "ba": "barabasi_albert",
    "scale_free": "barabasi_albert",
    "sbm": "stochastic_block",
    "block": "stochastic_block",
    "grid": "lattice",
}


def _kind(kind: str) -> str:
    spaced = str(kind).replace("-", " ").replace("–", " ").replace("_", " ")
    ascii_kind = unicodedata.normalize("NFKD", spaced).encode("ascii", "ignore").decode()  # Erdős -> Erdos
    key = "_".join(ascii_kind.lower().split())
    key = _ALIASES.get(key, key)
    if key not in NETWORK_KINDS:
        raise SpecError(f"unknown network kind {kind!r}", hint=f"use one of {', '.join(NETWORK_KINDS)}")
    return key


def build_network(kind: str, n: int, params: dict | None, seed: int) -> NetworkSpace:
    """The network a spec names: ``kind`` (see NETWORK_KINDS; common aliases accepted) on n nodes.

    Parameters per kind: erdos_renyi ``mean_degree`` (or ``p``); watts_strogatz ``k`` neighbors
    per side (or an even ``mean_degree``) and rewiring ``p``; barabasi_albert ``m``;
    stochastic_block ``sizes`` summing to n (or ``blocks``, equal sizes), ``p_in``, ``p_out``;
    lattice ``width`` and/or ``height`` (width * height = n), ``periodic``, ``neighborhood``.
    """
    key = _kind(kind)
    params = dict(params or {})
    unknown = sorted(set(params) - set(NETWORK_KINDS[key]))
    if unknown:
        allowed = ", ".join(NETWORK_KINDS[key]) or "none"
        raise SpecError(f"{key} network: unknown parameter(s) {', '.join(unknown)}", hint=f"allowed: {allowed}")
    n = _check_n(n)
    if key == "complete":
        return complete(n)
    if key == "erdos_renyi":
        return erdos_renyi(n, _mean_degree(params, n, key), seed)
    if key == "watts_strogatz":
        return watts_strogatz(n, _ring_k(params), _number(params, "p", key), seed)
    if key == "barabasi_albert":
        return barabasi_albert(n, _integer(params, "m", key), seed)
    if key == "stochastic_block":
        p_in, p_out = _number(params, "p_in", key), _number(params, "p_out", key)
        return stochastic_block(_block_sizes(params, n), p_in, p_out, seed)
    width, height = _lattice_shape(params, n)
    return lattice(width, height, bool(params.get("periodic", True)), params.get("neighborhood", "von_neumann"))


def _number(params: dict, name: str, kind: str) -> float:
    if name not in params:
        raise SpecError(f"{kind} network needs the parameter {name!r}")
    value = params[name]
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value):
        raise SpecError(f"{kind} network parameter {name!r} must be a number, got {value!r}")
    return float(value)


def _integer(params: dict, name: str, kind: str) -> int:
    value = _number(params, name, kind)
    if value != int(value):
        raise SpecError(f"{kind} network parameter {name!r} must be a whole number, got {params[name]!r}")
    return int(value)


def _mean_degree(params: dict, n: int, kind: str) -> float:
    if ("mean_degree" in params) == ("p" in params):
        raise SpecError(f"{kind} network needs exactly one of 'mean_degree' or 'p'")
    if "p" in params:
        p = _number(params, "p", kind)
        if not 0 <= p <= 1:
            raise SpecError(f"{kind} network: p must be a probability in [0, 1], got {p}")
        return p * (n - 1)
    return _number(params, "mean_degree", kind)


def _ring_k(params: dict) -> int:
    kind = "watts_strogatz"
    if ("k" in params) == ("mean_degree" in params):
        raise SpecError(f"{kind} network needs exactly one of 'k' (neighbors per side) or 'mean_degree'")
    if "k" in params:
        return _integer(params, "k", kind)
    degree = _integer(params, "mean_degree", kind)
    if degree % 2:
        raise SpecError(f"{kind} network: mean_degree must be even (k = mean_degree / 2 per side), got {degree}")
    return degree // 2


def _block_sizes(params: dict, n: int) -> list[int]:
    kind = "stochastic_block"
    if ("sizes" in params) == ("blocks" in params):
        raise SpecError(f"{kind} network needs exactly one of 'sizes' (a list) or 'blocks' (a count)")
    if "blocks" in params:
        blocks = _integer(params, "blocks", kind)
        if not 1 <= blocks <= n:
            raise SpecError(f"{kind} network: blocks must be in [1, {n}], got {blocks}")
        return [n // blocks + (i < n % blocks) for i in range(blocks)]
    sizes = params["sizes"]
    if not isinstance(sizes, (list, tuple)) or not all(isinstance(s, (int, np.integer)) for s in sizes):
        raise SpecError(f"{kind} network: sizes must be a list of whole numbers, got {sizes!r}")
    if sum(sizes) != n:
        raise SpecError(f"{kind} network: block sizes sum to {sum(sizes)}, not to the {n} agents")
    return list(sizes)


def _lattice_shape(params: dict, n: int) -> tuple[int, int]:
    kind = "lattice"
    width = _integer(params, "width", kind) if "width" in params else None
    height = _integer(params, "height", kind) if "height" in params else None
    if width is None and height is None:
        side = math.isqrt(n)
        if side * side != n:
            raise SpecError(f"{kind} network: {n} agents are not a square; give width and height")
        return side, side
    if width is None:
        width = n // height if height and n % height == 0 else -1
    if height is None:
        height = n // width if width and n % width == 0 else -1
    if width < 1 or height < 1 or width * height != n:
        raise SpecError(f"{kind} network: width x height must equal the {n} agents, got {params}")
    return width, height
