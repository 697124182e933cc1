"""The health prober and the per-pod metrics poller.

Both run on a fixed schedule until cancelled (or for a number of rounds, headless), and report
each result to a callback; a failure is a result too, never an exception out of `run()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from tui.core.model import BackendMetrics, HealthSample
from tui.gateway.port import GatewayPort
from tui.gateway.target import GatewayError

__all__ = ["HealthProber", "PodMetricsPoller"]


class _Ticker:
    """Runs a step every `interval` seconds on a fixed schedule (a slow step skips ticks)."""

    def __init__(self, interval: float) -> None:
        if not interval > 0:
            raise ValueError(f"the interval must be positive, not {interval!r}")
        self.interval = interval

    async def run(self, step: Callable[[], Coroutine[Any, Any, None]], count: int | None) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        done = 0
        while True:
            await step()
            done += 1
            if count is not None and done >= count:
                return
            next_tick += self.interval
            now = loop.time()
            if next_tick < now:  # the step overran: keep the rhythm, drop the missed ticks
                next_tick = now + self.interval - (now - next_tick) % self.interval
            await asyncio.sleep(next_tick - now)


class HealthProber:
    """`GET /healthz` through the Service every `interval` seconds, each one a sample."""

    def __init__(
        self,
        gateway: GatewayPort,
        on_sample: Callable[[HealthSample], None],
        interval: float = 1.0,
    ) -> None:
        """Probe `gateway`, reporting to `on_sample`."""
        self.gateway = gateway
        self.on_sample = on_sample
        self._ticker = _Ticker(interval)

    async def run(self, count: int | None = None) -> None:
        """Probe until cancelled (or `count` times)."""

        async def step() -> None:
            self.on_sample(await self.gateway.health())

        await self._ticker.run(step, count)


class PodMetricsPoller:
    """Each pod's `/metrics` every `interval` seconds, through the pod proxy.

    `pods()` names the pods to poll at each tick. A pod that fails (gone, not ready, not
    answering) goes to `on_error(pod, error)`; the others are still reported.
    """

    def __init__(
        self,
        gateway: GatewayPort,
        pods: Callable[[], list[str]],
        on_metrics: Callable[[BackendMetrics], None],
        interval: float = 2.0,
        on_error: Callable[[str, GatewayError], None] | None = None,
        concurrency: int = 8,
    ) -> None:
        """Poll the pods `pods()` names through `gateway`, at most `concurrency` at once."""
        self.gateway = gateway
        self.pods = pods
        self.on_metrics = on_metrics
        self.on_error = on_error
        self.last_errors: dict[str, GatewayError] = {}
        """The latest failure of each pod whose last poll failed."""
        self._ticker = _Ticker(interval)
        self._gate = asyncio.Semaphore(concurrency)

    async def poll_once(self) -> None:
        """Poll every pod once."""
        names = list(dict.fromkeys(self.pods()))
        await asyncio.gather(*(self._poll(name) for name in names))
        for gone in set(self.last_errors) - set(names):
            del self.last_errors[gone]

    async def _poll(self, pod: str) -> None:
        async with self._gate:
            try:
                metrics = await self.gateway.pod_metrics(pod)
            except (GatewayError, ValueError) as error:
                failure = (
                    error if isinstance(error, GatewayError) else GatewayError("pod", str(error))
                )
                self.last_errors[pod] = failure
                if self.on_error is not None:
                    self.on_error(pod, failure)
                return
        self.last_errors.pop(pod, None)
        self.on_metrics(metrics)

    async def run(self, count: int | None = None) -> None:
        """Poll until cancelled (or `count` times)."""
        await self._ticker.run(self.poll_once, count)
