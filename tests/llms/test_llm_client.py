"""The client against a scripted server: retries, repairs, dialects, cache, concurrency."""

from __future__ import annotations

import json
import time

import pytest
from tests.doubles.scripted_openai_server import (
    ScriptedOpenAIServer,
    drop_connection,
    hang,
    http_error,
    json_reply,
    malformed_body,
    rate_limited,
    reply,
)

from llms.cache import ResponseCache
from llms.client import LLMRequest
from llms.errors import ConfigError, LLMOutputInvalid, LLMRejected, LLMUnavailable
from llms.structured import grammar_safe
from societas.errors import SocietasError
from tests.llms.llm_testing import FAST_RETRY, VALID, Decision, client_for

# -- transient faults ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [http_error(500), http_error(503), rate_limited(0.05), hang(5.0), malformed_body(), drop_connection()],
    ids=["http500", "http503", "429", "hang", "malformed-body", "dropped-connection"],
)
def test_every_transient_fault_is_retried_and_recovered(server: ScriptedOpenAIServer, fault) -> None:
    server.push(fault, json_reply(VALID))
    client = client_for(server.url, timeout=0.5)

    assert client.complete("decide", schema=Decision) == Decision(**VALID)
    assert server.request_count == 2
    usage = client.accounting.usage("researcher")
    assert (usage.retries, usage.calls, usage.failures) == (1, 1, 0)


def test_rate_limit_waits_for_retry_after(server: ScriptedOpenAIServer) -> None:
    server.push(rate_limited(retry_after=0.4), reply("done"))
    client = client_for(server.url)

    started = time.monotonic()
    assert client.complete("hi") == "done"
    assert time.monotonic() - started >= 0.4


def test_exhausted_retries_end_in_one_line_error_naming_backend_and_cause(server: ScriptedOpenAIServer) -> None:
    server.default = http_error(500)
    client = client_for(server.url)

    with pytest.raises(LLMUnavailable) as caught:
        client.complete("hi")
    message = str(caught.value)
    assert isinstance(caught.value, SocietasError)
    assert "\n" not in message
    assert server.url in message and "HTTP 500" in message
    assert server.request_count == FAST_RETRY.attempts
    assert client.accounting.usage("researcher").failures == 1


def test_unreachable_url_is_a_one_line_user_error() -> None:
    with ScriptedOpenAIServer() as gone:
        url = gone.url  # a port that was just freed: nothing listens there now
    client = client_for(url)

    with pytest.raises(LLMUnavailable, match="connection failed") as caught:
        client.complete("hi")
    assert url in str(caught.value) and "\n" not in str(caught.value)


def test_client_errors_are_not_retried(server: ScriptedOpenAIServer) -> None:
    server.push(http_error(400))
    with pytest.raises(LLMRejected, match="HTTP 400"):
        client_for(server.url).complete("hi")
    assert server.request_count == 1


def test_http_401_without_a_key_asks_for_one(server: ScriptedOpenAIServer) -> None:
    server.push(http_error(401))
    with pytest.raises(ConfigError, match="needs an API key") as caught:
        client_for(server.url).complete("hi")
    assert "OPENAI_API_KEY" in str(caught.value)


def test_openai_backend_without_key_fails_before_any_request() -> None:
    with pytest.raises(ConfigError, match="no API key for openai"):
        client_for("openai").complete("hi")


def test_key_from_environment_is_sent(server: ScriptedOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCIETAS_LLM_API_KEY", "sk-test-123")
    seen = []
    original = server._httpd.RequestHandlerClass.do_POST

    def spy(handler):
        seen.append(handler.headers.get("Authorization"))
        original(handler)

    server._httpd.RequestHandlerClass.do_POST = spy
    try:
        client_for(server.url).complete("hi")
    finally:
        server._httpd.RequestHandlerClass.do_POST = original
    assert seen == ["Bearer sk-test-123"]


# -- structured output: validation and repair -----------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        reply('{"action": "fly", "reason": "wings"}'),
        reply("Sure! I would stay."),
        reply('{"action": "stay", "rea', finish_reason="length"),
        reply('{"action": "stay"}'),
    ],
    ids=["not-in-enum", "not-json", "truncated", "missing-field"],
)
def test_invalid_output_is_repaired_with_the_validation_error(server: ScriptedOpenAIServer, bad) -> None:
    server.push(bad, json_reply(VALID))
    client = client_for(server.url)

    assert client.complete("decide", schema=Decision) == Decision(**VALID)
    repair_turn = server.requests[1]["messages"]
    assert repair_turn[-2] == {"role": "assistant", "content": bad.content}
    assert "not valid" in repair_turn[-1]["content"] and '"action"' in repair_turn[-1]["content"]
    assert client.accounting.usage("researcher").repairs == 1


def test_output_still_invalid_after_repairs_is_rejected_never_returned(server: ScriptedOpenAIServer) -> None:
    server.default = reply('{"action": "fly", "reason": "wings"}')
    client = client_for(server.url, repairs=2)

    with pytest.raises(LLMOutputInvalid, match="Decision") as caught:
        client.complete("decide", schema=Decision)
    assert server.request_count == 3
    assert "\n" not in str(caught.value)


def test_fenced_json_is_accepted_without_repair(server: ScriptedOpenAIServer) -> None:
    server.push(reply(f"```json\n{json.dumps(VALID)}\n```"))
    assert client_for(server.url).complete("decide", schema=Decision) == Decision(**VALID)
    assert server.request_count == 1


def test_plain_text_without_schema(server: ScriptedOpenAIServer) -> None:
    server.push(reply("hello there"))
    client = client_for(server.url)
    assert client.complete([{"role": "user", "content": "hi"}], temperature=0.7, seed=3, max_tokens=20) == "hello there"
    body = server.requests[0]
    assert (body["temperature"], body["seed"], body["max_tokens"]) == (0.7, 3, 20)
    assert "response_format" not in body


# -- dialects ----------------------------------------------------------------------------------


def test_url_backend_sends_json_schema_dialect(server: ScriptedOpenAIServer) -> None:
    server.push(json_reply(VALID))
    client_for(server.url).complete("decide", schema=Decision)

    sent = server.response_formats[0]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["name"] == "Decision"
    assert sent["json_schema"]["schema"] == Decision.model_json_schema()


def test_llama_dialect_sends_json_object_with_schema(server: ScriptedOpenAIServer) -> None:
    server.push(json_reply(VALID))
    client_for(server.url, dialect="llama").complete("decide", schema=Decision)

    sent = server.response_formats[0]
    assert sent == {"type": "json_object", "schema": grammar_safe(Decision.model_json_schema())}
    assert "maxLength" not in sent["schema"]["properties"]["reason"]  # 80 > GRAMMAR_MAX_LENGTH: pydantic checks it


def test_model_is_discovered_from_the_server_when_not_given(server: ScriptedOpenAIServer) -> None:
    client = client_for(server.url)
    client.complete("hi")
    client.complete("hi again")
    assert [r["model"] for r in server.requests] == ["scripted-model", "scripted-model"]
    assert server.model_requests == 1
    assert client.model == "scripted-model"


# -- cache -------------------------------------------------------------------------------------


def test_cached_call_makes_no_request(server: ScriptedOpenAIServer, tmp_path) -> None:
    server.default = json_reply(VALID)
    client = client_for(server.url, cache=ResponseCache(tmp_path / "llm_cache.sqlite"))

    first = client.complete("decide", schema=Decision, seed=1)
    second = client.complete("decide", schema=Decision, seed=1)
    assert first == second and server.request_count == 1
    assert client.accounting.usage("researcher").cache_hits == 1

    client.complete("decide", schema=Decision, seed=2)  # another seed is another request
    assert server.request_count == 2


def test_cache_survives_a_new_client_and_process_view(server: ScriptedOpenAIServer, tmp_path) -> None:
    server.default = reply("cached text")
    path = tmp_path / "llm_cache.sqlite"
    client_for(server.url, cache=ResponseCache(path)).complete("hi")
    assert client_for(server.url, cache=ResponseCache(path)).complete("hi") == "cached text"
    assert server.request_count == 1


def test_invalid_output_is_never_cached(server: ScriptedOpenAIServer, tmp_path) -> None:
    server.default = reply("not json")
    cache = ResponseCache(tmp_path / "llm_cache.sqlite")
    with pytest.raises(LLMOutputInvalid):
        client_for(server.url, cache=cache, repairs=0).complete("decide", schema=Decision)
    assert len(cache) == 0


def test_cache_in_unwritable_place_is_a_user_error(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot write the LLM cache"):
        ResponseCache(blocker / "run" / "llm_cache.sqlite")


# -- concurrency and load balancing ------------------------------------------------------------


def test_async_concurrency_limit_is_respected(server: ScriptedOpenAIServer) -> None:
    server.default = json_reply(VALID, delay=0.1)
    client = client_for(server.url, max_concurrency=3)

    results = client.complete_many([LLMRequest(f"agent {i}", schema=Decision, role="agents") for i in range(12)])
    assert results == [Decision(**VALID)] * 12
    assert server.max_in_flight == 3
    assert client.accounting.usage("agents").calls == 12


def test_many_requests_report_failures_per_request_when_asked(server: ScriptedOpenAIServer) -> None:
    server.push(json_reply(VALID))
    server.default = reply("never json")
    client = client_for(server.url, max_concurrency=1, repairs=0)

    results = client.complete_many([LLMRequest(f"a{i}", schema=Decision) for i in range(3)], return_exceptions=True)
    assert results.count(Decision(**VALID)) == 1
    assert sum(isinstance(r, LLMOutputInvalid) for r in results) == 2


def test_complete_many_works_from_inside_a_running_event_loop(server: ScriptedOpenAIServer) -> None:
    import asyncio

    async def an_async_caller() -> list:
        return client_for(server.url).complete_many([LLMRequest("a"), LLMRequest("b")])

    assert asyncio.run(an_async_caller()) == ["ok", "ok"]


def test_requests_are_spread_round_robin_over_urls() -> None:
    with ScriptedOpenAIServer() as a, ScriptedOpenAIServer() as b:
        client = client_for(f"{a.url},{b.url}")
        for i in range(6):
            client.complete(f"q{i}")
        assert (a.request_count, b.request_count) == (3, 3)


def test_a_failed_endpoint_is_skipped() -> None:
    with ScriptedOpenAIServer() as gone:
        dead = gone.url
    with ScriptedOpenAIServer() as alive:
        client = client_for(f"{dead},{alive.url}")
        for i in range(4):
            assert client.complete(f"q{i}") == "ok"
        assert alive.request_count == 4
        assert client.accounting.usage("researcher").retries == 1  # only the first call hit the dead one


def test_accounting_counts_tokens_per_role(server: ScriptedOpenAIServer) -> None:
    client = client_for(server.url)
    client.complete("a", role="researcher", stage="analyze_topic")
    client.complete("b", role="reviewer", stage="review_report")
    client.complete("c", role="reviewer", stage="review_report")

    snap = client.accounting.snapshot()
    assert snap["stages"]["review_report"]["calls"] == 2
    assert snap["roles"]["reviewer"]["calls"] == 2
    assert snap["roles"]["reviewer"]["prompt_tokens"] == 20
    assert snap["roles"]["researcher"]["completion_tokens"] == 5
    assert snap["total"]["requests"] == 3
    json.dumps(snap)  # goes into manifest.json as is
