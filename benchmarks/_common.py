"""Shared helpers for the simulator benchmarks (`vs_mesa.py`, `scale.py`).

Timing: the minimum over repeats (other processes share this machine; the minimum is the
least disturbed run), on the wall clock and, as a check that is robust to competing
processes, on this process's CPU time. Memory: resident set size (RSS) from /proc, with the kernel's
high-water mark (VmHWM) reset through /proc/self/clear_refs so that a peak can be taken
around one phase of a run; falls back to psutil RSS where /proc is missing.
"""

from __future__ import annotations

import os
import platform
import re
import time
from datetime import date
from pathlib import Path

import psutil

from simulator.catalog import load_scenario
from simulator.spec import ScenarioSpec, parse_spec

ROOT = Path(__file__).resolve().parents[1]


# --- timing and reporting -------------------------------------------------------------------

def fmt_rate(x: float) -> str:
    """1234567 -> '1.23M'."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def machine_line() -> str:
    """One line naming the machine and the versions the numbers depend on."""
    import numpy
    import scipy

    mem = psutil.virtual_memory()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (
        f"date {date.today().isoformat()} | {os.cpu_count()} cores | {mem.total / 2**30:.0f} GiB RAM "
        f"({mem.available / 2**30:.1f} free) | load avg {load[0]:.2f} | Python {platform.python_version()} | "
        f"numpy {numpy.__version__} | scipy {scipy.__version__}"
    )


# --- memory ---------------------------------------------------------------------------------

_STATUS = Path("/proc/self/status")


def _status_kib(field: str) -> int | None:
    try:
        m = re.search(rf"^{field}:\s+(\d+)\s+kB", _STATUS.read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def rss_bytes() -> int:
    """Current resident set size of this process."""
    kib = _status_kib("VmRSS")
    return kib * 1024 if kib is not None else psutil.Process().memory_info().rss


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """RSS high-water mark since the last `reset_peak_rss` (or since start)."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- specs built in memory from the library (the YAML files are never edited) ----------------

def schelling_spec(*, torus: bool, stop_when: bool = False) -> ScenarioSpec:
    """The library's Schelling spec with the torus set and, by default, no early stop."""
    spec = load_scenario("schelling")
    update: dict = {"space": spec.space.model_copy(update={"torus": torus})}
    if not stop_when:
        update["stop"] = spec.stop.model_copy(update={"when": None})
    return spec.model_copy(update=update)


def network_spec(mean_degree: float = 10.0) -> ScenarioSpec:
    """The scale workload: the library's voter model moved onto an Erdős–Rényi network, with a
    second, deterministic rule; both rules update every agent every step.

    - imitate (stochastic): opinion <- opinion of one uniformly random neighbor (voter model with
      activation 1: a per-agent counter-based draw plus a gather along the CSR lists);
    - average (deterministic): belief <- (belief + mean of neighbors' belief) / 2 (DeGroot
      averaging: a sparse mat-vec over all edges).
    Metrics (every step): share of opinion 1, mean belief.
    """
    data = load_scenario("voter").model_dump(mode="json", exclude_none=True)
    data.update(
        name="voter_network_bench",
        title="Voter model and DeGroot averaging on an Erdos-Renyi network (benchmark)",
        population=10_000,
        space={"kind": "network", "network": "erdos_renyi", "mean_degree": float(mean_degree)},
        agent_types=[{
            "name": "voter",
            "attributes": {"opinion": "bernoulli(params.initial_share)", "belief": "uniform()"},
        }],
        rules=[
            {"name": "imitate", "kind": "update", "set": {"opinion": "neighbor_random(opinion)"},
             "description": "Every agent copies the opinion of a random neighbor."},
            {"name": "average", "kind": "update",
             "set": {"belief": "0.5 * belief + 0.5 * neighbor_mean(belief)"},
             "description": "Every agent moves halfway to its neighbors' mean belief."},
        ],
        metrics={"share_one": "share(opinion == 1)", "mean_belief": "mean(belief)"},
        stop={"max_steps": 10},
    )
    return parse_spec(data)


def now() -> float:
    """Wall clock."""
    return time.perf_counter()


def cpu() -> float:
    """CPU time of this process (all threads): robust to other processes competing for cores."""
    return time.process_time()


def load_line() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return f"load avg (1/5/15 min) {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} on {os.cpu_count()} cores"


__all__ = [
    "fmt_rate", "machine_line", "rss_bytes", "reset_peak_rss", "peak_rss_bytes",
    "schelling_spec", "network_spec", "now", "cpu", "load_line", "ROOT",
]
