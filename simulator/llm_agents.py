"""LLM agents: `decide` rules answered by a language model, grouped, concurrent and logged.

For a step's active agents of types with `decision: llm`, a prompt is built from the type's
persona and the rule's observation (`simulator.agent_prompts`). Agents alike write the same
prompt: each distinct prompt goes to the server once (an archetype) and its answer applies to
every agent that wrote it. The distinct prompts of a step go out concurrently, bounded by the
backend's limit, round robin over its endpoints; the response cache answers repeats across steps
and seeds (temperature 0, a fixed sampling seed: an answer is a function of its prompt). An answer
that fails after the client's retries and repairs leaves those agents to the rule's `fallback`
(drawn from the engine's Philox stream), and is counted.

Whether LLM agents run at all (`--agents-mode`, the call budget) is `simulator.agents_mode`; the
agents' client and server, `simulator.agents_backend`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, create_model, field_validator

from simulator.agent_prompts import AgentMemory, agent_texts, chat_messages, llm_positions
from simulator.agents_backend import MAX_TOKENS, SAMPLING_SEED, setup_client
from simulator.agents_mode import AgentsSetup
from simulator.compile import CompiledRule
from simulator.engine import Simulation

if TYPE_CHECKING:  # a hint only: `llms.client` loads the HTTP clients, which rule-only runs never need
    from llms.client import LLMClient

log = logging.getLogger(__name__)

REASON_CHARS = 32  # within llms.structured.GRAMMAR_MAX_LENGTH, so llama.cpp's grammar enforces it


# --- the structured answer ---------------------------------------------------------------------

def _cut_reason(value: Any) -> Any:
    """A long reason is cut, not repaired: servers without grammar support may overrun it."""
    return value[:REASON_CHARS] if isinstance(value, str) else value


def decision_schema(rule_name: str, actions: list[str]) -> type[BaseModel]:
    """`{"action": <one of the rule's actions>, "reason": <= 32 chars}`; the enum is what the server enforces."""
    name = "Decision_" + rule_name
    return create_model(
        name,
        action=(Literal[tuple(actions)], Field(description="One of the options.")),
        reason=(str, Field(max_length=REASON_CHARS, description="Why, in a few words.")),
        __validators__={"cut_reason": field_validator("reason", mode="before")(_cut_reason)},
    )


# --- the decision log ------------------------------------------------------------------------

LOG_COLUMNS = ("agent", "step", "rule", "prompt_hash", "action", "reason", "latency_s", "group_size", "outcome")


@dataclass
class DecisionLog:
    """Every LLM decision, one row per agent: what `data/decisions.parquet` holds (with condition, seed)."""

    columns: dict[str, list] = field(default_factory=lambda: {c: [] for c in LOG_COLUMNS})

    def extend(self, **cols: Any) -> None:
        n = len(cols["agent"])
        for c in LOG_COLUMNS:
            v = cols[c]
            self.columns[c].extend(list(v) if isinstance(v, (list, np.ndarray)) else [v] * n)

    def __len__(self) -> int:
        return len(self.columns["agent"])


@dataclass
class _Pending:
    """A decide call's LLM rows, kept until `chosen` says which action each finally took."""

    positions: np.ndarray
    hashes: np.ndarray
    reasons: np.ndarray
    latency: np.ndarray
    group_size: np.ndarray
    outcome: np.ndarray


# --- the policy --------------------------------------------------------------------------------

class LLMDecisions:
    """The engine's `DecisionPolicy` for LLM agents; one per run (it holds each agent's memory).

    Calls run on a private event loop in a background thread, so the engine (plain synchronous
    code, in a Ray worker or a LangGraph node) can use it whether or not a loop is running.
    """

    def __init__(self, client: LLMClient, *, group: bool = True) -> None:
        self.client = client  # its backend bounds the requests in flight (`--llm-concurrency`)
        self.group = group
        self.log = DecisionLog()
        self.counts = {"llm_agent_decisions": 0, "llm_prompts": 0, "llm_invalid": 0, "llm_failed": 0}
        self.llm_seconds = 0.0
        self.memory = AgentMemory()
        self._schemas: dict[int, type[BaseModel]] = {}
        self._pending: dict[int, _Pending] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def open(cls, setup: AgentsSetup) -> LLMDecisions:
        """A policy with its own client on the setup's backend (what each Ray task builds)."""
        return cls(setup_client(setup), group=setup.group)

    # -- DecisionPolicy -------------------------------------------------------------------
    def decide(self, sim: Simulation, rule: CompiledRule, rows: np.ndarray,
               local_values: dict[str, Any]) -> np.ndarray | None:
        positions = llm_positions(sim, rows)
        self._pending.pop(rule.index, None)
        if len(positions) == 0:
            return None
        personas, observations = agent_texts(sim, rule, rows, local_values, positions,
                                             rounding=self.group, memory=self.memory)
        keys = personas + "\x00" + observations
        if self.group:  # archetypes: one request per distinct prompt
            _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        else:
            first = inverse = np.arange(len(keys))
        asks = [chat_messages(sim, rule, personas[i], observations[i]) for i in first]
        started = time.perf_counter()
        answers = self._run(self._ask_all(asks, self._schema(rule)))
        self.llm_seconds += time.perf_counter() - started
        index = {a: j for j, a in enumerate(rule.actions)}
        ask_choice = np.array([index[a.action] if isinstance(a, BaseModel) else -1 for a, _ in answers], dtype=np.int64)
        outcome = np.array(["llm" if isinstance(a, BaseModel) else _failure_kind(a) for a, _ in answers], dtype=object)
        inverse = inverse.reshape(-1)
        group_size = np.bincount(inverse, minlength=len(asks))
        choice = np.full(len(rows), -1, dtype=np.int64)
        choice[positions] = ask_choice[inverse]
        hashes = np.array([_hash(m[0]["content"] + "\x00" + m[1]["content"]) for m in asks], dtype=object)
        self._pending[rule.index] = _Pending(
            positions=positions, hashes=hashes[inverse],
            reasons=np.array([a.reason if isinstance(a, BaseModel) else "" for a, _ in answers], dtype=object)[inverse],
            latency=np.array([lat for _, lat in answers])[inverse],
            group_size=group_size[inverse], outcome=outcome[inverse])
        self.counts["llm_prompts"] += len(asks)
        self.counts["llm_agent_decisions"] += int((choice >= 0).sum())
        self.counts["llm_invalid"] += int((outcome[inverse] == "invalid").sum())
        self.counts["llm_failed"] += int((outcome[inverse] == "failed").sum())
        return choice

    def chosen(self, sim: Simulation, rule: CompiledRule, rows: np.ndarray, choice: np.ndarray) -> None:
        self.memory.remember(sim, rule, rows, choice)
        pending = self._pending.pop(rule.index, None)
        if pending is None:
            return
        names = np.array([*rule.actions, ""], dtype=object)
        final = choice[pending.positions]
        self.log.extend(agent=rows[pending.positions], step=sim.step_no, rule=rule.name,
                        prompt_hash=pending.hashes, action=names[np.where(final >= 0, final, len(rule.actions))],
                        reason=pending.reasons, latency_s=np.round(pending.latency, 4),
                        group_size=pending.group_size, outcome=pending.outcome)

    def _schema(self, rule: CompiledRule) -> type[BaseModel]:
        if rule.index not in self._schemas:
            self._schemas[rule.index] = decision_schema(rule.name, rule.actions)
        return self._schemas[rule.index]

    # -- calls --------------------------------------------------------------------------
    async def _ask_all(self, asks: list[list[dict[str, str]]], schema: type[BaseModel]) -> list[tuple[Any, float]]:
        """Every distinct prompt concurrently (the backend bounds how many are in flight), each
        with its latency; failures are returned, not raised."""
        from llms.errors import LLMError

        async def one(msgs: list[dict[str, str]]) -> tuple[Any, float]:
            t0 = time.perf_counter()
            try:
                answer: Any = await self.client.acomplete(msgs, schema, role="agents", stage="agents",
                                                          temperature=0.0, seed=SAMPLING_SEED, max_tokens=MAX_TOKENS)
            except LLMError as exc:
                log.info("LLM agent decision failed, using the fallback: %s", exc)
                answer = exc
            return answer, time.perf_counter() - t0

        return list(await asyncio.gather(*(one(m) for m in asks)))

    def _run(self, coro: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="llm-agents", daemon=True)
            self._thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def counters(self) -> dict[str, int]:
        """What this run cost and how it went, merged into `RunResult.decisions`."""
        usage = self.client.accounting.usage("agents")
        return {**self.counts, "llm_requests": usage.requests, "llm_cache_hits": usage.cache_hits,
                "llm_repairs": usage.repairs, "llm_retries": usage.retries,
                "llm_prompt_tokens": usage.prompt_tokens, "llm_completion_tokens": usage.completion_tokens,
                "llm_ms": round(self.llm_seconds * 1000)}

    def close(self) -> None:
        """Close the async clients and stop the loop thread (the servers keep running for reuse)."""
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self.client.backend.aclose(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join()
            self._loop.close()
            self._loop = self._thread = None
        self.client.close()


def _failure_kind(exc: BaseException) -> str:
    from llms.errors import LLMOutputInvalid

    return "invalid" if isinstance(exc, LLMOutputInvalid) else "failed"


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
