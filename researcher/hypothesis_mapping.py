"""Each hypothesis of a plan as a test in the chosen scenario: a parameter, a metric and a direction
over the scenario's real names (enums a tiny model cannot leave), or untestable with the reason.

The model's "not testable" (or its "(none)" option) is final; text matching stands in only when
the call fails, and only at MAP_SIMILARITY or above. The statement a report shows is the model's
wording when it names the test's variables and direction, else one composed by code.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field, create_model

import prompts
from llms.client import LLMClient
from llms.errors import LLMError, one_line
from researcher.budget import RICH_CONTEXT, context_of
from researcher.planning import GENERIC_CAUSE, checked, claim_like, compose_statement, stated_direction
from researcher.retrieval import best_matches
from researcher.schemas import Hypothesis, HypothesisTest, ResearchPlan
from simulator import ScenarioSpec

# Text matching maps a hypothesis variable onto a parameter or metric only at this retrieval relevance
# (`best_matches`) or above. On the labelled phrases in tests/researcher/test_hypotheses.py every wrong
# best match scored below 0.26 ("share of agents in the largest cluster" ~ clusters: 0.25) and most right
# ones above 0.3; 0.3 keeps a margin, at the cost of a few right matches (thinner, not wrong).
MAP_SIMILARITY = 0.3
NO_MATCH = "(none)"  # the mapping's "nothing fits" option; parentheses keep it apart from spec names
MAP_MAX_TOKENS = 200


def map_hypotheses(plan: ResearchPlan, spec: ScenarioSpec, llm: LLMClient | None,
                   fallbacks: list[str]) -> list[HypothesisTest]:
    """One test per hypothesis, by the LLM (enums of real names) or, when it fails, by text matching;
    each carries the statement the report shows for it."""
    tests = []
    trusted = llm is not None and context_of(llm) >= RICH_CONTEXT
    if llm is not None and not trusted:
        fallbacks.append(f"the researcher model holds {context_of(llm):,} tokens, under {RICH_CONTEXT:,}: too small a "
                         "model to map hypotheses (seen: it names a parameter for 'main driver'), so text matching "
                         f"mapped them, each only at relevance {MAP_SIMILARITY} or above")
    for h in plan.hypotheses:
        if h.independent_variable == GENERIC_CAUSE:
            tests.append(HypothesisTest(hypothesis_id=h.id, direction=h.direction, testable=False,
                                        statement=h.statement, statement_source="code",
                                        reason="the plan named no variable the topic is about"))
            continue
        test = _llm_mapping(h, spec, llm, fallbacks) if trusted else None
        tests.append(with_statement(test or text_mapping(h, spec), h, spec))
    return tests


def _ranked_options(query: str, docs: dict[str, str]) -> list[str]:
    """Names by text match, with NO_MATCH right after those above MAP_SIMILARITY: a tiny model that
    takes the first option gets the text match where there is one and "none" where there is not."""
    ranked = best_matches(query, docs)
    return ([n for n, r in ranked if r >= MAP_SIMILARITY] + [NO_MATCH]
            + [n for n, r in ranked if r < MAP_SIMILARITY])


def _llm_mapping(h: Hypothesis, spec: ScenarioSpec, llm: LLMClient, fallbacks: list[str]) -> HypothesisTest | None:
    """The LLM's (parameter, metric), or its "not testable", which is final; None when the call fails."""
    params = _ranked_options(h.independent_variable, _parameter_docs(spec))
    metrics = _ranked_options(h.dependent_variable, _metric_docs(spec))
    mapping_model = create_model(
        "HypothesisMapping", __config__=ConfigDict(extra="forbid"),
        parameter=(Literal[tuple(params)], ...),
        metric=(Literal[tuple(metrics)], ...),
        testable=(bool, ...),
        reason=(str, Field("", max_length=200)),
    )
    messages = prompts.messages(
        "design_map_hypotheses", scenario=f"{spec.title}. {spec.description.strip()}",
        statement=h.statement, independent=h.independent_variable, dependent=h.dependent_variable,
        parameters="\n".join(f"- {n}: {spec.parameters[n].description or n}" for n in params if n != NO_MATCH),
        metrics="\n".join(f"- {n}: {spec.metrics[n]}" for n in metrics if n != NO_MATCH),
        parameter_names=", ".join(params), metric_names=", ".join(metrics), none=NO_MATCH,
    )
    try:
        m = llm.complete(messages, schema=mapping_model, temperature=0.0, seed=0, max_tokens=MAP_MAX_TOKENS)
    except LLMError as exc:
        fallbacks.append(f"the LLM's mapping of {h.id} failed ({one_line(exc.message, 160)}); matched by text")
        return None
    if m.testable and NO_MATCH not in (m.parameter, m.metric):
        return HypothesisTest(hypothesis_id=h.id, parameter=m.parameter, metric=m.metric, direction=h.direction,
                              reason="mapped by the LLM")
    # The model's "not testable" is final: text matching would force the hypothesis onto a nearest name.
    return HypothesisTest(hypothesis_id=h.id, direction=h.direction, testable=False,
                          reason=_untestable_reason(h, spec, m.parameter, m.metric, m.reason))


def _untestable_reason(h: Hypothesis, spec: ScenarioSpec, parameter: str, metric: str, said: str) -> str:
    """Why the LLM found no test: its own words when they read as a reason, else what it chose."""
    said = " ".join(said.split())
    # The reason reaches the report: no numbers the model made up, no markup, no stray words.
    if claim_like(said) and not re.search(r"\d", said):
        return f"the LLM found it untestable in {spec.name}: {said.rstrip('.')}"
    missing = [f"no parameter for {h.independent_variable!r}"] if parameter == NO_MATCH else []
    missing += [f"no metric for {h.dependent_variable!r}"] if metric == NO_MATCH else []
    return f"the LLM found {' and '.join(missing) or 'no fitting parameter and metric'} in {spec.name}"


def text_mapping(h: Hypothesis, spec: ScenarioSpec) -> HypothesisTest:
    """Deterministic: the parameter and metric whose names and descriptions best match the hypothesis's
    variables, each only at MAP_SIMILARITY or above; else untestable, saying what did not match."""
    param, p_score = best_matches(h.independent_variable, _parameter_docs(spec))[0]
    metric, m_score = best_matches(h.dependent_variable, _metric_docs(spec))[0]
    if p_score >= MAP_SIMILARITY and m_score >= MAP_SIMILARITY:
        return HypothesisTest(hypothesis_id=h.id, parameter=param, metric=metric, direction=h.direction,
                              reason=f"matched by text: {h.independent_variable!r} ~ {param}, "
                                     f"{h.dependent_variable!r} ~ {metric}")
    misses = [f"no parameter of {spec.name} matches {h.independent_variable!r} (parameters: "
              f"{', '.join(_parameter_docs(spec))})"] if p_score < MAP_SIMILARITY else []
    misses += [f"no metric of {spec.name} matches {h.dependent_variable!r} (metrics: "
               f"{', '.join(spec.metrics)})"] if m_score < MAP_SIMILARITY else []
    return HypothesisTest(hypothesis_id=h.id, direction=h.direction, testable=False, reason="; ".join(misses))


def with_statement(test: HypothesisTest, h: Hypothesis, spec: ScenarioSpec) -> HypothesisTest:
    """The statement shown for a test: the plan's, when a testable one names its parameter and metric
    (each the best-matching of its kind in the statement) and states its direction; else composed
    from their descriptions. An untestable test keeps the plan's statement, checked against its variables."""
    if not test.testable or test.parameter is None or test.metric is None:
        h = checked(h)
        return test.model_copy(update={"statement": h.statement, "statement_source": h.statement_source})
    if (h.statement_source == "model" and claim_like(h.statement) and stated_direction(h.statement) == test.direction
            and _names_best(h.statement, test.parameter, _parameter_docs(spec))
            and _names_best(h.statement, test.metric, _metric_docs(spec))):
        return test.model_copy(update={"statement": h.statement, "statement_source": "model"})
    cause = f"{_concept(spec.parameters[test.parameter].description, test.parameter)} ({test.parameter})"
    effect = _concept("", test.metric)
    effect += "" if effect == test.metric else f" ({test.metric})"
    return test.model_copy(update={"statement": compose_statement(cause, effect, test.direction),
                                   "statement_source": "code"})


def _names_best(statement: str, name: str, docs: dict[str, str]) -> bool:
    """The statement matches `name` at least as well as any other name of its kind, and above zero."""
    scores = dict(best_matches(statement, docs))
    return scores.get(name, 0.0) > 0 and scores[name] >= max(scores.values())


def _concept(description: str, name: str) -> str:
    """A description's first clause, lowercased as it reads mid-sentence ("Confidence bound; agents ..."
    gives "the confidence bound"), or the name's words."""
    plain = re.sub(r"\s*\([^)]*\)", "", description.strip())  # "Initial (and mean) wealth" reads "Initial wealth"
    clause = re.split(r"[;:.,]", plain, maxsplit=1)[0].strip()
    if not clause:
        return name.replace("_", " ")
    if not clause[1:2].isupper():  # keep acronyms such as "GDP"
        clause = clause[0].lower() + clause[1:]
    return clause if clause.split()[0] in ("the", "a", "an") else f"the {clause}"


def _parameter_docs(spec: ScenarioSpec) -> dict[str, str]:
    return {n: f"{n} {spec.parameters[n].description}" for n in sweepable_parameters(spec)}


def _metric_docs(spec: ScenarioSpec) -> dict[str, str]:
    return {n: f"{n} {e}" for n, e in spec.metrics.items()}


def settle_sweep(tests: list[HypothesisTest], spec: ScenarioSpec) -> tuple[str, list[HypothesisTest], str]:
    """The one swept parameter (the first testable hypothesis's); tests about others become untestable."""
    testable = [t for t in tests if t.testable and t.parameter in spec.parameters]
    if not testable:
        swept = sweepable_parameters(spec)[0]
        note = f"No hypothesis maps to a parameter of {spec.name}; an exploratory sweep of {swept}."
        return swept, tests, note
    swept = testable[0].parameter
    out = []
    for t in tests:
        if t.testable and t.parameter != swept:
            t = t.model_copy(update={"testable": False, "reason": f"this design sweeps {swept} only "
                                     f"({t.parameter} stays at its default)"})
        out.append(t)
    return swept, out, f"Tests {', '.join(t.hypothesis_id for t in out if t.testable)} by sweeping {swept}."


def sweepable_parameters(spec: ScenarioSpec) -> list[str]:
    """Parameters with room to vary: not pinned to a single value."""
    return [n for n, p in spec.parameters.items() if p.min is None or p.max is None or p.max > p.min]
