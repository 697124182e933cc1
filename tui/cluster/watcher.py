"""The cockpit's Kubernetes adapter: watch one Deployment's pods, its HPA and their events, and
evict or delete pods, on `kubernetes.aio`.

`ClusterWatcher.run()` reads the Deployment (LIST and WATCH with a field selector on its name),
takes the pod selector from it, and then LISTs and WATCHes the pods, the HPA and the namespace's
Events, while it polls `metrics.k8s.io` for the pods' CPU and memory. Each watch resumes from the
last resourceVersion it saw (bookmarks keep that fresh), lists again after 410 Gone, resumes when
the API server ends a watch or the connection drops, and backs off (0.5 s doubling to 15 s, with
jitter) after errors. Every request has a timeout and every watch is its own task, so a stalled
API server shows as "retrying" and never blocks the caller.

The caller gets frozen values only: `on_snapshot(ClusterSnapshot)` after every change (the UI
coalesces) and `on_event(ClusterEvent)` once per new Event. Nothing here is UI-specific, so a
headless `kube-llm load` or `scenario` can use it as it is.

Beside it: `tui.cluster.kubeconfig` (which cluster, which credentials), `tui.cluster.watch` (the
list/watch loop of one collection and the metrics poll), `tui.cluster.convert` (API JSON into
`tui.core.model` values) and `tui.cluster.errors` (API trouble and missing permissions in words).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import aiohttp
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from tui.cluster.convert import (
    JSON,
    cluster_event,
    deployment_view,
    event_time,
    hpa_view,
    pod_usage,
    pod_view,
)
from tui.cluster.errors import Permission, describe, forbidden, status_causes, status_message
from tui.cluster.kubeconfig import ClusterTarget
from tui.cluster.watch import (
    Backoff,
    Collection,
    CollectionWatch,
    PodMetricsPoll,
    WatchSettings,
    read_json,
)
from tui.core.model import (
    ActionResult,
    ClusterEvent,
    ClusterSnapshot,
    Connection,
    DeploymentView,
    HpaView,
    PodUsage,
    PodView,
)

SnapshotCallback = Callable[[ClusterSnapshot], None]
EventCallback = Callable[[ClusterEvent], None]

# The snapshot shows the worst state among the watches.
_SEVERITY = {Connection.LIVE: 0, Connection.CONNECTING: 1, Connection.RETRYING: 2,
             Connection.FORBIDDEN: 3}  # fmt: skip
_CONNECTING = (Connection.CONNECTING, "connecting")


@dataclass(frozen=True)
class _Apis:
    """The API groups the adapter calls, and the collections it watches."""

    core: client.CoreV1Api
    custom: client.CustomObjectsApi
    collections: dict[str, Collection]


def _api_classes() -> tuple[type[Any], ...]:
    """The generated API classes: touching them loads their modules (CoreV1Api's alone takes
    seconds), so this runs once, in a thread, and never stalls the caller's event loop."""
    return client.CoreV1Api, client.AppsV1Api, client.AutoscalingV2Api, client.CustomObjectsApi


FRONTEND_DEPLOYMENT = "llm-frontend"
"""The web cockpit's pods (components/frontend): their events show beside the backend's."""


class ClusterWatcher:
    """Watches one Deployment, its pods, its HPA and their events; evicts and deletes pods."""

    def __init__(
        self,
        target: ClusterTarget,
        deployment: str = "llm-backend",
        hpa: str | None = None,
        on_snapshot: SnapshotCallback | None = None,
        on_event: EventCallback | None = None,
        *,
        request_timeout: float = 10.0,
        watch_idle_timeout: float = 90.0,
        watch_timeout: tuple[int, int] = (300, 600),
        metrics_interval: float = 2.0,
        metrics_retry: float = 30.0,
        backoff: Backoff | None = None,
        initial_events: int = 20,
        neighbours: tuple[str, ...] = (FRONTEND_DEPLOYMENT,),
    ) -> None:
        self.target = target
        self.neighbours = neighbours
        """Deployments whose own and pods' events are shown too (the frontend pods')."""
        self.namespace = target.namespace
        self.deployment = deployment
        self.hpa = hpa or deployment
        self._on_snapshot = on_snapshot
        self._on_event = on_event
        self._request_timeout = request_timeout
        self._settings = WatchSettings(
            request_timeout=request_timeout,
            idle_timeout=watch_idle_timeout,
            watch_timeout=watch_timeout,
            backoff=backoff or Backoff(),
        )
        self._metrics_interval = metrics_interval
        self._metrics_retry = metrics_retry
        self._initial_events = initial_events

        self._api = target.api_client()
        self._apis: _Apis | None = None
        self._apis_lock = asyncio.Lock()
        self._states: dict[str, tuple[Connection, str]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopped = asyncio.Event()
        self._failure: BaseException | None = None

        self._selector: str | None = None
        self._pods: dict[str, PodView] = {}
        self._deployment: DeploymentView | None = None
        self._hpa: HpaView | None = None
        self._usage: tuple[PodUsage, ...] = ()
        self._metrics_available: bool | None = None
        self._metrics_detail = ""
        self._seen_events: OrderedDict[str, int] = OrderedDict()
        self._last: ClusterSnapshot | None = None

    async def _connect(self) -> _Apis:
        async with self._apis_lock:
            if self._apis is None:
                core_api, apps_api, autoscaling_api, custom_api = await asyncio.to_thread(
                    _api_classes
                )
                core: client.CoreV1Api = core_api(self._api)
                apps: client.AppsV1Api = apps_api(self._api)
                autoscaling: client.AutoscalingV2Api = autoscaling_api(self._api)
                self._apis = _Apis(
                    core=core,
                    custom=custom_api(self._api),
                    collections={
                        "deployment": Collection(
                            "deployment",
                            apps.list_namespaced_deployment_without_preload_content,
                            Permission("watch", "deployments", "apps", "get/list/watch"),
                            field_selector=f"metadata.name={self.deployment}",
                        ),
                        "hpa": Collection(
                            "hpa",
                            autoscaling.list_namespaced_horizontal_pod_autoscaler_without_preload_content,
                            Permission(
                                "watch", "horizontalpodautoscalers", "autoscaling", "get/list/watch"
                            ),
                            field_selector=f"metadata.name={self.hpa}",
                        ),
                        "events": Collection(
                            "events",
                            core.list_namespaced_event_without_preload_content,
                            Permission("watch", "events", "", "get/list/watch"),
                        ),
                        "pods": Collection(
                            "pods",
                            core.list_namespaced_pod_without_preload_content,
                            Permission("watch", "pods", "", "get/list/watch"),
                        ),
                    },
                )
            return self._apis

    # -- the snapshot --------------------------------------------------------------------------

    def snapshot(self) -> ClusterSnapshot:
        """Everything known now."""
        states = list(self._states.values()) or [_CONNECTING]
        connection = max((state[0] for state in states), key=_SEVERITY.__getitem__)
        worst = [d for c, d in states if c is connection]
        # A 403 on three collections names all three missing permissions at once; otherwise
        # the freshest reason says it best (`_set` keeps the states in the order they changed).
        is_forbidden = connection is Connection.FORBIDDEN
        detail = "; ".join(dict.fromkeys(worst)) if is_forbidden else worst[-1]
        if connection is Connection.LIVE and self._deployment is None:
            detail = f"watching; no deployment {self.deployment} in {self.namespace}"
        pods = sorted(self._pods.values(), key=lambda p: (p.created_at or 0.0, p.name))
        names = {p.name for p in pods}
        return ClusterSnapshot(
            namespace=self.namespace,
            connection=connection,
            detail=detail,
            pods=tuple(pods),
            deployment=self._deployment,
            hpa=self._hpa,
            usage=tuple(u for u in self._usage if u.pod in names),
            metrics_available=self._metrics_available,
            metrics_detail=self._metrics_detail,
            at=time.time(),
        )

    def _publish(self) -> None:
        snapshot = self.snapshot()
        if self._last is not None and replace(self._last, at=0.0) == replace(snapshot, at=0.0):
            return
        self._last = snapshot
        if self._on_snapshot is not None:
            self._on_snapshot(snapshot)

    def _set(self, key: str, connection: Connection, detail: str) -> None:
        self._states.pop(key, None)
        self._states[key] = (connection, detail)
        self._publish()

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Watch until cancelled (or `close()`); API trouble shows in the snapshots, never
        as an exception."""
        for key in ("deployment", "hpa", "events"):
            self._states[key] = _CONNECTING
        self._publish()
        apis = await self._connect()
        for key in ("deployment", "hpa", "events"):
            self._start(key, self._watch(apis.collections[key]).run())
        metrics = PodMetricsPoll(
            apis.custom.list_namespaced_custom_object_without_preload_content,
            self.namespace,
            lambda: self._selector,
            self._settings,
            self._metrics,
            interval=self._metrics_interval,
            retry=self._metrics_retry,
        )
        self._start("metrics", metrics.run())
        try:
            await self._stopped.wait()
        finally:
            await self._stop_tasks()
        if self._failure is not None:
            raise self._failure

    def _start(self, key: str, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks[key] = task

        def finished(done: asyncio.Task[None]) -> None:
            # A loop ends only when cancelled; anything else is a bug to hand to run()'s caller.
            if not done.cancelled() and done.exception() is not None:
                self._failure = done.exception()
                self._stopped.set()

        task.add_done_callback(finished)

    async def _stop_tasks(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def close(self) -> None:
        """Stop watching and close the HTTP client."""
        self._stopped.set()
        await self._stop_tasks()
        await self._api.close()

    def _watch(self, collection: Collection) -> CollectionWatch:
        key = collection.key
        return CollectionWatch(
            collection,
            self.namespace,
            self._settings,
            on_list=partial(self._replace, key),
            on_change=partial(self._apply, key),
            on_state=partial(self._set, key),
        )

    # -- state changes -------------------------------------------------------------------------

    def _replace(self, key: str, items: list[JSON]) -> None:
        if key == "pods":
            self._pods = {view.name: view for view in map(pod_view, items)}
        elif key == "deployment":
            found = [i for i in items if _name(i) == self.deployment]
            self._set_deployment(found[0] if found else None)
        elif key == "hpa":
            found = [i for i in items if _name(i) == self.hpa]
            self._hpa = hpa_view(found[0]) if found else None
        elif key == "events":
            self._list_events(items)
        self._publish()

    def _apply(self, key: str, kind: str, obj: JSON) -> None:
        deleted = kind == "DELETED"
        if key == "pods":
            name = _name(obj)
            if deleted:
                self._pods.pop(name, None)
            else:
                self._pods[name] = pod_view(obj)
        elif key == "deployment" and _name(obj) == self.deployment:
            self._set_deployment(None if deleted else obj)
        elif key == "hpa" and _name(obj) == self.hpa:
            self._hpa = None if deleted else hpa_view(obj)
        elif key == "events" and not deleted and self._relevant(obj):
            self._emit(obj)
        self._publish()

    def _set_deployment(self, obj: JSON | None) -> None:
        self._deployment = deployment_view(obj) if obj is not None else None
        selector = self._deployment.selector if self._deployment else None
        if selector and selector != self._selector:
            # The pods follow the Deployment's selector (immutable, unless it is recreated).
            self._selector = selector
            old = self._tasks.pop("pods", None)
            if old is not None:
                old.cancel()
            self._states["pods"] = _CONNECTING
            assert self._apis is not None  # the deployment's watch runs only once connected
            pods = replace(self._apis.collections["pods"], label_selector=selector)
            self._start("pods", self._watch(pods).run())

    # -- events --------------------------------------------------------------------------------

    def _relevant(self, event: JSON) -> bool:
        involved = event.get("involvedObject") or {}
        kind, name = involved.get("kind"), str(involved.get("name") or "")
        owners = (self.deployment, *self.neighbours)
        if kind == "Pod":
            return name in self._pods or name.startswith(tuple(f"{o}-" for o in owners))
        if kind == "ReplicaSet":
            return name.startswith(tuple(f"{o}-" for o in owners))
        if kind == "Deployment":
            return name in owners
        if kind == "HorizontalPodAutoscaler":
            return name == self.hpa
        return False

    def _list_events(self, items: list[JSON]) -> None:
        """After a (re)list: hand over the relevant events not seen yet, the most recent ones
        first capped at `initial_events`, oldest first."""
        fresh = [e for e in items if self._relevant(e) and self._unseen(e)]
        fresh.sort(key=event_time)
        for event in fresh[-self._initial_events :] if self._initial_events else []:
            self._emit(event)
        for event in fresh:
            self._remember(event)

    def _unseen(self, event: JSON) -> bool:
        return self._seen_events.get(_event_key(event)) != cluster_event(event).count

    def _remember(self, event: JSON) -> None:
        key = _event_key(event)
        self._seen_events[key] = cluster_event(event).count
        self._seen_events.move_to_end(key)
        while len(self._seen_events) > 5000:
            self._seen_events.popitem(last=False)

    def _emit(self, event: JSON) -> None:
        if not self._unseen(event):
            return
        self._remember(event)
        if self._on_event is not None:
            self._on_event(cluster_event(event))

    # -- metrics -------------------------------------------------------------------------------

    def _metrics(self, available: bool | None, items: list[JSON], detail: str) -> None:
        if available is not None:
            self._metrics_available = available
            self._usage = tuple(pod_usage(item) for item in items)
        self._metrics_detail = detail
        self._publish()

    # -- actions -------------------------------------------------------------------------------

    async def evict(self, pod: str) -> ActionResult:
        """Evict a pod through the Eviction API (policy/v1): the PodDisruptionBudget decides."""
        body = client.V1Eviction(
            api_version="policy/v1",
            kind="Eviction",
            metadata=client.V1ObjectMeta(name=pod, namespace=self.namespace),
        )
        permission = Permission("create", "pods/eviction", "", "create")
        return await self._act(
            "evict",
            pod,
            permission,
            lambda apis: apis.core.create_namespaced_pod_eviction_without_preload_content(
                name=pod, namespace=self.namespace, body=body
            ),
            f"evicted {pod}",
        )

    async def force_delete(self, pod: str) -> ActionResult:
        """Delete a pod at once (grace period 0): no preStop, no drain, no PDB."""
        permission = Permission("delete", "pods", "", "delete")
        return await self._act(
            "delete",
            pod,
            permission,
            lambda apis: apis.core.delete_namespaced_pod_without_preload_content(
                name=pod, namespace=self.namespace, grace_period_seconds=0
            ),
            f"force-deleted {pod} (grace period 0)",
        )

    async def _act(
        self,
        action: str,
        pod: str,
        permission: Permission,
        call: Callable[[_Apis], Awaitable[aiohttp.ClientResponse]],
        done: str,
    ) -> ActionResult:
        if not pod:
            return ActionResult(action, pod, ok=False, message="no pod given", at=time.time())
        apis = await self._connect()
        try:
            async with asyncio.timeout(self._request_timeout):
                response = await call(apis)
                await read_json(response)
        except ApiException as error:
            status = error.status
            message = status_message(error)
            refused = status == 429 and (
                any(c.get("reason") == "DisruptionBudget" for c in status_causes(error))
                or "disruption budget" in message.lower()
            )
            if status == 403:
                message = forbidden(permission, self.namespace, error)
            elif refused:
                causes = [c.get("message", "") for c in status_causes(error) if c.get("message")]
                message = "; ".join([message, *causes])
            else:
                message = describe(error)
            return ActionResult(
                action, pod, False, message, status=status, refused_by_pdb=refused, at=time.time()
            )
        except Exception as error:  # transport trouble, a stalled server: report it
            message = describe(error, self._request_timeout)
            return ActionResult(action, pod, ok=False, message=message, at=time.time())
        return ActionResult(action, pod, ok=True, message=done, status=response.status,
                            at=time.time())  # fmt: skip


def _name(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _event_key(event: JSON) -> str:
    """An Event's identity: its uid (its name where a source left the uid out)."""
    metadata = event.get("metadata") or {}
    return str(metadata.get("uid") or metadata.get("name") or "")


__all__ = ["ClusterWatcher"]
