"""The simulator's public API (DESIGN.md §3), as Mesa's package facade names its own: the pipeline
and the CLI import from here, never from the modules behind it.

    from simulator import load_scenario, compile_scenario, Experiment, Condition, simulate
    spec = load_scenario("deffuant")
    result = simulate(Experiment(spec=spec, conditions=[Condition(params={"epsilon": 0.3})]), out=run_dir)

Names are imported on first use, so `import simulator.spec` does not pay for Ray and pandas.
"""

from __future__ import annotations

from societas.lazy import lazy_getattr

_EXPORTS = {
    # scenario specs: the models, loading and checking
    "DOMAINS": "simulator.spec",
    "Domain": "simulator.spec",
    "Parameter": "simulator.spec",
    "ScenarioSpec": "simulator.spec",
    "check_params": "simulator.spec",
    "load_spec": "simulator.spec",
    "load_spec_text": "simulator.spec",
    "parse_param_overrides": "simulator.spec",
    "parse_spec": "simulator.spec",
    "scenario_json_schema": "simulator.spec",
    "SpecError": "simulator.errors",
    # the library
    "all_scenarios": "simulator.catalog",
    "load_scenario": "simulator.catalog",
    # expressions, compiling and one process's engine
    "describe_functions": "simulator.expr",
    "compile_scenario": "simulator.compile",
    "Simulation": "simulator.engine",
    # experiments and running them on Ray
    "Condition": "simulator.experiment",
    "Experiment": "simulator.experiment",
    "SimulationResult": "simulator.service",
    "simulate": "simulator.service",
    "smoke_run": "simulator.service",
    "simulation_tool": "simulator.service",
    # LLM agents
    "AgentsSetup": "simulator.agents_mode",
    "check_agents_mode": "simulator.agents_mode",
    "DEFAULT_LLM_BUDGET": "simulator.agents_mode",
    # statistics over seeds
    "mean_ci": "simulator.stats",
    "metric_bounds": "simulator.stats",
    "wilson_interval": "simulator.stats",
    "UNBOUNDED": "simulator.stats",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
