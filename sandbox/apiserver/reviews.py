"""The self reviews: what may I do, and who am I (`kubectl auth can-i [--list]`, `auth whoami`).

- SelfSubjectAccessReview: may the caller do one thing? (RBAC through `sandbox.apiserver.auth`)
- SelfSubjectRulesReview: every rule the caller has in a namespace (`can-i --list`).
- SelfSubjectReview: the caller's user name and groups (`auth whoami`).

kubectl sends these as Kubernetes protobuf; the few fields read here are taken from the wire
format directly (`sandbox.apiserver.bodies.wire_fields`): a generated protobuf module would need the
Kubernetes `.proto` files compiled, for three strings. Any client may ask about itself, as
`system:basic-user` allows on a cluster.
"""

from __future__ import annotations

from typing import Any

from sandbox.apiserver.auth import User, authorize, bound_rules
from sandbox.apiserver.bodies import PROTOBUF_MAGIC, decode_object, protobuf_object, wire_fields
from sandbox.store.store import JSON, ApiError, Store, bad_request

_ATTRIBUTE_FIELDS = {
    "resourceAttributes": (
        "namespace",
        "verb",
        "group",
        "version",
        "resource",
        "subresource",
        "name",
    ),
    "nonResourceAttributes": ("path", "verb"),
}

# What every authenticated user may do on a cluster (system:basic-user, system:discovery).
_BASIC_RESOURCE_RULES: list[JSON] = [
    {
        "verbs": ["create"],
        "apiGroups": ["authorization.k8s.io"],
        "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
    },
    {
        "verbs": ["create"],
        "apiGroups": ["authentication.k8s.io"],
        "resources": ["selfsubjectreviews"],
    },
]
_BASIC_NON_RESOURCE_RULES: list[JSON] = [
    {
        "verbs": ["get"],
        "nonResourceURLs": [
            "/api",
            "/api/*",
            "/apis",
            "/apis/*",
            "/healthz",
            "/livez",
            "/readyz",
            "/version",
            "/version/",
        ],
    }
]
_ADMIN_RESOURCE_RULES: list[JSON] = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]
_ADMIN_NON_RESOURCE_RULES: list[JSON] = [{"verbs": ["*"], "nonResourceURLs": ["*"]}]


def _message(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError("expected a length-delimited field")
    return value


def _protobuf_spec(body: bytes) -> dict[int, list[int | bytes]]:
    """The fields of the review's spec (the object's field 2) in a protobuf body."""
    review = wire_fields(protobuf_object(body))
    return wire_fields(_message(review[2][0])) if 2 in review else {}


def access_review_protobuf(body: bytes) -> JSON:
    """The spec of a SelfSubjectAccessReview sent as Kubernetes protobuf.

    The spec's field 1 is resourceAttributes, field 2 nonResourceAttributes; anything
    malformed is a 400.
    """
    names = dict(enumerate(_ATTRIBUTE_FIELDS["resourceAttributes"], start=1))
    spec: JSON = {}
    try:
        spec_fields = _protobuf_spec(body)
        if 1 in spec_fields:
            attributes = wire_fields(_message(spec_fields[1][0]))
            spec["resourceAttributes"] = {
                names[number]: _message(values[0]).decode()
                for number, values in attributes.items()
                if number in names
            }
        if 2 in spec_fields:
            attributes = wire_fields(_message(spec_fields[2][0]))
            spec["nonResourceAttributes"] = {
                name: _message(attributes[number][0]).decode()
                for number, name in ((1, "path"), (2, "verb"))
                if number in attributes
            }
    except (ValueError, UnicodeDecodeError) as error:
        raise bad_request(f"malformed protobuf SelfSubjectAccessReview: {error}") from None
    return spec


def _checked_spec(value: Any) -> JSON:
    """An access review's spec with the types of its attributes checked (400)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request("spec: Invalid value: must be an object")
    for section, fields in _ATTRIBUTE_FIELDS.items():
        attributes = value.get(section)
        if attributes is None:
            continue
        if not isinstance(attributes, dict):
            raise bad_request(f"spec.{section}: Invalid value: must be an object")
        for field in fields:
            if not isinstance(attributes.get(field, ""), str):
                raise bad_request(f"spec.{section}.{field}: Invalid value: must be a string")
    return value


def access_review(store: Store, user: User, body: bytes, content_type: str) -> JSON:
    """SelfSubjectAccessReview: may the caller do what the spec says?"""
    if body.startswith(PROTOBUF_MAGIC):
        spec = access_review_protobuf(body)
    else:
        spec = _checked_spec(decode_object(body, content_type).get("spec"))
    attributes = spec.get("resourceAttributes")
    allowed = True
    if attributes is not None:
        resource = attributes.get("resource", "")
        if attributes.get("subresource"):
            resource += "/" + attributes["subresource"]
        try:
            authorize(
                store,
                user,
                attributes.get("verb", ""),
                attributes.get("group", ""),
                resource,
                attributes.get("namespace") or None,
                attributes.get("name") or None,
            )
        except ApiError:
            allowed = False  # RBAC gives no reason for a denial
    elif not user.admin:
        # Non-resource URLs: discovery and health for everyone, the rest for the admin.
        path = (spec.get("nonResourceAttributes") or {}).get("path", "")
        allowed = path.startswith(("/api", "/version", "/healthz", "/livez", "/readyz"))
    return {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": {"allowed": allowed},
    }


def _rules_review_namespace(body: bytes, content_type: str) -> str:
    if body.startswith(PROTOBUF_MAGIC):
        try:
            spec = _protobuf_spec(body)
            return _message(spec[1][0]).decode() if 1 in spec else ""
        except (ValueError, UnicodeDecodeError) as error:
            raise bad_request(f"malformed protobuf SelfSubjectRulesReview: {error}") from None
    given: Any = decode_object(body, content_type, allow_empty=True).get("spec") or {}
    if not isinstance(given, dict) or not isinstance(given.get("namespace", ""), str):
        raise bad_request("spec.namespace: Invalid value: must be a string")
    return str(given.get("namespace", ""))


def rules_review(store: Store, user: User, body: bytes, content_type: str) -> JSON:
    """SelfSubjectRulesReview: every rule the caller has in the spec's namespace."""
    namespace = _rules_review_namespace(body, content_type)
    if user.admin:
        resource_rules = _ADMIN_RESOURCE_RULES + _BASIC_RESOURCE_RULES
        non_resource_rules = _ADMIN_NON_RESOURCE_RULES + _BASIC_NON_RESOURCE_RULES
    else:
        bound = [
            {
                key: list(rule[key])
                for key in ("verbs", "apiGroups", "resources", "resourceNames")
                if isinstance(rule.get(key), list)
            }
            for rule in (bound_rules(store, user, namespace) if namespace else [])
        ]
        resource_rules = _BASIC_RESOURCE_RULES + bound
        non_resource_rules = list(_BASIC_NON_RESOURCE_RULES)
    return {
        "kind": "SelfSubjectRulesReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": {"namespace": namespace},
        "status": {
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource_rules,
            "incomplete": False,
        },
    }


def user_info(user: User) -> JSON:
    """The caller as the API server's authenticator sees it."""
    if user.admin:
        groups = ["system:masters", "system:authenticated"]
    elif user.service_account is not None:
        namespace = user.service_account[0]
        groups = [
            "system:serviceaccounts",
            f"system:serviceaccounts:{namespace}",
            "system:authenticated",
        ]
    else:
        groups = ["system:authenticated"]
    return {"username": user.name, "groups": groups}


def self_review(user: User) -> JSON:
    """SelfSubjectReview (`kubectl auth whoami`): who the caller is."""
    return {
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "status": {"userInfo": user_info(user)},
    }
