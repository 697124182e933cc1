"""Discovery: the API groups, versions and resources the sandbox serves, as kubectl reads them,
and why the sandbox lacks what kubectl users often try."""

from __future__ import annotations

from sandbox.store.custom_metrics import ADAPTER_RULES, GROUP, VERSION
from sandbox.store.store import JSON, RESOURCE_TYPES


def api_resources(group: str, version: str) -> list[JSON]:
    """The APIResourceList entries of one group version, subresources included."""
    if (group, version) == (GROUP, VERSION):
        # prometheus-adapter lists one `pods/<metric>` per metric it serves.
        return [
            {
                "name": f"pods/{metric}",
                "singularName": "",
                "namespaced": True,
                "kind": "MetricValueList",
                "verbs": ["get"],
            }
            for metric in ADAPTER_RULES
        ]
    resources: list[JSON] = []
    for rt in RESOURCE_TYPES:
        if rt.group != group or rt.version != version:
            continue
        entry: JSON = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        for sub in rt.subresources:
            sub_entry: JSON = {
                "name": f"{rt.plural}/{sub}",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": ["get", "patch", "update"],
            }
            if sub == "scale":
                sub_entry.update(group="autoscaling", version="v1", kind="Scale")
            elif sub == "eviction":
                sub_entry.update(group="policy", version="v1", kind="Eviction", verbs=["create"])
            elif sub == "proxy":
                sub_entry.update(
                    kind="PodProxyOptions" if rt.plural == "pods" else "ServiceProxyOptions",
                    verbs=["create", "delete", "get", "patch", "update"],
                )
            elif sub == "log":
                sub_entry.update(kind="Pod", verbs=["get"])
            elif sub == "token":
                sub_entry.update(
                    group="authentication.k8s.io",
                    version="v1",
                    kind="TokenRequest",
                    verbs=["create"],
                )
            resources.append(sub_entry)
    return resources


def api_groups() -> list[JSON]:
    """The APIGroupList entries of the served groups."""
    groups: dict[str, JSON] = {}
    for rt in RESOURCE_TYPES:
        if not rt.group or rt.group in groups:
            continue
        version = {"groupVersion": rt.api_version, "version": rt.version}
        groups[rt.group] = {"name": rt.group, "versions": [version], "preferredVersion": version}
    custom = {"groupVersion": f"{GROUP}/{VERSION}", "version": VERSION}
    groups[GROUP] = {"name": GROUP, "versions": [custom], "preferredVersion": custom}
    return list(groups.values())


_NO_EXEC = (
    "the sandbox runs containers as local processes, with no exec or attach "
    "(kubectl logs shows their output)"
)


def unserved(group: str, resource: str, namespace: str | None) -> str | None:
    """Why the sandbox lacks something kubectl users often try, if it is one of those."""
    proxy = f"/api/v1/namespaces/{namespace or 'default'}/services/llm-backend:http/proxy"
    return {
        ("metrics.k8s.io", "nodes"): "the sandbox serves pod metrics only (kubectl top pods), "
        "not nodes",
        ("", "pods/exec"): _NO_EXEC,
        ("", "pods/attach"): _NO_EXEC,
        ("", "pods/portforward"): "the sandbox has no port-forward: reach the pods through the "
        f"API server's service proxy instead (kubectl get --raw {proxy}/healthz); the "
        "llm-frontend Service (the web cockpit) is on the local address the sandbox's banner "
        "gives as `web cockpit:` (--web-port, 8080 by default)",
    }.get((group, resource))
