"""A scripted OpenAI-compatible HTTP server: a test double for every LLM backend.

It answers `GET /v1/models` and `POST /v1/chat/completions` from a script of steps, one
step per chat request, then repeats `default`. Steps can inject the faults a real server
shows: HTTP 5xx, 429 with Retry-After, a hang past the client's timeout, a malformed body,
a dropped connection, or content that is not valid for the schema. It records every request
body (and the `response_format` it carried) and the most requests it had in flight at once.

Stdlib only, so a stand-in executable can run it in a child process.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Step:
    """One scripted answer to a chat request."""

    kind: str  # reply | http_error | rate_limited | hang | malformed | drop
    content: str | None = None
    status: int = 200
    retry_after: float | None = None
    delay: float = 0.0
    finish_reason: str = "stop"
    completion_tokens: int = 5


def reply(content: str, *, finish_reason: str = "stop", delay: float = 0.0, completion_tokens: int = 5) -> Step:
    return Step("reply", content=content, finish_reason=finish_reason, delay=delay, completion_tokens=completion_tokens)


def json_reply(obj: Any, **kw: Any) -> Step:
    return reply(json.dumps(obj), **kw)


def http_error(status: int = 500) -> Step:
    return Step("http_error", status=status)


def rate_limited(retry_after: float = 0.1) -> Step:
    return Step("rate_limited", status=429, retry_after=retry_after)


def hang(seconds: float = 5.0) -> Step:
    return Step("hang", delay=seconds)


def malformed_body() -> Step:
    return Step("malformed")


def drop_connection() -> Step:
    return Step("drop")


class ScriptedOpenAIServer:
    """`with ScriptedOpenAIServer([http_error(500), reply("hi")]) as server: ... server.url`."""

    def __init__(
        self,
        script: Iterable[Step] = (),
        *,
        default: Step | None = None,
        model: str = "scripted-model",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.model = model
        self.default = default or reply("ok")
        self._script: deque[Step] = deque(script)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.requests: list[dict[str, Any]] = []  # chat request bodies, in arrival order
        self.model_requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._httpd = _Server((host, port), _Handler)
        self._httpd.scripted = self
        self._thread: threading.Thread | None = None

    # -- control --------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    @property
    def response_formats(self) -> list[Any]:
        with self._lock:
            return [body.get("response_format") for body in self.requests]

    def push(self, *steps: Step) -> None:
        with self._lock:
            self._script.extend(steps)

    def start(self) -> "ScriptedOpenAIServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def serve_forever(self) -> None:
        """Serve in this thread (the stand-in executables use this)."""
        self._httpd.serve_forever(poll_interval=0.1)

    def __enter__(self) -> "ScriptedOpenAIServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- used by the handler ------------------------------------------------------------

    def _next_step(self, body: dict[str, Any]) -> Step:
        with self._lock:
            self.requests.append(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self._script.popleft() if self._script else self.default

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _completion(self, step: Step) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": step.content},
                    "finish_reason": step.finish_reason,
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": step.completion_tokens, "total_tokens": 10 + step.completion_tokens},
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    scripted: ScriptedOpenAIServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        return

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(obj).encode(), headers)

    def _send_raw(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        scripted = self.server.scripted
        if self.path.rstrip("/") == "/v1/models":
            with scripted._lock:
                scripted.model_requests += 1
            self._send_json(200, {"object": "list", "data": [{"id": scripted.model, "object": "model", "created": 0, "owned_by": "test"}]})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802
        scripted = self.server.scripted
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})
            return
        step = scripted._next_step(json.loads(raw or b"{}"))
        try:
            self._answer(scripted, step)
        finally:
            scripted._done()

    def _answer(self, scripted: ScriptedOpenAIServer, step: Step) -> None:
        if step.kind == "hang":
            scripted._stopping.wait(step.delay)
            return  # close without answering: the client has long given up
        if step.delay:
            scripted._stopping.wait(step.delay)
        if step.kind == "reply":
            self._send_json(200, scripted._completion(step))
        elif step.kind == "http_error":
            self._send_json(step.status, {"error": {"message": f"scripted HTTP {step.status}", "type": "server_error"}})
        elif step.kind == "rate_limited":
            headers = {"Retry-After": f"{step.retry_after:g}"} if step.retry_after is not None else {}
            self._send_json(429, {"error": {"message": "scripted rate limit", "type": "rate_limit"}}, headers)
        elif step.kind == "malformed":
            self._send_raw(200, b'{"id": "chatcmpl-broken", "choices": [')
        elif step.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            raise ValueError(f"unknown step kind {step.kind!r}")
