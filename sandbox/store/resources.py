"""The API resources the sandbox serves: their groups, versions, kinds, verbs and subresources."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]


@dataclass(frozen=True)
class ResourceType:
    """One API resource (plural name in an API group and version) the sandbox serves."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch")
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        """The `apiVersion` field of this resource's objects."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """Identity of the resource across versions: `group/plural`."""
        return f"{self.group}/{self.plural}"

    @property
    def singular(self) -> str:
        """Lower-case kind, as discovery reports it."""
        return self.kind.lower()


_RW = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",), _RW, ("status",)),
    ResourceType(
        "",
        "v1",
        "pods",
        "Pod",
        True,
        ("po",),
        _RW,
        ("status", "eviction", "proxy", "log"),
        ("all",),
    ),
    ResourceType(
        "", "v1", "services", "Service", True, ("svc",), _RW, ("status", "proxy"), ("all",)
    ),
    ResourceType("", "v1", "endpoints", "Endpoints", True, ("ep",), _RW),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, ("cm",), _RW),
    ResourceType("", "v1", "events", "Event", True, ("ev",), _RW),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",), _RW, ("token",)),
    ResourceType("", "v1", "nodes", "Node", False, ("no",), _RW, ("status",)),
    ResourceType(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        ("deploy",),
        _RW,
        ("status", "scale"),
        ("all",),
    ),
    ResourceType(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        True,
        ("rs",),
        _RW,
        ("status", "scale"),
        ("all",),
    ),
    ResourceType(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        True,
        ("hpa",),
        _RW,
        ("status",),
        ("all",),
    ),
    ResourceType(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        True,
        ("pdb",),
        _RW,
        ("status",),
    ),
    ResourceType(
        "networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",), _RW
    ),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True, (), _RW),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, (), _RW),
    ResourceType(
        "metrics.k8s.io",
        "v1beta1",
        "pods",
        "PodMetrics",
        True,
        (),
        ("get", "list"),
    ),
    ResourceType(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        False,
        (),
        ("create",),
    ),
    ResourceType(
        "authorization.k8s.io",
        "v1",
        "selfsubjectrulesreviews",
        "SelfSubjectRulesReview",
        False,
        (),
        ("create",),
    ),
    ResourceType(
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "SelfSubjectReview",
        False,
        (),
        ("create",),
    ),
)


def resource_type(group: str, plural: str) -> ResourceType | None:
    """The served resource `plural` in `group`, if any."""
    for rt in RESOURCE_TYPES:
        if rt.group == group and rt.plural == plural:
            return rt
    return None


def resource_for_kind(api_version: str, kind: str) -> ResourceType | None:
    """The served resource for a manifest's `apiVersion` and `kind`, if any."""
    group = api_version.rpartition("/")[0]
    virtual = ("metrics.k8s.io", "authorization.k8s.io", "authentication.k8s.io")
    for rt in RESOURCE_TYPES:
        if rt.group == group and rt.kind == kind and rt.group not in virtual:
            return rt
    return None


def _must(group: str, plural: str) -> ResourceType:
    rt = resource_type(group, plural)
    assert rt is not None, plural
    return rt


PODS = _must("", "pods")


SERVICES = _must("", "services")


EVENTS = _must("", "events")


CONFIGMAPS = _must("", "configmaps")


NAMESPACES = _must("", "namespaces")


NODES = _must("", "nodes")


ENDPOINTS = _must("", "endpoints")


SERVICEACCOUNTS = _must("", "serviceaccounts")


ROLES = _must("rbac.authorization.k8s.io", "roles")


ROLEBINDINGS = _must("rbac.authorization.k8s.io", "rolebindings")


DEPLOYMENTS = _must("apps", "deployments")


REPLICASETS = _must("apps", "replicasets")


HPAS = _must("autoscaling", "horizontalpodautoscalers")


PDBS = _must("policy", "poddisruptionbudgets")
