"""A capable model gets what it needs, and the embedded one still gets prompts that fit its context.

Writers see each fact's value beside its placeholder, the hypotheses with their tests and verdicts and
the scenario's mechanics; the reviewer sees whole sections; the reference list holds the scenario's own
references. Everything is sized to the client's `context_tokens`: the embedded model's 4,096 tokens
(estimated as characters / 3.5) must hold every prompt and its answer.
"""

from __future__ import annotations

import pytest

from llms.backends import DEFAULT_REMOTE_CONTEXT, parse_backend
from llms.client import LLMClient
from llms.endpoints import Backend
from llms.errors import ConfigError
from llms.retry import RetryPolicy
from reports.citations import cited_references, parse_reference, shipped
from reports.models import SECTION_KEYS, SECTION_TITLES, Fact, Report, Section, Verdict
from researcher.analysis import Findings
from researcher.budget import prompt_tokens
from researcher.reviewing import REVIEW_TOKENS, llm_review, review_messages
from researcher.schemas import ExperimentDesign, Hypothesis, HypothesisTest, ResearchPlan
from researcher.writing import (PROSE_TOKENS, WritingContext, prose_budget, references, section_messages,
                                write_prose)
from simulator import load_scenario
from tests.doubles.capable_server import CapableServer
from tests.doubles.schema_server import SchemaAwareServer

EMBEDDED_CONTEXT = 4096


def _facts(count: int, description: str = "") -> list[Fact]:
    settled = Fact(id="F1", description="Share of runs in which clusters settled", value=1.0, n=20, source="metrics")
    means = [Fact(id=f"F{i}", description=description or f"Mean final clusters at epsilon = {i / 10:g} over 5 seeds",
                  value=1.5 + i, ci_low=1.0 + i, ci_high=2.0 + i, n=5, source="final.parquet")
             for i in range(2, count + 1)]
    return [settled, *means]


def _context(tmp_path, *, facts: int = 6, topic: str = "Does greater tolerance lead to consensus?",
             hypotheses: int = 1, description: str = "") -> WritingContext:
    spec = load_scenario("deffuant")
    plan = ResearchPlan(
        title="Tolerance and consensus", domain="politics", summary="Whether tolerance yields consensus.",
        research_questions=["Does a wider confidence bound reduce the number of opinion clusters?"],
        hypotheses=[Hypothesis(id=f"H{i}", statement=f"Wider tolerance leaves fewer opinion clusters (variant {i})",
                               independent_variable="epsilon", dependent_variable="clusters", direction="decrease")
                    for i in range(1, hypotheses + 1)],
        theories=["bounded confidence"])
    design = ExperimentDesign(scenario="deffuant", swept_parameter="epsilon", values=[0.1, 0.2, 0.3, 0.5],
                              fixed={"mu": 0.5}, seeds=[0, 1, 2, 3, 4], steps=300, population=200,
                              tests=[HypothesisTest(hypothesis_id=h.id, parameter="epsilon", metric="clusters",
                                                    direction="decrease") for h in plan.hypotheses])
    verdicts = [Verdict(hypothesis_id=h.id, statement=h.statement, verdict="supported", parameter="epsilon",
                        metric="clusters", reason="clusters fall as epsilon rises", fact_ids=["F2", "F3"])
                for h in plan.hypotheses]
    findings = Findings(facts=_facts(facts, description), verdicts=verdicts)
    return WritingContext(topic=topic, plan=plan, design=design, spec=spec, findings=findings, run_dir=tmp_path,
                          config={"seeds": 5}, notes=[], models={})


def _client(url: str) -> LLMClient:
    return LLMClient(Backend(parse_backend(url), timeout=5.0), retry=RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.02))


@pytest.fixture
def capable(monkeypatch):
    monkeypatch.setenv("SOCIETAS_LLM_CONTEXT", "32768")
    with CapableServer() as server:
        yield server, _client(server.url)


@pytest.fixture
def tiny(monkeypatch):
    """A server answering as the tiny model does (invented numbers, a heading), with its context size."""
    monkeypatch.setenv("SOCIETAS_LLM_CONTEXT", str(EMBEDDED_CONTEXT))
    with SchemaAwareServer() as server:
        yield server, _client(server.url)


def _prompt(request: dict) -> str:
    return "\n".join(m["content"] for m in request["messages"])


def test_a_capable_writer_sees_fact_values_hypothesis_statements_and_the_mechanics(capable, tmp_path):
    server, client = capable
    ctx = _context(tmp_path)
    prose, notes = write_prose(client, "results", ctx)
    request = server.requests[-1]
    prompt = _prompt(request)
    assert "{{F1}} = 1 (n = 20): Share of runs in which clusters settled" in prompt  # "all runs", not "only"
    assert "{{F2}} = 3.5 (95% CI 3 to 4, n = 5)" in prompt
    assert ctx.plan.hypotheses[0].statement in prompt and "raising `epsilon` is expected to decrease `clusters`" in prompt
    assert " ".join(ctx.spec.odd.process.split()) in " ".join(prompt.split())
    assert ctx.spec.parameters["epsilon"].description in prompt
    assert "`polarization` = polarization(opinion); polarization: mean |xi - xj|" in prompt  # what a metric means
    assert "Hegselmann, Rainer; Krause, Ulrich (2002)" in prompt  # the entries the reference list will hold
    assert request["max_tokens"] > PROSE_TOKENS  # sized to the section's content, not the small model's cap
    assert "{{F1}}" in prose and not notes  # a capable answer passes the gate whole


def test_results_get_a_larger_budget_with_more_facts_but_the_small_model_keeps_its_cap(tmp_path):
    few, many = _context(tmp_path, facts=4), _context(tmp_path, facts=30)
    assert prose_budget("results", many, 32768) > prose_budget("results", few, 32768)
    assert prose_budget("reproducibility", few, 32768) < prose_budget("discussion", few, 32768)
    assert max(prose_budget(k, many, EMBEDDED_CONTEXT) for k in SECTION_KEYS) == PROSE_TOKENS


def test_a_revision_sees_the_comment_the_facts_with_values_and_the_whole_current_text(capable, tmp_path):
    server, client = capable
    ctx = _context(tmp_path)
    current = "The discussion so far. " * 120  # longer than the small model's clip
    write_prose(client, "discussion", ctx, comment="Say that every run settled.", previous=current)
    prompt = _prompt(server.requests[-1])
    assert "Say that every run settled." in prompt and "{{F1}} = 1" in prompt
    assert current.strip() in prompt


def test_a_tiny_model_gets_the_short_prompt_its_cap_and_a_clipped_review(tiny, tmp_path):
    server, client = tiny
    ctx = _context(tmp_path, facts=30)
    prose, _ = write_prose(client, "discussion", ctx)
    request = server.requests[-1]
    assert request["max_tokens"] == PROSE_TOKENS and prompt_tokens(request["messages"]) + PROSE_TOKENS <= EMBEDDED_CONTEXT
    assert "Process and scheduling" not in _prompt(request) and "{{F1}} = 1" in _prompt(request)  # the short form
    assert "## Heading" not in prose  # what the tiny model wrote still goes through the cleaning
    scores, _, note = llm_review(client, _report("Long. " * 2000), [])
    request = server.requests[-1]
    assert "clipped to its first 400 characters" in _prompt(request) and request["max_tokens"] == REVIEW_TOKENS["small"]
    assert scores is not None or note


@pytest.mark.parametrize("key", SECTION_KEYS)
def test_embedded_sized_write_and_revise_prompts_fit_its_context(tmp_path, key):
    """The worst case the pipeline produces: three hypotheses, many long facts, a long topic and text."""
    ctx = _context(tmp_path, facts=40, hypotheses=3, topic="tolerance " * 600, description="a long meaning " * 20)
    budget = prose_budget(key, ctx, EMBEDDED_CONTEXT)
    for extra in ({}, {"comment": "Rewrite it. " * 40, "previous": "Old text. " * 400}):
        messages = section_messages(key, ctx, EMBEDDED_CONTEXT, budget, **extra)
        assert prompt_tokens(messages) + budget <= EMBEDDED_CONTEXT
        text = "\n".join(m["content"] for m in messages)
        assert ctx.spec.odd.purpose not in text  # the short form: no mechanics for the small model
        assert "{{F1}} = 1" in text and ctx.plan.hypotheses[2].statement in text


def _report(body: str, long_key: str = "discussion") -> Report:
    sections = [Section(key=k, title=SECTION_TITLES[k], body=body if k == long_key else f"Short {k} prose.")
                for k in SECTION_KEYS]
    verdict = Verdict(hypothesis_id="H1", statement="Wider tolerance leaves fewer clusters", verdict="supported",
                      reason="clusters fall with epsilon across {{F1}} of runs", fact_ids=["F1"])
    return Report(version=1, title="Tolerance and consensus", sections=sections, facts=_facts(4), verdicts=[verdict])


def test_the_capable_reviewer_sees_a_whole_long_section(capable):
    server, client = capable
    body = " ".join(f"Sentence {i} of a long discussion about clusters." for i in range(150))  # ~7,000 chars
    scores, comments, note = llm_review(client, _report(body), [])
    prompt = _prompt(server.requests[-1])
    assert body in prompt and "whole sections" in prompt and "{{F1}} = 1" in prompt
    assert "clusters fall with epsilon across 1 of runs" in prompt  # verdict reasons with values, as the prose
    assert scores is not None and scores.overall == 4 and not note


def test_a_report_too_long_for_the_context_is_clipped_evenly_and_says_so():
    body = "A very long discussion. " * 4000  # ~96,000 characters: more than a 16k context holds
    messages = review_messages(_report(body), [], 16384, REVIEW_TOKENS["rich"])
    text = "\n".join(m["content"] for m in messages)
    assert prompt_tokens(messages) + REVIEW_TOKENS["rich"] <= 16384
    assert "clipped to its first" in text and "Short results prose." in text  # short sections stay whole


def test_the_embedded_reviewer_prompt_fits_its_context():
    messages = review_messages(_report("Long. " * 5000, long_key="results"), ["check failed. " * 30] * 5,
                               EMBEDDED_CONTEXT, REVIEW_TOKENS["small"])
    assert prompt_tokens(messages) + REVIEW_TOKENS["small"] <= EMBEDDED_CONTEXT
    assert "clipped to its first 400 characters" in messages[-1]["content"]


def test_references_include_the_scenarios_own_beside_the_matched_bibliography(tmp_path):
    ctx = _context(tmp_path)
    ctx.spec = ctx.spec.model_copy(update={"references": [
        *ctx.spec.references, "Hegselmann, R. and Krause, U. (2002). Opinion dynamics and bounded confidence. JASSS, 5(3).",
        "Smith, J. (2019). A model nobody shipped. Journal of Examples, 12, 3-4."]})
    refs = references(ctx)
    keys = [r.key for r in refs]
    assert "deffuant2000" in keys and "hegselmann2002" in keys  # shipped entries, each once
    assert len(keys) == len(set(keys)) and sum(r.title.lower().startswith("mixing beliefs") for r in refs) == 1
    [smith] = [r for r in refs if r.key == "smith2019"]
    assert (smith.authors, smith.year, smith.title, smith.venue, smith.details) == (
        "Smith, J.", "2019", "A model nobody shipped", "Journal of Examples", "12, 3-4")


def test_a_scenario_reference_is_read_loosely_and_never_completed():
    rogers = parse_reference("Rogers, E. M. (2003). Diffusion of Innovations.")
    assert (rogers.title, rogers.venue, rogers.year) == ("Diffusion of Innovations", "", "2003")
    both = parse_reference("Sood, V. and Redner, S. (2005). Voter model on heterogeneous graphs. Physical Review Letters.")
    assert both.authors == "Sood, V. and Redner, S." and both.venue == "Physical Review Letters"
    assert parse_reference("the classic voter model") is None
    assert [r.key for r in cited_references([], ["the classic voter model"], [])] == []
    assert [r.key for r in cited_references([], ["Rogers, E. M. (2003). Diffusion.", "Rogers, E. (2003). Again."],
                                            shipped())].count("rogers2003") == 1


def test_the_client_knows_its_context(monkeypatch):
    monkeypatch.delenv("SOCIETAS_LLM_CONTEXT", raising=False)
    assert LLMClient(Backend(parse_backend("http://127.0.0.1:9/v1"))).context_tokens == DEFAULT_REMOTE_CONTEXT
    assert LLMClient(Backend(parse_backend("embedded"))).context_tokens == EMBEDDED_CONTEXT
    monkeypatch.setenv("SOCIETAS_LLM_CONTEXT", "8192")
    assert LLMClient(Backend(parse_backend("http://127.0.0.1:9/v1"))).context_tokens == 8192
    monkeypatch.setenv("SOCIETAS_LLM_CONTEXT", "lots")
    with pytest.raises(ConfigError, match="SOCIETAS_LLM_CONTEXT"):
        Backend(parse_backend("http://127.0.0.1:9/v1"))
