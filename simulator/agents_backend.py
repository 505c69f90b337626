"""The LLM agents' server and client: deterministic sampling, the run's cache, a check before any run.

`llms` is imported where it is used: a run with rule agents only never loads the HTTP clients.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.agents_mode import AgentsSetup

if TYPE_CHECKING:  # a hint only: `llms.client` loads the HTTP clients, imported where a client is made
    from llms.client import LLMClient

MAX_TOKENS = 48  # {"action": ..., "reason": <= 32 chars} is about 25 tokens
SAMPLING_SEED = 0  # with temperature 0, answers depend on the prompt only: the cache serves every seed


def agents_client(backend: Any, cache_path: str | Path | None) -> LLMClient:
    """The LLM agents' client on ``backend``: their role, the run's cache, deterministic sampling."""
    from llms.cache import ResponseCache
    from llms.client import LLMClient

    return LLMClient(backend, role="agents", cache=ResponseCache(cache_path) if cache_path else None,
                     temperature=0.0, seed=SAMPLING_SEED, max_tokens=MAX_TOKENS)


def setup_client(setup: AgentsSetup) -> LLMClient:
    """A client of its own on the setup's backend (what each Ray task builds)."""
    from llms.backends import parse_backend
    from llms.endpoints import Backend

    backend = Backend(parse_backend(setup.llm, model_path=setup.model_path), max_concurrency=setup.concurrency)
    return agents_client(backend, setup.cache_path)


def start_backend(setup: AgentsSetup) -> str | None:
    """Bring up the agents' server in the driver and ask it one short question, so an unreachable or
    broken backend is one `LLMError` before any run starts (not a fallback for every agent); returns the
    model it serves."""
    from llms.backends import parse_backend
    from llms.client import LLMClient
    from llms.endpoints import open_backend

    client = LLMClient(open_backend(parse_backend(setup.llm, model_path=setup.model_path)), role="agents")
    client.complete("Reply with the word OK.", max_tokens=2, use_cache=False, stage="agents")
    return client.model
