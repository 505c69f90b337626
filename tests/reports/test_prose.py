"""The prose gate: true and false sentences, judged without a model."""

from __future__ import annotations

import pytest

from reports.checks import untraced_numbers
from reports.models import Fact, Reference
from reports.prose import (
    Effect,
    contradictions,
    echoes,
    gate,
    leaked_markup,
    number_violations,
    off_topic,
    repeated_sentences,
    unfinished,
)

CLUSTERS_FALL = Effect("H1", "n_clusters", "epsilon", "decrease", ("F5", "F7"))
CLUSTERS_RISE = Effect("H1", "n_clusters", "epsilon", "increase", ("F5", "F7"))
OPINION_RISES = Effect("H2", "opinion_sd", "epsilon", "increase", ("F9",))
TERMS = ["epsilon", "n_clusters", "opinion_sd"]


# ---- numbers --------------------------------------------------------------------------------


def test_a_false_claim_whose_numbers_coincide_with_fact_values_is_rejected():
    """The issue's sentence: 10% matches a swept value of 0.1 and 20 the run count; neither may pass."""
    sentence = "opinion_sd fell from 10% to 5% over 20 steps."
    facts = [Fact(id="F1", description="swept", value=0.1, source="x"), Fact(id="F2", description="runs", value=20, source="x")]
    assert untraced_numbers(sentence, facts) == ["5%"]  # value coincidence lets two of three through the old check
    assert number_violations(sentence) == ["10%", "5%", "20"]
    assert not gate(sentence, key_terms=TERMS).passed


@pytest.mark.parametrize("text", ["{{F3}} of runs settled.", "See [Figure fig2] and Table 1 for H2.",
                                  "The first result is clear, and the second one too.", "One of the agents moved.",
                                  "Several clusters formed; many agents agreed with one another."])
def test_placeholders_labels_ordinals_and_pronouns_are_not_numbers(text):
    assert number_violations(text) == []


@pytest.mark.parametrize("text, words", [
    ("Twenty conditions ran with four seeds.", ["Twenty", "four"]),
    ("Half of the runs settled and a third did not.", ["Half", "a third"]),
    ("The share doubled, about fifty percent.", ["doubled", "fifty", "percent"]),
    ("Agents formed one cluster over hundreds of steps.", ["one", "hundreds"]),
    ("A dozen runs, twice as many as before, a tenfold rise.", ["dozen", "twice", "tenfold"]),
])
def test_number_words_for_quantities_are_violations(text, words):
    assert number_violations(text) == words


# ---- claims ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["Clusters rise with epsilon.", "The number of clusters increases as epsilon grows.",
                                  "Fewer clusters at lower epsilon.", "Epsilon has no effect on n_clusters.",
                                  "As the correlation {{F5}} shows, the count goes up."])
def test_a_claim_against_a_negative_effect_is_flagged(text):
    assert [e for _, e in contradictions(text, [CLUSTERS_FALL])] == [CLUSTERS_FALL]


@pytest.mark.parametrize("text", ["Clusters fall with epsilon.", "More clusters form at lower epsilon.",
                                  "Clusters did not rise with epsilon.", "We hypothesised that clusters rise with epsilon.",
                                  "Whether clusters rise with epsilon is the question.", "Opinions settled quickly."])
def test_a_claim_in_line_with_the_effect_or_no_claim_passes(text):
    assert contradictions(text, [CLUSTERS_FALL]) == []


def test_the_same_sentence_passes_or_fails_with_the_sign_of_the_effect():
    assert contradictions("Clusters rise with epsilon.", [CLUSTERS_RISE]) == []
    assert contradictions("Clusters rise with epsilon.", [CLUSTERS_FALL])


def test_no_effect_against_a_supported_increase_is_flagged_and_only_for_its_metric():
    text = "Epsilon has no effect on opinion_sd, while clusters rise with it."
    assert [e.metric for _, e in contradictions(text, [OPINION_RISES, CLUSTERS_RISE])] == ["opinion_sd"]
    none = Effect("H2", "opinion_sd", "epsilon", "none", ())
    assert contradictions("opinion_sd is unchanged by epsilon.", [none]) == []
    assert contradictions("opinion_sd rises with epsilon.", [none])


# ---- loops, endings, markup, topic ----------------------------------------------------------


def test_a_repeated_sentence_and_a_loop_are_caught():
    text = "The study is about clusters. The study is about clusters. Agents meet and agents meet and agents meet and agents meet."
    assert repeated_sentences(text) == ["The study is about clusters.",
                                        "Agents meet and agents meet and agents meet and agents meet."]
    assert repeated_sentences("Clusters form early. Opinions then settle near the centre.") == []


@pytest.mark.parametrize("text, last", [("Clusters formed. The", "The"), ("Clusters formed as a result of the.", "Clusters formed as a result of the."),
                                        ("Clusters formed", "Clusters formed"), ("Clusters formed, e.g. early.", None)])
def test_an_unfinished_last_sentence_is_caught(text, last):
    assert unfinished(text) == last


def test_template_markup_and_an_echoed_reviewer_comment_are_caught():
    comment = "Please explain why the clusters fall when epsilon is raised in the sweep."
    text = ("{% if clusters %}Clusters fall.{% endif %} Reviewer comment: add detail. Clusters form at {{F3}}. "
            "We explain why the clusters fall when epsilon is raised in the sweep. A {{ value }} here.")
    assert leaked_markup(text, echo=comment) == [
        "{% if clusters %}Clusters fall.{% endif %} Reviewer comment: add detail.",
        "We explain why the clusters fall when epsilon is raised in the sweep.", "A {{ value }} here."]


def test_off_topic_text_names_none_of_the_key_terms():
    assert off_topic("A pleasant day in the park.", TERMS)
    assert not off_topic("The number of clusters shrinks as epsilon grows.", ["epsilon"])
    assert not off_topic("Opinion sd stays high.", ["opinion_sd"])


# ---- the gate -------------------------------------------------------------------------------


def test_the_gate_drops_offending_sentences_and_keeps_the_rest():
    text = ("Clusters fall with epsilon, as {{F5}} shows. Clusters fall with epsilon, as {{F5}} shows. "
            "Clusters rise with epsilon. The runs took 20 steps. The")
    result = gate(text, effects=[CLUSTERS_FALL], key_terms=TERMS)
    assert not result.passed and len(result.reasons) == 4
    assert result.cleaned_text == "Clusters fall with epsilon, as {{F5}} shows."
    assert result.dropped_sentences == ["Clusters fall with epsilon, as {{F5}} shows.", "Clusters rise with epsilon.",
                                        "The runs took 20 steps.", "The"]
    assert gate(result.cleaned_text, effects=[CLUSTERS_FALL], key_terms=TERMS).passed


def test_good_prose_passes_untouched_and_empty_or_off_topic_prose_fails():
    good = "Fewer clusters remain as epsilon grows ({{F5}}).\n\nThe count of clusters settles early in every run."
    result = gate(good, effects=[CLUSTERS_FALL], key_terms=TERMS)
    assert result.passed and result.cleaned_text == good and result.dropped_sentences == []
    assert not gate("", key_terms=TERMS).passed
    assert gate("Most runs settled by {{F3}}.", key_terms=TERMS).passed  # citing a fact of the study is on topic
    assert gate("A pleasant day in the park.", key_terms=TERMS).reasons[0].startswith("off topic")


# ---- false positives a capable model met (issue 11, relay run) -----------------------------------

POLARIZATION_FALLS = Effect("H1", "polarization", "tolerance", "decrease", ("F3",))
REFERENCES = [Reference(key="deffuant2000", authors="Deffuant, Guillaume and Neau, David", title="Mixing beliefs",
                        year="2000"),
              Reference(key="schelling1971", authors="Thomas C. Schelling", title="Dynamic models", year="1971")]


def test_an_echo_is_a_long_verbatim_copy_of_the_comment_not_a_shared_phrase():
    comment = "Discuss the size of the effect more carefully and say what limits it."
    assert echoes("We now discuss the size of the effect more carefully and say what limits it.", comment)
    assert not echoes("The size of the effect is {{F3}}, and the seeds limit it.", comment)
    assert echoes("Revised as asked: add the caveats of a toy model.", "Add the caveats of a toy model.")
    assert not echoes("Add caveats.", "Add caveats.")  # a two-word comment shares words, it cannot be echoed


def test_a_repair_that_fixes_the_sentence_its_comment_quoted_is_not_an_echo():
    repair = ('Fix these problems: numbers written out (twenty) in "Clusters settle within twenty steps of the '
              'start of every run of the sweep.": cite a fact by its placeholder or leave the number out.')
    fixed = "Clusters settle within {{F3}} of the start of every run of the sweep."
    assert leaked_markup(fixed, echo=repair) == []
    assert gate(fixed, key_terms=TERMS, echo=repair).passed


@pytest.mark.parametrize("text", ["Each agent copies an agreeing one.", "Meetings are one-to-one.",
                                  "Agents adjust towards one another.", "The new view is a more moderate one."])
def test_one_as_a_pronoun_or_idiom_is_not_a_number(text):
    assert number_violations(text) == []


def test_a_year_is_allowed_only_inside_a_citation_of_a_listed_reference():
    cited = "As Deffuant et al. (2000) and (Schelling, 1971) showed, clusters persist."
    assert number_violations(cited, REFERENCES) == []
    assert number_violations(cited) == ["2000", "1971"]  # without the report's references a year is a number
    assert number_violations("As Deffuant et al. (1999) showed.", REFERENCES) == ["1999"]  # not its year
    assert number_violations("As Axelrod (1997) showed.", REFERENCES) == ["1997"]  # not a listed work
    assert number_violations("In 2000 the clusters persisted.", REFERENCES) == ["2000"]  # not a citation
    assert gate(cited, key_terms=["clusters"], references=REFERENCES).passed


def test_sentences_on_a_shared_frame_are_not_repeats_but_true_repeats_are():
    parallel = ("At low tolerance the agents separate into homogeneous neighbourhoods within a few steps. "
                "At high tolerance the agents separate into homogeneous neighbourhoods within a few steps. "
                "Final polarization is {{F3}} at the lowest tolerance. Final polarization is {{F5}} at the lowest "
                "tolerance. The mean at low tolerance, the mean at middle tolerance and the mean at high tolerance differ.")
    assert repeated_sentences(parallel) == []
    assert repeated_sentences("The agents form stable clusters early. The agents do not form stable clusters early.") == []
    again = "The study shows that agents cluster early. The study shows that the agents cluster early."
    assert repeated_sentences(again) == ["The study shows that the agents cluster early."]
    assert repeated_sentences("Agents meet and agents meet and agents meet.") == ["Agents meet and agents meet and agents meet."]


@pytest.mark.parametrize("text, flagged", [
    ("Other factors make polarization more persistent.", False),  # says nothing of tolerance
    ("Polarization rises over time.", False),
    ("Polarization rises with tolerance.", True),
    ("Polarization rises as agents become more tolerant.", True),  # a trend, the parameter paraphrased
    ("The higher the tolerance, the higher the polarization.", True),
    ("Polarization rises, as {{F3}} shows.", True),
])
def test_only_a_sentence_about_the_parameters_effect_can_contradict_it(text, flagged):
    assert bool(contradictions(text, [POLARIZATION_FALLS])) == flagged


def test_without_key_terms_there_is_no_topic_to_keep_to():
    text = "The run folder holds everything needed to rerun the study exactly."
    assert gate(text, key_terms=[]).passed and not gate(text, key_terms=TERMS).passed
