"""The scenario library: the validated specs shipped in `simulator/library/*.yaml`."""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path

from simulator.errors import SpecError
from simulator.spec import ScenarioSpec, load_spec

LIBRARY_DIR = Path(__file__).with_name("library")


def library_paths() -> dict[str, Path]:
    return {p.stem: p for p in sorted(LIBRARY_DIR.glob("*.yaml"))}


@lru_cache(maxsize=None)
def _load(path: Path, mtime: float) -> ScenarioSpec:
    return load_spec(path)


def load_scenario(name: str) -> ScenarioSpec:
    """A library scenario by name; unknown names get the closest matches as the hint."""
    paths = library_paths()
    if name not in paths:
        close = difflib.get_close_matches(name, list(paths), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see `societas scenarios list`"
        raise SpecError(f"no library scenario named {name!r}", hint=hint)
    path = paths[name]
    return _load(path, path.stat().st_mtime)


def all_scenarios() -> list[ScenarioSpec]:
    return [load_scenario(n) for n in library_paths()]
