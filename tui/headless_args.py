"""The headless commands' flags (`load`, `scenario`, `report`), kept apart from their code so
`kube-llm --help` imports nothing heavy."""

from __future__ import annotations

import argparse
from pathlib import Path

Subparsers = argparse._SubParsersAction  # the type argparse gives `add_subparsers()`


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    """The flags shared with kubectl, plus `--backend-url`: every command that reaches a cluster."""
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)",
    )
    parser.add_argument("--context", default=None, help="kubeconfig context to use")
    parser.add_argument(
        "-n",
        "--namespace",
        default=None,
        help="namespace (default: the context's namespace, else kube-llm)",
    )
    parser.add_argument(
        "--backend-url",
        default=None,
        help="send chats here (a NodePort, Ingress or port-forward) instead of "
        "through the API server's service proxy; better for heavy load",
    )


def add_target_flags(parser: argparse.ArgumentParser) -> None:
    """The cluster flags and the report folder, shared by `load` and `scenario run`."""
    add_cluster_flags(parser)
    parser.add_argument(
        "--deployment",
        default="llm-backend",
        help="the Deployment (and HPA and Service) (default: %(default)s)",
    )
    parser.add_argument(
        "--max-tokens", type=int, default=64, help="max_tokens of each chat (default: %(default)s)"
    )
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=Path("reports"),
        help="where the report folder goes (default: %(default)s)",
    )
    parser.add_argument("--no-report", action="store_true", help="write no report folder")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON on stdout instead of the table (no progress line)",
    )


def add_load_parser(commands: Subparsers[argparse.ArgumentParser]) -> None:
    """`kube-llm load` and its flags."""
    load = commands.add_parser(
        "load",
        help="send load headless (the cockpit's load engine), print the table, write the report",
        description="Simulated users chat with the Service, as the cockpit's `l` and `L` keys "
        "do: a burst (USERS x CHATS_PER_USER), sustained users for --duration seconds, or "
        "--rate new chats a second for --duration seconds. A progress line shows on a "
        "terminal; at the end a table, and a report folder (Markdown, JSON, chart).",
    )
    add_target_flags(load)
    load.add_argument(
        "-u",
        "--users",
        type=int,
        default=10,
        help="simulated users at once (default: %(default)s, as in the poster)",
    )
    load.add_argument(
        "-c",
        "--chats-per-user",
        type=int,
        default=3,
        help="chats each user sends in a burst (default: %(default)s)",
    )
    load.add_argument(
        "-d",
        "--duration",
        type=float,
        default=None,
        help="seconds of sustained load (users chat back to back) instead of a burst",
    )
    load.add_argument(
        "--rate",
        type=float,
        default=None,
        help="new chats a second for --duration seconds (open loop), at most --users open at once",
    )
    load.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stream each reply (SSE) and time its first token and the gaps between tokens "
        "(the default); --no-stream asks for whole replies (`stream: false`): end to end and "
        "output tokens (from the backend's usage) only, TTFT shows as n/a",
    )
    load.add_argument(
        "--prompts",
        type=Path,
        default=None,
        help="prompt set: a file with one prompt a line (default: built in)",
    )


def add_scenario_parser(commands: Subparsers[argparse.ArgumentParser]) -> None:
    """`kube-llm scenario run FILE` and its flags."""
    scenario = commands.add_parser(
        "scenario",
        help="run a chaos scenario file: timed steps and expectations that pass or fail",
        description="Run a scenario (scenarios/*.yaml): load, pod kills, rollout restarts, "
        "scaling and waits, then its expectations. Exit 0 when all hold, 1 otherwise.",
    )
    actions = scenario.add_subparsers(dest="scenario_command", metavar="ACTION", required=True)
    run = actions.add_parser(
        "run",
        help="run a scenario file",
        description="Run FILE's steps on the cluster, check its expectations (a line each: "
        "held or not, and by how much), print them and write the report folder. A scenario "
        "that restarts or scales the Deployment needs a context allowed to patch it: the "
        "cockpit's Role is not.",
    )
    run.add_argument("file", type=Path, metavar="FILE", help="the scenario (YAML)")
    run.add_argument(
        "--dry-run", action="store_true", help="check the file and print the plan; touch nothing"
    )
    add_target_flags(run)


def add_report_parser(commands: Subparsers[argparse.ArgumentParser]) -> None:
    """`kube-llm report FILE.json`."""
    report = commands.add_parser(
        "report",
        help="write a report folder again from a report's JSON (every figure recomputed)",
        description="Read a report.json (from `load`, `scenario run` or a previous `report`), "
        "recompute every figure from its samples and write a new report folder.",
    )
    report.add_argument("json_file", type=Path, metavar="FILE.json")
    report.add_argument(
        "--report-dir",
        type=Path,
        default=Path("reports"),
        help="where the report folder goes (default: %(default)s)",
    )


def add_headless_parsers(commands: Subparsers[argparse.ArgumentParser]) -> None:
    """Add `load`, `scenario` and `report`."""
    add_load_parser(commands)
    add_scenario_parser(commands)
    add_report_parser(commands)
