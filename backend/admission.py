"""Admission control and drain: chats at once, the bounded FIFO queue past that, and shutdown.

At most ``limit`` chats run at once. Past that a chat waits in first-in, first-out order for a
slot, as an engine queues (Ollama's ``OLLAMA_MAX_QUEUE``): a Service routes blindly, so a
refusal at once would shed load that a moment's wait could serve. A chat is refused only when
``max_queue`` chats already wait, or when its wait passes ``queue_timeout``. A freed slot goes
straight to the first waiter, so a newcomer cannot overtake the queue.

On shutdown (``drain_until``) the gate admits no new chat, but the chats it already took keep
their place: the running ones finish, and the queued ones are served in order while each can
still finish before the drain's end. Only the queued chats that cannot are refused, at once, so
their clients retry on another pod instead of waiting for a refusal. Whether a chat can finish
in time is projected from the slowest of the pod's recent chats (``service_estimate``).
"""

from __future__ import annotations

import collections
import heapq
import time

import anyio

from backend.metrics import Metrics

__all__ = ["ActiveChat", "Gate", "Refused"]

# How many recent chats' service times (admission to end) the drain's projection looks at.
SERVICE_TIMES_KEPT = 16


class Refused(Exception):
    """The gate will not admit this chat: ``reason`` is ``busy``, ``queue_timeout`` or
    ``draining``."""

    def __init__(self, reason: str, waited: float = 0.0) -> None:
        """Keep why, and how long the chat waited in the queue first."""
        super().__init__(reason)
        self.reason = reason
        self.waited = waited


class ActiveChat:
    """One admitted chat; the gate can abort it (on shutdown) through its cancel scope."""

    __slots__ = ("abort_reason", "admitted", "scope")

    def __init__(self) -> None:
        """Start with no cancel scope attached and no abort requested."""
        self.scope: anyio.CancelScope | None = None
        self.abort_reason: str | None = None
        self.admitted = time.monotonic()

    def attach(self, scope: anyio.CancelScope) -> None:
        """Make ``scope`` the one an abort cancels; cancel it at once if one came already."""
        self.scope = scope
        if self.abort_reason is not None:
            scope.cancel()

    def abort(self, reason: str) -> None:
        """Stop the chat's relay; the relay then ends its reply with an error for ``reason``."""
        self.abort_reason = reason
        if self.scope is not None:
            self.scope.cancel()


class _Waiter:
    """A queued chat: woken with a slot (``chat``) or a refusal (``refusal``)."""

    __slots__ = ("chat", "event", "refusal")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.chat: ActiveChat | None = None
        self.refusal: str | None = None


class Gate:
    """At most ``limit`` chats at once, ``max_queue`` more waiting; none once draining."""

    def __init__(
        self, limit: int, metrics: Metrics, max_queue: int = 0, queue_timeout: float = 0.0
    ) -> None:
        """Admit up to ``limit`` chats and queue up to ``max_queue`` for ``queue_timeout`` s,
        reporting the counts on ``metrics``."""
        self.limit = limit
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self.draining = False
        self._metrics = metrics
        self._active: set[ActiveChat] = set()
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._idle: anyio.Event | None = None
        self._service_times: collections.deque[float] = collections.deque(maxlen=SERVICE_TIMES_KEPT)
        # While draining: the moment (time.monotonic) by which every chat must have finished.
        self._finish_by: float | None = None

    @property
    def inflight(self) -> int:
        """The number of chats admitted and not yet finished."""
        return len(self._active)

    @property
    def queued(self) -> int:
        """The number of chats waiting for a slot."""
        return len(self._waiters)

    def _start(self) -> ActiveChat:
        chat = ActiveChat()
        self._active.add(chat)
        self._metrics.inflight.set(len(self._active))
        return chat

    def try_admit(self) -> ActiveChat | None:
        """Admit one chat at once, or return ``None`` when every slot is taken or spoken for."""
        if self.draining or len(self._active) >= self.limit or self._waiters:
            return None
        return self._start()

    async def admit(self) -> ActiveChat:
        """Admit one chat, waiting in the queue for a slot if need be; raise ``Refused``.

        A caller cancelled while it waits (its client went away) leaves the queue; a slot
        granted in that same moment is passed on to the next waiter.
        """
        if self.draining:
            raise Refused("draining")
        chat = self.try_admit()
        if chat is not None:
            return chat
        if len(self._waiters) >= self.max_queue:
            raise Refused("busy")
        waiter = _Waiter()
        self._waiters.append(waiter)
        self._metrics.queue_depth.set(len(self._waiters))
        started = time.perf_counter()
        try:
            with anyio.move_on_after(self.queue_timeout):
                await waiter.event.wait()
        except BaseException:
            self._leave(waiter)  # cancelled: the client went away, or the server stops
            raise
        finally:
            waited = time.perf_counter() - started
            self._metrics.queue_wait.observe(waited)
        if waiter.chat is not None:
            return waiter.chat
        self._leave(waiter)
        raise Refused(waiter.refusal or "queue_timeout", waited)

    def _leave(self, waiter: _Waiter) -> None:
        """Take ``waiter`` out of the queue, passing on a slot it was granted."""
        if waiter.chat is not None:
            chat, waiter.chat = waiter.chat, None
            self.release(chat)
        elif waiter in self._waiters:
            self._waiters.remove(waiter)
            self._metrics.queue_depth.set(len(self._waiters))

    def release(self, chat: ActiveChat) -> None:
        """Free the slot of a finished chat (idempotent), handing it to the first waiter."""
        if chat not in self._active:
            return
        self._active.discard(chat)
        self._service_times.append(time.monotonic() - chat.admitted)
        self._refuse_late()
        self._grant()
        self._metrics.inflight.set(len(self._active))
        if not self._active and not self._waiters and self._idle is not None:
            self._idle.set()

    def _grant(self) -> None:
        # While draining, _refuse_late has left only the waiters that can finish in time.
        while self._waiters and len(self._active) < self.limit:
            waiter = self._waiters.popleft()
            waiter.chat = self._start()
            waiter.event.set()
        self._metrics.queue_depth.set(len(self._waiters))

    def service_estimate(self) -> float | None:
        """How long a chat holds its slot: the slowest of the last ``SERVICE_TIMES_KEPT``
        chats, from admission to end (``None`` before the first one ended)."""
        return max(self._service_times, default=None)

    def begin_drain(self) -> None:
        """Refuse new chats from now on; admitted and queued chats carry on (safe in a signal
        handler; ``drain_until`` then sets how long they may take)."""
        self.draining = True

    def drain_until(self, seconds: float) -> None:
        """Drain: admit nothing new, and serve the queue for at most ``seconds`` more.

        Queued chats that cannot finish within ``seconds`` are refused (``draining``) now;
        the rest keep their place and are served in order as slots come free.
        """
        self.draining = True
        self._finish_by = time.monotonic() + seconds
        self._refuse_late()

    def _refuse_late(self) -> None:
        """While draining, refuse the queued chats projected to end after the drain's end.

        The projection plays the queue forward: each running chat ends ``service_estimate``
        after its admission (or now, if it is already past that), and each waiter, in order,
        takes the first slot to come free and holds it for ``service_estimate``. Before any
        chat has ended there is no estimate, and the waiters keep their place until the end.
        """
        if self._finish_by is None or not self._waiters:
            return
        now = time.monotonic()
        estimate = self.service_estimate()
        if now >= self._finish_by:
            keep = 0
        elif estimate is None:
            keep = len(self._waiters)
        else:
            free_at = [max(now, chat.admitted + estimate) for chat in self._active]
            free_at += [now] * max(self.limit - len(free_at), 0)
            heapq.heapify(free_at)
            keep = 0
            while keep < len(self._waiters):
                ends = heapq.heappop(free_at) + estimate
                if ends > self._finish_by:
                    break
                heapq.heappush(free_at, ends)
                keep += 1
        while len(self._waiters) > keep:
            self._refuse(self._waiters.pop())  # the last in line are the ones that cannot start
        self._metrics.queue_depth.set(len(self._waiters))

    @staticmethod
    def _refuse(waiter: _Waiter) -> None:
        waiter.refusal = "draining"
        waiter.event.set()

    def refuse_queued(self) -> None:
        """Answer every queued chat with a refusal (``draining``) at once."""
        while self._waiters:
            self._refuse(self._waiters.popleft())
        self._metrics.queue_depth.set(0)

    def abort_all(self, reason: str) -> None:
        """Abort every running chat with ``reason``."""
        for chat in list(self._active):
            chat.abort(reason)

    async def wait_idle(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for every chat, running or queued, to finish; say whether
        they did."""
        with anyio.move_on_after(seconds):
            while self._active or self._waiters:
                self._idle = anyio.Event()
                await self._idle.wait()
        return not self._active and not self._waiters
