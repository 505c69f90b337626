"""The prose gate: what a model's text must pass before it may stand in a report.

A small model writes numbers it does not know, loops, stops mid-sentence, leaks template markup
and states effects backwards; none of that may reach a report, and none of it can be left to
the model to notice. Every test here is deterministic and the model is never asked to judge.

Numbers: model prose may hold no number at all. Facts enter only as placeholders (`{{F3}}`); a
numeric token (by `reports.checks.number_tokens`, the report check's own tokenizer) or a number
word for a quantity is a violation, whatever its value: "10%" is not let through because some
fact happens to be 0.1. Number words are the cardinals ("two", "twenty", "hundreds"),
"dozen", "half"/"halved", fractions after a count ("a third", "two quarters"), "percent",
"percentage point" and multiples ("double", "twice", "tripled", "tenfold"). Not counted:
ordinals ("first", "second" order a list, they measure nothing), vague quantifiers ("several",
"many", "few"), and "one" where the word before or after makes it a pronoun or an idiom ("one of",
"one another", "no one", "the second one", "an agreeing one", "one-to-one"); elsewhere "one" is
a count ("agents formed one cluster") and is flagged. A year is a number too, but directly inside
a citation of one of the report's references ("Deffuant et al. (2000)", "(Axelrod, 1997)"). A
text that cites a fact placeholder is on topic.

Claims: a sentence that names a hypothesis's metric (by name, or all of its words) or cites one
of its facts, and states a direction (rises / falls / no effect) contrary to the computed
`Effect`, contradicts the data. A sentence about the metric that neither names the parameter,
nor cites the facts, nor states a trend against something varied ("as ... rises", "with higher
...") makes no claim about the parameter's effect ("other factors make polarization more
persistent") and is left alone. Sentences that only report what was expected or asked
("hypothesised", "whether", "would") state no claim and are left alone. Where a clause names
the parameter and holds two direction words, the claim is their product ("more clusters at lower
epsilon" is a decrease); more than two, or none, is no claim this check can read.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from reports.checks import number_tokens
from reports.models import FACT_RE, Reference

Direction = Literal["increase", "decrease", "none"]


@dataclass(frozen=True)
class Effect:
    """What the statistics found for one hypothesis: raising `parameter` moves `metric` this way."""

    hypothesis_id: str
    metric: str
    parameter: str | None
    direction: Direction
    fact_ids: tuple[str, ...] = ()


@dataclass
class GateResult:
    """`passed`: the text may stand as written. `cleaned_text`: the text without its offending
    sentences (which may pass where the whole did not); `reasons` are fit to show the writer."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    cleaned_text: str = ""
    dropped_sentences: list[str] = field(default_factory=list)


# ---- sentences ------------------------------------------------------------------------------

_ABBREVIATION_RE = re.compile(r"(?i)\b(?:e\.g|i\.e|et al|etc|cf|vs|fig|approx|resp|no)\.$")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def sentences(paragraph: str) -> list[str]:
    """The sentences of one paragraph; "e.g." and "et al." do not end one."""
    parts, pending = [], ""
    for piece in _SENTENCE_END_RE.split(paragraph.strip()):
        pending = f"{pending} {piece}".strip() if pending else piece
        if not _ABBREVIATION_RE.search(pending):
            parts.append(pending)
            pending = ""
    return [p for p in [*parts, pending] if p.strip()]


def paragraphs(text: str) -> list[list[str]]:
    return [s for s in (sentences(p) for p in re.split(r"\n\s*\n", text.strip())) if s]


def all_sentences(text: str) -> list[str]:
    """Every sentence of `text`, paragraph after paragraph."""
    return [s for para in paragraphs(text) for s in para]


_WORDS_RE = re.compile(r"[a-z]+")


def _words(text: str) -> list[str]:
    """Lower-case words; `opinion_sd` reads as "opinion sd"."""
    return _WORDS_RE.findall(text.lower().replace("_", " "))


def _key(sentence: str) -> str:
    return re.sub(r"\W+", " ", sentence.lower()).strip()


# ---- numbers --------------------------------------------------------------------------------

_CARDINALS = ("zero|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
              "sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|"
              "hundreds?|thousands?|millions?|billions?|dozens?")
_NUMBER_WORD_RE = re.compile(
    rf"(?i)\b(?:(?:{_CARDINALS})(?:-\w+)?|half|halve[sd]?|halving|per ?cent|percentage points?"
    r"|(?:a|one|two|three|four)\s+(?:thirds?|quarters?|fifths?|tenths?)"
    r"|double[sd]?|doubling|twice|triple[sd]?|tripling|thrice|\w+fold|one)\b"
)
# "one" as a pronoun or in an idiom, told by the word before or after it
_ONE_BEFORE = frozenset("no any every each the this that which some someone other another first second last next "
                        "only same single such".split())
_ONE_AFTER = frozenset("of another or side hand way might can could would should must may".split())


_ONE_IDIOM_RE = re.compile(r"(?i)\bone-(?:to|on)-one\b|\bone-(?:sided|off|way)\b")
# "an agreeing one", "a more moderate one": an article and up to two words before "one" make it a pronoun
_ARTICLE_ONE_RE = re.compile(r"(?i)\b(?:a|an)\s+(?:(?!of\b)[a-z-]+\s+){1,2}$")  # not "a total of one"


def _is_pronoun_one(text: str, m: re.Match[str]) -> bool:
    before = _words(text[: m.start()])[-1:]
    after = _words(text[m.end() :])[:1]
    return bool(set(before) & _ONE_BEFORE or set(after) & _ONE_AFTER or _ARTICLE_ONE_RE.search(text[: m.start()]))


def number_words(text: str) -> list[str]:
    """Number words for quantities in `text`, as written (see the module docstring for which)."""
    text = _ONE_IDIOM_RE.sub(" ", FACT_RE.sub(" ", text))
    return [m.group() for m in _NUMBER_WORD_RE.finditer(text)
            if m.group().lower() != "one" or not _is_pronoun_one(text, m)]


# "Deffuant et al. (2000)", "Schelling (1971)", "(Axelrod, 1997)", "Hegselmann and Krause, 2002"
_CITATION_RE = re.compile(
    r"(?P<author>[A-Z][\w'’-]+)(?:\s+et\s+al\.?|\s+(?:and|&)\s+[A-Z][\w'’-]+)?"
    r"(?:\s*\(|,\s*)(?P<year>1[89]\d\d|20\d\d|2100)[a-z]?")


def _fold(name: str) -> str:
    """A surname as a writer may spell it: "Drăgulescu" and "Dragulescu" alike."""
    return "".join(c for c in unicodedata.normalize("NFKD", name.lower()) if not unicodedata.combining(c))


def reference_years(references: Iterable[Reference]) -> set[tuple[str, str]]:
    """(author surname, year) for every author of every reference: the citations prose may write."""
    cited = set()
    for ref in references:
        for author in ref.authors.split(" and "):
            surname = author.split(",")[0] if "," in author else (author.split() or [""])[-1]
            cited.add((_fold(surname.strip()), ref.year.strip()))
    return cited


def _without_citation_years(text: str, cited: set[tuple[str, str]]) -> str:
    """`text` with the year of each citation that matches a reference blanked out; a year anywhere
    else, or of a work the report does not list, stays and is a number like any other."""
    def blank(m: re.Match[str]) -> str:
        if (_fold(m.group("author")), m.group("year")) not in cited:
            return m.group()
        return m.group()[: m.start("year") - m.start()] + " " * len(m.group("year"))
    return _CITATION_RE.sub(blank, text) if cited else text


def number_violations(text: str, references: Iterable[Reference] = ()) -> list[str]:
    """Every numeric token and number word in model prose: none is allowed, whatever its value, but
    the year of a citation of one of `references` ("Deffuant et al. (2000)")."""
    text = _without_citation_years(text, reference_years(references))
    return number_tokens(text) + number_words(text)


# ---- loops, endings, markup, topic ----------------------------------------------------------

_TOKENS_RE = re.compile(r"[a-z0-9]+")
_NEGATIONS = frozenset("not no never nor neither without".split())


def _content(sentence: str) -> list[str]:
    """The sentence's words less function words; a placeholder `{{F3}}` stays a word ("f3")."""
    return [w for w in _TOKENS_RE.findall(sentence.lower()) if w not in _FUNCTION_WORDS]


def _near_duplicate(a: str, b: str) -> bool:
    """The same sentence said again with a function word or one more word changed: "the agents
    cluster" after "agents cluster". Sentences on a shared frame that differ in a content word ("at
    low m ..." / "at high m ...", or another placeholder) say different things and are not repeats."""
    ca, cb = _content(a), _content(b)
    short, long_ = sorted((ca, cb), key=len)
    if len(short) < 4 or len(long_) - len(short) > 1 or (set(long_) - set(short)) & _NEGATIONS:
        return False  # "... do not form clusters" after "... form clusters" says the opposite
    it = iter(long_)
    return all(w in it for w in short)  # the shorter is the longer less at most one word


def _loops(sentence: str) -> bool:
    """A phrase said three times back to back in one sentence ("agents meet and agents meet and agents
    meet"): a small model's loop. A phrase that recurs apart, as in an enumeration on a shared frame,
    is not one."""
    words = _words(sentence)
    for period in range(1, 11):
        run = 0
        for i in range(len(words) - period):
            run = run + 1 if words[i] == words[i + period] else 0
            if run >= max(2 * period - 1, 4):  # the third saying may lack its joining word
                return True
    return False


def _repeat_indices(flat: Sequence[str]) -> list[int]:
    seen: list[str] = []
    repeated = []
    for i, sentence in enumerate(flat):
        key = _key(sentence)
        if key in seen or any(_near_duplicate(key, k) for k in seen) or _loops(sentence):
            repeated.append(i)
        else:
            seen.append(key)
    return repeated


def repeated_sentences(text: str) -> list[str]:
    """Sentences that repeat an earlier one (word for word or nearly), or loop within themselves."""
    flat = all_sentences(text)
    return [flat[i] for i in _repeat_indices(flat)]


_FUNCTION_WORDS = frozenset(
    "the a an of and or but to in on at by for with from as that this these those which who whose is are "
    "was were be been its their our his her than then so if because while whereas into onto".split()
)


def unfinished(text: str) -> str | None:
    """The last sentence when it has no end mark, or ends on a function word ("... of the."); else None."""
    paras = paragraphs(text)
    if not paras:
        return None
    last = paras[-1][-1]
    words = _words(last)
    if not re.search(r"[.!?][\"')\]]*$", last) or (words and words[-1] in _FUNCTION_WORDS):
        return last
    return None


_MARKUP_RE = re.compile(
    r"\{%|%\}|\{#|#\}|<!--|-->|\$\{|\{\{|\}\}"  # what is left of braces once valid placeholders are out
    r"|^\s*(?:reviewer(?:'s)? comments?|comment to address|current text|revised section|section|task|"
    r"facts you may cite|study|topic)\s*:",
    re.IGNORECASE | re.MULTILINE,
)


ECHO_WORDS = 8  # a run of this many of the comment's words, copied in order, is an echo whatever the comment's length
_QUOTED_RE = re.compile(r"\"[^\"]*\"|“[^”]*”")


def _longest_shared_run(a: Sequence[str], b: Sequence[str]) -> int:
    """The most consecutive words `a` and `b` have in common, in order."""
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def echoes(sentence: str, echo: str) -> bool:
    """Whether `sentence` copies the reviewer's comment `echo` back: a verbatim stretch of at least
    ECHO_WORDS of its words, or most of a shorter comment (three quarters of it, five words or more).
    What the comment quotes (the report's own sentences, in quotation marks) is not the comment's: a
    revision may keep or fix it; and sharing a phrase with the comment ("the size of the effect") is
    addressing it, not echoing it."""
    comment = _words(_QUOTED_RE.sub(" ", echo))
    if len(comment) < 5:
        return False
    run = _longest_shared_run(_words(sentence), comment)
    return run >= min(ECHO_WORDS, max(5, -(-3 * len(comment) // 4)))


def leaked_markup(text: str, echo: str = "") -> list[str]:
    """Sentences with template markup, prompt labels, or the reviewer's comment `echo` copied back."""
    return [sentence for sentence in all_sentences(text)
            if _MARKUP_RE.search(FACT_RE.sub("", sentence)) or (echo and echoes(sentence, echo))]


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _mentions(words: Sequence[str], needle: Sequence[str]) -> bool:
    stems = {_stem(w) for w in words}
    return bool(needle) and all(_stem(w) in stems for w in needle)


def off_topic(text: str, key_terms: Iterable[str]) -> bool:
    """True when the text names none of `key_terms` (a term is named when all its words appear)."""
    terms = [t for t in map(_words, key_terms) if t]
    return bool(terms) and not any(_mentions(_words(text), t) for t in terms)


# ---- claims against verdicts ----------------------------------------------------------------

_GENERIC_WORDS = frozenset("mean final total number count share fraction avg average value level of the".split())
_HEDGE_RE = re.compile(r"(?i)\b(?:hypothes\w*|predict\w*|whether|if|would|could|might|may|assum\w*|"
                       r"expected (?:to|that)|(?:is|are|was|were) expected|we expected)\b|\?\s*$")
_CLAUSE_RE = re.compile(r"[,;:]|\b(?:while|whilst|whereas|but|although|though|and)\b")
_INCREASE = (r"ris(?:e|es|ing)|rose|risen|increas(?:e|es|ed|ing)|gr(?:ow|ows|ew|own|owing)|higher|more|greater|"
             r"larger|bigger|climb(?:s|ed|ing)?|(?:go|goes|went|gone) up|amplif\w*|strengthen\w*")
_DECREASE = (r"fall(?:s|en|ing)?|fell|decreas(?:e|es|ed|ing)|declin(?:e|es|ed|ing)|drop(?:s|ped|ping)?|"
             r"lower(?:s|ed|ing)?|fewer|less|smaller|shr(?:ink|inks|ank|unk|inking)|reduc\w*|diminish\w*|weaken\w*|"
             r"(?:go|goes|went|gone) down")
_NONE = (r"no (?:clear |significant |measurable |noticeable |discernible )?(?:effect|change|difference|trend|"
         r"relationship|association|impact|influence)|unchanged|unaffected|independent of|"
         r"(?:did|does|do) not (?:change|affect|depend)|stay(?:s|ed)? (?:the same|flat|constant)")
_CAUSE = r"rais(?:e|es|ed|ing)"  # "raising m lowers gini": a direction only beside another one
_DIRECTION_RE = re.compile(
    rf"(?i)\b(?:(?P<none>{_NONE})|(?P<cause>{_CAUSE})|(?P<up>{_INCREASE})|(?P<down>{_DECREASE}))\b")
_COMPARATIVE = r"higher|lower|larger|smaller|greater|more|less|fewer|stronger|weaker|increasing|decreasing|rising|falling"
# A trend stated against something varied, though the parameter goes by another name: "as agents grow
# more tolerant", "with higher tolerance", "the higher the threshold, the fewer the clusters".
_TREND_RE = re.compile(
    rf"(?i)\b(?:as|when|whenever)\s+(?:[\w-]+\s+){{0,4}}?(?:{_INCREASE}|{_DECREASE}|{_CAUSE}d?)\b"
    rf"|\b(?:with|at|for|under|given)\s+(?:an?\s+)?(?:{_COMPARATIVE})\b"
    rf"|\bthe\s+(?:{_COMPARATIVE})\b.*\bthe\s+(?:{_COMPARATIVE})\b")
_NEGATION_RE = re.compile(r"(?i)\b(?:not|never|no longer|neither|nor|without)\s+(?:\w+\s+)?$|n't\s+(?:\w+\s+)?$")


def _terms(name: str | None) -> list[str]:
    words = _words(name or "")
    content = [w for w in words if len(w) >= 2 and w not in _GENERIC_WORDS]
    return content or words


def _claim(clause: str, names_parameter: bool) -> str | None:
    """The direction a clause claims for the metric it names: increase, decrease, none, not-X, or None."""
    found = list(_DIRECTION_RE.finditer(clause))
    if any(m.group("none") for m in found):
        return "none"
    signs = [-1 if m.group("down") else 1 for m in found]
    if any(_NEGATION_RE.search(clause[: m.start()]) for m in found):
        return f"not-{'increase' if signs[0] > 0 else 'decrease'}" if len(found) == 1 else None
    if len(found) == 1 and not found[0].group("cause"):
        return "increase" if signs[0] > 0 else "decrease"
    if len(found) == 2 and names_parameter:
        return "increase" if signs[0] * signs[1] > 0 else "decrease"
    return None


def _contrary(claim: str, effect: Direction) -> bool:
    if claim.startswith("not-"):
        return claim[4:] == effect
    return claim != effect


def contradictions(text: str, effects: Iterable[Effect]) -> list[tuple[str, Effect]]:
    """(sentence, effect) for each sentence that states a direction for an effect's metric contrary to it."""
    found = []
    effects = list(effects)
    for sentence in all_sentences(text):
        if _HEDGE_RE.search(sentence):
            continue
        cited = set(FACT_RE.findall(sentence))
        for effect in effects:
            cites = bool(cited & set(effect.fact_ids))
            if not (cites or _TREND_RE.search(sentence) or _mentions(_words(sentence), _terms(effect.parameter))):
                continue  # "other factors make polarization more persistent" says nothing of the parameter
            # The clauses that name the metric; a sentence citing one of its facts counts whole.
            clauses = [c for c in _CLAUSE_RE.split(sentence) if _mentions(_words(c), _terms(effect.metric))]
            if not clauses and cites:
                clauses = [FACT_RE.sub(" ", sentence)]
            for clause in clauses:
                claim = _claim(clause, bool(_mentions(_words(clause), _terms(effect.parameter))
                                            or _TREND_RE.search(clause)))
                if claim and _contrary(claim, effect.direction):
                    found.append((sentence, effect))
                    break
    return found


def _effect_words(effect: Effect) -> str:
    if effect.direction == "none":
        return f"{effect.parameter} has no measurable effect on {effect.metric}"
    return f"raising {effect.parameter} {effect.direction}s {effect.metric}"


# ---- the gate -------------------------------------------------------------------------------


def gate(text: str, *, effects: Iterable[Effect] = (), key_terms: Iterable[str] = (), echo: str = "",
         references: Iterable[Reference] = ()) -> GateResult:
    """Whether model prose may stand, why not, and what is left when the offending sentences go.

    Offending sentences (numbers, markup, contradictions, the later of two repeats) and an
    unfinished last sentence are dropped from `cleaned_text`; a text that is empty, or off topic
    (it names no key term and cites no fact; no key terms, no such requirement), fails as a whole.
    `references` are the report's: citing one by author and year is not writing a number.
    """
    paras = paragraphs(text)
    flat = [s for para in paras for s in para]
    references = list(references)
    problems: list[tuple[int, str]] = []  # (sentence index, what is wrong with it): every problem, for the repair
    for i, sentence in enumerate(flat):
        if numbers := number_violations(sentence, references):
            problems.append((i, f"numbers written out ({', '.join(numbers)}) in \"{sentence}\": cite a fact by "
                                "its placeholder or leave the number out"))
    markup = set(leaked_markup(text, echo))
    problems += [(i, f"markup or prompt text in \"{s}\": write plain prose only") for i, s in enumerate(flat)
                 if s in markup]
    problems += [(i, f"repeated or looping sentence \"{flat[i]}\": say each thing once") for i in _repeat_indices(flat)]
    for sentence, effect in contradictions(text, effects):
        problems += [(i, f"\"{sentence}\" contradicts the data: {_effect_words(effect)} ({effect.hypothesis_id})")
                     for i, s in enumerate(flat) if s == sentence]
    if flat and unfinished(text) is not None:
        problems.append((len(flat) - 1, f"the last sentence is unfinished: \"{flat[-1]}\""))
    drop = {i for i, _ in problems}
    reasons = list(dict.fromkeys(reason for _, reason in problems))
    if not flat:
        reasons.append("no text")
    elif not FACT_RE.search(text) and off_topic(text, key_terms := list(key_terms)):  # a fact is on topic
        reasons.append("off topic: name at least one of " + ", ".join(key_terms))
    kept, i = [], 0
    for para in paras:
        kept.append(" ".join(s for j, s in enumerate(para, start=i) if j not in drop))
        i += len(para)
    return GateResult(passed=not reasons, reasons=reasons, cleaned_text="\n\n".join(k for k in kept if k),
                      dropped_sentences=[flat[j] for j in sorted(drop)])
