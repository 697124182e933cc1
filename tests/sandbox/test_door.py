"""Issue 14, "Found at the door": input the API server refuses before it can do harm.

One live sandbox (fake engine) serves the module. Each probe once got through: a lone
surrogate that made every later pod list fail, headers of any size without a token, selectors
that matched everything, integers beyond the API's types, a 404 that told a user without the
right what exists, `limit` ignored, and plain-text errors.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.sandbox.harness import NAMESPACE, RunningSandbox, fake_engine_cmd, start_sandbox
from tests.sandbox.test_bad_input import BASE, MiB, a_pod, peak_rss, status_of

pytestmark = pytest.mark.slow(
    reason="a live sandbox behind the tests of what the API server refuses at the door"
)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    running = start_sandbox(
        tmp_path_factory.mktemp("door"), engine_cmd=fake_engine_cmd(busy_ms_per_token=0)
    )
    yield running
    running.stop()


def cockpit_token(sandbox: RunningSandbox) -> str:
    config = yaml.safe_load(sandbox.kubeconfig.read_text())
    users = {u["name"]: u["user"].get("token") for u in config["users"]}
    return str(users["kube-llm-sandbox-cockpit"])


def test_a_lone_surrogate_is_refused_and_lists_keep_working(sandbox: RunningSandbox) -> None:
    escaped = json.dumps(
        {
            **a_pod("surrogate-a"),
            "metadata": {"name": "surrogate-a", "annotations": {"a": "\ud800"}},
        }
    ).encode()
    assert b"\\ud800" in escaped
    raw_bytes = (
        b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "surrogate-b"}, "spec": '
        b'{"containers": [{"name": "app", "image": "busybox:1", "env": [{"name": "X", '
        b'"value": "\xed\xa0\x80"}]}]}}'
    )
    as_key = b'{"metadata": {"name": "surrogate-c", "labels": {"\\udfff": "x"}}}'
    with sandbox.http() as client:
        for body, path in ((escaped, "pods"), (raw_bytes, "pods"), (as_key, "configmaps")):
            response = client.post(
                f"{BASE}/{path}", content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 400, response.text[:300]
            assert "surrogate" in status_of(response)["message"]
        # Nor through a patch, or a YAML body.
        patch = client.patch(
            f"{BASE}/configmaps",
            content=b"{}",
            headers={"content-type": "application/merge-patch+json"},
        )
        assert patch.status_code in (404, 405)
        yaml_body = b'metadata:\n  name: surrogate-d\ndata:\n  k: "\\ud800"\n'
        response = client.post(
            f"{BASE}/configmaps", content=yaml_body, headers={"content-type": "application/yaml"}
        )
        assert response.status_code == 400, response.text[:300]
        assert client.get(f"{BASE}/pods").status_code == 200
        assert client.get(f"{BASE}/configmaps").status_code == 200


def _send_huge_head(sandbox: RunningSandbox, size: int) -> bytes:
    """Send a request whose one header is `size` bytes, without a token; what came back."""
    context = ssl.create_default_context(cafile=str(sandbox.ca_file))
    host, port = sandbox.server.removeprefix("https://").split(":")
    with (
        socket.create_connection((host, int(port)), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        try:
            tls.sendall(f"GET /api/v1/pods HTTP/1.1\r\nHost: {host}\r\nX-Big: ".encode())
            piece = b"a" * (256 * 1024)
            for _ in range(size // len(piece)):
                tls.sendall(piece)
            tls.sendall(b"\r\n\r\n")
        except OSError:
            pass  # the server refused and closed while we were still sending
        received = b""
        try:
            while chunk := tls.recv(65536):
                received += chunk
        except OSError:
            pass
        return received


def test_request_heads_over_one_mib_get_431_before_authentication(
    sandbox: RunningSandbox,
) -> None:
    before = peak_rss(sandbox)
    for _ in range(4):
        answer = _send_huge_head(sandbox, 16 * MiB)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431"), answer[:200]
        assert json.loads(body)["code"] == 431
    grown = peak_rss(sandbox) - before
    assert grown < 16 * MiB, f"peak RSS grew by {grown / MiB:.0f} MiB"
    # A head just under the limit still reaches authentication and RBAC: without a token the
    # request is system:anonymous, whom RBAC refuses the pods (403, as a cluster answers).
    answer = _send_huge_head(sandbox, 512 * 1024)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    assert b'User \\"system:anonymous\\" cannot list resource \\"pods\\"' in answer
    with sandbox.http() as client:
        assert client.get(f"{BASE}/pods").status_code == 200


@pytest.mark.parametrize(
    "selector",
    [
        "app.kubernetes.io/name!=llm backend",
        "!!==",
        "app in (a b)",
        "a=b=c",
        "Bad Key=x",
        "app=" + "v" * 64,
        "x > y",
    ],
)
def test_bad_label_selectors_are_400(sandbox: RunningSandbox, selector: str) -> None:
    with sandbox.http() as client:
        listed = client.get(f"{BASE}/pods", params={"labelSelector": selector})
        assert listed.status_code == 400, listed.text[:300]
        assert "unable to parse requirement" in status_of(listed)["message"]
        watched = client.get(f"{BASE}/pods", params={"labelSelector": selector, "watch": "1"})
        assert watched.status_code == 400
    # A dry-run delete with such a selector deletes nothing, as kubectl sees it.
    result = sandbox.kubectl("delete", "pods", "-n", NAMESPACE, "-l", selector, "--dry-run=server")
    assert result.returncode != 0
    assert "deleted" not in result.stdout


def test_good_label_selectors_still_select(sandbox: RunningSandbox) -> None:
    with sandbox.http() as client:
        for selector, some in (
            ("app.kubernetes.io/name=llm-backend", True),
            ("app.kubernetes.io/name in (llm-backend, other),!nothing", True),
            ("app.kubernetes.io/name notin (llm-backend)", True),  # the frontend's pods
            ("app.kubernetes.io/name notin (llm-backend, llm-frontend)", False),
        ):
            listed = client.get(f"{BASE}/pods", params={"labelSelector": selector})
            assert listed.status_code == 200, listed.text
            assert bool(listed.json()["items"]) is some, selector


def test_field_selectors_are_the_ones_each_resource_supports(sandbox: RunningSandbox) -> None:
    with sandbox.http() as client:
        for path, selector in (
            ("pods", "spec.nodeName=kube-llm-sandbox"),
            ("pods", "status.phase=Running,metadata.name!=x"),
            ("events", "involvedObject.kind=Pod,type=Normal"),
            ("configmaps", "metadata.name=nothing"),
        ):
            listed = client.get(f"{BASE}/{path}", params={"fieldSelector": selector})
            assert listed.status_code == 200, (selector, listed.text)
        for path, selector in (
            ("pods", "spec.containers=x"),
            ("configmaps", "data.key=x"),
            ("events", "nonsense"),
        ):
            listed = client.get(f"{BASE}/{path}", params={"fieldSelector": selector})
            assert listed.status_code == 400, (selector, listed.text)
            status_of(listed)
        unknown = client.get(f"{BASE}/pods", params={"fieldSelector": "spec.bogus=1"})
        assert status_of(unknown)["message"] == "field label not supported: spec.bogus"


def _deployment(client: Any) -> dict[str, Any]:
    listed = client.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments").json()
    return dict(listed["items"][0])


def test_integers_beyond_the_api_types_are_422(sandbox: RunningSandbox) -> None:
    with sandbox.http() as client:
        name = _deployment(client)["metadata"]["name"]
        url = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}"
        merge = {"content-type": "application/merge-patch+json"}
        for replicas in (2147483648, -2147483649, 10**30):
            response = client.patch(url, json={"spec": {"replicas": replicas}}, headers=merge)
            assert response.status_code == 422, response.text[:300]
            response = client.patch(
                f"{url}/scale", json={"spec": {"replicas": replicas}}, headers=merge
            )
            assert response.status_code == 422, response.text[:300]
            assert status_of(response)["reason"] == "Invalid"
        scale = client.get(f"{url}/scale").json()
        scale["spec"]["replicas"] = 2147483648
        assert client.put(f"{url}/scale", json=scale).status_code == 422
        for grace in (10**20, 1e20, 2**63):
            response = client.post(
                f"{BASE}/pods",
                content=json.dumps(a_pod("big-grace", terminationGracePeriodSeconds=grace)),
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 422, (grace, response.text[:300])
        # int64 takes what int32 does not.
        response = client.post(
            f"{BASE}/pods",
            json=a_pod("big-grace", terminationGracePeriodSeconds=2**40),
            params={"dryRun": "All"},
        )
        assert response.status_code == 201, response.text[:300]
        assert client.get(url).json()["spec"]["replicas"] < 100


def test_a_user_without_the_right_learns_403_not_404(sandbox: RunningSandbox) -> None:
    with sandbox.http(token=cockpit_token(sandbox)) as client:
        for path in (
            f"{BASE}/secrets",
            f"{BASE}/secrets/anything",
            f"{BASE}/pods/some-pod/exec",
            "/apis/batch/v1/namespaces/kube-llm/jobs",
        ):
            response = client.get(path)
            assert response.status_code == 403, (path, response.text[:300])
            assert status_of(response)["reason"] == "Forbidden"
    with sandbox.http() as client:
        # The admin may do anything, so learns what is not served.
        assert client.get(f"{BASE}/secrets").status_code == 404


def test_lists_page_with_limit_and_continue(sandbox: RunningSandbox) -> None:
    with sandbox.http() as client:
        for index in range(7):
            made = client.post(
                f"{BASE}/configmaps",
                json={"metadata": {"name": f"page-{index}", "labels": {"paged": "yes"}}},
            )
            assert made.status_code == 201, made.text
        names: list[str] = []
        params: dict[str, str] = {"labelSelector": "paged=yes", "limit": "3"}
        pages = 0
        while True:
            listed = client.get(f"{BASE}/configmaps", params=params).json()
            pages += 1
            names += [item["metadata"]["name"] for item in listed["items"]]
            token = listed["metadata"].get("continue")
            if not token:
                assert "remainingItemCount" not in listed["metadata"]
                break
            assert listed["metadata"]["remainingItemCount"] == 7 - len(names)
            params = {"labelSelector": "paged=yes", "limit": "3", "continue": token}
        assert pages == 3
        assert names == [f"page-{index}" for index in range(7)]
        # kubectl pages with limit=500 and Table output; the official client pages too.
        table = client.get(
            f"{BASE}/configmaps",
            params={"labelSelector": "paged=yes", "limit": "2"},
            headers={"accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        ).json()
        assert len(table["rows"]) == 2
        assert table["metadata"]["continue"]
    listed_by_kubectl = sandbox.kubectl(
        "get", "configmaps", "-n", NAMESPACE, "-l", "paged=yes", "--chunk-size=2", "-o", "name"
    )
    assert listed_by_kubectl.stdout.split() == [f"configmap/page-{i}" for i in range(7)]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "abc"},
        {"limit": "-1"},
        {"resourceVersion": "abc"},
        {"continue": "not-a-token"},
        {
            "continue": "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MSwic3RhcnQiOiJhL2IifQ",
            "resourceVersion": "5",
        },
    ],
)
def test_bad_list_parameters_are_400(sandbox: RunningSandbox, params: dict[str, str]) -> None:
    with sandbox.http() as client:
        response = client.get(f"{BASE}/configmaps", params=params)
        assert response.status_code == 400, response.text[:300]
        status_of(response)
        if "resourceVersion" in params and len(params) == 1:
            one = client.get(f"{BASE}/configmaps/page-0", params=params)
            assert one.status_code == 400


def test_every_error_is_a_status(sandbox: RunningSandbox) -> None:
    with sandbox.http() as client:
        wrong_method = client.get("/sandbox/faults")
        assert wrong_method.status_code == 405
        assert status_of(wrong_method)["reason"] == "MethodNotAllowed"
        nowhere = client.get("/no/such/path")
        assert nowhere.status_code == 404
        status_of(nowhere)
    with sandbox.http(token="wrong") as client:
        status_of(client.get(f"{BASE}/pods"))
