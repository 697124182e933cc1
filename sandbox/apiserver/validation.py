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

from sandbox.apiserver.field_checks import (
    DNS1035_LABEL,
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    LABEL_VALUE,
    Causes,
    check_dns_name,
    check_object,
    check_objects,
    check_qualified_name,
    check_string,
    check_string_map,
    check_strings,
    shown,
)
from sandbox.apiserver.kind_checks import KIND_CHECKS
from sandbox.store.store import JSON, NAMESPACES, ApiError, ResourceType, Store, bad_request

MAX_ANNOTATION_BYTES = 256 * 1024
MAX_OBJECT_BYTES = 1536 * 1024
"""etcd's default request limit (1.5 MiB): no larger object is ever stored."""


# ---------------------------------------------------------------------------------------------
# Shapes


# ---------------------------------------------------------------------------------------------
# Names and metadata


def _name_check(rt: ResourceType) -> tuple[re.Pattern[str], int, str]:
    """The rule for names of `rt`: a pattern, a length limit and the message."""
    if rt.plural == "namespaces":
        return DNS1123_LABEL, 63, "a lowercase RFC 1123 label"
    if rt.plural == "services":
        return DNS1035_LABEL, 63, "a DNS-1035 label (lowercase, starting with a letter)"
    return DNS1123_SUBDOMAIN, 253, "a lowercase RFC 1123 subdomain"


def _metadata(causes: Causes, rt: ResourceType, obj: JSON) -> None:
    metadata = check_object(causes, obj.get("metadata"), "metadata", required=True)
    if metadata is None:
        return
    rule = _name_check(rt)
    name = check_string(causes, metadata.get("name"), "metadata.name")
    generate = check_string(causes, metadata.get("generateName"), "metadata.generateName")
    if metadata.get("name") is None and not generate:
        causes.add(
            "metadata.name",
            "FieldValueRequired",
            "Required value: name or generateName is required",
        )
    if name is not None:
        check_dns_name(causes, name, "metadata.name", rule)
    if generate:
        # The suffix makes it whole; checked with a stand-in suffix as the API server does.
        check_dns_name(causes, generate + "x", "metadata.generateName", rule)
    check_string(causes, metadata.get("namespace"), "metadata.namespace")
    labels = check_string_map(causes, metadata.get("labels"), "metadata.labels")
    for key, value in labels.items():
        check_qualified_name(causes, key, "metadata.labels")
        if len(value) > 63 or not LABEL_VALUE.fullmatch(value):
            causes.invalid(
                "metadata.labels",
                value,
                "a valid label must be an empty string or consist of alphanumeric characters, "
                "'-', '_' or '.', and must start and end with an alphanumeric character",
            )
    annotations = check_string_map(causes, metadata.get("annotations"), "metadata.annotations")
    for key in annotations:
        check_qualified_name(causes, key.lower(), "metadata.annotations")
    size = sum(len(k) + len(v) for k, v in annotations.items())
    if size > MAX_ANNOTATION_BYTES:
        causes.add(
            "metadata.annotations",
            "FieldValueTooLong",
            f"Too long: must have at most {MAX_ANNOTATION_BYTES} bytes",
        )
    check_objects(causes, metadata.get("ownerReferences"), "metadata.ownerReferences")
    check_strings(causes, metadata.get("finalizers"), "metadata.finalizers")


# ---------------------------------------------------------------------------------------------
# Pods


# ---------------------------------------------------------------------------------------------
# Other kinds


def validate(rt: ResourceType, obj: JSON) -> None:
    """422 Invalid, with one cause per bad field, unless `obj` is a valid `rt` object."""
    causes = Causes()
    _metadata(causes, rt, obj)
    for section in ("spec", "status"):
        if section in obj and obj[section] is not None and not isinstance(obj[section], dict):
            causes.wrong_type(section, obj[section], "an object")
    if not causes.items:
        check = KIND_CHECKS.get(rt.key)
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
        f"{rt.kind} {shown(name)} is invalid: [{listed}]",
        {"name": name, "group": rt.group, "kind": rt.kind, "causes": causes.items},
    )


def admit_create(store: Store, rt: ResourceType, namespace: str | None, body: JSON) -> None:
    """What the API server checks before a create: the namespace and the object."""
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and rt.namespaced:
        given = metadata.get("namespace")
        if given not in (None, "", namespace) and namespace is not None:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent "
                "on the request"
            )
    validate(rt, body)
    if rt.namespaced:
        namespace = namespace or (metadata or {}).get("namespace") or "default"
        if store.find(NAMESPACES, "", namespace) is None:
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                {"name": namespace, "kind": "namespaces"},
            )
