"""The `kube-llm` command line (also installed as `kubectl-llm`, so `kubectl llm` works).

`kube-llm` alone opens the cockpit (`tui`, the default command); `kube-llm demo` starts the
sandbox as a child process and opens the cockpit on it; `kube-llm sandbox` hands over to
`python -m sandbox` in the same interpreter (the sandbox lives behind an import wall).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tui.headless_args import add_cluster_flags

PROG = "kube-llm"
COMMANDS = ("tui", "demo", "sandbox", "load", "scenario", "report")
DEMO_CONTEXT = "kube-llm-sandbox-cockpit"
"""The demo's cockpit acts as the cockpit's ServiceAccount: exactly the Role in the manifests."""


def _exec_module(module: str, args: Sequence[str]) -> int:
    """Become `python -m MODULE ARGS`, so signals and the exit code pass straight through."""
    argv = [sys.executable, "-m", module, *args]
    sys.stdout.flush()
    sys.stderr.flush()
    # No shell and a fixed interpreter: the arguments are passed as they are, never parsed.
    os.execv(sys.executable, argv)  # noqa: S606
    return 0  # pragma: no cover - execv does not return


def _cockpit_flags(parser: argparse.ArgumentParser, *, cluster: bool) -> None:
    """The flags the cockpit shares with kubectl, plus its own."""
    if cluster:
        add_cluster_flags(parser)
    parser.add_argument(
        "--read-only",
        action="store_true",
        help="watch only: no key kills pods or sends load",
    )
    parser.add_argument(
        "--deployment",
        default="llm-backend",
        help="the Deployment (and HPA and Service) to watch (default: %(default)s)",
    )
    parser.add_argument(
        "--burst-users", type=int, default=10, help="users in a load burst (default: 10)"
    )
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=Path("reports"),
        help="where `r` writes reports (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "kube-llm: a scalable LLM chat service for Kubernetes and the cockpit to watch it, "
            "break it and measure it. Without a command, opens the cockpit (`tui`)."
        ),
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    tui = commands.add_parser(
        "tui",
        help="the cockpit: live pods, HPA and latency next to a chat pane (the default)",
        description="Open the cockpit on the cluster of a kubeconfig context.",
    )
    _cockpit_flags(tui, cluster=True)
    demo = commands.add_parser(
        "demo",
        help="start the local sandbox and open the cockpit on it (what `make demo` runs)",
        description="Start the sandbox as a child process (its output in STATE_DIR), open the "
        "cockpit on it, and stop the sandbox when the cockpit quits.",
    )
    _cockpit_flags(demo, cluster=False)
    demo.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".sandbox"),
        help="the sandbox's state folder (default: %(default)s)",
    )
    demo.add_argument(
        "--sandbox-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG to the sandbox (repeat; e.g. --sandbox-arg=--hpa-sync-seconds=5)",
    )
    # The headless commands' parsers live beside their code (no Textual there).
    from tui.headless_args import add_headless_parsers

    add_headless_parsers(commands)
    commands.add_parser(
        "sandbox",
        help="run the local sandbox cluster (a test bench, not a production orchestrator)",
        description="Run the local sandbox; every argument after `sandbox` goes to it "
        "(see `kube-llm sandbox --help`).",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kube-llm` and `kubectl-llm` console scripts."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "sandbox":
        return _exec_module("sandbox", args[1:])
    # No command, or only flags: the cockpit (`tui`) is the default command.
    if not args or (args[0].startswith("-") and args[0] not in {"-h", "--help"}):
        args = ["tui", *args]
    parser = build_parser()
    parsed = parser.parse_args(args)
    if parsed.command in {"load", "scenario", "report"}:
        from tui.commands import run_headless

        return run_headless(parsed)
    # Textual and the cockpit's services load only when the cockpit runs: --help stays quick.
    from tui.run import run_demo, run_tui

    if parsed.command == "demo":
        return run_demo(parsed)
    return run_tui(parsed)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
