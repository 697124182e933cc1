"""The sandbox's API against the official clients: `kubernetes` (sync), `kubernetes.aio`, kubectl.

One sandbox (fake engine) serves the whole module; each test leaves two Ready pods behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, Protocol, TypeVar

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from tests.sandbox.harness import (
    NAMESPACE,
    SELECTOR,
    RunningSandbox,
    fake_engine_cmd,
    start_sandbox,
    wait_for,
)

pytestmark = pytest.mark.slow(
    reason="a sandbox for the module; kubectl, clients and watches against it"
)

WATCH_HISTORY = 40

Meta = TypeVar("Meta", covariant=True)


class HasMetadata(Protocol[Meta]):
    """An API object or list; the client types its metadata as optional."""

    @property
    def metadata(self) -> Meta | None:
        """The object's or list's metadata."""
        ...


class Named(Protocol):
    """Object metadata (sync or aio client), as far as a name goes."""

    @property
    def name(self) -> str | None:
        """The object's name."""
        ...


def meta(obj: HasMetadata[Meta]) -> Meta:
    """An object's or list's metadata, which the API server always sends."""
    assert obj.metadata is not None, obj
    return obj.metadata


def name_of(obj: HasMetadata[Named]) -> str:
    """An object's name, which the API server always sends."""
    name = meta(obj).name
    assert name is not None, obj
    return name


def status_body(error: ApiException) -> Any:
    """The Status object an API error carried as its body."""
    assert error.body is not None, error
    return json.loads(error.body)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    running = start_sandbox(
        tmp_path_factory.mktemp("conformance"),
        "--hpa-sync-seconds",
        "2",
        "--watch-history",
        str(WATCH_HISTORY),
        "--bookmark-seconds",
        "1",
        engine_cmd=fake_engine_cmd(busy_ms_per_token=0, token_delay=0.05, tokens=20),
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api(sandbox: RunningSandbox) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    yield api_client
    api_client.close()


def two_ready(sandbox: RunningSandbox) -> list[str]:
    """Wait until the Deployment is back at two Ready pods and nothing terminates."""

    def settled() -> list[str] | None:
        pods = sandbox.pods()
        ready = sandbox.ready_pods()
        return ready if len(ready) == 2 and len(pods) == 2 else None

    return wait_for(settled, 60, "two Ready pods and no terminating one")


def list_to_watch(
    sandbox: RunningSandbox, api: client.ApiClient
) -> tuple[client.CoreV1Api, str, str]:
    """Once two pods are Ready: the core API, a pod list's resourceVersion and one pod's name."""
    two_ready(sandbox)
    core = client.CoreV1Api(api)
    listing = core.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR)
    resource_version = meta(listing).resource_version
    assert resource_version is not None
    return core, resource_version, name_of(listing.items[0])


def test_list_with_label_selectors(sandbox: RunningSandbox, api: client.ApiClient) -> None:
    two_ready(sandbox)
    core = client.CoreV1Api(api)
    assert len(core.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR).items) == 2
    assert (
        len(
            core.list_namespaced_pod(
                NAMESPACE, label_selector="app.kubernetes.io/name in (llm-backend,x)"
            ).items
        )
        == 2
    )
    # The only other pods are the frontend's (components/frontend, 2 replicas).
    frontend = sorted(
        name_of(p)
        for p in core.list_namespaced_pod(
            NAMESPACE, label_selector="app.kubernetes.io/name=llm-frontend"
        ).items
    )
    assert len(frontend) == 2
    for selector in (
        "app.kubernetes.io/name!=llm-backend",
        "app.kubernetes.io/name notin (llm-backend)",
    ):
        others = core.list_namespaced_pod(NAMESPACE, label_selector=selector).items
        assert sorted(name_of(p) for p in others) == frontend
    assert len(core.list_namespaced_pod(NAMESPACE, label_selector="pod-template-hash").items) == 4
    assert core.list_namespaced_pod(NAMESPACE, label_selector="!pod-template-hash").items == []
    assert (
        core.list_namespaced_pod(NAMESPACE, label_selector="app.kubernetes.io/name=other").items
        == []
    )
    name = name_of(core.list_namespaced_pod(NAMESPACE).items[0])
    by_name = core.list_namespaced_pod(NAMESPACE, field_selector=f"metadata.name={name}").items
    assert [name_of(p) for p in by_name] == [name]


def test_get_pod_has_real_shapes(sandbox: RunningSandbox, api: client.ApiClient) -> None:
    two_ready(sandbox)
    core = client.CoreV1Api(api)
    name = name_of(core.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR).items[0])
    pod = core.read_namespaced_pod(name, NAMESPACE)
    metadata, status = meta(pod), pod.status
    assert metadata.uid
    assert metadata.resource_version is not None
    assert int(metadata.resource_version) > 0
    assert metadata.creation_timestamp is not None
    assert metadata.owner_references
    owner = metadata.owner_references[0]
    # The pod's controller is its ReplicaSet (`<deployment>-<pod-template-hash>`), as upstream.
    pod_hash = (metadata.labels or {})["pod-template-hash"]
    assert (owner.kind, owner.name, owner.controller) == (
        "ReplicaSet",
        f"llm-backend-{pod_hash}",
        True,
    )
    assert status is not None
    assert status.phase == "Running"
    assert status.conditions is not None
    conditions = {c.type: c.status for c in status.conditions}
    assert (
        conditions["Ready"] == conditions["ContainersReady"] == conditions["Initialized"] == "True"
    )
    assert conditions["PodScheduled"] == "True"
    assert status.container_statuses is not None
    (backend,) = status.container_statuses
    assert backend.name == "backend"
    assert backend.ready
    assert backend.started
    assert backend.state is not None
    assert backend.state.running is not None
    assert backend.state.running.started_at is not None
    assert backend.restart_count == 0
    assert status.init_container_statuses is not None
    init = {s.name: s for s in status.init_container_statuses}
    engine_state, pull_state = init["engine"].state, init["model-pull"].state
    assert engine_state is not None
    assert engine_state.running is not None
    assert init["engine"].started
    assert pull_state is not None
    assert pull_state.terminated is not None
    assert pull_state.terminated.reason == "Completed"
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_pod("no-such-pod", NAMESPACE)
    assert missing.value.status == 404
    not_found = status_body(missing.value)
    assert not_found["kind"] == "Status"
    assert not_found["reason"] == "NotFound"
    assert not_found["message"] == 'pods "no-such-pod" not found'


def test_a_token_the_api_server_does_not_know_gets_401(sandbox: RunningSandbox) -> None:
    with sandbox.http(token="wrong") as http:
        for path in (f"/api/v1/namespaces/{NAMESPACE}/pods", "/version", "/api"):
            response = http.get(path)
            assert response.status_code == 401, path
            assert response.json()["kind"] == "Status"
            assert response.json()["reason"] == "Unauthorized"


def test_a_request_without_credentials_is_system_anonymous(sandbox: RunningSandbox) -> None:
    # kube-apiserver's default --anonymous-auth=true: no credentials at all is not a 401 but
    # the user system:anonymous, who may read what system:public-info-viewer allows and gets
    # RBAC's 403 for the rest (pkg/kubeapiserver/authenticator/config.go, bootstrappolicy).
    with sandbox.http(token="") as http:
        for public in ("/version", "/healthz", "/livez", "/readyz"):
            assert http.get(public).status_code == 200, public
        pods = http.get(f"/api/v1/namespaces/{NAMESPACE}/pods")
        assert pods.status_code == 403
        assert pods.json()["reason"] == "Forbidden"
        assert pods.json()["message"] == (
            'pods is forbidden: User "system:anonymous" cannot list resource "pods" in API '
            f'group "" in the namespace "{NAMESPACE}"'
        )
        scale = http.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/llm-backend/scale")
        assert scale.status_code == 403
        assert scale.json()["message"] == (
            'deployments.apps "llm-backend" is forbidden: User "system:anonymous" cannot get '
            f'resource "deployments/scale" in API group "apps" in the namespace "{NAMESPACE}"'
        )
        for path in ("/api", "/apis/apps/v1", "/openapi/v3", "/sandbox/faults"):
            refused = http.get(path)
            assert refused.status_code == 403, path
            assert refused.json()["message"] == (
                f'forbidden: User "system:anonymous" cannot get path "{path}"'
            )
        review = http.post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        assert review.status_code == 403, review.text
        # "Bearer" with no token after it is no token (bearertoken.go), so also anonymous.
        empty = http.get("/version", headers={"Authorization": "Bearer"})
        assert empty.status_code == 200
    # The official client with no credentials is told what a cluster tells it. (kubectl with
    # an empty user asks for a username on its terminal first, as against a cluster.)
    configuration = client.Configuration()
    configuration.host = sandbox.server
    configuration.ssl_ca_cert = str(sandbox.ca_file)
    with client.ApiClient(configuration) as api, pytest.raises(ApiException) as refused_list:
        client.CoreV1Api(api).list_namespaced_pod(NAMESPACE)
    assert refused_list.value.status == 403
    assert 'User "system:anonymous" cannot list' in status_body(refused_list.value)["message"]


@pytest.mark.serial
def test_keep_alive_requests_are_not_held_back_by_delayed_acks(sandbox: RunningSandbox) -> None:
    # Without TCP_NODELAY each response's body waited ~40 ms behind its headers for the
    # client's delayed ACK; a health check through the service proxy then took ~48 ms instead
    # of ~3. The bound is a generous sanity limit, ten times what a quiet machine needs.
    with sandbox.http() as http:
        http.get("/version").raise_for_status()  # connect and handshake outside the timing
        samples = []
        for _ in range(15):
            started = time.perf_counter()
            http.get("/version").raise_for_status()
            samples.append(time.perf_counter() - started)
    samples.sort()
    assert samples[len(samples) // 2] < 0.02, samples


def test_watch_resumes_from_a_resource_version(
    sandbox: RunningSandbox, api: client.ApiClient
) -> None:
    core, resource_version, name = list_to_watch(sandbox, api)
    core.patch_namespaced_pod(name, NAMESPACE, {"metadata": {"annotations": {"test/mark": "1"}}})
    seen = []
    stream = watch.Watch().stream(
        core.list_namespaced_pod,
        NAMESPACE,
        label_selector=SELECTOR,
        resource_version=resource_version,
        timeout_seconds=2,
    )
    for event in stream:
        # The sandbox's own annotations (what runs in place of each image) come along.
        annotations = event["object"].metadata.annotations or {}
        seen.append((event["type"], event["object"].metadata.name, annotations.get("test/mark")))
    assert ("MODIFIED", name, "1") in seen


def test_watch_from_a_compacted_version_gets_410(
    sandbox: RunningSandbox, api: client.ApiClient
) -> None:
    core, resource_version, name = list_to_watch(sandbox, api)
    for index in range(WATCH_HISTORY + 5):
        core.patch_namespaced_pod(
            name, NAMESPACE, {"metadata": {"annotations": {"test/n": str(index)}}}
        )
    with pytest.raises(ApiException) as gone:
        for _ in watch.Watch().stream(
            core.list_namespaced_pod,
            NAMESPACE,
            resource_version=resource_version,
            timeout_seconds=2,
        ):
            pass
    assert gone.value.status == 410
    # A fresh list gives a version that can be watched again.
    fresh = meta(core.list_namespaced_pod(NAMESPACE)).resource_version
    list(
        watch.Watch().stream(
            core.list_namespaced_pod, NAMESPACE, resource_version=fresh, timeout_seconds=1
        )
    )


def test_watch_sends_bookmarks(sandbox: RunningSandbox) -> None:
    with sandbox.http() as http:
        rv = http.get(f"/api/v1/namespaces/{NAMESPACE}/pods").json()["metadata"]["resourceVersion"]
        params = {
            "watch": "true",
            "resourceVersion": rv,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "3",
        }
        with http.stream("GET", f"/api/v1/namespaces/{NAMESPACE}/pods", params=params) as response:
            events = [json.loads(line) for line in response.iter_lines() if line.strip()]
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks, events
    assert int(bookmarks[-1]["object"]["metadata"]["resourceVersion"]) >= int(rv)


def test_eviction_is_refused_when_it_would_break_the_budget(
    sandbox: RunningSandbox, api: client.ApiClient
) -> None:
    first, second = two_ready(sandbox)
    core = client.CoreV1Api(api)

    def evict(name: str) -> None:
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=NAMESPACE))
        core.create_namespaced_pod_eviction(name, NAMESPACE, body)

    evict(first)
    assert meta(core.read_namespaced_pod(first, NAMESPACE)).deletion_timestamp is not None
    with pytest.raises(ApiException) as refused:
        evict(second)
    assert refused.value.status == 429
    status = status_body(refused.value)
    assert status["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert status["details"]["causes"][0]["reason"] == "DisruptionBudget"
    assert "needs 1 healthy pods and has 1 currently" in status["details"]["causes"][0]["message"]
    assert meta(core.read_namespaced_pod(second, NAMESPACE)).deletion_timestamp is None
    two_ready(sandbox)


def test_delete_is_graceful_and_the_pod_is_replaced(
    sandbox: RunningSandbox, api: client.ApiClient
) -> None:
    victim, survivor = two_ready(sandbox)
    core = client.CoreV1Api(api)
    core.delete_namespaced_pod(victim, NAMESPACE)
    terminating = core.read_namespaced_pod(victim, NAMESPACE)
    assert meta(terminating).deletion_timestamp is not None
    assert meta(terminating).deletion_grace_period_seconds == 35
    # The replacement exists at once; the terminating pod takes no new traffic.
    names = {name_of(p) for p in core.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR).items}
    assert len(names - {victim, survivor}) == 1
    with sandbox.http() as http:
        served = {
            http.get(
                f"/api/v1/namespaces/{NAMESPACE}/services/llm-backend:http/proxy/healthz"
            ).headers.get("x-served-by")
            for _ in range(6)
        }
    assert victim not in served
    ready = two_ready(sandbox)
    assert victim not in ready
    assert survivor in ready
    reasons = {
        e.reason
        for e in core.list_namespaced_event(
            NAMESPACE, field_selector=f"involvedObject.name={victim}"
        ).items
    }
    assert {"Scheduled", "Pulled", "Created", "Started", "Killing"} <= reasons


def test_scale_subresource(sandbox: RunningSandbox, api: client.ApiClient) -> None:
    two_ready(sandbox)
    apps = client.AppsV1Api(api)
    autoscaling = client.AutoscalingV2Api(api)
    # The HPA owns the replica count (it would undo a manual scale at its next sync, as on a
    # cluster): take it away for this test, then put it back.
    hpa = api.sanitize_for_serialization(
        autoscaling.read_namespaced_horizontal_pod_autoscaler("llm-backend", NAMESPACE)
    )
    autoscaling.delete_namespaced_horizontal_pod_autoscaler("llm-backend", NAMESPACE)
    scale = apps.read_namespaced_deployment_scale("llm-backend", NAMESPACE)
    assert scale.spec is not None
    assert scale.spec.replicas == 2
    assert scale.status is not None
    assert scale.status.selector == SELECTOR
    apps.patch_namespaced_deployment_scale("llm-backend", NAMESPACE, {"spec": {"replicas": 3}})
    wait_for(lambda: len(sandbox.ready_pods()) == 3, 60, "a third Ready pod")
    deployment_status = apps.read_namespaced_deployment("llm-backend", NAMESPACE).status
    assert deployment_status is not None
    assert deployment_status.ready_replicas == 3
    apps.replace_namespaced_deployment_scale(
        "llm-backend",
        NAMESPACE,
        client.V1Scale(
            metadata=client.V1ObjectMeta(name="llm-backend", namespace=NAMESPACE),
            spec=client.V1ScaleSpec(replicas=2),
        ),
    )
    two_ready(sandbox)
    hpa["metadata"] = {"name": "llm-backend", "labels": hpa["metadata"].get("labels", {})}
    hpa.pop("status", None)
    autoscaling.create_namespaced_horizontal_pod_autoscaler(NAMESPACE, hpa)


def test_service_proxy_spreads_and_streams(sandbox: RunningSandbox) -> None:
    ready = set(two_ready(sandbox))
    path = f"/api/v1/namespaces/{NAMESPACE}/services/llm-backend:http/proxy"
    with sandbox.http() as http:
        served = {http.get(f"{path}/readyz").headers["x-served-by"] for _ in range(4)}
        assert served == ready
        body = {
            "model": "smollm2:135m",
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }
        start = time.monotonic()
        arrivals = []
        with http.stream("POST", f"{path}/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data:"):
                    arrivals.append(time.monotonic() - start)
    # 20 tokens 50 ms apart: the first arrives long before the last (no buffering).
    assert len(arrivals) >= 10
    assert arrivals[-1] - arrivals[0] > 0.5
    pod = sorted(ready)[0]
    with sandbox.http() as http:
        metrics = http.get(f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}:8000/proxy/metrics")
    assert metrics.status_code == 200
    assert "kube_llm_inflight" in metrics.text
    assert metrics.headers["x-served-by"] == pod


def test_hpa_and_metrics_api(sandbox: RunningSandbox, api: client.ApiClient) -> None:
    two_ready(sandbox)

    def status_with_metrics() -> client.V2HorizontalPodAutoscalerStatus | None:
        status = (
            client.AutoscalingV2Api(api)
            .read_namespaced_horizontal_pod_autoscaler("llm-backend", NAMESPACE)
            .status
        )
        return status if status is not None and status.current_metrics else None

    status = wait_for(status_with_metrics, 30, "HPA current metrics")
    assert status.current_replicas == 2
    assert status.desired_replicas == 2
    assert status.current_metrics is not None
    kinds = set()
    for metric in status.current_metrics:
        assert metric.container_resource is not None
        kinds.add((metric.type, metric.container_resource.name))
    assert kinds == {("ContainerResource", "cpu"), ("ContainerResource", "memory")}
    assert status.conditions is not None
    assert {c.type for c in status.conditions} >= {"AbleToScale", "ScalingActive"}
    metrics = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "metrics.k8s.io", "v1beta1", NAMESPACE, "pods"
    )
    assert isinstance(metrics, dict)
    assert metrics["kind"] == "PodMetricsList"
    assert metrics["items"]
    containers = {c["name"] for c in metrics["items"][0]["containers"]}
    assert containers == {"engine", "backend"}


def test_kubectl_get_and_delete(sandbox: RunningSandbox) -> None:
    victim, _ = two_ready(sandbox)
    result = sandbox.kubectl("get", "pods,deploy,hpa,events", "-n", NAMESPACE)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "pod/" + victim in out
    assert "2/2" in out
    assert "Running" in out
    assert "deployment.apps/llm-backend" in out
    assert "horizontalpodautoscaler.autoscaling/llm-backend" in out
    assert "cpu: " in out
    assert "Scheduled" in out
    assert "SuccessfulCreate" in out
    result = sandbox.kubectl("get", "pdb,svc,cm", "-n", NAMESPACE)
    assert result.returncode == 0, result.stderr
    logs = sandbox.kubectl("logs", victim, "-c", "backend", "-n", NAMESPACE)
    assert logs.returncode == 0, logs.stderr
    assert "Application startup complete" in logs.stdout
    result = sandbox.kubectl("delete", "pod", victim, "-n", NAMESPACE)
    assert result.returncode == 0, result.stderr
    assert f'pod "{victim}" deleted' in result.stdout
    # kubectl waited for the pod to be gone.
    missing = sandbox.kubectl("get", "pod", victim, "-n", NAMESPACE)
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr
    two_ready(sandbox)


async def test_aio_client(sandbox: RunningSandbox) -> None:
    from kubernetes.aio import client as aio_client
    from kubernetes.aio import config as aio_config
    from kubernetes.aio import watch as aio_watch

    await _settle(sandbox)
    api_client = await aio_config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    async with api_client:
        core = aio_client.CoreV1Api(api_client)
        apps = aio_client.AppsV1Api(api_client)
        listing = await core.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR)
        assert len(listing.items) == 2
        first, second = (name_of(p) for p in listing.items)
        pod = await core.read_namespaced_pod(first, NAMESPACE)
        assert meta(pod).uid == meta(listing.items[0]).uid
        scale = await apps.read_namespaced_deployment_scale("llm-backend", NAMESPACE)
        assert scale.spec is not None
        assert scale.spec.replicas == 2
        await core.create_namespaced_pod_eviction(
            first, NAMESPACE, aio_client.V1Eviction(metadata=aio_client.V1ObjectMeta(name=first))
        )
        with pytest.raises(aio_client.ApiException) as refused:
            await core.create_namespaced_pod_eviction(
                second,
                NAMESPACE,
                aio_client.V1Eviction(metadata=aio_client.V1ObjectMeta(name=second)),
            )
        assert refused.value.status == 429
        seen: list[tuple[str, str]] = []
        stream = aio_watch.Watch().stream(
            core.list_namespaced_pod,
            NAMESPACE,
            label_selector=SELECTOR,
            resource_version=meta(listing).resource_version,
            timeout_seconds=3,
        )
        async for event in stream:
            seen.append((event["type"], event["object"].metadata.name))
        assert ("MODIFIED", first) in seen
        assert any(kind == "ADDED" and name not in (first, second) for kind, name in seen)
        await _settle(sandbox)
        listing = await core.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR)
        victim = name_of(listing.items[0])
        await core.delete_namespaced_pod(victim, NAMESPACE, grace_period_seconds=0)
        with pytest.raises(aio_client.ApiException) as gone:
            await core.read_namespaced_pod(victim, NAMESPACE)
        assert gone.value.status == 404
        with sandbox.http() as http:  # make sure version 1 is out of the history
            http.post("/sandbox/faults", json={"compact": True}).raise_for_status()
        with pytest.raises(aio_client.ApiException) as expired:
            async for _ in aio_watch.Watch().stream(
                core.list_namespaced_pod, NAMESPACE, resource_version="1", timeout_seconds=2
            ):
                pass
        assert expired.value.status == 410
    await _settle(sandbox)


async def _settle(sandbox: RunningSandbox) -> None:
    import asyncio

    await asyncio.to_thread(two_ready, sandbox)


def test_fault_injection_for_client_resilience(sandbox: RunningSandbox) -> None:
    two_ready(sandbox)
    with sandbox.http() as http:
        assert (
            http.post("/sandbox/faults", json={"fail_next": 1, "fail_code": 503}).status_code == 200
        )
        failed = http.get(f"/api/v1/namespaces/{NAMESPACE}/pods")
        assert failed.status_code == 503
        assert failed.json()["kind"] == "Status"
        listing = http.get(f"/api/v1/namespaces/{NAMESPACE}/pods")
        assert listing.status_code == 200
        rv = listing.json()["metadata"]["resourceVersion"]
        name = listing.json()["items"][0]["metadata"]["name"]
        http.patch(
            f"/api/v1/namespaces/{NAMESPACE}/pods/{name}",
            json={"metadata": {"annotations": {"test/fault": "1"}}},
            headers={"Content-Type": "application/merge-patch+json"},
        ).raise_for_status()
        http.post("/sandbox/faults", json={"compact": True})
        params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "1"}
        with http.stream("GET", f"/api/v1/namespaces/{NAMESPACE}/pods", params=params) as response:
            events = [json.loads(line) for line in response.iter_lines() if line.strip()]
    assert [e["type"] for e in events] == ["ERROR"]
    with sandbox.http() as http:
        http.post("/sandbox/faults", json={"stall_next": 1, "stall_seconds": 1.5})
        started = time.monotonic()
        assert http.get(f"/api/v1/namespaces/{NAMESPACE}/pods").status_code == 200
        assert time.monotonic() - started >= 1.5
        # Dropping watches ends open streams cleanly, as a lost connection would.
        rv = http.get(f"/api/v1/namespaces/{NAMESPACE}/pods").json()["metadata"]["resourceVersion"]
        params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "30"}
        with http.stream("GET", f"/api/v1/namespaces/{NAMESPACE}/pods", params=params) as stream:
            with sandbox.http() as other:
                other.post("/sandbox/faults", json={"drop_watches": True})
            started = time.monotonic()
            for _ in stream.iter_lines():
                pass
            assert time.monotonic() - started < 10
    assert events[0]["object"]["code"] == 410
    assert events[0]["object"]["reason"] == "Expired"


def test_what_a_user_meets_is_clear_and_defaulted(sandbox: RunningSandbox) -> None:
    name = two_ready(sandbox)[0]
    pod_path = f"/api/v1/namespaces/{NAMESPACE}/pods/{name}"
    with sandbox.http() as http:
        pod = http.get(pod_path).json()
        unknown = http.get(f"{pod_path}/log", params={"container": "nosuch"})
        pull_log = http.get(f"{pod_path}/log", params={"container": "model-pull"})
        node_metrics = http.get("/apis/metrics.k8s.io/v1beta1/nodes")
    # The API server's defaults, as `kubectl describe` shows them on a cluster.
    backend = next(c for c in pod["spec"]["containers"] if c["name"] == "backend")
    assert backend["readinessProbe"]["successThreshold"] == 1
    assert backend["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
    assert backend["ports"][0]["protocol"] == "TCP"
    assert backend["imagePullPolicy"] == "IfNotPresent"
    assert unknown.status_code == 400
    assert unknown.json()["message"] == f"container nosuch is not valid for pod {name}"
    # The simulated init container ran, so it has a log (not "waiting to start").
    assert pull_log.status_code == 200
    assert "nothing to pull" in pull_log.text
    assert node_metrics.status_code == 404
    assert "pod metrics only" in node_metrics.json()["message"]
    # What the sandbox cannot do says so, where kubectl users meet it.
    forward = sandbox.kubectl("port-forward", f"pod/{name}", "0:8000", "-n", NAMESPACE)
    assert forward.returncode != 0
    assert "the sandbox has no port-forward" in forward.stderr
    # ReplicaSets are served now: the history kubectl reads from them is there.
    history = sandbox.kubectl("rollout", "history", "deployment/llm-backend", "-n", NAMESPACE)
    assert history.returncode == 0, history.stderr
    assert history.stdout.split()[-2:] == ["1", "<none>"]

    # Endpoints carry the pods' target port (the named port `http`), as kubectl shows them.
    def endpoints_column() -> str | None:
        shown = sandbox.kubectl("get", "endpoints", "llm-backend", "-n", NAMESPACE)
        assert shown.returncode == 0, shown.stderr
        column = shown.stdout.split()[4]  # NAME ENDPOINTS AGE, then the row
        return column if column == "127.0.0.1:8000,127.0.0.1:8000" else None

    wait_for(endpoints_column, 10, "both pods' endpoints on port 8000")
    # A named get prints the same columns as a list.
    shown = sandbox.kubectl("get", "pod", name, "-n", NAMESPACE)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split()[:6] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", name]


def test_unknown_path_is_a_status_404(sandbox: RunningSandbox) -> None:
    with sandbox.http() as http:
        response = http.get("/apis/nope.example.com/v1/things")
    assert response.status_code == 404
    assert response.json()["kind"] == "Status"


def test_cockpit_context_has_exactly_its_role(sandbox: RunningSandbox) -> None:
    two_ready(sandbox)
    api_client = config.new_client_from_config(
        config_file=str(sandbox.kubeconfig), context="kube-llm-sandbox-cockpit"
    )
    with api_client:
        core = client.CoreV1Api(api_client)
        pods = core.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR).items
        assert len(pods) == 2
        core.list_namespaced_event(NAMESPACE)
        client.AppsV1Api(api_client).read_namespaced_deployment("llm-backend", NAMESPACE)
        client.AutoscalingV2Api(api_client).read_namespaced_horizontal_pod_autoscaler(
            "llm-backend", NAMESPACE
        )
        client.CustomObjectsApi(api_client).list_namespaced_custom_object(
            "metrics.k8s.io", "v1beta1", NAMESPACE, "pods"
        )
        name = name_of(pods[0])
        proxied = core.connect_get_namespaced_pod_proxy_with_path(
            f"{name}:8000", NAMESPACE, "healthz"
        )
        assert "ok" in str(proxied).lower()
        # The client percent-encodes the path's slashes (v1%2Fmodels): still the same route.
        models = core.connect_get_namespaced_service_proxy_with_path(
            "llm-backend:http", NAMESPACE, "v1/models"
        )
        assert "smollm2:135m" in str(models)
        for forbidden in (
            lambda: core.list_namespaced_config_map(NAMESPACE),
            lambda: core.patch_namespaced_pod(
                name, NAMESPACE, {"metadata": {"labels": {"x": "y"}}}
            ),
            lambda: client.AppsV1Api(api_client).patch_namespaced_deployment_scale(
                "llm-backend", NAMESPACE, {"spec": {"replicas": 5}}
            ),
            lambda: core.list_pod_for_all_namespaces(),
        ):
            with pytest.raises(ApiException) as denied:
                forbidden()
            assert denied.value.status == 403
            status = status_body(denied.value)
            assert status["reason"] == "Forbidden"
            assert (
                'User "system:serviceaccount:kube-llm:kube-llm-cockpit" cannot' in status["message"]
            )


def test_access_reviews_answer_what_a_context_may_do(sandbox: RunningSandbox) -> None:
    def can_i(*args: str, context: str = "kube-llm-sandbox-cockpit") -> str:
        result = sandbox.kubectl("--context", context, "auth", "can-i", *args, "-n", NAMESPACE)
        return result.stdout.strip()

    assert can_i("delete", "pods") == "yes"
    assert can_i("create", "pods", "--subresource=eviction") == "yes"
    assert can_i("get", "pods", "--subresource=proxy") == "yes"
    assert can_i("delete", "deployments") == "no"
    assert can_i("patch", "deployments", "--subresource=scale") == "no"
    assert can_i("delete", "deployments", context="kube-llm-sandbox") == "yes"
    api_client = config.new_client_from_config(
        config_file=str(sandbox.kubeconfig), context="kube-llm-sandbox-cockpit"
    )
    with api_client:
        review = client.AuthorizationV1Api(api_client).create_self_subject_access_review(
            client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=client.V1ResourceAttributes(
                        namespace=NAMESPACE,
                        verb="watch",
                        group="autoscaling",
                        resource="horizontalpodautoscalers",
                    )
                )
            )
        )
    assert review.status is not None
    assert review.status.allowed is True


def test_kubectl_create_token_acts_as_the_service_account(sandbox: RunningSandbox) -> None:
    result = sandbox.kubectl("create", "token", "kube-llm-cockpit", "-n", NAMESPACE)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    with sandbox.http(token=token) as http:
        assert http.get(f"/api/v1/namespaces/{NAMESPACE}/pods").status_code == 200
        assert http.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps").status_code == 403
        assert http.post("/sandbox/faults", json={}).status_code == 403
