"""A test double of an LLM server that answers any request validly, for pipeline tests.

Structured requests (with a JSON schema in `response_format`) get the smallest instance that
satisfies the schema, optionally steered by `choose` (property name -> preferred value).
Plain-text requests get prose that misbehaves the way small models do: it writes numbers that
are not facts, cites a fact that does not exist, and adds a heading.
"""

from __future__ import annotations

import json
from typing import Any

from tests.doubles.scripted_openai_server import ScriptedOpenAIServer, Step, reply

HOSTILE_PROSE = (
    "## Heading the model should not write\n"
    "The simulation shows a clear effect {{F1}} and an invented value of 42.5 percent in 2019, "
    "while {{F999}} does not exist. [Figure fig99] is referenced but missing. Overall the result was 17 times larger."
)


def instance(schema: dict[str, Any], root: dict[str, Any] | None = None, choose: dict[str, Any] | None = None,
             name: str | None = None) -> Any:
    """A minimal valid instance of a JSON schema (the subset pydantic emits)."""
    root = root or schema
    choose = choose or {}
    if "$ref" in schema:
        ref = schema["$ref"].split("/")[-1]
        return instance(root.get("$defs", {}).get(ref, {}), root, choose, name)
    if name in choose:
        return choose[name]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return instance(options[0], root, choose, name)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema and schema.get("type") not in ("object", "array"):
        return schema["default"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: instance(props[k], root, choose, k) for k in props}  # optional ones too: exercise them
    if kind == "array":
        item = schema.get("items", {"type": "string"})
        if "prefixItems" in schema:
            return [instance(s, root, choose) for s in schema["prefixItems"]]
        return [instance(item, root, choose) for _ in range(max(1, schema.get("minItems", 1)))]
    if kind == "string":
        text = "A hypothesis about the topic" if name in ("statement", "summary") else "the studied variable"
        if "pattern" in schema and schema["pattern"].startswith("^H"):
            return "H1"
        if "pattern" in schema:
            return "x"  # fits the identifier patterns the specs use
        return text[: schema.get("maxLength", 400)].ljust(schema.get("minLength", 0), "x")
    if kind == "integer":
        return int(schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1 if "exclusiveMinimum" in schema else 3))
    if kind == "number":
        return float(schema.get("minimum", 0.5))
    if kind == "boolean":
        return True
    return None


class SchemaAwareServer(ScriptedOpenAIServer):
    """Answers from the request's schema; scripted steps (if any) are used first."""

    def __init__(self, *args: Any, choose: dict[str, Any] | None = None, prose: str = HOSTILE_PROSE, **kw: Any):
        super().__init__(*args, **kw)
        self.choose = choose or {}
        self.prose = prose

    def _next_step(self, body: dict[str, Any]) -> Step:
        step = super()._next_step(body)
        if step is not self.default:
            return step
        fmt = body.get("response_format") or {}
        schema = fmt.get("schema") or (fmt.get("json_schema") or {}).get("schema")
        if schema:
            return reply(json.dumps(instance(schema, choose=self.choose)))
        return reply(self.prose)
