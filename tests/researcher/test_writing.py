"""The prose sanitizer's handling of list markers the model runs into its sentences."""

from __future__ import annotations

import json

from reports.checks import untraced_numbers


def test_list_markers_at_sentence_starts_are_not_numbers():
    """The model runs lists into prose; its markers are not quantities to trace (or to remove)."""
    text = "Related questions: 1. Is it possible? 2. Does it matter?\n3) Who decides? (4) Why now?"
    assert untraced_numbers(text, []) == []


def test_numbers_inside_sentences_are_kept_and_still_flagged():
    text = "The share rose by 7. Then it fell to 3 agents. It was 12.5 percent."
    assert untraced_numbers(text, []) == ["7", "3", "12.5"]


def test_a_number_ending_a_clause_is_not_taken_for_a_list_marker():
    assert untraced_numbers("The number of agents that defected was: 37. This shows a shift.", []) == ["37"]
    assert untraced_numbers("The answer is: 1. That settles it.", []) == ["1"]  # a lone 1 is no list


def test_limitations_say_which_decision_model_drove_the_agents(tmp_path):
    from researcher.writing import agents_limitation

    assert agents_limitation(tmp_path) == "Agents followed the scenario's rule-based decision model."
    (tmp_path / "data").mkdir()
    agents = {"used": "llm", "reason": "auto: about 40 LLM calls fit the budget of 500", "model": "smollm2-135m",
              "llm_agent_types": ["patron"], "totals": {"llm_agent_decisions": 240, "llm_prompts": 40,
                                                        "llm_invalid": 3, "llm_failed": 1}}
    (tmp_path / "data" / "agents.json").write_text(json.dumps(agents))
    text = agents_limitation(tmp_path)
    assert "patron" in text and "smollm2-135m" in text and "240 agent decisions from 40 distinct prompts" in text
    assert "4 answers were invalid or failed" in text
    (tmp_path / "data" / "agents.json").write_text(json.dumps({**agents, "used": "rule", "reason": "rule mode"}))
    assert agents_limitation(tmp_path) == "Agents followed the scenario's rule-based decision model (rule mode)."


def test_a_low_score_without_comments_points_the_revision_at_the_weakest_dimension():
    from reports.models import RubricScores, SectionComment
    from researcher.reviewing import rubric_comments

    low = RubricScores(soundness=3, insight=2, structure=4, content=2, utility=3, overall=2)
    [comment] = rubric_comments(low, [], bar=4)
    assert comment.section == "discussion" and "insight 2/5" in comment.comment  # insight ties content, comes first
    assert rubric_comments(low, [SectionComment(section="results", comment="x", priority=1)], bar=4) == []
    assert rubric_comments(low, [SectionComment(section="results", comment="x", priority=3)], bar=4) != []
    assert rubric_comments(low.model_copy(update={"overall": 4}), [], bar=4) == []
    assert rubric_comments(None, [], bar=4) == []


def test_the_designs_own_counts_may_appear_in_prose():
    """'4 conditions of 5 seeds' comes from design.json, not from the model's imagination."""
    from types import SimpleNamespace

    from reports.checks import strip_untraced_numbers
    from researcher.writing import WritingContext

    ctx = SimpleNamespace(spec=SimpleNamespace(references=["Deffuant et al. (2000)"]), plan=SimpleNamespace(theories=[]),
                          design=SimpleNamespace(values=[0.1, 0.2, 0.3, 0.5], seeds=[0, 1, 2, 3, 4], steps=300,
                                                 population=200, fixed={"mu": 0.5}))
    allowed = WritingContext.allowed_numbers(ctx)
    text = "We ran 4 conditions of 5 seeds, 300 steps and 200 agents, epsilon 0.3, as in 2000; about 7 clusters."
    assert strip_untraced_numbers(text, [], allowed=allowed) == text.replace("7", "[unverified number removed]")
