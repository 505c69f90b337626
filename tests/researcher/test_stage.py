"""The stage wrapper's bookkeeping: time and tokens per stage, added up when a stage runs again."""

from __future__ import annotations

from types import SimpleNamespace

from researcher.stage import stage


class CountingAccounting:
    """Stands in for the LLM accounting: each node call below spends 2 calls and 30 tokens."""

    def __init__(self) -> None:
        self.calls = 0

    def spend(self) -> None:
        self.calls += 2

    def snapshot(self) -> dict:
        return {"total": {"calls": self.calls, "requests": self.calls, "prompt_tokens": 10 * self.calls,
                          "completion_tokens": 5 * self.calls, "cache_hits": 0}}


def test_a_stage_that_runs_twice_adds_up_its_tokens_and_time():
    accounting = CountingAccounting()
    runtime = SimpleNamespace(context=SimpleNamespace(llms=SimpleNamespace(accounting=accounting)))

    @stage("review_report")
    def review(state, deps):
        deps.llms.accounting.spend()
        return {}

    first = review({}, runtime)
    second = review({"tokens": first["tokens"], "timings": first["timings"]}, runtime)
    assert first["tokens"]["review_report"]["calls"] == 2
    assert second["tokens"]["review_report"] == {"calls": 4, "requests": 4, "prompt_tokens": 40,
                                                 "completion_tokens": 20, "cache_hits": 0}
    assert second["timings"]["review_report"] >= first["timings"]["review_report"]
