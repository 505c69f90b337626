"""Small helpers for simulator tests: run a spec in process and read metrics back."""

from __future__ import annotations

import numpy as np

from simulator.catalog import load_scenario
from simulator.compile import compile_scenario
from simulator.engine import RunResult, Simulation
from simulator.spec import ScenarioSpec, parse_spec


def run(spec: ScenarioSpec | str, params: dict | None = None, seed: int = 0, *, population: int | None = None,
        steps: int | None = None) -> RunResult:
    if isinstance(spec, str):
        spec = load_scenario(spec)
    return Simulation(compile_scenario(spec), params, seed, population=population, max_steps=steps).run()


def series(result: RunResult, metric: str) -> np.ndarray:
    return result.values[:, result.metric_names.index(metric)]


def final(result: RunResult, metric: str) -> float:
    return float(series(result, metric)[-1])


def spec_from(**overrides) -> ScenarioSpec:
    """A minimal valid spec with fields replaced: for tests of one rule at a time."""
    data = {
        "name": "tiny",
        "title": "Tiny",
        "domain": "sociology",
        "description": "A tiny test scenario.",
        "odd": {"purpose": "testing"},
        "parameters": {"rate": {"default": 0.5, "min": 0, "max": 1}},
        "population": 100,
        "agent_types": [{"name": "a", "attributes": {"x": 0}}],
        "rules": [{"name": "r", "kind": "update", "set": {"x": "x + 1"}}],
        "metrics": {"mean_x": "mean(x)"},
        "stop": {"max_steps": 5},
    }
    data.update(overrides)
    return parse_spec(data)
