"""Report quality on the embedded model: does a research on a topic a social scientist would write
pick the right scenario and produce a report with nothing false in its prose?

Runs `societas research` on eight topics, one per domain, none named after a scenario, and
counts, in each final report:
- right scenario: the design's scenario is one of the topic's expected ones;
- bare numbers and number words in model prose (section bodies; code-written tables and the
  code's narrative are not model prose);
- sentences contradicting a computed effect, repeated sentences, unfinished sections;
- hypotheses whose statement does not name their parameter and metric (by name or by a word of
  their descriptions) and direction;
- hypotheses forced onto a variable: a testable hypothesis whose parameter or metric shares
  no word (thesaurus included) with the variable the plan named, below the design's own
  mapping threshold (`researcher.hypothesis_mapping.MAP_SIMILARITY`): on a 135M model that mapping is luck;
- the share of sections whose model prose passed the prose gate, and seconds per topic.

    python benchmarks/report_quality.py                 # all eight, embedded model
    python benchmarks/report_quality.py --topics 2      # the first two
    python benchmarks/report_quality.py --llm http://host:8000/v1

Ends with `key: value` lines, the last two `right_scenario: <k>/<n>` and `defects: <sum>`.
Target: right scenario >= 7/8, defects 0, at most 2 minutes a topic on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reports.checks import number_tokens  # noqa: E402
from reports.models import Report  # noqa: E402
from reports.prose import contradictions, number_words, repeated_sentences, unfinished  # noqa: E402
from researcher.analysis import Findings  # noqa: E402
from researcher.hypothesis_mapping import MAP_SIMILARITY  # noqa: E402
from researcher.narrative import computed_effects  # noqa: E402
from researcher.planning import names_concept, stated_direction  # noqa: E402
from researcher.retrieval import best_matches  # noqa: E402
from researcher.schemas import ExperimentDesign, ResearchPlan  # noqa: E402
from simulator import load_spec  # noqa: E402

# (domain, topic, scenarios that fit). Written as a social scientist would ask, not naming a model.
TOPICS = [
    ("economics", "How does the rule by which people hand money to one another shape the inequality of wealth?",
     ["boltzmann_wealth"]),
    ("sociology", "Do residents' mild preferences for neighbours like themselves produce strongly segregated "
                  "neighbourhoods?", ["schelling"]),
    ("politics", "Does greater tolerance of differing opinions lead to consensus rather than polarization?",
     ["deffuant"]),
    ("psychology", "When rewards are uncertain, do people learn to choose options in proportion to how often "
                   "they pay off?", ["probability_matching"]),
    ("organization", "How does word of mouth among employees speed up the adoption of a new work practice?",
     ["bass_diffusion"]),
    ("demographics", "How does the number of contacts each person has change how many people an outbreak "
                     "eventually infects?", ["sir_network"]),
    ("law", "Do more frequent audits and heavier fines reduce tax evasion when taxpayers copy their peers?",
     ["compliance"]),
    ("communication", "How quickly does a rumour die out once people who already heard it stop passing it on?",
     ["rumor"]),
]
DEFECTS = ("bare_numbers", "number_words", "contradictions", "repeated", "unfinished", "unnamed_hypotheses",
           "forced_hypotheses")


def run_research(topic: str, out: Path, llm: str | None, timeout: float) -> tuple[float, str]:
    """Seconds and the last line of output (the error, when it failed)."""
    cmd = [str(ROOT / ".venv" / "bin" / "societas"), "research", topic, "--out", str(out)]
    if llm:
        cmd += ["--llm", llm]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "NO_COLOR": "1"})
    seconds = time.perf_counter() - t0
    tail = (done.stdout + done.stderr).strip().splitlines()
    return seconds, ("" if done.returncode == 0 else (tail[-1] if tail else f"exit {done.returncode}"))


def _named(text: str, name: str, description: str) -> bool:
    return names_concept(text, f"{name} {description}")


def count_defects(run: Path) -> dict[str, float]:
    """Every defect count of one finished research run, and the share of sections the gate let the model write."""
    report = Report.model_validate_json((run / "report" / "final" / "report.json").read_text())
    findings = Findings.from_json((run / "findings.json").read_text())
    design = ExperimentDesign.model_validate_json((run / "design.json").read_text())
    plan = ResearchPlan.model_validate_json((run / "plan.json").read_text())
    spec = load_spec(run / "scenario.yaml")
    effects = computed_effects(findings)
    counts = dict.fromkeys(DEFECTS, 0)
    for section in report.sections:
        body = section.body
        counts["bare_numbers"] += len(number_tokens(body))
        counts["number_words"] += len(number_words(body))
        counts["contradictions"] += len(contradictions(body, effects))
        counts["repeated"] += len(repeated_sentences(body))
        counts["unfinished"] += int(bool(body.strip()) and unfinished(body) is not None)
    hypotheses = {h.id: h for h in plan.hypotheses}
    for test in design.tests:
        if not test.testable or not test.parameter or not test.metric:
            continue
        p_doc = spec.parameters[test.parameter].description if test.parameter in spec.parameters else ""
        m_doc = spec.metrics.get(test.metric, "")
        statement = test.statement or (hypotheses[test.hypothesis_id].statement if test.hypothesis_id in hypotheses else "")
        if not (_named(statement, test.parameter, p_doc) and _named(statement, test.metric, m_doc)
                and stated_direction(statement) == test.direction):
            counts["unnamed_hypotheses"] += 1
        h = hypotheses.get(test.hypothesis_id)
        if h is not None:
            p_score = dict(best_matches(h.independent_variable, {test.parameter: f"{test.parameter} {p_doc}"}))
            m_score = dict(best_matches(h.dependent_variable, {test.metric: f"{test.metric} {m_doc}"}))
            if min(p_score[test.parameter], m_score[test.metric]) < MAP_SIMILARITY and not (
                    _named(h.independent_variable, test.parameter, p_doc) and _named(h.dependent_variable, test.metric, m_doc)):
                counts["forced_hypotheses"] += 1
    gated = [s for s in report.sections if s.prose_source == "model"]
    return {**counts, "model_prose_share": len(gated) / max(1, len(report.sections)), "scenario": design.scenario}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--topics", type=int, default=len(TOPICS), help="run the first N topics (default: all eight)")
    ap.add_argument("--llm", default=None, help="backend for every role (default: the embedded model)")
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds one research may take")
    args = ap.parse_args()
    base = args.out or Path(tempfile.mkdtemp(prefix="societas-quality-"))
    base.mkdir(parents=True, exist_ok=True)
    rows, right, total_defects, seconds_all = [], 0, 0, []
    header = f"{'domain':<14}{'scenario':<22}{'ok':<4}" + "".join(f"{d[:10]:>11}" for d in DEFECTS) + f"{'gate':>6}{'s':>7}"
    print(header)
    for i, (domain, topic, expected) in enumerate(TOPICS[: args.topics]):
        out = base / f"{i + 1}-{domain}"
        seconds, error = run_research(topic, out, args.llm, args.timeout)
        seconds_all.append(seconds)
        if error:
            print(f"{domain:<14}FAILED after {seconds:.0f} s: {error}")
            total_defects += 1
            continue
        counts = count_defects(out)
        ok = counts["scenario"] in expected
        right += ok
        defects = sum(int(counts[d]) for d in DEFECTS)
        total_defects += defects
        rows.append(counts)
        print(f"{domain:<14}{counts['scenario']:<22}{'yes' if ok else 'no':<4}"
              + "".join(f"{int(counts[d]):>11}" for d in DEFECTS)
              + f"{counts['model_prose_share']:>6.0%}{seconds:>7.0f}")
    n = min(args.topics, len(TOPICS))
    for d in DEFECTS:
        print(f"{d}: {sum(int(r[d]) for r in rows)}")
    share = sum(r["model_prose_share"] for r in rows) / max(1, len(rows))
    print(f"model_prose_share: {share:.2f}")
    print(f"seconds_per_topic_max: {max(seconds_all, default=0):.0f}")
    print(f"seconds_per_topic_mean: {sum(seconds_all) / max(1, len(seconds_all)):.0f}")
    print(f"runs: {base}")
    print(f"right_scenario: {right}/{n}")
    print(f"defects: {total_defects}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
