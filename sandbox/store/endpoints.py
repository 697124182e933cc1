"""A Service's ready endpoints, and the pick of one for each new request or connection.

One rule for both ways a Service is reached in the sandbox: the API server's service proxy
(`sandbox/apiserver/proxy.py`, one pick per request) and the Service relay that stands in for
kube-proxy and `kubectl port-forward svc/...` (`sandbox/kubeproxy/`, one pick per TCP
connection). An endpoint is a pod the Service's selector picks that is Ready and not
terminating, as the EndpointSlice controller publishes it; the pick goes round-robin over them,
as kube-proxy's IPVS mode does by default (its iptables and nftables modes pick at random).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sandbox.store.disruption import pod_is_healthy, service_pods
from sandbox.store.store import JSON, SERVICES, ApiError, Store

PodPort = Callable[[str, str, "str | int"], "int | None"]
"""(namespace, pod, container port number or name) -> the loopback port standing in for it."""


@dataclass(frozen=True)
class Endpoint:
    """One pod chosen for a request or connection, and its loopback port."""

    pod: str
    port: int


def ready_endpoints(store: Store, service: JSON) -> list[str]:
    """Names of the pods behind a Service that may take traffic, in a stable order."""
    return [pod["metadata"]["name"] for pod in service_pods(store, service) if pod_is_healthy(pod)]


def service_port(service: JSON, port_text: str | None) -> JSON | None:
    """The Service's port by number or name (the first one when none is named)."""
    for port in (service.get("spec") or {}).get("ports") or []:
        if port_text is None or port_text in (str(port.get("port")), port.get("name")):
            return dict(port)
    return None


def pick_endpoint(
    store: Store,
    rotation: dict[tuple[str, str], int],
    pod_port: PodPort,
    namespace: str,
    name: str,
    port_text: str | None = None,
) -> Endpoint:
    """The next ready pod behind a Service, round-robin (`rotation` holds where each stands).

    Raises ApiError: 404 for no such Service, 503 for no such port or no ready endpoint."""
    service = store.get(SERVICES, namespace, name)
    chosen = service_port(service, port_text)
    if chosen is None:
        raise ApiError(
            503, "ServiceUnavailable", f'no service port "{port_text}" found for service "{name}"'
        )
    target_port: str | int = chosen.get("targetPort", chosen.get("port")) or 80
    endpoints = ready_endpoints(store, service)
    key = (namespace, name)
    start = rotation.get(key, 0)
    for attempt in range(len(endpoints)):
        pod = endpoints[(start + attempt) % len(endpoints)]
        port = pod_port(namespace, pod, target_port)
        if port is not None:
            rotation[key] = start + attempt + 1
            return Endpoint(pod, port)
    raise ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
