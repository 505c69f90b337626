"""End to end: `societas research` on a fixed topic with the embedded model; time per stage.

    python benchmarks/e2e.py [--llm URL] [--topic TEXT] [--keep]

Prints the wall time of each pipeline stage (from the run's manifest) and in total, then a
line `e2e_seconds: <x>` and `target_met: yes|no` (target: under 600 s on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOPIC = "Does greater tolerance of differing opinions lead to consensus rather than polarization?"
TARGET_SECONDS = 600


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topic", default=TOPIC)
    ap.add_argument("--llm", default=None, help="backend (default: embedded)")
    ap.add_argument("--keep", action="store_true", help="keep the run folder")
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="societas-e2e-")) / "run"
    cmd = [sys.executable, "-m", "societas.cli", "research", args.topic, "--out", str(out)]
    if args.llm:
        cmd += ["--llm", args.llm]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, text=True)
    total = time.perf_counter() - t0
    if done.returncode != 0:
        print(f"research failed with exit code {done.returncode}", file=sys.stderr)
        return done.returncode
    manifest = json.loads((out / "manifest.json").read_text())
    print(f"\ntopic: {args.topic}")
    print(f"llm: {json.dumps(manifest.get('llm', {}).get('models', {}).get('researcher', {}))}")
    for stage, seconds in manifest.get("timings", {}).items():
        tokens = manifest.get("tokens", {}).get(stage, {})
        print(f"{stage:20s} {seconds:8.1f} s   llm calls {tokens.get('calls', 0):3d}   "
              f"tokens {tokens.get('prompt_tokens', 0) + tokens.get('completion_tokens', 0):6d}")
    print(f"final report: {out / 'report' / 'final' / 'report.md'}")
    print(f"e2e_seconds: {total:.1f}")
    print(f"target_met: {'yes' if total < TARGET_SECONDS else 'no'} (target < {TARGET_SECONDS} s)")
    if not args.keep:
        shutil.rmtree(out.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
