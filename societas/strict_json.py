"""JSON that every parser accepts: NaN and infinity become null.

Python's `json` writes `NaN` and `Infinity` by default, which is not JSON; `jq`, JavaScript and
most strict parsers reject the whole document. Command output (`--json`) goes through `dumps`.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_none(obj: Any) -> Any:
    """`obj` with every non-finite float (at any depth) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def dumps(obj: Any, **kw: Any) -> str:
    """`json.dumps` that never writes NaN or Infinity (objects it cannot encode become strings)."""
    return json.dumps(finite_or_none(obj), allow_nan=False, default=str, **kw)
