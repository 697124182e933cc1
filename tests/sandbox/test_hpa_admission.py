"""Admission of an HPA's `spec.behavior`, as upstream's `validateScalingRules` and
`validateScalingPolicy` (pkg/apis/autoscaling/validation): the fields, the bounds and the words
the API server refuses with (the same refusal over HTTP: tests/sandbox/test_bad_input.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sandbox.apiserver.validation import validate
from sandbox.store.store import HPAS, ApiError

RULES_OK = {
    "stabilizationWindowSeconds": 60,
    "selectPolicy": "Max",
    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
}


def an_hpa(behavior: Any) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 5,
            "behavior": behavior,
        },
    }


def causes_of(behavior: Any) -> list[tuple[str, str]]:
    """The (field, message) causes of the 422 for an HPA with this behavior."""
    with pytest.raises(ApiError) as refused:
        validate(HPAS, an_hpa(behavior))
    assert refused.value.code == 422
    assert refused.value.reason == "Invalid"
    causes = refused.value.details["causes"]  # type: ignore[index]
    return [(c["field"], c["message"]) for c in causes]


def with_rules(**changes: Any) -> dict[str, Any]:
    """A scaleDown that is valid but for `changes`."""
    rules = copy.deepcopy(RULES_OK)
    rules.update(changes)
    return {"scaleDown": rules}


def with_policy(**changes: Any) -> dict[str, Any]:
    """A scaleUp whose one policy is valid but for `changes` (None: the field left out)."""
    policy: dict[str, Any] = {"type": "Percent", "value": 50, "periodSeconds": 60, **changes}
    return {"scaleUp": {"policies": [{k: v for k, v in policy.items() if v is not None}]}}


DOWN = "spec.behavior.scaleDown"
UP_POLICY = "spec.behavior.scaleUp.policies[0]"


@pytest.mark.parametrize(
    ("behavior", "cause"),
    [
        # An empty list is not "not set": the API's defaulting keeps it, validation refuses it,
        # whatever selectPolicy says.
        (
            with_rules(policies=[]),
            (f"{DOWN}.policies", "Required value: must specify at least one Policy"),
        ),
        (
            with_rules(policies=[], selectPolicy="Disabled"),
            (f"{DOWN}.policies", "Required value: must specify at least one Policy"),
        ),
        (
            with_rules(selectPolicy="Fastest"),
            (
                f"{DOWN}.selectPolicy",
                'Unsupported value: "Fastest": supported values: "Disabled", "Max", "Min"',
            ),
        ),
        (
            with_rules(stabilizationWindowSeconds=-1),
            (
                f"{DOWN}.stabilizationWindowSeconds",
                "Invalid value: -1: must be greater than or equal to zero",
            ),
        ),
        (
            with_rules(stabilizationWindowSeconds=3601),
            (
                f"{DOWN}.stabilizationWindowSeconds",
                "Invalid value: 3601: must be less than or equal to 3600",
            ),
        ),
        (
            with_policy(type="Replicas"),
            (
                f"{UP_POLICY}.type",
                'Unsupported value: "Replicas": supported values: "Percent", "Pods"',
            ),
        ),
        (
            with_policy(value=0),
            (f"{UP_POLICY}.value", "Invalid value: 0: must be greater than zero"),
        ),
        (
            with_policy(value=-3),
            (f"{UP_POLICY}.value", "Invalid value: -3: must be greater than zero"),
        ),
        # A missing int32 is Go's zero value, refused in the same words.
        (
            with_policy(value=None),
            (f"{UP_POLICY}.value", "Invalid value: 0: must be greater than zero"),
        ),
        (
            with_policy(periodSeconds=0),
            (f"{UP_POLICY}.periodSeconds", "Invalid value: 0: must be greater than zero"),
        ),
        (
            with_policy(periodSeconds=1801),
            (
                f"{UP_POLICY}.periodSeconds",
                "Invalid value: 1801: must be less than or equal to 1800",
            ),
        ),
        # tolerance (1.33+): a quantity not below zero (ValidateNonnegativeQuantity); a stored
        # bad one would fail every sync of the HPA.
        (
            with_rules(tolerance="-0.1"),
            (f"{DOWN}.tolerance", 'Invalid value: "-0.1": must be greater than or equal to 0'),
        ),
        (
            with_rules(tolerance="ten percent"),
            (
                f"{DOWN}.tolerance",
                'Invalid value: "ten percent": quantities must match the regular expression '
                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            ),
        ),
    ],
)
def test_behavior_is_refused_as_upstream_refuses_it(
    behavior: dict[str, Any], cause: tuple[str, str]
) -> None:
    assert causes_of(behavior) == [cause]


def test_every_bad_field_of_a_behavior_is_one_cause() -> None:
    behavior = {
        "scaleUp": {"selectPolicy": "Most", "policies": []},
        "scaleDown": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 0}]},
    }
    assert [field for field, _ in causes_of(behavior)] == [
        "spec.behavior.scaleUp.selectPolicy",
        "spec.behavior.scaleUp.policies",
        "spec.behavior.scaleDown.policies[0].value",
        "spec.behavior.scaleDown.policies[0].periodSeconds",
    ]


@pytest.mark.parametrize(
    "behavior",
    [
        {},
        {"scaleUp": None, "scaleDown": {}},
        {"scaleDown": {"policies": None}},  # not set: the defaults fill it
        {"scaleDown": with_rules(selectPolicy="Disabled")["scaleDown"]},
        {
            "scaleUp": {"stabilizationWindowSeconds": 3600},
            "scaleDown": {"stabilizationWindowSeconds": 0},
        },
        with_policy(periodSeconds=1800, value=1),
        with_policy(type="Pods", value=100),
        with_rules(tolerance="0.05"),
        with_rules(tolerance=0),
    ],
)
def test_what_upstream_admits_is_admitted(behavior: dict[str, Any]) -> None:
    validate(HPAS, an_hpa(behavior))
