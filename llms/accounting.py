"""Token, call and latency counts per model role, for the run manifest.

One `Accounting` is shared by every client of a run, so the snapshot covers all roles
whatever backend each uses. Thread-safe: the simulator calls from many threads and tasks.
When `SOCIETAS_LLM_JOURNAL` names a folder, every count is also appended there as one JSON
line (`<pid>.jsonl`), so counts from several commands and their Ray workers can be summed
(`benchmarks/soak.py` does).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

ROLES = ("researcher", "agents", "reviewer")


@dataclass
class RoleUsage:
    calls: int = 0  # complete() answers, cache hits included
    sent: int = 0  # HTTP requests sent, answered or not
    requests: int = 0  # HTTP requests answered by a server
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0  # summed over requests
    cache_hits: int = 0
    repairs: int = 0  # extra requests sent because the output did not validate
    retries: int = 0  # transient faults retried
    failures: int = 0  # complete() calls that raised
    lost: int = 0  # of those, the ones given up because the backend was unavailable

    def add(self, other: "RoleUsage") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class Accounting:
    """Counters per role, and per pipeline stage when callers name one; `snapshot()` is a plain
    dict for `manifest.json`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._roles: dict[str, RoleUsage] = {}
        self._stages: dict[str, RoleUsage] = {}
        folder = os.environ.get("SOCIETAS_LLM_JOURNAL")
        self._journal = Path(folder) / f"{os.getpid()}.jsonl" if folder else None

    def add(self, role: str, stage: str | None = None, **counts: float) -> None:
        """Add to counters, e.g. `add("agents", requests=1, prompt_tokens=80)`."""
        if self._journal is not None:
            self._write_journal(role, stage, counts)
        with self._lock:
            targets = [self._roles.setdefault(role, RoleUsage())]
            if stage is not None:
                targets.append(self._stages.setdefault(stage, RoleUsage()))
            for usage in targets:
                for name, value in counts.items():
                    setattr(usage, name, getattr(usage, name) + value)

    def _write_journal(self, role: str, stage: str | None, counts: dict[str, float]) -> None:
        line = json.dumps({"t": round(time.time(), 3), "role": role, "stage": stage, **counts}) + "\n"
        with self._lock:
            self._journal.parent.mkdir(parents=True, exist_ok=True)
            with self._journal.open("a") as journal:
                journal.write(line)

    def usage(self, role: str) -> RoleUsage:
        """A copy of one role's counters (zeros when the role made no call)."""
        with self._lock:
            return RoleUsage(**asdict(self._roles.get(role, RoleUsage())))

    def stage_usage(self, stage: str) -> RoleUsage:
        with self._lock:
            return RoleUsage(**asdict(self._stages.get(stage, RoleUsage())))

    def snapshot(self) -> dict[str, Any]:
        """`{"roles": {role: counters}, "stages": {stage: counters}, "total": counters}`."""
        with self._lock:
            total = RoleUsage()
            for usage in self._roles.values():
                total.add(usage)
            return {
                "roles": {name: _rounded(usage) for name, usage in sorted(self._roles.items())},
                "stages": {name: _rounded(usage) for name, usage in sorted(self._stages.items())},
                "total": _rounded(total),
            }


def _rounded(usage: RoleUsage) -> dict[str, Any]:
    counters = asdict(usage)
    counters["latency_s"] = round(counters["latency_s"], 3)
    return counters
