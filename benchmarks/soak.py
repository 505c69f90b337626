"""Soak: two research runs and a scenario run at once, all on one embedded LLM server.

    python benchmarks/soak.py [--minutes 10] [--scenario el_farol] [--no-alone] [--keep]

Starts the embedded server once (in a private SOCIETAS_CACHE_DIR), then keeps three commands
going at once until --minutes have passed, each started again with a fresh run folder as soon
as it ends: `societas research TOPIC_A`, `societas research TOPIC_B` and `societas scenarios
run SCENARIO --agents-mode llm`. Every LLM client of every process (Ray workers included)
appends its counts to a journal (`SOCIETAS_LLM_JOURNAL`); every server process started after
the first is a restart (each watchdog logs its start in the server's log). Then each command
runs once more, alone, and its findings (`findings.json`; the scenario's metric summary) are
compared with those of every run of it made together.

Prints `minutes` (the together phase, until its last run ended), the runs per command, then
`sent`, `answered`, `retried` (HTTP requests, together), `findings_equal`, and last
`lost: <n>` (calls given up because the server was unavailable) and `restarts: <n>`
(target: 0 and 0). Exits 1 if a run failed, a call was lost or a server restarted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llms.backends import parse_backend  # noqa: E402
from llms.endpoints import Backend  # noqa: E402
from llms.server import servers_dir, stop_all  # noqa: E402

TOPICS = (
    "Does greater tolerance of differing opinions lead to consensus rather than polarization?",
    "How does the share of early adopters affect how fast a new product spreads?",
)
COUNTED = ("sent", "requests", "retries", "lost")
STARTED = "started server pid"  # what llms.watchdog logs when it starts a server
RUNNING: set[subprocess.Popen] = set()  # commands to stop if the soak is stopped


@dataclass
class Job:
    """One command, run again and again; `findings(out, stdout)` reads what it concluded."""

    name: str
    argv: list[str]
    runs: list[tuple[int, float, Path, str]] = field(default_factory=list)  # (exit code, seconds, out, stdout)

    def run(self, out: Path, env: dict[str, str], log: Path) -> tuple[int, float, Path, str]:
        started = time.monotonic()
        with log.open("w") as err:
            proc = subprocess.Popen([*self.argv, "--out", str(out)], cwd=ROOT, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=err)
            RUNNING.add(proc)
            stdout, _ = proc.communicate()
            RUNNING.discard(proc)
        return proc.returncode, time.monotonic() - started, out, stdout

    def findings(self, out: Path, stdout: str) -> object:
        if self.name.startswith("research"):
            text = (out / "findings.json").read_text()
            return _without_nulls(json.loads(text.replace(str(out), "<run>")))
        start = 0 if stdout.startswith("{") else stdout.index("\n{") + 1  # past anything Ray printed
        return json.JSONDecoder().raw_decode(stdout, start)[0]["summary"]


def _without_nulls(value: object) -> object:
    """A field set to null says what a missing one does (newer code may write more of them)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def societas(*args: str) -> list[str]:
    return [sys.executable, "-m", "societas.cli", *args]


def restarts(cache: Path) -> int:
    """Server processes started beyond the first of each server (every watchdog logs its start)."""
    return sum(max(0, log.read_text(errors="replace").count(STARTED) - 1) for log in servers_dir(cache).glob("*.log"))


def journal_totals(folder: Path) -> dict[str, int]:
    totals = dict.fromkeys(COUNTED, 0)
    for path in folder.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            for name in COUNTED:
                totals[name] += int(entry.get(name, 0))
    return totals


def keep_running(job: Job, deadline: float, work: Path, env: dict[str, str]) -> None:
    while time.monotonic() < deadline:
        i = len(job.runs)
        job.runs.append(job.run(work / f"{job.name}-{i}", env, work / f"{job.name}-{i}.log"))
        code, seconds, _, _ = job.runs[-1]
        print(f"  {job.name} #{i}: exit {code} in {seconds:.0f} s", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="keep starting runs this long (default 10)")
    ap.add_argument("--scenario", default="el_farol", help="a library scenario with LLM agents")
    ap.add_argument("--scenario-args", default="--agents 40 --steps 4 --seeds 2",
                    help="more options for `scenarios run` (default: %(default)s)")
    ap.add_argument("--no-alone", action="store_true", help="skip the one-at-a-time runs (no findings check)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (run folders, logs, journals)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the commands and the server

    work = Path(tempfile.mkdtemp(prefix="societas-soak-"))
    cache = work / "cache"
    os.environ["SOCIETAS_CACHE_DIR"] = str(cache)  # a private server: nothing else is stopped or counted
    jobs = [
        Job("research-a", societas("research", TOPICS[0])),
        Job("research-b", societas("research", TOPICS[1])),
        Job("scenario", societas("scenarios", "run", args.scenario, "--agents-mode", "llm", "--json",
                                 *args.scenario_args.split())),
    ]
    print(f"work folder: {work}   cores: {os.cpu_count()}   load avg: {os.getloadavg()[0]:.2f}", flush=True)
    try:
        backend = Backend(parse_backend("embedded"))
        started = time.monotonic()
        backend.start()
        print(f"embedded server: {len(backend.servers)} replica(s) up in {time.monotonic() - started:.1f} s", flush=True)

        together = work / "together"
        together.mkdir()
        env = {**os.environ, "SOCIETAS_LLM_JOURNAL": str(together / "journal")}
        print(f"together, for {args.minutes:g} min:", flush=True)
        began = time.monotonic()
        deadline = began + args.minutes * 60
        threads = [threading.Thread(target=keep_running, args=(job, deadline, together, env), daemon=True)
                   for job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        together_minutes = (time.monotonic() - began) / 60
        totals = journal_totals(together / "journal")

        equal = compare_alone(jobs, work, args.no_alone)
        restarted = restarts(cache)
    finally:
        for proc in list(RUNNING):
            proc.terminate()
            proc.wait()
        stop_all(cache)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    failed = sum(code != 0 for job in jobs for code, *_ in job.runs)
    print(f"minutes: {together_minutes:.1f}")
    for job in jobs:
        print(f"runs_{job.name}: {len(job.runs)}")
    print(f"runs_failed: {failed}")
    print(f"sent: {totals['sent']}")
    print(f"answered: {totals['requests']}")
    print(f"retried: {totals['retries']}")
    print(f"findings_equal: {equal}")
    print(f"lost: {totals['lost']}")
    print(f"restarts: {restarted}")
    return 0 if failed == 0 and totals["lost"] == 0 and restarted == 0 else 1


def compare_alone(jobs: list[Job], work: Path, skip: bool) -> str:
    """Runs each job once more, alone; `yes`, `no (<which>)` or `skipped`."""
    if skip:
        return "skipped"
    alone = work / "alone"
    alone.mkdir()
    env = {**os.environ, "SOCIETAS_LLM_JOURNAL": str(alone / "journal")}
    print("alone, one at a time:", flush=True)
    differ = []
    for job in jobs:
        code, seconds, out, stdout = job.run(alone / job.name, env, alone / f"{job.name}.log")
        print(f"  {job.name}: exit {code} in {seconds:.0f} s", flush=True)
        if code != 0:
            differ.append(f"{job.name} failed alone")
            continue
        reference = job.findings(out, stdout)
        differ += [f"{job.name} #{i}" for i, (c, _, o, s) in enumerate(job.runs) if c == 0 and job.findings(o, s) != reference]
    return "yes" if not differ else f"no ({', '.join(differ)})"


if __name__ == "__main__":
    sys.exit(main())
