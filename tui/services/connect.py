"""Connecting the cockpit's services to a cluster: the gateway and the session for a kubeconfig
target. No Textual here: the cockpit (`tui.cli.cockpit`) and the headless commands
(`tui.headless.terminal`) share it."""

from __future__ import annotations

from collections.abc import Callable

from tui.cluster.kubeconfig import ClusterTarget
from tui.cluster.watcher import ClusterWatcher
from tui.core.model import ClusterEvent, ClusterSnapshot
from tui.core.settings import CockpitSettings
from tui.gateway.client import Gateway
from tui.gateway.target import GatewayTarget
from tui.services.session import Session, SessionSink

DEMO_CONTEXT = "kube-llm-sandbox-cockpit"
"""The sandbox's context that acts as the cockpit's ServiceAccount: exactly the Role in the
manifests. The demo and the tests use it, so what works there works on a cluster with the Role."""


def gateway_for(target: ClusterTarget, settings: CockpitSettings) -> tuple[Gateway, str]:
    """The gateway client, and how chats reach the backend in words."""
    renewed = target.header_source()
    through_api = GatewayTarget.through_service_proxy(
        target.server,
        target.namespace,
        settings.service,
        # Expiring credentials (an exec plugin's) are read at each request instead.
        headers=target.auth_headers() if renewed is None else None,
        verify=target.ssl_context(),
        cert=target.client_cert(),
        auth=renewed,
    )
    if settings.backend_url:
        direct = GatewayTarget.direct(settings.backend_url)
        # Per-pod /metrics still go through the API server's pod proxy, with its credentials.
        return Gateway(direct, pods=through_api), direct.display_url
    return Gateway(through_api), "the API server's service proxy"


def session_for(target: ClusterTarget, settings: CockpitSettings, sink: SessionSink) -> Session:
    """The session on a loaded kubeconfig target."""
    gateway, path = gateway_for(target, settings)

    def cluster(
        on_snapshot: Callable[[ClusterSnapshot], None], on_event: Callable[[ClusterEvent], None]
    ) -> ClusterWatcher:
        return ClusterWatcher(
            target, deployment=settings.deployment, on_snapshot=on_snapshot, on_event=on_event
        )

    return Session(
        settings,
        sink,
        cluster,
        gateway,
        namespace=target.namespace,
        context=target.context,
        sandbox=target.sandbox,
        target=path,
    )
