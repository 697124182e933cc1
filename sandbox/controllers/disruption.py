"""The disruption controller: PodDisruptionBudget status and Service endpoints follow the pods
(ready and not terminating). The rules it shares with the API server's eviction are in
`sandbox.store.disruption`."""

from __future__ import annotations

from sandbox.controllers.isolation import object_key
from sandbox.controllers.reconciler import Reconciler, set_condition
from sandbox.store.disruption import pdb_numbers, pod_is_healthy, service_pods
from sandbox.store.store import ENDPOINTS, JSON, PDBS, PODS, SERVICES, Store


class DisruptionController(Reconciler):
    """Keeps PodDisruptionBudget status and Service endpoints in step with the pods."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, (PDBS, PODS, SERVICES), "disruption-controller")

    def reconcile(self) -> None:
        pdbs = self.store.list(PDBS)
        services = self.store.list(SERVICES)
        for pdb in pdbs:
            self.failures.run(pdb, self._budget)
        for service in services:
            self.failures.run(service, self._endpoints)
        self.failures.forget_except({object_key(o) for o in pdbs + services})

    def _budget(self, pdb: JSON) -> None:
        numbers = pdb_numbers(self.store, pdb)

        def write(obj: JSON) -> None:
            status = obj.setdefault("status", {})
            conditions = [
                dict(c)
                for c in status.get("conditions") or []
                if c.get("type") == "DisruptionAllowed"
            ]
            allowed = numbers["disruptionsAllowed"] > 0
            set_condition(
                conditions,
                "DisruptionAllowed",
                allowed,
                "SufficientPods" if allowed else "InsufficientPods",
                "",
            )
            for condition in conditions:
                condition.pop("lastUpdateTime", None)
                condition["observedGeneration"] = int(obj["metadata"].get("generation", 1))
            status.update(numbers)
            status["observedGeneration"] = int(obj["metadata"].get("generation", 1))
            status["conditions"] = conditions

        self.store.mutate(PDBS, pdb["metadata"]["namespace"], pdb["metadata"]["name"], write)

    def _endpoints(self, service: JSON) -> None:
        namespace = service["metadata"]["namespace"]
        name = service["metadata"]["name"]
        if not (service.get("spec") or {}).get("selector"):
            return
        service_ports = (service.get("spec") or {}).get("ports") or []
        subsets = []
        for pod in service_pods(self.store, service):
            # As on a cluster, an endpoint's port is the pod's port the targetPort names.
            ports = [
                {
                    "name": p.get("name", ""),
                    "port": _target_port(pod, p.get("targetPort", p.get("port"))),
                    "protocol": "TCP",
                }
                for p in service_ports
            ]
            address = {
                "ip": "127.0.0.1",
                "nodeName": (pod.get("spec") or {}).get("nodeName", "sandbox"),
                "targetRef": {
                    "kind": "Pod",
                    "namespace": namespace,
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            }
            key = "addresses" if pod_is_healthy(pod) else "notReadyAddresses"
            subsets.append({key: [address], "ports": ports})
        body: JSON = {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": service["metadata"].get("labels", {}),
            },
            "subsets": subsets,
        }
        if self.store.find(ENDPOINTS, namespace, name) is None:
            self.store.create(ENDPOINTS, body, namespace)
        else:
            self.store.update(ENDPOINTS, body)


def _target_port(pod: JSON, target: int | str | None) -> int | None:
    """A Service's targetPort on one pod: a number, or the number of the named container port."""
    if not isinstance(target, str):
        return target
    if target.isdigit():
        return int(target)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for declared in container.get("ports") or []:
            if declared.get("name") == target:
                return int(declared["containerPort"])
    return None
