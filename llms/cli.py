"""`societas llm check | status | stop`: see that a backend works, and manage the local servers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from llms.backends import parse_backend
from llms.check import run_check
from llms.client import LLMClient
from llms.endpoints import open_backend
from llms.server import list_servers, stop_all

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Check the LLM backends; manage the local servers.")

LLM_HELP = "embedded (default), http(s)://host:port[/v1][,...], openai[:MODEL], or vllm:MODEL."


@app.command()
def check(
    llm: str = typer.Option("embedded", "--llm", help=LLM_HELP),
    model_path: Optional[Path] = typer.Option(None, "--model-path", help="Another GGUF for the embedded server."),
    port: Optional[int] = typer.Option(None, "--port", help="Port for a server started here (replicas take the next ports); else SOCIETAS_LLM_PORT, else free."),
    dialect: Optional[str] = typer.Option(None, "--dialect", help="Structured-output dialect: llama or json_schema."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """One schema-constrained round trip and a speed probe; exits 1 if the output did not validate."""
    spec = parse_backend(llm, model_path=model_path, port=port, dialect=dialect)
    result = run_check(LLMClient(open_backend(spec), role="check"))
    if as_json:
        typer.echo(json.dumps(result))
    else:
        for name in ("backend", "model", "urls", "dialect", "structured_ok", "answer", "error", "latency_s", "completion_tokens", "tokens_per_s"):
            if name in result:
                typer.echo(f"{name:18} {result[name]}")
    if not result["structured_ok"]:
        raise typer.Exit(1)


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """The servers this machine's societas started (embedded, vllm), and whether they answer."""
    rows = [
        {
            "name": state.name,
            "model": state.model,
            "url": state.base_url,
            "pid": state.pid,
            "ready": state.ready,
            "healthy": healthy,
            "up_s": round(time.time() - state.started_at),
            "log": state.log,
        }
        for state, healthy in sorted(list_servers(), key=lambda item: item[0].name)
    ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no local LLM server is running")
    for row in rows:
        health = "healthy" if row["healthy"] else ("not answering" if row["ready"] else "starting")
        typer.echo(f"{row['name']}  {row['url']}  pid {row['pid']}  up {row['up_s']} s  {health}")


@app.command()
def stop() -> None:
    """Stop every local LLM server started by societas (they also stop on their own when idle)."""
    stopped = stop_all()
    if not stopped:
        typer.echo("no local LLM server was running")
    for state in stopped:
        typer.echo(f"stopped {state.name} (pid {state.pid}, port {state.port})")
