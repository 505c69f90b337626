"""Structured output: the `response_format` each server dialect wants, validation, repair.

`Exchange` holds the conversation for one `complete()` call and decides, reply by reply,
whether the answer is valid or a repair turn is needed. It does no I/O, so the sync and
async clients share it and it is tested without a server.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

import prompts
from llms.backends import Dialect
from llms.errors import LLMOutputInvalid, one_line

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)
_FENCE_RE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)
_NAME_RE = re.compile(r"[^a-zA-Z0-9_-]")


@lru_cache(maxsize=256)
def json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """The schema's JSON Schema, computed once per class (it costs ~10 ms); do not mutate it."""
    return schema.model_json_schema()


GRAMMAR_MAX_LENGTH = 32


def grammar_safe(node: Any) -> Any:
    """The schema without what llama.cpp's grammar converter cannot take.

    A regex `pattern` with escapes such as `\\d` makes the server crash (SIGSEGV), and a
    `maxLength` of n becomes n nested grammar rules, which for a few hundred characters stalls
    or crashes it. Both are dropped from what the server sees; pydantic still validates the
    reply against the full schema, and the repair loop handles a violation.
    """
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ("pattern", "format"):
                continue
            if key in ("maxLength", "minLength") and isinstance(value, int) and value > GRAMMAR_MAX_LENGTH:
                continue
            if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
                out[key] = {name: grammar_safe(sub) for name, sub in value.items()}  # names, not keywords
            else:
                out[key] = grammar_safe(value)
        return out
    if isinstance(node, list):
        return [grammar_safe(v) for v in node]
    return node


def response_format(schema: type[BaseModel], dialect: Dialect, *, strict: bool = False) -> dict[str, Any]:
    """What to send as `response_format` so the server constrains decoding to the schema."""
    body = json_schema(schema)
    if dialect is Dialect.LLAMA:
        # llama-cpp-python turns this into a grammar; it rejects type=json_schema.
        return {"type": "json_object", "schema": grammar_safe(body)}
    name = _NAME_RE.sub("_", schema.__name__)[:64] or "output"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": body, "strict": strict}}


@dataclass(frozen=True)
class Reply:
    """What one chat completion request returned."""

    content: str | None
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0


def strip_fences(text: str) -> str:
    """Small models like to wrap JSON in ```json fences even when told not to."""
    match = _FENCE_RE.match(text)
    return match.group(1) if match else text.strip()


def _parse(schema: type[T], text: str) -> T:
    """Strict JSON first; then JSON with raw control characters inside strings.

    llama.cpp's grammar lets a raw newline into a JSON string; the value is still what the
    model meant, so it is accepted rather than sent back for a repair.
    """
    try:
        return schema.model_validate_json(text)
    except ValidationError as exc:
        if not any(err["type"] == "json_invalid" for err in exc.errors()):
            raise
        try:
            data = json.loads(text, strict=False)
        except ValueError:
            raise exc from None
        return schema.model_validate(data)


def validate(schema: type[T], reply: Reply, max_tokens: int | None) -> tuple[T | None, str | None]:
    """(the parsed object, None) or (None, a short description of what is wrong)."""
    if reply.finish_reason == "length":
        return None, f"the reply was cut off at {max_tokens} tokens; write a shorter JSON object"
    text = strip_fences(reply.content or "")
    if not text:
        return None, "the reply was empty"
    try:
        return _parse(schema, text), None
    except ValidationError as exc:
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(part) for part in err["loc"]) or "the object"
            problems.append(f"{where}: {err['msg']}" if err["type"] != "json_invalid" else f"not valid JSON ({err['msg']})")
        return None, "; ".join(problems)


class Exchange(Generic[T]):
    """One structured (or plain-text) request with its bounded repair turns."""

    def __init__(
        self,
        messages: list[dict[str, Any]],
        schema: type[T] | None,
        *,
        repairs: int,
        max_tokens: int | None,
        backend_label: str,
    ) -> None:
        self.conversation = list(messages)
        self.schema = schema
        self.repairs_left = repairs
        self.max_tokens = max_tokens
        self.backend_label = backend_label
        self.repairs_used = 0
        self.result: T | str | None = None

    def accept(self, reply: Reply) -> bool:
        """True when `result` is final; False when a repair turn was appended (send again).

        Raises `LLMOutputInvalid` once the repairs are spent: unvalidated data is never returned.
        """
        if self.schema is None:
            if reply.finish_reason == "length":
                log.debug("plain-text reply truncated at max_tokens=%s", self.max_tokens)
            self.result = reply.content or ""
            return True
        parsed, problem = validate(self.schema, reply, self.max_tokens)
        if parsed is not None:
            self.result = parsed
            return True
        log.info("invalid %s from %s: %s", self.schema.__name__, self.backend_label, problem)
        if self.repairs_left <= 0:
            raise LLMOutputInvalid(
                f"{self.backend_label} gave no valid {self.schema.__name__} after {self.repairs_used} "
                f"repair(s): {one_line(problem)}",
                hint="use a larger model (--model-path or --llm), or raise max_tokens",
            )
        self.repairs_left -= 1
        self.repairs_used += 1
        schema_text = json.dumps(json_schema(self.schema), separators=(",", ":"))
        self.conversation += [
            {"role": "assistant", "content": reply.content or ""},
            {"role": "user", "content": prompts.render("repair_json", error=problem, schema=schema_text)},
        ]
        return False
