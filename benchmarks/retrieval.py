"""Does retrieval find the right library scenario from a topic as a social scientist words it?

    python benchmarks/retrieval.py [--set dev|heldout|heldout2|all] [--quiet]

Each topic in `retrieval_topics.yaml` lists the library scenarios that fit it, or none. `dev`
topics were written first and tuned on; `heldout` ones were written after tuning (and seen once
before a last change to scoring); `heldout2` ones after the last change, run once. The plan is
the deterministic fallback plan (`researcher.planning.fallback_plan`), what a run gets when the model
writes nothing usable, so the numbers measure retrieval itself, not a model's luck. A topic counts
as right when the top-ranked scenario fits it and clears `FIT_THRESHOLD`, or, for a "none" topic,
when no scenario clears it. Also printed: how often the design would take the top scenario as a
clear leader (the model is not asked), and how often a fitting scenario is among the contenders the
model may choose from. No model is called; runs in a few seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from researcher.design import FIT_THRESHOLD, contenders  # noqa: E402
from researcher.planning import fallback_plan  # noqa: E402
from researcher.retrieval import rank_scenarios  # noqa: E402
from simulator import all_scenarios  # noqa: E402

TOPICS = Path(__file__).with_name("retrieval_topics.yaml")


def load_topics(which: str) -> list[dict]:
    topics = yaml.safe_load(TOPICS.read_text())["topics"]
    return [t for t in topics if which == "all" or t["set"] == which]


def judge(topic: dict, library) -> dict:
    """Retrieval's answer for one topic and whether it is right."""
    ranked = rank_scenarios(fallback_plan(topic["topic"]), library, k=len(library), topic=topic["topic"])
    best, score = ranked[0]
    fits = set(topic["fits"])
    close = contenders(ranked)
    if fits:
        right = best in fits and score >= FIT_THRESHOLD
    else:
        right = score < FIT_THRESHOLD
    return {"topic": topic, "ranked": ranked, "right": right, "leader": len(close) == 1 and score >= FIT_THRESHOLD,
            "fit_in_contenders": bool(fits & set(close)) and score >= FIT_THRESHOLD}


def summary(name: str, results: list[dict]) -> list[str]:
    fitting = [r for r in results if r["topic"]["fits"]]
    nones = [r for r in results if not r["topic"]["fits"]]
    lines = [
        f"{name}_topics: {len(results)}",
        f"{name}_top1_accuracy: {sum(r['right'] for r in results) / max(1, len(results)):.3f}",
        f"{name}_top1_accuracy_fitting: {sum(r['right'] for r in fitting) / max(1, len(fitting)):.3f}",
        f"{name}_none_recognised: {sum(r['right'] for r in nones)}/{len(nones)}",
        f"{name}_clear_leader: {sum(r['leader'] for r in fitting)}/{len(fitting)}",
        f"{name}_wrong_clear_leader: {sum(r['leader'] and not r['right'] for r in fitting)}/{len(fitting)}",
        f"{name}_fit_among_contenders: {sum(r['fit_in_contenders'] for r in fitting)}/{len(fitting)}",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=["dev", "heldout", "heldout2", "all"], default="all")
    parser.add_argument("--quiet", action="store_true", help="only the summary lines")
    args = parser.parse_args()
    library = all_scenarios()
    results = [judge(t, library) for t in load_topics(args.set)]
    if not args.quiet:
        for r in results:
            top = ", ".join(f"{n} {s:.2f}" for n, s in r["ranked"][:3])
            expected = "/".join(r["topic"]["fits"]) or "none"
            mark = "ok  " if r["right"] else "MISS"
            print(f"{mark} [{r['topic']['set']:7}] want {expected:22} got {top:60} | {r['topic']['topic'][:70]}")
        print()
    lines = []
    for name in ("dev", "heldout", "heldout2"):
        part = [r for r in results if r["topic"]["set"] == name]
        if part:
            lines += summary(name, part)
    lines += [f"top1_accuracy: {sum(r['right'] for r in results) / max(1, len(results)):.3f}",
              f"none_recognised: {sum(r['right'] for r in results if not r['topic']['fits'])}/"
              f"{sum(1 for r in results if not r['topic']['fits'])}",
              f"fit_threshold: {FIT_THRESHOLD}"]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
