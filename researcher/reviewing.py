"""Reviewing a report: the reviewer model's rubric and comments, and a comment on the weakest
rubric dimension when the reviewer scored low but named no section."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

import prompts
from llms.errors import LLMOutputInvalid
from reports.markdown import substitute
from reports.models import SECTION_KEYS, Report, RubricScores, SectionComment
from researcher.budget import CHARS_PER_TOKEN, RICH_CONTEXT, context_of, fits, prompt_tokens
from researcher.writing import fact_line

Score = Literal[1, 2, 3, 4, 5]  # an enum, not ge/le: llama.cpp's grammar enforces enums but not integer bounds


class _ReviewComment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    section: Literal[SECTION_KEYS]  # type: ignore[valid-type]
    comment: str = Field(min_length=1)  # no maxLength: see llms.structured.grammar_safe
    priority: Literal[1, 2, 3] = 2


class ReviewOutput(BaseModel):
    """What the reviewer model returns (the LLM-facing form of `RubricScores` plus comments)."""

    model_config = ConfigDict(extra="forbid")
    soundness: Score
    insight: Score
    structure: Score
    content: Score
    utility: Score
    overall: Score
    comments: list[_ReviewComment] = Field(default_factory=list, max_length=4)


SMALL_REVIEW_CHARS = 400  # per section for a small model: its context is for the task and its answer
REVIEW_TOKENS = {"small": 400, "rich": 1000}  # four comments and six scores; a capable model explains more
# How long a comment may be: a small model rambles; a capable one's comment is the reviser's brief.
REVIEW_ADVICE = {"small": "in at most fifteen words",
                 "rich": "in one to three sentences that name the claim or passage to change and how"}


def review_digest(report: Report, per_section: int | None = None, *, facts: bool = False) -> str:
    """What the reviewer reads: the title, each section's prose (whole, or clipped to `per_section`
    characters with a visible mark), the verdicts with their reasons and, with `facts`, every fact.

    The tables and lists are code-made and already checked, so only the prose is shown.
    """
    parts = [f"Title: {report.title}"]
    for s in report.sections:
        body = substitute(s.body, report.facts, report.figures).strip() or "(no prose)"
        if per_section is not None and len(body) > per_section:
            body = body[:per_section].rstrip() + " [...]"
        parts.append(f"## {s.title}\n{body}")
    parts.append("Verdicts computed by the statistics:\n" + "\n".join(
        f"- {v.hypothesis_id} {v.verdict}: {v.statement}"
        + (f" ({substitute(v.reason, report.facts, report.figures)})" if facts else "") for v in report.verdicts))
    if facts and report.facts:
        parts.append("Facts (placeholder = value: meaning):\n" + "\n".join(fact_line(f) for f in report.facts))
    return "\n".join(parts)


def fair_cap(lengths: list[int], room: int) -> int | None:
    """The largest per-section length such that the clipped sections fit `room` characters (short
    sections keep their text and leave their share to the long ones); None when all fit whole."""
    for i, n in enumerate(sorted(lengths)):
        share = room // (len(lengths) - i)
        if n > share:
            return max(share, 0)
        room -= n
    return None


def review_messages(report: Report, failed: list[str], context: int, max_tokens: int) -> list[dict[str, str]]:
    """The review prompt: whole sections and every fact when the context holds them, else each
    section clipped to what fits (at most SMALL_REVIEW_CHARS for a small model), which the prompt says."""
    rich = context >= RICH_CONTEXT

    def render(per_section: int | None) -> list[dict[str, str]]:
        shown = ("whole sections" if per_section is None else
                 f"each section's prose clipped to its first {per_section} characters, marked [...]")
        return prompts.messages("review_report", report=review_digest(report, per_section, facts=rich), shown=shown,
                                checks="\n".join(failed) or "none", sections=", ".join(SECTION_KEYS),
                                advice=REVIEW_ADVICE["rich" if rich else "small"])

    messages = render(None if rich else SMALL_REVIEW_CHARS)
    if rich and fits(messages, max_tokens, context):
        return messages
    lengths = [len(substitute(s.body, report.facts, report.figures).strip()) for s in report.sections]
    room = int((context - max_tokens - prompt_tokens(render(0))) * CHARS_PER_TOKEN)
    cap = fair_cap(lengths, room)
    if not rich:
        cap = min(cap if cap is not None else SMALL_REVIEW_CHARS, SMALL_REVIEW_CHARS)
    return render(cap)


def llm_review(llm, report: Report, failed: list[str]) -> tuple[RubricScores | None, list[SectionComment], str]:
    """The reviewer model's scores and comments, given the failed checks; no scores and a note when
    its answer is invalid."""
    context = context_of(llm)
    max_tokens = REVIEW_TOKENS["rich" if context >= RICH_CONTEXT else "small"]
    try:
        out = llm.complete(review_messages(report, failed, context, max_tokens), schema=ReviewOutput,
                           role="reviewer", max_tokens=max_tokens)
    except LLMOutputInvalid as exc:  # an unreachable backend raises: the run stops, resumable
        return None, [], f"The reviewer model gave no valid review ({exc.message})."
    scores = RubricScores(**{k: getattr(out, k) for k in RubricScores.model_fields})
    comments = [SectionComment(section=c.section, comment=c.comment, priority=c.priority) for c in out.comments]
    return scores, comments, ""


# Where a low rubric score is best answered, when the reviewer names no section itself.
RUBRIC_SECTIONS = {
    "soundness": ("discussion", "tie every claim to a fact of the Results, and say where the evidence is weak"),
    "insight": ("discussion", "explain what the results mean for the research questions, not only what they are"),
    "content": ("results", "walk through each hypothesis's facts and what the figures show"),
    "utility": ("conclusion", "say what a reader can do with these findings, and what to study next"),
    "structure": ("introduction", "state the question, the hypotheses and how the study tests them, in that order"),
}


def rubric_comments(scores: RubricScores | None, comments: list[SectionComment], bar: int) -> list[SectionComment]:
    """A comment on the weakest rubric dimension's section when the score is below the bar and the
    reviewer named no section to fix: a small reviewer often scores without commenting, and without
    a comment the revision budget would go unused."""
    if scores is None or scores.overall >= bar or any(c.priority <= 2 for c in comments):
        return []
    dimension = min(RUBRIC_SECTIONS, key=lambda d: getattr(scores, d))  # ties: the order above
    section, advice = RUBRIC_SECTIONS[dimension]
    return [SectionComment(section=section, priority=2, source="reviewer",
                           comment=f"The reviewer scored {dimension} {getattr(scores, dimension)}/5 and overall "
                                   f"{scores.overall}/5 without naming a section; {advice}.")]
