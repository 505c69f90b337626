"""write_report, review_report, revise_report, finalize: the report and its review loop."""

from __future__ import annotations

import logging
import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

import prompts
from llms.errors import LLMOutputInvalid
from reports.checks import comments_from_checks, run_checks
from reports.citations import load_bibliography, match_references
from reports.markdown import substitute
from reports.models import (
    SECTION_KEYS,
    SECTION_TITLES,
    Reference,
    Report,
    Review,
    RubricScores,
    Section,
    SectionComment,
)
from researcher.analysis import Findings
from researcher.nodes._stage import emit, stage
from researcher.schemas import ExperimentDesign, ResearchPlan
from researcher.state import Deps, ResearchConfig, ResearchState
from researcher.writing import (
    NO_TEX_NOTICE,
    Rendered,
    WritingContext,
    build_sections,
    generated_markdown,
    load_report,
    report_dir,
    save_report,
    write_prose,
)
from simulator.spec import load_spec
from societas.runs import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


def writing_context(state: ResearchState, deps: Deps) -> WritingContext:
    models = getattr(deps.llms, "describe", lambda: {})()
    labels = {role: f"{info.get('model') or 'unknown model'} via {info.get('backend', 'unknown backend')}"
              for role, info in models.items()}
    return WritingContext(
        topic=state["topic"],
        plan=ResearchPlan.model_validate(state["plan"]),
        design=ExperimentDesign.model_validate(state["design"]),
        spec=load_spec(deps.run_dir / "scenario.yaml"),
        findings=Findings.load(deps.run_dir),
        run_dir=deps.run_dir,
        config=state["config"],
        notes=list(dict.fromkeys(state.get("notes", []))),
        models=labels,
    )


def references(ctx: WritingContext) -> list[Reference]:
    """Bibliography entries (shipped, or the user's --bib) that the plan's theories or the scenario name."""
    texts = [*ctx.plan.theories, *ctx.spec.references, ctx.spec.name.replace("_", " "), ctx.spec.title]
    return match_references(texts, load_bibliography(ctx.config.get("bib")))


def _report(version: int, ctx: WritingContext, sections, notes) -> Report:
    f = ctx.findings
    return Report(version=version, title=ctx.plan.title, sections=sections, facts=f.facts, figures=f.figures,
                  verdicts=f.verdicts, references=references(ctx), notes=notes,
                  allowed_numbers=ctx.allowed_numbers())


def save_and_compile(llm, report: Report, ctx: WritingContext, stage_name: str) -> Rendered:
    """Save every format; when LaTeX fails in a section's text, the writer rewrites that section once."""
    rendered = save_report(report, ctx.run_dir)
    retry = [k for k in rendered.error_sections if report.section(k) is not None and report.section(k).body]
    if rendered.pdf or not retry:
        _announce(stage_name, report.version, rendered)
        return rendered
    emit(stage_name, "LaTeX failed in " + ", ".join(retry) + "; asking the writer to rewrite once")
    comment = ("The LaTeX compiler failed on this section (" + "; ".join(rendered.errors[:3])
               + "). Rewrite it in plain words, without symbols or markup.")
    sections = []
    for section in report.sections:
        if section.key in retry:
            prose, _ = write_prose(llm, section.key, ctx, comment=comment, previous=section.body)
            section = section.model_copy(update={"body": prose or section.body})
        sections.append(section)
    rendered = save_report(report.model_copy(update={"sections": sections}), ctx.run_dir)
    _announce(stage_name, report.version, rendered)
    return rendered


def _announce(stage_name: str, version: int, rendered: Rendered) -> None:
    formats = "md, html, tex" + (", pdf" if rendered.pdf else "")
    emit(stage_name, f"version {version} at report/v{version}/ ({formats})")
    if rendered.notice and rendered.notice != NO_TEX_NOTICE:  # no TeX: the runner says so once, at the end
        log.warning("%s", rendered.notice)
        emit(stage_name, rendered.notice)


@stage("write_report")
def write_report(state: ResearchState, deps: Deps) -> dict:
    ctx = writing_context(state, deps)
    version = state.get("version_base", 0) + 1  # a regeneration writes after the versions that exist
    emit("write_report", f"writing {len(SECTION_KEYS)} sections")
    sections, notes = build_sections(deps.llms.researcher, ctx)
    save_and_compile(deps.llms.researcher, _report(version, ctx, sections, notes), ctx, "write_report")
    return {"report_version": version, "review_round": 0, "reviews": []}


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
    try:
        out = llm.complete(prompts.messages("review_report", report=review_digest(report),
                                            checks="\n".join(failed) or "none", sections=", ".join(SECTION_KEYS)),
                           schema=ReviewOutput, role="reviewer", max_tokens=400)
    except LLMOutputInvalid as exc:  # an unreachable backend raises: the run stops, resumable
        return None, [], f"The reviewer model gave no valid review ({exc.message})."
    scores = RubricScores(**{k: getattr(out, k) for k in RubricScores.model_fields})
    comments = [SectionComment(section=c.section, comment=c.comment, priority=c.priority) for c in out.comments]
    return scores, comments, ""


@stage("review_report")
def review_report(state: ResearchState, deps: Deps) -> dict:
    version = state["report_version"]
    report = load_report(deps.run_dir, version)
    plan = ResearchPlan.model_validate(state["plan"])
    checks = run_checks(report, [h.id for h in plan.hypotheses])  # the report carries the numbers it allows
    failed = [f"{c.name} ({c.section}): {c.message}" for c in checks if not c.ok]
    emit("review_report", f"version {version}: {len(checks) - len(failed)}/{len(checks)} checks pass")
    scores, comments, note = llm_review(deps.llms.reviewer, report, failed)
    comments = comments_from_checks(checks) + comments
    comments += rubric_comments(scores, comments, ResearchConfig.model_validate(state["config"]).score_bar)
    review = Review(version=version, scores=scores, comments=comments, checks=checks,
                    reviewer=str(getattr(deps.llms.reviewer, "label", "reviewer")))
    atomic_write_text(report_dir(deps.run_dir, version) / "review.json", review.model_dump_json(indent=2))
    if scores:
        emit("review_report", f"version {version}: overall {scores.overall}/5")
    return {"reviews": [*state.get("reviews", []), review.model_dump(mode="json")],
            "review_round": state.get("review_round", 0) + 1, "notes": [note] if note else []}


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


def _human_revision_done(state: ResearchState) -> bool:
    return state.get("human_feedback", {}).get("revised_to") == state.get("report_version")


def after_review(state: ResearchState) -> str:
    """The automated loop, then the human when one is asked (`review_mode`); after a human's
    revision only the human decides again (interactive) or the run ends (one review round)."""
    mode = state.get("review_mode")
    if mode == "once" and not state.get("human_feedback"):
        return "human_review"  # `societas review` on a finished run: straight to the person
    if _human_revision_done(state):
        return "human_review" if mode == "interactive" else "finalize"
    decision = _automated(state)
    return "human_review" if decision == "finalize" and mode else decision


def _automated(state: ResearchState) -> str:
    """Revise while rounds are left, the bar is not reached and scores still improve."""
    config = ResearchConfig.model_validate(state["config"])
    reviews = [Review.model_validate(r) for r in state.get("reviews", [])]
    last = reviews[-1]
    revisions_done = state.get("review_round", 1) - 1
    if revisions_done >= config.review_rounds or not last.sections_to_revise():
        return "finalize"
    score = last.scores.overall if last.scores else 0
    if last.checks_pass and score >= config.score_bar:
        return "finalize"
    if len(reviews) >= 2 and last.checks_pass and reviews[-2].scores and score <= reviews[-2].scores.overall:
        return "finalize"  # plateau
    return "revise_report"


def _comments(state: ResearchState) -> tuple[dict[str, str], bool]:
    """Section -> comment to address: a human's pending comments, else the last review's."""
    human = state.get("human_feedback") or {}
    if human.get("comments") and human.get("version") == state["report_version"] and "revised_to" not in human:
        return dict(human["comments"]), True
    review = Review.model_validate(state["reviews"][-1])
    return {key: " ".join(c.comment for c in review.comments if c.section == key)
            for key in review.sections_to_revise()}, False


@stage("revise_report")
def revise_report(state: ResearchState, deps: Deps) -> dict:
    version = state["report_version"]
    report = load_report(deps.run_dir, version)
    ctx = writing_context(state, deps)
    targets, by_human = _comments(state)
    notes: list[str] = []
    sections = []
    for section in report.sections:
        if section.key not in targets:
            sections.append(section)  # untouched: byte-identical
            continue
        comment = targets[section.key]
        emit("revise_report", f"revising {SECTION_TITLES.get(section.key, section.key)}")
        prose, n = write_prose(deps.llms.researcher, section.key, ctx, comment=comment, previous=section.body)
        notes += n
        sections.append(section.model_copy(update={"body": prose or section.body,
                                                   "generated": generated_markdown(section.key, ctx)}))
    present = {s.key for s in sections}
    for key in SECTION_KEYS if not by_human else ():  # a missing section flagged by the checks is written afresh
        if key not in present:
            prose, n = write_prose(deps.llms.researcher, key, ctx)
            sections.append(Section(key=key, title=SECTION_TITLES[key], body=prose,
                                    generated=generated_markdown(key, ctx)))
    sections.sort(key=lambda s: SECTION_KEYS.index(s.key) if s.key in SECTION_KEYS else len(SECTION_KEYS))
    new = report.model_copy(update={"version": version + 1, "sections": sections, "notes": report.notes + notes,
                                    "allowed_numbers": ctx.allowed_numbers()})  # a report saved before the field
    if by_human:
        human = state["human_feedback"]
        atomic_write_json(report_dir(deps.run_dir, version + 1) / "human_comments.json",
                          {"reviewed_version": version, "version": version + 1, "comments": targets,
                           "source": human.get("source", "")})
    save_and_compile(deps.llms.researcher, new, ctx, "revise_report")
    if by_human:
        return {"report_version": version + 1, "human_feedback": {**human, "revised_to": version + 1}}
    return {"report_version": version + 1}


def best_version(reviews: list[Review]) -> int:
    """The version with passing checks and the highest overall score; the latest among equals."""
    def key(r: Review):
        return (r.checks_pass, r.scores.overall if r.scores else 0, r.version)
    return max(reviews, key=key).version


@stage("finalize")
def finalize(state: ResearchState, deps: Deps) -> dict:
    reviews = [Review.model_validate(r) for r in state.get("reviews", [])]
    latest = state["report_version"]
    reviewed = {r.version for r in reviews}
    chosen = best_version(reviews) if latest in reviewed or not reviews else latest
    human = state.get("human_feedback") or {}
    if human.get("approve") and human.get("version"):
        chosen = human["version"]  # a person's approval outranks the rubric
    elif _human_revision_done(state):
        chosen = latest
    final = deps.run_dir / "report" / "final"
    tmp = final.with_name(".final.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(f"v{chosen}", tmp)
    os.replace(tmp, final)
    atomic_write_json(deps.run_dir / "report" / "final.json", {"version": chosen})
    emit("finalize", f"final report: report/v{chosen}/report.md")
    return {"final_version": chosen}
