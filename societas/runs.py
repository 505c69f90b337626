"""Run folders: `runs/<YYYYMMDD-HHMMSS>-<slug>/`, validated ids and atomic writes.

Every artifact a stage leaves behind goes through `atomic_write_*` so a crash never
leaves a half-written file where a complete one is expected.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from societas.errors import SocietasError

RUN_ID_RE = re.compile(r"^\d{8}-\d{6}-[a-z0-9][a-z0-9-]{0,59}$")
DEFAULT_RUNS_DIR = Path(os.environ.get("SOCIETAS_RUNS_DIR", "runs"))
TOPIC_FILE = "topic.txt"  # a research run's whole topic, for `--topic-file` in its reproduce line
# Folders a run must never be written into (as root, `--out /etc` once did): the root and the
# operating system's own trees. /tmp, /var/tmp, /home, /root, /srv, /opt and /mnt stay usable.
SYSTEM_DIRS = tuple(Path(p) for p in ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/run",
                                      "/sbin", "/sys", "/usr", "/var/lib", "/var/log", "/var/cache", "/var/spool"))


def slugify(text: str, max_len: int = 40) -> str:
    """A filesystem-safe, ASCII slug; never empty."""
    norm = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", norm.lower()).strip("-")
    slug = slug[:max_len].rstrip("-")
    return slug or "run"


def new_run_id(label: str, now: datetime | None = None) -> str:
    now = now or datetime.now()
    return f"{now:%Y%m%d-%H%M%S}-{slugify(label)}"


def validate_run_id(run_id: str) -> str:
    """Reject anything that is not a plain run id (no separators, no `..`)."""
    if not RUN_ID_RE.match(run_id):
        raise SocietasError(
            f"invalid run id {run_id!r}",
            hint="a run id looks like 20261121-230000-my-topic; list runs with `societas runs`",
        )
    return run_id


def is_system_path(path: Path) -> bool:
    """Whether `path` (resolved) is the root or inside a system folder."""
    resolved = Path(path).expanduser().resolve()
    return resolved == Path(resolved.anchor) or any(resolved.is_relative_to(d) for d in SYSTEM_DIRS)


def read_manifest_file(path: Path) -> dict[str, Any]:
    """A manifest.json as a dict; a corrupt one is a user error naming the file (never a traceback)."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SocietasError(f"{path} is corrupt ({exc})",
                            hint="restore it from a backup, or start a new run in another folder") from None
    if not isinstance(manifest, dict):
        raise SocietasError(f"{path} is corrupt (not a JSON object)",
                            hint="restore it from a backup, or start a new run in another folder")
    return manifest


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@dataclass(frozen=True)
class RunFolder:
    """One run's folder; knows where each artifact lives (DESIGN.md §7)."""

    path: Path

    @property
    def id(self) -> str:
        """The folder's name, what a user types (`societas resume <id>`); not the run's identity."""
        return self.path.name

    @property
    def run_id(self) -> str:
        """The run's identity, stored in its manifest when the run began: a moved or copied folder
        keeps it, so it keys the checkpoints (the LangGraph thread), not the folder's name."""
        return str(self.read_manifest().get("run_id") or self.id)

    @classmethod
    def create(cls, label: str, root: Path | None = None, run_id: str | None = None) -> "RunFolder":
        root = Path(root or DEFAULT_RUNS_DIR)
        run_id = validate_run_id(run_id) if run_id else new_run_id(label)
        path = root / run_id
        suffix = 1
        while path.exists():  # two runs in the same second: keep both
            suffix += 1
            path = root / f"{run_id}-{suffix}"
        try:
            (path / "data").mkdir(parents=True)
        except PermissionError as exc:
            raise SocietasError(
                f"cannot create the run folder {path}: permission denied",
                hint="choose a writable folder with --out",
            ) from exc
        except OSError as exc:
            raise SocietasError(
                f"cannot create the run folder {path}: {exc.strerror}",
                hint="choose a writable folder with --out",
            ) from exc
        return cls(path)

    @classmethod
    def claim(cls, out: Path | str) -> "RunFolder":
        """The folder `--out` names, for a new run: new or empty, and not a system folder; nothing
        is written before both hold, so a user's files are never overwritten."""
        path = Path(out).expanduser()
        where = "choose a new or empty folder of your own with --out"
        if is_system_path(path):
            raise SocietasError(f"refusing to write a run into the system folder {path.resolve()}", hint=where)
        if path.exists() and not path.is_dir():
            raise SocietasError(f"--out {path} is a file, not a folder", hint=where)
        try:
            occupied = path.is_dir() and any(path.iterdir())
            if occupied:
                raise SocietasError(f"--out {path} is not empty", hint=where)
            (path / "data").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SocietasError(f"cannot create the run folder {path}: {exc.strerror or exc}", hint=where) from None
        return cls(path)

    @classmethod
    def open(cls, run: str | Path, root: Path | None = None) -> "RunFolder":
        """Open an existing run by id or by path."""
        candidate = Path(run)
        if candidate.is_dir() and (candidate / "manifest.json").exists():
            return cls(candidate)
        if os.sep in str(run) or str(run).startswith("."):  # a path, not an id
            raise SocietasError(f"no run folder at {run}" if not candidate.is_dir() else f"{run} holds no run "
                                "(no manifest.json)", hint="give a run folder's path, or a run id from `societas runs`")
        validate_run_id(candidate.name if candidate.is_dir() else str(run))
        path = Path(root or DEFAULT_RUNS_DIR) / str(run)
        if not path.is_dir():
            raise SocietasError(f"no run {run!r} under {path.parent}", hint="list runs with `societas runs`")
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {}
        return read_manifest_file(self.manifest_path)

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        """Merge fields into manifest.json (atomically); returns the new manifest."""
        manifest = self.read_manifest()
        manifest.update(fields)
        manifest.setdefault("run_id", self.id)
        manifest["updated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        atomic_write_json(self.manifest_path, manifest)
        return manifest


def base_manifest(command: list[str], config: dict[str, Any]) -> dict[str, Any]:
    """What every run records about how it was made."""
    import platform

    from societas import __version__

    versions = {"societas": __version__, "python": platform.python_version()}
    for mod in ("numpy", "pandas", "ray", "langgraph", "openai", "llama_cpp"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - an optional module missing is not an error here
            continue
    return {
        "command": command,
        "config": config,
        "versions": versions,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
