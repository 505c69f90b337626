"""The scenario spec: a declarative agent-based model, never code.

A spec is what a person writes in YAML and what an LLM fills in under the JSON Schema of
`ScenarioSpec`. Pydantic checks the shape; `simulator.compile.compile_scenario` checks the
meaning (every expression compiles, every name exists) and returns what the engine runs.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simulator.errors import SpecError

DOMAINS = (
    "economics",
    "sociology",
    "politics",
    "psychology",
    "organization",
    "demographics",
    "law",
    "communication",
)
Domain = Literal[
    "economics",
    "sociology",
    "politics",
    "psychology",
    "organization",
    "demographics",
    "law",
    "communication",
]

NAME_RE = r"^[a-z_][a-z0-9_]{0,39}$"
Name = Annotated[str, Field(pattern=NAME_RE)]
# An expression of the safe language (`simulator.expr`), or a plain number / boolean.
Expr = Union[float, int, bool, str]
# A quantity fixed when a run starts: a number or a scalar expression of `params.*`.
Quantity = Union[float, int, str]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ODD(_Model):
    """The ODD protocol (Grimm et al.) as text: what the report's design section quotes."""

    purpose: str = Field(description="Purpose and patterns: the question the model answers.")
    entities: str = Field("", description="Entities, state variables and scales.")
    process: str = Field(
        "", description="Process overview and scheduling, including the update variant (synchronous, pairwise, ...)."
    )
    design_concepts: str = Field("", description="Basic principles, emergence, interaction, stochasticity, observation.")
    initialization: str = Field("", description="How agents and the space are initialised.")
    submodels: str = Field("", description="Each rule in words.")


class Parameter(_Model):
    default: float
    min: float | None = None
    max: float | None = None
    integer: bool = False
    description: str = ""
    sweep: list[float] | None = Field(
        None, description="Suggested values for an experiment: where the model's behaviour changes.")

    def range_text(self, sep: str = " to ") -> str:
        """The range as people read it; an open side shows as -inf or inf."""
        lo = "-inf" if self.min is None else f"{self.min:g}"
        hi = "inf" if self.max is None else f"{self.max:g}"
        return f"{lo}{sep}{hi}"

    @model_validator(mode="after")
    def _range(self) -> "Parameter":
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        if self.min is not None and self.default < self.min:
            raise ValueError(f"default {self.default} is below min {self.min}")
        if self.max is not None and self.default > self.max:
            raise ValueError(f"default {self.default} is above max {self.max}")
        for v in self.sweep or []:
            if (self.min is not None and v < self.min) or (self.max is not None and v > self.max):
                raise ValueError(f"sweep value {v} is outside [{self.min}, {self.max}]")
        return self


NetworkKind = Literal["complete", "erdos_renyi", "watts_strogatz", "barabasi_albert", "stochastic_block", "lattice"]


class SpaceSpec(_Model):
    """Where agents are: well mixed (`none`), on a network, or on a grid."""

    kind: Literal["none", "network", "grid"] = "none"
    network: NetworkKind | None = None
    mean_degree: Quantity = Field(10, description="erdos_renyi: expected degree.")
    k: Quantity = Field(4, description="watts_strogatz: each node joins its k nearest ring neighbors (k even).")
    rewire: Quantity = Field(0.1, description="watts_strogatz: rewiring probability.")
    m: Quantity = Field(3, description="barabasi_albert: edges each new node brings.")
    blocks: int = Field(2, ge=1, le=64, description="stochastic_block: number of equal blocks.")
    p_in: Quantity = Field(0.01, description="stochastic_block: within-block edge probability.")
    p_out: Quantity = Field(0.001, description="stochastic_block: between-block edge probability.")
    neighborhood: Literal["moore", "von_neumann"] = "moore"
    torus: bool = True
    density: Quantity = Field(0.8, description="grid: share of cells occupied; the grid is sized to the population.")

    @model_validator(mode="after")
    def _network_named(self) -> "SpaceSpec":
        if self.kind == "network" and self.network is None:
            raise ValueError("a network space needs `network:` (one of " + ", ".join(NetworkKind.__args__) + ")")
        return self


class Attribute(_Model):
    """An agent attribute: numeric, or categorical with named categories."""

    init: Expr = Field(0, description="Initial value: a number, a label, or an expression (may draw randomly).")
    categories: list[str] | None = Field(None, description="Labels of a categorical attribute, e.g. [S, I, R].")
    description: str = ""

    @field_validator("categories")
    @classmethod
    def _labels(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if not v:
                raise ValueError("categories must not be empty")
            if len(set(v)) != len(v):
                raise ValueError("categories must be distinct")
        return v


class AgentType(_Model):
    name: Name
    count: Quantity | None = Field(None, description="A fixed number of agents (or a scalar expression of params).")
    share: float | None = Field(None, gt=0, description="Share of the population, when count is not given.")
    attributes: dict[Name, Attribute | Expr] = Field(default_factory=dict)
    decision: Literal["rule", "llm"] = Field("rule", description="How this type makes `decide` choices.")
    persona: str = Field("", description="Persona template for LLM decisions; {attribute} placeholders allowed.")
    description: str = ""

    def attribute_specs(self) -> dict[str, Attribute]:
        return {k: v if isinstance(v, Attribute) else Attribute(init=v) for k, v in self.attributes.items()}


class _RuleBase(_Model):
    name: Name
    agents: list[str] | None = Field(None, description="Agent types the rule applies to (default: all).")
    activation: Expr = Field(1.0, description="Probability that an eligible agent acts this step.")
    when: Expr | None = Field(None, description="Condition an agent must meet to act.")
    description: str = ""


class UpdateRule(_RuleBase):
    """Set attributes from expressions, synchronously: all read the state before the rule."""

    kind: Literal["update"]
    let: dict[Name, Expr] = Field(default_factory=dict, description="Local variables, computed in order.")
    set: dict[Name, Expr]


class TransitionRule(_RuleBase):
    """A categorical state change with a probability (e.g. S -> I)."""

    kind: Literal["transition"]
    attribute: Name
    from_: str | list[str] = Field(alias="from")
    to: str
    probability: Expr
    let: dict[Name, Expr] = Field(default_factory=dict)


class InteractRule(_RuleBase):
    """Pairwise interaction: disjoint pairs each step, so it equals a sequence of asynchronous encounters."""

    kind: Literal["interact"]
    partner: Literal["neighbor", "random"] = "neighbor"
    partner_agents: list[str] | None = None
    let: dict[Name, Expr] = Field(default_factory=dict)
    self_: dict[Name, Expr] = Field(default_factory=dict, alias="self")
    other: dict[Name, Expr] = Field(default_factory=dict)


class MoveRule(_RuleBase):
    """Active agents move to a random empty cell (grid spaces)."""

    kind: Literal["move"]


class Action(_Model):
    description: str = ""
    effects: dict[Name, Expr] = Field(default_factory=dict)


class DecideRule(_RuleBase):
    """Choose one of named actions: an LLM chooses for LLM agents, `fallback` weights for rule agents."""

    kind: Literal["decide"]
    actions: dict[Name, Action]
    fallback: dict[Name, Expr] = Field(description="Weight (unnormalised) of each action for rule-based agents.")
    record: Name | None = Field(None, description="Categorical attribute that stores the chosen action.")
    observation: str = Field(
        "", description="What an LLM agent is told it sees; {attribute}, {let_name}, {env.x} and {params.x} "
        "placeholders. Empty: its own attributes, the `let` values and the environment, listed.")
    let: dict[Name, Expr] = Field(default_factory=dict)
    bucket: float = Field(
        0.1, ge=0, description="LLM prompts show numbers rounded to multiples of this, so agents alike share one "
        "prompt (archetypes, answered once); 0 shows them unrounded.")
    buckets: dict[str, float] = Field(
        default_factory=dict, description="Rounding per placeholder name (e.g. {payoff: 0.5, env.attendance: 0.05}).")
    memory: int = Field(2, ge=0, le=10, description="How many of its own last choices an LLM agent is reminded of.")

    @model_validator(mode="after")
    def _fallback_actions(self) -> "DecideRule":
        unknown = set(self.fallback) - set(self.actions)
        if unknown:
            raise ValueError(f"fallback names unknown actions: {sorted(unknown)}")
        if not self.actions:
            raise ValueError("a decide rule needs at least one action")
        negative = sorted(k for k, v in self.buckets.items() if v < 0)
        if negative:
            raise ValueError(f"buckets must be 0 or more: {negative}")
        return self


Rule = Annotated[Union[UpdateRule, TransitionRule, InteractRule, MoveRule, DecideRule], Field(discriminator="kind")]


class Intervention(_Model):
    """A policy or shock: from `step` on, a parameter or environment value is set."""

    step: int = Field(ge=0)
    target: str = Field(pattern=r"^(params|env)\.[a-z_][a-z0-9_]*$", description="params.NAME or env.NAME")
    value: Expr
    description: str = ""


class StopSpec(_Model):
    max_steps: int = Field(100, ge=1, le=1_000_000)
    when: Expr | None = Field(None, description="A scalar condition; the run stops once it holds.")


class ScenarioSpec(_Model):
    name: Name
    title: str
    domain: Domain
    description: str
    odd: ODD
    references: list[str] = Field(default_factory=list, description="Theories and papers the model follows.")
    vocabulary: list[str] = Field(default_factory=list, description=(
        "Words and phrases a social scientist would use for this scenario: aliases, phenomena, outcomes, "
        "actors. Retrieval matches research topics against them."))
    parameters: dict[Name, Parameter] = Field(default_factory=dict)
    population: Quantity = Field(1000, description="Total number of agents (types with `share` divide it).")
    space: SpaceSpec = Field(default_factory=SpaceSpec)
    agent_types: list[AgentType] = Field(min_length=1)
    environment: dict[Name, Expr] = Field(default_factory=dict, description="Global values computed every step.")
    rules: list[Rule] = Field(min_length=1)
    interventions: list[Intervention] = Field(default_factory=list)
    metrics: dict[Name, Expr] = Field(min_length=1, description="Scalar aggregates recorded every step.")
    stop: StopSpec = Field(default_factory=StopSpec)

    @model_validator(mode="after")
    def _unique_names(self) -> "ScenarioSpec":
        for what, names in (
            ("agent type", [t.name for t in self.agent_types]),
            ("rule", [r.name for r in self.rules]),
        ):
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"duplicate {what} names: {sorted(dup)}")
        return self

    # --- YAML in and out -------------------------------------------------------------
    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        data = {"name": self.name, "title": self.title, "domain": self.domain, **data}
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)

    def parameter_defaults(self) -> dict[str, float]:
        return {k: p.default for k, p in self.parameters.items()}


def scenario_json_schema() -> dict[str, Any]:
    """The JSON Schema the pipeline gives an LLM that writes a spec (constrained decoding)."""
    return ScenarioSpec.model_json_schema(by_alias=True)


def _format_validation_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"field {loc}: {msg}{more}"


def parse_spec(data: Any, *, source: str = "spec") -> ScenarioSpec:
    """Validate a loaded mapping into a spec; errors become one-line `SpecError`s."""
    if not isinstance(data, dict):
        raise SpecError(f"{source} must be a mapping of fields, got {type(data).__name__}",
                        hint="see `societas scenarios show schelling` for an example")
    try:
        return ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        name = data.get("name") if isinstance(data.get("name"), str) else None
        raise SpecError(_format_validation_error(exc), scenario=name,
                        hint="fix the field; `societas scenarios show NAME --yaml` shows a valid spec") from None


def load_spec_text(text: str, *, source: str = "spec") -> ScenarioSpec:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise SpecError(f"{source} is not valid YAML{where}: {problem}",
                        hint="check indentation and quote expressions that contain ':' or '#'") from None
    return parse_spec(data, source=source)


def load_spec(path: str | Path) -> ScenarioSpec:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"no scenario file at {path}", hint="give the path of a .yaml spec")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read {path}: {exc}", hint="give a readable UTF-8 YAML file") from None
    return load_spec_text(text, source=str(path))


def dump_schema(path: str | Path) -> None:
    Path(path).write_text(json.dumps(scenario_json_schema(), indent=2))


_PARAM_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def parse_param_overrides(pairs: list[str], spec: ScenarioSpec) -> dict[str, float]:
    """`--param k=v` pairs into numbers, checked against the spec's parameters and ranges."""
    out: dict[str, float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not _PARAM_NAME.match(key):
            raise SpecError(f"bad --param {pair!r}", hint="write --param name=value, e.g. --param epsilon=0.2")
        try:
            out[key] = float(value)
        except ValueError:
            raise SpecError(f"--param {key}: {value!r} is not a number", hint="give a number, e.g. 0.3") from None
    check_params(out, spec)
    return out


def check_params(values: dict[str, float], spec: ScenarioSpec) -> None:
    """Known names, finite values inside their ranges (NaN compares false, so it would pass a range check)."""
    for key, value in values.items():
        if key not in spec.parameters:
            known = ", ".join(spec.parameters) or "(none)"
            raise SpecError(f"unknown parameter {key!r}", scenario=spec.name, hint=f"parameters are: {known}")
        if not math.isfinite(value):
            raise SpecError(f"parameter {key}={value} is not a finite number", scenario=spec.name,
                            hint="give a finite number (not nan or inf)")
        p = spec.parameters[key]
        if (p.min is not None and value < p.min) or (p.max is not None and value > p.max):
            raise SpecError(f"parameter {key}={value:g} is outside its range [{p.range_text(', ')}]",
                            scenario=spec.name, hint="choose a value inside the range")
