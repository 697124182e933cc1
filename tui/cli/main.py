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

from kube_llm_data import version
from tui.cli.package import (
    SANDBOX_AUTOSCALERS,
    Subparsers,
    add_completion_parser,
    add_manifests_parser,
    add_output_flags,
    add_scenario_list_parser,
    complete,
    complete_scenario,
    resolve_scenario,
)
from tui.cli.web import add_web_flags, run_web
from tui.core.hpa_timing import KUBERNETES_SYNC_SECONDS, MINIKUBE_METRICS_RESOLUTION_SECONDS
from tui.core.settings import CockpitSettings

PROG = "kube-llm"
SANDBOX_PROFILES = ("demo", "minikube")
"""`kube-llm demo --profile` (the sandbox's `--profile`, `python -m sandbox --help`)."""


def _exec_module(module: str, args: Sequence[str]) -> int:
    """Become `python -m MODULE ARGS`, so signals and the exit code pass straight through."""
    argv = [sys.executable, "-m", module, *args]
    sys.stdout.flush()
    sys.stderr.flush()
    # No shell and a fixed interpreter: the arguments are passed as they are, never parsed.
    os.execv(sys.executable, argv)  # noqa: S606
    return 0  # pragma: no cover - execv does not return


def add_deployment_flag(parser: argparse.ArgumentParser) -> None:
    """`--deployment`: the Deployment, HPA and Service of the chat service."""
    parser.add_argument(
        "--deployment",
        default="llm-backend",
        help="the Deployment (and HPA and Service) (default: %(default)s)",
    )


def add_report_dir_flag(parser: argparse.ArgumentParser) -> None:
    """`--report-dir`: where report folders go (the cockpit's `r` key, `load`, `scenario run`,
    `report`)."""
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=Path("reports"),
        help="where report folders go (default: %(default)s)",
    )


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


def add_sandbox_arg_flag(parser: argparse.ArgumentParser, which: str, example: str) -> None:
    """`--sandbox-arg ARG` (repeatable): an argument for the sandbox(es) a command starts."""
    parser.add_argument(
        "--sandbox-arg",
        action="append",
        default=[],
        metavar="ARG",
        help=f"pass ARG to {which} (repeat; e.g. --sandbox-arg={example})",
    )


def add_target_flags(parser: argparse.ArgumentParser) -> None:
    """The cluster flags and the report folder, shared by `load` and `scenario run`."""
    add_cluster_flags(parser)
    add_deployment_flag(parser)
    parser.add_argument(
        "--max-tokens", type=int, default=64, help="max_tokens of each chat (default: %(default)s)"
    )
    add_report_dir_flag(parser)
    parser.add_argument("--no-report", action="store_true", help="write no report folder")
    add_output_flags(parser)


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


def add_timing_flags(parser: argparse.ArgumentParser) -> None:
    """`--hpa-sync-seconds` and `--metrics-resolution-seconds`: what `within: auto` assumes
    where the cluster cannot tell."""
    parser.add_argument(
        "--hpa-sync-seconds",
        type=_positive,
        default=None,
        help="the cluster's HPA sync period, which no API tells (default: Kubernetes' "
        f"{KUBERNETES_SYNC_SECONDS:g}; the demo's sandbox runs 5, so 15 only widens its bounds)",
    )
    parser.add_argument(
        "--metrics-resolution-seconds",
        type=_positive,
        default=None,
        help="metrics-server's --metric-resolution (default: read from the pods' metrics.k8s.io "
        f"windows, else {MINIKUBE_METRICS_RESOLUTION_SECONDS:g}, Minikube's addon)",
    )


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"expected 0 < seconds <= 3600, got {text}")
    return value


def add_scenario_parser(commands: Subparsers[argparse.ArgumentParser]) -> None:
    """`kube-llm scenario run NAME|FILE...`, `compare`, `list`, and their flags."""
    scenario = commands.add_parser(
        "scenario",
        help="run a chaos scenario file: timed steps and expectations that pass or fail",
        description="Run a scenario (one kube-llm ships, by name, or a YAML file): load, pod "
        "kills, rollout restarts, scaling and waits, then its expectations. Exit 0 when all "
        "hold, 1 otherwise.",
    )
    actions = scenario.add_subparsers(dest="scenario_command", metavar="ACTION", required=True)
    add_scenario_list_parser(actions)
    run = actions.add_parser(
        "run",
        help="run a scenario: a shipped one by name (`scenario list`) or a file",
        description="Run the scenario's steps on the cluster, check its expectations (a line each: "
        "held or not, and by how much), print them and write the report folder. A scenario "
        "that restarts or scales the Deployment needs a context allowed to patch it: the "
        "cockpit's Role is not.",
    )
    files = run.add_argument(
        "files",
        nargs="+",
        metavar="NAME|FILE",
        help="a scenario kube-llm ships (`kube-llm scenario list`: poster, ...) or a YAML file; "
        "several run in order, with one summary at the end (with -o json: one JSON object a line)",
    )
    files.completer = complete_scenario  # type: ignore[attr-defined]  # argcomplete reads it
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="check the files and print the plan, with the bounds `within: auto` takes from the "
        "live HPA (or what it assumes without one); touch nothing",
    )
    add_target_flags(run)
    compare = actions.add_parser(
        "compare",
        help="run a scenario once per autoscaler, each on a fresh sandbox, one report",
        description="Run FILE once with each --autoscaler on a fresh local sandbox (the same "
        "load on the same machine), then write one report with a column per run and a chart "
        "of both runs' replicas and TTFT on one time axis (scenarios/autoscalers.yaml).",
    )
    compare.add_argument("file", type=Path, metavar="FILE", help="the scenario (YAML)")
    compare.add_argument(
        "--autoscalers",
        default="cpu,queue",
        help="the sandbox autoscalers to run, in order, comma-separated (default: %(default)s)",
    )
    compare.add_argument(
        "--hpa-sync-seconds",
        type=_positive,
        default=KUBERNETES_SYNC_SECONDS,
        help="the sandbox's HPA sync period for both runs (Kubernetes: %(default)g)",
    )
    add_sandbox_arg_flag(compare, "both sandboxes", "--engine-cmd=...")
    compare.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".sandbox-compare"),
        help="the sandboxes' state folders go below this (default: %(default)s)",
    )
    add_report_dir_flag(compare)
    add_timing_flags(run)


def add_report_parser(commands: Subparsers[argparse.ArgumentParser]) -> None:
    """`kube-llm report FILE.json`."""
    report = commands.add_parser(
        "report",
        help="write a report folder again from a report's JSON (every figure recomputed)",
        description="Read a report.json (from `load`, `scenario run` or a previous `report`), "
        "recompute every figure from its samples and write a new report folder.",
    )
    report.add_argument("json_file", type=Path, metavar="FILE.json")
    add_report_dir_flag(report)


def add_headless_parsers(commands: Subparsers[argparse.ArgumentParser]) -> None:
    """Add `load`, `scenario` and `report`."""
    add_load_parser(commands)
    add_scenario_parser(commands)
    add_report_parser(commands)


def _cockpit_flags(parser: argparse.ArgumentParser, *, cluster: bool) -> None:
    """The flags the cockpit shares with kubectl, plus its own."""
    if cluster:
        add_cluster_flags(parser)
    parser.add_argument(
        "--read-only",
        action="store_true",
        help="watch only: no key kills pods or sends load",
    )
    add_deployment_flag(parser)
    parser.add_argument(
        "--burst-users", type=int, default=10, help="users in a load burst (default: 10)"
    )
    add_report_dir_flag(parser)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "kube-llm: a scalable LLM chat service for Kubernetes and the cockpit to watch it, "
            "break it and measure it. Without a command, opens the cockpit (`tui`)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
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
        "--profile",
        choices=SANDBOX_PROFILES,
        default="demo",
        help="the sandbox's profile: demo is quick (metrics every 5 s, HPA sync 5 s, a 30 s "
        "scale-down window, no pulls); minikube has Minikube's timings (HPA sync 15 s, metrics "
        "every 60 s, the 300 s window, image and model pulls at pod start) (default: "
        "%(default)s)",
    )
    demo.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the sandbox's state folder (default: .sandbox/ at the root of a checkout, else "
        "$XDG_STATE_HOME/kube-llm or ~/.local/state/kube-llm)",
    )
    demo.add_argument(
        "--autoscaler",
        choices=SANDBOX_AUTOSCALERS,
        default="cpu",
        help="the sandbox's HPA: the poster's CPU and memory (cpu, the default) or chats in "
        "flight plus waiting per pod (queue, overlay sandbox-queue)",
    )
    add_sandbox_arg_flag(demo, "the sandbox", "--hpa-sync-seconds=5")
    web = commands.add_parser(
        "web",
        help="the cockpit as a web page (read-only unless --allow-chaos), one process a browser",
        description="Serve the cockpit to browsers with textual-serve: each browser session runs "
        "its own `kube-llm tui` with these flags, read-only unless --allow-chaos.",
    )
    _cockpit_flags(web, cluster=True)
    add_web_flags(web)
    add_load_parser(commands)
    add_scenario_parser(commands)
    add_report_parser(commands)
    commands.add_parser(
        "sandbox",
        help="run the local sandbox cluster (a test bench, not a production orchestrator)",
        description="Run the local sandbox; every argument after `sandbox` goes to it "
        "(see `kube-llm sandbox --help`).",
        add_help=False,
    )
    add_manifests_parser(commands)
    add_completion_parser(commands)
    return parser


def settings_from(parsed: argparse.Namespace) -> CockpitSettings:
    """The session's settings from any command's parsed flags (a flag a command lacks keeps
    its default)."""
    defaults = CockpitSettings()
    deployment = getattr(parsed, "deployment", defaults.deployment)
    return CockpitSettings(
        kubeconfig=getattr(parsed, "kubeconfig", None),
        context=getattr(parsed, "context", None),
        namespace=getattr(parsed, "namespace", None),
        backend_url=getattr(parsed, "backend_url", None),
        # The web cockpit is read-only unless --allow-chaos.
        read_only=getattr(parsed, "read_only", defaults.read_only)
        or (getattr(parsed, "command", None) == "web" and not parsed.allow_chaos),
        deployment=deployment,
        service=deployment,
        burst_users=getattr(parsed, "burst_users", defaults.burst_users),
        max_tokens=getattr(parsed, "max_tokens", defaults.max_tokens),
        report_dir=getattr(parsed, "report_dir", defaults.report_dir),
        profile=getattr(parsed, "profile", None),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kube-llm` and `kubectl-llm` console scripts."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    complete(parser)  # a TAB in the shell: answered here, and the process exits
    if args and args[0] == "sandbox":
        return _exec_module("sandbox", args[1:])
    # No command, or only flags: the cockpit (`tui`) is the default command.
    if not args or (args[0].startswith("-") and args[0] not in {"-h", "--help", "--version"}):
        args = ["tui", *args]
    parsed = parser.parse_args(args)
    if parsed.command in {"manifests", "completion"} or (
        parsed.command == "scenario" and parsed.scenario_command == "list"
    ):
        from tui.cli.package import run_completion, run_manifests, run_scenario_list

        run = {"manifests": run_manifests, "completion": run_completion}
        return run.get(parsed.command, run_scenario_list)(parsed)
    if parsed.command == "scenario" and (code := resolve_scenario(parsed)) is not None:
        return code
    settings = settings_from(parsed)
    if settings.backend_url is not None:
        from tui.gateway.target import GatewayTarget  # httpx2: only when the flag is given

        try:
            GatewayTarget.direct(settings.backend_url)
        except ValueError as error:
            print(f"{PROG}: --backend-url: {error}", file=sys.stderr)
            return 2
    if parsed.command == "web":
        return run_web(parsed, settings)
    if parsed.command in {"load", "scenario", "report"}:
        from tui.cli.commands import run_headless

        return run_headless(parsed, settings)
    # Textual and the cockpit's services load only when the cockpit runs: --help stays quick.
    from tui.cli.cockpit import run_demo, run_tui

    if parsed.command == "demo":
        return run_demo(parsed, settings)
    return run_tui(settings)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
