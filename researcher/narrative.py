"""The code-written narrative of each section, and what the prose gate checks the model against.

Every section has a few plain sentences made here from the data: the design from the spec's ODD
and the experiment, the results from the verdicts (which cite facts by placeholder), the
limitations from the design, the introduction from the plan. They are correct by construction
and stand alone when the model's prose fails the gate, so a small model makes a report thinner,
never wrong. Numbers here are code-written (counts of the design) or fact placeholders.
"""

from __future__ import annotations

import re

from reports.models import Verdict
from reports.prose import Effect
from researcher.analysis import Findings
from researcher.context import WritingContext

# How analysis describes the facts a verdict rests on (researcher.effects._correlation, _add_turn).
_P = "p-value of the Spearman"
_TURN_RE = re.compile(r"^Value of .+ at which mean final .+ (peaks|troughs) \(")


def computed_effects(findings: Findings) -> list[Effect]:
    """The direction the statistics found per hypothesis (`Verdict.effect`, set by the analysis).
    Hypotheses with no direction (a peak or trough inside the range, too little evidence, findings
    saved before verdicts had one) get no Effect: no claim can be checked against them."""
    facts = findings.fact_map()
    effects = []
    for v in findings.verdicts:
        if not v.metric or v.effect is None:
            continue
        # a p-value "lower" says nothing of the metric
        about_metric = tuple(i for i in v.fact_ids if i in facts and not facts[i].description.startswith(_P))
        effects.append(Effect(v.hypothesis_id, v.metric, v.parameter, v.effect, about_metric))
    return effects


def turns(findings: Findings, v: Verdict) -> list[tuple[str, str]]:
    """("peaks" or "troughs", location fact id) for each turn of the metric the verdict rests on."""
    facts = findings.fact_map()
    return [(m.group(1), i) for i in v.fact_ids if i in facts and (m := _TURN_RE.match(facts[i].description))]


UNTOPICAL_SECTIONS = frozenset({"reproducibility"})  # about the run folder, not the variables


def key_terms(ctx: WritingContext, key: str = "") -> list[str]:
    """What prose of section `key` about this study names: the tested parameters and metrics, the
    scenario; nothing for a section whose content is not about them (so no topic is required)."""
    if key in UNTOPICAL_SECTIONS:
        return []
    terms = [ctx.design.swept_parameter, ctx.spec.name, ctx.spec.title]
    for t in ctx.design.tests:
        terms += [t.parameter or "", t.metric or ""]
    for h in ctx.plan.hypotheses:
        terms += [h.independent_variable, h.dependent_variable]
    return [t.removeprefix("param.") for t in dict.fromkeys(terms) if t]


def _plural(n: int, word: str, plural: str = "") -> str:
    return f"{n} {word}" if n == 1 else f"{n} {plural or word + 's'}"


def _sentence(text: str) -> str:
    """`text` as a sentence: capitalised, with an end mark (verdict reasons and plan text may lack both)."""
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _effect_phrase(effect: Effect | None, v: Verdict, findings: Findings) -> str:
    parameter, metric = v.parameter or "the parameter", v.metric or "the outcome"
    if v.verdict == "untestable":
        return f"{v.hypothesis_id} could not be tested in this scenario."
    if shape := turns(findings, v):
        where = " and ".join(f"{kind} at {parameter} = {{{{{fid}}}}}" for kind, fid in shape)
        return f"Final {metric} does not move one way with {parameter}: its mean {where} ({v.hypothesis_id}, {v.verdict})."
    if effect is None:
        return f"The data do not settle how {parameter} affects {metric} ({v.hypothesis_id}, {v.verdict})."
    if effect.direction == "none":
        return f"Raising {parameter} has no measurable effect on {metric} ({v.hypothesis_id}, {v.verdict})."
    return f"Raising {parameter} {effect.direction}s {metric} ({v.hypothesis_id}, {v.verdict})."


def _design_sentences(ctx: WritingContext) -> list[str]:
    d, spec = ctx.design, ctx.spec
    values = ", ".join(f"{v:g}" for v in d.values)
    fixed = ", ".join(f"{k} = {v:g}" for k, v in d.fixed.items())
    return [
        f"The study simulates the {spec.title} scenario with {_plural(d.population, 'agent')} over up to "
        f"{_plural(d.steps, 'step')}.",
        f"It varies {d.swept_parameter} over {len(d.values)} values ({values}) and runs each value with "
        f"{_plural(len(d.seeds), 'seed')}, {_plural(len(d.values) * len(d.seeds), 'run')} in all"
        + (f"; {fixed} stay fixed." if fixed else "."),
    ]


def _narrative_parts(key: str, ctx: WritingContext) -> list[str]:
    plan, findings, spec = ctx.plan, ctx.findings, ctx.spec
    effects = {e.hypothesis_id: e for e in computed_effects(findings)}
    if key == "abstract":
        return [f"This study asks: {_sentence(plan.research_questions[0])}", *_design_sentences(ctx),
                *(_effect_phrase(effects.get(v.hypothesis_id), v, findings) for v in findings.verdicts)]
    if key == "introduction":
        return [f"The study starts from the question: {_sentence(ctx.topic.strip()[:300])}",
                f"It asks {_plural(len(plan.research_questions), 'research question')} and states "
                f"{_plural(len(plan.hypotheses), 'hypothesis', 'hypotheses')}, each about how raising one "
                "parameter of the simulation moves one measured outcome; Results say which could be tested."]
    if key == "background":
        listed = " and on the theories and models listed below" if plan.theories or spec.references else ""
        return [f"The study builds on the {spec.title} scenario{listed}; Simulation design describes the scenario."]
    if key == "design":
        return [*_design_sentences(ctx), "The scenario, its ODD protocol and its parameters follow."]
    if key == "results":
        parts = [f"{v.hypothesis_id} is {v.verdict}. {_sentence(v.reason)}" for v in findings.verdicts]
        if all(v.verdict == "untestable" for v in findings.verdicts):
            parts.append(f"No hypothesis could be tested in this scenario, so the facts below describe, as an "
                         f"exploratory sweep, how each metric's final value moves with {ctx.design.swept_parameter}; "
                         "they test no claim.")
        return parts
    if key == "discussion":
        return [*(_effect_phrase(effects.get(v.hypothesis_id), v, findings) for v in findings.verdicts),
                f"These results describe the simulated {spec.title} scenario; how far they carry to real "
                "populations depends on how well its rules describe them."]
    if key == "limitations":
        d = ctx.design
        return [f"Only {d.swept_parameter} is varied, between {min(d.values):g} and {max(d.values):g}; effects "
                "outside that range, or of the parameters held fixed, are not tested.",
                f"Each value has {_plural(len(d.seeds), 'seed')} and each run at most {_plural(d.steps, 'step')}, "
                "so slower dynamics and small effects may be missed."]
    if key == "conclusion":
        return [_effect_phrase(effects.get(v.hypothesis_id), v, findings) for v in findings.verdicts]
    if key == "reproducibility":
        return [f"The run folder {ctx.run_dir.name} holds everything needed to rerun this study; the command "
                "below repeats it with the same seeds."]
    return []


def narrative(key: str, ctx: WritingContext) -> str:
    """The code's plain, correct prose for one section."""
    return " ".join(_narrative_parts(key, ctx))
