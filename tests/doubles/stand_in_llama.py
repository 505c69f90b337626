"""A stand-in for `python -m llama_cpp.server --port P`: busy the way llama-cpp-python is.

It generates one request at a time (each takes `STAND_IN_GENERATE_SECONDS`, default 2), and
everything that needs the model, `GET /v1/models` included, waits for the generation in
progress, as llama-cpp-python's server does; routes that need no model (any other GET) answer
at once with 404. Serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "stand-in-llama"


class _Handler(BaseHTTPRequestHandler):
    model_lock = threading.Lock()  # llama-cpp-python's llama_outer_lock/llama_inner_lock
    generate_seconds = 2.0

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return

    def _send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") != "/v1/models":
            self._send_json(404, {"detail": "Not Found"})
            return
        with self.model_lock:
            self._send_json(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "me"}]})

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.model_lock:
            time.sleep(self.generate_seconds)
            self._send_json(200, {
                "id": "chatcmpl-stand-in", "object": "chat.completion", "created": int(time.time()), "model": MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
            })  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args, _unknown = parser.parse_known_args()
    _Handler.generate_seconds = float(os.environ.get("STAND_IN_GENERATE_SECONDS", "2"))
    server = ThreadingHTTPServer((args.host, args.port), _Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever(poll_interval=0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
