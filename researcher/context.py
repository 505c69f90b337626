"""What writing a report reads, loaded once from the run folder: the `WritingContext`, and the
references it cites. Apart from `writing` so that `narrative` (which `writing` imports) can use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from reports.citations import cited_references, load_bibliography
from reports.models import Reference
from researcher.analysis import Findings
from researcher.schemas import ExperimentDesign, ResearchPlan
from simulator import ScenarioSpec


@dataclass
class WritingContext:
    """Everything a section needs, loaded once from the run folder."""

    topic: str
    plan: ResearchPlan
    design: ExperimentDesign
    spec: ScenarioSpec
    findings: Findings
    run_dir: Path
    config: dict
    notes: list[str]
    models: dict

    def allowed_numbers(self) -> list[str]:
        """Numbers that may appear in prose although no fact holds them: years in references, and the
        design's own counts and values (conditions, seeds, steps, agents, swept values), which code
        wrote into `design.json` and the Simulation design section."""
        cited = [r.year for r in references(self)]  # the gate lets prose cite these by author and year
        years = re.findall(r"\b(1[89]\d\d|20\d\d)\b", " ".join([*self.spec.references, *self.plan.theories, *cited]))
        d = self.design
        design = [len(d.values), len(d.seeds), d.steps, d.population, *d.values, *d.fixed.values()]
        return sorted(set(years) | {f"{v:g}" for v in design})


def references(ctx: WritingContext) -> list[Reference]:
    """Bibliography entries (shipped, or the user's --bib) that the plan's theories or the scenario name,
    and the scenario's own references: the two lists the Background shows."""
    names = [*ctx.plan.theories, ctx.spec.name.replace("_", " "), ctx.spec.title]
    return cited_references(names, ctx.spec.references, load_bibliography(ctx.config.get("bib")))
