"""Issue 14, item 1: kubectl's own paths work unchanged against the sandbox.

The real kubectl (from the venv) against one live sandbox (fake engine): OpenAPI v3 from the
shipped Kubernetes schemas, `apply -k` with default validation, `diff -k`, `apply
--server-side -k` with field managers and conflicts, `delete -k`, `create -f`, `explain`, and
`fieldValidation=Strict|Warn|Ignore`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.apiserver import openapi
from sandbox.store.resources import RESOURCE_TYPES
from tests.sandbox.harness import (
    KUBECTL,
    NAMESPACE,
    ROOT,
    RunningSandbox,
    fake_engine_cmd,
    start_sandbox,
    wait_for,
)
from tests.sandbox.test_bad_input import BASE, status_of

pytestmark = pytest.mark.slow(
    reason="a live sandbox driven by the real kubectl (apply, diff, server-side apply, delete)"
)

HPA_URL = f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/llm-backend"
DEPLOYMENT_URL = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/llm-backend"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    running = start_sandbox(
        tmp_path_factory.mktemp("kubectl-paths"),
        "--hpa-sync-seconds",
        "1",
        engine_cmd=fake_engine_cmd(busy_ms_per_token=0),
    )
    yield running
    running.stop()


@pytest.fixture
def overlay(tmp_path: Path) -> Path:
    """A copy of the kustomize tree to edit; its sandbox overlay."""
    shutil.copytree(ROOT / "kustomize", tmp_path / "kustomize")
    return tmp_path / "kustomize" / "overlays" / "sandbox"


_DIFF_WITHOUT_STATUS = """
import pathlib, sys, yaml

def objects(folder):
    found = {}
    for path in pathlib.Path(folder).iterdir():
        obj = yaml.safe_load(path.read_text()) or {}
        obj.pop("status", None)
        obj.get("metadata", {}).pop("resourceVersion", None)
        found[path.name] = obj
    return found

live, merged = objects(sys.argv[1]), objects(sys.argv[2])
changed = sorted(name for name in live.keys() | merged.keys() if live.get(name) != merged.get(name))
print("\\n".join(changed))
sys.exit(1 if changed else 0)
"""
"""A `KUBECTL_EXTERNAL_DIFF` program: which objects differ outside `status` (kubectl calls it
with the folder of live objects and the folder of merged ones; exit 1 means differences)."""


def ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def test_openapi_v3_is_served_from_the_shipped_schemas(sandbox: RunningSandbox) -> None:
    with sandbox.http() as client:
        index = client.get("/openapi/v3").json()["paths"]
        assert {"api/v1", "apis/apps/v1", "apis/autoscaling/v2"} <= set(index)
        document = client.get(index["apis/apps/v1"]["serverRelativeURL"]).json()
        schemas = document["components"]["schemas"]
        deployment = schemas["io.k8s.api.apps.v1.Deployment"]
        assert deployment["x-kubernetes-group-version-kind"] == [
            {"group": "apps", "kind": "Deployment", "version": "v1"}
        ]
        containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
        assert containers["x-kubernetes-patch-merge-key"] == "name"
        assert containers["items"]["$ref"] == "#/components/schemas/io.k8s.api.core.v1.Container"
        # Only what the sandbox serves: no StatefulSet, no Secret.
        assert "io.k8s.api.apps.v1.StatefulSet" not in schemas
        core = client.get(index["api/v1"]["serverRelativeURL"]).json()
        assert "io.k8s.api.core.v1.Secret" not in core["components"]["schemas"]
        patch = document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
        assert "fieldValidation" in [p["name"] for p in patch["patch"]["parameters"]]
        assert client.get("/openapi/v3/apis/batch/v1").status_code == 404
        v2 = client.get("/openapi/v2", headers={"accept": "application/json"}).json()
        assert "io.k8s.api.apps.v1.Deployment" in v2["definitions"]


def test_every_stored_kind_in_discovery_has_a_schema() -> None:
    """Data-driven: a kind added to RESOURCE_TYPES (a ReplicaSet) is in OpenAPI at once."""
    names = openapi.definition_names(37)
    for rt in openapi.served_kinds():
        assert rt.key in names, rt.key
    assert len(openapi.served_kinds()) < len(RESOURCE_TYPES)


def test_explain_reads_the_schema(sandbox: RunningSandbox) -> None:
    out = ok(sandbox.kubectl("explain", "deployment.spec.strategy"))
    assert "rollingUpdate" in out
    assert "DeploymentStrategy" in out
    ok(sandbox.kubectl("explain", "hpa.spec.behavior.scaleDown", "--recursive"))


def test_apply_k_with_validation_then_an_edited_overlay_changes_the_objects(
    sandbox: RunningSandbox, overlay: Path
) -> None:
    applied = sandbox.kubectl("apply", "-k", str(overlay))
    assert applied.returncode == 0, applied.stderr
    # The sandbox's objects are as `kubectl apply` leaves them: no warning, nothing to change,
    # but the PDBs (the backend's and the frontend's), whose selector's patch strategy is
    # "replace", so that kubectl's patch for them is never empty (as on a cluster).
    assert applied.stderr == ""
    changed = [line for line in applied.stdout.splitlines() if not line.endswith(" unchanged")]
    assert changed == [
        "poddisruptionbudget.policy/llm-backend configured",
        "poddisruptionbudget.policy/llm-frontend configured",
    ]
    with sandbox.http() as client:
        old_config = _config_map_of(client.get(DEPLOYMENT_URL).json())
        # The HPA obeys a lower maxReplicas: scale up by hand, lower the bound, watch it act.
        scaled = client.patch(
            f"{DEPLOYMENT_URL}/scale",
            json={"spec": {"replicas": 5}},
            headers={"content-type": "application/merge-patch+json"},
        )
        assert scaled.status_code == 200
    hpa_patch = overlay / "hpa-patch.yaml"
    hpa_patch.write_text(hpa_patch.read_text() + "  maxReplicas: 3\n")
    kustomization = overlay / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("MAX_QUEUE=16", "MAX_QUEUE=12"))
    diff = sandbox.kubectl("diff", "-k", str(overlay))
    assert diff.returncode == 1, diff.stderr  # 1: differences found
    assert "+  maxReplicas: 3" in diff.stdout
    assert "llm-backend-config-" in diff.stdout
    ok(sandbox.kubectl("apply", "-k", str(overlay)))
    with sandbox.http() as client:
        assert client.get(HPA_URL).json()["spec"]["maxReplicas"] == 3
        wait_for(
            lambda: client.get(DEPLOYMENT_URL).json()["spec"]["replicas"] <= 3,
            60,
            "the HPA to bring the Deployment within maxReplicas 3",
        )
        new_config = _config_map_of(client.get(DEPLOYMENT_URL).json())
        assert new_config != old_config

        def rolled() -> bool:
            pods = client.get(
                f"{BASE}/pods", params={"labelSelector": "app.kubernetes.io/name=llm-backend"}
            ).json()["items"]
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            return bool(live) and all(_config_map_of_pod(p) == new_config for p in live)

        wait_for(rolled, 90, "the pods to roll onto the new ConfigMap")


def _config_map_of(deployment: dict[str, Any]) -> str:
    return _config_map_of_pod({"spec": deployment["spec"]["template"]["spec"]})


def _config_map_of_pod(pod: dict[str, Any]) -> str:
    for container in pod["spec"]["containers"]:
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                return str(source["configMapRef"]["name"])
    raise AssertionError("no envFrom configMapRef")


BAD_CONFIG_MAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "strictly", "namespace": NAMESPACE, "bogus": 1},
    "data": {"a": "b"},
    "extra": {"x": 1},
}


def test_unknown_fields_under_strict_warn_and_ignore(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    manifest = tmp_path / "bad.json"
    manifest.write_text(json.dumps(BAD_CONFIG_MAP))
    strict = sandbox.kubectl("apply", "-f", str(manifest))
    assert strict.returncode != 0
    assert 'unknown field "metadata.bogus"' in strict.stderr
    assert 'unknown field "extra"' in strict.stderr
    with sandbox.http() as client:
        assert client.get(f"{BASE}/configmaps/strictly").status_code == 404
        refused = client.post(
            f"{BASE}/configmaps", json=BAD_CONFIG_MAP, params={"fieldValidation": "Strict"}
        )
        assert refused.status_code == 400
        assert "strict decoding error" in status_of(refused)["message"]
        bad = client.post(
            f"{BASE}/configmaps", json=BAD_CONFIG_MAP, params={"fieldValidation": "Lax"}
        )
        assert bad.status_code == 400
        # A patch is checked too; its directives are not fields.
        patched = client.patch(
            DEPLOYMENT_URL,
            json={
                "spec": {"template": {"spec": {"containers": [{"name": "backend", "imagee": "x"}]}}}
            },
            params={"fieldValidation": "Strict"},
            headers={"content-type": "application/strategic-merge-patch+json"},
        )
        assert patched.status_code == 400
        assert (
            'unknown field "spec.template.spec.containers[0].imagee"'
            in status_of(patched)["message"]
        )
    warned = sandbox.kubectl("apply", "-f", str(manifest), "--validate=warn")
    assert warned.returncode == 0, warned.stderr
    assert 'Warning: unknown field "extra"' in warned.stderr
    ignored = sandbox.kubectl(
        "create", "-f", str(manifest), "--validate=false", "--dry-run=server", "-o", "json"
    )
    assert "unknown field" not in ignored.stderr


def test_server_side_apply_owns_fields_and_reports_conflicts(
    sandbox: RunningSandbox, overlay: Path
) -> None:
    # Earlier client-side applies own fields with other values (maxReplicas 3): taking them
    # over needs --force-conflicts, as on a cluster.
    taken_over = sandbox.kubectl("apply", "--server-side", "-k", str(overlay))
    assert taken_over.returncode != 0
    assert 'conflict with "kubectl-client-side-apply"' in taken_over.stderr
    applied = sandbox.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(overlay))
    assert applied.returncode == 0, applied.stderr
    assert "serverside-applied" in applied.stdout
    with sandbox.http() as client:
        hpa = client.get(HPA_URL).json()
        entry = next(e for e in hpa["metadata"]["managedFields"] if e["manager"] == "kubectl")
        assert entry["operation"] == "Apply"
        assert entry["fieldsType"] == "FieldsV1"
        assert "f:maxReplicas" in entry["fieldsV1"]["f:spec"]
        deployment = client.get(DEPLOYMENT_URL).json()
        mine = next(e for e in deployment["metadata"]["managedFields"] if e["manager"] == "kubectl")
        containers = mine["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
        assert containers['k:{"name":"backend"}']["."] == {}
        # Another manager takes maxReplicas; applying a different value is a conflict.
        taken = client.patch(
            HPA_URL,
            json={"spec": {"maxReplicas": 5}},
            params={"fieldManager": "someone-else"},
            headers={"content-type": "application/merge-patch+json"},
        )
        assert taken.status_code == 200
    conflicted = sandbox.kubectl("apply", "--server-side", "-k", str(overlay))
    assert conflicted.returncode != 0
    assert 'conflict with "someone-else"' in conflicted.stderr
    assert ".spec.maxReplicas" in conflicted.stderr
    with sandbox.http() as client:
        body = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "llm-backend"},
            "spec": {"maxReplicas": 4},
        }
        apply = {"content-type": "application/apply-patch+yaml"}
        response = client.patch(
            HPA_URL, content=json.dumps(body), params={"fieldManager": "tester"}, headers=apply
        )
        assert response.status_code == 409
        status = status_of(response)
        assert status["reason"] == "Conflict"
        assert status["details"]["causes"] == [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "someone-else" using autoscaling/v2',
                "field": ".spec.maxReplicas",
            }
        ]
        assert client.get(HPA_URL).json()["spec"]["maxReplicas"] == 5
        # Bad apply requests: no field manager, a malformed body, force on a merge patch.
        assert client.patch(HPA_URL, content=json.dumps(body), headers=apply).status_code == 422
        malformed = client.patch(
            HPA_URL, content=b"spec: [", params={"fieldManager": "t"}, headers=apply
        )
        assert malformed.status_code == 400
        forced_merge = client.patch(
            HPA_URL,
            json={},
            params={"force": "true"},
            headers={"content-type": "application/merge-patch+json"},
        )
        assert forced_merge.status_code == 422
    forced = sandbox.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(overlay))
    assert forced.returncode == 0, forced.stderr
    with sandbox.http() as client:
        hpa = client.get(HPA_URL).json()
        assert hpa["spec"]["maxReplicas"] == 6
        managers = {e["manager"] for e in hpa["metadata"]["managedFields"]}
        assert "someone-else" not in managers
    # A field the manager no longer applies is removed.
    labels = overlay.parent.parent / "base" / "kustomization.yaml"
    assert "app.kubernetes.io/part-of" in labels.read_text()
    hpa_patch = overlay / "hpa-patch.yaml"
    hpa_patch.write_text(
        hpa_patch.read_text().replace(
            "metadata:\n  name: llm-backend\n",
            "metadata:\n  name: llm-backend\n  annotations:\n    owner: me\n",
        )
    )
    ok(sandbox.kubectl("apply", "--server-side", "-k", str(overlay)))
    with sandbox.http() as client:
        assert client.get(HPA_URL).json()["metadata"]["annotations"]["owner"] == "me"
    hpa_patch.write_text(hpa_patch.read_text().replace("  annotations:\n    owner: me\n", ""))
    ok(sandbox.kubectl("apply", "--server-side", "-k", str(overlay)))
    with sandbox.http() as client:
        annotations = client.get(HPA_URL).json()["metadata"].get("annotations") or {}
        assert "owner" not in annotations


def test_create_an_event_and_delete_k(
    sandbox: RunningSandbox, overlay: Path, tmp_path: Path
) -> None:
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "hand-made", "namespace": NAMESPACE},
        "involvedObject": {"kind": "Deployment", "name": "llm-backend", "namespace": NAMESPACE},
        "reason": "Tried",
        "message": "made by hand",
        "type": "Normal",
        "lastTimestamp": None,
        "series": {"count": 2, "lastObservedTime": "2026-12-07T03:00:00.000000Z"},
    }
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    assert "event/hand-made created" in ok(sandbox.kubectl("create", "-f", str(path)))
    listed = ok(
        sandbox.kubectl("get", "events", "-n", NAMESPACE, "--field-selector", "reason=Tried")
    )
    assert "made by hand" in listed
    deleted = ok(sandbox.kubectl("delete", "-k", str(overlay)))
    assert 'deployment.apps "llm-backend" deleted' in deleted
    with sandbox.http() as client:
        assert client.get(DEPLOYMENT_URL).status_code == 404
        assert client.get(HPA_URL).status_code == 404
    # Server-side apply creates what does not exist; then the server-side diff is empty. The
    # controllers keep writing the new objects' status (pods starting, the HPA's first syncs),
    # which kubectl diff shows when a write falls between its read of the live object and its
    # dry-run patch, as on a cluster; so the diff it runs leaves status (and the
    # resourceVersion that write moved) out and compares the rest.
    created = ok(sandbox.kubectl("apply", "--server-side", "-k", str(overlay)))
    assert "deployment.apps/llm-backend serverside-applied" in created
    compare = tmp_path / "diff_without_status.py"
    # kubectl keeps only flag-like arguments of KUBECTL_EXTERNAL_DIFF, so the program is the
    # script itself.
    compare.write_text(f"#!{sys.executable}\n{_DIFF_WITHOUT_STATUS}")
    compare.chmod(0o755)
    diffed = subprocess.run(
        [
            str(KUBECTL),
            "--kubeconfig",
            str(sandbox.kubeconfig),
            "diff",
            "--server-side",
            "-k",
            str(overlay),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KUBECTL_EXTERNAL_DIFF": str(compare)},
    )
    assert diffed.returncode == 0, diffed.stdout + diffed.stderr
    with sandbox.http() as client:
        hpa = client.get(HPA_URL).json()
        assert [e["manager"] for e in hpa["metadata"]["managedFields"]] == ["kubectl"]
