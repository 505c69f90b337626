#!/usr/bin/env bash
# Sets up .venv with everything societas needs. Idempotent: a second run with an
# unchanged pyproject.toml takes a second. llama-cpp-python builds from source once
# (about 5 minutes on 2 cores); pip's wheel cache makes later venvs reuse that build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $PY"
  "$PY" -m venv .venv
fi
stamp=.venv/.societas-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import societas, llama_cpp" 2>/dev/null; then
  exit 0
fi
echo "[setup] installing societas and its dependencies (first time: llama-cpp-python builds from source, ~5 min)"
.venv/bin/python -m pip install --quiet --upgrade pip
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
.venv/bin/python -m pip install --quiet --progress-bar off -e ".[dev]"
echo "$want" > "$stamp"
echo "[setup] done"
