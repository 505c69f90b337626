"""A stand-in for the `vllm` executable: `stand_in_vllm.py serve MODEL --host H --port P`.

Serves the scripted OpenAI server on the given port until SIGTERM, so the `vllm:MODEL`
lifecycle (start, readiness, reuse, stop) is tested without a GPU. `STAND_IN_STARTUP_DELAY`
(seconds) delays listening, like a model load; `STAND_IN_REPLY` sets the content it answers.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scripted_openai_server import ScriptedOpenAIServer, reply  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("verb", choices=["serve"])
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args, _unknown = parser.parse_known_args()
    time.sleep(float(os.environ.get("STAND_IN_STARTUP_DELAY", "0")))
    server = ScriptedOpenAIServer(
        default=reply(os.environ.get("STAND_IN_REPLY", '{"action": "stay", "reason": "stand-in"}')),
        model=args.model,
        host=args.host,
        port=args.port,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
