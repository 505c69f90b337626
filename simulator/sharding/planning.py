"""How a run is split over shards: id ranges, segments of rules, exchanges, shard count and state.

A shard computes the rules for the agents it owns, a contiguous range of ids (`partition`).
Rules are grouped into segments (`plan_segments`) so that no rule reads, for agents owned
elsewhere, a write not yet exchanged; after each segment a shard sends what the others will read
of its writes (`segment_writes`). Each shard holds either the whole state (`replicated`) or only
its own agents and their neighbors (`partitioned`), where the scenario allows it
(`partition_blocker`) and the halo would be small (`expected_halo_share`).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from simulator.compile import QUANTITY_FIELDS, CompiledRule, CompiledScenario
from simulator.engine import ParamsContext, scalar_value, type_counts
from simulator.expr import CompiledExpr
from societas.errors import SocietasError


SHARD_THRESHOLD = 2_000_000  # agents above which `simulate` shards a run unless told otherwise
SHARD_STATES = ("auto", "partitioned", "replicated")  # what each shard holds: see `ShardedRun`
ALL = frozenset({"*"})  # "every attribute": a phase whose reads cannot be narrowed


# --- what each rule reads and writes ---------------------------------------------------------

def rule_exprs(rule: CompiledRule) -> list[CompiledExpr]:
    """Every expression of a rule (none missing): what it may read."""
    exprs = [rule.when, rule.activation, rule.probability, *(e for _, e in rule.let),
             *rule.effects.values(), *rule.other_effects.values(), *rule.weights]
    for effects in rule.action_effects:
        exprs += effects.values()
    return [e for e in exprs if e is not None]


def rule_writes(rule: CompiledRule) -> frozenset[str]:
    """Attributes a rule writes on the rows it acts on (positions are not attributes)."""
    out = set(rule.effects) | set(rule.other_effects)
    if rule.kind == "transition" and rule.attribute:
        out.add(rule.attribute)
    for effects in rule.action_effects:
        out |= set(effects)
    if rule.record:
        out.add(rule.record)
    return frozenset(out)


def rule_remote_reads(rule: CompiledRule, has_policy: bool) -> frozenset[str]:
    """Attributes a shard reads for agents it does not own while applying this rule.

    Update, transition and decide rules act on owned rows: only neighbor functions and
    aggregates (`reads_all`) reach further. Interactions and moves are matched globally, so
    everything they read is read for everyone. An LLM policy may look at anything.
    """
    if rule.kind == "decide" and has_policy:
        return ALL
    out: set[str] = set()
    for e in rule_exprs(rule):
        out |= e.reads_all | e.reads_other
        if rule.kind in ("interact", "move"):
            out |= e.reads_self
    return frozenset(out)


def plan_segments(compiled: CompiledScenario, has_policy: bool = False) -> list[list[int]]:
    """Rules grouped so that no rule reads, for rows owned elsewhere, a write not yet exchanged."""
    segments: list[list[int]] = [[]]
    dirty: set[str] = set()
    for rule in compiled.rules:
        reads = rule_remote_reads(rule, has_policy)
        if dirty and (reads is ALL or reads & dirty):
            segments.append([])
            dirty = set()
        segments[-1].append(rule.index)
        dirty |= rule_writes(rule)
    return segments


def remotely_read(compiled: CompiledScenario, has_policy: bool = False) -> frozenset[str]:
    """Attributes that some shard reads, at some point of a step, for rows it does not own:
    the rules' remote reads, and whatever the environment, the metrics and the stop condition
    read (they look at everyone). Only these are ever exchanged."""
    out: set[str] = set(population_read(compiled))
    for rule in compiled.rules:
        reads = rule_remote_reads(rule, has_policy)
        if reads is ALL:
            return ALL
        out |= reads
    for _, e in compiled.env:
        out |= e.reads_self | e.reads_all
    return frozenset(out)


def population_read(compiled: CompiledScenario) -> frozenset[str]:
    """Attributes the metrics and the stop condition read (for everyone)."""
    out: set[str] = set()
    for e in [*(e for _, e in compiled.metrics), compiled.stop_when]:
        if e is not None:
            out |= e.reads_self | e.reads_all
    return frozenset(out)


def neighbor_read(compiled: CompiledScenario) -> frozenset[str]:
    """Attributes read through neighbor functions: what a halo carries."""
    out: set[str] = set()
    for rule in compiled.rules:
        for e in rule_exprs(rule):
            out |= e.reads_all
    return frozenset(out)


def segment_writes(compiled: CompiledScenario, segment: list[int], has_policy: bool = False) -> list[str]:
    """What a segment's rules write that another shard will read: its exchange."""
    names: set[str] = set()
    for i in segment:
        names |= rule_writes(compiled.rules[i])
    needed = remotely_read(compiled, has_policy)
    return sorted(names if needed is ALL else names & needed)


# --- how many shards, over which agents ------------------------------------------------------

def partition(n: int, k: int) -> list[tuple[int, int]]:
    """K contiguous id ranges of (nearly) equal size.

    Any partition gives the same result; ranges make a replicated exchange a slice copy, and
    they are also the graph-aware cut for our generators, which give neighbors nearby ids
    (lattices, rings, block models: a few percent of edges cross; see `simulator.sharding.partitioned`).
    """
    if not 1 <= k <= n:
        raise SocietasError(f"cannot split {n} agents into {k} shards", hint="use --shards between 1 and the agent count")
    cuts = [round(i * n / k) for i in range(k + 1)]
    return list(itertools.pairwise(cuts))


def agent_count(compiled: CompiledScenario, params: dict[str, float] | None, population: int | None) -> int:
    """The number of agents `Simulation` would create, without building anything."""
    return int(sum(type_counts(compiled, params, population)))


def shard_count(compiled: CompiledScenario, experiment: Any, shards: int | None, use_ray: bool) -> int:
    """How many shards each run of `experiment` gets: ``shards`` if given, else more than one only
    above `SHARD_THRESHOLD` agents (one per `SHARD_THRESHOLD`, at most the cluster's CPUs)."""
    if shards is not None:
        if shards < 1:
            raise SocietasError(f"--shards must be 1 or more, got {shards}", hint="e.g. --shards 2")
        if shards > 1 and not use_ray:
            raise SocietasError("--shards needs Ray: a sharded run is a set of Ray actors",
                                hint="drop --local, or use --shards 1")
        return shards
    n = max(agent_count(compiled, c.params, experiment.population) for c in experiment.conditions)
    if not use_ray or n <= SHARD_THRESHOLD:
        return 1
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 2
    return max(2, min(cpus, math.ceil(n / SHARD_THRESHOLD)))


# --- what each shard holds -------------------------------------------------------------------

LOCAL_RULES = ("update", "transition", "decide")


def partition_blocker(compiled: CompiledScenario, has_policy: bool = False) -> str | None:
    """Why this scenario needs every agent on every shard, or None when a halo is enough."""
    if has_policy:
        return "LLM agents may look at any agent"
    if compiled.spec.space.kind != "network":
        return f"space {compiled.spec.space.kind!r}: only a network bounds who reads whom"
    for rule in compiled.rules:
        if rule.kind not in LOCAL_RULES:
            return f"rule {rule.name!r} ({rule.kind}) pairs or places agents across the population"
        if any(e.uses_aggregates or e.reads_other for e in rule_exprs(rule)):
            return f"rule {rule.name!r} reads a population aggregate"
    for name, e in compiled.env:
        if e.uses_aggregates or e.uses_neighbors:
            return f"environment {name!r} reads the population"
    for t in compiled.types:
        if any(e.uses_aggregates or e.uses_neighbors for _, e in t.init):
            return f"agent type {t.name!r} starts from population values"
    for name, e in [*compiled.metrics, ("stop.when", compiled.stop_when)]:
        if e is not None and e.uses_neighbors:
            return f"{'metric ' + repr(name) if name != 'stop.when' else 'the stop condition'} needs the network"
    return None


# `auto` partitions when a shard would mirror at most this share of the other shards' agents (its
# halo). Above it the halo is most of the population anyway: each shard would hold nearly
# everyone, and gathering the halo rows costs more than sending whole slices (measured: on
# Erdős–Rényi, mean degree 10, two shards mirror 99 % and the partitioned step is slower).
PARTITION_HALO_BELOW = 0.5


def expected_halo_share(compiled: CompiledScenario, params: dict[str, float] | None, n: int, k: int) -> float:
    """About what share of the other shards' agents one of ``k`` partitioned shards would mirror,
    from the network's kind alone, before building it.

    Links to random agents ("far" links, mean ``d`` per agent) put a given agent of another shard
    in this shard's halo with probability about 1 - exp(-d / k); lattices, rings and the blocks of
    a block model link agents with nearby ids, which contiguous id ranges keep together.
    """
    space = compiled.spec.space
    pctx = ParamsContext({**compiled.spec.parameter_defaults(), **(params or {})})
    q = {f: scalar_value(compiled.space[f], pctx) for f in QUANTITY_FIELDS}
    far = {
        "erdos_renyi": lambda: q["mean_degree"],
        "barabasi_albert": lambda: 2 * q["m"],
        "watts_strogatz": lambda: q["rewire"] * q["k"],
        "stochastic_block": lambda: q["p_out"] * n,
        "lattice": lambda: 0.0,
    }.get(space.network, lambda: float(n))()
    return 1 - math.exp(-far / k)
