"""The researcher's structured artifacts: the plan and the experiment design.

These are also the JSON schemas the LLM fills under constrained decoding, so fields are few
and flat: a 135M-parameter model must be able to produce them. Strings carry no length
bounds: llama.cpp turns `maxLength: n` into a grammar with n nested rules, which for a few
hundred characters stalls or crashes the server; `clip_plan` bounds lengths in code instead.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from simulator import Domain

Direction = Literal["increase", "decrease", "no_effect"]
# Whose wording a hypothesis statement is: the model's (it passed `planning.statement_names`) or
# a sentence code composed from the variables, because the model's did not name them.
StatementSource = Literal["model", "code"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Hypothesis(_Model):
    # Code's fields are left out of the schema the model fills: ids come from code (a tiny model
    # wrote `{{id}}` there), and so does the record of whose wording the statement is.
    id: SkipJsonSchema[str] = "H1"
    statement: str = Field(min_length=1)
    independent_variable: str = Field(min_length=1, description="What is varied (a cause).")
    dependent_variable: str = Field(min_length=1, description="What is measured (an outcome).")
    direction: Direction = Field(description="Expected effect of raising the independent variable.")
    statement_source: SkipJsonSchema[StatementSource] = "model"


class ResearchPlan(_Model):
    """What analyze_topic produces."""

    title: str = Field(min_length=1)
    domain: Domain
    summary: str = Field(min_length=1, description="The topic restated as a research problem.")
    research_questions: list[str] = Field(min_length=1, max_length=3)
    hypotheses: list[Hypothesis] = Field(min_length=1, max_length=3)
    theories: list[str] = Field(default_factory=list, max_length=4, description="Theories or models the topic invokes.")


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def clip_plan(plan: ResearchPlan) -> ResearchPlan:
    """Bound every string of an LLM-written plan (the schema cannot, see the module docstring)."""
    return plan.model_copy(update={
        "title": _clip(plan.title, 200),
        "summary": _clip(plan.summary, 1200),
        "research_questions": [_clip(q, 300) for q in plan.research_questions],
        "theories": [_clip(t, 200) for t in plan.theories],
        "hypotheses": [h.model_copy(update={"statement": _clip(h.statement, 400),
                                            "independent_variable": _clip(h.independent_variable, 120),
                                            "dependent_variable": _clip(h.dependent_variable, 120)})
                       for h in plan.hypotheses],
    })


class HypothesisTest(_Model):
    """How one hypothesis is tested in the chosen scenario (or why it cannot be), and the statement
    the report shows for it: checked against the parameter and metric, or composed from them."""

    hypothesis_id: str
    parameter: str | None = None
    metric: str | None = None
    direction: Direction = "increase"
    testable: bool = True
    reason: str = ""
    statement: str = ""
    statement_source: StatementSource = "model"


class ExperimentDesign(_Model):
    """What design_experiment produces: enough to build a `simulator.experiment.Experiment`."""

    scenario: str = Field(description="Library scenario name, or the name of a generated spec.")
    generated: bool = False
    swept_parameter: str
    values: list[float] = Field(min_length=2, max_length=8)
    fixed: dict[str, float] = Field(default_factory=dict)
    seeds: list[int] = Field(min_length=2)
    steps: int = Field(ge=1)
    population: int = Field(ge=2)
    tests: list[HypothesisTest]
    candidates: list[tuple[str, float]] = Field(default_factory=list, description="Retrieved scenarios and scores.")
    rationale: str = ""
    fallback_reason: str | None = None
