"""The `kube-llm` command line (also installed as `kubectl-llm`, so `kubectl llm` works).

Only the subcommands that exist are registered. The sandbox lives in its own package behind an
import wall, so `kube-llm sandbox` hands over to `python -m sandbox` in the same interpreter.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

PROG = "kube-llm"


def _exec_module(module: str, args: Sequence[str]) -> int:
    """Become `python -m MODULE ARGS`, so signals and the exit code pass straight through."""
    argv = [sys.executable, "-m", module, *args]
    sys.stdout.flush()
    sys.stderr.flush()
    # No shell and a fixed interpreter: the arguments are passed as they are, never parsed.
    os.execv(sys.executable, argv)  # noqa: S606
    return 0  # pragma: no cover - execv does not return


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one subparser per existing subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "kube-llm: a scalable LLM chat service for Kubernetes and the cockpit to watch it, "
            "break it and measure it."
        ),
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
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
    parser = build_parser()
    parsed = parser.parse_args(args)
    if parsed.command is None:
        parser.print_help()
        return 0
    parser.error(f"unknown command {parsed.command!r}")  # pragma: no cover - argparse exits
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
