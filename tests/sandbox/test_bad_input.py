"""Issue 9, items 3 to 5: bad input gets a JSON Status (4xx), changes nothing, and costs no memory.

One live sandbox (fake engine) serves the module. Each probe here once broke the sandbox: a
path-escaping name, a name of the wrong type, an unlimited body, a malformed parameter.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.sandbox.harness import NAMESPACE, RunningSandbox, fake_engine_cmd, start_sandbox

pytestmark = pytest.mark.slow(reason="a sandbox for the module (each test is quick)")

BASE = f"/api/v1/namespaces/{NAMESPACE}"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    running = start_sandbox(
        tmp_path_factory.mktemp("bad-input"), engine_cmd=fake_engine_cmd(busy_ms_per_token=0)
    )
    yield running
    running.stop()


def status_of(response: httpx2.Response) -> dict[str, Any]:
    """The response's Status object; fails unless it is JSON of kind Status."""
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    body: dict[str, Any] = response.json()
    assert body["kind"] == "Status", body
    assert body["code"] == response.status_code
    return body


def a_pod(name: str, container: str = "app", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": container, "image": "busybox:1"}], **spec},
    }


def peak_rss(sandbox: RunningSandbox) -> int:
    """The sandbox process's peak resident memory (VmHWM), in bytes."""
    status = Path(f"/proc/{sandbox.process.pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) * 1024


def test_names_that_leave_the_log_folder_are_refused(sandbox: RunningSandbox) -> None:
    logs = sandbox.kubeconfig.parent / "logs"
    outside_before = sorted(p.name for p in logs.parent.parent.iterdir())
    with sandbox.http() as client:
        for pod in (
            a_pod("../../../../tmp/x"),
            a_pod("ok-name", container="../../../../tmp/x"),
            a_pod("esc\x1b]0;pwned\x07"),
            a_pod("UPPER"),
        ):
            response = client.post(f"{BASE}/pods", json=pod)
            assert response.status_code == 422, response.text
            status = status_of(response)
            assert status["reason"] == "Invalid"
            assert status["details"]["causes"], status
            assert "\x1b" not in response.text  # JSON-escaped, never raw
        assert client.get(f"{BASE}/pods/ok-name").status_code == 404
    assert sorted(p.name for p in logs.parent.parent.iterdir()) == outside_before
    assert "\x1b" not in sandbox.log()


def test_metadata_of_the_wrong_type_is_refused_and_lists_still_work(
    sandbox: RunningSandbox,
) -> None:
    with sandbox.http() as client:
        for body in (
            {"metadata": {"name": 123}},
            {"metadata": "x"},
            {"metadata": {"name": "cm", "labels": {"a": 1}}},
            {"metadata": {"name": "cm", "labels": {"bad key!": "v"}}},
            {"metadata": {"name": "cm"}, "data": {"k": 5}},
        ):
            response = client.post(f"{BASE}/configmaps", json=body)
            assert response.status_code == 422, (body, response.text)
            status_of(response)
        assert client.get(f"{BASE}/configmaps").status_code == 200
        assert client.get(f"{BASE}/configmaps/cm").status_code == 404


def test_pods_need_a_spec_with_containers(sandbox: RunningSandbox) -> None:
    with sandbox.http() as client:
        for pod in (
            {"metadata": {"name": "nospec"}},
            {"metadata": {"name": "nospec"}, "spec": {}},
            {"metadata": {"name": "nospec"}, "spec": {"containers": "notalist"}},
            {"metadata": {"name": "nospec"}, "spec": {"containers": [{"name": "a"}]}},
            a_pod("nospec", terminationGracePeriodSeconds="soon"),
        ):
            response = client.post(f"{BASE}/pods", json=pod)
            assert response.status_code == 422, (pod, response.text)
        assert client.get(f"{BASE}/pods/nospec").status_code == 404


def test_a_patch_that_breaks_the_shape_changes_nothing(sandbox: RunningSandbox) -> None:
    url = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/llm-backend"
    with sandbox.http() as client:
        before = client.get(url).json()
        for patch in (
            {"spec": {"template": {"spec": {"containers": "notalist"}}}},
            {"spec": "x"},
            {"spec": {"replicas": "three"}},
            {"spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "other"}}}},
        ):
            response = client.patch(
                url, json=patch, headers={"content-type": "application/merge-patch+json"}
            )
            assert response.status_code == 422, (patch, response.text)
            status_of(response)
        hpa = client.patch(
            f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/llm-backend",
            json={"spec": {"maxReplicas": None}},
            headers={"content-type": "application/merge-patch+json"},
        )
        assert hpa.status_code == 422, hpa.text
        after = client.get(url).json()
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_a_create_in_a_missing_namespace_is_not_found(sandbox: RunningSandbox) -> None:
    with sandbox.http() as client:
        response = client.post(
            "/api/v1/namespaces/nowhere/configmaps", json={"metadata": {"name": "cm"}}
        )
    assert response.status_code == 404
    assert 'namespaces "nowhere" not found' in status_of(response)["message"]


def test_bodies_over_the_limit_get_413_before_they_are_read(sandbox: RunningSandbox) -> None:
    before = peak_rss(sandbox)
    cockpit = _cockpit_token(sandbox)
    url = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"

    def chunks(total: int) -> Iterator[bytes]:
        piece = b"x" * MiB
        for _ in range(total // MiB):
            yield piece

    with sandbox.http(token=cockpit) as client:
        try:
            streamed = client.post(url, content=chunks(200 * MiB))
        except httpx2.TransportError:
            streamed = None  # the server may close the connection mid-upload, as it may
        if streamed is not None:
            assert streamed.status_code == 413
            assert status_of(streamed)["reason"] == "RequestEntityTooLarge"
    with sandbox.http() as client:
        big = {"metadata": {"name": "big"}, "data": {"blob": "x" * (50 * MiB)}}
        response = client.post(f"{BASE}/configmaps", json=big)
        assert response.status_code == 413, response.text[:300]
        over_config = {"metadata": {"name": "big"}, "data": {"blob": "x" * (MiB + 10)}}
        response = client.post(f"{BASE}/configmaps", json=over_config)
        assert response.status_code == 422, response.text[:300]
        assert client.get(f"{BASE}/configmaps/big").status_code == 404
    grown = peak_rss(sandbox) - before
    assert grown < 40 * MiB, f"peak RSS grew by {grown / MiB:.0f} MiB"


def test_a_declared_length_over_the_limit_is_refused_unread(sandbox: RunningSandbox) -> None:
    """A raw request that claims 200 MiB and sends none of it gets its 413 at once."""
    import socket

    context = ssl.create_default_context(cafile=str(sandbox.ca_file))
    host, port = sandbox.server.removeprefix("https://").split(":")
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(
            (
                "POST /api/v1/namespaces/kube-llm/configmaps HTTP/1.1\r\n"
                f"Host: {host}\r\nAuthorization: Bearer {sandbox.token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {200 * MiB}\r\n\r\n"
            ).encode()
        )
        head = tls.recv(65536).decode(errors="replace")
    assert head.startswith("HTTP/1.1 413"), head[:200]


def test_the_proxies_stream_request_bodies(sandbox: RunningSandbox) -> None:
    before = peak_rss(sandbox)
    proxy = f"{BASE}/services/llm-backend:http/proxy/v1/chat/completions"

    def chunks() -> Iterator[bytes]:
        piece = b" " * MiB
        for _ in range(100):
            yield piece

    with sandbox.http() as client:
        try:
            response = client.post(
                proxy, content=chunks(), headers={"content-type": "application/json"}
            )
        except httpx2.TransportError:
            response = None  # the backend refused early and closed: the body was not kept
        if response is not None:
            assert response.status_code in (400, 413), response.text[:300]
    grown = peak_rss(sandbox) - before
    assert grown < 40 * MiB, f"peak RSS grew by {grown / MiB:.0f} MiB"


def _cockpit_token(sandbox: RunningSandbox) -> str:
    import yaml

    config = yaml.safe_load(sandbox.kubeconfig.read_text())
    users = {u["name"]: u["user"].get("token") for u in config["users"]}
    return str(users["kube-llm-sandbox-cockpit"])


def _nested(depth: int) -> bytes:
    return b'{"metadata":{"name":"deep"},"data":' + b"[" * depth + b"]" * depth + b"}"


BAD_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", f"{BASE}/pods", {"params": {"watch": "1", "timeoutSeconds": "abc"}}),
    ("GET", f"{BASE}/pods", {"params": {"watch": "1", "timeoutSeconds": "nan"}}),
    ("GET", f"{BASE}/pods", {"params": {"watch": "1", "timeoutSeconds": "inf"}}),
    ("GET", f"{BASE}/pods", {"params": {"watch": "1", "timeoutSeconds": "-1"}}),
    ("GET", f"{BASE}/pods", {"params": {"watch": "1", "resourceVersion": "abc"}}),
    ("GET", f"{BASE}/pods", {"params": {"labelSelector": "a in (b"}}),
    ("DELETE", f"{BASE}/pods/POD", {"params": {"gracePeriodSeconds": "abc"}}),
    ("GET", f"{BASE}/pods/POD/log", {"params": {"container": "backend", "tailLines": "abc"}}),
    ("GET", f"{BASE}/pods/POD/log", {"params": {"container": "backend", "tailLines": "-3"}}),
    ("POST", f"{BASE}/configmaps", {"content": _nested(100_000)}),
    ("POST", f"{BASE}/configmaps", {"content": _nested(150)}),
    ("POST", f"{BASE}/configmaps", {"content": b'{"metadata": NaN}'}),
    ("POST", f"{BASE}/configmaps", {"content": b"\xff\xfe{}"}),
    (
        "POST",
        f"{BASE}/configmaps",
        {"content": b"a: " + b"[" * 100_000, "headers": {"content-type": "application/yaml"}},
    ),
    (
        "POST",
        f"{BASE}/configmaps",
        {
            "content": b"a: &a [x, x]\nb: &b [*a, *a]\nmetadata: {name: bomb}\n",
            "headers": {"content-type": "application/yaml"},
        },
    ),
    ("POST", f"{BASE}/pods/POD/eviction", {"json": {"deleteOptions": "now"}}),
    (
        "POST",
        f"{BASE}/pods/POD/eviction",
        {"json": {"deleteOptions": {"gracePeriodSeconds": "abc"}}},
    ),
    (
        "POST",
        f"{BASE}/serviceaccounts/kube-llm-cockpit/token",
        {"json": {"spec": {"expirationSeconds": "abc"}}},
    ),
    ("PUT", f"{BASE}/configmaps/CM", {"json": {"metadata": "x"}}),
    (
        "PATCH",
        f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/llm-backend/scale",
        {"json": {"spec": "x"}, "headers": {"content-type": "application/merge-patch+json"}},
    ),
    (
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        {"json": {"spec": "x"}},
    ),
    (
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        {"json": {"spec": {"resourceAttributes": {"verb": 5}}}},
    ),
    (
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        # runtime.Unknown{raw: review{spec: {resourceAttributes: {verb: b"\xff\xfe"}}}}
        {
            "content": b"k8s\x00\x12\x08\x12\x06\x0a\x04\x12\x02\xff\xfe",
            "headers": {"content-type": "application/vnd.kubernetes.protobuf"},
        },
    ),
    ("POST", "/sandbox/faults", {"json": {"stall_seconds": "nan"}}),
    ("POST", "/sandbox/faults", {"content": b'{"stall_seconds": NaN}'}),
    ("POST", "/sandbox/faults", {"json": {"fail_code": 99999}}),
    ("POST", "/sandbox/faults", {"json": {"fail_next": -1}}),
    ("POST", "/sandbox/faults", {"json": {"fail_next": 1, "typo": 1}}),
    ("POST", "/sandbox/faults", {"json": []}),
    ("POST", "/sandbox/faults", {"content": b"{"}),
]


@pytest.mark.parametrize(("method", "url", "options"), BAD_REQUESTS)
def test_caller_mistakes_get_a_json_status_not_a_500(
    sandbox: RunningSandbox, method: str, url: str, options: dict[str, Any]
) -> None:
    pod = sandbox.ready_pods()[0]
    url = url.replace("POD", pod).replace("CM", "llm-backend-config")
    with sandbox.http() as client:
        response = client.request(method, url, **options)
        status = status_of(response)
        assert 400 <= response.status_code < 500, status
        # Nothing was half-applied: faults still work and later requests are not failed.
        faults = client.post("/sandbox/faults", json={})
        assert faults.status_code == 200, faults.text
        assert faults.json()["fail_next"] == 0
        assert faults.json()["stall_next"] == 0
        assert client.get(f"{BASE}/pods").status_code == 200


def test_a_watch_with_timeout_zero_gets_the_servers_own_timeout(sandbox: RunningSandbox) -> None:
    with (
        sandbox.http() as client,
        client.stream(
            "GET", f"{BASE}/pods", params={"watch": "1", "timeoutSeconds": "0"}
        ) as response,
    ):
        assert response.status_code == 200
        first = json.loads(next(response.iter_lines()))
        assert first["type"] == "ADDED"


def test_the_api_refuses_a_bad_behavior_with_a_status_and_keeps_the_hpa(
    sandbox: RunningSandbox,
) -> None:
    url = f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/llm-backend"
    patch = {"spec": {"behavior": {"scaleDown": {"selectPolicy": "Fastest", "policies": []}}}}
    with sandbox.http() as client:
        before = client.get(url).json()
        response = client.patch(
            url, json=patch, headers={"content-type": "application/merge-patch+json"}
        )
        after = client.get(url).json()
    assert response.status_code == 422, response.text
    status = status_of(response)
    assert status["reason"] == "Invalid"
    assert [(c["field"], c["message"]) for c in status["details"]["causes"]] == [
        (
            "spec.behavior.scaleDown.selectPolicy",
            'Unsupported value: "Fastest": supported values: "Disabled", "Max", "Min"',
        ),
        ("spec.behavior.scaleDown.policies", "Required value: must specify at least one Policy"),
    ]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
