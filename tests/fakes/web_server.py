"""`kube-llm web`'s server (tui.web.server.CockpitServer) around a stand-in app, as a process.

python -m tests.fakes.web_server --app deaf|calm --port N [--max-sessions N]
    [--heartbeat S] [--grace S]
"""

from __future__ import annotations

import argparse
import sys

from tui.web.server import CockpitServer


def main() -> None:
    """Serve the stand-in app until SIGTERM."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--app", choices=["calm", "deaf"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-sessions", type=int, default=8)
    parser.add_argument("--heartbeat", type=float, default=15.0)
    parser.add_argument("--grace", type=float, default=1.0)
    args = parser.parse_args()
    argv = [sys.executable, "-m", "tests.fakes.web_apps", args.app]
    CockpitServer(
        argv,
        port=args.port,
        mode="read-only",
        max_sessions=args.max_sessions,
        grace_seconds=args.grace,
        heartbeat_seconds=args.heartbeat,
    ).serve()
    print("server stopped", flush=True)


if __name__ == "__main__":
    main()
