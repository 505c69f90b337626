"""Placeholders in LLM agents' persona and observation templates, checked when a spec compiles:
every `{name}` must name an attribute, a `let` of the rule, `{env.x}` or `{params.x}`.

Apart from `agent_prompts` (which fills the templates and needs the engine) so that `compile`
can check them without importing anything that imports `compile`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from simulator.errors import SpecError
from simulator.spec import ScenarioSpec

PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?)\}")


def placeholders(template: str) -> list[str]:
    """The `{name}` / `{env.x}` / `{params.x}` names in a persona or observation template."""
    return PLACEHOLDER.findall(template or "")


def check_templates(spec: ScenarioSpec, attributes: Iterable[str]) -> None:
    """Every placeholder of a persona or a decide rule's observation must name something that exists."""
    attributes = set(attributes)
    env = {"step", "n_agents", *spec.environment}
    env |= {iv.target.split(".", 1)[1] for iv in spec.interventions if iv.target.startswith("env.")}
    persona_ok = attributes | {f"env.{e}" for e in env} | {f"params.{p}" for p in spec.parameters}
    for t in spec.agent_types:
        _check_names(t.persona, persona_ok, spec.name, f"agent type {t.name!r}, persona")
    for r in spec.rules:
        if r.kind == "decide":
            _check_names(r.observation, persona_ok | set(r.let), spec.name, f"rule {r.name!r} (decide), observation")


def _check_names(template: str, known: set[str], scenario: str, where: str) -> None:
    for name in placeholders(template):
        if name not in known:
            raise SpecError(f"unknown placeholder {{{name}}}", scenario=scenario, where=where,
                            hint="use an attribute, a `let` name of the rule, {env.NAME} or {params.NAME}")
