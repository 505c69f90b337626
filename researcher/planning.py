"""The research plan's code side: a fallback plan from the topic's words when the model gives none,
and hypotheses numbered, deduplicated and checked by code (the model names, code numbers).

A hypothesis statement is shown in the model's wording only when that wording names its cause
and its effect and agrees with its direction (`statement_names`); otherwise code composes one
(`compose_statement`). Garbage ("Yes", "No,", `{{id}}`) therefore never reaches a report.
"""

from __future__ import annotations

import logging
import re

from researcher.retrieval import expand, tokenize
from researcher.schemas import Direction, Hypothesis, ResearchPlan, clip_plan

log = logging.getLogger(__name__)

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
    subject = short.rstrip("?.")
    return ResearchPlan(
        title=f"A simulation study: {short[:120]}",
        domain=guess_domain(topic),
        summary=f"How individual interactions in an agent-based simulation produce the collective outcome the topic asks about: {subject}.",
        research_questions=[short if short.endswith("?") else f"{short.rstrip('.')}?"],
        hypotheses=[generic_hypothesis(short)],
        theories=[],
    )


GENERIC_CAUSE = "main driver"  # the generic hypothesis's cause: no scenario parameter is it


def generic_hypothesis(subject: str) -> Hypothesis:
    """The honest hypothesis of a plan whose own ones were unusable: no scenario parameter matches it,
    so the design marks it untestable and runs an exploratory sweep."""
    subject = MARKUP.sub("", subject)[:100]
    return Hypothesis(id="H1", statement=f"The main driver named in the topic changes the outcome ({subject})",
                      independent_variable=GENERIC_CAUSE, dependent_variable="collective outcome",
                      direction="increase", statement_source="code")


def normalise(plan: ResearchPlan, topic: str | None = None) -> ResearchPlan:
    """Ids by code (H1..Hn), unusable and duplicate hypotheses dropped, each statement checked against
    its variables and direction (else composed by code): the LLM names, code numbers and checks.

    With the topic, what the model wrote must also be about it: a hypothesis neither of whose
    variables shares a word (thesaurus included) with the topic, a research question that shares
    none, or a summary that shares none is dropped. A 135M model copies its prompt's example
    ("tolerance", "polarization") into a plan about wealth, and echoes the instructions as its
    summary; none of that may reach a report."""
    seen, hyps = set(), []
    for h in plan.hypotheses:
        h = h.model_copy(update={"independent_variable": " ".join(h.independent_variable.split()),
                                 "dependent_variable": " ".join(h.dependent_variable.split()),
                                 "statement": " ".join(h.statement.split())})
        key = (h.independent_variable.lower(), h.dependent_variable.lower(), h.direction)
        if key in seen or not usable_variables(h.independent_variable, h.dependent_variable):
            log.info("hypothesis dropped (a duplicate, or no two distinct variables): %s", h.model_dump_json())
            continue
        if topic is not None and not (about(h.independent_variable, topic) or about(h.dependent_variable, topic)):
            log.info("hypothesis dropped (neither variable is about the topic): %s", h.model_dump_json())
            continue
        seen.add(key)
        hyps.append(checked(h).model_copy(update={"id": f"H{len(hyps) + 1}"}))
    update: dict = {"hypotheses": hyps or [generic_hypothesis(plan.title)]}
    if topic is not None:
        fallback = fallback_plan(topic)
        questions = [q for q in plan.research_questions if is_question(q) and about(q, topic)]
        update["research_questions"] = questions or fallback.research_questions
        if not (about(plan.summary, topic) and not MARKUP.search(plan.summary) and not _ECHO.search(plan.summary)):
            update["summary"] = fallback.summary
        if MARKUP.search(plan.title) or not about(plan.title, topic):
            update["title"] = fallback.title
    return clip_plan(plan.model_copy(update=update))


# The analyze_topic prompt's own words, which a small model returns as its answer.
_ECHO = re.compile(r"(?i)\b(?:the topic (?:is|restated)|research problem, in one|one or two sentences|as json)\b")
MAX_VARIABLE_WORDS = 8  # a variable is a noun phrase; a longer one is a sentence the model put in the wrong field


def about(text: str, topic: str) -> bool:
    """`text` shares a content word (stemmed, thesaurus included) with the topic."""
    return names_concept(text, topic)


def is_question(text: str) -> bool:
    """A question a study can answer: a sentence ending in a question mark, free of markup and digits."""
    text = text.strip()
    return (text.endswith("?") and len(text.split()) >= MIN_CLAIM_WORDS and not MARKUP.search(text)
            and not re.search(r"\d", text))


def checked(h: Hypothesis) -> Hypothesis:
    """The hypothesis in the model's wording when that names its variables and direction, else in code's."""
    if h.statement_source == "model" and statement_names(h.statement, h.independent_variable,
                                                         h.dependent_variable, h.direction):
        return h
    return h.model_copy(update={"statement": compose_statement(h.independent_variable, h.dependent_variable,
                                                               h.direction), "statement_source": "code"})


# --- checking a hypothesis statement -----------------------------------------------------------

MARKUP = re.compile(r"\{\{|\}\}|\{%|%\}|\$\{|<\||\|>")  # template syntax a model copied from its prompt
MIN_CLAIM_WORDS = 4  # a claim names a cause, an effect and a relation: "Yes" and "No," do not
_WORDS = re.compile(r"[a-z]+(?:'t)?")
_UP = frozenset("""increase increases increased increasing raise raises raised raising rise rises rising more greater
higher larger bigger grow grows growing boost boosts boosted promote promotes promoted enhance enhances enhanced
amplify amplifies amplified strengthen strengthens stronger faster accelerate accelerates foster fosters
fostered""".split())
_DOWN = frozenset("""decrease decreases decreased decreasing reduce reduces reduced reducing lower lowers lowered
lowering less fewer smaller weaker slower fall falls falling decline declines declining diminish diminishes
diminished weaken weakens weakened suppress suppresses suppressed prevent prevents prevented hinder hinders
hindered inhibit inhibits inhibited curb curbs curbed""".split())
_NO_EFFECT = re.compile(r"\bno (?:\w+ )?(?:effect|impact|influence|relationship|difference)\b|\bunchanged\b"
                        r"|\bunaffected\b|\bindependent of\b|\bnot (?:affect|change|alter|influence)\b")
_NEGATIONS = frozenset("not no never cannot nor neither without".split())


def stated_direction(statement: str) -> Direction | None:
    """The direction a sentence states for "raising the cause": each up word (more, raises) keeps the
    sign, each down word (less, reduces) flips it, so "Greater tolerance reduces polarization" is a
    decrease. None when it states none, or negates one ("does not reduce" is no clear claim)."""
    text = statement.lower()
    if _NO_EFFECT.search(text):
        return "no_effect"
    words = _WORDS.findall(text)
    if any(w in _NEGATIONS or w.endswith("n't") for w in words):
        return None
    signs = [1 if w in _UP else -1 for w in words if w in _UP or w in _DOWN]
    if not signs:
        return None
    return "increase" if signs.count(-1) % 2 == 0 else "decrease"


def claim_like(statement: str) -> bool:
    """Long enough to be a claim and free of template markup."""
    return len(statement.split()) >= MIN_CLAIM_WORDS and not MARKUP.search(statement)


def names_concept(statement: str, concept: str) -> bool:
    """The statement uses a word of the concept or one of its thesaurus neighbours (stemmed)."""
    return bool(set(tokenize(statement)) & set(expand(tokenize(concept))))


def statement_names(statement: str, cause: str, effect: str, direction: Direction) -> bool:
    """Keep the model's wording? Only a claim that names cause and effect and states the test's direction."""
    return (claim_like(statement) and names_concept(statement, cause) and names_concept(statement, effect)
            and stated_direction(statement) == direction)


def usable_variables(cause: str, effect: str) -> bool:
    """Both are short noun phrases (not markup, not sentences with numbers in them, not empty of
    content) and they differ: else there is nothing to test."""
    c, e = tokenize(cause), tokenize(effect)
    phrases = all(len(v.split()) <= MAX_VARIABLE_WORDS and not re.search(r"\d", v) for v in (cause, effect))
    return bool(c and e) and set(c) != set(e) and not MARKUP.search(cause + effect) and phrases


def compose_statement(cause: str, effect: str, direction: Direction) -> str:
    """A plain claim from the variables, correct by construction."""
    if direction == "no_effect":
        return f"Changing {cause} leaves {effect} unchanged."
    return f"Raising {cause} {'increases' if direction == 'increase' else 'decreases'} {effect}."


def describe_plan(plan: ResearchPlan) -> str:
    """The plan as the design prompts show it."""
    lines = [f"Title: {plan.title}", f"Domain: {plan.domain}", f"Summary: {plan.summary}", "Hypotheses:"]
    lines += [f"- {h.id}: {h.statement} (varies: {h.independent_variable}; measures: {h.dependent_variable}; "
              f"expected: {h.direction.replace('_', ' ')})" for h in plan.hypotheses]
    return "\n".join(lines)
