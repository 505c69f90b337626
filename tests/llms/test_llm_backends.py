"""`--llm` values, dialect choice per backend, roles sharing backends, prompt templates."""

from __future__ import annotations

from pathlib import Path

import pytest

import prompts
from llms.backends import Dialect, Kind, parse_backend
from llms.endpoints import Backend
from llms.errors import ConfigError
from llms.roles import LLMSet
from llms.structured import grammar_safe, response_format
from tests.doubles.scripted_openai_server import ScriptedOpenAIServer, json_reply
from tests.llms.llm_testing import VALID, Decision


def test_default_backend_is_embedded_with_llama_dialect() -> None:
    spec = parse_backend(None)
    assert spec.kind is Kind.EMBEDDED and spec.managed
    assert spec.effective_dialect is Dialect.LLAMA


@pytest.mark.parametrize(
    ("text", "kind", "urls", "model"),
    [
        ("http://gpu1:8000", Kind.URL, ("http://gpu1:8000/v1",), None),
        ("http://a:8000/v1, https://b/v1/", Kind.URL, ("http://a:8000/v1", "https://b/v1"), None),
        ("openai", Kind.OPENAI, ("https://api.openai.com/v1",), "gpt-4o-mini"),
        ("openai:gpt-4.1", Kind.OPENAI, ("https://api.openai.com/v1",), "gpt-4.1"),
        ("vllm:Qwen/Qwen2.5-1.5B-Instruct", Kind.VLLM, (), "Qwen/Qwen2.5-1.5B-Instruct"),
    ],
)
def test_remote_backends_parse_and_use_json_schema_dialect(text, kind, urls, model) -> None:
    spec = parse_backend(text)
    assert (spec.kind, spec.urls, spec.model) == (kind, urls, model)
    assert spec.effective_dialect is Dialect.JSON_SCHEMA


def test_dialect_can_be_overridden() -> None:
    assert parse_backend("http://x:1", dialect="llama").effective_dialect is Dialect.LLAMA
    assert parse_backend("embedded", dialect="json_schema").effective_dialect is Dialect.JSON_SCHEMA


@pytest.mark.parametrize("text", ["ollama", "vllm:", "http://", "http://host:port", "ftp://x"])
def test_bad_llm_values_are_user_errors_with_a_hint(text) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_backend(text)
    assert caught.value.hint


def test_response_format_per_dialect() -> None:
    schema = Decision.model_json_schema()
    assert response_format(Decision, Dialect.LLAMA) == {"type": "json_object", "schema": grammar_safe(schema)}
    assert response_format(Decision, Dialect.JSON_SCHEMA, strict=True) == {
        "type": "json_schema",
        "json_schema": {"name": "Decision", "schema": schema, "strict": True},
    }


def test_grammar_for_llama_drops_what_crashes_or_stalls_it() -> None:
    schema = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^\\d+$", "maxLength": 8},
            "essay": {"type": "string", "maxLength": 500},
            "pattern": {"type": "string"},  # a property named like a keyword stays
        },
    }
    safe = grammar_safe(schema)
    assert safe["properties"]["code"] == {"type": "string", "maxLength": 8}
    assert safe["properties"]["essay"] == {"type": "string"}
    assert safe["properties"]["pattern"] == {"type": "string"}
    assert "pattern" in schema["properties"]["code"]  # the input is not mutated


def test_missing_gguf_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GGUF model file not found"):
        Backend(parse_backend("embedded", model_path=tmp_path / "nope.gguf"))


def test_roles_default_to_llm_and_share_one_backend(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(default=json_reply(VALID)) as server:
        models = LLMSet.from_options(server.url, run_folder=tmp_path)
        assert models.researcher.backend is models.agents.backend is models.reviewer.backend
        models.agents.complete("decide", schema=Decision)
        models.agents.complete("decide", schema=Decision)  # served from <run>/llm_cache.sqlite
        assert server.request_count == 1
        assert (tmp_path / "llm_cache.sqlite").exists()

        snap = models.snapshot()
        assert snap["models"]["agents"] == {"backend": server.url, "model": "scripted-model", "dialect": "json_schema"}
        assert snap["usage"]["roles"]["agents"]["cache_hits"] == 1


def test_roles_can_use_different_backends() -> None:
    with ScriptedOpenAIServer() as main, ScriptedOpenAIServer() as reviewer:
        models = LLMSet.from_options(main.url, reviewer_llm=reviewer.url)
        assert models.researcher.backend is models.agents.backend
        assert models.reviewer.backend is not models.researcher.backend
        models.reviewer.complete("review this")
        assert (main.request_count, reviewer.request_count) == (0, 1)


def test_prompts_render_by_name_with_variables() -> None:
    msgs = prompts.messages("llm_check", message="What a lovely day")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert 'Message: "What a lovely day"' in msgs[1]["content"]
    assert "$" not in prompts.render("repair_json", error="bad", schema="{}")


def test_prompt_missing_variable_fails_loudly() -> None:
    with pytest.raises(prompts.PromptError, match="message"):
        prompts.render("llm_check")
    with pytest.raises(prompts.PromptError):
        prompts.load("../secrets")


def test_template_hash_is_the_sha256_of_the_file() -> None:
    import hashlib

    path = Path(prompts.__file__).parent / "llm_check.md"
    assert prompts.template_hash("llm_check") == hashlib.sha256(path.read_bytes()).hexdigest()
    assert set(prompts.template_hashes()) >= {"llm_check", "repair_json"}


def _open_and_write_cache(path: str, worker: int, barrier) -> None:
    from llms.cache import ResponseCache

    barrier.wait()  # every process opens the new file at the same moment
    cache = ResponseCache(path)
    for j in range(10):
        cache.put(f"{worker}-{j}", "model", "answer")
        assert cache.get(f"{worker}-{j}") == "answer"


def test_many_processes_can_open_one_new_cache_at_once(tmp_path):
    """Ray tasks of one run share its cache file; SQLite's switch to WAL used to say 'locked' to some."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    for trial in range(3):
        path = str(tmp_path / f"cache{trial}.sqlite")
        barrier = ctx.Barrier(8)
        procs = [ctx.Process(target=_open_and_write_cache, args=(path, i, barrier)) for i in range(8)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        assert [p.exitcode for p in procs] == [0] * 8
        from llms.cache import ResponseCache

        assert len(ResponseCache(path)) == 80
