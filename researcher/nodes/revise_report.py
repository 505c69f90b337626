"""revise_report: version N+1, rewriting only the sections the review (or a person) commented on."""

from __future__ import annotations

from reports.models import SECTION_KEYS, SECTION_TITLES, Review
from reports.versions import load_report, report_dir
from researcher.stage import emit, stage
from researcher.state import Deps, ResearchState
from researcher.writing import gated_section, model_writes, prose_gate, save_and_compile, with_prose_line, writing_context
from societas.runs import atomic_write_json


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
        revised, n = gated_section(deps.llms.researcher, section.key, ctx, comment=comment, previous=section.body)
        notes += n
        # A revision the gate rejects whole keeps the section's prose where that still passes.
        keep = revised.prose_source == "code" and section.body.strip() and prose_gate(section.body, section.key, ctx).passed
        sections.append(section if keep else revised)
    present = {s.key for s in sections}
    for key in SECTION_KEYS if not by_human else ():  # a missing section flagged by the checks is written afresh
        if key not in present:
            written, n = gated_section(deps.llms.researcher, key, ctx)
            sections.append(written)
            notes += n
    sections.sort(key=lambda s: SECTION_KEYS.index(s.key) if s.key in SECTION_KEYS else len(SECTION_KEYS))
    sections = with_prose_line(sections, model_writes(deps.llms.researcher, ctx))
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
