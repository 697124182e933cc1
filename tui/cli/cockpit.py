"""Run the cockpit from the command line: `kube-llm tui` and `kube-llm demo`."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable

from kube_llm_data import ResourceError, default_state_dir
from tui.cluster.kubeconfig import KubeconfigError, load_target
from tui.cockpit.app import make_cockpit
from tui.core.settings import CockpitSettings
from tui.services.connect import DEMO_CONTEXT, session_for
from tui.services.launcher import SandboxFailed, SandboxLauncher
from tui.services.session import Session, SessionSink

__all__ = ["run_demo", "run_tui"]

DEMO_SANDBOX_ARGS = ("--stop-with-parent",)
"""The sandbox stops by itself if the cockpit dies without stopping it (a closed terminal, a
kill -9)."""
PROFILE_SANDBOX_ARGS = {
    "demo": ("--hpa-sync-seconds", "5"),
    "minikube": ("--profile", "minikube"),
}
"""`kube-llm demo --profile`: the demo's HPA decides every 5 s instead of Kubernetes' 15 s, so
scaling shows sooner; the minikube profile keeps every timing of Minikube's."""
NO_CLUSTER_HINT = (
    "No cluster at hand? `make demo` (or `kube-llm demo`) opens the cockpit on a local sandbox."
)


def run_tui(settings: CockpitSettings) -> int:
    """`kube-llm tui`: the cockpit on a kubeconfig context."""
    try:
        target = load_target(settings.kubeconfig, settings.context, settings.namespace)
    except KubeconfigError as error:
        print(f"kube-llm: {error}\n{NO_CLUSTER_HINT}", file=sys.stderr)
        return 2

    async def connect(
        settings: CockpitSettings, sink: SessionSink, progress: Callable[[str], None]
    ) -> Session:
        return session_for(target, settings, sink)

    app = make_cockpit(settings, connect)
    app.run()
    return app.return_code or 0


def _leave(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_demo(parsed: argparse.Namespace, settings: CockpitSettings) -> int:
    """`kube-llm demo`: start the sandbox, open the cockpit on it, stop the sandbox on quit."""
    extra = [
        *DEMO_SANDBOX_ARGS,
        *PROFILE_SANDBOX_ARGS[parsed.profile],
        "--autoscaler",
        parsed.autoscaler,
        *parsed.sandbox_arg,
    ]
    try:
        state_dir = parsed.state_dir or default_state_dir()
    except ResourceError as error:
        print(f"kube-llm: {error}", file=sys.stderr)
        return 2
    launcher = SandboxLauncher(state_dir, extra)
    print(f"kube-llm: starting the sandbox (its output: {launcher.paths.output})", flush=True)
    launcher.start()

    async def connect(
        settings: CockpitSettings, sink: SessionSink, progress: Callable[[str], None]
    ) -> Session:
        kubeconfig = await launcher.wait_ready(progress)
        try:
            target = load_target(kubeconfig, DEMO_CONTEXT, None)
        except KubeconfigError as error:
            raise SandboxFailed(f"the sandbox's kubeconfig cannot be used: {error}") from None
        session = session_for(target, settings, sink)
        web = launcher.web_url()
        if web is not None:
            sink.note(f"The cockpit in a browser on this machine: {web} (frontend pods)", "notice")
        return session

    app = make_cockpit(settings, connect)
    # A closed terminal (SIGHUP) or a SIGTERM must stop the sandbox too: leave through `finally`.
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, _leave)
    try:
        app.run()
    finally:
        print("kube-llm: stopping the sandbox and every process it started…", flush=True)
        code = launcher.stop()
    if code not in (0, None, -15):
        print(
            f"kube-llm: the sandbox ended with code {code}; its last output "
            f"({launcher.paths.output}):\n{launcher.output_tail()}",
            file=sys.stderr,
        )
        return app.return_code or 1
    print("kube-llm: stopped; no process left behind.")
    return app.return_code or 0
