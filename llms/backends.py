"""Backend specs: what a `--llm` value means, parsed once into a `BackendSpec`.

Accepted values (case-sensitive):

- `embedded` (default), or `embedded:/path/model.gguf`: a llama-cpp-python server this
  package starts and reuses (`--model-path` picks another GGUF);
- `http(s)://host:port[/v1]`, comma-separated for several servers (round robin);
- `openai` or `openai:MODEL`: api.openai.com, key from the environment;
- `vllm:MODEL`: `vllm serve MODEL` started as a child process and reused like `embedded`.

Parsing is pure (no network, no files touched) so a bad value fails before anything starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from llms.errors import ConfigError

OPENAI_URL = "https://api.openai.com/v1"
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
KEY_ENV_VARS = ("SOCIETAS_LLM_API_KEY", "OPENAI_API_KEY")
# Local servers (vLLM, llama.cpp) accept any key but the SDK insists on one.
PLACEHOLDER_KEY = "EMPTY"


class Dialect(str, Enum):
    """How a server wants a JSON schema passed in `response_format`."""

    LLAMA = "llama"  # llama-cpp-python: {"type": "json_object", "schema": ...}; rejects json_schema
    JSON_SCHEMA = "json_schema"  # vLLM, OpenAI: {"type": "json_schema", "json_schema": {...}}


class Kind(str, Enum):
    EMBEDDED = "embedded"
    URL = "url"
    OPENAI = "openai"
    VLLM = "vllm"


@dataclass(frozen=True)
class BackendSpec:
    """One backend, as the user named it. Equal specs share one server and one endpoint pool."""

    kind: Kind
    urls: tuple[str, ...] = ()
    model: str | None = None
    model_path: Path | None = None
    dialect: Dialect | None = None
    port: int | None = None
    text: str = field(default="embedded", compare=False)

    @property
    def managed(self) -> bool:
        """True when this package starts (and may stop) the server itself."""
        return self.kind in (Kind.EMBEDDED, Kind.VLLM)

    @property
    def effective_dialect(self) -> Dialect:
        if self.dialect is not None:
            return self.dialect
        return Dialect.LLAMA if self.kind is Kind.EMBEDDED else Dialect.JSON_SCHEMA

    @property
    def label(self) -> str:
        """How error messages and `llm check` name this backend."""
        if self.kind is Kind.EMBEDDED:
            return f"embedded ({self.model_path.name})" if self.model_path else "embedded"
        if self.kind is Kind.VLLM:
            return f"vllm:{self.model}"
        if self.kind is Kind.OPENAI:
            return f"openai ({self.model})"
        return ",".join(self.urls)


def parse_backend(
    text: str | None = None,
    *,
    model_path: str | Path | None = None,
    model: str | None = None,
    dialect: str | Dialect | None = None,
    port: int | None = None,
) -> BackendSpec:
    """Parse a `--llm` value; `model_path` only applies to the embedded backend."""
    raw = (text or "embedded").strip()
    chosen_dialect = _parse_dialect(dialect or os.environ.get("SOCIETAS_LLM_DIALECT"))
    model = model or os.environ.get("SOCIETAS_LLM_MODEL") or None
    if raw == "embedded" or raw.startswith("embedded:"):
        path = raw.partition(":")[2] or model_path
        return BackendSpec(
            Kind.EMBEDDED,
            model_path=Path(path).expanduser().resolve() if path else None,
            dialect=chosen_dialect,
            port=port,
            text=raw,
        )
    if raw == "openai" or raw.startswith("openai:"):
        name = raw.partition(":")[2] or model or DEFAULT_OPENAI_MODEL
        return BackendSpec(Kind.OPENAI, urls=(OPENAI_URL,), model=name, dialect=chosen_dialect, text=raw)
    if raw.startswith("vllm:"):
        name = raw.partition(":")[2].strip()
        if not name:
            raise ConfigError("--llm vllm: needs a model", hint="write --llm vllm:Qwen/Qwen2.5-1.5B-Instruct")
        return BackendSpec(Kind.VLLM, model=name, dialect=chosen_dialect, port=port, text=raw)
    if raw.startswith(("http://", "https://")):
        urls = tuple(_normalize_url(part) for part in raw.split(",") if part.strip())
        return BackendSpec(Kind.URL, urls=urls, model=model, dialect=chosen_dialect, text=raw)
    raise ConfigError(
        f"unknown --llm value {raw!r}",
        hint="use embedded, openai[:MODEL], vllm:MODEL or http(s)://host:port[/v1][,more urls]",
    )


def _parse_dialect(value: str | Dialect | None) -> Dialect | None:
    if value is None or isinstance(value, Dialect):
        return value
    try:
        return Dialect(value)
    except ValueError:
        raise ConfigError(f"unknown structured-output dialect {value!r}", hint="use llama or json_schema") from None


def _normalize_url(url: str) -> str:
    """`http://host:8000` → `http://host:8000/v1`; anything with a path is kept as given."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"invalid server URL {url!r}", hint="write it as http(s)://host:port[/v1]")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError:
        raise ConfigError(f"invalid port in server URL {url!r}", hint="write it as http(s)://host:port[/v1]") from None
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


# What a remote server is assumed to hold when SOCIETAS_LLM_CONTEXT does not say: the models one
# serves behind --llm today (Qwen2.5, Llama 3.1, GPT-4o mini) take at least 32k tokens, and prompts
# sized for it stay far below the 128k many offer. A smaller server needs the variable set.
DEFAULT_REMOTE_CONTEXT = 32768


def remote_context_tokens() -> int:
    """The context size of a server this package did not start: `SOCIETAS_LLM_CONTEXT`, else the default."""
    raw = os.environ.get("SOCIETAS_LLM_CONTEXT", "").strip()
    if not raw:
        return DEFAULT_REMOTE_CONTEXT
    if not raw.isdigit() or int(raw) < 1024:
        raise ConfigError(f"SOCIETAS_LLM_CONTEXT={raw!r} is not a context size in tokens",
                          hint="set it to the server's context length, e.g. 32768 (at least 1024)")
    return int(raw)


def api_key_for(spec: BackendSpec, url: str) -> str:
    """The key to send to `url`: from the environment, else a placeholder where none is needed."""
    for var in KEY_ENV_VARS:
        if os.environ.get(var):
            return os.environ[var]
    if spec.kind is Kind.OPENAI:
        raise ConfigError(
            "no API key for openai",
            hint="set OPENAI_API_KEY or SOCIETAS_LLM_API_KEY, or omit --llm to use the embedded model",
        )
    # A remote server without a key may still be open (a cluster vLLM); a 401 from it
    # is turned into a "missing API key" error by the client.
    return PLACEHOLDER_KEY


def has_api_key() -> bool:
    return any(os.environ.get(var) for var in KEY_ENV_VARS)
