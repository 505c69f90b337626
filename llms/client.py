"""`LLMClient`: the one way the project talks to a model, whatever the backend.

    client = LLMClient.from_spec("embedded", role="researcher", cache=ResponseCache.in_run(run))
    plan = client.complete(messages, schema=ResearchPlan, temperature=0.2, seed=1)
    decisions = client.complete_many([LLMRequest(m, schema=Decision, role="agents") for m in batch])

A call: cache lookup → request (transient faults retried by tenacity) → pydantic validation
→ bounded repair turns → cache store. Counts go to a shared `Accounting`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import openai
from openai.types.chat import ChatCompletion
from pydantic import BaseModel
from tenacity import RetryCallState

from llms.accounting import Accounting
from llms.backends import BackendSpec, has_api_key, parse_backend
from llms.cache import ResponseCache, cache_key
from llms.endpoints import Backend, Endpoint, open_backend
from llms.errors import ConfigError, LLMRejected, LLMUnavailable, one_line
from llms.retry import MalformedResponse, RetryPolicy, describe, is_transient
from llms.structured import Exchange, Reply, json_schema, response_format

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)
Messages = Sequence[Mapping[str, Any]] | str


@dataclass(frozen=True)
class LLMRequest:
    """One call for `complete_many`: the arguments of `complete`, bundled."""

    messages: Messages
    schema: type[BaseModel] | None = None
    role: str | None = None
    temperature: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    stage: str | None = None


class LLMClient:
    """Chat completions with structured output, retries, repairs, a cache and accounting."""

    def __init__(
        self,
        backend: Backend,
        *,
        role: str = "researcher",
        cache: ResponseCache | None = None,
        accounting: Accounting | None = None,
        retry: RetryPolicy | None = None,
        repairs: int = 2,
        temperature: float = 0.0,
        seed: int | None = 0,
        max_tokens: int = 512,
        strict_schema: bool = False,
    ) -> None:
        self.backend = backend
        self.role = role
        self.cache = cache
        self.accounting = accounting or Accounting()
        self.retry = retry or RetryPolicy.from_env()
        self.repairs = repairs
        self.defaults = {"temperature": temperature, "seed": seed, "max_tokens": max_tokens}
        self.strict_schema = strict_schema

    @classmethod
    def from_spec(cls, spec: str | BackendSpec | None = None, **options: Any) -> "LLMClient":
        """A client on the shared backend for a `--llm` value (or an already parsed spec)."""
        parsed = spec if isinstance(spec, BackendSpec) else parse_backend(spec)
        return cls(open_backend(parsed), **options)

    @property
    def label(self) -> str:
        return self.backend.label

    @property
    def model(self) -> str | None:
        return self.backend.served_model

    @property
    def context_tokens(self) -> int:
        """How many tokens (prompt and answer) the backend's model holds: writers size prompts to it."""
        return self.backend.context_tokens

    # -- the public calls -------------------------------------------------------------

    @overload
    def complete(self, messages: Messages, schema: type[T], **kw: Any) -> T: ...
    @overload
    def complete(self, messages: Messages, schema: None = None, **kw: Any) -> str: ...

    def complete(
        self,
        messages: Messages,
        schema: type[T] | None = None,
        *,
        role: str | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        max_tokens: int | None = None,
        use_cache: bool = True,
        stage: str | None = None,
    ) -> T | str:
        """A validated `schema` instance (or the text when no schema); raises an `LLMError`.

        `messages` may be a plain string (one user message). `role` picks the accounting
        bucket (default: the client's role); `stage` (e.g. "design_experiment") counts there too.
        """
        call = self._prepare(messages, schema, role, temperature, seed, max_tokens, use_cache, stage)
        if call.hit is not None:
            return call.hit
        try:
            while not call.exchange.accept(self._send(call)):
                self.accounting.add(call.role, call.stage, repairs=1)
        except Exception as exc:
            self.accounting.add(call.role, call.stage, failures=1, lost=int(isinstance(exc, LLMUnavailable)))
            raise
        return self._finish(call)

    async def acomplete(
        self,
        messages: Messages,
        schema: type[T] | None = None,
        *,
        role: str | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        max_tokens: int | None = None,
        use_cache: bool = True,
        stage: str | None = None,
    ) -> T | str:
        """`complete` for asyncio; at most `backend.max_concurrency` requests are in flight."""
        call = self._prepare(messages, schema, role, temperature, seed, max_tokens, use_cache, stage)
        if call.hit is not None:
            return call.hit
        try:
            while not call.exchange.accept(await self._asend(call)):
                self.accounting.add(call.role, call.stage, repairs=1)
        except Exception as exc:
            self.accounting.add(call.role, call.stage, failures=1, lost=int(isinstance(exc, LLMUnavailable)))
            raise
        return self._finish(call)

    async def acomplete_many(self, requests: Iterable[LLMRequest], *, return_exceptions: bool = False) -> list[Any]:
        """Every request concurrently (bounded by the backend's limit), results in order."""
        tasks = [
            self.acomplete(
                r.messages,
                r.schema,
                role=r.role,
                temperature=r.temperature,
                seed=r.seed,
                max_tokens=r.max_tokens,
                stage=r.stage,
            )
            for r in requests
        ]
        return await asyncio.gather(*tasks, return_exceptions=return_exceptions)

    def complete_many(self, requests: Iterable[LLMRequest], *, return_exceptions: bool = False) -> list[Any]:
        """`acomplete_many` from synchronous code (runs its own event loop)."""
        requests = list(requests)

        async def run() -> list[Any]:
            try:
                return await self.acomplete_many(requests, return_exceptions=return_exceptions)
            finally:
                await self.backend.aclose()

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(run())
        # Called from inside an event loop (a notebook, an async node): run in a fresh thread.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, run()).result()

    # -- one call, step by step ---------------------------------------------------------

    def _prepare(self, messages, schema, role, temperature, seed, max_tokens, use_cache, stage) -> "_Call":
        role = role or self.role
        msgs = [{"role": "user", "content": messages}] if isinstance(messages, str) else [dict(m) for m in messages]
        params = {
            "temperature": self.defaults["temperature"] if temperature is None else temperature,
            "seed": self.defaults["seed"] if seed is None else seed,
            "max_tokens": self.defaults["max_tokens"] if max_tokens is None else max_tokens,
        }
        schema_json = json_schema(schema) if schema is not None else None
        key = cache_key(self.backend.model_key, msgs, schema_json, params) if (self.cache is not None and use_cache) else None
        exchange = Exchange(msgs, schema, repairs=self.repairs, max_tokens=params["max_tokens"], backend_label=self.label)
        call = _Call(role, stage, params, exchange, key, schema)
        if key is not None:
            cached = self.cache.get(key)
            if cached is not None:
                call.hit = schema.model_validate_json(cached) if schema is not None else cached
                self.accounting.add(role, stage, calls=1, cache_hits=1)
        return call

    def _finish(self, call: "_Call") -> Any:
        result = call.exchange.result
        if call.key is not None:
            text = result.model_dump_json() if isinstance(result, BaseModel) else str(result)
            self.cache.put(call.key, self.backend.model_key, text)
        self.accounting.add(call.role, call.stage, calls=1)
        return result

    def _request_kwargs(self, call: "_Call", endpoint: Endpoint) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": endpoint.model or self.backend.model,
            "messages": call.exchange.conversation,
            "temperature": call.params["temperature"],
            "max_tokens": call.params["max_tokens"],
        }
        if call.params["seed"] is not None:
            kwargs["seed"] = call.params["seed"]
        if call.schema is not None:
            kwargs["response_format"] = response_format(call.schema, self.backend.dialect, strict=self.strict_schema)
        return kwargs

    def _on_retry(self, call: "_Call"):
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            self.accounting.add(call.role, call.stage, retries=1)
            log.info(
                "%s: attempt %d failed (%s); retrying in %.2f s",
                self.label, state.attempt_number, describe(exc) if exc else "?", state.next_action.sleep if state.next_action else 0,
            )  # fmt: skip

        return before_sleep

    def _send(self, call: "_Call") -> Reply:
        try:
            for attempt in self.retry.retrying(self._on_retry(call)):
                with attempt:
                    self.backend.start()
                    endpoint = self.backend.pick()
                    with _tracked(self.backend, endpoint):
                        if endpoint.model is None and self.backend.model is None:
                            endpoint.model = _first_model(endpoint.sync.models.list())
                        self.accounting.add(call.role, call.stage, sent=1)
                        started = time.perf_counter()
                        response = endpoint.sync.chat.completions.create(**self._request_kwargs(call, endpoint))
                        return self._reply(call, response, time.perf_counter() - started)
        except Exception as exc:
            raise self._user_error(exc) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _asend(self, call: "_Call") -> Reply:
        try:
            async for attempt in self.retry.async_retrying(self._on_retry(call)):
                with attempt:
                    if not self.backend.ready:  # starting a server blocks: keep it off the loop
                        await asyncio.to_thread(self.backend.start)
                    async with self.backend.limit():
                        endpoint = self.backend.pick()
                        with _tracked(self.backend, endpoint):
                            if endpoint.model is None and self.backend.model is None:
                                endpoint.model = _first_model(await endpoint.aio.models.list())
                            self.accounting.add(call.role, call.stage, sent=1)
                            started = time.perf_counter()
                            response = await endpoint.aio.chat.completions.create(**self._request_kwargs(call, endpoint))
                            return self._reply(call, response, time.perf_counter() - started)
        except Exception as exc:
            raise self._user_error(exc) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _reply(self, call: "_Call", response: Any, latency: float) -> Reply:
        if not isinstance(response, ChatCompletion) or not response.choices:
            raise MalformedResponse(f"not a chat completion: {one_line(response, 120)}")
        choice = response.choices[0]
        usage = response.usage
        reply = Reply(
            content=choice.message.content,
            finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            latency_s=latency,
        )
        self.accounting.add(
            call.role,
            call.stage,
            requests=1,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            latency_s=latency,
        )
        return reply

    def _user_error(self, exc: Exception) -> Exception:
        """Map what is left after retries to one `SocietasError` naming the backend and the cause."""
        if isinstance(exc, (LLMUnavailable, ConfigError, LLMRejected)):
            return exc  # already a user error (a server that would not start, a bad spec)
        where = self.label
        if is_transient(exc):
            return LLMUnavailable(
                f"LLM backend {where} unavailable after {self.retry.attempts} attempts: {one_line(describe(exc))}",
                hint=self._unavailable_hint(),
            )
        if isinstance(exc, openai.AuthenticationError):
            if not has_api_key():
                return ConfigError(
                    f"LLM backend {where} needs an API key", hint="set SOCIETAS_LLM_API_KEY or OPENAI_API_KEY"
                )
            return LLMRejected(f"LLM backend {where} rejected the API key", hint="check SOCIETAS_LLM_API_KEY / OPENAI_API_KEY")
        if isinstance(exc, openai.NotFoundError):
            return LLMRejected(
                f"LLM backend {where}: model {self.backend.model!r} not found ({one_line(describe(exc))})",
                hint="check the model name (SOCIETAS_LLM_MODEL or the --llm value)",
            )
        if isinstance(exc, openai.APIStatusError):
            return LLMRejected(f"LLM backend {where} rejected the request: {one_line(describe(exc))}")
        return exc

    def _unavailable_hint(self) -> str:
        if self.backend.servers:
            return f"see {self.backend.servers[0].log_path}; `societas llm stop` then retry"
        return "check that the server is running and reachable, or omit --llm to use the embedded model"

    def close(self) -> None:
        self.backend.close()


@dataclass
class _Call:
    role: str
    stage: str | None
    params: dict[str, Any]
    exchange: Exchange
    key: str | None
    schema: type[BaseModel] | None
    hit: Any = None


@contextmanager
def _tracked(backend: Backend, endpoint: Endpoint) -> Iterator[None]:
    """One request on `endpoint`: marked in flight meanwhile, then failed on a transient fault
    (round robin skips it) or healthy on success."""
    try:
        with backend.in_flight(endpoint):
            yield
    except Exception as exc:
        if is_transient(exc):
            backend.mark_failed(endpoint, connection=isinstance(exc, openai.APIConnectionError))
        raise
    backend.mark_ok(endpoint)


def _first_model(page: Any) -> str:
    data = getattr(page, "data", None) or []
    if not data:
        raise MalformedResponse("the server lists no models at /v1/models")
    return data[0].id
