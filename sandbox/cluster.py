"""Putting the sandbox together: render the overlay, load its objects, run the API server and
the controllers in one asyncio process, write the kubeconfig, and shut down cleanly.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import socket
import sys
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
import yaml

from kube_llm_data import default_state_dir, find_kubectl, overlay_dir, render
from sandbox.apiserver.auth import Authenticator
from sandbox.apiserver.faults import Faults
from sandbox.apiserver.protocol import ApiServerProtocol
from sandbox.apiserver.server import ApiServer, create_app
from sandbox.apiserver.tls import server_context, serving
from sandbox.apiserver.version import served_version
from sandbox.controllers.custom_metrics import GatewayScraper
from sandbox.controllers.deployments import DeploymentController
from sandbox.controllers.disruption import DisruptionController
from sandbox.controllers.podautoscaler import HpaController, MetricsCollector
from sandbox.controllers.replicasets import ReplicaSetController
from sandbox.kubelet.containers import InClusterAccess, StartCosts
from sandbox.kubelet.kubelet import NODE_IP, NODE_NAME, Kubelet, KubeletConfig
from sandbox.kubeproxy.relay import ServiceRelay, listening_socket
from sandbox.pki import Pki, make_pki
from sandbox.store.logs import prepare_run_folder
from sandbox.store.store import (
    JSON,
    NAMESPACES,
    NODES,
    SERVICEACCOUNTS,
    SERVICES,
    Store,
    resource_for_kind,
    timestamp,
)

log = logging.getLogger("sandbox")

NAMESPACE = "kube-llm"
CONTEXT = "kube-llm-sandbox"
# A second context acts as this ServiceAccount, with exactly the permissions of its Role.
COCKPIT_SERVICE_ACCOUNT = "kube-llm-cockpit"
COCKPIT_CONTEXT = "kube-llm-sandbox-cockpit"
CERT_CONTEXT = "kube-llm-sandbox-cert"
EXEC_CONTEXT = "kube-llm-sandbox-exec"
# The frontend Service the sandbox gives a stable local address (`sandbox/kubeproxy/`).
FRONTEND_SERVICE = "llm-frontend"
DEFAULT_WEB_PORT = 8080


def render_overlay(overlay: Path) -> list[JSON]:
    """Objects of a kustomization, rendered by kustomize (`kube_llm_data.render`)."""
    return [doc for doc in yaml.safe_load_all(render(overlay)) if isinstance(doc, dict)]


_ORDER = ["Namespace", "ServiceAccount", "ConfigMap", "Role", "RoleBinding", "Service"]


def load_objects(store: Store, objects: Iterable[JSON], namespace: str = NAMESPACE) -> list[str]:
    """Create the rendered objects in the store; returns what was skipped, in words."""
    skipped: list[str] = []
    ordered = sorted(
        objects, key=lambda o: _ORDER.index(o["kind"]) if o.get("kind") in _ORDER else len(_ORDER)
    )
    for obj in ordered:
        rt = resource_for_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        if rt is None:
            skipped.append(f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}")
            continue
        if rt.plural == "namespaces":
            if store.find(NAMESPACES, "", obj["metadata"]["name"]) is None:
                store.create(NAMESPACES, _namespace(obj["metadata"]["name"]))
            continue
        target = obj.get("metadata", {}).get("namespace") or namespace
        if store.find(NAMESPACES, "", target) is None:
            store.create(NAMESPACES, _namespace(target))
        store.create(rt, _as_applied(obj, target), target)
    return skipped


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _as_applied(obj: JSON, namespace: str) -> JSON:
    """The object as `kubectl apply` would have stored it: with the last-applied annotation
    (the manifest as kubectl writes it, sorted keys, `annotations: {}` kept), so a user's first
    `kubectl apply -k` of the overlay finds the sandbox's objects applied, not hand-made."""
    manifest = json.loads(json.dumps(obj))
    metadata = manifest.setdefault("metadata", {})
    metadata["namespace"] = namespace
    metadata.setdefault("annotations", {})
    applied = json.loads(json.dumps(manifest))
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # Go's encoder (kubectl's) escapes these, so the annotation reads as kubectl's own.
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escaped)
    applied["metadata"]["annotations"][LAST_APPLIED] = text + "\n"
    return dict(applied)


def _namespace(name: str) -> JSON:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def _node(kubelet_version: str) -> JSON:
    cpus = str(os.cpu_count() or 1)
    stamp = timestamp()
    return {
        "metadata": {
            "name": NODE_NAME,
            "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux"},
        },
        "spec": {},
        "status": {
            "capacity": {"cpu": cpus, "pods": "110"},
            "allocatable": {"cpu": cpus, "pods": "110"},
            "addresses": [{"type": "InternalIP", "address": NODE_IP}],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status (kube-llm sandbox)",
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp,
                }
            ],
            "nodeInfo": {"kubeletVersion": kubelet_version, "operatingSystem": "linux"},
        },
    }


def write_kubeconfig(
    path: Path,
    server: str,
    token: str,
    pki: Pki,
    namespace: str = NAMESPACE,
    cockpit_token: str | None = None,
    exec_token_seconds: int = 600,
) -> None:
    """A kubeconfig for the sandbox (mode 0600: it holds the bearer tokens).

    The current context is the sandbox's admin with a bearer token. Beside it, the same admin
    as clusters authenticate users: `kube-llm-sandbox-cert` with the client certificate (as a
    Minikube kubeconfig), `kube-llm-sandbox-exec` with an exec credential plugin whose tokens
    expire after `exec_token_seconds` (as EKS, GKE and AKS kubeconfigs); and with
    `cockpit_token`, `kube-llm-sandbox-cockpit` acts as the cockpit's ServiceAccount under its
    Role.
    """
    ca_data = base64.b64encode(pki.ca_cert.read_bytes()).decode()
    config: JSON = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {"server": server, "certificate-authority-data": ca_data},
            }
        ],
        "users": [{"name": CONTEXT, "user": {"token": token}}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace},
            }
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }
    plugin_args = [
        "-m",
        "sandbox.credential",
        "--server",
        server,
        "--certificate-authority",
        str(pki.ca_cert.resolve()),
        "--client-certificate",
        str(pki.client_cert.resolve()),
        "--client-key",
        str(pki.client_key.resolve()),
        "--expiration-seconds",
        str(exec_token_seconds),
    ]
    users: list[tuple[str, JSON]] = [
        (
            CERT_CONTEXT,
            {
                "client-certificate": str(pki.client_cert.resolve()),
                "client-key": str(pki.client_key.resolve()),
            },
        ),
        (
            EXEC_CONTEXT,
            {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": sys.executable,
                    "args": plugin_args,
                    # The plugin is this project's module, wherever the client runs from.
                    "env": [{"name": "PYTHONPATH", "value": str(Path(__file__).parents[1])}],
                    "interactiveMode": "Never",
                    "provideClusterInfo": False,
                }
            },
        ),
    ]
    if cockpit_token is not None:
        users.append((COCKPIT_CONTEXT, {"token": cockpit_token}))
    for name, user in users:
        config["users"].append({"name": name, "user": user})
        config["contexts"].append(
            {"name": name, "context": {"cluster": CONTEXT, "user": name, "namespace": namespace}}
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    path.chmod(0o600)


def _listening_socket(port: int) -> socket.socket:
    """The API server's socket on 127.0.0.1 (port 0: a free one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this. Without it, a response's body waits behind its
    # headers for the client's delayed ACK: 40 ms on every keep-alive request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the sandbox owns SIGINT and SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass(frozen=True)
class Profile:
    """A set of defaults for the sandbox: how quick, and how much like a given cluster."""

    name: str
    overlay: str
    """The overlay's name (`kube-llm manifests NAME --path`)."""
    hpa_sync_seconds: float
    metrics_resolution_seconds: float | None
    """None: the HPA sync period, at most 5 s (quick metrics for demos)."""
    start_costs: StartCosts
    summary: str


PROFILES = {
    "demo": Profile(
        "demo",
        "sandbox",
        15.0,
        None,
        StartCosts(),
        "quick: metrics every few seconds, a 30 s scale-down window, no pulls",
    ),
    # Minikube's own numbers: kube-controller-manager's default HPA sync period (15 s), the
    # metrics-server addon's `--metric-resolution=60s`, the minikube overlay's HPA behaviour
    # (kustomize/overlays/sandbox-minikube) and a fresh node: images and the model to pull.
    "minikube": Profile(
        "minikube",
        "sandbox-minikube",
        15.0,
        60.0,
        StartCosts(image_pull_seconds=5.0, model_pull_seconds=20.0, model_on_volume=False),
        "Minikube's timings: HPA sync 15 s, metrics every 60 s, a 300 s scale-down window, "
        "image and model pulls",
    ),
}
"""`--profile`: every other flag overrides the profile's value."""


@dataclass
class SandboxOptions:
    """What `python -m sandbox` was asked to do."""

    overlay: Path = field(default_factory=lambda: overlay_dir("sandbox"))
    port: int = 0
    kubeconfig: Path = field(default_factory=lambda: default_state_dir() / "kubeconfig")
    hpa_sync_seconds: float = 15.0
    metrics_resolution_seconds: float | None = None
    """How often pods are sampled (metrics-server's `--metric-resolution`); None: the HPA
    sync period, at most 5 s."""
    start_costs: StartCosts = field(default_factory=StartCosts)
    profile: str = "demo"

    @property
    def resolved_metrics_resolution(self) -> float:
        """Seconds between two samples of every pod."""
        if self.metrics_resolution_seconds is not None:
            return self.metrics_resolution_seconds
        return min(self.hpa_sync_seconds, 5.0)

    engine_cmd: str | None = None
    watch_history: int = 1000
    bookmark_seconds: float = 10.0
    workdir: Path = field(default_factory=Path.cwd)
    stop_with_parent: bool = False
    exec_token_seconds: int = 600
    web_port: int = DEFAULT_WEB_PORT


class Sandbox:
    """The whole sandbox: store, API server, kubelet and controllers."""

    def __init__(self, options: SandboxOptions, objects: list[JSON]) -> None:
        self.options = options
        self.store = Store(history_size=options.watch_history)
        self.token = secrets.token_urlsafe(32)
        self.version = served_version(find_kubectl())
        self.store.create(NODES, _node(self.version.git_version))
        self.skipped = load_objects(self.store, objects)
        log_dir = prepare_run_folder(options.kubeconfig.parent / "logs")
        self.authenticator = Authenticator(self.token)
        self.sock = _listening_socket(options.port)
        self.port: int = self.sock.getsockname()[1]
        self.server_url = f"https://127.0.0.1:{self.port}"
        self.pki = make_pki(options.kubeconfig.parent / "pki")
        # What a pod gets to reach the API server as its ServiceAccount (the frontend pods).
        in_cluster = InClusterAccess(
            host="127.0.0.1",
            port=self.port,
            ca_file=self.pki.ca_cert,
            issue_token=self.authenticator.issue,
            folder=options.kubeconfig.parent / "serviceaccounts",
        )
        self.kubelet = Kubelet(
            self.store,
            KubeletConfig(
                engine_cmd=options.engine_cmd,
                workdir=options.workdir,
                log_dir=log_dir,
                in_cluster=in_cluster,
                start_costs=options.start_costs,
            ),
        )
        self.metrics = MetricsCollector(
            self.store, self.kubelet.sample_targets, options.resolved_metrics_resolution
        )
        # Prometheus and prometheus-adapter: the gateways' gauges on custom.metrics.k8s.io.
        self.custom_metrics = GatewayScraper(
            self.store, self.kubelet.pod_port, min(options.hpa_sync_seconds, 5.0)
        )
        self.cockpit_token = (
            self.authenticator.issue(NAMESPACE, COCKPIT_SERVICE_ACCOUNT)
            if self.store.find(SERVICEACCOUNTS, NAMESPACE, COCKPIT_SERVICE_ACCOUNT) is not None
            else None
        )
        self.api = ApiServer(
            self.store,
            _Runtime(self),
            self.authenticator,
            bookmark_seconds=options.bookmark_seconds,
            faults=Faults(),
            version=self.version,
        )
        self.web_relay, self.web_socket, self.web_note = self._frontend_relay(options.web_port)
        self._stop = asyncio.Event()

    def _frontend_relay(self, port: int) -> tuple[ServiceRelay | None, socket.socket | None, str]:
        """The frontend Service's loopback port (`kubectl port-forward svc/llm-frontend`'s
        stand-in), when the overlay has that Service; the default port, if taken, gives way to
        a free one, and the note says so."""
        if self.store.find(SERVICES, NAMESPACE, FRONTEND_SERVICE) is None:
            return None, None, ""
        note = ""
        try:
            sock = listening_socket(port)
        except OSError as error:
            if port != DEFAULT_WEB_PORT:
                raise OSError(error.errno, f"{error.strerror} (--web-port {port})") from error
            sock = listening_socket(0)
            note = f" ({port} was taken: {error.strerror})"
        relay = ServiceRelay(self.store, self.kubelet.pod_port, NAMESPACE, FRONTEND_SERVICE)
        return relay, sock, note

    @property
    def web_url(self) -> str | None:
        """The frontend Service's page on this machine, if the overlay has the Service."""
        if self.web_socket is None:
            return None
        return f"http://127.0.0.1:{self.web_socket.getsockname()[1]}/"

    def stop(self) -> None:
        """Ask the sandbox to shut down."""
        self._stop.set()

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Serve until `stop()`; leaves no process behind."""
        app = create_app(self.api)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
            lifespan="on",
            # TLS of our own: client certificates are asked for, not required, and one that
            # does not verify is a 401, not a broken handshake (sandbox/apiserver/tls.py).
            http=serving(
                server_context(self.pki.server_cert, self.pki.server_key, self.pki.ca_cert),
                ApiServerProtocol,
            ),
        )
        server = _Server(config)
        write_kubeconfig(
            self.options.kubeconfig,
            self.server_url,
            self.token,
            self.pki,
            cockpit_token=self.cockpit_token,
            exec_token_seconds=self.options.exec_token_seconds,
        )
        tasks = [
            asyncio.create_task(server.serve(sockets=[self.sock]), name="api-server"),
            asyncio.create_task(self.kubelet.run(), name="kubelet"),
            asyncio.create_task(DeploymentController(self.store).run(), name="deployments"),
            asyncio.create_task(ReplicaSetController(self.store).run(), name="replicasets"),
            asyncio.create_task(DisruptionController(self.store).run(), name="disruption"),
            asyncio.create_task(self.metrics.run(), name="metrics"),
            asyncio.create_task(self.custom_metrics.run(), name="custom-metrics"),
            asyncio.create_task(
                HpaController(
                    self.store,
                    self.metrics,
                    self.options.hpa_sync_seconds,
                    pods_metrics=self.custom_metrics,
                ).run(),
                name="hpa",
            ),
        ]
        if self.web_relay is not None and self.web_socket is not None:
            relay = self.web_relay.serve(self.web_socket)
            tasks.append(asyncio.create_task(relay, name="kube-proxy"))
        if ready is not None:
            ready.set()
        stopper = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        # Every part runs until the stop: one that ended first failed, with or without an error.
        failure = next((t for t in tasks if t in done), None)
        self.store.close_watches()
        server.should_exit = True
        for task in tasks[1:]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stopper.cancel()
        # The token dies with the sandbox; remove the kubeconfig unless another sandbox
        # has written its own there since.
        with contextlib.suppress(FileNotFoundError):
            if self.token in self.options.kubeconfig.read_text():
                self.options.kubeconfig.unlink()
        if failure is not None:
            error = None if failure.cancelled() else failure.exception()
            raise RuntimeError(f"sandbox part {failure.get_name()} stopped early") from error


class _Runtime:
    """The API server's view of the kubelet and the metrics."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def pod_port(self, namespace: str, pod: str, port: str | int) -> int | None:
        return self._sandbox.kubelet.pod_port(namespace, pod, port)

    def pod_metrics(self, namespace: str | None) -> list[JSON]:
        return self._sandbox.metrics.pod_metrics(namespace)

    def log_path(self, namespace: str, pod: str, container: str | None) -> Path | None:
        return self._sandbox.kubelet.log_path(namespace, pod, container)

    def custom_metrics(
        self, namespace: str, metric: str, pods: list[str], metric_selector: str | None
    ) -> JSON:
        return self._sandbox.custom_metrics.metric_value_list(
            namespace, metric, pods, metric_selector
        )
