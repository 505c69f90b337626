"""The response cache: `<run>/llm_cache.sqlite`, so reruns and regeneration are cheap and exact.

The key is a sha256 over everything that determines an answer (model, messages, schema,
sampling parameters, seed). Only validated answers are stored, so a hit is always usable.
SQLite in WAL mode with one connection per thread is safe across threads and processes
(Ray workers of one run share the file).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from llms.errors import ConfigError

log = logging.getLogger(__name__)

CACHE_FILE = "llm_cache.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


def cache_key(model: str, messages: list[dict[str, Any]], schema: dict[str, Any] | None, params: dict[str, Any]) -> str:
    """sha256 of a canonical JSON of the request; `params` holds sampling settings and seed."""
    payload = {"model": model, "messages": messages, "schema": schema, "params": params}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


_SETUP_ATTEMPTS = 20  # about 10 s of waiting in all


class ResponseCache:
    """A key → validated response text store in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._connect()  # fail now, with a clear message, rather than on the first hit

    @classmethod
    def in_run(cls, run_folder: str | Path) -> "ResponseCache":
        return cls(Path(run_folder) / CACHE_FILE)

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            for attempt in range(_SETUP_ATTEMPTS):
                # Switching a new file to WAL takes an exclusive lock, and SQLite may answer "locked"
                # at once instead of waiting: several Ray tasks opening one run's cache together hit it.
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                    conn.execute(_SCHEMA)
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc) or attempt == _SETUP_ATTEMPTS - 1:
                        raise
                    time.sleep(0.05 * (attempt + 1))
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(
                f"cannot write the LLM cache {self.path}: {exc}",
                hint="make the run folder writable, or choose another with --out",
            ) from exc
        self._local.conn = conn
        return conn

    def get(self, key: str) -> str | None:
        row = self._connect().execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, model: str, response: str) -> None:
        self._connect().execute(
            "INSERT OR REPLACE INTO responses (key, model, response, created_at) VALUES (?, ?, ?, ?)",
            (key, model, response, time.time()),
        )

    def __len__(self) -> int:
        return int(self._connect().execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        """Close this thread's connection (other threads' close when they exit)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
