"""From a validated spec to what the engine runs: every expression compiled once.

This is the semantic check of a spec: each expression must parse, name only things that
exist, and have the right type for its place (a label for a categorical attribute, a
scalar for a metric). Errors name the scenario, the rule and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simulator.errors import SpecError
from simulator.expr import Categorical, CompiledExpr, Names, SlotAllocator, compile_expr
from simulator.prompt_templates import check_templates
from simulator.spec import (
    DecideRule,
    InteractRule,
    MoveRule,
    ScenarioSpec,
    TransitionRule,
    UpdateRule,
)

BUILTIN_ATTRIBUTES = ("id", "index", "type")
BUILTIN_ENV = ("step", "n_agents")
QUANTITY_FIELDS = ("mean_degree", "k", "rewire", "m", "p_in", "p_out", "density")


@dataclass
class CompiledRule:
    index: int
    name: str
    kind: str
    types: tuple[int, ...] | None  # agent type indices; None = all
    activation: CompiledExpr | None  # None means "always"
    when: CompiledExpr | None
    let: list[tuple[str, CompiledExpr]]
    effects: dict[str, CompiledExpr] = field(default_factory=dict)  # update: set; interact: self
    other_effects: dict[str, CompiledExpr] = field(default_factory=dict)
    # transition
    attribute: str | None = None
    from_codes: tuple[int, ...] = ()
    to_code: int = -1
    probability: CompiledExpr | None = None
    # interact
    partner: str = "neighbor"
    partner_types: tuple[int, ...] | None = None
    # decide
    actions: list[str] = field(default_factory=list)
    action_effects: list[dict[str, CompiledExpr]] = field(default_factory=list)
    weights: list[CompiledExpr | None] = field(default_factory=list)
    record: str | None = None
    record_codes: tuple[int, ...] = ()
    spec: Any = None


@dataclass
class CompiledType:
    name: str
    count: CompiledExpr | None
    share: float | None
    init: list[tuple[str, CompiledExpr]]
    decision: str


@dataclass
class CompiledScenario:
    spec: ScenarioSpec
    attributes: dict[str, tuple[str, ...] | None]  # name -> categories (None: numeric), builtins included
    types: list[CompiledType]
    population: CompiledExpr
    space: dict[str, CompiledExpr]
    env: list[tuple[str, CompiledExpr]]
    rules: list[CompiledRule]
    interventions: list[tuple[int, str, str, CompiledExpr]]  # (step, "params"|"env", name, value)
    metrics: list[tuple[str, CompiledExpr]]
    stop_when: CompiledExpr | None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def metric_names(self) -> list[str]:
        return [m for m, _ in self.metrics]


def _collect_attributes(spec: ScenarioSpec) -> dict[str, tuple[str, ...] | None]:
    attrs: dict[str, tuple[str, ...] | None] = {
        "id": None,
        "index": None,
        "type": tuple(t.name for t in spec.agent_types),
    }
    for t in spec.agent_types:
        for name, a in t.attribute_specs().items():
            if name in BUILTIN_ATTRIBUTES:
                raise SpecError(f"attribute name {name!r} is reserved", scenario=spec.name,
                                where=f"agent type {t.name!r}", hint="rename the attribute")
            cats = tuple(a.categories) if a.categories else None
            if name in attrs and attrs[name] != cats:
                raise SpecError(f"attribute {name!r} is declared with different categories in two agent types",
                                scenario=spec.name, where=f"agent type {t.name!r}",
                                hint="give the attribute the same categories everywhere")
            attrs[name] = cats
    return attrs


class _Compiler:
    def __init__(self, spec: ScenarioSpec) -> None:
        self.spec = spec
        self.attributes = _collect_attributes(spec)
        self.params = frozenset(spec.parameters)
        env_names = list(BUILTIN_ENV) + list(spec.environment)
        env_names += [iv.target.split(".", 1)[1] for iv in spec.interventions if iv.target.startswith("env.")]
        self.env = frozenset(env_names)
        self.type_index = {t.name: i for i, t in enumerate(spec.agent_types)}

    def compile(self, source: Any, where: str, *, expect: Any = "any", names: Names | None = None,
                slots: SlotAllocator | None = None) -> CompiledExpr:
        try:
            return compile_expr(source, names or self.row_names(), expect=expect, slots=slots, where=where)
        except SpecError as exc:
            raise exc.located(scenario=self.spec.name, where=where) from None

    def row_names(self, locals_: dict[str, CompiledExpr] | None = None, allow_other: bool = False) -> Names:
        return Names(attributes=self.attributes, params=self.params, env=self.env,
                     locals=dict(locals_ or {}), allow_other=allow_other)

    def params_only(self) -> Names:
        return Names(attributes={}, params=self.params, env=frozenset())

    def expect_for(self, attr: str, where: str) -> Any:
        if attr not in self.attributes:
            raise SpecError(f"unknown attribute {attr!r}", scenario=self.spec.name, where=where,
                            hint="declare it under an agent type's attributes")
        if attr in BUILTIN_ATTRIBUTES:
            raise SpecError(f"attribute {attr!r} is built in and cannot be set", scenario=self.spec.name,
                            where=where, hint="set an attribute of your own")
        cats = self.attributes[attr]
        return Categorical(cats) if cats else "number"

    def types_of(self, names: list[str] | None, where: str) -> tuple[int, ...] | None:
        if names is None:
            return None
        out = []
        for n in names:
            if n not in self.type_index:
                raise SpecError(f"unknown agent type {n!r}", scenario=self.spec.name, where=where,
                                hint="agent types are: " + ", ".join(self.type_index))
            out.append(self.type_index[n])
        return tuple(out)

    def codes(self, attr: str, labels: list[str], where: str) -> tuple[int, ...]:
        cats = self.attributes.get(attr)
        if not cats:
            raise SpecError(f"attribute {attr!r} is not categorical", scenario=self.spec.name, where=where,
                            hint="give it `categories:` or use an update rule")
        out = []
        for lab in labels:
            if lab not in cats:
                raise SpecError(f"{lab!r} is not a category of {attr!r}", scenario=self.spec.name, where=where,
                                hint="categories are: " + ", ".join(cats))
            out.append(cats.index(lab))
        return tuple(out)

    # --- parts -------------------------------------------------------------------------
    def agent_types(self) -> list[CompiledType]:
        out = []
        for t in self.spec.agent_types:
            where = f"agent type {t.name!r}"
            if t.count is None and t.share is None and len(self.spec.agent_types) > 1:
                raise SpecError("give either `count` or `share`", scenario=self.spec.name, where=where,
                                hint="e.g. share: 0.5")
            count = (self.compile(t.count, f"{where}, count", expect="scalar", names=self.params_only())
                     if t.count is not None else None)
            seen: dict[str, tuple[str, ...] | None] = {k: self.attributes[k] for k in BUILTIN_ATTRIBUTES}
            init = []
            slots = SlotAllocator()
            for name, a in t.attribute_specs().items():
                cats = tuple(a.categories) if a.categories else None
                names = Names(attributes=dict(seen), params=self.params, env=frozenset(BUILTIN_ENV))
                expect = Categorical(cats) if cats else "number"
                init.append((name, self.compile(a.init, f"{where}, attribute {name!r} init", expect=expect,
                                                names=names, slots=slots)))
                seen[name] = cats
            out.append(CompiledType(t.name, count, t.share if t.count is None else None, init, t.decision))
        return out

    def rule(self, i: int, r: Any) -> CompiledRule:
        where = f"rule {r.name!r} ({r.kind})"
        slots = SlotAllocator()
        allow_other = isinstance(r, InteractRule)
        locals_: dict[str, CompiledExpr] = {}
        let = []
        for name, src in getattr(r, "let", {}).items():
            if name in self.attributes:
                raise SpecError(f"local {name!r} shadows an attribute", scenario=self.spec.name, where=where,
                                hint="rename the local variable")
            c = self.compile(src, f"{where}, let {name!r}", names=self.row_names(locals_, allow_other), slots=slots)
            locals_[name] = c
            let.append((name, c))
        names = self.row_names(locals_, allow_other)

        def expr(src: Any, fld: str, expect: Any = "any") -> CompiledExpr:
            return self.compile(src, f"{where}, {fld}", expect=expect, names=names, slots=slots)

        activation = None
        if not (isinstance(r.activation, (int, float)) and not isinstance(r.activation, bool) and r.activation >= 1):
            activation = expr(r.activation, "activation", "number")
        when = expr(r.when, "when", "bool") if r.when is not None else None
        cr = CompiledRule(index=i, name=r.name, kind=r.kind, types=self.types_of(r.agents, where),
                          activation=activation, when=when, let=let, spec=r)

        if isinstance(r, UpdateRule):
            cr.effects = {a: expr(s, f"set {a!r}", self.expect_for(a, where)) for a, s in r.set.items()}
        elif isinstance(r, TransitionRule):
            labels = [r.from_] if isinstance(r.from_, str) else list(r.from_)
            cr.attribute = r.attribute
            cr.from_codes = self.codes(r.attribute, labels, where)
            cr.to_code = self.codes(r.attribute, [r.to], where)[0]
            cr.probability = expr(r.probability, "probability", "number")
        elif isinstance(r, InteractRule):
            if not r.self_ and not r.other:
                raise SpecError("an interact rule needs `self:` or `other:` effects", scenario=self.spec.name,
                                where=where, hint="say how the encounter changes the agents")
            cr.partner = r.partner
            cr.partner_types = self.types_of(r.partner_agents, where)
            cr.effects = {a: expr(s, f"self {a!r}", self.expect_for(a, where)) for a, s in r.self_.items()}
            cr.other_effects = {a: expr(s, f"other {a!r}", self.expect_for(a, where)) for a, s in r.other.items()}
        elif isinstance(r, MoveRule):
            if self.spec.space.kind != "grid":
                raise SpecError("a move rule needs a grid space", scenario=self.spec.name, where=where,
                                hint="set space.kind: grid, or remove the rule")
        elif isinstance(r, DecideRule):
            cr.actions = list(r.actions)
            cr.weights = [expr(r.fallback[a], f"fallback {a!r}", "number") if a in r.fallback else None
                          for a in cr.actions]
            cr.action_effects = [
                {t: expr(s, f"action {a!r} effect {t!r}", self.expect_for(t, where))
                 for t, s in r.actions[a].effects.items()}
                for a in cr.actions
            ]
            if r.record:
                cr.record = r.record
                cr.record_codes = self.codes(r.record, cr.actions, f"{where}, record")
        return cr

    def run(self) -> CompiledScenario:
        spec = self.spec
        types = self.agent_types()
        population = self.compile(spec.population, "population", expect="scalar", names=self.params_only())
        space = {f: self.compile(getattr(spec.space, f), f"space.{f}", expect="scalar", names=self.params_only())
                 for f in QUANTITY_FIELDS}
        pop_names = Names(attributes=self.attributes, params=self.params, env=self.env)
        env = []
        for name, src in spec.environment.items():
            env.append((name, self.compile(src, f"environment {name!r}", expect="scalar", names=pop_names)))
        rules = [self.rule(i, r) for i, r in enumerate(spec.rules)]
        interventions = []
        for k, iv in enumerate(spec.interventions):
            scope, name = iv.target.split(".", 1)
            where = f"intervention {k + 1} ({iv.target})"
            if scope == "params" and name not in self.params:
                raise SpecError(f"unknown parameter {name!r}", scenario=spec.name, where=where,
                                hint="declare it under parameters")
            value = self.compile(iv.value, f"{where}, value", expect="scalar", names=self.params_only())
            interventions.append((iv.step, scope, name, value))
        metrics = [(name, self.compile(src, f"metric {name!r}", expect="scalar", names=pop_names))
                   for name, src in spec.metrics.items()]
        stop_when = (self.compile(spec.stop.when, "stop.when", expect="scalar", names=pop_names)
                     if spec.stop.when is not None else None)
        return CompiledScenario(spec, self.attributes, types, population, space, env, rules, interventions,
                                metrics, stop_when)


def compile_scenario(spec: ScenarioSpec) -> CompiledScenario:
    """Compile every expression of a spec; raises `SpecError` naming the place of the first problem."""
    compiled = _Compiler(spec).run()
    check_templates(spec, compiled.attributes)  # persona and observation placeholders name things that exist
    return compiled
