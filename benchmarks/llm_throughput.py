"""Throughput of the embedded LLM server: single-stream tokens/s and saturated decisions/s.

    python benchmarks/llm_throughput.py [--model-path X.gguf] [--decisions 24] [--concurrency 1,4,8,16]
                                        [--threads 1,2] [--replicas 1,2]

llama-cpp-python's server (0.3.x) has no parallel slots: one model, one lock, requests run
one at a time. So concurrency only overlaps HTTP and JSON work with decoding; real
parallelism on a CPU needs several server processes (replicas) load-balanced by the
client. This script measures each (threads, replicas) layout and reports the best.
Ends with two lines: `single_stream_tokens_per_s: X` and `saturated_decisions_per_s: Y`.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from typing import Literal

from pydantic import BaseModel, Field
from rich.console import Console

from llms.backends import parse_backend
from llms.client import LLMClient, LLMRequest
from llms.embedded import resolve_gguf
from llms.endpoints import Backend

console = Console(highlight=False, markup=False)
STORY_PROMPT = "Write a long story about a lighthouse keeper and a storm."


class Decision(BaseModel):
    """A short agent decision, the shape the simulator sends hundreds of."""

    action: Literal["cooperate", "defect", "abstain"]
    reason: str = Field(max_length=32)  # within llms.structured.GRAMMAR_MAX_LENGTH: enforced by the grammar


RULES = (
    "You are a villager in a public goods game. Each round every villager chooses to cooperate "
    "(pay one coin into the common pot), defect (pay nothing but share the pot) or abstain (stay out). "
    "Reply with one JSON object with the keys action and reason, nothing else."
)


def decision_requests(n: int, offset: int) -> list[LLMRequest]:
    """Distinct prompts (nothing served from a cache); the shared rules come first so the
    server reuses their KV cache across requests, as the simulator's persona prompts do."""
    return [
        LLMRequest(
            [
                {"role": "system", "content": RULES},
                {
                    "role": "user",
                    "content": f"Villager {offset + i}: {3 + i % 5} of your {8 + i % 3} neighbours cooperated "
                    f"last round; the pot holds {(offset + i) % 17} coins. Your action?",
                },
            ],
            schema=Decision,
            role="agents",
            temperature=0.7,
            seed=offset + i,
            max_tokens=40,
        )
        for i in range(n)
    ]


def client_for(model_path: str | None, concurrency: int) -> LLMClient:
    """A client on the embedded backend as configured by SOCIETAS_LLM_THREADS / _REPLICAS."""
    backend = Backend(parse_backend("embedded", model_path=model_path), max_concurrency=concurrency, timeout=600, idle_seconds=600)
    return LLMClient(backend, role="agents", repairs=2)


def single_stream(client: LLMClient, runs: int = 3) -> float:
    rates = []
    for seed in range(runs):
        before = client.accounting.usage("agents").completion_tokens
        started = time.perf_counter()
        client.complete(STORY_PROMPT, temperature=0.8, seed=seed, max_tokens=128, role="agents")
        tokens = client.accounting.usage("agents").completion_tokens - before
        rates.append(tokens / (time.perf_counter() - started))
    return statistics.median(rates)


def saturated(client: LLMClient, n: int, offset: int) -> tuple[float, int, int]:
    """(decisions/s, repairs, failures) for n decisions at the client's concurrency."""
    before = client.accounting.usage("agents")
    started = time.perf_counter()
    results = client.complete_many(decision_requests(n, offset), return_exceptions=True)
    elapsed = time.perf_counter() - started
    after = client.accounting.usage("agents")
    failures = sum(isinstance(r, Exception) for r in results)
    return (n - failures) / elapsed, after.repairs - before.repairs, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", default=None)
    parser.add_argument("--decisions", type=int, default=24, help="decisions per concurrency level")
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--threads", default="1,2", help="llama.cpp threads per server, comma-separated")
    parser.add_argument("--replicas", default="1,2", help="server processes, comma-separated")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the servers
    os.environ.setdefault("SOCIETAS_CACHE_DIR", tempfile.mkdtemp(prefix="societas-bench-"))
    gguf = resolve_gguf(args.model_path)
    levels = [int(x) for x in args.concurrency.split(",")]
    layouts = [(t, r) for t in map(int, args.threads.split(",")) for r in map(int, args.replicas.split(","))]
    layouts = [(t, r) for t, r in layouts if t * r <= max(2, os.cpu_count() or 2)]  # no oversubscription
    console.print(f"model: {gguf.name}   cores: {os.cpu_count()}   decisions per level: {args.decisions}")
    console.print("load average before: %.2f %.2f %.2f (other work on the cores skews every number)" % os.getloadavg())
    console.print("llama-cpp-python server: requests serialised per process (no n_parallel); replicas give parallelism")

    best_single = (0.0, None)
    best_saturated = (0.0, None)
    offset = 0
    for threads, replicas in layouts:
        os.environ["SOCIETAS_LLM_THREADS"] = str(threads)
        os.environ["SOCIETAS_LLM_REPLICAS"] = str(replicas)
        client = client_for(args.model_path, 1)
        try:
            for _ in range(replicas):
                client.complete("warm up", max_tokens=8, use_cache=False)
            rate = single_stream(client)
            console.print(f"[threads={threads} replicas={replicas}] single stream: {rate:.1f} completion tokens/s")
            if replicas == 1 and rate > best_single[0]:
                best_single = (rate, f"threads={threads}")
            for level in levels:
                rate, repairs, failures = saturated(client_for(args.model_path, level), args.decisions, offset)
                offset += args.decisions
                console.print(
                    f"[threads={threads} replicas={replicas}] concurrency {level:>2}: {rate:.2f} decisions/s"
                    f"  (repairs {repairs}, failures {failures})"
                )
                if rate > best_saturated[0]:
                    best_saturated = (rate, f"threads={threads} replicas={replicas} concurrency={level}")
        finally:
            client.backend.stop_servers()
    console.print("load average after: %.2f %.2f %.2f" % os.getloadavg())
    console.print(f"best single stream layout: {best_single[1]}")
    console.print(f"best saturated layout: {best_saturated[1]}")
    console.print(f"single_stream_tokens_per_s: {best_single[0]:.1f}")
    console.print(f"saturated_decisions_per_s: {best_saturated[0]:.2f}")


if __name__ == "__main__":
    main()
