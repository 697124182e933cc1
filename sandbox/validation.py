"""Object validation at the API server's door: names, labels, required fields and types.

Every object a client creates or changes passes through `validate` before the store sees it,
so the controllers and the kubelet only ever read objects of the shapes they expect, and no
name that could leave a folder or reach a terminal raw (`../x`, escape sequences) is stored.
The rules are the API server's where the sandbox reads the field (DNS-1123 names, qualified
label keys, a Pod's containers, a Deployment's selector and template, an HPA's bounds), and a
plain type check elsewhere. A failure is the API server's 422 Invalid with one cause per field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from sandbox.metrics import QuantityError, parse_quantity
from sandbox.store import JSON, ApiError, ResourceType

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

MAX_ANNOTATION_BYTES = 256 * 1024
MAX_CONFIG_BYTES = 1024 * 1024
MAX_OBJECT_BYTES = 1536 * 1024
"""etcd's default request limit (1.5 MiB): no larger object is ever stored."""


class _Causes:
    """The field errors found in one object."""

    def __init__(self) -> None:
        self.items: list[JSON] = []

    def add(self, field: str, reason: str, message: str) -> None:
        """Record one cause."""
        self.items.append({"reason": reason, "message": message, "field": field})

    def required(self, field: str) -> None:
        """A required field is missing."""
        self.add(field, "FieldValueRequired", "Required value")

    def invalid(self, field: str, value: Any, detail: str) -> None:
        """A field has a value the API server refuses."""
        self.add(field, "FieldValueInvalid", f"Invalid value: {_shown(value)}: {detail}")

    def unsupported(self, field: str, value: Any, supported: tuple[str, ...]) -> None:
        """A field's value is not one of the supported ones."""
        listed = ", ".join(f'"{choice}"' for choice in supported)
        self.add(
            field,
            "FieldValueNotSupported",
            f"Unsupported value: {_shown(value)}: supported values: {listed}",
        )

    def wrong_type(self, field: str, value: Any, expected: str) -> None:
        """A field has the wrong type."""
        self.add(
            field, "FieldValueTypeInvalid", f"Invalid value: {_shown(value)}: must be {expected}"
        )


def _shown(value: Any) -> str:
    """A value as an error message shows it: JSON, so control characters arrive escaped."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------------------------------------
# Shapes


def _object(causes: _Causes, value: Any, field: str, *, required: bool = False) -> JSON | None:
    """`value` if it is an object; a cause (and None) otherwise."""
    if value is None:
        if required:
            causes.required(field)
        return None
    if not isinstance(value, dict):
        causes.wrong_type(field, value, "an object")
        return None
    return value


def _list(causes: _Causes, value: Any, field: str, *, required: bool = False) -> list[Any]:
    """`value` if it is a list; a cause (and an empty list) otherwise."""
    if value is None:
        if required:
            causes.required(field)
        return []
    if not isinstance(value, list):
        causes.wrong_type(field, value, "a list")
        return []
    return value


def _objects(
    causes: _Causes, value: Any, field: str, *, required: bool = False
) -> list[tuple[str, JSON]]:
    """The objects of a list with their field paths; a cause for each item that is not one."""
    found = []
    for index, item in enumerate(_list(causes, value, field, required=required)):
        where = f"{field}[{index}]"
        if isinstance(item, dict):
            found.append((where, item))
        else:
            causes.wrong_type(where, item, "an object")
    return found


def _string(causes: _Causes, value: Any, field: str, *, required: bool = False) -> str | None:
    if value is None or (required and value == ""):
        if required:
            causes.required(field)
        return None
    if not isinstance(value, str):
        causes.wrong_type(field, value, "a string")
        return None
    return value


def _integer(
    causes: _Causes,
    value: Any,
    field: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    required: bool = False,
) -> int | None:
    if value is None:
        if required:
            causes.required(field)
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        causes.wrong_type(field, value, "an integer")
        return None
    if minimum is not None and value < minimum:
        causes.invalid(field, value, f"must be greater than or equal to {minimum}")
    elif maximum is not None and value > maximum:
        causes.invalid(field, value, f"must be less than or equal to {maximum}")
    return value


def _strings(causes: _Causes, value: Any, field: str) -> None:
    for index, item in enumerate(_list(causes, value, field)):
        if not isinstance(item, str):
            causes.wrong_type(f"{field}[{index}]", item, "a string")


def _string_map(causes: _Causes, value: Any, field: str) -> dict[str, str]:
    mapping = _object(causes, value, field) or {}
    for key, item in mapping.items():
        if not isinstance(item, str):
            causes.wrong_type(f"{field}[{key}]", item, "a string")
    return {k: v for k, v in mapping.items() if isinstance(v, str)}


def _int_or_percent(causes: _Causes, value: Any, field: str) -> None:
    if value is None:
        return
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            causes.invalid(field, value, "must be greater than or equal to 0")
    elif not (isinstance(value, str) and re.fullmatch(r"[0-9]+%", value)):
        causes.invalid(field, value, "must be an integer or a percentage (e.g. '25%')")


# ---------------------------------------------------------------------------------------------
# Names and metadata


def _name_check(rt: ResourceType) -> tuple[re.Pattern[str], int, str]:
    """The rule for names of `rt`: a pattern, a length limit and the message."""
    if rt.plural == "namespaces":
        return _DNS1123_LABEL, 63, "a lowercase RFC 1123 label"
    if rt.plural == "services":
        return _DNS1035_LABEL, 63, "a DNS-1035 label (lowercase, starting with a letter)"
    return _DNS1123_SUBDOMAIN, 253, "a lowercase RFC 1123 subdomain"


def _dns_name(
    causes: _Causes, value: str, field: str, rule: tuple[re.Pattern[str], int, str]
) -> None:
    pattern, limit, words = rule
    if len(value) > limit:
        causes.invalid(field, value, f"must be no more than {limit} characters")
    elif not pattern.fullmatch(value):
        causes.invalid(
            field,
            value,
            f"{words} must consist of lower case alphanumeric characters, '-' or '.', and "
            "must start and end with an alphanumeric character",
        )


def _qualified_name(causes: _Causes, key: str, field: str) -> None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix)):
        causes.invalid(field, key, "prefix part must be a lowercase RFC 1123 subdomain")
    if not name or len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        causes.invalid(
            field,
            key,
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (at most 63)",
        )


def _metadata(causes: _Causes, rt: ResourceType, obj: JSON) -> None:
    metadata = _object(causes, obj.get("metadata"), "metadata", required=True)
    if metadata is None:
        return
    rule = _name_check(rt)
    name = _string(causes, metadata.get("name"), "metadata.name")
    generate = _string(causes, metadata.get("generateName"), "metadata.generateName")
    if metadata.get("name") is None and not generate:
        causes.add(
            "metadata.name",
            "FieldValueRequired",
            "Required value: name or generateName is required",
        )
    if name is not None:
        _dns_name(causes, name, "metadata.name", rule)
    if generate:
        # The suffix makes it whole; checked with a stand-in suffix as the API server does.
        _dns_name(causes, generate + "x", "metadata.generateName", rule)
    _string(causes, metadata.get("namespace"), "metadata.namespace")
    labels = _string_map(causes, metadata.get("labels"), "metadata.labels")
    for key, value in labels.items():
        _qualified_name(causes, key, "metadata.labels")
        if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            causes.invalid(
                "metadata.labels",
                value,
                "a valid label must be an empty string or consist of alphanumeric characters, "
                "'-', '_' or '.', and must start and end with an alphanumeric character",
            )
    annotations = _string_map(causes, metadata.get("annotations"), "metadata.annotations")
    for key in annotations:
        _qualified_name(causes, key.lower(), "metadata.annotations")
    size = sum(len(k) + len(v) for k, v in annotations.items())
    if size > MAX_ANNOTATION_BYTES:
        causes.add(
            "metadata.annotations",
            "FieldValueTooLong",
            f"Too long: must have at most {MAX_ANNOTATION_BYTES} bytes",
        )
    _objects(causes, metadata.get("ownerReferences"), "metadata.ownerReferences")
    _strings(causes, metadata.get("finalizers"), "metadata.finalizers")


# ---------------------------------------------------------------------------------------------
# Pods


def _quantities(causes: _Causes, value: Any, field: str) -> None:
    for resource, quantity in (_object(causes, value, field) or {}).items():
        where = f"{field}[{resource}]"
        if isinstance(quantity, bool) or not isinstance(quantity, str | int | float):
            causes.wrong_type(where, quantity, "a quantity")
            continue
        try:
            parse_quantity(quantity)
        except QuantityError:
            causes.invalid(where, quantity, "must be a valid quantity (e.g. '250m', '128Mi')")


def _probe(causes: _Causes, value: Any, field: str) -> None:
    probe = _object(causes, value, field)
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
        _integer(causes, probe.get(key), f"{field}.{key}", minimum=0)
    http = _object(causes, probe.get("httpGet"), f"{field}.httpGet")
    if http is not None:
        _string(causes, http.get("path"), f"{field}.httpGet.path")
        port = http.get("port")
        if not isinstance(port, int | str) or isinstance(port, bool):
            causes.wrong_type(f"{field}.httpGet.port", port, "a port number or name")
    command = _object(causes, probe.get("exec"), f"{field}.exec")
    if command is not None:
        _strings(causes, command.get("command"), f"{field}.exec.command")


def _container(causes: _Causes, container: JSON, field: str, names: set[str]) -> None:
    name = _string(causes, container.get("name"), f"{field}.name", required=True)
    if name is not None:
        _dns_name(causes, name, f"{field}.name", (_DNS1123_LABEL, 63, "a lowercase RFC 1123 label"))
        if name in names:
            causes.add(f"{field}.name", "FieldValueDuplicate", f"Duplicate value: {_shown(name)}")
        names.add(name)
    _string(causes, container.get("image"), f"{field}.image", required=True)
    _strings(causes, container.get("command"), f"{field}.command")
    _strings(causes, container.get("args"), f"{field}.args")
    for where, env in _objects(causes, container.get("env"), f"{field}.env"):
        env_name = _string(causes, env.get("name"), f"{where}.name", required=True)
        if env_name is not None and not _ENV_NAME.fullmatch(env_name):
            causes.invalid(
                f"{where}.name",
                env_name,
                "a valid environment variable name must consist of alphabetic characters, "
                "digits, '_', '-', or '.'",
            )
        _string(causes, env.get("value"), f"{where}.value")
        _object(causes, env.get("valueFrom"), f"{where}.valueFrom")
    for where, port in _objects(causes, container.get("ports"), f"{field}.ports"):
        _integer(
            causes,
            port.get("containerPort"),
            f"{where}.containerPort",
            minimum=1,
            maximum=65535,
            required=True,
        )
        port_name = _string(causes, port.get("name"), f"{where}.name")
        if port_name is not None and (len(port_name) > 15 or not _PORT_NAME.fullmatch(port_name)):
            causes.invalid(
                f"{where}.name",
                port_name,
                "must be an IANA service name (at most 15 lowercase characters)",
            )
    resources = _object(causes, container.get("resources"), f"{field}.resources") or {}
    _quantities(causes, resources.get("requests"), f"{field}.resources.requests")
    _quantities(causes, resources.get("limits"), f"{field}.resources.limits")
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        _probe(causes, container.get(kind), f"{field}.{kind}")
    lifecycle = _object(causes, container.get("lifecycle"), f"{field}.lifecycle") or {}
    for hook in ("preStop", "postStart"):
        _object(causes, lifecycle.get(hook), f"{field}.lifecycle.{hook}")
    _object(causes, container.get("securityContext"), f"{field}.securityContext")
    _objects(causes, container.get("volumeMounts"), f"{field}.volumeMounts")


def pod_spec(causes: _Causes, value: Any, field: str) -> None:
    """A PodSpec: containers (required), init containers, and the fields the kubelet reads."""
    spec = _object(causes, value, field, required=True)
    if spec is None:
        return
    names: set[str] = set()
    for where, container in _objects(causes, spec.get("initContainers"), f"{field}.initContainers"):
        _container(causes, container, where, names)
    containers = _objects(causes, spec.get("containers"), f"{field}.containers", required=True)
    if not containers and isinstance(spec.get("containers"), list):
        causes.required(f"{field}.containers")
    for where, container in containers:
        _container(causes, container, where, names)
    _integer(
        causes,
        spec.get("terminationGracePeriodSeconds"),
        f"{field}.terminationGracePeriodSeconds",
        minimum=0,
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
    _string(causes, spec.get("nodeName"), f"{field}.nodeName")
    _objects(causes, spec.get("volumes"), f"{field}.volumes")
    _object(causes, spec.get("securityContext"), f"{field}.securityContext")


def _pod_status(causes: _Causes, value: Any) -> None:
    status = _object(causes, value, "status") or {}
    _string(causes, status.get("phase"), "status.phase")
    for where, condition in _objects(causes, status.get("conditions"), "status.conditions"):
        _string(causes, condition.get("type"), f"{where}.type", required=True)
        _string(causes, condition.get("status"), f"{where}.status", required=True)
    for key in ("containerStatuses", "initContainerStatuses"):
        _objects(causes, status.get(key), f"status.{key}")


# ---------------------------------------------------------------------------------------------
# Other kinds


def _selector(causes: _Causes, value: Any, field: str, *, required: bool = False) -> dict[str, str]:
    selector = _object(causes, value, field, required=required) or {}
    labels = _string_map(causes, selector.get("matchLabels"), f"{field}.matchLabels")
    for where, expression in _objects(
        causes, selector.get("matchExpressions"), f"{field}.matchExpressions"
    ):
        _string(causes, expression.get("key"), f"{where}.key", required=True)
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
        _strings(causes, expression.get("values"), f"{where}.values")
    return labels


def _pod(causes: _Causes, obj: JSON) -> None:
    pod_spec(causes, obj.get("spec"), "spec")
    _pod_status(causes, obj.get("status"))


def _deployment(causes: _Causes, obj: JSON) -> None:
    spec = _object(causes, obj.get("spec"), "spec", required=True)
    if spec is None:
        return
    _integer(causes, spec.get("replicas"), "spec.replicas", minimum=0)
    wanted = _selector(causes, spec.get("selector"), "spec.selector", required=True)
    template = _object(causes, spec.get("template"), "spec.template", required=True)
    if template is not None:
        template_meta = _object(causes, template.get("metadata"), "spec.template.metadata") or {}
        labels = _string_map(causes, template_meta.get("labels"), "spec.template.metadata.labels")
        if any(labels.get(k) != v for k, v in wanted.items()):
            causes.invalid(
                "spec.template.metadata.labels",
                labels,
                "`selector` does not match template `labels`",
            )
        pod_spec(causes, template.get("spec"), "spec.template.spec")
    strategy = _object(causes, spec.get("strategy"), "spec.strategy") or {}
    rolling = _object(causes, strategy.get("rollingUpdate"), "spec.strategy.rollingUpdate") or {}
    _int_or_percent(causes, rolling.get("maxSurge"), "spec.strategy.rollingUpdate.maxSurge")
    _int_or_percent(
        causes, rolling.get("maxUnavailable"), "spec.strategy.rollingUpdate.maxUnavailable"
    )
    paused = spec.get("paused")
    if paused is not None and not isinstance(paused, bool):
        causes.wrong_type("spec.paused", paused, "true or false")


_METRIC_TYPES = ("Resource", "ContainerResource", "Pods", "Object", "External")


def _hpa(causes: _Causes, obj: JSON) -> None:
    spec = _object(causes, obj.get("spec"), "spec", required=True)
    if spec is None:
        return
    ref = _object(causes, spec.get("scaleTargetRef"), "spec.scaleTargetRef", required=True) or {}
    if spec.get("scaleTargetRef") is not None:
        _string(causes, ref.get("kind"), "spec.scaleTargetRef.kind", required=True)
        _string(causes, ref.get("name"), "spec.scaleTargetRef.name", required=True)
    low = _integer(causes, spec.get("minReplicas"), "spec.minReplicas", minimum=1)
    high = _integer(causes, spec.get("maxReplicas"), "spec.maxReplicas", minimum=1, required=True)
    if low is not None and high is not None and low > high:
        causes.invalid("spec.minReplicas", low, "must be less than or equal to maxReplicas")
    for where, metric in _objects(causes, spec.get("metrics"), "spec.metrics"):
        kind = metric.get("type")
        if kind not in _METRIC_TYPES:
            causes.unsupported(f"{where}.type", kind, _METRIC_TYPES)
            continue
        source = (
            _object(
                causes,
                metric.get(kind[0].lower() + kind[1:]),
                f"{where}.{kind[0].lower() + kind[1:]}",
                required=True,
            )
            or {}
        )
        target = _object(causes, source.get("target"), f"{where}.target") or {}
        _integer(
            causes,
            target.get("averageUtilization"),
            f"{where}.target.averageUtilization",
            minimum=1,
        )
    behavior = _object(causes, spec.get("behavior"), "spec.behavior") or {}
    for direction in ("scaleUp", "scaleDown"):
        rules = _object(causes, behavior.get(direction), f"spec.behavior.{direction}") or {}
        _integer(
            causes,
            rules.get("stabilizationWindowSeconds"),
            f"spec.behavior.{direction}.stabilizationWindowSeconds",
            minimum=0,
            maximum=3600,
        )
        for where, policy in _objects(
            causes, rules.get("policies"), f"spec.behavior.{direction}.policies"
        ):
            if policy.get("type") not in ("Pods", "Percent"):
                causes.unsupported(
                    f"{where}.type",
                    policy.get("type"),
                    (
                        "Pods",
                        "Percent",
                    ),
                )
            _integer(causes, policy.get("value"), f"{where}.value", minimum=1, required=True)
            _integer(
                causes,
                policy.get("periodSeconds"),
                f"{where}.periodSeconds",
                minimum=1,
                maximum=1800,
                required=True,
            )


def _service(causes: _Causes, obj: JSON) -> None:
    spec = _object(causes, obj.get("spec"), "spec") or {}
    _string_map(causes, spec.get("selector"), "spec.selector")
    for where, port in _objects(causes, spec.get("ports"), "spec.ports"):
        _integer(causes, port.get("port"), f"{where}.port", minimum=1, maximum=65535, required=True)
        _string(causes, port.get("name"), f"{where}.name")
        target = port.get("targetPort")
        if target is not None and (isinstance(target, bool) or not isinstance(target, int | str)):
            causes.wrong_type(f"{where}.targetPort", target, "a port number or name")


def _configmap(causes: _Causes, obj: JSON) -> None:
    size = 0
    for section in ("data", "binaryData"):
        for key, value in _string_map(causes, obj.get(section), section).items():
            if not _CONFIG_KEY.fullmatch(key) or len(key) > 253:
                causes.invalid(
                    f"{section}[{key}]",
                    key,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                )
            size += len(key) + len(value)
    if size > MAX_CONFIG_BYTES:
        causes.add("", "FieldValueTooLong", f"Too long: must have at most {MAX_CONFIG_BYTES} bytes")


def _pdb(causes: _Causes, obj: JSON) -> None:
    spec = _object(causes, obj.get("spec"), "spec") or {}
    _selector(causes, spec.get("selector"), "spec.selector")
    _int_or_percent(causes, spec.get("minAvailable"), "spec.minAvailable")
    _int_or_percent(causes, spec.get("maxUnavailable"), "spec.maxUnavailable")
    if "minAvailable" in spec and "maxUnavailable" in spec:
        causes.invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set")


def _node(causes: _Causes, obj: JSON) -> None:
    spec = _object(causes, obj.get("spec"), "spec") or {}
    flag = spec.get("unschedulable")
    if flag is not None and not isinstance(flag, bool):
        causes.wrong_type("spec.unschedulable", flag, "true or false")
    _objects(causes, spec.get("taints"), "spec.taints")


def _role(causes: _Causes, obj: JSON) -> None:
    for where, rule in _objects(causes, obj.get("rules"), "rules"):
        _strings(causes, rule.get("verbs"), f"{where}.verbs")
        for key in ("apiGroups", "resources", "resourceNames"):
            _strings(causes, rule.get(key), f"{where}.{key}")


def _role_binding(causes: _Causes, obj: JSON) -> None:
    ref = _object(causes, obj.get("roleRef"), "roleRef", required=True) or {}
    _string(causes, ref.get("kind"), "roleRef.kind", required=True)
    _string(causes, ref.get("name"), "roleRef.name", required=True)
    for where, subject in _objects(causes, obj.get("subjects"), "subjects"):
        _string(causes, subject.get("kind"), f"{where}.kind", required=True)
        _string(causes, subject.get("name"), f"{where}.name", required=True)


def _event(causes: _Causes, obj: JSON) -> None:
    _object(causes, obj.get("involvedObject"), "involvedObject")
    for key in ("reason", "message", "type"):
        _string(causes, obj.get(key), key)


def _endpoints(causes: _Causes, obj: JSON) -> None:
    _objects(causes, obj.get("subsets"), "subsets")


_KINDS: dict[str, Callable[[_Causes, JSON], None]] = {
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


def validate(rt: ResourceType, obj: JSON) -> None:
    """422 Invalid, with one cause per bad field, unless `obj` is a valid `rt` object."""
    causes = _Causes()
    _metadata(causes, rt, obj)
    for section in ("spec", "status"):
        if section in obj and obj[section] is not None and not isinstance(obj[section], dict):
            causes.wrong_type(section, obj[section], "an object")
    if not causes.items:
        check = _KINDS.get(rt.key)
        if check is not None:
            check(causes, obj)
    if not causes.items:
        size = len(json.dumps(obj))
        if size > MAX_OBJECT_BYTES:
            raise ApiError(
                413,
                "RequestEntityTooLarge",
                f"Request entity too large: the object is {size} bytes, the limit is "
                f"{MAX_OBJECT_BYTES}",
            )
        return
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    name = metadata.get("name") if isinstance(metadata, dict) else None
    name = name if isinstance(name, str) else ""
    listed = ", ".join(
        f"{c['field']}: {c['message']}" if c["field"] else c["message"] for c in causes.items
    )
    raise ApiError(
        422,
        "Invalid",
        f"{rt.kind} {_shown(name)} is invalid: [{listed}]",
        {"name": name, "group": rt.group, "kind": rt.kind, "causes": causes.items},
    )
