"""analyze_topic: the topic becomes a `ResearchPlan` (LLM under a schema, with a fallback)."""

from __future__ import annotations

import logging

import prompts
from llms.errors import LLMOutputInvalid
from researcher.planning import fallback_plan, normalise
from researcher.schemas import ResearchPlan
from researcher.stage import emit, stage
from researcher.state import Deps, ResearchState
from societas.runs import atomic_write_json

log = logging.getLogger(__name__)


@stage("analyze_topic")
def analyze_topic(state: ResearchState, deps: Deps) -> dict:
    topic = state["topic"]
    notes = []
    emit("analyze_topic", "asking the researcher model for a plan")
    try:
        plan = deps.llms.researcher.complete(prompts.messages("analyze_topic", topic=topic), schema=ResearchPlan,
                                             role="researcher", max_tokens=700)
    except LLMOutputInvalid as exc:  # an unreachable backend raises: the run stops, resumable
        log.warning("plan from the LLM failed: %s", exc)
        notes.append(f"The researcher model gave no valid plan ({exc.message}); a generic plan was built from the topic.")
        plan = fallback_plan(topic)
    plan = normalise(plan, topic)
    atomic_write_json(deps.run_dir / "plan.json", plan.model_dump(mode="json"))
    return {"plan": plan.model_dump(mode="json"), "notes": notes}
