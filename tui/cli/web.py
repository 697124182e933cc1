"""`kube-llm web`: the cockpit as a web page (textual-serve), one cockpit process per browser."""

from __future__ import annotations

import argparse
import sys

from tui.core.settings import CockpitSettings

__all__ = ["add_web_flags", "cockpit_argv", "run_web"]

READ_ONLY_MODE = "read-only: no kill, no load keys"
CHAOS_MODE = "chaos and load keys ON"


def add_web_flags(parser: argparse.ArgumentParser) -> None:
    """`web`'s own flags, after the cockpit's."""
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s; anything wider is said at start)",
    )
    parser.add_argument(
        "--port", type=int, default=8080, help="port to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--allow-chaos",
        action="store_true",
        help="let the page's users kill pods and send load (off: the web cockpit is read-only; "
        "chats are allowed either way)",
    )
    parser.add_argument(
        "--max-sessions",
        type=int,
        default=8,
        help="browser sessions at once, each a cockpit process (default: %(default)s); past "
        "it the page says so",
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="ping each browser this often; one that does not answer within half as long has "
        "its cockpit stopped (default: %(default)s)",
    )


def cockpit_argv(settings: CockpitSettings) -> list[str]:
    """The command each browser session runs: this interpreter's `kube-llm tui`, same flags."""
    argv = [sys.executable, "-m", "tui", "tui"]
    if settings.kubeconfig is not None:
        argv += ["--kubeconfig", str(settings.kubeconfig)]
    if settings.context is not None:
        argv += ["--context", settings.context]
    if settings.namespace is not None:
        argv += ["--namespace", settings.namespace]
    if settings.backend_url is not None:
        argv += ["--backend-url", settings.backend_url]
    argv += ["--deployment", settings.deployment, "--burst-users", str(settings.burst_users)]
    argv += ["--report-dir", str(settings.report_dir)]
    if settings.read_only:
        argv.append("--read-only")
    return argv


def _check(parsed: argparse.Namespace) -> str | None:
    if not 0 <= parsed.port <= 65535:
        return f"--port {parsed.port}: a port is 0-65535"
    if parsed.max_sessions < 1:
        return "--max-sessions must be at least 1"
    if parsed.heartbeat <= 0:
        return "--heartbeat must be more than 0 seconds"
    return None


def run_web(parsed: argparse.Namespace, settings: CockpitSettings) -> int:
    """Serve the cockpit until Ctrl+C or SIGTERM; every session's process is reaped."""
    problem = _check(parsed)
    if problem is not None:
        print(f"kube-llm web: {problem}", file=sys.stderr)
        return 2
    # textual-serve and aiohttp load only for this command.
    from tui.web.server import CockpitServer, is_loopback

    mode = READ_ONLY_MODE if settings.read_only else CHAOS_MODE
    if not is_loopback(parsed.host):
        print(
            f"kube-llm web: WARNING: listening on {parsed.host}, beyond this machine: anyone "
            f"who reaches port {parsed.port} gets a cockpit ({mode}) with this command's "
            "cluster credentials",
            file=sys.stderr,
            flush=True,
        )
    server = CockpitServer(
        cockpit_argv(settings),
        host=parsed.host,
        port=parsed.port,
        mode=mode,
        max_sessions=parsed.max_sessions,
        heartbeat_seconds=parsed.heartbeat,
    )
    try:
        server.serve()
    except OSError as error:
        print(
            f"kube-llm web: cannot listen on {parsed.host}:{parsed.port}: {error}", file=sys.stderr
        )
        return 1
    print("kube-llm web: stopped; every session's cockpit has ended.", flush=True)
    return 0
