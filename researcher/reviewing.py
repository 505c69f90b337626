"""Reviewing a report: the reviewer model's rubric and comments, and a comment on the weakest
rubric dimension when the reviewer scored low but named no section."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

import prompts
from llms.errors import LLMOutputInvalid
from reports.markdown import substitute
from reports.models import SECTION_KEYS, Report, RubricScores, SectionComment

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


def review_digest(report: Report, per_section: int = 400) -> str:
    """What the reviewer reads: the title, each section's prose (clipped) and the verdicts.

    The tables and lists are code-made and already checked; a short prompt keeps a small model's
    context for the task and its answer.
    """
    parts = [f"Title: {report.title}"]
    for s in report.sections:
        body = substitute(s.body, report.facts, report.figures).strip() or "(no prose)"
        parts.append(f"## {s.title}\n{body[:per_section]}")
    parts.append("Verdicts: " + "; ".join(f"{v.hypothesis_id} {v.verdict}" for v in report.verdicts))
    return "\n".join(parts)


def llm_review(llm, report: Report, failed: list[str]) -> tuple[RubricScores | None, list[SectionComment], str]:
    """The reviewer model's scores and comments, given the failed checks; no scores and a note when
    its answer is invalid."""
    try:
        out = llm.complete(prompts.messages("review_report", report=review_digest(report),
                                            checks="\n".join(failed) or "none", sections=", ".join(SECTION_KEYS)),
                           schema=ReviewOutput, role="reviewer", max_tokens=400)
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
