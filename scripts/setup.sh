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

# TeX for the PDF reports (pdflatex, latexmk, fonts) and poppler-utils (pdftotext, used by tests).
# Installed only when missing: as root with apt-get, else with `sudo -n` when that needs no
# password; otherwise one notice, and societas still writes Markdown, HTML and LaTeX reports.
tex_packages="texlive-latex-base texlive-latex-recommended texlive-fonts-recommended latexmk lmodern poppler-utils"
if ! command -v pdflatex >/dev/null || ! command -v latexmk >/dev/null || ! command -v pdftotext >/dev/null; then
  apt=""
  tex_failed=.venv/.tex-install-failed  # one attempt per venv: no apt-get update on every later run
  if [ "$(id -u)" = 0 ]; then apt="env"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then apt="sudo -n env"; fi
  if [ -f "$tex_failed" ]; then
    echo "[setup] notice: no TeX; installing it failed before (delete $tex_failed to try again)"
  elif [ -n "$apt" ] && command -v apt-get >/dev/null; then
    echo "[setup] installing TeX for PDF reports ($tex_packages)"
    $apt DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
      && $apt DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $tex_packages >/dev/null \
      || { echo "[setup] notice: installing TeX failed; reports will have no PDF until it is installed"; touch "$tex_failed"; }
  else
    echo "[setup] notice: no TeX (pdflatex, latexmk); reports will be Markdown, HTML and LaTeX without a PDF." \
         "Install: apt-get install $tex_packages"
  fi
fi

stamp=.venv/.societas-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import societas, llama_cpp" 2>/dev/null; then
  exit 0
fi
echo "[setup] installing societas and its dependencies (first time: llama-cpp-python builds from source, ~5 min)"
.venv/bin/python -m pip install --quiet --upgrade pip
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}

# llama.cpp is built for AVX2, not for this CPU (-march=native): a VM can advertise AMX without
# letting a process use it, and a native build then dies with SIGILL (`tilezero`) on the first
# prompt. The wheel is built once into a cache keyed by these flags, so a fresh venv (CI's) reuses
# it and pip's own wheel cache can never hand back a native build.
llama_flags="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
llama_wheels="${XDG_CACHE_HOME:-$HOME/.cache}/societas/llama-wheels/$(echo "$llama_flags" | sha256sum | cut -c1-12)"
if ! ls "$llama_wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "[setup] building llama-cpp-python for AVX2 (once; about 5-10 minutes on 2 cores)"
  CMAKE_ARGS="$llama_flags" .venv/bin/python -m pip wheel --quiet --no-deps --no-cache-dir \
    --no-binary llama-cpp-python --wheel-dir "$llama_wheels" "llama-cpp-python>=0.3.2"
fi
if [ "$(cat .venv/.llama-build 2>/dev/null)" != "$llama_wheels" ]; then
  .venv/bin/python -m pip install --quiet --progress-bar off --force-reinstall --no-deps \
    "$(ls "$llama_wheels"/llama_cpp_python-*.whl | sort -V | tail -1)"
  echo "$llama_wheels" > .venv/.llama-build
fi
.venv/bin/python -m pip install --quiet --progress-bar off --find-links "$llama_wheels" -e ".[dev]"
echo "$want" > "$stamp"
echo "[setup] done"
