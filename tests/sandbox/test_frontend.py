"""The sandbox's `frontend` container (sandbox/kubelet/frontend.py): the manifest's command line
with loopback host and port and without a Service DNS URL, and the ServiceAccount token mounted
by the pod's and its ServiceAccount's `automountServiceAccountToken`, as the kubelet decides.
The pods themselves run in tests/web/test_browser.py::test_the_frontend_pods_serve_the_cockpit."""

from __future__ import annotations

import sys

import pytest

from sandbox.kubelet.frontend import names_a_service, sandbox_argv, token_mounted
from sandbox.store.store import SERVICEACCOUNTS, Store


def test_loopback_host_and_port_and_no_service_dns_url() -> None:
    """`--host`, `--port` and a Service DNS `--backend-url` change; every other flag stays."""
    manifest = [
        "python", "-m", "tui", "web", "--host", "0.0.0.0", "--port", "8080", "--read-only",
        "--backend-url", "http://llm-backend.kube-llm.svc:80", "--report-dir", "/tmp/reports",
    ]  # fmt: skip
    assert sandbox_argv(manifest, 41234) == [
        sys.executable, "-m", "tui", "web", "--host", "127.0.0.1", "--port", "41234",
        "--read-only", "--report-dir", "/tmp/reports",
    ]  # fmt: skip
    inline = ["kube-llm", "web", "--host=::", "--port=80", "--backend-url=http://x.y.svc"]
    assert sandbox_argv(inline, 5) == ["kube-llm", "web", "--host", "127.0.0.1", "--port", "5"]


@pytest.mark.parametrize(
    ("url", "service"),
    [
        ("http://llm-backend.kube-llm.svc:80", True),
        ("http://llm-backend.kube-llm.svc.cluster.local", True),
        ("http://llm-backend:80", False),
        ("http://127.0.0.1:8000", False),
        ("https://chat.example.com", False),
    ],
)
def test_which_urls_name_a_service(url: str, service: bool) -> None:
    """Only a cluster DNS name goes: any other URL is reachable as it is, and stays."""
    assert names_a_service(url) is service
    argv = sandbox_argv(["web", "--backend-url", url], 1)
    assert ("--backend-url" in argv) is not service


def test_the_token_is_mounted_as_the_kubelet_decides() -> None:
    """The pod's field wins, else the ServiceAccount's, else true."""
    store = Store()
    account = {"apiVersion": "v1", "kind": "ServiceAccount"}
    store.create(
        SERVICEACCOUNTS,
        {
            **account,
            "metadata": {"name": "quiet", "namespace": "ns"},
            "automountServiceAccountToken": False,
        },
    )
    store.create(SERVICEACCOUNTS, {**account, "metadata": {"name": "plain", "namespace": "ns"}})
    assert token_mounted(store, "ns", {"serviceAccountName": "quiet"}) is False
    assert token_mounted(
        store, "ns", {"serviceAccountName": "quiet", "automountServiceAccountToken": True}
    )
    assert token_mounted(store, "ns", {"serviceAccountName": "plain"}) is True
    assert (
        token_mounted(
            store, "ns", {"serviceAccountName": "plain", "automountServiceAccountToken": False}
        )
        is False
    )
    assert token_mounted(store, "ns", {}) is True
