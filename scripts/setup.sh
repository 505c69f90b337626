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
.venv/bin/python -m pip install --quiet --progress-bar off -e ".[dev]"
echo "$want" > "$stamp"
echo "[setup] done"
