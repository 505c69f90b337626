"""`societas <verb>`: the command-line entry point.

Each package contributes its own verbs (`llms.cli`, `simulator.cli`, ...); this module only
assembles them and turns user errors into one line on stderr.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import click
import typer

from societas.errors import SocietasError

app = typer.Typer(
    name="societas",
    help=(
        "An autonomous AI social researcher.\n\n"
        "Give it a research topic; it designs an agent-based simulation experiment, runs it, "
        "analyses the data and writes a reviewed report. Everything runs offline on an "
        "embedded model by default; --llm points it at vLLM or any OpenAI-compatible server."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"societas {version('societas')}")
        except PackageNotFoundError:  # running from a source tree that was never installed
            typer.echo("societas (not installed: run `bash scripts/setup.sh`)")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug detail to stderr."),
    show_version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                      help="Print the installed version and exit."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def _register() -> None:
    import llms.cli
    import researcher.cli
    import simulator.cli

    researcher.cli.register(app)
    app.add_typer(llms.cli.app, name="llm", help="Check and benchmark the LLM backends.")
    simulator.cli.register(app)


def main(argv: list[str] | None = None) -> int:
    _register()
    try:
        # With standalone_mode=False, typer returns an exit code instead of exiting (130 on Ctrl-C).
        rv = app(args=argv, standalone_mode=False)
    except SocietasError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.secho("interrupted", fg="yellow", err=True)
        return 130
    except typer.Exit as exc:  # raised by --help and explicit exits
        return exc.exit_code
    except typer.Abort:
        typer.secho("aborted", fg="yellow", err=True)
        return 1
    except (click.ClickException, typer.TyperException) as exc:
        # Usage errors (a bad option value, an unknown option): typer raises its vendored click's.
        if not hasattr(exc, "show"):
            raise
        exc.show()
        return getattr(exc, "exit_code", 2)
    return rv if isinstance(rv, int) else 0


def entry() -> None:
    """The console script: `main`, then a prompt exit after Ctrl-C.

    After Ctrl-C a pipeline node may still be running in a LangGraph worker thread, and the
    interpreter would wait for it (minutes, with a slow model) before exiting; a second Ctrl-C
    in that wait used to land in Ray's atexit hook and crash the interpreter. Everything the
    run needs is already on disk (checkpoints are synchronous, files are written atomically),
    so the process leaves at once: Ray is shut down, and anything further is cut short.
    """
    code = main()
    if code != 130:
        sys.exit(code)
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))  # a second Ctrl-C: leave now
    threading.Timer(15.0, os._exit, (130,)).start()  # a stuck shutdown cannot hold the terminal
    try:
        if "ray" in sys.modules:
            import ray

            if ray.is_initialized():
                ray.shutdown()
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(130)


if __name__ == "__main__":
    entry()
