"""Is a server there, and does it answer at all? A probe that never queues behind generation.

llama-cpp-python's server serialises everything that touches the model, `GET /v1/models`
included, so while it generates that route is silent for seconds. Any HTTP answer on a route
that needs no model (`GET /health`: vLLM's health check, a quick 404 from llama-cpp-python and
most others) proves the server's HTTP loop is alive; a server that accepts the connection and
sends nothing within the first-byte timeout is hung.
"""

from __future__ import annotations

import os
from enum import Enum
from urllib.parse import urlsplit, urlunsplit

import httpx

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_FIRST_BYTE_TIMEOUT = 10.0


class Probe(str, Enum):
    ANSWERS = "answers"  # any HTTP status came back
    REFUSED = "refused"  # nothing listens (or the host is unreachable)
    SILENT = "silent"  # the connection was accepted but no byte came back in time


def connect_timeout() -> float:
    """`SOCIETAS_LLM_CONNECT_TIMEOUT` (seconds to open a connection), default 5."""
    return float(os.environ.get("SOCIETAS_LLM_CONNECT_TIMEOUT") or DEFAULT_CONNECT_TIMEOUT)


def first_byte_timeout() -> float:
    """`SOCIETAS_LLM_FIRST_BYTE_TIMEOUT` (seconds for a server to answer the probe), default 10."""
    return float(os.environ.get("SOCIETAS_LLM_FIRST_BYTE_TIMEOUT") or DEFAULT_FIRST_BYTE_TIMEOUT)


def health_url(base_url: str) -> str:
    """`http://host:8000/v1` -> `http://host:8000/health`."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, "/health", "", ""))


def probe(base_url: str, *, first_byte: float | None = None) -> Probe:
    """GET the server's `/health` once, with the connect and first-byte timeouts."""
    timeout = httpx.Timeout(first_byte_timeout() if first_byte is None else first_byte, connect=connect_timeout())
    try:
        httpx.get(health_url(base_url), timeout=timeout)
    except (httpx.ConnectError, httpx.ConnectTimeout):
        return Probe.REFUSED
    except httpx.HTTPError:  # a read timeout, or the connection dropped without an answer
        return Probe.SILENT
    return Probe.ANSWERS
