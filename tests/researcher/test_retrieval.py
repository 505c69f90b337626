"""Retrieval of library scenarios from the user's topic and the plan: BM25 over scenario text and
vocabulary, phrases, a thesaurus; the benchmark's development topics as a regression check."""

from __future__ import annotations

import pytest

from benchmarks.retrieval import judge, load_topics
from researcher.design import FIT_THRESHOLD
from researcher.retrieval import BM25, best_matches, phrases, rank_scenarios, stem, tokenize
from researcher.schemas import Hypothesis, ResearchPlan
from simulator.catalog import all_scenarios
from tests.simulator.helpers import spec_from


def plan_for(topic: str, domain: str, iv: str = "the cause", dv: str = "the outcome") -> ResearchPlan:
    """A plan as small as a tiny model writes it: the topic restated, one hypothesis."""
    return ResearchPlan(title=topic, domain=domain, summary=topic, research_questions=[topic],
                        hypotheses=[Hypothesis(statement=topic, independent_variable=iv, dependent_variable=dv,
                                               direction="increase")])


# A plan as the embedded model wrote them in issue 11: domain "economics" whatever the topic, and
# words about something else.
TINY_PLAN = ResearchPlan(
    title="Economic opinion dynamics", domain="economics", summary="Agents exchange opinions in a market.",
    research_questions=["How do opinions change?"],
    hypotheses=[Hypothesis(statement="Opinions converge.", independent_variable="opinion tolerance",
                           dependent_variable="opinion clusters", direction="increase")])

# One topic per domain, worded the way a user would ask, never naming the scenario.
TOPICS = [
    ("Does tolerance of differing views prevent political fragmentation?", "politics", {"deffuant"}),
    ("How does inequality arise from random trade?", "economics", {"boltzmann_wealth"}),
    ("Do stricter audits reduce tax evasion?", "law", {"compliance"}),
    ("How fast does a new practice spread among employees?", "organization", {"bass_diffusion"}),
    ("Why do neighbourhoods segregate?", "sociology", {"schelling"}),
    ("How do rumours die out?", "communication", {"rumor"}),
    ("Does network density change epidemic size?", "demographics", {"sir_network"}),
    ("Do people match probabilities when predicting events?", "psychology", {"probability_matching"}),
]

NOTHING_FITS = [
    ("How does fertility respond to childcare subsidies?", "demographics"),
    ("Do longer prison sentences reduce reoffending?", "law"),
    ("How does immigration policy affect wages?", "economics"),
    ("How does the number of sellers in a market affect price dispersion?", "economics"),
]


@pytest.fixture(scope="module")
def library():
    return all_scenarios()


@pytest.mark.parametrize(("topic", "domain", "expected"), TOPICS, ids=[d for _, d, _ in TOPICS])
def test_a_topic_alone_finds_its_scenario_first_and_above_the_fit_threshold(library, topic, domain, expected) -> None:
    name, score = rank_scenarios(None, library, k=1, topic=topic)[0]
    assert name in expected and score >= FIT_THRESHOLD


@pytest.mark.parametrize(("topic", "domain", "expected"), TOPICS, ids=[d for _, d, _ in TOPICS])
def test_a_plan_alone_still_finds_its_scenario(library, topic, domain, expected) -> None:
    name, score = rank_scenarios(plan_for(topic, domain), library, k=1)[0]
    assert name in expected and score >= FIT_THRESHOLD


@pytest.mark.parametrize(("topic", "expected"), [
    ("How does wealth inequality evolve under a transfer rule between agents?", "boltzmann_wealth"),
    ("How do residents' tolerance thresholds shape segregation?", "schelling"),
])
def test_the_issues_topics_find_their_scenario_through_a_tiny_models_plan(library, topic, expected) -> None:
    ranked = rank_scenarios(TINY_PLAN, library, k=3, topic=topic)
    assert ranked[0][0] == expected and ranked[0][1] >= FIT_THRESHOLD, ranked
    # the plan alone points elsewhere: the topic is what decides
    assert rank_scenarios(TINY_PLAN, library, k=1)[0][0] != expected


@pytest.mark.parametrize(("topic", "domain"), NOTHING_FITS)
def test_a_topic_the_library_does_not_cover_scores_below_the_fit_threshold(library, topic, domain) -> None:
    assert rank_scenarios(plan_for(topic, domain), library, k=1, topic=topic)[0][1] < FIT_THRESHOLD


def test_scores_lie_in_zero_one_and_come_best_first(library) -> None:
    ranked = rank_scenarios(plan_for("How do rumours die out?", "communication"), library, k=len(library),
                            topic="How do rumours die out?")
    scores = [s for _, s in ranked]
    assert len(ranked) == len(library)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)


def test_the_plans_domain_does_not_move_a_score(library) -> None:
    """A small model names a domain at random; the chosen scenario settles it, not the other way round."""
    plan = plan_for("opinion", "communication")
    assert rank_scenarios(plan.model_copy(update={"domain": "politics"}), library, k=15) == \
        rank_scenarios(plan, library, k=15)


def test_k_limits_the_answer_and_an_empty_library_gives_nothing(library) -> None:
    assert len(rank_scenarios(plan_for("Why do neighbourhoods segregate?", "sociology"), library, k=2)) == 2
    assert rank_scenarios(plan_for("anything", "law"), [], k=5) == []
    assert rank_scenarios(None, library, k=3, topic="  ")[0][1] == 0.0


def test_vocabulary_decides_between_scenarios_with_the_same_text() -> None:
    plain = spec_from(name="plain")
    named = spec_from(name="named", vocabulary=["residential segregation", "tolerance threshold"])
    ranked = rank_scenarios(None, [plain, named], topic="What tolerance threshold produces residential segregation?")
    assert ranked[0][0] == "named" and ranked[0][1] > ranked[1][1]


def test_a_phrase_counts_beyond_its_words() -> None:
    """Both documents hold "price" and "dispersion"; only one holds them as a phrase."""
    apart = spec_from(name="apart", vocabulary=["price of goods", "dispersion of seeds"])
    phrase = spec_from(name="phrase", vocabulary=["price dispersion", "goods of seeds"])
    ranked = dict(rank_scenarios(None, [apart, phrase], topic="What drives price dispersion?"))
    assert ranked["phrase"] > ranked["apart"] > 0


def test_phrases_pair_adjacent_words_within_a_clause_only() -> None:
    assert phrases("Residents' tolerance threshold") == ["resid toler", "toler threshold"]
    assert phrases("word-of-mouth") == ["word mouth"]
    assert phrases("wealth. Segregation") == []


def test_every_library_scenario_carries_a_vocabulary(library) -> None:
    assert all(len(s.vocabulary) >= 10 for s in library), [s.name for s in library if len(s.vocabulary) < 10]


def test_the_benchmarks_development_topics_stay_above_ninety_percent(library) -> None:
    """benchmarks/retrieval.py's tuned topics, as a regression check (the held-out ones are reported there)."""
    results = [judge(t, library) for t in load_topics("dev")]
    accuracy = sum(r["right"] for r in results) / len(results)
    assert len(results) >= 40 and accuracy >= 0.9, [r["topic"]["topic"] for r in results if not r["right"]]
    assert not any(r["leader"] and not r["right"] for r in results)  # a clear leader is never a wrong one


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
