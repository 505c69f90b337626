"""write_report: version N of the report, every section code-made facts plus the writer's prose."""

from __future__ import annotations

from reports.models import SECTION_KEYS
from researcher.stage import emit, stage
from researcher.state import Deps, ResearchState
from researcher.writing import assemble_report, build_sections, save_and_compile, writing_context


@stage("write_report")
def write_report(state: ResearchState, deps: Deps) -> dict:
    ctx = writing_context(state, deps)
    version = state.get("version_base", 0) + 1  # a regeneration writes after the versions that exist
    emit("write_report", f"writing {len(SECTION_KEYS)} sections")
    sections, notes = build_sections(deps.llms.researcher, ctx)
    save_and_compile(deps.llms.researcher, assemble_report(version, ctx, sections, notes), ctx, "write_report")
    return {"report_version": version, "review_round": 0, "reviews": []}
