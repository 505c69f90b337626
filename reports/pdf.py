"""Compiling a report's .tex into a PDF: latexmk (or pdflatex) with no shell escape, paranoid file
access and a time limit; the log is boiled down to a few error lines.

The compiler runs in a build folder inside the version folder. kpathsea's `openin_any=p` and
`openout_any=p` keep TeX from reading or writing outside it (no `\\input{/etc/passwd}`),
`shell_escape=f` and `-no-shell-escape` keep `\\write18` from running anything, and latexmk
reads no rc file (`-norc`). The PDF replaces nothing until it is complete: it is copied into
place atomically, so a failed compile leaves the previous state as it was.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from societas.runs import atomic_write_bytes

log = logging.getLogger(__name__)

TIMEOUT_S = float(os.environ.get("SOCIETAS_LATEX_TIMEOUT", "90"))
BUILD_DIR = ".build"
_FLAGS = ["-interaction=nonstopmode", "-halt-on-error", "-file-line-error", "-no-shell-escape"]
_SAFE_ENV = {"openin_any": "p", "openout_any": "p", "shell_escape": "f"}
_FILE_LINE_RE = re.compile(r"^[^:\n]*\.tex:(\d+): (.+)$")


@dataclass
class CompileResult:
    ok: bool
    errors: list[str] = field(default_factory=list)
    error_lines: list[int] = field(default_factory=list)
    seconds: float = 0.0


def toolchain() -> str | None:
    """'latexmk' or 'pdflatex' when they can be run here, else None."""
    if not shutil.which("pdflatex"):
        return None
    return "latexmk" if shutil.which("latexmk") else "pdflatex"


def _commands(tool: str, name: str) -> list[list[str]]:
    out = f"-output-directory={BUILD_DIR}"
    if tool == "latexmk":
        return [["latexmk", "-norc", "-pdf", "-quiet", f"-outdir={BUILD_DIR}", *_FLAGS, name]]
    return [["pdflatex", *_FLAGS, out, name]] * 2  # twice: references and figure numbers settle


def _run(cmd: list[str], cwd: Path, deadline: float) -> int:
    """One command in its own process group, killed whole at the deadline.

    Under coreutils `timeout` where there is one: if this process dies first (killed, or the
    machine's OOM killer), nobody would stop a looping TeX run, and `timeout` still does.
    """
    env = {**{k: v for k, v in os.environ.items() if k != "TEXMFOUTPUT"}, **_SAFE_ENV}  # no writable elsewhere
    guard = shutil.which("timeout")
    if guard:
        cmd = [guard, "--kill-after=2", str(math.ceil(max(1.0, deadline - time.monotonic())) + 1), *cmd]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc.returncode


def parse_log(text: str, limit: int = 5) -> tuple[list[str], list[int]]:
    """The first few errors of a TeX log as short lines ('line 12: Undefined control sequence'), and their lines."""
    errors: list[str] = []
    lines: list[int] = []
    log_lines = text.splitlines()
    for i, line in enumerate(log_lines):
        m = _FILE_LINE_RE.match(line)
        if m:
            lines.append(int(m.group(1)))
            errors.append(f"line {m.group(1)}: {m.group(2).strip()}")
        elif line.startswith("!"):  # "! LaTeX Error: ..." and "!pdfTeX error: ..."
            where = next((re.match(r"l\.(\d+)", t) for t in log_lines[i + 1 : i + 12] if re.match(r"l\.\d+", t)), None)
            if where:
                lines.append(int(where.group(1)))
            errors.append((f"line {where.group(1)}: " if where else "") + line.lstrip("! ").strip())
        if len(errors) >= limit:
            break
    if not errors and "Emergency stop" in text:
        errors.append("TeX stopped (emergency stop)")
    return list(dict.fromkeys(errors)), lines


def compile_pdf(tex_path: Path, timeout: float = TIMEOUT_S) -> CompileResult:
    """`<name>.pdf` beside `tex_path`, or the errors; never raises for a TeX failure."""
    tex_path = Path(tex_path)
    tool = toolchain()
    if tool is None:
        return CompileResult(ok=False, errors=["no TeX toolchain (pdflatex) is installed"])
    folder, stem = tex_path.parent, tex_path.stem
    build = folder / BUILD_DIR
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir()
    t0 = time.monotonic()
    deadline = t0 + timeout
    try:
        for cmd in _commands(tool, tex_path.name):
            code = _run(cmd, folder, deadline)
            if code != 0:
                break
    except subprocess.TimeoutExpired:
        code = -1
    seconds = round(time.monotonic() - t0, 2)
    log_file = build / f"{stem}.log"
    log_text = log_file.read_text(encoding="utf-8", errors="replace") if log_file.exists() else ""
    if log_text:
        atomic_write_bytes(folder / f"{stem}.log", log_text.encode())
    built = build / f"{stem}.pdf"
    if code == 0 and built.exists():
        atomic_write_bytes(folder / f"{stem}.pdf", built.read_bytes())
        shutil.rmtree(build, ignore_errors=True)
        log.info("compiled %s in %.2fs with %s", tex_path, seconds, tool)
        return CompileResult(ok=True, seconds=seconds)
    errors, lines = parse_log(log_text)
    if code == -1:
        errors.insert(0, f"LaTeX took longer than {timeout:g} s and was stopped")
    shutil.rmtree(build, ignore_errors=True)
    return CompileResult(ok=False, errors=errors or [f"{tool} failed (exit code {code})"], error_lines=lines,
                         seconds=seconds)
