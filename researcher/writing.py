"""Writing a report: code builds every table and list, the LLM writes prose around facts.

Each section is `body` (LLM prose, which may cite facts only as `{{F3}}` placeholders) plus
`generated` (Markdown made here from the plan, the design, the spec and the findings). Prose is
passed through the number sanitizer before it is stored, so a model that writes a number the
data do not contain cannot get it into a report. A version is saved by `reports.versions`; when
LaTeX fails in a section's text, the writer rewrites that section once.
"""

from __future__ import annotations

import json
import logging
import platform
import re
from dataclasses import dataclass
from pathlib import Path

import prompts
from llms.errors import LLMOutputInvalid
from reports.checks import strip_untraced_numbers
from reports.citations import load_bibliography, match_references
from reports.models import FACT_RE, FIGURE_RE, SECTION_KEYS, SECTION_TITLES, Reference, Report, Section
from reports.versions import NO_TEX_NOTICE, Rendered, save_report
from researcher.analysis import Findings
from researcher.schemas import ExperimentDesign, ResearchPlan
from researcher.stage import emit
from researcher.state import Deps, ResearchState
from simulator import ScenarioSpec, load_spec

log = logging.getLogger(__name__)

PROSE_TOKENS = 260
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


@dataclass
class WritingContext:
    """Everything a section needs, loaded once from the run folder."""

    topic: str
    plan: ResearchPlan
    design: ExperimentDesign
    spec: ScenarioSpec
    findings: Findings
    run_dir: Path
    config: dict
    notes: list[str]
    models: dict

    def allowed_numbers(self) -> list[str]:
        """Numbers that may appear in prose although no fact holds them: years in references, and the
        design's own counts and values (conditions, seeds, steps, agents, swept values), which code
        wrote into `design.json` and the Simulation design section."""
        years = re.findall(r"\b(1[89]\d\d|20\d\d)\b", " ".join(self.spec.references + self.plan.theories))
        d = self.design
        design = [len(d.values), len(d.seeds), d.steps, d.population, *d.values, *d.fixed.values()]
        return sorted(set(years) | {f"{v:g}" for v in design})


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


def generated_markdown(key: str, ctx: WritingContext) -> str:
    """The code-made part of a section: facts about the study that need no model to state."""
    plan, design, spec, f = ctx.plan, ctx.design, ctx.spec, ctx.findings
    verdicts = {v.hypothesis_id: v for v in f.verdicts}
    if key == "abstract":
        return _bullets([f"{h.id}: {h.statement} — **{verdicts[h.id].verdict if h.id in verdicts else 'no verdict'}**"
                         for h in plan.hypotheses])
    if key == "introduction":
        return ("**Research questions**\n\n" + _bullets(plan.research_questions) + "\n\n**Hypotheses**\n\n"
                + _bullets([f"{h.id}: {h.statement} (raising *{h.independent_variable}* is expected to "
                            f"{h.direction.replace('_', ' ')} *{h.dependent_variable}*)" for h in plan.hypotheses]))
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
        items = [f"The researcher model was {ctx.models.get('researcher', 'unknown')}; it wrote prose only, "
                 "every number comes from the simulation data.",
                 agents_limitation(ctx.run_dir),
                 f"The results hold for the simulated scenario `{spec.name}` and its parameter range only.",
                 *ctx.notes, *f.notes]
        return _bullets(list(dict.fromkeys(items)))
    if key == "conclusion":
        return _bullets([f"{v.hypothesis_id}: {v.verdict}. {v.reason}" for v in f.verdicts])
    if key == "reproducibility":
        return _bullets([
            f"Command: `{research_command(ctx)}`; run folder `{ctx.run_dir.name}` "
            f"(`societas resume {ctx.run_dir.name}` continues an interrupted run)",
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
    """The command line that reproduces this run's configuration."""
    c = ctx.config
    parts = ["societas research", json.dumps(ctx.topic[:200], ensure_ascii=False), f"--seeds {c.get('seeds')}"]
    for flag, key in (("--agents", "agents"), ("--steps", "steps"), ("--llm", "llm"),
                      ("--agents-llm", "agents_llm"), ("--reviewer-llm", "reviewer_llm"),
                      ("--review-rounds", "review_rounds"), ("--agents-mode", "agents_mode"),
                      ("--llm-budget", "llm_budget")):
        if c.get(key) is not None:
            parts.append(f"{flag} {c[key]}")
    return " ".join(parts)


def facts_brief(ctx: WritingContext, limit: int = 12) -> str:
    """The facts a writer may cite, one per line, placeholder first."""
    lines = [f"{{{{{fact.id}}}}} = {fact.description}" for fact in ctx.findings.facts[:limit]]
    lines += [f"{v.hypothesis_id}: {v.verdict}" for v in ctx.findings.verdicts]
    return "\n".join(lines)


def write_prose(llm, key: str, ctx: WritingContext, *, comment: str | None = None,
                previous: str | None = None) -> tuple[str, list[str]]:
    """LLM prose for one section, sanitized; returns (prose, notes)."""
    name = "write_section" if comment is None else "revise_section"
    variables = dict(title=ctx.plan.title, topic=ctx.topic[:600], section=SECTION_TITLES[key],
                     task=SECTION_TASKS[key], scenario=ctx.spec.title, facts=facts_brief(ctx),
                     questions="; ".join(ctx.plan.research_questions))
    if comment is not None:
        variables.update(comment=comment, previous=(previous or "")[:1500])
    try:
        text = llm.complete(prompts.messages(name, **variables), role="researcher", max_tokens=PROSE_TOKENS)
    except LLMOutputInvalid as exc:  # an unreachable backend raises: the run stops, resumable
        return "", [f"The {SECTION_TITLES[key]} prose could not be written ({exc.message})."]
    return clean_prose(text, ctx)


def clean_prose(text: str, ctx: WritingContext) -> tuple[str, list[str]]:
    """Drop unknown placeholders and any number not traceable to a fact; note what was removed."""
    known = {f.id for f in ctx.findings.facts}
    figures = {f.id for f in ctx.findings.figures}
    text = FACT_RE.sub(lambda m: m.group(0) if m.group(1) in known else "", text)
    text = FIGURE_RE.sub(lambda m: m.group(0) if m.group(1) in figures else "", text)
    text = re.sub(r"^#+\s.*$", "", text, flags=re.MULTILINE).strip()  # the renderer owns headings
    text = drop_repeats(text)
    cleaned = strip_untraced_numbers(text, ctx.findings.facts, allowed=ctx.allowed_numbers())
    notes = []
    removed = cleaned.count("[unverified number removed]") - text.count("[unverified number removed]")
    if removed:
        notes.append(f"{removed} number(s) written by the model without a source in the data were removed.")
    return cleaned, notes


MAX_PROSE_CHARS = 1800


def drop_repeats(text: str, limit: int = MAX_PROSE_CHARS) -> str:
    """Small models loop: keep each sentence once, and stop at a sentence boundary near `limit`."""
    seen: set[str] = set()
    paragraphs, used = [], 0
    for para in re.split(r"\n\s*\n", text):
        kept = []
        for sentence in re.split(r"(?<=[.!?])\s+", para.strip()):
            key = re.sub(r"\W+", " ", sentence.lower()).strip()
            if not key or key in seen:
                continue
            if used + len(sentence) > limit:
                break
            seen.add(key)
            kept.append(sentence)
            used += len(sentence) + 1
        if kept:
            paragraphs.append(" ".join(kept))
    return "\n\n".join(paragraphs)


def build_sections(llm, ctx: WritingContext) -> tuple[list[Section], list[str]]:
    sections, notes = [], []
    for key in SECTION_KEYS:
        prose, n = write_prose(llm, key, ctx)
        notes += n
        sections.append(Section(key=key, title=SECTION_TITLES[key], body=prose, generated=generated_markdown(key, ctx)))
    return sections, notes


def references(ctx: WritingContext) -> list[Reference]:
    """Bibliography entries (shipped, or the user's --bib) that the plan's theories or the scenario name."""
    texts = [*ctx.plan.theories, *ctx.spec.references, ctx.spec.name.replace("_", " "), ctx.spec.title]
    return match_references(texts, load_bibliography(ctx.config.get("bib")))


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
    sections = []
    for section in report.sections:
        if section.key in retry:
            prose, _ = write_prose(llm, section.key, ctx, comment=comment, previous=section.body)
            section = section.model_copy(update={"body": prose or section.body})
        sections.append(section)
    rendered = save_report(report.model_copy(update={"sections": sections}), ctx.run_dir)
    _announce(stage_name, report.version, rendered)
    return rendered


def _announce(stage_name: str, version: int, rendered: Rendered) -> None:
    formats = "md, html, tex" + (", pdf" if rendered.pdf else "")
    emit(stage_name, f"version {version} at report/v{version}/ ({formats})")
    if rendered.notice and rendered.notice != NO_TEX_NOTICE:  # no TeX: the runner says so once, at the end
        log.warning("%s", rendered.notice)
        emit(stage_name, rendered.notice)
