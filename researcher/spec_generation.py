"""A new scenario spec from the model when no library scenario fits: validated (schema, compile, a
smoke run) with bounded repairs, asked only of a model whose context holds the request and an answer
(see researcher.design's `_may_generate`). Model output is a declarative spec, never code.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable

import prompts
from llms.client import LLMClient
from llms.errors import LLMError, LLMOutputInvalid, one_line
from researcher.budget import context_of, prompt_tokens
from researcher.hypothesis_mapping import sweepable_parameters
from researcher.planning import describe_plan
from researcher.schemas import ResearchPlan
from simulator import ScenarioSpec, SpecError, compile_scenario, describe_functions, parse_spec, smoke_run
from societas.errors import SocietasError

log = logging.getLogger(__name__)

Event = Callable[[str], None]

# A generated spec's answer: about twice the largest library spec as JSON (info_sharing, ~1,400 tokens).
# With the spec prompt (1,800-2,700 tokens) that needs about 5,000 tokens of context: a 32k server has
# room, the embedded model's 4,096 does not (cut off mid-spec, minutes lost), so it is not asked.
GENERATE_MAX_TOKENS = 3000
MIN_ANSWER_TOKENS = 256  # a forced generation on a small context still gets this much answer
GENERATE_REPAIRS = 2
GENERATE_DEADLINE_S = 120.0  # no repair turn starts after this


def generate_spec(plan: ResearchPlan, llm: LLMClient, *, example: ScenarioSpec,
                  say: Event) -> tuple[ScenarioSpec | None, str]:
    """A new spec that passes validation and a smoke run, with bounded repairs; (spec, "") or (None, why)."""
    messages = spec_messages(plan, example)
    context = context_of(llm)
    # Repairs happen here, where the semantic errors are known; the client's own would only see shape
    # errors. One attempt per turn: a spec that timed out (a tiny model on a busy CPU) would time out
    # again, and the library is a good fallback.
    writer = copy.copy(llm)
    writer.repairs = 0
    writer.retry = dataclasses.replace(llm.retry, attempts=1)
    deadline = time.monotonic() + GENERATE_DEADLINE_S
    error = ""
    for attempt in range(1 + GENERATE_REPAIRS):
        if attempt and time.monotonic() > deadline:
            error += " (no time left to repair it)"
            break
        room = context - prompt_tokens(messages)
        if attempt and room < GENERATE_MAX_TOKENS:
            error += " (no room left in the model's context to repair it)"
            break
        answer = None
        try:
            draft = writer.complete(messages, schema=ScenarioSpec, temperature=0.0, seed=attempt,
                                    max_tokens=max(MIN_ANSWER_TOKENS, min(GENERATE_MAX_TOKENS, room)))
            answer = draft.model_dump_json(by_alias=True, exclude_defaults=True)
            return check_generated(draft), ""
        except LLMOutputInvalid as exc:
            # The message is "<backend> gave no valid ScenarioSpec after N repair(s): <problem>"; keep the problem.
            error = one_line(exc.message.rpartition("repair(s): ")[2] or exc.message, 200)
        except LLMError as exc:  # unreachable or rejected: another turn will not help
            return None, f"spec generation failed: {one_line(exc.message, 200)}"
        except SocietasError as exc:
            error = one_line(str(exc), 200)
        say(f"generated spec rejected (attempt {attempt + 1}): {error}")
        messages = [*messages, *([{"role": "assistant", "content": answer}] if answer else []),
                    {"role": "user", "content": prompts.render("design_repair_spec", error=error)}]
    return None, f"generated spec failed validation: {error}"


def spec_messages(plan: ResearchPlan, example: ScenarioSpec) -> list[dict[str, str]]:
    return prompts.messages("design_generate_spec", plan=describe_plan(plan), example=example.to_yaml(),
                            functions=describe_functions())


def check_generated(spec: ScenarioSpec) -> ScenarioSpec:
    """Schema, meaning and a smoke run of 50 agents for 3 steps; the plain spec, or `SocietasError`."""
    spec = parse_spec(spec.model_dump(mode="json", by_alias=True), source="generated spec")
    if not sweepable_parameters(spec):
        raise SpecError("the spec needs a parameter with a min and max to sweep (min below max)", scenario=spec.name,
                        hint="add parameters: {name: {default, min, max, description}}")
    compile_scenario(spec)
    try:
        smoke_run(spec, agents=50, steps=3)
    except SocietasError:
        raise
    except Exception as exc:  # noqa: BLE001 - a generated spec that crashes the engine is rejected, not fatal
        log.warning("smoke run of generated spec %s crashed", spec.name, exc_info=True)
        raise SpecError(f"the smoke run failed: {type(exc).__name__}: {one_line(exc, 160)}",
                        scenario=spec.name) from None
    return spec

