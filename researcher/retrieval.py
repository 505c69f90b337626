"""Which library scenarios fit a research topic: Okapi BM25 over the scenarios' text, locally.

Each scenario becomes one document: name and title twice, description, ODD, parameters, metrics,
references, and its `vocabulary` (the words a social scientist uses for it: aliases, phenomena,
outcomes, actors) counted VOCABULARY_WEIGHT times. Words and adjacent pairs of words ("tolerance
threshold", "price dispersion") are terms. The user's own topic is the main query and the
model's plan the lesser one, because a small model's plan is often wrong where the topic is not;
both are expanded through a small social-science thesaurus. Scores are absolute, in [0, 1], so a
caller can tell "nothing fits" from "the best of a bad lot".
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from researcher.schemas import ResearchPlan
from simulator import ScenarioSpec

K1 = 1.5
B = 0.75
SYNONYM_WEIGHT = 0.6  # a thesaurus term counts for less than a word the query really uses
PHRASE_WEIGHT = 0.5  # a matched pair of adjacent words adds to its words' score (a bonus: not in the mass)
VOCABULARY_WEIGHT = 3  # a vocabulary entry counts as often as this in its scenario's document
TOPIC_SHARE = 0.7  # of a score, the share from the user's topic; the rest from the plan, as far as the topic agrees
SATURATION = 0.6  # relevance r becomes r / (r + SATURATION)

STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each either few for from further
had has have having he her here hers him his how i if in into is it its itself just may might more
most much must my no nor not of off on once only or other our out over own same she should so some
such than that the their them then there these they this those through to too under until up upon
us very was we were what when where whether which while who whom why will with within without would
you your yours one two three four five six seven eight nine ten vs versus per via among amongst
agent agents model models simulation simulate study effect effects affect affects impact
rather lead leads make makes more less higher lower high low increase increases decrease decreases
change changes changed changing
based main driver drivers outcome outcomes mechanism mechanisms pattern patterns factor factors role
explain explains determine determines question questions research researcher individual individuals
interaction interactions produce produces reproduce reproduces
""".split())  # the last lines: research boilerplate, in every plan (and the fallback plan) whatever its subject

_SUFFIXES = sorted(
    """ational ations ation ating ated ates ate izations ization izing ized izes ize isations isation
    ising ised ises ise ically ical ics ic ities ity iveness ive nesses ness ments ment ings ing ances
    ance ences ence ants ant ents ent hoods hood ers er ies ied es ed ly al s e""".split(),
    key=len, reverse=True,
)
_BRITISH_OUR = re.compile(r"our(?=(s|ed|ing|hood|hoods|ite|ites|able)?$)")
_WORD = re.compile(r"[a-z0-9]+")


def stem(word: str) -> str:
    """Light suffix stripping: enough to meet `segregate`/`segregation`, `rumours`/`rumor`."""
    word = _BRITISH_OUR.sub("or", word)
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix in ("ies", "ied") else "")
    return word


def tokenize(text: str) -> list[str]:
    """Lowercased, split at non-letters (so `attack_rate` is two words), stopwords out, stemmed."""
    words = _WORD.findall(text.lower().replace("_", " "))
    return [stem(w) for w in words if w not in STOPWORDS and len(w) > 1]


_CLAUSE = re.compile(r"[.,;:!?()\[\]\n–—/]+|\s-\s")  # a hyphen inside a word (word-of-mouth) joins


def phrases(text: str) -> list[str]:
    """Adjacent pairs of kept words within a clause, as one term each (`toler threshold`)."""
    out = []
    for clause in _CLAUSE.split(text):
        words = tokenize(clause)
        out += [f"{a} {b}" for a, b in zip(words, words[1:])]
    return out


# Groups of words social scientists use for the same thing. Only the query is expanded.
_THESAURUS_GROUPS = """
tolerance tolerant confidence openness open-minded bound
opinion view belief attitude stance
polarization fragmentation cluster division divided
consensus agreement
inequality unequal gini disparity
wealth money income rich poor broke
trade exchange transaction transfer give
audit inspection monitoring detection enforcement deterrence
fine penalty punishment sanction
evasion evade cheat cheating noncompliance compliance comply
tax taxation taxpayer
employee worker staff member colleague coworker
organization company firm workplace corporate
practice innovation technology product idea
spread diffusion adoption adopt adopter contagion propagation uptake
segregation separation homophily sorting similarity
neighborhood neighbor district residential
group ethnic race minority
rumor gossip hearsay misinformation story
die stop extinction fade stifle stifler
epidemic disease infection outbreak pandemic virus
density degree connectivity contact
size attack final extent reach
talk tell speak conversation communicate contact meet encounter
prediction predict forecast guess expectation
probability likelihood frequency
learning learn adapt experience
cooperation cooperate cooperator contribution contribute altruism prosocial
protest riot strike mobilization crowd
culture cultural trait norm tradition
network graph tie
attendance crowding congestion coordination
speed fast rapid quick pace
imitation imitate copy peer conformity influence
vote voter election partisan party
"""


def _thesaurus() -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for line in _THESAURUS_GROUPS.strip().splitlines():
        group = {t for w in line.split() for t in tokenize(w.replace("-", " "))}
        for term in group:
            out.setdefault(term, set()).update(group - {term})
    return {k: frozenset(v) for k, v in out.items()}


THESAURUS = _thesaurus()


def expand(tokens: Iterable[str]) -> dict[str, float]:
    """Query term weights: 1 for the query's own words, SYNONYM_WEIGHT for thesaurus neighbours."""
    weights: dict[str, float] = {}
    for t in tokens:
        weights[t] = 1.0
    for t in list(weights):
        for syn in THESAURUS.get(t, ()):
            weights.setdefault(syn, SYNONYM_WEIGHT)
    return weights


Group = Mapping[str, float]  # alternative terms with weights; a group counts through its best match


def word_groups(text: str) -> list[Group]:
    """A query as groups: each word of `text` with its thesaurus neighbours (so one word counts once,
    however many synonyms a document holds), and each pair of adjacent words on its own."""
    words = list(dict.fromkeys(tokenize(text)))
    groups: list[Group] = [{w: 1.0, **{s: SYNONYM_WEIGHT for s in THESAURUS.get(w, ()) if s not in words}}
                           for w in words]
    return groups + [{pair: PHRASE_WEIGHT} for pair in dict.fromkeys(phrases(text))]


class BM25:
    """Okapi BM25 over a small corpus of token lists."""

    def __init__(self, docs: Sequence[Sequence[str]], k1: float = K1, b: float = B) -> None:
        self.k1, self.b = k1, b
        self.tfs = [Counter(d) for d in docs]
        self.lengths = [len(d) for d in docs]
        self.avgdl = (sum(self.lengths) / len(docs)) if docs and sum(self.lengths) else 1.0
        df = Counter(t for tf in self.tfs for t in tf)
        n = len(docs)
        self.idf = {t: math.log(1.0 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}

    def scores(self, query: Mapping[str, float] | Sequence[Group]) -> list[float]:
        """The BM25 score of every document for weighted query terms (each its own group) or groups."""
        groups = _groups(query)
        out = []
        for tf, dl in zip(self.tfs, self.lengths):
            norm = self.k1 * (1.0 - self.b + self.b * dl / self.avgdl)
            s = 0.0
            for group in groups:
                s += max((w * self.idf[t] * tf[t] * (self.k1 + 1.0) / (tf[t] + norm)
                          for t, w in group.items() if tf.get(t)), default=0.0)
            out.append(s)
        return out

    def relevance(self, query: Mapping[str, float] | Sequence[Group]) -> list[float]:
        """Scores divided by the query's own words' idf mass (words no document has count fully),
        so a score says how much of the query a document covers, comparably across queries.
        Synonyms and phrases are not in the mass: they only add."""
        unseen_idf = math.log(1.0 + (len(self.tfs) + 0.5) / 0.5)
        mass = sum(w * self.idf.get(t, unseen_idf) for group in _groups(query) for t, w in group.items() if w >= 1.0)
        if mass <= 0:
            return [0.0] * len(self.tfs)
        return [s / mass for s in self.scores(query)]


def _groups(query: Mapping[str, float] | Sequence[Group]) -> Sequence[Group]:
    return [{t: w} for t, w in query.items()] if isinstance(query, Mapping) else query


def scenario_text(spec: ScenarioSpec) -> str:
    """Everything a reader would use to recognise a scenario, but its vocabulary."""
    odd = spec.odd
    parts = [spec.name, spec.name, spec.title, spec.title, spec.description, odd.purpose, odd.entities,
             odd.process, odd.design_concepts, odd.initialization, odd.submodels, *spec.references]
    parts += [f"{name} {p.description}" for name, p in spec.parameters.items()]
    parts += list(spec.metrics)
    return "\n".join(parts)


def scenario_terms(spec: ScenarioSpec) -> list[str]:
    """The scenario's document: the words and pairs of its text, and its vocabulary VOCABULARY_WEIGHT
    times. A vocabulary phrase weighs as a phrase: its words alone count once, so "urban legend"
    says little about "urban sprawl"."""
    text = scenario_text(spec)
    terms = [*tokenize(text), *phrases(text)]
    for entry in spec.vocabulary:
        words, pairs = tokenize(entry), phrases(entry)
        terms += words + (pairs or words) * VOCABULARY_WEIGHT if len(words) == 1 else words + pairs * VOCABULARY_WEIGHT
    return terms


def plan_text(plan: ResearchPlan) -> str:
    parts = [plan.title, plan.summary, *plan.research_questions, *plan.theories]
    for h in plan.hypotheses:
        parts += [h.statement, h.independent_variable, h.dependent_variable]
    return "\n".join(parts)


def _saturate(r: float) -> float:
    return r / (r + SATURATION) if r > 0 else 0.0


def rank_scenarios(plan: ResearchPlan | None, specs: Sequence[ScenarioSpec], k: int = 5, *,
                   topic: str | None = None) -> list[tuple[str, float]]:
    """The `k` best scenarios as (name, score in [0, 1]), best first.

    With a topic, TOPIC_SHARE of a scenario's relevance is the topic's, and the rest is the plan's
    only as far as the topic supports it: a plan can confirm a scenario the user's words point at,
    never make one fit (a small model's plan often names a subject the topic does not). Either
    alone gives the whole score."""
    if not specs:
        return []
    index = BM25([scenario_terms(s) for s in specs])
    has_topic = bool(topic and topic.strip())
    by_plan = index.relevance(word_groups(plan_text(plan))) if plan is not None else None
    if not has_topic:
        relevance = by_plan or [0.0] * len(specs)
    else:
        by_topic = index.relevance(word_groups(topic))
        relevance = by_topic if by_plan is None else [
            TOPIC_SHARE * t + (1.0 - TOPIC_SHARE) * min(p, t) for t, p in zip(by_topic, by_plan)]
    scored = sorted(((s.name, round(_saturate(r), 4)) for s, r in zip(specs, relevance)),
                    key=lambda item: (-item[1], item[0]))
    return scored[:k]


def best_matches(query: str, docs: dict[str, str]) -> list[tuple[str, float]]:
    """Rank named short texts (parameters, metrics) for a query; relevance 0 means no shared word."""
    if not docs:
        return []
    names = list(docs)
    index = BM25([tokenize(docs[n]) for n in names])
    relevance = index.relevance(expand(tokenize(query)))
    return sorted(zip(names, relevance), key=lambda item: -item[1])
