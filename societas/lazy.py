"""A package facade that imports on first use: `from pkg import Name` loads only Name's module.

The facades of `llms` and `simulator` name their public API in one dict; this keeps, say, the
server watchdog (`python -m llms.watchdog`) from paying for the openai SDK, and `import
simulator.spec` from paying for Ray and pandas.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports `exports[name]` on first use and keeps the value."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
