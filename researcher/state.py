"""The pipeline's state and its run-time dependencies.

State holds small serialisable things (the topic, the config, the plan, the design, *paths*
to data, versions, reviews, counters); it is checkpointed after every node. Dependencies that
cannot be checkpointed (LLM clients, the run folder, the progress sink) travel in `Deps`, the
graph's run-time context, rebuilt from the manifest on `resume`.
"""

from __future__ import annotations

import hashlib
import json
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from societas.runs import RunFolder

MAX_TOPIC_CHARS = 2000


class ResearchConfig(BaseModel):
    """Everything that shapes a run; hashed into the manifest and the reproducibility section."""

    model_config = ConfigDict(extra="forbid")

    seeds: int = Field(5, ge=2, le=100)
    steps: int | None = Field(None, ge=1, le=100_000)
    agents: int | None = Field(None, ge=10, le=10_000_000)
    review_rounds: int = Field(2, ge=0, le=10)
    score_bar: int = Field(4, ge=1, le=5)
    llm: str | None = None
    agents_llm: str | None = None
    reviewer_llm: str | None = None
    model_path: str | None = None
    ray_address: str | None = None
    use_ray: bool = True
    allow_generate: bool = True
    max_extra_seed_rounds: int = Field(1, ge=0, le=3)
    agents_mode: Literal["llm", "rule", "auto"] = "auto"  # how agents with `decision: llm` choose
    llm_budget: int = Field(500, ge=0, le=10_000_000)  # auto: most LLM calls (distinct prompts; keeps the offline run fast)
    llm_concurrency: int | None = Field(None, ge=1, le=1024)  # LLM agent requests in flight per simulation run
    bib: str | None = None  # a user's BibTeX file, cited besides the shipped one
    # Who writes the report's prose: the model (through the prose gate), code alone, or auto: the
    # model only when it is a capable one (researcher.writing.model_writes).
    prose: Literal["auto", "model", "code"] = "auto"

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:16]


def _merge(a: dict | None, b: dict | None) -> dict:
    return {**(a or {}), **(b or {})}


class ResearchState(TypedDict, total=False):
    topic: str
    config: dict[str, Any]
    plan: dict[str, Any]
    design: dict[str, Any]
    simulation: dict[str, Any]
    extra_seed_rounds: int
    findings_path: str
    report_version: int
    reviews: list[dict[str, Any]]
    review_round: int
    human_feedback: dict[str, Any]
    review_mode: str | None  # None, "interactive" (research --interactive) or "once" (societas review)
    version_base: int  # a regeneration numbers its versions after this one
    final_version: int
    notes: Annotated[list[str], operator.add]
    timings: Annotated[dict[str, float], _merge]
    tokens: Annotated[dict[str, dict[str, Any]], _merge]


def human_revision_done(state: ResearchState) -> bool:
    """The latest version is the revision a person's comments asked for."""
    return state.get("human_feedback", {}).get("revised_to") == state.get("report_version")


@dataclass
class Deps:
    """What nodes need besides the state; the graph's run-time context (never checkpointed)."""

    folder: RunFolder
    llms: Any  # llms.roles.LLMSet (or a test double with the same surface)

    @property
    def run_dir(self) -> Path:
        return self.folder.path
