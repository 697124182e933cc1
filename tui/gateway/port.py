"""The one shape of a gateway client the services use (`tui.gateway.client.Gateway` is the real
one; tests hand in scripted ones of the same shape)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from tui.core.model import BackendMetrics, ChatSample, HealthSample


class GatewayPort(Protocol):
    """What the session, the load engine, the prober and the poller need of the gateway."""

    async def chat(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        max_tokens: int,
        origin: str,
        on_text: Callable[[str], None] | None = None,
        stop: asyncio.Event | None = None,
        stream: bool = True,
    ) -> ChatSample:
        """One chat through the Service (streamed unless `stream` is False); a failed one is a
        sample too; setting `stop` ends it as `cancelled`."""
        ...

    async def health(self) -> HealthSample:
        """One timed `/healthz` through the Service."""
        ...

    async def pod_metrics(self, pod: str) -> BackendMetrics:
        """A pod's gateway counters through the pod proxy; a failure raises `GatewayError`."""
        ...

    async def aclose(self) -> None:
        """Close the pool."""
        ...
