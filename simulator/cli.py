"""`societas scenarios ...` and `societas simulate SPEC.yaml`: the simulator on its own."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from simulator.agents_mode import DEFAULT_LLM_BUDGET, AgentsSetup
from societas import strict_json
from societas.errors import SocietasError

scenarios_app = typer.Typer(
    help="The scenario library: list, inspect and run validated agent-based models.",
    no_args_is_help=True,
)
console = Console(stderr=True)

PARAM_HELP = "Set a parameter for every run: --param name=value (repeatable)."
SWEEP_HELP = "Sweep a parameter over values, one condition each: --sweep epsilon=0.1,0.2,0.3."
AGENTS_MODE_HELP = ("How agents with `decision: llm` choose: llm (a language model), rule (the rules' fallback), "
                    "auto (llm when the estimated LLM calls fit --llm-budget).")
SHARDS_HELP = ("Split each run over this many Ray actors (same results, bit for bit); default: only runs "
               "above 2,000,000 agents are split.")
SHARD_STATE_OPTION = typer.Option(
    "auto", "--shard-state",
    help="What each shard holds: 'partitioned' (its agents and their network neighbors: less memory, halo "
         "exchange; networks with neighbor-only rules and no stop condition), 'replicated' (everyone), or "
         "'auto' (partitioned when a shard would hold at most half the agents).")
LLM_BUDGET_HELP = "auto mode: the most LLM calls (distinct prompts after grouping, estimated by a pilot) to allow."
# The LLM-agent options of `scenarios run` and `simulate`, declared once for both.
AGENTS_MODE_OPTION = typer.Option("auto", "--agents-mode", help=AGENTS_MODE_HELP)
LLM_BUDGET_OPTION = typer.Option(DEFAULT_LLM_BUDGET, "--llm-budget", min=0, help=LLM_BUDGET_HELP)
LLM_OPTION = typer.Option(None, "--llm", help="Backend for LLM agents: embedded (default), a URL, vllm:MODEL.")
MODEL_PATH_OPTION = typer.Option(None, "--model-path", help="Another GGUF for the embedded server.")
LLM_CONCURRENCY_OPTION = typer.Option(None, "--llm-concurrency", min=1, max=1024,
                                      help="LLM requests in flight per run (default: the backend's).")


def register(app: typer.Typer) -> None:
    app.add_typer(scenarios_app, name="scenarios")
    app.command("simulate", help="Run a scenario spec you wrote (YAML); see `societas scenarios show NAME --yaml`.")(
        simulate_cmd
    )


@scenarios_app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the library scenarios: name, domain, title."""
    from simulator.catalog import all_scenarios

    specs = all_scenarios()
    if as_json:
        typer.echo(json.dumps([{"name": s.name, "title": s.title, "domain": s.domain,
                                "parameters": list(s.parameters)} for s in specs], indent=2))
        return
    table = Table(title=f"{len(specs)} library scenarios")
    for col in ("name", "domain", "title", "parameters"):
        table.add_column(col)
    for s in specs:
        table.add_row(s.name, s.domain, s.title, ", ".join(s.parameters))
    Console().print(table)


@scenarios_app.command("show")
def show_cmd(
    name: str = typer.Argument(..., help="Scenario name (see `societas scenarios list`)."),
    as_yaml: bool = typer.Option(False, "--yaml", help="Print the whole spec as YAML (a template for your own)."),
    as_json: bool = typer.Option(False, "--json", help="Print the spec as JSON."),
) -> None:
    """Show one scenario: its description, parameters, agents, rules and metrics."""
    from simulator.catalog import load_scenario

    spec = load_scenario(name)
    if as_yaml:
        typer.echo(spec.to_yaml())
        return
    if as_json:
        typer.echo(spec.model_dump_json(indent=2, by_alias=True))
        return
    out = Console()
    out.print(f"[bold]{spec.title}[/bold]  ({spec.name}, {spec.domain})")
    out.print(spec.description)
    out.print(f"\n[bold]Purpose[/bold]: {spec.odd.purpose}")
    if spec.odd.process:
        out.print(f"[bold]Process[/bold]: {spec.odd.process}")
    table = Table(title="parameters")
    for col in ("name", "default", "range", "meaning"):
        table.add_column(col)
    for k, p in spec.parameters.items():
        table.add_row(k, f"{p.default:g}", f"[{p.range_text(', ')}]", p.description)
    out.print(table)
    out.print(f"population: {spec.population}; space: {spec.space.kind}"
              + (f" ({spec.space.network})" if spec.space.network else "")
              + f"; steps: {spec.stop.max_steps}")
    out.print("agent types: " + ", ".join(t.name for t in spec.agent_types))
    out.print("rules: " + ", ".join(f"{r.name} ({r.kind})" for r in spec.rules))
    out.print("metrics: " + ", ".join(spec.metrics))


@scenarios_app.command("run")
def run_cmd(
    name: str = typer.Argument(..., help="Scenario name (see `societas scenarios list`)."),
    param: list[str] = typer.Option([], "--param", "-p", help=PARAM_HELP),
    sweep: Optional[str] = typer.Option(None, "--sweep", help=SWEEP_HELP),
    agents: Optional[int] = typer.Option(None, "--agents", "-n", min=1, help="Number of agents (default: the spec's)."),
    steps: Optional[int] = typer.Option(None, "--steps", "-t", min=1, help="Steps to run (default: the spec's)."),
    seeds: int = typer.Option(3, "--seeds", "-s", min=1, max=1000, help="Independent runs per condition."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: a new folder under runs/)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", envvar="RAY_ADDRESS",
                                              help="Join this Ray cluster instead of starting a local one."),
    local: bool = typer.Option(False, "--local", help="Run in this process, without Ray (debugging)."),
    shards: Optional[int] = typer.Option(None, "--shards", min=1, help=SHARDS_HELP),
    shard_state: str = SHARD_STATE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    agents_mode: str = AGENTS_MODE_OPTION,
    llm_budget: int = LLM_BUDGET_OPTION,
    llm: Optional[str] = LLM_OPTION,
    model_path: Optional[Path] = MODEL_PATH_OPTION,
    llm_concurrency: Optional[int] = LLM_CONCURRENCY_OPTION,
) -> None:
    """Run a library scenario: every condition x seed as a Ray task; data to the output folder."""
    from simulator.catalog import load_scenario

    setup = agents_setup(agents_mode, llm_budget, llm, model_path, llm_concurrency)
    _run_spec(load_scenario(name), param, sweep, agents, steps, seeds, out, ray_address, local, as_json, setup,
              shards, shard_state)


def simulate_cmd(
    spec_path: Path = typer.Argument(..., help="A scenario spec in YAML."),
    param: list[str] = typer.Option([], "--param", "-p", help=PARAM_HELP),
    sweep: Optional[str] = typer.Option(None, "--sweep", help=SWEEP_HELP),
    agents: Optional[int] = typer.Option(None, "--agents", "-n", min=1, help="Number of agents."),
    steps: Optional[int] = typer.Option(None, "--steps", "-t", min=1, help="Steps to run."),
    seeds: int = typer.Option(3, "--seeds", "-s", min=1, max=1000, help="Independent runs per condition."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: a new folder under runs/)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", envvar="RAY_ADDRESS",
                                              help="Join this Ray cluster instead of starting a local one."),
    local: bool = typer.Option(False, "--local", help="Run in this process, without Ray (debugging)."),
    shards: Optional[int] = typer.Option(None, "--shards", min=1, help=SHARDS_HELP),
    shard_state: str = SHARD_STATE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    agents_mode: str = AGENTS_MODE_OPTION,
    llm_budget: int = LLM_BUDGET_OPTION,
    llm: Optional[str] = LLM_OPTION,
    model_path: Optional[Path] = MODEL_PATH_OPTION,
    llm_concurrency: Optional[int] = LLM_CONCURRENCY_OPTION,
) -> None:
    from simulator.spec import load_spec

    setup = agents_setup(agents_mode, llm_budget, llm, model_path, llm_concurrency)
    _run_spec(load_spec(spec_path), param, sweep, agents, steps, seeds, out, ray_address, local, as_json, setup,
              shards, shard_state)


def agents_setup(mode: str, budget: int, llm: str | None, model_path: Path | None,
                 concurrency: int | None) -> AgentsSetup:
    """The `--agents-mode` family of options, checked (a bad mode is a one-line error)."""
    from llms.backends import parse_backend
    from simulator.agents_mode import check_agents_mode

    mode = check_agents_mode(mode)
    parse_backend(llm, model_path=model_path)  # a bad --llm fails before anything runs
    if model_path is not None:
        from llms.embedded import resolve_gguf

        resolve_gguf(model_path)  # and so does a missing --model-path
    return AgentsSetup(mode=mode, budget=budget, llm=llm, model_path=str(model_path) if model_path else None,
                       concurrency=concurrency)


def parse_sweep(text: str, spec) -> tuple[str, list[float]]:
    from simulator.spec import check_params

    from simulator.errors import SpecError

    key, sep, values = text.partition("=")
    key = key.strip()
    try:
        nums = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        nums = []
    if not sep or not nums:
        raise SocietasError(f"bad --sweep {text!r}", hint="write --sweep name=v1,v2,v3, e.g. --sweep epsilon=0.1,0.2")
    for v in nums:
        check_params({key: v}, spec)
    names = [f"{v:g}" for v in nums]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:  # one condition per value: a repeat would be two conditions of the same name
        raise SpecError(f"--sweep {key} lists {', '.join(repeated)} twice", scenario=spec.name,
                        hint="give each value once; use --seeds for more runs per value")
    return key, nums


def _run_spec(spec, param, sweep, agents, steps, seeds, out, ray_address, local, as_json, agents_how=None,
              shards=None, shard_state="auto") -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from simulator.compile import compile_scenario
    from simulator.experiment import Condition, Experiment
    from simulator.service import check_population, simulate
    from simulator.spec import parse_param_overrides
    from societas.runs import RunFolder, atomic_write_json, base_manifest

    compiled = compile_scenario(spec)
    from simulator.sharding.planning import SHARD_STATES

    if shard_state not in SHARD_STATES:  # before the run folder exists
        raise SocietasError(f"unknown --shard-state {shard_state!r}", hint=f"use {', '.join(SHARD_STATES)}")
    fixed = parse_param_overrides(param, spec)
    if sweep:
        key, values = parse_sweep(sweep, spec)
        conditions = [Condition(name=f"{key}={v:g}", params={**fixed, key: v}) for v in values]
    else:
        label = ",".join(f"{k}={v:g}" for k, v in fixed.items()) or "default"
        conditions = [Condition(name=label, params=fixed)]
    experiment = Experiment(scenario=spec, conditions=conditions, seeds=list(range(seeds)),
                            steps=steps, population=agents)
    check_population(experiment, compiled, shard_state)  # before the run folder exists
    folder = RunFolder.claim(out) if out else RunFolder.create(f"sim-{spec.name}")
    manifest = base_manifest(sys.argv, {"scenario": spec.name, "seeds": experiment.seeds,
                                        "agents": agents, "steps": steps,
                                        "agents_setup": agents_how.model_dump() if agents_how else None,
                                        "conditions": [c.model_dump() for c in conditions]})
    manifest["status"] = "running"
    atomic_write_json(folder.manifest_path, manifest)
    with Progress(TextColumn("[bold]simulating[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=as_json) as bar:
        task = bar.add_task(spec.name, total=experiment.n_runs)

        def progress(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, description=f"{spec.name}: {label}")

        try:
            result = simulate(experiment, folder.path, ray_address=ray_address, progress=progress,
                              use_ray=not local, agents=agents_how, shards=shards, shard_state=shard_state)
        except BaseException as exc:  # the folder must not look complete
            folder.update_manifest(status="failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise
    simulated = result.summary()
    folder.update_manifest(status="complete", simulation=simulated,
                           agents=simulated.get("agents"))  # which decision model ran, and why
    summary = summarize(result.final, spec.metrics)
    if as_json:
        typer.echo(strict_json.dumps({"out": str(folder.path), **simulated, "summary": summary}, indent=2))
        return
    _print_summary(summary, spec.name, folder.path)
    if result.sharding is not None:
        Console().print(f"each run split over {result.sharding['shards']} shards; state: {result.sharding['state']}")
    if result.agents is not None:
        Console().print(f"agents: {result.agents.used} ({result.agents.reason})")


def summarize(final, metrics) -> list[dict]:
    """Mean and interval per condition and metric over the runs where the metric is defined; `undefined`
    counts the runs where it is not (an aggregate over no agents), and the mean is None when none is."""
    from simulator.stats import mean_ci

    rows = []
    for cond, group in final.groupby("condition", sort=False):
        for m in metrics:
            mean, lo, hi, n = mean_ci(group[m])
            rows.append({"condition": cond, "metric": m, "mean": mean, "ci_low": lo, "ci_high": hi, "n": n,
                         "undefined": int(len(group) - n)})
    return strict_json.finite_or_none(rows)


def _print_summary(rows: list[dict], name: str, path: Path) -> None:
    table = Table(title=f"{name}: final values, mean and 95% CI over seeds")
    for col in ("condition", "metric", "mean", "95% CI", "n"):
        table.add_column(col)
    for r in rows:
        n = str(r["n"]) + (f" ({r['undefined']} undefined)" if r["undefined"] else "")
        if r["mean"] is None:
            table.add_row(r["condition"], r["metric"], "undefined", "—", n)
            continue
        table.add_row(r["condition"], r["metric"], f"{r['mean']:.4g}", f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]", n)
    out = Console()
    out.print(table)
    out.print(f"data: {path}/data/metrics.parquet, {path}/data/final.parquet")
