"""The report's data: facts computed by code, figures, sections of prose, verdicts, reviews.

Prose refers to facts by placeholder (`{{F3}}`) and to figures by `[Figure fig1]`; the
renderer fills both in. Numbers therefore enter a report only through `Fact`s, each of which
names where in the data it came from.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SECTION_KEYS = (
    "abstract",
    "introduction",
    "background",
    "design",
    "results",
    "discussion",
    "limitations",
    "conclusion",
    "reproducibility",
)
SECTION_TITLES = {
    "abstract": "Abstract",
    "introduction": "Introduction and research questions",
    "background": "Background",
    "design": "Simulation design",
    "results": "Results",
    "discussion": "Discussion",
    "limitations": "Limitations",
    "conclusion": "Conclusion",
    "reproducibility": "Reproducibility",
}
FACT_RE = re.compile(r"\{\{\s*(F\d+)\s*\}\}")
FIGURE_RE = re.compile(r"\[Figure\s+(fig\d+)\]")

# "non-monotonic": the metric peaks or troughs inside the swept range, so neither an increase nor a
# decrease describes it (decided by analysis, as the others are).
VerdictKind = Literal["supported", "refuted", "inconclusive", "non-monotonic", "untestable"]
# How a fact's numbers read: a share of runs as a percentage, steps with their word, the rest as numbers.
FactUnit = Literal["value", "share", "count", "steps"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def format_number(x: float, digits: int = 3) -> str:
    """A compact, stable rendering used everywhere a fact's value is printed."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if x == 0:
        return "0"
    if float(x).is_integer() and abs(x) < 1e6:
        return str(int(x))
    return f"{x:.{digits}g}"


def format_percent(share: float) -> str:
    """A share in [0, 1] as a percentage: 1.0 -> '100%', 0.4523 -> '45.2%'."""
    text = format_number(None if share is None else 100 * share)
    return text if text == "n/a" else text + "%"


class Fact(_Model):
    """One number in the report, with its uncertainty and its origin in the data."""

    id: str = Field(pattern=r"^F\d+$")
    description: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    unit: FactUnit = "value"
    source: str = Field(description="Where it comes from, e.g. 'final.parquet: metric=gini, condition=m=1, mean over 5 seeds'.")

    @field_validator("unit", mode="before")
    @classmethod
    def _unit_of_old_findings(cls, unit: object) -> object:
        return unit or "value"  # findings.json written before facts had units says ""

    def show(self, x: float) -> str:
        """One of this fact's numbers (value or bound) in its unit; every renderer prints through this."""
        return format_percent(x) if self.unit == "share" else format_number(x)

    def interval(self) -> str | None:
        """'38% to 52%', or None without an interval."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return f"{self.show(self.ci_low)} to {self.show(self.ci_high)}"

    def shown_value(self) -> str:
        return self.show(self.value) + (" steps" if self.unit == "steps" else "")

    def render(self) -> str:
        """What a `{{F3}}` placeholder becomes: '45% (95% CI 38% to 52%, n = 20)'."""
        text = self.shown_value()
        if self.ci_low != self.ci_high and (interval := self.interval()):
            text += f" (95% CI {interval}" + (f", n = {self.n})" if self.n else ")")
        return text


class Figure(_Model):
    id: str = Field(pattern=r"^fig\d+$")
    path: str = Field(description="Relative to the run folder, e.g. figures/timeseries_clusters.png.")
    caption: str
    kind: Literal["timeseries", "sweep", "other"] = "other"


class Verdict(_Model):
    """What the statistics say about one hypothesis (computed, never written by the LLM)."""

    hypothesis_id: str
    statement: str
    verdict: VerdictKind
    reason: str
    parameter: str | None = None
    metric: str | None = None
    fact_ids: list[str] = Field(default_factory=list)
    effect: Literal["increase", "decrease", "none"] | None = Field(None, description=(
        "The direction the statistics found for raising the parameter, whatever was expected: the sign "
        "of a significant trend, 'none' where the trend is not significant and the extremes differ by "
        "under half an SD; None with no direction (a peak or trough, too little evidence, no test)."))


class Section(_Model):
    key: str
    title: str
    body: str = Field("", description="Prose (LLM-written) with {{F1}} fact placeholders and [Figure fig1] references.")
    generated: str = Field("", description="Code-made Markdown (tables, lists) appended after the prose; trusted.")
    prose_source: Literal["model", "code", "model+code"] = Field("model", description=(
        "Whose prose the section shows: the model's (it passed the prose gate), the code's narrative "
        "alone, or the model's kept in part beside the narrative. Reports saved before the gate say 'model'."))
    dropped_sentences: int = Field(0, ge=0, description="Model sentences the prose gate dropped.")


class Reference(_Model):
    """One bibliography entry (from the shipped or a user's BibTeX file, never from a model)."""

    key: str = Field(pattern=r"^[A-Za-z0-9:_-]+$")
    kind: str = "article"
    authors: str
    title: str
    year: str = ""
    venue: str = ""
    details: str = ""
    keywords: list[str] = Field(default_factory=list)

    def render(self) -> str:
        """The entry as one line of plain text (the renderers escape it)."""
        authors = "; ".join(a.strip() for a in self.authors.split(" and "))
        text = f"{authors} ({self.year or 'n.d.'}). {self.title.rstrip('.')}."
        if self.venue:
            text += f" {self.venue}" + (f", {self.details}" if self.details else "") + "."
        return text


class Report(_Model):
    version: int = Field(ge=1)
    title: str
    sections: list[Section]
    facts: list[Fact] = Field(default_factory=list)
    figures: list[Figure] = Field(default_factory=list)
    verdicts: list[Verdict] = Field(default_factory=list)
    references: list[Reference] = Field(default_factory=list, description="Matched from a bibliography file.")
    notes: list[str] = Field(default_factory=list, description="What happened while writing (fallbacks, repairs).")
    allowed_numbers: list[str] = Field(default_factory=list, description=(
        "Numbers prose may use although no fact holds them (reference years, the design's counts), so that "
        "checks run later on the saved report agree with the writer's sanitizer."))

    def section(self, key: str) -> Section | None:
        return next((s for s in self.sections if s.key == key), None)

    def fact_map(self) -> dict[str, Fact]:
        return {f.id: f for f in self.facts}


class RubricScores(_Model):
    soundness: int = Field(ge=1, le=5, description="Claims follow from the facts.")
    insight: int = Field(ge=1, le=5)
    structure: int = Field(ge=1, le=5)
    content: int = Field(ge=1, le=5)
    utility: int = Field(ge=1, le=5)
    overall: int = Field(ge=1, le=5)


class SectionComment(_Model):
    section: str
    comment: str
    priority: int = Field(2, ge=1, le=3, description="1 = must fix, 3 = nice to have.")
    source: Literal["check", "reviewer", "human"] = "reviewer"


class CheckResult(_Model):
    name: str
    ok: bool
    section: str | None = None
    message: str = ""


class Review(_Model):
    version: int
    scores: RubricScores | None = None
    comments: list[SectionComment] = Field(default_factory=list)
    checks: list[CheckResult] = Field(default_factory=list)
    reviewer: str = ""

    @property
    def checks_pass(self) -> bool:
        return all(c.ok for c in self.checks)

    def sections_to_revise(self) -> list[str]:
        return sorted({c.section for c in self.comments if c.priority <= 2})
