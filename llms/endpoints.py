"""A started backend: its endpoints (round robin), its managed servers and its SDK clients.

Specs that are equal share one `Backend` (see `open_backend`), so the researcher, agents and
reviewer roles on the same embedded model share one server, one pool and one concurrency
limit — the limit protects the server, not the caller.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from openai import AsyncOpenAI, OpenAI, Timeout

from llms.backends import BackendSpec, Dialect, Kind, api_key_for, remote_context_tokens
from llms.embedded import N_CTX, embedded_launches, model_key, resolve_gguf
from llms.errors import LLMUnavailable
from llms.health import Probe, connect_timeout, first_byte_timeout, probe
from llms.server import ManagedServer, ServerState
from llms.vllm import vllm_launch

log = logging.getLogger(__name__)

FAILED_COOLDOWN_S = 5.0  # an endpoint that just failed is skipped this long
# How long one request may take. A server we manage queues requests while it serves other
# commands, and drops the connection at once if it dies, so waiting long on it is no fault
# (cutting a queued request off only sends it again, to the back of the queue).
MANAGED_TIMEOUT_S = 600.0
REMOTE_TIMEOUT_S = 120.0
DEFAULT_CONCURRENCY = {Kind.EMBEDDED: 4, Kind.VLLM: 64, Kind.URL: 64, Kind.OPENAI: 16}


@dataclass
class Endpoint:
    """One server URL with its key and (lazily made) SDK clients."""

    base_url: str
    api_key: str
    timeout: float
    failed_at: float | None = None
    model: str | None = None  # discovered from /v1/models when the spec names none
    managed: tuple[ManagedServer, ServerState] | None = None  # the server behind it, if we started it
    _sync: OpenAI | None = field(default=None, repr=False)
    _async: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncOpenAI]" = field(
        default_factory=weakref.WeakKeyDictionary, repr=False
    )

    def _timeout(self) -> Timeout:
        return Timeout(self.timeout, connect=min(self.timeout, connect_timeout()))

    @property
    def sync(self) -> OpenAI:
        if self._sync is None:
            # max_retries=0: tenacity (llms.retry) owns every retry.
            self._sync = OpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=0, timeout=self._timeout())
        return self._sync

    @property
    def aio(self) -> AsyncOpenAI:
        """The async client for the running event loop (httpx pools cannot cross loops)."""
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            client = AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=0, timeout=self._timeout())
            self._async[loop] = client
        return client

    async def aclose(self) -> None:
        client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None


class Backend:
    """A backend ready to take requests: `start()` brings up its server (once) and its endpoints."""

    def __init__(
        self,
        spec: BackendSpec,
        *,
        timeout: float | None = None,
        max_concurrency: int | None = None,
        idle_seconds: float | None = None,
    ) -> None:
        self.spec = spec
        self.dialect: Dialect = spec.effective_dialect
        default_timeout = MANAGED_TIMEOUT_S if spec.managed else REMOTE_TIMEOUT_S
        self.timeout = timeout or float(os.environ.get("SOCIETAS_LLM_TIMEOUT") or default_timeout)
        env_limit = os.environ.get("SOCIETAS_LLM_CONCURRENCY")
        self.max_concurrency = max_concurrency or int(env_limit or DEFAULT_CONCURRENCY[spec.kind])
        self.servers: list[ManagedServer] = []
        self.model: str | None = spec.model
        self.model_key: str = spec.model or ",".join(spec.urls)
        # Prompts are sized to it: the embedded server's own n_ctx, else what the user says a remote holds.
        self.context_tokens: int = N_CTX if spec.kind is Kind.EMBEDDED else remote_context_tokens()
        if spec.kind is Kind.EMBEDDED:
            gguf = resolve_gguf(spec.model_path)  # a missing file fails now, not at the first call
            launches = embedded_launches(gguf)
            self.servers = [
                ManagedServer(launch, port=None if spec.port is None else spec.port + i, idle_seconds=idle_seconds)
                for i, launch in enumerate(launches)
            ]
            self.model = launches[0].model
            self.model_key = model_key(gguf)
        elif spec.kind is Kind.VLLM:
            self.servers = [ManagedServer(vllm_launch(spec.model or ""), port=spec.port, idle_seconds=idle_seconds)]
        self._endpoints: list[Endpoint] = []
        self._cycle: itertools.cycle | None = None
        self._lock = threading.Lock()
        self._started = False
        self.needs_recheck = False
        self._loop_limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def served_model(self) -> str | None:
        """The model requests go to (known after the first request for a URL spec without one)."""
        return self.model or next((ep.model for ep in self._endpoints if ep.model), None)

    @property
    def urls(self) -> list[str]:
        return [ep.base_url for ep in self._endpoints] or list(self.spec.urls)

    @property
    def ready(self) -> bool:
        """Started, and no connection failure since: `start()` would do nothing."""
        return self._started and not self.needs_recheck

    def start(self) -> None:
        """Idempotent and thread-safe; starts (or finds) the managed servers on first use, and
        probes the others: a server that accepts connections but answers nothing is one
        `LLMUnavailable` within the connect and first-byte timeouts, not a hang per retry."""
        if self._started and not self.needs_recheck:
            return
        with self._lock:
            if self._started and not self.needs_recheck:
                return
            if self.servers:
                with ThreadPoolExecutor(len(self.servers)) as pool:  # replicas load in parallel
                    states = list(pool.map(ManagedServer.ensure, self.servers))
                if [state.base_url for state in states] != [ep.base_url for ep in self._endpoints]:
                    self._set_endpoints([state.base_url for state in states])
                for endpoint, server, state in zip(self._endpoints, self.servers, states):
                    endpoint.managed = (server, state)
            else:
                if not self._endpoints:
                    self._set_endpoints(list(self.spec.urls))
                self._probe_endpoints()
            self._started = True
            self.needs_recheck = False

    def _probe_endpoints(self) -> None:
        with ThreadPoolExecutor(len(self._endpoints)) as pool:
            probes = list(pool.map(probe, [ep.base_url for ep in self._endpoints]))
        silent = [ep for ep, result in zip(self._endpoints, probes) if result is Probe.SILENT]
        for endpoint in silent:
            endpoint.failed_at = time.monotonic()  # round robin skips it for a while
        if len(silent) == len(self._endpoints):
            raise LLMUnavailable(
                f"LLM backend {self.label} accepted the connection but answered nothing within "
                f"{first_byte_timeout():g} s",
                hint="check that the server is up and not overloaded; SOCIETAS_LLM_FIRST_BYTE_TIMEOUT sets the limit",
            )

    def _set_endpoints(self, urls: list[str]) -> None:
        for old in self._endpoints:
            old.close()
        self._endpoints = [Endpoint(url, api_key_for(self.spec, url), self.timeout) for url in urls]
        self._cycle = itertools.cycle(range(len(self._endpoints)))

    def pick(self) -> Endpoint:
        """Round robin over endpoints, skipping one that failed in the last few seconds."""
        with self._lock:
            now = time.monotonic()
            for _ in range(len(self._endpoints)):
                endpoint = self._endpoints[next(self._cycle)]
                if endpoint.failed_at is None or now - endpoint.failed_at > FAILED_COOLDOWN_S:
                    return endpoint
            # all failed recently: the one that failed longest ago is the best bet
            return min(self._endpoints, key=lambda ep: ep.failed_at or 0.0)

    def in_flight(self, endpoint: Endpoint) -> AbstractContextManager[None]:
        """Around one request: tells other commands that share a managed server it is busy."""
        if endpoint.managed is None:
            return nullcontext()
        server, state = endpoint.managed
        return server.in_flight(state)

    def mark_failed(self, endpoint: Endpoint, *, connection: bool) -> None:
        endpoint.failed_at = time.monotonic()
        if connection:
            self.needs_recheck = True  # a server may have died, hung or been stopped: look again

    def mark_ok(self, endpoint: Endpoint) -> None:
        endpoint.failed_at = None
        for server in self.servers:
            server.touch()

    def limit(self) -> asyncio.Semaphore:
        """The concurrency limit for the running event loop."""
        loop = asyncio.get_running_loop()
        sem = self._loop_limits.get(loop)
        if sem is None:
            sem = asyncio.Semaphore(self.max_concurrency)
            self._loop_limits[loop] = sem
        return sem

    async def aclose(self) -> None:
        """Close this event loop's async clients (call before the loop ends)."""
        for endpoint in self._endpoints:
            await endpoint.aclose()

    def close(self) -> None:
        for endpoint in self._endpoints:
            endpoint.close()

    def stop_servers(self) -> bool:
        """Stop the servers this backend manages; True if any was running."""
        return any([server.stop() for server in self.servers])


_shared: dict[BackendSpec, Backend] = {}
_shared_lock = threading.Lock()


def open_backend(spec: BackendSpec, **options) -> Backend:
    """The process-wide `Backend` for this spec (made on first use) when no options are given."""
    if options:
        return Backend(spec, **options)
    with _shared_lock:
        backend = _shared.get(spec)
        if backend is None:
            backend = _shared[spec] = Backend(spec)
        return backend
