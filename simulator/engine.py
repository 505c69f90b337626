"""The vectorized engine: one numpy array per attribute over all agents, rules as array ops.

Semantics, fixed here so that results are reproducible and comparable:
- A step: interventions due, then the environment, then each rule in order, then metrics.
- Within a rule every expression reads the state from before the rule (synchronous update).
- `interact` pairs are disjoint within a rule application, so a step's encounters equal a
  sequence of asynchronous pairwise encounters (order among disjoint pairs is irrelevant).
- Every random draw is a pure function of (seed, step, rule, slot, agent id), so splitting
  agents across processes cannot change a result.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from simulator.alloc import LARGE_POPULATION, keep_freed_memory
from simulator.compile import CompiledRule, CompiledScenario, QUANTITY_FIELDS
from simulator.errors import SpecError
from simulator.expr import CompiledExpr
from simulator.grid import GridSpace
from simulator.networks import build_network
from simulator.rng import Stream
from simulator.well_mixed import WellMixed

log = logging.getLogger(__name__)

# Random streams: rules use their 1-based index; these reserved ids keep other draws apart.
RULE_INIT = 0
RULE_ENV = 0xFFFD
RULE_METRICS = 0xFFFE
# Reserved slots inside a rule (expression call sites count up from 0).
SLOT_ACTIVATION = 0xFFF0
SLOT_TRANSITION = 0xFFF1
SLOT_DECIDE = 0xFFF2
SLOT_MOVE = 0xFFF3
SLOT_MOVE_CELLS = 0xFFF4
SLOT_MATCH = 0xFFF5

MAX_AGENTS = 50_000_000


class DecisionPolicy(Protocol):
    """Chooses actions for LLM-deciding agents (`simulator.llm_agents.LLMDecisions`).

    `decide` returns one action index per row (-1 for "use the fallback"), or None to use the
    fallback for every row; `local_values` are the rule's `let` values for those rows. `chosen`
    then sees every row's final action, fallback ones included (an agent's memory).
    """

    def decide(self, sim: "Simulation", rule: CompiledRule, rows: np.ndarray,
               local_values: dict[str, np.ndarray | float]) -> np.ndarray | None: ...

    def chosen(self, sim: "Simulation", rule: CompiledRule, rows: np.ndarray, choice: np.ndarray) -> None: ...


@dataclass
class RunResult:
    """One (condition, seed) run: metric values per recorded step, plus what it cost."""

    scenario: str
    seed: int
    params: dict[str, float]
    n_agents: int
    metric_names: list[str]
    steps: np.ndarray  # (T,) step numbers, 0 = initial state
    values: np.ndarray  # (T, M) metric values
    wall_seconds: float
    stopped_early: bool = False
    decisions: dict[str, int] = field(default_factory=dict)
    decision_log: dict[str, list] | None = None  # LLM decisions, one entry per agent (llm_agents.DecisionLog)
    shard_state: str | None = None  # a sharded run: what each shard held (`simulator.sharding.coordinator.ShardedRun`)

    def final(self) -> dict[str, float]:
        return dict(zip(self.metric_names, map(float, self.values[-1])))

    def long_rows(self) -> dict[str, np.ndarray]:
        """Long format columns: step, metric, value."""
        t, m = self.values.shape
        return {
            "step": np.repeat(self.steps, m),
            "metric": np.tile(np.array(self.metric_names, dtype=object), t),
            "value": self.values.reshape(-1),
        }


class RowsContext:
    """An evaluation context (see `simulator.expr.EvalContext`): the rows one expression sees."""

    __slots__ = ("sim", "rows", "span", "partner", "rule_id", "locals", "size", "_pop")

    def __init__(self, sim: "Simulation", rows: np.ndarray | None, partner: np.ndarray | None = None,
                 rule_id: int = RULE_METRICS) -> None:
        self.sim = sim
        self.rows = rows
        self.span = sim.span_of(rows)  # the rows as a slice when they are a known run of ids
        self.partner = partner
        self.rule_id = rule_id
        self.locals: dict[str, np.ndarray | float] = {}
        self.size = sim.n if rows is None else len(rows)
        self._pop: RowsContext | None = None

    def attr(self, name: str) -> np.ndarray:
        arr = self.sim.attrs[name]
        if self.rows is None:
            return arr
        return arr[self.span] if self.span is not None else arr[self.rows]

    def other(self, name: str) -> np.ndarray:
        return self.sim.attrs[name][self.partner]

    def param(self, name: str) -> float:
        return self.sim.params[name]

    def env(self, name: str) -> float:
        return self.sim.env[name]

    def local(self, name: str) -> np.ndarray | float:
        return self.locals[name]

    def population(self) -> "RowsContext":
        if self.rows is None:
            return self
        if self._pop is None:
            self._pop = RowsContext(self.sim, None, None, self.rule_id)
        return self._pop

    def ids(self) -> np.ndarray:
        return self.sim.all_ids if self.rows is None else self.sim.ids_of(self.rows)

    def draw(self, slot: int, k: int = 1) -> np.ndarray:
        return self.sim.stream(self.rule_id, slot).uniform(self.ids(), k)

    def neighbor_reduce(self, values_all: np.ndarray, op: str, slot: int | None = None) -> np.ndarray:
        u = self.draw(slot if slot is not None else SLOT_MATCH - 1) if op == "random" else None
        # Rows covering everyone in order are "all", and a run of ids is a slice: the same values
        # without the row gathers.
        rows = None if self.rows is self.sim.all_ids else self.span if self.span is not None else self.rows
        return self.sim.space.neighbor_reduce(np.asarray(values_all), op, rows, u)

    def memo(self, key, compute: Callable[[], object]):
        """``compute()``, or its value from earlier in the same state for the same rows.

        For deterministic neighbor functions and aggregates (see `Simulation.memo`); ``key`` must
        identify the computation completely apart from the state and the rows.
        """
        return self.sim.memo(key, self.rows, compute)

    def regions(self, keys_all: np.ndarray) -> float:
        return float(self.sim.space.largest_region(keys_all))


class ParamsContext:
    """The context for quantities fixed at set-up: only `params.*` is visible."""

    size = 1

    def __init__(self, params: dict[str, float]) -> None:
        self.params = params

    def param(self, name: str) -> float:
        return self.params[name]

    def env(self, name: str) -> float:  # pragma: no cover - the compiler forbids env here
        raise KeyError(name)

    def population(self) -> ParamsContext:
        return self


def scalar_value(expr: CompiledExpr, ctx: RowsContext | ParamsContext) -> float:
    """A scalar expression's value as a float (the first value, where it came out per row)."""
    v = expr(ctx)
    return float(np.asarray(v).reshape(-1)[0]) if np.ndim(v) else float(v)


def estimate_bytes_per_agent(compiled: CompiledScenario, mean_degree: float) -> int:
    n_attr = len(compiled.attributes)
    space = compiled.spec.space
    if space.kind == "network":
        net = 14 * mean_degree + 16  # CSR int32 indices both ways, indptr, build temporaries (measured ~12k+4)
    elif space.kind == "grid":
        net = 8 / 0.5 + 16
    else:
        net = 0
    return int(8 * (n_attr + 4) + net + 96)  # attributes, ids, and per-rule temporaries


class Simulation:
    """One run of a compiled scenario at fixed parameters and seed."""

    def __init__(
        self,
        compiled: CompiledScenario,
        params: dict[str, float] | None = None,
        seed: int = 0,
        *,
        population: int | None = None,
        max_steps: int | None = None,
        policy: DecisionPolicy | None = None,
    ) -> None:
        pctx = self._begin_run(compiled, params, seed, max_steps, policy, population)
        self.n = int(sum(self.type_counts))
        if self.n < 1:
            raise SpecError("the population is empty", scenario=self.spec.name, hint="give --agents 1 or more")
        self._check_memory(pctx)
        if self.n >= LARGE_POPULATION:
            keep_freed_memory()  # before the first large array: see `simulator.alloc`
        self.env["n_agents"] = float(self.n)
        self._lay_out(np.arange(self.n, dtype=np.int64))
        self.space = self._build_space(pctx)
        self.attrs: dict[str, np.ndarray] = {}
        self._init_attributes()
        self._rule_rows = [self._rows_of(r.types) for r in compiled.rules]
        self._partner_mask = [self._mask_of(r.partner_types) for r in compiled.rules]

    # --- set-up -------------------------------------------------------------------------
    def _begin_run(self, compiled: CompiledScenario, params: dict[str, float] | None, seed: int,
                   max_steps: int | None, policy: DecisionPolicy | None, population: int | None) -> ParamsContext:
        """Everything but the agents and the space (shared with the shards' own constructors);
        sets the type counts and returns the parameters' context."""
        self.c = compiled
        self.spec = compiled.spec
        self.seed = int(seed)
        self.params: dict[str, float] = {**self.spec.parameter_defaults(), **(params or {})}
        self.policy = policy
        self.max_steps = int(max_steps or self.spec.stop.max_steps)
        self.step_no = 0
        self.env: dict[str, float] = {"step": 0.0, "n_agents": 0.0}
        self.env_overrides: dict[str, float] = {}
        self.decisions = {"fallback": 0, "llm": 0}
        self.writer = "the engine"  # who writes attributes now, for the non-finite check's message
        # State version: incremented by every write to the agents' attributes or positions
        # (`touch`); memoized neighbor reductions and aggregates are valid for one version.
        self.version = 0
        self._memo: dict = {}
        self._spans: dict[int, tuple[np.ndarray, slice]] = {}
        pctx = ParamsContext(self.params)
        n_total = population if population is not None else scalar_value(compiled.population, pctx)
        self.type_counts = self._type_counts(int(round(n_total)), pctx)
        return pctx

    def _lay_out(self, ids: np.ndarray) -> None:
        """The rows this object holds: agent ids, ascending (all of them in one process). Types
        are ranges of ids, so they are ranges of rows too."""
        self.all_ids = ids
        self.n = int(ids.size)
        cuts = np.searchsorted(ids, np.cumsum([0, *self.type_counts]))
        self.type_slices = [slice(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]
        self.type_code = np.repeat(np.arange(len(self.type_counts), dtype=np.int64), np.diff(cuts))

    def _type_counts(self, n_total: int, pctx: ParamsContext) -> list[int]:
        types = self.c.types
        fixed = [int(round(scalar_value(t.count, pctx))) if t.count is not None else None for t in types]
        if len(types) == 1 and fixed[0] is None:
            return [n_total]
        if any(f is not None and f < 0 for f in fixed):
            raise SpecError("an agent type has a negative count", scenario=self.spec.name, hint="check `count`")
        rest = n_total - sum(f for f in fixed if f is not None)
        shares = [t.share or 0.0 for t in types]
        total_share = sum(s for s, f in zip(shares, fixed) if f is None)
        if total_share <= 0:
            return [f or 0 for f in fixed]
        rest = max(rest, 0)
        raw = [rest * s / total_share if f is None else 0.0 for s, f in zip(shares, fixed)]
        counts = [int(math.floor(x)) for x in raw]
        # Largest remainder, so shares add up to the population exactly.
        for i in sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)[: rest - sum(counts)]:
            counts[i] += 1
        return [f if f is not None else c for f, c in zip(fixed, counts)]

    def _check_memory(self, pctx: ParamsContext, cap: bool = True) -> None:
        """Refuse, before allocating, a population beyond `MAX_AGENTS` (unless ``cap`` is off: the
        builder of a partitioned run holds only the network) or beyond the free memory."""
        if cap and self.n > MAX_AGENTS:
            raise SpecError(f"{self.n:,} agents is more than the engine supports in one process ({MAX_AGENTS:,})",
                            scenario=self.spec.name,
                            hint="use fewer agents; only a network scenario whose rules read just neighbors "
                                 "can go further, sharded with --shard-state partitioned")
        import psutil

        degree = scalar_value(self.c.space["mean_degree"], pctx) if self.spec.space.network == "erdos_renyi" else 12
        need = self.n * estimate_bytes_per_agent(self.c, degree)
        avail = psutil.virtual_memory().available
        if need > 0.8 * avail:
            raise SpecError(
                f"{self.n:,} agents need about {need / 2**30:.1f} GiB but only {avail / 2**30:.1f} GiB is free",
                scenario=self.spec.name, hint="use fewer agents (--agents)")

    def _build_space(self, pctx: ParamsContext):
        s = self.spec.space
        q = {f: scalar_value(self.c.space[f], pctx) for f in QUANTITY_FIELDS}
        if s.kind == "none":
            return WellMixed(self.n)
        if s.kind == "grid":
            density = q["density"]
            if not 0 < density <= 1:
                raise SpecError(f"grid density {density:g} must be in (0, 1]", scenario=self.spec.name,
                                where="space.density", hint="e.g. density: 0.8")
            side = max(3, int(math.ceil(math.sqrt(self.n / density))))
            return GridSpace(side, side, self.n, torus=s.torus, neighborhood=s.neighborhood,
                             seed=self._space_seed())
        params = {
            "complete": {},
            "erdos_renyi": {"mean_degree": q["mean_degree"]},
            "watts_strogatz": {"mean_degree": 2 * max(1, int(round(q["k"] / 2))), "p": q["rewire"]},
            "barabasi_albert": {"m": int(round(q["m"]))},
            "stochastic_block": {"blocks": s.blocks, "p_in": q["p_in"], "p_out": q["p_out"]},
            "lattice": {"neighborhood": s.neighborhood, "periodic": s.torus, **_lattice_dims(self.n)},
        }[s.network]
        return build_network(s.network, self.n, params, self._space_seed())

    def _space_seed(self) -> int:
        return (self.seed * 0x9E3779B1 + 0x5EED) % (2**63)

    def _rows_of(self, types: tuple[int, ...] | None) -> np.ndarray:
        if types is None:
            return self.all_ids
        return np.concatenate([self.all_ids[self.type_slices[t]] for t in types]) if types else self.all_ids[:0]

    def _mask_of(self, types: tuple[int, ...] | None) -> np.ndarray | None:
        if types is None:
            return None
        mask = np.zeros(self.n, dtype=bool)
        for t in types:
            mask[self.type_slices[t]] = True
        return mask

    def _init_attributes(self) -> None:
        """Built-ins, then each type's `init` on its rows (draws keyed by agent id, through
        `ids_of`, so a shard holding some of the agents gives them the same values)."""
        type_start = np.cumsum([0, *self.type_counts])[:-1]
        self.attrs["id"] = self.all_ids
        self.attrs["index"] = self.all_ids - type_start[self.type_code]  # the agent's number within its type
        self.attrs["type"] = self.type_code
        for name, cats in self.c.attributes.items():
            if name not in self.attrs:
                self.attrs[name] = (np.full(self.n, -1, dtype=np.int64) if cats
                                    else np.full(self.n, np.nan, dtype=np.float64))
        for t, sl in zip(self.c.types, self.type_slices):
            rows = np.arange(sl.start, sl.stop)  # positions (here also the ids)
            if len(rows) == 0:
                continue
            ctx = RowsContext(self, rows, None, RULE_INIT)
            self.writer = f"the init of agent type {t.name!r}"
            for name, expr in t.init:
                self._assign(name, rows, expr(ctx))

    def stream(self, rule_id: int, slot: int) -> Stream:
        return Stream(self.seed, self.step_no, rule_id, slot)

    def _assign(self, name: str, rows: np.ndarray | None, values) -> None:
        self._check_finite(name, rows, values)
        arr = self.attrs[name]
        span = self.span_of(rows)
        if rows is None:
            arr[:] = values
        elif span is not None:
            arr[span] = values
        else:
            arr[rows] = values
        self.touch()

    def _check_finite(self, name: str, rows: np.ndarray | None, values) -> None:
        """Refuse NaN or infinity written into an attribute: it would spread silently (NaN compares
        false, so shares and thresholds change without a trace). One `isfinite` pass over each float
        result: integer and categorical values cannot hold either."""
        if isinstance(values, np.ndarray):
            if values.dtype.kind != "f" or np.isfinite(values).all():
                return
        elif not isinstance(values, float) or math.isfinite(values):
            return
        targets = self.n if rows is None else len(rows)
        bad = targets if np.size(values) == 1 else int(np.count_nonzero(~np.isfinite(values)))
        raise SpecError(
            f"{self.writer} wrote NaN or infinity into {name!r} at step {self.step_no}, for {bad:,} of "
            f"{self.n:,} agents", scenario=self.spec.name,
            hint="guard the expression: a division by a value that can be 0, a power or exp that overflows, "
                 "an aggregate over no agents (use if(...) or clip)")

    def register_span(self, rows: np.ndarray) -> None:
        """Declare ``rows`` (kept alive by the caller) a run of consecutive ids, so that reads and
        writes of those rows are slices, not gathers (a shard's own rows, `simulator.sharding.replicated`)."""
        if rows.size and int(rows[-1]) - int(rows[0]) + 1 == rows.size and bool(np.all(np.diff(rows) == 1)):
            self._spans[id(rows)] = (rows, slice(int(rows[0]), int(rows[-1]) + 1))

    def ids_of(self, rows: np.ndarray) -> np.ndarray:
        """The agent ids of rows: the rows themselves here; a shard holding only some agents
        (`simulator.sharding.partitioned`) maps its local rows to ids, which key every draw."""
        return rows

    def span_of(self, rows: np.ndarray | None) -> slice | None:
        """``rows`` as a slice if they were registered with `register_span`, else None."""
        hit = self._spans.get(id(rows)) if rows is not None else None
        return hit[1] if hit is not None and hit[0] is rows else None

    # --- memo of deterministic neighbor reductions and aggregates ----------------------------
    def touch(self) -> None:
        """Mark the state as changed: every write to ``attrs`` or the space must call this.

        The engine does for each of its writes (assignments, transitions, moves, decision
        records, pairwise effects); code that writes ``sim.attrs`` or moves agents directly
        must call it too, or memoized values go stale.
        """
        self.version += 1
        if self._memo:
            self._memo.clear()

    def memo(self, key, rows: np.ndarray | None, compute: Callable[[], object]):
        """``compute()`` for (key, state version, rows), computed once per state.

        ``rows`` is compared by identity (None and ``all_ids`` are both "everyone"); the cache
        keeps a reference to it, so an id is never reused while its entry lives. Array values
        are made read-only: they are shared by every caller in the same state. Only pure
        functions of the state, the parameters and the environment may be memoized (no draws).
        """
        everyone = rows is None or rows is self.all_ids
        k = (key, self.version, None if everyone else id(rows))
        hit = self._memo.get(k)
        if hit is not None and (everyone or hit[0] is rows):
            return hit[1]
        value = compute()
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
        self._memo[k] = (None if everyone else rows, value)
        return value

    # --- one step ------------------------------------------------------------------------
    def step(self) -> None:
        self.begin_step()
        for rule, rows in zip(self.c.rules, self._rule_rows):
            self._apply_rule(rule, rows)

    def begin_step(self) -> None:
        """What a step does before its rules (a shard, `simulator.sharding`, then runs its rules itself)."""
        self.step_no += 1
        self._apply_interventions()
        self._compute_env()

    def _apply_interventions(self) -> None:
        pctx = ParamsContext(self.params)
        for step, scope, name, value in self.c.interventions:
            if step == self.step_no:
                v = scalar_value(value, pctx)
                if scope == "params":
                    self.params[name] = v
                else:
                    self.env_overrides[name] = v

    def _compute_env(self) -> None:
        self.env["step"] = float(self.step_no)
        ctx = RowsContext(self, None, None, RULE_ENV)
        for name, expr in self.c.env:
            self.env[name] = self.env_overrides.get(name, scalar_value(expr, ctx))
        for name, v in self.env_overrides.items():
            self.env[name] = v

    def _select(self, rule: CompiledRule, rows: np.ndarray) -> np.ndarray:
        """The rule's acting agents: eligible types, `when` holds, activation drawn."""
        rid = rule.index + 1
        if rule.when is not None and len(rows):
            ctx = RowsContext(self, rows, None, rid)
            rows = rows[np.broadcast_to(np.asarray(rule.when(ctx), dtype=bool), rows.shape)]
        if rule.activation is not None and len(rows):
            ctx = RowsContext(self, rows, None, rid)
            p = rule.activation(ctx)
            u = self.stream(rid, SLOT_ACTIVATION).uniform(self.ids_of(rows))
            rows = rows[u < p]
        return rows

    def _locals(self, rule: CompiledRule, ctx: RowsContext) -> None:
        for name, expr in rule.let:
            ctx.locals[name] = expr(ctx)

    def _apply_rule(self, rule: CompiledRule, eligible: np.ndarray) -> None:
        rid = rule.index + 1
        self.writer = f"rule {rule.name!r}"
        if rule.kind == "interact":
            self._interact(rule, eligible)
            return
        rows = eligible
        if rule.kind == "transition":
            rows = rows[np.isin(self.attrs[rule.attribute][rows], rule.from_codes)]
        rows = self._select(rule, rows)
        if len(rows) == 0:
            return
        # A rule that reaches every agent evaluates on whole arrays: no gathers, no CSR row copies.
        target = None if rows is self.all_ids else rows
        ctx = RowsContext(self, target, None, rid)
        self._locals(rule, ctx)
        if rule.kind == "update":
            new = {a: e(ctx) for a, e in rule.effects.items()}
            for a, v in new.items():
                self._assign(a, target, v)
        elif rule.kind == "transition":
            p = rule.probability(ctx)
            u = self.stream(rid, SLOT_TRANSITION).uniform(self.ids_of(rows))
            self.attrs[rule.attribute][rows[u < p]] = rule.to_code
            self.touch()
        elif rule.kind == "move":
            # Priorities only for the cells that can be taken: the same values, far fewer draws.
            empty = np.flatnonzero(self.space.occupant < 0)
            cell_prio = np.zeros(self.space.n_cells)
            cell_prio[empty] = self.stream(rid, SLOT_MOVE_CELLS).uniform(empty)
            prio = self.stream(rid, SLOT_MOVE).uniform(self.ids_of(rows))
            self.space.move_to_empty(rows, prio, cell_prio)
            self.touch()
        elif rule.kind == "decide":
            self._decide(rule, rows, ctx)

    def _interact(self, rule: CompiledRule, eligible: np.ndarray) -> None:
        rid = rule.index + 1
        initiators = self._select(rule, eligible)
        if len(initiators) == 0:
            return
        init_mask = np.zeros(self.n, dtype=bool)
        init_mask[initiators] = True
        partner_mask = self._partner_mask[rule.index]
        cand = init_mask | (partner_mask if partner_mask is not None else True)
        coin, pick, prio = self.stream(rid, SLOT_MATCH).uniform(self.all_ids, 3)
        if rule.partner == "neighbor":
            a, b = self.space.match_neighbors(cand, coin, pick, prio)
        else:
            a, b = _random_matching(cand, prio)
        keep = init_mask[a] & (partner_mask[b] if partner_mask is not None else True)
        a, b = a[keep], b[keep]
        if len(a) == 0:
            return
        self._pair_effects(rule, a, b)

    def _pair_effects(self, rule: CompiledRule, a: np.ndarray, b: np.ndarray) -> None:
        """Apply an interact rule's effects to disjoint pairs (a[i], b[i]), all from the old state.

        Separate from the matching so that a shard (`simulator.sharding.replicated`) can apply only its side.
        """
        rid = rule.index + 1
        ctx = RowsContext(self, a, b, rid)
        self._locals(rule, ctx)
        new_self = {x: e(ctx) for x, e in rule.effects.items()}
        new_other = {x: e(ctx) for x, e in rule.other_effects.items()}
        for x, v in new_self.items():
            self._assign(x, a, v)
        for x, v in new_other.items():
            self._assign(x, b, v)

    def _decide(self, rule: CompiledRule, rows: np.ndarray, ctx: RowsContext) -> None:
        rid = rule.index + 1
        k = len(rule.actions)
        choice = np.full(len(rows), -1, dtype=np.int64)
        if self.policy is not None:
            chosen = self.policy.decide(self, rule, rows, ctx.locals)
            if chosen is not None:
                choice = np.asarray(chosen, dtype=np.int64)
                self.decisions["llm"] += int((choice >= 0).sum())
        todo = choice < 0
        if todo.any():
            w = np.zeros((k, len(rows)))
            for j, e in enumerate(rule.weights):
                if e is not None:
                    w[j] = np.clip(np.nan_to_num(np.broadcast_to(e(ctx), (len(rows),)), nan=0.0), 0, None)
            cum = np.cumsum(w, axis=0)
            total = cum[-1]
            u = self.stream(rid, SLOT_DECIDE).uniform(self.ids_of(rows)) * total
            picked = np.where(total > 0, (cum <= u[None, :]).sum(axis=0), -1)
            picked = np.minimum(picked, k - 1)
            choice = np.where(todo, picked, choice)
            self.decisions["fallback"] += int(todo.sum())
        if self.policy is not None:
            self.policy.chosen(self, rule, rows, choice)
        writes = []
        for j, effects in enumerate(rule.action_effects):
            sel = choice == j
            if not sel.any() or not effects:
                continue
            sub = RowsContext(self, rows[sel], None, rid)
            sub.locals = {n: (v[sel] if np.ndim(v) else v) for n, v in ctx.locals.items()}
            writes += [(a, rows[sel], e(sub)) for a, e in effects.items()]
        for a, r, v in writes:
            self._assign(a, r, v)
        if rule.record:
            codes = np.asarray(rule.record_codes, dtype=np.int64)
            ok = choice >= 0
            self.attrs[rule.record][rows[ok]] = codes[choice[ok]]
            self.touch()

    # --- observation -------------------------------------------------------------------
    def measure(self) -> np.ndarray:
        """Every metric now. An infinite one is an error; NaN is a metric's "undefined" (an aggregate
        over no agents), kept and counted by the summaries."""
        ctx = RowsContext(self, None, None, RULE_METRICS)
        values = np.array([scalar_value(e, ctx) for _, e in self.c.metrics], dtype=np.float64)
        if np.isinf(values).any():
            name = self.c.metric_names[int(np.flatnonzero(np.isinf(values))[0])]
            raise SpecError(f"metric {name!r} is infinite at step {self.step_no}", scenario=self.spec.name,
                            hint="guard the metric's expression: a division by a value that can be 0, or an overflow")
        return values

    def should_stop(self) -> bool:
        if self.c.stop_when is None:
            return False
        return bool(scalar_value(self.c.stop_when, RowsContext(self, None, None, RULE_METRICS)))

    def run(self, on_step: Callable[[int, int], None] | None = None) -> RunResult:
        """Run to `max_steps` (or the stop condition), recording every metric every step."""
        t0 = time.perf_counter()
        with np.errstate(all="ignore"):
            values = [self.measure()]
            stopped = False
            for _ in range(self.max_steps):
                self.step()
                values.append(self.measure())
                if on_step is not None:
                    on_step(self.step_no, self.max_steps)
                if self.should_stop():
                    stopped = self.step_no < self.max_steps
                    break
        return RunResult(
            scenario=self.spec.name,
            seed=self.seed,
            params=dict(self.params),
            n_agents=self.n,
            metric_names=self.c.metric_names,
            steps=np.arange(len(values)),
            values=np.vstack(values),
            wall_seconds=time.perf_counter() - t0,
            stopped_early=stopped,
            decisions=dict(self.decisions),
        )


def type_counts(compiled: CompiledScenario, params: dict[str, float] | None, population: int | None) -> list[int]:
    """How many agents of each type a run would create, without building anything."""
    shell = Simulation.__new__(Simulation)
    shell._begin_run(compiled, params, 0, None, None, population)
    return shell.type_counts


def _lattice_dims(n: int) -> dict[str, int]:
    """The most square width x height with width * height == n (a prime n gives a 1 x n strip)."""
    width = math.isqrt(n)
    while n % width:
        width -= 1
    return {"width": width, "height": n // width}


def _random_matching(cand: np.ndarray, prio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint random pairs among candidates: order by a per-agent random key, pair halves."""
    ids = np.flatnonzero(cand)
    order = ids[np.argsort(prio[ids], kind="stable")]
    h = len(order) // 2
    return order[:h], order[h : 2 * h]
