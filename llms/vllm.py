"""`--llm vllm:MODEL`: start `vllm serve MODEL` as a managed child, like the embedded server.

`SOCIETAS_VLLM_BIN` overrides the executable (a shell-style command line, so tests can use
`python stand_in.py`); otherwise `vllm` on PATH, else `python -m vllm.entrypoints.cli.main`
when the package is importable.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sys

from llms.errors import ConfigError
from llms.server import PORT_PLACEHOLDER, ServerLaunch

DEFAULT_START_TIMEOUT = 900.0  # vLLM loads weights and captures CUDA graphs: minutes


def vllm_command() -> list[str]:
    override = os.environ.get("SOCIETAS_VLLM_BIN")
    if override:
        return shlex.split(override)
    found = shutil.which("vllm")
    if found:
        return [found]
    if importlib.util.find_spec("vllm") is not None:
        return [sys.executable, "-m", "vllm.entrypoints.cli.main"]
    raise ConfigError(
        "vllm is not installed",
        hint="pip install 'societas[vllm]' on a GPU machine, set SOCIETAS_VLLM_BIN, or pass a running server's URL to --llm",
    )


def vllm_launch(model: str, *, extra_args: tuple[str, ...] = ()) -> ServerLaunch:
    base = vllm_command()
    argv = (*base, "serve", model, "--host", "127.0.0.1", "--port", PORT_PLACEHOLDER, *extra_args)
    return ServerLaunch(
        kind="vllm",
        name=f"vllm:{model}",
        model=model,
        identity={"model": model, "command": base, "extra": list(extra_args)},
        argv=argv,
        start_timeout=float(os.environ.get("SOCIETAS_LLM_START_TIMEOUT") or DEFAULT_START_TIMEOUT),
    )
