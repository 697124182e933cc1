"""A test engine that is always busy: it answers `GET /v1/models` only between generations.

As llama-cpp-python's server does while it generates, a listing waits behind generations (here
always a whole one, so every probe with a timeout under `--burn-seconds` times out); the server
still accepts every connection (uvicorn's backlog), and a listing its client gave up on costs
nothing more. The sandbox's engine liveness stand-in must count this
engine alive (it uses CPU) though every probe times out.
`python -m tests.sandbox.busy_engine --port N --model M [--burn-seconds S]`.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Generations:
    """Back-to-back generations of `seconds` of CPU each, on their own thread."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.count = 0
        self.ended = threading.Condition()

    def run(self) -> None:
        """Generate forever, telling waiters each time one generation ends."""
        while True:
            deadline = time.process_time() + self.seconds
            while time.process_time() < deadline:
                pass
            with self.ended:
                self.count += 1
                self.ended.notify_all()

    def wait_for_a_gap(self) -> None:
        """Block until the generation under way and one whole generation after it end."""
        with self.ended:
            started = self.count
            self.ended.wait_for(lambda: self.count >= started + 2)


def main() -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="tinyllama")
    parser.add_argument("--burn-seconds", type=float, default=3.0)
    args = parser.parse_args()
    body = json.dumps({"object": "list", "data": [{"id": args.model, "object": "model"}]})
    generations = Generations(args.burn_seconds)
    threading.Thread(target=generations.run, daemon=True).start()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            generations.wait_for_a_gap()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: object) -> None:
            return

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 2048  # uvicorn's default backlog

    Server(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
