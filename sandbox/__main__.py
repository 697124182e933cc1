"""`python -m sandbox`: a local stand-in for a Kubernetes cluster running the sandbox overlay.

A test bench and a way to try the cockpit without a cluster, not a production orchestrator.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from kube_llm_data import (
    RenderError,
    ResourceError,
    default_state_dir,
    find_kubectl,
    overlay_dir,
)
from sandbox.cluster import (
    DEFAULT_WEB_PORT,
    FRONTEND_SERVICE,
    NAMESPACE,
    PROFILES,
    Profile,
    Sandbox,
    SandboxOptions,
    render_overlay,
)
from sandbox.engine import embedded_model_path
from sandbox.kubelet.containers import StartCosts
from sandbox.store.statelock import AlreadyRunning, StateLock

_T = TypeVar("_T")

DESCRIPTION = """\
Run kube-llm's sandbox overlay on this machine, with no cluster: an API server on 127.0.0.1
that speaks the part of the Kubernetes API that kubectl and the kube-llm cockpit use (pods,
deployments, replica sets, HPAs, events, evictions, metrics.k8s.io, service and pod proxies), a
kubelet that runs each pod's containers as local processes (the engine sidecar is
llama-cpp-python's server on the embedded SmolLM2-135M model, the backend is `python -m
backend`), and the Deployment, ReplicaSet, PodDisruptionBudget and HorizontalPodAutoscaler
controllers.

This is a test bench and a way to try the cockpit without a cluster, not a production
orchestrator: no isolation, no scheduling, no persistence. Ctrl+C (or SIGTERM) stops it and
every process it started.
"""


class EscapingFormatter(logging.Formatter):
    """Log lines with control characters escaped: a name, path or message a client chose
    (an escape sequence in a URL, say) must never reach the terminal raw."""

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, tracebacks included, with control characters as `\\xNN`."""
        text = super().format(record)
        return "".join(
            char
            if char in "\n\t" or (char.isprintable() and char != "\x7f")
            else f"\\x{ord(char):02x}"
            for char in text
        )


AUTOSCALER_OVERLAYS = {"cpu": None, "queue": "sandbox-queue"}
"""The overlay each `--autoscaler` runs (None: the profile's own, the poster's CPU HPA)."""


def _per_profile(value: Callable[[Profile], str]) -> str:
    """A flag's default in each profile, for its help."""
    return "; ".join(f"{profile.name}: {value(profile)}" for profile in PROFILES.values())


def parse_args(argv: list[str] | None = None) -> SandboxOptions:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="kube-llm sandbox",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="demo",
        help="defaults for the flags below: "
        + "; ".join(f"{p.name}: {p.summary}" for p in PROFILES.values())
        + " (default: %(default)s)",
    )
    parser.add_argument(
        "--overlay",
        type=Path,
        default=None,
        help="kustomization to render and run (default: the profile's, "
        + ", ".join(f"{p.name}: {p.overlay}" for p in PROFILES.values())
        + ", or the one --autoscaler names)",
    )
    parser.add_argument(
        "--autoscaler",
        choices=sorted(AUTOSCALER_OVERLAYS),
        default="cpu",
        help="the HPA to start with: the poster's CPU and memory (cpu, the default) or chats in "
        "flight plus waiting per pod on custom.metrics.k8s.io (queue: overlay sandbox-queue; "
        "the demo profile only)",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="API server port on 127.0.0.1 (default: a free one)"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the sandbox's folder: kubeconfig, logs, certificates, lock (default: .sandbox/ at "
        "the root of a checkout, else $XDG_STATE_HOME/kube-llm or ~/.local/state/kube-llm)",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="where to write the kubeconfig with the sandbox's bearer token; its folder is the "
        "state folder (default: STATE_DIR/kubeconfig)",
    )
    parser.add_argument(
        "--hpa-sync-seconds",
        type=float,
        default=None,
        help="HPA controller sync period (Kubernetes: 15, both profiles' default; "
        "`kube-llm demo` asks 5)",
    )
    parser.add_argument(
        "--metrics-resolution-seconds",
        type=float,
        default=None,
        help="seconds between two metrics samples of every pod, as metrics-server's "
        "--metric-resolution ("
        + _per_profile(
            lambda p: (
                "the HPA sync period, at most 5"
                if p.metrics_resolution_seconds is None
                else f"{p.metrics_resolution_seconds:g}"
            )
        )
        + ")",
    )
    parser.add_argument(
        "--image-pull-seconds",
        type=float,
        default=None,
        help="seconds each image's first pull on the node costs ("
        + _per_profile(lambda p: f"{p.start_costs.image_pull_seconds:g}")
        + ")",
    )
    parser.add_argument(
        "--model-pull-seconds",
        type=float,
        default=None,
        help="seconds model-pull takes for a model missing from the models volume ("
        + _per_profile(lambda p: f"{p.start_costs.model_pull_seconds:g}")
        + ")",
    )
    parser.add_argument(
        "--model-on-volume",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether the models volume holds the model at the start ("
        + _per_profile(lambda p: "yes" if p.start_costs.model_on_volume else "no")
        + ")",
    )
    parser.add_argument(
        "--registry-unreachable",
        action="store_true",
        help="the model registry cannot be reached: model-pull fails as `ollama pull` does "
        "when the model is missing, and starts the pod without a pull when it is there",
    )
    parser.add_argument(
        "--engine-cmd",
        default=None,
        help="command for each pod's engine sidecar instead of llama-cpp-python's server; "
        "{port} and {model} are replaced by the engine's loopback port and the model name",
    )
    parser.add_argument(
        "--watch-history",
        type=int,
        default=1000,
        help="watch events kept per resource; older resourceVersions get 410 Gone (tests)",
    )
    parser.add_argument(
        "--bookmark-seconds",
        type=float,
        default=10.0,
        help="interval of watch bookmarks for clients that allow them (default: %(default)s)",
    )
    parser.add_argument(
        "--stop-with-parent",
        action="store_true",
        help="stop (and stop every pod) when the process that started the sandbox ends, "
        "however it ends (what `kube-llm demo` asks, so a closed terminal leaves nothing behind)",
    )
    parser.add_argument(
        "--exec-token-seconds",
        type=int,
        default=600,
        help="lifetime of the tokens the kubeconfig's exec credential plugin hands out "
        "(context kube-llm-sandbox-exec; default: %(default)s)",
    )
    parser.add_argument(
        "--web-port",
        type=int,
        default=DEFAULT_WEB_PORT,
        help=f"loopback port of the {FRONTEND_SERVICE} Service, the web cockpit (what `kubectl "
        f"port-forward svc/{FRONTEND_SERVICE} 8080:80` gives on a cluster): each connection "
        "goes to a ready frontend pod; default %(default)s, or a free port if that one is "
        "taken; 0: a free port",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.web_port <= 65535:
        parser.error("--web-port must be a port number (0-65535)")
    profile = PROFILES[args.profile]
    for name in ("hpa_sync_seconds", "metrics_resolution_seconds"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    for name in ("image_pull_seconds", "model_pull_seconds"):
        value = getattr(args, name)
        if value is not None and not 0 <= value <= 3600:
            parser.error(f"--{name.replace('_', '-')} must be between 0 and 3600")
    costs = profile.start_costs
    costs = StartCosts(
        image_pull_seconds=_given(args.image_pull_seconds, costs.image_pull_seconds),
        model_pull_seconds=_given(args.model_pull_seconds, costs.model_pull_seconds),
        model_on_volume=_given(args.model_on_volume, costs.model_on_volume),
        registry_unreachable=args.registry_unreachable or costs.registry_unreachable,
    )
    if args.exec_token_seconds <= 0:
        parser.error("--exec-token-seconds must be positive")
    if args.state_dir is not None and args.kubeconfig is not None:
        parser.error("--state-dir and --kubeconfig both name the state folder: give one")
    if args.overlay is not None and args.autoscaler != "cpu":
        parser.error("--autoscaler names an overlay: give either it or --overlay")
    if args.autoscaler != "cpu" and profile.name != "demo":
        parser.error(
            f"--autoscaler {args.autoscaler} runs on the demo profile: no overlay combines it "
            f"with the {profile.name} profile's HPA behaviour (give one with --overlay)"
        )
    try:
        overlay = args.overlay or overlay_dir(
            AUTOSCALER_OVERLAYS[args.autoscaler] or profile.overlay
        )
        kubeconfig = args.kubeconfig or (args.state_dir or default_state_dir()) / "kubeconfig"
    except ResourceError as error:
        parser.error(str(error))
    return SandboxOptions(
        overlay=overlay,
        port=args.port,
        kubeconfig=kubeconfig,
        hpa_sync_seconds=_given(args.hpa_sync_seconds, profile.hpa_sync_seconds),
        metrics_resolution_seconds=_given(
            args.metrics_resolution_seconds, profile.metrics_resolution_seconds
        ),
        start_costs=costs,
        profile=profile.name,
        engine_cmd=args.engine_cmd,
        watch_history=args.watch_history,
        bookmark_seconds=args.bookmark_seconds,
        workdir=Path.cwd(),
        stop_with_parent=args.stop_with_parent,
        exec_token_seconds=args.exec_token_seconds,
        web_port=args.web_port,
    )


def _given(value: _T | None, default: _T) -> _T:
    """A flag's value when it was given, else the profile's."""
    return default if value is None else value


def engine_problem() -> str | None:
    """Why the default engine cannot run here, if it cannot (checked without importing it)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return (
            "llama-cpp-python is not installed: install the llm extra "
            "(pipx install 'kube-llm[llm]', or pip install -e '.[llm]' in a checkout) "
            "or pass --engine-cmd"
        )
    try:
        embedded_model_path()
    except RuntimeError as error:
        return str(error)
    return None


def _shown_path(path: str | Path) -> str:
    """A path as the user can type it: relative to the current folder when it lies inside it."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd()))
    except ValueError:
        return str(resolved)


def start_costs_text(costs: StartCosts) -> str:
    """What a pod start costs, in words."""
    if not costs.simulated:
        return "no pulls (images on the node, the model embedded)"
    model = "on the models volume" if costs.model_on_volume else "pulled by the first pods"
    return (
        f"image pulls {costs.image_pull_seconds:g} s each (first use), model "
        f"{model} ({costs.model_pull_seconds:g} s)"
        + (", registry UNREACHABLE" if costs.registry_unreachable else "")
    )


def banner(sandbox: Sandbox) -> str:
    """How to use the running sandbox."""
    options = sandbox.options
    kubeconfig = _shown_path(sandbox.options.kubeconfig)
    found = find_kubectl()
    kubectl = f"{_shown_path(found) if found else 'kubectl'} --kubeconfig {kubeconfig}"
    engine = sandbox.options.engine_cmd or "llama-cpp-python server, SmolLM2-135M (embedded)"
    skipped = (
        f"\n  not run here:  {', '.join(sandbox.skipped)} (no such API in the sandbox)"
        if sandbox.skipped
        else ""
    )
    proxy = f"/api/v1/namespaces/{NAMESPACE}/services/llm-backend:http/proxy"
    web = (
        f"\n  web cockpit:   {sandbox.web_url} (Service {FRONTEND_SERVICE}: each connection goes "
        f"to a ready frontend pod){sandbox.web_note}"
        if sandbox.web_url
        else ""
    )
    return f"""\
kube-llm sandbox: a local test bench that speaks the Kubernetes API (not a production cluster)
  API server:    {sandbox.server_url}
  kubeconfig:    {kubeconfig}
  state folder:  {_shown_path(sandbox.options.kubeconfig.parent)}
  overlay:       {sandbox.options.overlay}
  engine:        {engine}
  profile:       {options.profile}
  HPA sync:      every {options.hpa_sync_seconds:g} s
  metrics:       sampled every {options.resolved_metrics_resolution:g} s
  pod start:     {start_costs_text(options.start_costs)}{web}{skipped}

Watch it (in another terminal):
  {kubectl} -n {NAMESPACE} get pods,deploy,hpa
  {kubectl} -n {NAMESPACE} get events -w
Break it: delete a pod and watch its replacement become Ready:
  {kubectl} -n {NAMESPACE} delete pod <name>
Chat through the Service (the API server's service proxy):
  echo '{{"messages":[{{"role":"user","content":"Hello"}}]}}' > /tmp/chat.json
  {kubectl} create --raw {proxy}/v1/chat/completions -f /tmp/chat.json

Ctrl+C stops the sandbox and every process it started."""


async def serve(options: SandboxOptions) -> int:
    """Run the sandbox until SIGINT or SIGTERM."""
    if options.engine_cmd is None:
        problem = engine_problem()
        if problem is not None:
            print(f"kube-llm sandbox: {problem}", file=sys.stderr)
            return 2
    # Before anything is written to the state folder: a second sandbox there refuses.
    lock = StateLock(options.kubeconfig.parent)
    try:
        lock.acquire()
    except AlreadyRunning as error:
        print(f"kube-llm sandbox: {error}", file=sys.stderr)
        return 2
    try:
        # Said first: outside a checkout the state folder is not where the user stands.
        state = _shown_path(options.kubeconfig.parent)
        print(f"kube-llm sandbox: state folder {state} (kubeconfig, logs, certificates)")
        return await _serve_locked(options, lock)
    finally:
        lock.release()


async def _serve_locked(options: SandboxOptions, lock: StateLock) -> int:
    """Run the sandbox once the state folder is this process's."""
    try:
        objects = await asyncio.to_thread(render_overlay, options.overlay)
    except RenderError as error:
        print(f"kube-llm sandbox: {error}", file=sys.stderr)
        return 2
    try:
        sandbox = Sandbox(options, objects)
    except OSError as error:
        print(f"kube-llm sandbox: cannot listen on 127.0.0.1: {error}", file=sys.stderr)
        return 2
    lock.record(sandbox.server_url)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, sandbox.stop)
    ready = asyncio.Event()
    runner = asyncio.create_task(sandbox.run(ready))
    orphan_watch = (
        asyncio.create_task(_stop_when_orphaned(sandbox)) if options.stop_with_parent else None
    )
    await ready.wait()
    print(banner(sandbox), flush=True)
    await runner
    if orphan_watch is not None:
        orphan_watch.cancel()
    print("kube-llm sandbox: stopped; no process left behind.", flush=True)
    return 0


async def _stop_when_orphaned(sandbox: Sandbox, interval: float = 0.5) -> None:
    """Stop the sandbox once the process that started it has gone (we are re-parented)."""
    parent = os.getppid()
    # Linux tells a process nothing when its parent dies (short of prctl): look every interval.
    while True:
        await asyncio.sleep(interval)
        if os.getppid() != parent:
            break
    logging.getLogger("sandbox").warning("the process that started the sandbox ended: stopping")
    sandbox.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m sandbox` and `kube-llm sandbox`."""
    options = parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    return asyncio.run(serve(options))


if __name__ == "__main__":
    sys.exit(main())
