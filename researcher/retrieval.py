"""Which library scenarios fit a research plan: Okapi BM25 over the scenarios' text, locally.

Each scenario becomes one document (name and title twice, description, ODD, parameters,
metrics, references). The plan is the query, expanded through a small social-science
thesaurus so that "tolerance" finds "confidence bound" and "employees" finds "members".
A scenario in the plan's domain gets a boost. Scores are absolute, in [0, 1], so a caller
can tell "nothing fits" from "the best of a bad lot".
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from researcher.schemas import ResearchPlan
from simulator import ScenarioSpec

K1 = 1.5
B = 0.75
SYNONYM_WEIGHT = 0.6  # a thesaurus term counts for less than a word the plan really uses
DOMAIN_BOOST = 0.25
SATURATION = 0.6  # relevance r becomes r / (r + SATURATION): on-topic plans score about 0.7-0.9

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
""".split())

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
collective protest riot strike mobilization crowd
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
    """Query term weights: 1 for the plan's own words, SYNONYM_WEIGHT for thesaurus neighbours."""
    weights: dict[str, float] = {}
    for t in tokens:
        weights[t] = 1.0
    for t in list(weights):
        for syn in THESAURUS.get(t, ()):
            weights.setdefault(syn, SYNONYM_WEIGHT)
    return weights


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

    def scores(self, query: dict[str, float]) -> list[float]:
        """The BM25 score of every document for weighted query terms."""
        out = []
        for tf, dl in zip(self.tfs, self.lengths):
            norm = self.k1 * (1.0 - self.b + self.b * dl / self.avgdl)
            s = 0.0
            for term, w in query.items():
                f = tf.get(term)
                if f:
                    s += w * self.idf[term] * f * (self.k1 + 1.0) / (f + norm)
            out.append(s)
        return out

    def relevance(self, query: dict[str, float]) -> list[float]:
        """Scores divided by the query's own terms' idf mass (words no document has count fully),
        so a score says how much of the query a document covers, comparably across queries."""
        unseen_idf = math.log(1.0 + (len(self.tfs) + 0.5) / 0.5)
        mass = sum(w * self.idf.get(t, unseen_idf) for t, w in query.items() if w >= 1.0)
        if mass <= 0:
            return [0.0] * len(self.tfs)
        return [s / mass for s in self.scores(query)]


def scenario_text(spec: ScenarioSpec) -> str:
    """Everything a reader would use to recognise a scenario."""
    odd = spec.odd
    parts = [spec.name, spec.name, spec.title, spec.title, spec.description, odd.purpose, odd.entities,
             odd.process, odd.design_concepts, odd.initialization, odd.submodels, *spec.references]
    parts += [f"{name} {p.description}" for name, p in spec.parameters.items()]
    parts += list(spec.metrics)
    return "\n".join(parts)


def plan_text(plan: ResearchPlan) -> str:
    parts = [plan.title, plan.summary, *plan.research_questions, *plan.theories]
    for h in plan.hypotheses:
        parts += [h.statement, h.independent_variable, h.dependent_variable]
    return "\n".join(parts)


def _saturate(r: float) -> float:
    return r / (r + SATURATION) if r > 0 else 0.0


def rank_scenarios(plan: ResearchPlan, specs: Sequence[ScenarioSpec], k: int = 5) -> list[tuple[str, float]]:
    """The `k` best scenarios for the plan as (name, score in [0, 1]), best first."""
    if not specs:
        return []
    index = BM25([tokenize(scenario_text(s)) for s in specs])
    relevance = index.relevance(expand(tokenize(plan_text(plan))))
    scored = []
    for spec, r in zip(specs, relevance):
        boost = 1.0 + DOMAIN_BOOST if spec.domain == plan.domain else 1.0  # no text match, no boost
        scored.append((spec.name, round(_saturate(r * boost), 4)))
    domain_of = {s.name: s.domain for s in specs}
    scored.sort(key=lambda item: (-item[1], domain_of[item[0]] != plan.domain, item[0]))
    return scored[:k]


def best_matches(query: str, docs: dict[str, str]) -> list[tuple[str, float]]:
    """Rank named short texts (parameters, metrics) for a query; relevance 0 means no shared word."""
    if not docs:
        return []
    names = list(docs)
    index = BM25([tokenize(docs[n]) for n in names])
    relevance = index.relevance(expand(tokenize(query)))
    return sorted(zip(names, relevance), key=lambda item: -item[1])
