"""Issue 9, item 7: strategic-merge directives and JSON patches, as the API server applies them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sandbox.apiserver.patch import apply_patch, merge_patch
from sandbox.store.store import ApiError

SMP = "application/strategic-merge-patch+json"


def deployment() -> dict[str, Any]:
    return {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "backend",
                            "env": [
                                {"name": "POD_NAME", "value": "x"},
                                {"name": "LOG_LEVEL", "value": "debug"},
                            ],
                            "ports": [{"name": "http", "containerPort": 8000}],
                        },
                        {"name": "sidecar", "image": "a"},
                    ]
                }
            }
        },
        "metadata": {"finalizers": ["a"]},
    }


def patched(patch: dict[str, Any]) -> dict[str, Any]:
    return apply_patch(deployment(), json.dumps(patch).encode(), SMP)


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return result


def test_kubectl_set_env_removal_deletes_the_variable() -> None:
    # What `kubectl set env deploy/llm-backend LOG_LEVEL-` sends.
    result = patched(
        {
            "spec": {
                "template": {
                    "spec": {
                        "$setElementOrder/containers": [{"name": "backend"}, {"name": "sidecar"}],
                        "containers": [
                            {
                                "$setElementOrder/env": [{"name": "POD_NAME"}],
                                "env": [{"$patch": "delete", "name": "LOG_LEVEL"}],
                                "name": "backend",
                            }
                        ],
                    }
                }
            }
        }
    )
    assert containers(result)[0]["env"] == [{"name": "POD_NAME", "value": "x"}]
    assert [c["name"] for c in containers(result)] == ["backend", "sidecar"]
    assert not any("$" in key for key in json.dumps(result).split('"') if key.startswith("$"))


def test_set_element_order_reorders_the_merged_list() -> None:
    result = patched(
        {
            "spec": {
                "template": {
                    "spec": {
                        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "backend"}],
                        "containers": [{"name": "sidecar", "image": "b"}],
                    }
                }
            }
        }
    )
    assert [(c["name"], c.get("image")) for c in containers(result)] == [
        ("sidecar", "b"),
        ("backend", None),
    ]


def test_replace_retain_keys_and_primitive_deletes() -> None:
    replaced = patched(
        {"spec": {"template": {"spec": {"containers": [{"name": "only"}, {"$patch": "replace"}]}}}}
    )
    assert containers(replaced) == [{"name": "only"}]
    map_replaced = merge_patch(
        {"a": {"x": 1, "y": 2}}, {"a": {"$patch": "replace", "z": 3}}, strategic=True
    )
    assert map_replaced == {"a": {"z": 3}}
    map_deleted = merge_patch({"a": {"x": 1}, "b": 2}, {"a": {"$patch": "delete"}}, strategic=True)
    assert map_deleted == {"b": 2}
    retained = merge_patch(
        {"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}},
        {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}},
        strategic=True,
    )
    assert retained == {"strategy": {"type": "Recreate"}}
    finalizers = patched({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert finalizers["metadata"]["finalizers"] == []
    added = patched({"metadata": {"finalizers": ["b"]}})
    assert added["metadata"]["finalizers"] == ["a", "b"]
    ports = patched(
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "backend", "ports": [{"containerPort": 9000, "name": "m"}]}
                        ]
                    }
                }
            }
        }
    )
    assert [p["containerPort"] for p in containers(ports)[0]["ports"]] == [8000, 9000]


def test_unknown_directives_are_refused() -> None:
    with pytest.raises(ApiError) as error:
        patched({"spec": {"$bogus": 1}})
    assert error.value.code == 400
    with pytest.raises(ApiError):
        patched({"spec": {"$patch": "explode"}})


def test_json_patches_use_rfc_6902_and_fail_with_422() -> None:
    body = json.dumps(
        [
            {"op": "test", "path": "/metadata/finalizers/0", "value": "a"},
            {"op": "remove", "path": "/spec/template/spec/containers/0/env/1"},
            {"op": "move", "from": "/metadata/finalizers", "path": "/metadata/kept"},
        ]
    ).encode()
    result = apply_patch(deployment(), body, "application/json-patch+json")
    assert containers(result)[0]["env"] == [{"name": "POD_NAME", "value": "x"}]
    assert result["metadata"] == {"kept": ["a"]}
    for operations in (
        [{"op": "test", "path": "/metadata/finalizers/0", "value": "z"}],
        [{"op": "remove", "path": "/nowhere"}],
        [{"op": "frobnicate", "path": "/a"}],
        [{"op": "add", "path": "no-slash", "value": 1}],
    ):
        with pytest.raises(ApiError) as error:
            apply_patch(
                deployment(), json.dumps(operations).encode(), "application/json-patch+json"
            )
        assert error.value.code == 422, operations
