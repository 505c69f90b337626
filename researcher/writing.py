"""Writing a report: code builds every table and list, the LLM writes prose around facts.

Each section is `body` (LLM prose, which may cite facts only as `{{F3}}` placeholders) plus
`generated` (Markdown made here from the plan, the design, the spec and the findings, led by the
code's narrative of `researcher.narrative` unless the model's prose replaces it). Model prose
stands only where it passes the prose gate (`reports.prose`: no numbers, no loops, finished, on
topic, no claim against the statistics), after one repair turn; each section records whose
prose it shows (`prose_source`). A version is saved by `reports.versions`; when
LaTeX fails in a section's text, the writer rewrites that section once.
"""

from __future__ import annotations

import json
import logging
import platform
import re
import shlex
from pathlib import Path

import prompts
from llms.errors import LLMOutputInvalid
from reports.models import FACT_RE, FIGURE_RE, SECTION_KEYS, SECTION_TITLES, Fact, Report, Section
from reports.prose import GateResult, all_sentences, gate
from reports.versions import NO_TEX_NOTICE, Rendered, save_report
from researcher.analysis import Findings
from researcher.context import WritingContext, references
from researcher.budget import RICH_CONTEXT, context_of, fits
from researcher.narrative import computed_effects, key_terms, narrative
from researcher.schemas import ExperimentDesign, Hypothesis, ResearchPlan
from researcher.stage import emit
from researcher.state import Deps, ResearchState
from simulator import describe_functions, load_spec
from societas.runs import TOPIC_FILE

log = logging.getLogger(__name__)

PROSE_TOKENS = 260  # the small model's answer per section: six sentences, and past that it loops
# A capable model's answer per section, sized to what the section has to say; Results grows with the facts.
SECTION_TOKENS = {"abstract": 250, "introduction": 400, "background": 450, "design": 450, "results": 350,
                  "discussion": 650, "limitations": 400, "conclusion": 250, "reproducibility": 120}
TOKENS_PER_FACT = 25
MAX_SECTION_TOKENS = 1200
SHORT_LENGTH = "at most six sentences"
SECTION_LENGTH = {
    "abstract": "one paragraph of three to five sentences",
    "introduction": "two paragraphs",
    "background": "two or three paragraphs",
    "design": "two or three paragraphs",
    "results": "one paragraph per hypothesis, then one on the figures",
    "discussion": "three or four paragraphs",
    "limitations": "one or two paragraphs",
    "conclusion": "one paragraph of three to five sentences",
    "reproducibility": "one or two sentences",
}
SECTION_TASKS = {
    "abstract": "Summarise the study in three or four sentences: the question, the simulation, the main result.",
    "introduction": "Introduce the research problem and why it matters, and state the research questions.",
    "background": "Explain the theories and classic models the study builds on, in plain words.",
    "design": "Explain in words how the simulation represents the problem: the agents, what they do, what is varied.",
    "results": "Describe what the figures and facts show, citing facts by their placeholders.",
    "discussion": "Interpret the results: what they mean for the research questions, and what they do not show.",
    "limitations": "Name the main limitations of this simulation study.",
    "conclusion": "State the conclusion in two or three sentences.",
    "reproducibility": "Say in one or two sentences that the study can be rerun exactly from its run folder.",
}


def writing_context(state: ResearchState, deps: Deps) -> WritingContext:
    """The context write_report and revise_report share, from the state and the run folder."""
    models = getattr(deps.llms, "describe", lambda: {})()
    labels = {role: f"{info.get('model') or 'unknown model'} via {info.get('backend', 'unknown backend')}"
              for role, info in models.items()}
    return WritingContext(
        topic=state["topic"],
        plan=ResearchPlan.model_validate(state["plan"]),
        design=ExperimentDesign.model_validate(state["design"]),
        spec=load_spec(deps.run_dir / "scenario.yaml"),
        findings=Findings.load(deps.run_dir),
        run_dir=deps.run_dir,
        config=state["config"],
        notes=list(dict.fromkeys(state.get("notes", []))),
        models=labels,
    )


def _bullets(items: list[str]) -> str:
    return "\n".join(f"- {i}" for i in items)


def _table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def statement(ctx: WritingContext, h: Hypothesis) -> str:
    """The hypothesis as the report states it: the design's test statement (checked against the
    test's parameter and metric, or composed from them) where there is one, else the plan's."""
    test = next((t for t in ctx.design.tests if t.hypothesis_id == h.id), None)
    return test.statement if test is not None and test.statement else h.statement


def generated_markdown(key: str, ctx: WritingContext) -> str:
    """The code-made part of a section: facts about the study that need no model to state."""
    plan, design, spec, f = ctx.plan, ctx.design, ctx.spec, ctx.findings
    verdicts = {v.hypothesis_id: v for v in f.verdicts}
    if key == "abstract":
        return _bullets([f"{h.id}: {statement(ctx, h)} — **{verdicts[h.id].verdict if h.id in verdicts else 'no verdict'}**"
                         for h in plan.hypotheses])
    if key == "introduction":
        return ("**Research questions**\n\n" + _bullets(plan.research_questions) + "\n\n**Hypotheses**\n\n"
                + _bullets([f"{h.id}: {statement(ctx, h)}" for h in plan.hypotheses]))
    if key == "background":
        items = [*plan.theories, *spec.references]
        return ("**Theories and models**\n\n" + _bullets(items)) if items else ""
    if key == "design":
        odd = spec.odd
        parts = [f"**Scenario**: {spec.title} (`{spec.name}`, {spec.domain}). {spec.description}",
                 "**ODD protocol**", _bullets([f"*Purpose*: {odd.purpose}", f"*Entities*: {odd.entities}",
                                               f"*Process and scheduling*: {odd.process}",
                                               f"*Design concepts*: {odd.design_concepts}",
                                               f"*Initialization*: {odd.initialization}",
                                               f"*Submodels*: {odd.submodels}"])]
        rows = [[k, f"{p.default:g}", p.range_text(), p.description] for k, p in spec.parameters.items()]
        parts.append("**Parameters**\n\n" + _table(["parameter", "default", "range", "meaning"], rows))
        parts.append(_bullets([
            f"Swept parameter: `{design.swept_parameter}` over " + ", ".join(f"{v:g}" for v in design.values),
            f"Seeds per condition: {len(design.seeds)} ({', '.join(map(str, design.seeds))})",
            f"Agents: {design.population}; steps: {design.steps}",
            "Hypothesis tests: " + "; ".join(
                f"{t.hypothesis_id} → {t.parameter} vs {t.metric}" if t.testable else f"{t.hypothesis_id}: untestable ({t.reason})"
                for t in design.tests),
            *( [f"Design note: {design.fallback_reason}"] if design.fallback_reason else []),
        ]))
        return "\n\n".join(parts)
    if key == "results":
        if not f.figures:
            return ""
        return "The figures: " + "; ".join(f"[Figure {fig.id}] ({fig.kind})" for fig in f.figures) + "."
    if key == "limitations":
        items = [f"The researcher model was {ctx.models.get('researcher', 'unknown')}; every number and every "
                 "verdict comes from the simulation data, and the Prose line below says which sections show its text.",
                 agents_limitation(ctx.run_dir),
                 f"The results hold for the simulated scenario `{spec.name}` and its parameter range only.",
                 *ctx.notes, *f.notes]
        return _bullets(list(dict.fromkeys(items)))
    if key == "conclusion":
        return _bullets([f"{v.hypothesis_id}: {v.verdict}. {v.reason}" for v in f.verdicts])
    if key == "reproducibility":
        return _bullets([
            f"Command: `{research_command(ctx)}`; run folder `{ctx.run_dir.name}` "
            "(`societas resume` with the run folder's path continues an interrupted run)",
            "Scenario spec: `scenario.yaml`; design: `design.json`; data: `data/metrics.parquet`, `data/final.parquet`",
            f"Seeds: {', '.join(map(str, design.seeds))}",
            f"Configuration: `{json.dumps(ctx.config, sort_keys=True)}`",
            f"Python {platform.python_version()}; see `manifest.json` for package versions and prompt hashes.",
        ])
    return ""


def agents_limitation(run_dir: Path) -> str:
    """Which decision model drove the agents, and why: from `data/agents.json`, written by the simulation."""
    path = run_dir / "data" / "agents.json"
    try:
        agents = json.loads(path.read_text())
    except (OSError, ValueError):
        return "Agents followed the scenario's rule-based decision model."
    reason = str(agents.get("reason", "")).rstrip(".")
    if agents.get("used") != "llm":
        return f"Agents followed the scenario's rule-based decision model ({reason})."
    totals = agents.get("totals", {})
    fell_back = int(totals.get("llm_invalid", 0)) + int(totals.get("llm_failed", 0))
    types = ", ".join(agents.get("llm_agent_types", [])) or "the LLM agent types"
    return (f"Agents of type {types} decided with the language model {agents.get('model') or agents.get('backend')} "
            f"({reason}): {int(totals.get('llm_agent_decisions', 0)):,} agent decisions from "
            f"{int(totals.get('llm_prompts', 0)):,} distinct prompts; {fell_back:,} answers were invalid or failed "
            "and used the rule's fallback instead. The agents' choices reflect the model as much as the people "
            "they stand for.")


def research_command(ctx: WritingContext) -> str:
    """The command line that reproduces this run's configuration, safe to paste into a shell: every
    value is `shlex.quote`d. The whole topic is passed; one too long for a line, or holding a backtick
    (which would end the Markdown code span around the command), goes by the run's own `topic.txt`."""
    c, inline_chars = ctx.config, 300
    topic = (["--topic-file", str(Path(ctx.run_dir) / TOPIC_FILE)] if len(ctx.topic) > inline_chars
             or "`" in ctx.topic else [ctx.topic])
    parts = ["societas", "research", *topic, "--seeds", str(c.get("seeds"))]
    for flag, key in (("--agents", "agents"), ("--steps", "steps"), ("--llm", "llm"),
                      ("--agents-llm", "agents_llm"), ("--reviewer-llm", "reviewer_llm"),
                      ("--review-rounds", "review_rounds"), ("--agents-mode", "agents_mode"),
                      ("--llm-budget", "llm_budget")):
        if c.get(key) is not None:
            parts += [flag, str(c[key])]
    return shlex.join(parts)


def fact_line(fact: Fact) -> str:
    """`{{F8}} = 1 (n = 20): Share of runs in which ... settled`: the value beside the placeholder, so a
    writer says "all runs" where a share is one, not "only {{F8}}"."""
    value = fact.render()
    if fact.n and "n = " not in value:
        value += f" (n = {fact.n})"
    return f"{{{{{fact.id}}}}} = {value}: {fact.description}"


def facts_brief(ctx: WritingContext, limit: int | None = 12) -> str:
    """The facts a writer may cite, one per line, placeholder and value first; beyond `limit` facts
    the ones the verdicts rest on are kept first."""
    facts = ctx.findings.facts
    if limit is not None and len(facts) > limit:
        cited = {i for v in ctx.findings.verdicts for i in v.fact_ids}
        keep = {f.id for f in sorted(facts, key=lambda f: f.id not in cited)[:limit]}
        facts = [f for f in facts if f.id in keep]
    return "\n".join(fact_line(f) for f in facts)


def hypotheses_brief(ctx: WritingContext, full: bool) -> str:
    """Each hypothesis with its verdict; `full` adds the test (parameter, metric, direction), the
    statistics' reason and the facts it rests on."""
    verdicts = {v.hypothesis_id: v for v in ctx.findings.verdicts}
    lines = []
    for h in ctx.plan.hypotheses:
        v = verdicts.get(h.id)
        verdict = v.verdict if v else "no verdict"
        if not full:
            lines.append(f"- {h.id}: {statement(ctx, h)} (verdict: {verdict})")
            continue
        test = (f"raising `{v.parameter}` is expected to {h.direction.replace('_', ' ')} `{v.metric}`"
                if v and v.parameter and v.metric else
                f"raising {h.independent_variable} is expected to {h.direction.replace('_', ' ')} {h.dependent_variable}")
        cites = ", ".join(f"{{{{{i}}}}}" for i in v.fact_ids) if v and v.fact_ids else "none"
        lines.append(f"- {h.id}: {statement(ctx, h)}\n  Test: {test}. Verdict: {verdict}"
                     + (f" ({v.reason})" if v else "") + f". Facts behind it: {cites}")
    return "\n".join(lines)


def mechanics_brief(ctx: WritingContext) -> str:
    """How the simulation works, for a writer that has the room: the ODD protocol, the parameters, the
    design, the figures and what the run noted."""
    spec, design, odd = ctx.spec, ctx.design, ctx.spec.odd
    odd_lines = [f"- {name}: {text}" for name, text in (
        ("Purpose", odd.purpose), ("Entities", odd.entities), ("Process and scheduling", odd.process),
        ("Submodels", odd.submodels), ("Initialization", odd.initialization),
        ("Design concepts", odd.design_concepts)) if text]
    params = [f"- `{k}`: {p.description} (default {p.default:g}, range {p.range_text()})"
              for k, p in spec.parameters.items()]
    functions = dict(re.findall(r"^\s+(\w+)\([^)]*\): (.+)$", describe_functions(), re.MULTILINE))
    metrics = [f"- `{name}` = {formula}" + "".join(f"; {f}: {functions[f]}" for f in
                                                 dict.fromkeys(re.findall(r"(\w+)\(", str(formula))) if f in functions)
               for name, formula in spec.metrics.items()]
    fixed = ", ".join(f"`{k}` = {v:g}" for k, v in design.fixed.items())
    parts = [f"How the simulation works (scenario `{spec.name}`: {spec.description})", *odd_lines,
             "Parameters:", *params, "Metrics (recorded every step; results use the final value):", *metrics,
             f"Design: `{design.swept_parameter}` swept over {', '.join(f'{v:g}' for v in design.values)}"
             + (f", with {fixed}" if fixed else "") + f"; {len(design.seeds)} seeds per condition, "
             f"{design.steps} steps, {design.population} agents."]
    if ctx.plan.theories:
        parts += ["Theories the plan names:", *(f"- {t}" for t in ctx.plan.theories)]
    if cited := references(ctx):
        parts += ["References the report lists (name their authors; the reference list gives the years):",
                  *(f"- {r.render()}" for r in cited)]
    if ctx.findings.figures:
        parts += ["Figures (cite as [Figure fig1]):", *(f"- [Figure {f.id}]: {f.caption}" for f in ctx.findings.figures)]
    notes = list(dict.fromkeys([*ctx.notes, *ctx.findings.notes]))
    if notes:
        parts += ["Notes from the run:", *(f"- {n}" for n in notes)]
    return "\n".join(parts)


def prose_budget(key: str, ctx: WritingContext, context: int) -> int:
    """max_tokens for a section: sized to its content for a capable model, the small model's cap otherwise."""
    if context < RICH_CONTEXT:
        return min(PROSE_TOKENS, SECTION_TOKENS[key])
    tokens = SECTION_TOKENS[key] + (TOKENS_PER_FACT * len(ctx.findings.facts) if key == "results" else 0)
    return min(tokens, MAX_SECTION_TOKENS, context // 8)


def section_messages(key: str, ctx: WritingContext, context: int, max_tokens: int, *,
                     comment: str | None = None, previous: str | None = None) -> list[dict[str, str]]:
    """The write (or, with `comment`, revise) prompt: the full brief when the context is large, else
    the short one, shrunk until prompt and answer fit the context."""
    name = "write_section" if comment is None else "revise_section"
    forms = [(True, None)] if context >= RICH_CONTEXT else []
    forms += [(False, 12), (False, 6)]
    for full, limit in forms:
        study = hypotheses_brief(ctx, full) + ("\n\n" + mechanics_brief(ctx) if full else "")
        variables = dict(title=ctx.plan.title, topic=ctx.topic[:2000 if full else 600], section=SECTION_TITLES[key],
                         task=SECTION_TASKS[key], scenario=ctx.spec.title, facts=facts_brief(ctx, limit),
                         questions="; ".join(ctx.plan.research_questions), study=study,
                         length=SECTION_LENGTH[key] if full else SHORT_LENGTH)
        if comment is not None:
            variables.update(comment=comment, previous=(previous or "(no prose yet)") if full else (previous or "")[:1500])
        messages = prompts.messages(name, **variables)
        if fits(messages, max_tokens, context):
            break
    return messages


def write_prose(llm, key: str, ctx: WritingContext, *, comment: str | None = None,
                previous: str | None = None) -> tuple[str, list[str]]:
    """LLM prose for one section, sanitized; returns (prose, notes)."""
    context = context_of(llm)
    max_tokens = prose_budget(key, ctx, context)
    messages = section_messages(key, ctx, context, max_tokens, comment=comment, previous=previous)
    try:
        text = llm.complete(messages, role="researcher", max_tokens=max_tokens)
    except LLMOutputInvalid as exc:  # an unreachable backend raises: the run stops, resumable
        return "", [f"The {SECTION_TITLES[key]} prose could not be written ({exc.message})."]
    return clean_prose(text, ctx)


def clean_prose(text: str, ctx: WritingContext) -> tuple[str, list[str]]:
    """Drop placeholders and figure references that name nothing, and headings (the renderer owns
    those); numbers, loops and claims are the prose gate's to judge. Returns (prose, notes)."""
    known = {f.id for f in ctx.findings.facts}
    figures = {f.id for f in ctx.findings.figures}
    text = FACT_RE.sub(lambda m: m.group(0) if m.group(1) in known else "", text)
    text = FIGURE_RE.sub(lambda m: m.group(0) if m.group(1) in figures else "", text)
    return re.sub(r"^#+\s.*$", "", text, flags=re.MULTILINE).strip(), []


def prose_gate(text: str, key: str, ctx: WritingContext, echo: str = "") -> GateResult:
    """The gate every model text of section `key` passes before it stands in a report (written,
    revised or rewritten); `echo` is what the writer was asked, which its answer must not copy back."""
    return gate(text, effects=computed_effects(ctx.findings), key_terms=key_terms(ctx, key), echo=echo,
                references=references(ctx))


def gated_section(llm, key: str, ctx: WritingContext, *, comment: str | None = None,
                  previous: str | None = None) -> tuple[Section, list[str]]:
    """One section: the model's prose where it passes the gate, else what is left of it once the
    offending sentences go (beside the code's narrative), else the narrative alone. A failing text
    gets one repair turn with the list of its problems. A model that may not write (`model_writes`)
    is not asked: the narrative stands alone."""
    if not model_writes(llm, ctx):
        generated = "\n\n".join(part for part in (narrative(key, ctx), generated_markdown(key, ctx)) if part)
        return Section(key=key, title=SECTION_TITLES[key], body="", generated=generated, prose_source="code"), []
    prose, notes = write_prose(llm, key, ctx, comment=comment, previous=previous)
    attempts = [(prose, prose_gate(prose, key, ctx, comment or ""))]
    if prose.strip() and not attempts[0][1].passed:
        repair = "Fix these problems: " + "; ".join(attempts[0][1].reasons[:6]) + "."
        retried, more = write_prose(llm, key, ctx, comment=f"{comment} {repair}" if comment else repair,
                                    previous=prose)
        notes += more
        # the repair quotes the offending sentences; the gate's echo check ignores quoted text
        attempts.append((retried, prose_gate(retried, key, ctx, f"{comment or ''} {repair}")))
    body, source, dropped = _choose(attempts, key, ctx, comment or "")
    if dropped:
        notes.append(f"{SECTION_TITLES[key]}: the prose gate dropped {dropped} model sentence(s)"
                     + (", so the code's narrative stands alone." if source == "code" else "."))
    generated = generated_markdown(key, ctx)
    if source != "model":
        generated = "\n\n".join(part for part in (narrative(key, ctx), generated) if part)
    return Section(key=key, title=SECTION_TITLES[key], body=body, generated=generated, prose_source=source,
                   dropped_sentences=dropped), notes


def model_writes(llm, ctx: WritingContext) -> bool:
    """Whether the model writes prose at all: `--prose model` or `code`, or auto: only a capable
    model (a context of RICH_CONTEXT tokens or more). The embedded 135M model's prose passed the
    gate and still claimed "the results were replicated in other studies" and "people are more
    generous than average": claims about the world that no deterministic check can read. Its
    report is thinner, written by code from the data, and never wrong."""
    mode = ctx.config.get("prose", "auto")
    return mode == "model" or (mode == "auto" and context_of(llm) >= RICH_CONTEXT)


def _choose(attempts: list[tuple[str, GateResult]], key: str, ctx: WritingContext, echo: str) -> tuple[str, str, int]:
    """(body, prose_source, sentences dropped): an attempt that passed whole, else the attempt whose
    remaining sentences pass with the fewest dropped, else nothing (all of the last attempt dropped)."""
    for text, result in reversed(attempts):
        if result.passed:
            return text, "model", 0
    kept = [r for _, r in attempts if prose_gate(r.cleaned_text, key, ctx, echo).passed]
    if kept:
        best = min(kept, key=lambda r: len(r.dropped_sentences))
        return best.cleaned_text, "model+code", len(best.dropped_sentences)
    return "", "code", len(all_sentences(attempts[-1][0]))


PROSE_LINE = "Prose:"  # starts the Limitations line that says whose prose each section shows


def prose_line(sections: list[Section], model_asked: bool = True) -> str:
    """One line for the Limitations: which sections show the model's prose, and what the gate dropped."""
    if not model_asked:
        return (f"{PROSE_LINE} code wrote every section from the data; the writer model was not asked, because "
                f"a model with a context under {RICH_CONTEXT} tokens is too small to be trusted with claims "
                "(`--prose model` lets it write, through the prose gate).")
    by_source: dict[str, list[str]] = {"model": [], "model+code": [], "code": []}
    for s in sections:
        by_source[s.prose_source].append(s.title)
    parts = [f"{label} in {', '.join(by_source[source])}" for source, label in (
        ("model", "the model's text"), ("model+code", "the model's text beside the code's narrative"),
        ("code", "the code's narrative alone")) if by_source[source]]
    dropped = sum(s.dropped_sentences for s in sections)
    return (f"{PROSE_LINE} " + "; ".join(parts)
            + f" (the prose gate dropped {dropped} model sentence{'s' if dropped != 1 else ''}).")


def with_prose_line(sections: list[Section], model_asked: bool = True) -> list[Section]:
    """The sections with the Limitations' prose line (re)written for what they now show."""
    line = prose_line(sections, model_asked)
    out = []
    for s in sections:
        if s.key == "limitations":
            kept = [p for p in s.generated.split("\n\n") if p.strip() and not p.startswith(PROSE_LINE)]
            s = s.model_copy(update={"generated": "\n\n".join([*kept, line])})
        out.append(s)
    return out


def build_sections(llm, ctx: WritingContext) -> tuple[list[Section], list[str]]:
    """Every section through the gate, and the Limitations' line on whose prose each shows."""
    sections, notes = [], []
    for key in SECTION_KEYS:
        section, n = gated_section(llm, key, ctx)
        sections.append(section)
        notes += n
    return with_prose_line(sections, model_writes(llm, ctx)), notes


def assemble_report(version: int, ctx: WritingContext, sections, notes) -> Report:
    """Version `version` of the report: the sections around the findings' facts, figures and verdicts."""
    f = ctx.findings
    return Report(version=version, title=ctx.plan.title, sections=sections, facts=f.facts, figures=f.figures,
                  verdicts=f.verdicts, references=references(ctx), notes=notes,
                  allowed_numbers=ctx.allowed_numbers())


def save_and_compile(llm, report: Report, ctx: WritingContext, stage_name: str) -> Rendered:
    """Save every format; when LaTeX fails in a section's text, the writer rewrites that section once."""
    rendered = save_report(report, ctx.run_dir)
    retry = [k for k in rendered.error_sections if report.section(k) is not None and report.section(k).body]
    if rendered.pdf or not retry:
        _announce(stage_name, report.version, rendered)
        return rendered
    emit(stage_name, "LaTeX failed in " + ", ".join(retry) + "; asking the writer to rewrite once")
    comment = ("The LaTeX compiler failed on this section (" + "; ".join(rendered.errors[:3])
               + "). Rewrite it in plain words, without symbols or markup.")
    sections = [gated_section(llm, s.key, ctx, comment=comment, previous=s.body)[0] if s.key in retry else s
                for s in report.sections]
    rendered = save_report(report.model_copy(update={"sections": with_prose_line(sections, model_writes(llm, ctx))}),
                           ctx.run_dir)
    _announce(stage_name, report.version, rendered)
    return rendered


def _announce(stage_name: str, version: int, rendered: Rendered) -> None:
    formats = "md, html, tex" + (", pdf" if rendered.pdf else "")
    emit(stage_name, f"version {version} at report/v{version}/ ({formats})")
    if rendered.notice and rendered.notice != NO_TEX_NOTICE:  # no TeX: the runner says so once, at the end
        log.warning("%s", rendered.notice)
        emit(stage_name, rendered.notice)
