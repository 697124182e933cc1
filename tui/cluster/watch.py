"""LIST then WATCH one Kubernetes collection, forever, through every kind of API trouble.

`CollectionWatch.run()` lists the collection, then watches from the list's resourceVersion with
bookmarks (which keep that version fresh while nothing changes). When the API server ends the
watch, at its timeout or early, or the connection drops, it resumes from the last version it
saw; after 410 Gone it lists again; after an error it waits (capped exponential backoff with
jitter) and tries again. It never ends on its own and never raises for API trouble: it reports
its state (`Connection` and plain words) through a callback instead.

The watch itself is the `kubernetes` package's (`kubernetes.aio.watch.Watch`); this module only
decides when to list, resume and wait, and bounds every request with a timeout so that a stalled
API server shows as "retrying" instead of hanging.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import aiohttp
from kubernetes.aio import watch
from kubernetes.aio.client.exceptions import ApiException

from tui.cluster.convert import JSON
from tui.cluster.errors import Permission, describe, forbidden
from tui.core.model import Connection

log = logging.getLogger(__name__)

Lister = Callable[..., Awaitable[aiohttp.ClientResponse]]
"""A generated `list_namespaced_*_without_preload_content` method."""


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter: base, 2 x base, 4 x base ... up to `cap`."""

    base: float = 0.5
    cap: float = 15.0
    jitter: float = 0.2

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1 for the first)."""
        nominal = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        return min(self.cap, nominal * random.uniform(1 - self.jitter, 1 + self.jitter))


@dataclass(frozen=True)
class WatchSettings:
    """How patient a watch is."""

    request_timeout: float = 10.0
    """A list, or the opening of a watch, that takes longer has failed."""
    idle_timeout: float = 90.0
    """A watch that sends nothing (not even a bookmark) this long is reopened from where it was."""
    watch_timeout: tuple[int, int] = (300, 600)
    """The server-side `timeoutSeconds` of each watch, chosen at random in this range."""
    backoff: Backoff = field(default_factory=Backoff)


@dataclass(frozen=True)
class Collection:
    """One watched collection: how to list it, with which selectors, under which permission."""

    key: str
    lister: Lister
    permission: Permission
    """The Role's rule it needs (its verb is set per request: list or watch)."""
    field_selector: str | None = None
    label_selector: str | None = None

    def selectors(self) -> dict[str, str]:
        """The selector arguments of the list call."""
        chosen = {"field_selector": self.field_selector, "label_selector": self.label_selector}
        return {name: value for name, value in chosen.items() if value}


class _RawWatch(watch.Watch):
    """The library's watch, handing over each event's object as the API server's JSON."""

    def get_return_type(self, func: Any) -> None:
        """No model class: the adapter converts the JSON itself."""
        return None


async def read_json(response: aiohttp.ClientResponse) -> JSON:
    """The body of a response as a JSON object; an `ApiException` for any non-2xx status."""
    try:
        data = await response.read()
    finally:
        response.release()
    if not 200 <= response.status < 300:
        raise ApiException(
            status=response.status, reason=response.reason, body=data.decode("utf-8", "replace")
        )
    parsed = json.loads(data)
    if not isinstance(parsed, dict):
        raise ValueError("the API server's answer is not a JSON object")
    return parsed


def seconds(delay: float) -> str:
    """A delay for people, to two significant digits: `0.48 s`, `4.1 s`, `15 s`."""
    return f"{delay:.2g} s"


class CollectionWatch:
    """LIST then WATCH one collection until cancelled."""

    def __init__(
        self,
        collection: Collection,
        namespace: str,
        settings: WatchSettings,
        on_list: Callable[[list[JSON]], None],
        on_change: Callable[[str, JSON], None],
        on_state: Callable[[Connection, str], None],
    ) -> None:
        self.collection = collection
        self.namespace = namespace
        self.settings = settings
        self._on_list = on_list
        self._on_change = on_change
        self._on_state = on_state

    async def run(self) -> None:
        """List and watch forever; relist only after 410 Gone."""
        version: str | None = None
        failures = 0
        quick_ends = 0
        stream = _RawWatch()
        try:
            while True:
                try:
                    if version is None:
                        version = await self._list()
                        self._on_state(Connection.LIVE, "watching")
                    version, ended_early = await self._watch(stream, version)
                    failures = 0
                    if not ended_early:
                        quick_ends = 0
                        continue
                    quick_ends += 1
                    self._on_state(Connection.RETRYING, "the API server ended a watch; resuming")
                    if quick_ends > 1:  # a server that keeps ending watches at once: back off
                        await asyncio.sleep(self.settings.backoff.delay(quick_ends - 1))
                except asyncio.CancelledError:
                    raise
                except ApiException as error:
                    if error.status == 410:
                        version = None
                        self._on_state(
                            Connection.RETRYING,
                            "410 Gone: the resource version is too old; listing again",
                        )
                        continue
                    failures += 1
                    await self._retry(error, failures, "list" if version is None else "watch")
                except Exception as error:  # any API trouble: retry, never end the watch
                    if not isinstance(error, aiohttp.ClientError | TimeoutError | OSError):
                        log.warning("watching %s failed", self.collection.key, exc_info=error)
                    failures += 1
                    await self._retry(error, failures, "list" if version is None else "watch")
        finally:
            await stream.close()

    async def _list(self) -> str | None:
        """List the collection, hand the items over; the list's resourceVersion."""
        collection = self.collection
        async with asyncio.timeout(self.settings.request_timeout):
            response = await collection.lister(namespace=self.namespace, **collection.selectors())
            body = await read_json(response)
        self._on_list([i for i in body.get("items") or [] if isinstance(i, dict)])
        version = (body.get("metadata") or {}).get("resourceVersion")
        return str(version) if version else None

    async def _retry(self, error: BaseException, failures: int, verb: str) -> None:
        delay = self.settings.backoff.delay(failures)
        if isinstance(error, ApiException) and error.status == 403:
            permission = replace(self.collection.permission, verb=verb)
            self._on_state(Connection.FORBIDDEN, forbidden(permission, self.namespace, error))
        else:
            why = describe(error, self.settings.request_timeout)
            self._on_state(Connection.RETRYING, f"retrying in {seconds(delay)}: {why}")
        await asyncio.sleep(delay)

    async def _open(self, **kwargs: Any) -> aiohttp.ClientResponse:
        """Open one watch request (the library's watch calls this), bounded in time."""
        kwargs.pop("_preload_content", None)
        async with asyncio.timeout(self.settings.request_timeout):
            response = await self.collection.lister(**kwargs)
            if response.status != 200:
                await read_json(response)  # raises the API's error
        self._on_state(Connection.LIVE, "watching")
        return response

    async def _watch(self, stream: _RawWatch, version: str | None) -> tuple[str | None, bool]:
        """One watch request until it ends: the last resourceVersion seen, and whether the
        server ended it before its timeout (a dropped watch)."""
        low, high = self.settings.watch_timeout
        timeout = random.randint(low, high)
        started = time.monotonic()
        events = stream.stream(
            # A partial, not the bound method: for a method the library looks for a
            # `*_without_preload_content` twin on its object, which this one has no need of.
            partial(self._open),
            namespace=self.namespace,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            _request_timeout=float(timeout + 30),
            **self.collection.selectors(),
        )
        try:
            while True:
                idle = asyncio.timeout(self.settings.idle_timeout)
                try:
                    async with idle:
                        event = await anext(events)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    if not idle.expired():
                        raise  # the request's own timeout (opening it, or reading): a failure
                    # Quiet for too long: maybe a stalled connection. Resume (no relist); if
                    # the server really stalls, reopening times out and shows as retrying.
                    return stream.resource_version or version, False
                if not isinstance(event, dict) or "raw_object" not in event:
                    raise ValueError("the watch sent a line that is not a watch event")
                if event["type"] != "BOOKMARK":
                    self._on_change(str(event["type"]), event["raw_object"])
        finally:
            await stream.close()
        ended_early = time.monotonic() - started < timeout - 1
        return stream.resource_version or version, ended_early


MetricsCallback = Callable[[bool | None, list[JSON], str], None]
"""(available, PodMetrics items, why not in words); available None: unknown this time (the
request failed in transit), keep what was known."""


class PodMetricsPoll:
    """Poll `metrics.k8s.io` pod metrics (the Role grants get/list, not watch); when the group
    is not served or not allowed, say so and look again now and then."""

    PERMISSION = Permission("list", "pods", "metrics.k8s.io", "get/list")

    def __init__(
        self,
        lister: Lister,
        namespace: str,
        selector: Callable[[], str | None],
        settings: WatchSettings,
        on_reading: MetricsCallback,
        interval: float = 2.0,
        retry: float = 30.0,
    ) -> None:
        self._lister = lister
        self._namespace = namespace
        self._selector = selector
        self._settings = settings
        self._on_reading = on_reading
        self._interval = interval
        self._retry = retry

    async def run(self) -> None:
        """Poll until cancelled; never raises for API trouble."""
        while True:
            selector = self._selector()
            wait = self._interval
            if selector is not None:  # the Deployment's selector: only its pods' metrics
                wait = await self._poll(selector)
            await asyncio.sleep(wait)

    async def _poll(self, selector: str) -> float:
        try:
            async with asyncio.timeout(self._settings.request_timeout):
                response = await self._lister(
                    group="metrics.k8s.io",
                    version="v1beta1",
                    namespace=self._namespace,
                    plural="pods",
                    label_selector=selector,
                )
                body = await read_json(response)
        except asyncio.CancelledError:
            raise
        except ApiException as error:
            if error.status == 403:
                why = forbidden(self.PERMISSION, self._namespace, error)
            elif error.status == 404:
                why = "no metrics-server (metrics.k8s.io is not served)"
            elif error.status == 503:
                why = "metrics-server is not answering (503)"
            else:
                why = f"metrics: {describe(error)}"
            self._on_reading(False, [], why)
            return self._retry
        except Exception as error:  # transport trouble: the watches report it too
            self._on_reading(
                None, [], f"metrics: {describe(error, self._settings.request_timeout)}"
            )
            return self._interval
        self._on_reading(True, [i for i in body.get("items") or [] if isinstance(i, dict)], "")
        return self._interval
