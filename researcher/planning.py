"""The research plan's code side: a fallback plan from the topic's words when the model gives none,
and hypotheses numbered and deduplicated by code (the model names, code numbers)."""

from __future__ import annotations

import re

from researcher.schemas import Hypothesis, ResearchPlan, clip_plan

# Words that point at a domain, for the fallback plan when the LLM gives nothing usable.
DOMAIN_WORDS = {
    "economics": "wealth income inequality market price trade money tax firm economy cooperation public good",
    "sociology": "segregation neighborhood neighbourhood group norm culture community collective riot protest",
    "politics": "opinion polarization vote voter election party consensus political ideology",
    "psychology": "learning belief bias decision emotion prediction choice behavior behaviour cognitive",
    "organization": "organization organisation employee firm team adoption innovation management diffusion",
    "demographics": "epidemic disease infection population migration health contagion vaccine",
    "law": "law crime compliance audit enforcement punishment fine deterrence evasion legal",
    "communication": "rumor rumour information news media network spread misinformation message",
}


def guess_domain(topic: str) -> str:
    words = set(re.findall(r"[a-z]+", topic.lower()))
    scores = {d: len(words & set(w.split())) for d, w in DOMAIN_WORDS.items()}
    best = max(scores, key=lambda d: scores[d])
    return best if scores[best] > 0 else "sociology"


def fallback_plan(topic: str) -> ResearchPlan:
    """A plan built from the topic's words alone: honest, generic, always valid."""
    short = " ".join(topic.split())[:180] or "the topic"
    return ResearchPlan(
        title=f"A simulation study: {short[:120]}",
        domain=guess_domain(topic),
        summary=f"How do individual interactions produce the collective outcome asked about in: {short}",
        research_questions=[f"Which mechanism in an agent-based model reproduces the pattern in: {short}?"],
        hypotheses=[Hypothesis(id="H1", statement=f"The main driver named in the topic changes the outcome ({short[:100]})",
                               independent_variable="main driver", dependent_variable="collective outcome",
                               direction="increase")],
        theories=[],
    )


def normalise(plan: ResearchPlan) -> ResearchPlan:
    """Ids by code (H1..Hn), duplicates dropped, whitespace tidied: the LLM names, code numbers."""
    seen, hyps = set(), []
    for h in plan.hypotheses:
        key = (h.independent_variable.strip().lower(), h.dependent_variable.strip().lower(), h.direction)
        if key in seen:
            continue
        seen.add(key)
        hyps.append(h.model_copy(update={"id": f"H{len(hyps) + 1}", "statement": " ".join(h.statement.split())}))
    return clip_plan(plan.model_copy(update={"hypotheses": hyps}))
