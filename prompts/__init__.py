"""Prompt templates: one file per LLM task, `prompts/<name>.md`, loaded by name.

Syntax: `string.Template` — `$var` or `${var}` is replaced, `$$` is a literal dollar sign;
braces are left alone, so JSON examples need no escaping. Every variable must be given.
A line `<!-- user -->` splits a template into a system message (above) and a user message
(below); without it the whole file is the user message. `template_hash(name)` (sha256 of
the file's bytes) goes into the run manifest so a report says which prompts produced it.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from string import Template

SPLIT_MARKER = "<!-- user -->"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")


class PromptError(LookupError):
    """A template is missing or a variable was not given: a bug in the caller, not a user error."""


def _file(name: str):
    if not _NAME_RE.match(name):
        raise PromptError(f"invalid prompt name {name!r}")
    path = resources.files(__name__).joinpath(f"{name}.md")
    if not path.is_file():
        raise PromptError(f"no prompt template {name!r} (expected prompts/{name}.md)")
    return path


def load(name: str) -> str:
    """The raw template text."""
    return _file(name).read_text(encoding="utf-8")


def names() -> list[str]:
    """Every template's name, sorted."""
    return sorted(p.name[:-3] for p in resources.files(__name__).iterdir() if p.name.endswith(".md"))


def render(name: str, **variables: object) -> str:
    """The template with every `$var` substituted; a missing variable raises `PromptError`."""
    try:
        return Template(load(name)).substitute({k: str(v) for k, v in variables.items()})
    except KeyError as exc:
        raise PromptError(f"prompt {name!r} needs variable {exc.args[0]!r}") from None
    except ValueError as exc:  # a stray `$` in the template
        raise PromptError(f"prompt {name!r}: {exc}") from None


def messages(name: str, **variables: object) -> list[dict[str, str]]:
    """The rendered template as chat messages (system + user when the template has the marker)."""
    text = render(name, **variables)
    system, marker, user = text.partition(SPLIT_MARKER)
    if not marker:
        return [{"role": "user", "content": text.strip()}]
    return [{"role": "system", "content": system.strip()}, {"role": "user", "content": user.strip()}]


def template_hash(name: str) -> str:
    """sha256 of the template file, for the manifest."""
    return hashlib.sha256(_file(name).read_bytes()).hexdigest()


def template_hashes(used: list[str] | None = None) -> dict[str, str]:
    """`{name: sha256}` for the given templates (all of them by default)."""
    return {name: template_hash(name) for name in (used if used is not None else names())}
