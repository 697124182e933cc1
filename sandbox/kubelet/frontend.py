"""The `frontend` container (components/frontend): `kube-llm web`, as a local process.

The manifest's own command and args run with this interpreter for `python`, after the kubelet's
`$(VAR)` expansion, with three changes a node without a pod network needs:

- `--host` becomes 127.0.0.1 and `--port` the loopback port the sandbox picked for `web`, which
  the sandbox prints (it has no `kubectl port-forward`);
- a `--backend-url` naming a Service by its cluster DNS name (`NAME.NAMESPACE.svc[...]`) is
  dropped, so the cockpits reach that Service through the API server's service proxy instead:
  the sandbox has no cluster DNS, and its service proxy is how it routes to a Service;
- the in-cluster configuration a pod gets: `KUBERNETES_SERVICE_HOST` and `_PORT` (the sandbox's
  API server) and the ServiceAccount's `token`, `ca.crt` and `namespace`, written to a folder of
  the state directory named by `KUBE_LLM_SERVICEACCOUNT_DIR`, since nothing can be mounted at
  /var/run/secrets/kubernetes.io/serviceaccount (README, "The sandbox").
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

from sandbox.kubelet.containers import Container, InClusterAccess, expand_references
from sandbox.store.store import JSON, SERVICEACCOUNTS, Store

FRONTEND_CONTAINER = "frontend"
SERVICEACCOUNT_DIR_ENV = "KUBE_LLM_SERVICEACCOUNT_DIR"
"""Read by the cockpit's in-cluster loader (tui/cluster/incluster.py: the walls keep one copy
on each side)."""

# A Service's cluster DNS name: NAME.NAMESPACE.svc, optionally .cluster.local.
_SERVICE_HOST = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\.[a-z0-9-]+\.svc(\.cluster\.local)?$")


def sandbox_argv(argv: list[str], port: int) -> list[str]:
    """The manifest's command line with loopback host and port and no Service DNS URL."""
    result: list[str] = []
    index = 0
    while index < len(argv):
        flag, equals, inline = argv[index].partition("=")
        has_value = bool(equals) or index + 1 < len(argv)
        value = inline if equals else (argv[index + 1] if index + 1 < len(argv) else "")
        step = 1 if equals else 2
        if flag == "--host" and has_value:
            result += ["--host", "127.0.0.1"]
        elif flag == "--port" and has_value:
            result += ["--port", str(port)]
        elif flag == "--backend-url" and has_value and names_a_service(value):
            pass
        else:
            result.append(argv[index])
            step = 1
        index += step
    if result[:1] == ["python"]:
        result[0] = sys.executable
    return result


def names_a_service(url: str) -> bool:
    """Whether a URL names a Service by its cluster DNS name."""
    return bool(_SERVICE_HOST.match(urlsplit(url).hostname or ""))


def token_mounted(store: Store, namespace: str, spec: JSON) -> bool:
    """automountServiceAccountToken: the pod's, else its ServiceAccount's, else true."""
    if "automountServiceAccountToken" in spec:
        return bool(spec["automountServiceAccountToken"])
    account = store.find(SERVICEACCOUNTS, namespace, str(spec.get("serviceAccountName", "default")))
    return bool((account or {}).get("automountServiceAccountToken", True))


def write_serviceaccount(access: InClusterAccess, namespace: str, pod: JSON) -> Path:
    """The pod's ServiceAccount files (a token issued once per pod), as the kubelet mounts them."""
    metadata = pod["metadata"]
    folder = access.folder / f"{namespace}_{metadata['name']}_{metadata['uid']}"
    token = folder / "token"
    if not token.exists():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        account = str((pod.get("spec") or {}).get("serviceAccountName", "default"))
        descriptor = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(access.issue_token(namespace, account))
        (folder / "ca.crt").write_bytes(access.ca_file.read_bytes())
        (folder / "namespace").write_text(namespace)
    return folder


def frontend_command(
    access: InClusterAccess | None,
    store: Store,
    pod: JSON,
    container: Container,
    env: dict[str, str],
    port: int,
) -> list[str]:
    """The frontend's command line; `env` gets the in-cluster configuration."""
    namespace = pod["metadata"]["namespace"]
    written = [*container.spec.get("command", []), *container.spec.get("args", [])]
    argv = [expand_references(str(part), env) for part in written]
    if access is not None:
        env["KUBERNETES_SERVICE_HOST"] = access.host
        env["KUBERNETES_SERVICE_PORT"] = str(access.port)
        if token_mounted(store, namespace, pod.get("spec") or {}):
            env[SERVICEACCOUNT_DIR_ENV] = str(write_serviceaccount(access, namespace, pod))
    return sandbox_argv(argv, port)


def web_page_url(port: int) -> str:
    """Where a frontend pod's page is on this machine."""
    return f"http://127.0.0.1:{port}/"


def announce(pod_name: str, port: int) -> str:
    """Say where a frontend pod's page is (the sandbox has no port-forward); the Event text."""
    message = f"the web cockpit of this pod is on {web_page_url(port)} (on this machine)"
    print(f"kube-llm sandbox: pod {pod_name}: {message}", flush=True)
    return message
