"""Per-kind validation: what the sandbox's controllers and kubelet read of each kind (a Pod's
containers, a Deployment's selector and template, an HPA's bounds and metrics, ...)."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

from sandbox.apiserver.field_checks import (
    CONFIG_KEY,
    DNS1123_LABEL,
    ENV_NAME,
    PORT_NAME,
    Causes,
    check_dns_name,
    check_int_or_percent,
    check_integer,
    check_object,
    check_objects,
    check_string,
    check_string_map,
    check_strings,
    shown,
)
from sandbox.store.quantity import QuantityError, parse_quantity
from sandbox.store.resources import JSON

MAX_CONFIG_BYTES = 1024 * 1024


_QUANTITY_FORMAT = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
"""What the API server says of text that is no quantity (apimachinery's `resource.Quantity`)."""


def _quantity(causes: Causes, value: Any, where: str) -> Fraction | None:
    """A quantity's value, or None with the cause (not a string or number, or not a quantity)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        causes.wrong_type(where, value, "a quantity")
        return None
    try:
        return parse_quantity(value)
    except QuantityError:
        causes.invalid(where, value, _QUANTITY_FORMAT)
        return None


def _quantities(causes: Causes, value: Any, field: str) -> None:
    for resource, quantity in (check_object(causes, value, field) or {}).items():
        _quantity(causes, quantity, f"{field}[{resource}]")


def _probe(causes: Causes, value: Any, field: str) -> None:
    probe = check_object(causes, value, field)
    if probe is None:
        return
    handlers = [h for h in ("httpGet", "exec", "tcpSocket", "grpc") if h in probe]
    if len(handlers) != 1:
        causes.add(field, "FieldValueRequired", "Required value: must specify exactly one handler")
    for key in (
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ):
        check_integer(causes, probe.get(key), f"{field}.{key}", minimum=0)
    http = check_object(causes, probe.get("httpGet"), f"{field}.httpGet")
    if http is not None:
        check_string(causes, http.get("path"), f"{field}.httpGet.path")
        port = http.get("port")
        if not isinstance(port, int | str) or isinstance(port, bool):
            causes.wrong_type(f"{field}.httpGet.port", port, "a port number or name")
    command = check_object(causes, probe.get("exec"), f"{field}.exec")
    if command is not None:
        check_strings(causes, command.get("command"), f"{field}.exec.command")


def _container(causes: Causes, container: JSON, field: str, names: set[str]) -> None:
    name = check_string(causes, container.get("name"), f"{field}.name", required=True)
    if name is not None:
        check_dns_name(
            causes, name, f"{field}.name", (DNS1123_LABEL, 63, "a lowercase RFC 1123 label")
        )
        if name in names:
            causes.add(f"{field}.name", "FieldValueDuplicate", f"Duplicate value: {shown(name)}")
        names.add(name)
    check_string(causes, container.get("image"), f"{field}.image", required=True)
    check_strings(causes, container.get("command"), f"{field}.command")
    check_strings(causes, container.get("args"), f"{field}.args")
    for where, env in check_objects(causes, container.get("env"), f"{field}.env"):
        env_name = check_string(causes, env.get("name"), f"{where}.name", required=True)
        if env_name is not None and not ENV_NAME.fullmatch(env_name):
            causes.invalid(
                f"{where}.name",
                env_name,
                "a valid environment variable name must consist of alphabetic characters, "
                "digits, '_', '-', or '.'",
            )
        check_string(causes, env.get("value"), f"{where}.value")
        check_object(causes, env.get("valueFrom"), f"{where}.valueFrom")
    for where, port in check_objects(causes, container.get("ports"), f"{field}.ports"):
        check_integer(
            causes,
            port.get("containerPort"),
            f"{where}.containerPort",
            minimum=1,
            maximum=65535,
            required=True,
        )
        port_name = check_string(causes, port.get("name"), f"{where}.name")
        if port_name is not None and (len(port_name) > 15 or not PORT_NAME.fullmatch(port_name)):
            causes.invalid(
                f"{where}.name",
                port_name,
                "must be an IANA service name (at most 15 lowercase characters)",
            )
    resources = check_object(causes, container.get("resources"), f"{field}.resources") or {}
    _quantities(causes, resources.get("requests"), f"{field}.resources.requests")
    _quantities(causes, resources.get("limits"), f"{field}.resources.limits")
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        _probe(causes, container.get(kind), f"{field}.{kind}")
    lifecycle = check_object(causes, container.get("lifecycle"), f"{field}.lifecycle") or {}
    for hook in ("preStop", "postStart"):
        check_object(causes, lifecycle.get(hook), f"{field}.lifecycle.{hook}")
    check_object(causes, container.get("securityContext"), f"{field}.securityContext")
    check_objects(causes, container.get("volumeMounts"), f"{field}.volumeMounts")


def pod_spec(causes: Causes, value: Any, field: str) -> None:
    """A PodSpec: containers (required), init containers, and the fields the kubelet reads."""
    spec = check_object(causes, value, field, required=True)
    if spec is None:
        return
    names: set[str] = set()
    for where, container in check_objects(
        causes, spec.get("initContainers"), f"{field}.initContainers"
    ):
        _container(causes, container, where, names)
    containers = check_objects(causes, spec.get("containers"), f"{field}.containers", required=True)
    if not containers and isinstance(spec.get("containers"), list):
        causes.required(f"{field}.containers")
    for where, container in containers:
        _container(causes, container, where, names)
    check_integer(
        causes,
        spec.get("terminationGracePeriodSeconds"),
        f"{field}.terminationGracePeriodSeconds",
        minimum=0,
        bits=64,
    )
    policy = spec.get("restartPolicy")
    if policy is not None and policy not in ("Always", "OnFailure", "Never"):
        causes.unsupported(
            f"{field}.restartPolicy",
            policy,
            (
                "Always",
                "OnFailure",
                "Never",
            ),
        )
    check_string(causes, spec.get("nodeName"), f"{field}.nodeName")
    check_objects(causes, spec.get("volumes"), f"{field}.volumes")
    check_object(causes, spec.get("securityContext"), f"{field}.securityContext")


def _pod_status(causes: Causes, value: Any) -> None:
    status = check_object(causes, value, "status") or {}
    check_string(causes, status.get("phase"), "status.phase")
    for where, condition in check_objects(causes, status.get("conditions"), "status.conditions"):
        check_string(causes, condition.get("type"), f"{where}.type", required=True)
        check_string(causes, condition.get("status"), f"{where}.status", required=True)
    for key in ("containerStatuses", "initContainerStatuses"):
        check_objects(causes, status.get(key), f"status.{key}")


def _selector(causes: Causes, value: Any, field: str, *, required: bool = False) -> dict[str, str]:
    selector = check_object(causes, value, field, required=required) or {}
    labels = check_string_map(causes, selector.get("matchLabels"), f"{field}.matchLabels")
    for where, expression in check_objects(
        causes, selector.get("matchExpressions"), f"{field}.matchExpressions"
    ):
        check_string(causes, expression.get("key"), f"{where}.key", required=True)
        operator = expression.get("operator")
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            causes.unsupported(
                f"{where}.operator",
                operator,
                (
                    "In",
                    "NotIn",
                    "Exists",
                    "DoesNotExist",
                ),
            )
        check_strings(causes, expression.get("values"), f"{where}.values")
    return labels


def _pod(causes: Causes, obj: JSON) -> None:
    pod_spec(causes, obj.get("spec"), "spec")
    _pod_status(causes, obj.get("status"))


def _deployment(causes: Causes, obj: JSON) -> None:
    spec = check_object(causes, obj.get("spec"), "spec", required=True)
    if spec is None:
        return
    check_integer(causes, spec.get("replicas"), "spec.replicas", minimum=0)
    wanted = _selector(causes, spec.get("selector"), "spec.selector", required=True)
    template = check_object(causes, spec.get("template"), "spec.template", required=True)
    if template is not None:
        template_meta = (
            check_object(causes, template.get("metadata"), "spec.template.metadata") or {}
        )
        labels = check_string_map(
            causes, template_meta.get("labels"), "spec.template.metadata.labels"
        )
        if any(labels.get(k) != v for k, v in wanted.items()):
            causes.invalid(
                "spec.template.metadata.labels",
                labels,
                "`selector` does not match template `labels`",
            )
        pod_spec(causes, template.get("spec"), "spec.template.spec")
    strategy = check_object(causes, spec.get("strategy"), "spec.strategy") or {}
    rolling = (
        check_object(causes, strategy.get("rollingUpdate"), "spec.strategy.rollingUpdate") or {}
    )
    check_int_or_percent(causes, rolling.get("maxSurge"), "spec.strategy.rollingUpdate.maxSurge")
    check_int_or_percent(
        causes, rolling.get("maxUnavailable"), "spec.strategy.rollingUpdate.maxUnavailable"
    )
    paused = spec.get("paused")
    if paused is not None and not isinstance(paused, bool):
        causes.wrong_type("spec.paused", paused, "true or false")


_METRIC_TYPES = ("Resource", "ContainerResource", "Pods", "Object", "External")


def _hpa(causes: Causes, obj: JSON) -> None:
    spec = check_object(causes, obj.get("spec"), "spec", required=True)
    if spec is None:
        return
    ref = (
        check_object(causes, spec.get("scaleTargetRef"), "spec.scaleTargetRef", required=True) or {}
    )
    if spec.get("scaleTargetRef") is not None:
        check_string(causes, ref.get("kind"), "spec.scaleTargetRef.kind", required=True)
        check_string(causes, ref.get("name"), "spec.scaleTargetRef.name", required=True)
    low = check_integer(causes, spec.get("minReplicas"), "spec.minReplicas", minimum=1)
    high = check_integer(
        causes, spec.get("maxReplicas"), "spec.maxReplicas", minimum=1, required=True
    )
    if low is not None and high is not None and low > high:
        causes.invalid("spec.minReplicas", low, "must be less than or equal to maxReplicas")
    for where, metric in check_objects(causes, spec.get("metrics"), "spec.metrics"):
        kind = metric.get("type")
        if kind not in _METRIC_TYPES:
            causes.unsupported(f"{where}.type", kind, _METRIC_TYPES)
            continue
        source = (
            check_object(
                causes,
                metric.get(kind[0].lower() + kind[1:]),
                f"{where}.{kind[0].lower() + kind[1:]}",
                required=True,
            )
            or {}
        )
        key = kind[0].lower() + kind[1:]
        target = check_object(causes, source.get("target"), f"{where}.{key}.target") or {}
        check_integer(
            causes,
            target.get("averageUtilization"),
            f"{where}.target.averageUtilization",
            minimum=1,
        )
        _metric_target(causes, target, f"{where}.{key}.target")
        if kind == "Pods":
            _pods_metric(causes, source, f"{where}.pods")
    _behavior(causes, spec.get("behavior"))


_SELECT_POLICIES = ("Disabled", "Max", "Min")
_POLICY_TYPES = ("Percent", "Pods")
_MAX_WINDOW_SECONDS = 3600
_MAX_PERIOD_SECONDS = 1800


def _behavior(causes: Causes, value: Any) -> None:
    """upstream's ``validateScalingRules`` and ``validateScalingPolicy``, in their words.

    They run after defaulting, which fills a direction's rules only where a field is not set:
    ``policies: []`` is set, and refused; a missing integer of a policy is Go's zero, refused
    as one.
    """
    behavior = check_object(causes, value, "spec.behavior") or {}
    for direction in ("scaleUp", "scaleDown"):
        field = f"spec.behavior.{direction}"
        rules = check_object(causes, behavior.get(direction), field)
        if rules is None:
            continue
        _bounded(
            causes,
            rules.get("stabilizationWindowSeconds"),
            f"{field}.stabilizationWindowSeconds",
            zero_allowed=True,
            maximum=_MAX_WINDOW_SECONDS,
        )
        _tolerance(causes, rules.get("tolerance"), f"{field}.tolerance")
        select = check_string(causes, rules.get("selectPolicy"), f"{field}.selectPolicy")
        if select is not None and select not in _SELECT_POLICIES:
            causes.unsupported(f"{field}.selectPolicy", select, _SELECT_POLICIES)
        given = rules.get("policies")
        if isinstance(given, list) and not given:
            causes.add(
                f"{field}.policies",
                "FieldValueRequired",
                "Required value: must specify at least one Policy",
            )
        for where, policy in check_objects(causes, given, f"{field}.policies"):
            _scaling_policy(causes, policy, where)


def _tolerance(causes: Causes, value: Any, where: str) -> None:
    """`behavior.*.tolerance` (1.33+): a quantity, not below zero (upstream's
    `ValidateNonnegativeQuantity`); a stored bad one would fail every HPA sync."""
    if value is None:
        return
    tolerance = _quantity(causes, value, where)
    if tolerance is not None and tolerance < 0:
        causes.invalid(where, value, "must be greater than or equal to 0")


def _scaling_policy(causes: Causes, policy: JSON, where: str) -> None:
    # Go decodes a missing (or null) field of a policy to its zero value.
    kind, value, seconds = (
        default if policy.get(key) is None else policy[key]
        for key, default in (("type", ""), ("value", 0), ("periodSeconds", 0))
    )
    if kind not in _POLICY_TYPES:
        causes.unsupported(f"{where}.type", kind, _POLICY_TYPES)
    _bounded(causes, value, f"{where}.value")
    _bounded(causes, seconds, f"{where}.periodSeconds", maximum=_MAX_PERIOD_SECONDS)


def _bounded(
    causes: Causes,
    value: Any,
    field: str,
    *,
    zero_allowed: bool = False,
    maximum: int | None = None,
) -> None:
    """An int32 above zero (or at least zero) and at most `maximum`, in upstream's words."""
    number = check_integer(causes, value, field)
    if number is None:
        return
    if number < 0 or (number == 0 and not zero_allowed):
        least = "greater than or equal to zero" if zero_allowed else "greater than zero"
        causes.invalid(field, number, f"must be {least}")
    elif maximum is not None and number > maximum:
        causes.invalid(field, number, f"must be less than or equal to {maximum}")


def _metric_target(causes: Causes, target: JSON, where: str) -> None:
    """upstream's ``validateMetricTarget`` (pkg/apis/autoscaling/validation): values positive."""
    for field in ("value", "averageValue"):
        given = target.get(field)
        if given is None:
            continue
        quantity = _quantity(causes, given, f"{where}.{field}")
        if quantity is not None and quantity <= 0:
            causes.invalid(f"{where}.{field}", given, "must be positive")


def _pods_metric(causes: Causes, source: JSON, where: str) -> None:
    """upstream's ``validatePodsSource``: a metric name and a positive averageValue target."""
    metric = check_object(causes, source.get("metric"), f"{where}.metric") or {}
    if not metric.get("name"):
        causes.add(
            f"{where}.metric.name",
            "FieldValueRequired",
            "Required value: must specify a metric name",
        )
    target = source.get("target")
    if not isinstance(target, dict) or target.get("averageValue") is None:
        causes.add(
            f"{where}.target.averageValue",
            "FieldValueRequired",
            "Required value: must specify a positive target averageValue",
        )


def _service(causes: Causes, obj: JSON) -> None:
    spec = check_object(causes, obj.get("spec"), "spec") or {}
    check_string_map(causes, spec.get("selector"), "spec.selector")
    for where, port in check_objects(causes, spec.get("ports"), "spec.ports"):
        check_integer(
            causes, port.get("port"), f"{where}.port", minimum=1, maximum=65535, required=True
        )
        check_string(causes, port.get("name"), f"{where}.name")
        target = port.get("targetPort")
        if target is not None and (isinstance(target, bool) or not isinstance(target, int | str)):
            causes.wrong_type(f"{where}.targetPort", target, "a port number or name")


def _configmap(causes: Causes, obj: JSON) -> None:
    size = 0
    for section in ("data", "binaryData"):
        for key, value in check_string_map(causes, obj.get(section), section).items():
            if not CONFIG_KEY.fullmatch(key) or len(key) > 253:
                causes.invalid(
                    f"{section}[{key}]",
                    key,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                )
            size += len(key) + len(value)
    if size > MAX_CONFIG_BYTES:
        causes.add("", "FieldValueTooLong", f"Too long: must have at most {MAX_CONFIG_BYTES} bytes")


def _pdb(causes: Causes, obj: JSON) -> None:
    spec = check_object(causes, obj.get("spec"), "spec") or {}
    _selector(causes, spec.get("selector"), "spec.selector")
    check_int_or_percent(causes, spec.get("minAvailable"), "spec.minAvailable")
    check_int_or_percent(causes, spec.get("maxUnavailable"), "spec.maxUnavailable")
    if "minAvailable" in spec and "maxUnavailable" in spec:
        causes.invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set")


def _node(causes: Causes, obj: JSON) -> None:
    spec = check_object(causes, obj.get("spec"), "spec") or {}
    flag = spec.get("unschedulable")
    if flag is not None and not isinstance(flag, bool):
        causes.wrong_type("spec.unschedulable", flag, "true or false")
    check_objects(causes, spec.get("taints"), "spec.taints")


def _role(causes: Causes, obj: JSON) -> None:
    for where, rule in check_objects(causes, obj.get("rules"), "rules"):
        check_strings(causes, rule.get("verbs"), f"{where}.verbs")
        for key in ("apiGroups", "resources", "resourceNames"):
            check_strings(causes, rule.get(key), f"{where}.{key}")


def _role_binding(causes: Causes, obj: JSON) -> None:
    ref = check_object(causes, obj.get("roleRef"), "roleRef", required=True) or {}
    check_string(causes, ref.get("kind"), "roleRef.kind", required=True)
    check_string(causes, ref.get("name"), "roleRef.name", required=True)
    for where, subject in check_objects(causes, obj.get("subjects"), "subjects"):
        check_string(causes, subject.get("kind"), f"{where}.kind", required=True)
        check_string(causes, subject.get("name"), f"{where}.name", required=True)


def _event(causes: Causes, obj: JSON) -> None:
    check_object(causes, obj.get("involvedObject"), "involvedObject")
    for key in ("reason", "message", "type"):
        check_string(causes, obj.get(key), key)


def _endpoints(causes: Causes, obj: JSON) -> None:
    check_objects(causes, obj.get("subsets"), "subsets")


KIND_CHECKS: dict[str, Callable[[Causes, JSON], None]] = {
    "/pods": _pod,
    "apps/deployments": _deployment,
    "autoscaling/horizontalpodautoscalers": _hpa,
    "/services": _service,
    "/configmaps": _configmap,
    "policy/poddisruptionbudgets": _pdb,
    "/nodes": _node,
    "rbac.authorization.k8s.io/roles": _role,
    "rbac.authorization.k8s.io/rolebindings": _role_binding,
    "/events": _event,
    "/endpoints": _endpoints,
}
