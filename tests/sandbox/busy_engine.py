"""A test engine that is always busy: it answers `GET /v1/models` only after burning CPU.

As llama-cpp-python's server does while it generates, a listing waits behind work. The
sandbox's engine liveness stand-in must count this engine alive (it uses CPU) though every
probe times out. `python -m tests.sandbox.busy_engine --port N --model M [--burn-seconds S]`.
"""

from __future__ import annotations

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


def burn(seconds: float) -> None:
    """Keep one core busy for `seconds`."""
    deadline = time.process_time() + seconds
    while time.process_time() < deadline:
        pass


def main() -> None:
    """Serve until killed (one request at a time, as a busy single-slot engine)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="tinyllama")
    parser.add_argument("--burn-seconds", type=float, default=3.0)
    args = parser.parse_args()
    body = json.dumps({"object": "list", "data": [{"id": args.model, "object": "model"}]})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            burn(args.burn_seconds)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: object) -> None:
            return

    HTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
