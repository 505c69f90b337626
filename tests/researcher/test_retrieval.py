"""Retrieval of library scenarios for a plan: BM25 over scenario text, thesaurus, domain boost."""

from __future__ import annotations

import pytest

from researcher.design import FIT_THRESHOLD
from researcher.retrieval import BM25, best_matches, rank_scenarios, stem, tokenize
from researcher.schemas import Hypothesis, ResearchPlan
from simulator.catalog import all_scenarios


def plan_for(topic: str, domain: str, iv: str = "the cause", dv: str = "the outcome") -> ResearchPlan:
    """A plan as small as a tiny model writes it: the topic restated, one hypothesis."""
    return ResearchPlan(title=topic, domain=domain, summary=topic, research_questions=[topic],
                        hypotheses=[Hypothesis(statement=topic, independent_variable=iv, dependent_variable=dv,
                                               direction="increase")])


# One topic per domain, worded the way a user would ask, never naming the scenario.
TOPICS = [
    ("Does tolerance of differing views prevent political fragmentation?", "politics", {"deffuant", "hegselmann_krause"}),
    ("How does inequality arise from random trade?", "economics", {"boltzmann_wealth"}),
    ("Do stricter audits reduce tax evasion?", "law", {"compliance"}),
    ("How fast does a new practice spread among employees?", "organization", {"bass_diffusion"}),
    ("Why do neighbourhoods segregate?", "sociology", {"schelling"}),
    ("How do rumours die out?", "communication", {"rumor"}),
    ("Does network density change epidemic size?", "demographics", {"sir_network"}),
    ("Do people match probabilities when predicting events?", "psychology", {"probability_matching"}),
]


@pytest.fixture(scope="module")
def library():
    return all_scenarios()


@pytest.mark.parametrize(("topic", "domain", "expected"), TOPICS, ids=[d for _, d, _ in TOPICS])
def test_paraphrased_topic_finds_its_scenario_in_the_top_three(library, topic, domain, expected) -> None:
    top3 = [name for name, _ in rank_scenarios(plan_for(topic, domain), library, k=3)]
    assert expected & set(top3), top3


@pytest.mark.parametrize(("topic", "domain", "expected"), TOPICS, ids=[d for _, d, _ in TOPICS])
def test_a_fitting_scenario_clears_the_fit_threshold(library, topic, domain, expected) -> None:
    name, score = rank_scenarios(plan_for(topic, domain), library, k=1)[0]
    assert name in expected and score >= FIT_THRESHOLD


@pytest.mark.parametrize(("topic", "domain"), [
    ("How does fertility respond to childcare subsidies?", "demographics"),
    ("Do longer prison sentences reduce reoffending?", "law"),
    ("How does immigration policy affect wages?", "economics"),
])
def test_a_topic_the_library_does_not_cover_scores_below_the_fit_threshold(library, topic, domain) -> None:
    assert rank_scenarios(plan_for(topic, domain), library, k=1)[0][1] < FIT_THRESHOLD


def test_scores_lie_in_zero_one_and_come_best_first(library) -> None:
    ranked = rank_scenarios(plan_for("How do rumours die out?", "communication"), library, k=len(library))
    scores = [s for _, s in ranked]
    assert len(ranked) == len(library)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)


def test_the_plans_domain_breaks_a_tie_between_equal_texts(library) -> None:
    plan = plan_for("opinion", "communication")
    politics = rank_scenarios(plan.model_copy(update={"domain": "politics"}), library, k=3)
    assert politics[0][0] in {"deffuant", "voter"}
    assert dict(politics)[politics[0][0]] > dict(rank_scenarios(plan, library, k=len(library)))[politics[0][0]]


def test_k_limits_the_answer_and_an_empty_library_gives_nothing(library) -> None:
    assert len(rank_scenarios(plan_for("Why do neighbourhoods segregate?", "sociology"), library, k=2)) == 2
    assert rank_scenarios(plan_for("anything", "law"), [], k=5) == []


@pytest.mark.parametrize(("a", "b"), [
    ("segregation", "segregate"), ("rumours", "rumor"), ("neighbourhoods", "neighborhood"),
    ("polarisation", "polarization"), ("clusters", "cluster"), ("spreaders", "spreading"),
])
def test_stemming_meets_word_variants_and_british_spelling(a, b) -> None:
    assert tokenize(a) == tokenize(b)
    assert stem(a) == stem(b)


def test_tokenize_drops_stopwords_and_splits_identifiers() -> None:
    assert tokenize("Does the attack_rate of the epidemic change?") == ["attack", "rat", "epidem"]


def test_bm25_prefers_the_document_with_the_rarer_matching_term() -> None:
    index = BM25([["opinion", "cluster"], ["opinion", "wealth"], ["opinion", "infect"]])
    scores = index.scores({"opinion": 1.0, "wealth": 1.0})
    assert scores[1] > scores[0] == scores[2] > 0
    assert index.relevance({"unknown": 1.0}) == [0.0, 0.0, 0.0]


def test_best_matches_ranks_parameters_by_their_descriptions() -> None:
    docs = {"audit": "audit Probability that an evader is audited", "fine": "fine Fine paid by an audited evader",
            "gain": "gain Gain from evading"}
    ranked = best_matches("audit strictness", docs)
    assert ranked[0][0] == "audit" and ranked[0][1] > 0
    assert best_matches("weather", docs)[0][1] == 0
