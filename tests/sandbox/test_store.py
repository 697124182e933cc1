"""The sandbox's API machinery in process: store, selectors, watches, patches, budgets, RBAC."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from starlette.testclient import TestClient

from sandbox.apiserver.auth import Authenticator, User, authorize
from sandbox.apiserver.patch import apply_patch, json_patch, merge_patch
from sandbox.apiserver.server import ApiServer, create_app
from sandbox.apiserver.tables import human_duration, pod_status_text
from sandbox.store.disruption import evict_pod, pdb_numbers
from sandbox.store.events import EventRecorder
from sandbox.store.store import (
    CONFIGMAPS,
    DEPLOYMENTS,
    EVENTS,
    PDBS,
    PODS,
    ROLEBINDINGS,
    ROLES,
    ApiError,
    Store,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)


def pod(name: str, ready: bool = True, labels: dict[str, str] | None = None) -> dict[str, object]:
    return {
        "metadata": {"name": name, "labels": labels or {"app": "web"}},
        "spec": {"containers": [{"name": "backend"}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_create_fills_server_metadata_and_versions_are_global() -> None:
    store = Store()
    first = store.create(PODS, pod("a"), "ns")
    second = store.create(CONFIGMAPS, {"metadata": {"name": "c"}, "data": {}}, "ns")
    assert first["metadata"]["uid"]
    assert first["metadata"]["creationTimestamp"].endswith("Z")
    assert (first["apiVersion"], first["kind"]) == ("v1", "Pod")
    assert (
        int(second["metadata"]["resourceVersion"]) == int(first["metadata"]["resourceVersion"]) + 1
    )
    with pytest.raises(ApiError) as duplicate:
        store.create(PODS, pod("a"), "ns")
    assert duplicate.value.code == 409
    assert duplicate.value.reason == "AlreadyExists"
    generated = store.create(PODS, {"metadata": {"generateName": "web-"}, "spec": {}}, "ns")
    assert generated["metadata"]["name"].startswith("web-")
    assert len(generated["metadata"]["name"]) == len("web-") + 5


def test_update_bumps_generation_on_spec_change_and_detects_conflicts() -> None:
    store = Store()
    deployment = store.create(
        DEPLOYMENTS, {"metadata": {"name": "d"}, "spec": {"replicas": 1}}, "ns"
    )
    assert deployment["metadata"]["generation"] == 1
    changed = store.update(DEPLOYMENTS, {**deployment, "spec": {"replicas": 3}}, check_version=True)
    assert changed["metadata"]["generation"] == 2
    status_only = store.update(
        DEPLOYMENTS, {**changed, "status": {"replicas": 3}}, subresource="status"
    )
    assert status_only["metadata"]["generation"] == 2
    assert status_only["status"] == {"replicas": 3}
    with pytest.raises(ApiError) as stale:
        store.update(DEPLOYMENTS, {**deployment, "spec": {"replicas": 5}}, check_version=True)
    assert stale.value.code == 409
    assert stale.value.reason == "Conflict"
    with pytest.raises(ApiError) as missing:
        store.get(DEPLOYMENTS, "ns", "nope")
    assert missing.value.message == 'deployments.apps "nope" not found'


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", {"a", "b"}),
        ("app==web,tier=db", {"b"}),
        ("tier!=db", {"a", "c"}),
        ("tier in (db, cache)", {"b"}),
        ("tier notin (db)", {"a", "c"}),
        ("tier", {"b"}),
        ("!tier", {"a", "c"}),
        ("app in (web,api),!tier", {"a", "c"}),
        ("", {"a", "b", "c"}),
    ],
)
def test_label_selectors(selector: str, expected: set[str]) -> None:
    objects = {
        "a": {"app": "web"},
        "b": {"app": "web", "tier": "db"},
        "c": {"app": "api"},
    }
    requirements = parse_label_selector(selector)
    assert {
        name for name, labels in objects.items() if labels_match(requirements, labels)
    } == expected


def test_field_selectors() -> None:
    event = {"metadata": {"name": "e"}, "involvedObject": {"name": "p", "kind": "Pod"}}
    assert fields_match(
        parse_field_selector("involvedObject.name=p,involvedObject.kind=Pod"), event
    )
    assert not fields_match(parse_field_selector("metadata.name!=e"), event)
    with pytest.raises(ApiError):
        parse_field_selector("nonsense")


async def test_watch_history_replays_and_expires() -> None:
    store = Store(history_size=3)
    start = store.resource_version
    for index in range(3):
        store.create(CONFIGMAPS, {"metadata": {"name": f"c{index}"}}, "ns")
    backlog, queue = store.subscribe(CONFIGMAPS, start)
    assert [e.obj["metadata"]["name"] for e in backlog] == ["c0", "c1", "c2"]
    store.delete(CONFIGMAPS, "ns", "c0")
    event = await asyncio.wait_for(queue.get(), 1)
    assert event is not None
    assert (event.type, event.obj["metadata"]["name"]) == ("DELETED", "c0")
    assert event.rv == store.resource_version
    store.unsubscribe(CONFIGMAPS, queue)
    with pytest.raises(ApiError) as gone:
        store.subscribe(CONFIGMAPS, start)  # c0's ADDED fell out of the history
    assert gone.value.code == 410
    backlog, queue = store.subscribe(CONFIGMAPS, store.resource_version)
    assert backlog == []
    store.compact()
    store.create(CONFIGMAPS, {"metadata": {"name": "later"}}, "ns")
    with pytest.raises(ApiError):
        store.subscribe(CONFIGMAPS, store.resource_version - 2)


def test_a_replayed_event_keeps_its_own_resource_version_after_a_delete() -> None:
    store = Store()
    start = store.resource_version
    store.create(CONFIGMAPS, {"metadata": {"name": "c"}, "data": {"k": "1"}}, "ns")
    store.update(CONFIGMAPS, {"metadata": {"name": "c", "namespace": "ns"}, "data": {"k": "2"}})
    store.delete(CONFIGMAPS, "ns", "c")
    backlog, queue = store.subscribe(CONFIGMAPS, start)
    store.unsubscribe(CONFIGMAPS, queue)
    # A client resumes from the last object's resourceVersion: each must be its own event's.
    assert [e.type for e in backlog] == ["ADDED", "MODIFIED", "DELETED"]
    assert [int(e.obj["metadata"]["resourceVersion"]) for e in backlog] == [e.rv for e in backlog]
    assert len({e.rv for e in backlog}) == 3


def test_event_names_sort_in_the_order_events_happened() -> None:
    store = Store()
    recorder = EventRecorder(store, "test")
    about = store.create(CONFIGMAPS, {"metadata": {"name": "c"}}, "ns")
    for reason in ("First", "Second", "Third", "Fourth"):
        recorder.record(about, "Normal", reason, reason.lower())
    # `kubectl get events` lists by name: the real recorder's names put them in time order.
    assert [e["reason"] for e in store.list(EVENTS, "ns")] == ["First", "Second", "Third", "Fourth"]


def test_tokens_name_their_user_until_they_expire() -> None:
    authenticator = Authenticator("admin-token")
    admin = authenticator.user(b"admin-token")
    assert admin is not None
    assert admin.admin
    lasting = authenticator.issue("ns", "cockpit")
    brief = authenticator.issue("ns", "cockpit", expiration_seconds=0.2)
    user = authenticator.user(brief.encode())
    assert user is not None
    assert user.service_account == ("ns", "cockpit")
    assert not user.admin
    assert authenticator.user(b"admin-tokenX") is None
    time.sleep(0.3)
    assert authenticator.user(brief.encode()) is None
    assert authenticator.user(lasting.encode()) is not None


def test_a_watch_that_falls_behind_the_history_is_ended() -> None:
    store = Store(history_size=3)
    _, client_watch = store.subscribe(CONFIGMAPS, bounded=True)
    _, controller = store.subscribe(CONFIGMAPS)
    for index in range(5):
        store.create(CONFIGMAPS, {"metadata": {"name": f"c{index}"}}, "ns")
    # The client stopped reading: its watch ends (None) instead of growing without bound.
    assert client_watch.get_nowait() is None
    store.create(CONFIGMAPS, {"metadata": {"name": "later"}}, "ns")
    assert client_watch.empty()
    # An in-process subscriber keeps every event.
    assert controller.qsize() == 6


def test_merge_patches() -> None:
    target = {
        "a": {"b": 1, "c": 2},
        "containers": [{"name": "x", "v": 1}, {"name": "y", "v": 2}],
    }
    assert merge_patch(target, {"a": {"b": None, "d": 3}}) == {
        "a": {"c": 2, "d": 3},
        "containers": target["containers"],
    }
    strategic = merge_patch(target, {"containers": [{"name": "y", "v": 9}]}, strategic=True)
    assert strategic["containers"] == [{"name": "x", "v": 1}, {"name": "y", "v": 9}]
    plain = merge_patch(target, {"containers": [{"name": "y", "v": 9}]})
    assert plain["containers"] == [{"name": "y", "v": 9}]
    # A list Kubernetes gives no merge key is replaced, even in a strategic merge.
    other = merge_patch({"args": [{"name": "x"}]}, {"args": [{"name": "y"}]}, strategic=True)
    assert other == {"args": [{"name": "y"}]}
    patched = apply_patch(
        {"spec": {"replicas": 2}}, b'{"spec":{"replicas":4}}', "application/merge-patch+json"
    )
    assert patched == {"spec": {"replicas": 4}}
    with pytest.raises(ApiError) as unsupported:
        apply_patch({}, b"{}", "text/plain")
    assert unsupported.value.code == 415


def test_json_patch() -> None:
    document = {"spec": {"replicas": 2, "list": [1, 2]}}
    result = json_patch(
        document,
        [
            {"op": "test", "path": "/spec/replicas", "value": 2},
            {"op": "replace", "path": "/spec/replicas", "value": 5},
            {"op": "add", "path": "/spec/list/-", "value": 3},
            {"op": "remove", "path": "/spec/list/0"},
            {"op": "add", "path": "/metadata", "value": {"labels": {"a/b": "c"}}},
            {"op": "copy", "from": "/metadata/labels/a~1b", "path": "/spec/copied"},
        ],
    )
    assert result == {
        "spec": {"replicas": 5, "list": [2, 3], "copied": "c"},
        "metadata": {"labels": {"a/b": "c"}},
    }
    assert document["spec"]["replicas"] == 2
    with pytest.raises(ApiError) as failed:
        json_patch(document, [{"op": "test", "path": "/spec/replicas", "value": 3}])
    assert failed.value.code == 422


def budget_store(policy: str | None = None) -> Store:
    store = Store()
    spec: dict[str, object] = {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}
    if policy:
        spec["unhealthyPodEvictionPolicy"] = policy
    store.create(PDBS, {"metadata": {"name": "web"}, "spec": spec}, "ns")
    return store


def test_eviction_honours_the_budget() -> None:
    store = budget_store()
    store.create(PODS, pod("a"), "ns")
    store.create(PODS, pod("b"), "ns")
    assert pdb_numbers(store, store.get(PDBS, "ns", "web"))["disruptionsAllowed"] == 1
    assert evict_pod(store, "ns", "a", None)["code"] == 201
    assert store.get(PODS, "ns", "a")["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiError) as refused:
        evict_pod(store, "ns", "b", None)
    assert refused.value.code == 429
    assert refused.value.message == (
        "Cannot evict pod as it would violate the pod's disruption budget."
    )
    assert refused.value.details == {
        "causes": [
            {
                "reason": "DisruptionBudget",
                "message": "The disruption budget web needs 1 healthy pods and has 1 currently",
            }
        ]
    }
    # Evicting a pod that is already terminating succeeds at once.
    assert evict_pod(store, "ns", "a", None)["code"] == 201
    # A pod no budget covers is always evictable.
    store.create(PODS, pod("other", labels={"app": "api"}), "ns")
    assert evict_pod(store, "ns", "other", 0)["code"] == 201
    with pytest.raises(ApiError):
        store.get(PODS, "ns", "other")


@pytest.mark.parametrize(("policy", "allowed"), [(None, False), ("AlwaysAllow", True)])
def test_unhealthy_pod_eviction_policy(policy: str | None, allowed: bool) -> None:
    store = budget_store(policy)
    store.create(PODS, pod("ready"), "ns")
    store.create(PODS, pod("starting", ready=False), "ns")
    store.create(PODS, pod("other-starting", ready=False), "ns")
    # minAvailable 2 is not met (1 healthy): IfHealthyBudget refuses, AlwaysAllow evicts.
    store.mutate(PDBS, "ns", "web", lambda o: o["spec"].update(minAvailable=2))
    if allowed:
        assert evict_pod(store, "ns", "starting", None)["code"] == 201
    else:
        with pytest.raises(ApiError) as refused:
            evict_pod(store, "ns", "starting", None)
        assert refused.value.code == 429


def test_pod_status_text() -> None:
    base = {
        "metadata": {"name": "p"},
        "spec": {
            "initContainers": [{"name": "engine", "restartPolicy": "Always"}, {"name": "pull"}],
            "containers": [{"name": "backend"}],
        },
    }
    starting = {
        **base,
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "engine", "started": False, "state": {"running": {}}},
                {"name": "pull", "state": {"waiting": {"reason": "PodInitializing"}}},
            ],
        },
    }
    assert pod_status_text(starting) == "Init:0/2"
    crashing = {
        **base,
        "status": {
            "phase": "Running",
            "initContainerStatuses": [
                {"name": "engine", "started": True, "state": {"running": {}}},
                {"name": "pull", "state": {"terminated": {"exitCode": 0}}},
            ],
            "containerStatuses": [
                {"name": "backend", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ],
        },
    }
    assert pod_status_text(crashing) == "CrashLoopBackOff"
    terminating = {**crashing, "metadata": {"name": "p", "deletionTimestamp": "x"}}
    assert pod_status_text(terminating) == "Terminating"
    assert [human_duration(s) for s in (5, 130, 700, 4000, 90000)] == [
        "5s",
        "2m10s",
        "11m",
        "66m",
        "25h",
    ]


def test_rbac_follows_roles_and_bindings() -> None:
    store = Store()
    store.create(
        ROLES,
        {
            "metadata": {"name": "viewer"},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
            ],
        },
        "ns",
    )
    store.create(
        ROLEBINDINGS,
        {
            "metadata": {"name": "viewer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "viewer"},
            "subjects": [{"kind": "ServiceAccount", "name": "cockpit"}],
        },
        "ns",
    )
    cockpit = User("system:serviceaccount:ns:cockpit", service_account=("ns", "cockpit"))
    stranger = User("system:serviceaccount:ns:other", service_account=("ns", "other"))
    authorize(store, cockpit, "list", "", "pods", "ns", None)
    authorize(store, cockpit, "create", "", "pods/eviction", "ns", "p")
    authorize(store, User("admin", admin=True), "delete", "apps", "deployments", None, "d")
    for user, verb, resource, namespace in (
        (cockpit, "delete", "pods", "ns"),
        (cockpit, "list", "pods", "elsewhere"),
        (cockpit, "list", "pods", None),
        (stranger, "list", "pods", "ns"),
    ):
        with pytest.raises(ApiError) as denied:
            authorize(store, user, verb, "", resource, namespace, None)
        assert denied.value.code == 403
    with pytest.raises(ApiError) as denied:
        authorize(store, cockpit, "delete", "", "pods", "ns", "p")
    assert denied.value.message == (
        'pods "p" is forbidden: User "system:serviceaccount:ns:cockpit" cannot delete '
        'resource "pods" in API group "" in the namespace "ns"'
    )


async def test_watch_sees_objects_enter_and_leave_a_selector() -> None:
    """A label change turns into ADDED/DELETED for a watch whose selector it crosses."""

    class NoRuntime:
        def pod_port(self, namespace: str, pod: str, port: str | int) -> int | None:
            return None

        def pod_metrics(self, namespace: str | None) -> list[dict[str, object]]:
            return []

        def log_path(self, namespace: str, pod: str, container: str | None) -> None:
            return None

        def custom_metrics(
            self, namespace: str, metric: str, pods: list[str], metric_selector: str | None
        ) -> dict[str, object]:
            return {}

    store = Store()
    store.create(CONFIGMAPS, {"metadata": {"name": "c", "labels": {"tier": "a"}}}, "ns")
    start = store.resource_version
    store.mutate(CONFIGMAPS, "ns", "c", lambda o: o["metadata"]["labels"].update(tier="b"))
    store.mutate(CONFIGMAPS, "ns", "c", lambda o: o["metadata"]["labels"].update(tier="a"))
    store.mutate(CONFIGMAPS, "ns", "c", lambda o: o.update(data={"k": "v"}))
    app = create_app(ApiServer(store, NoRuntime(), Authenticator("t")))
    with TestClient(app) as http:
        response = http.get(
            "/api/v1/namespaces/ns/configmaps",
            params={
                "watch": "1",
                "resourceVersion": str(start),
                "labelSelector": "tier=a",
                "timeoutSeconds": "1",
            },
            headers={"Authorization": "Bearer t"},
        )
    kinds = [json.loads(line)["type"] for line in response.text.splitlines() if line]
    assert kinds == ["DELETED", "ADDED", "MODIFIED"]
