"""Admission control and drain: how many chats run at once, and stopping them on shutdown."""

from __future__ import annotations

import anyio

from backend.metrics import Metrics

__all__ = ["ActiveChat", "Gate"]


class ActiveChat:
    """One admitted chat; the gate can abort it (on shutdown) through its cancel scope."""

    __slots__ = ("abort_reason", "scope")

    def __init__(self) -> None:
        """Start with no cancel scope attached and no abort requested."""
        self.scope: anyio.CancelScope | None = None
        self.abort_reason: str | None = None

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


class Gate:
    """At most ``limit`` chats at once; none at all once draining has begun."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        """Admit up to ``limit`` chats, reporting the count on ``metrics.inflight``."""
        self.limit = limit
        self.draining = False
        self._metrics = metrics
        self._active: set[ActiveChat] = set()
        self._idle: anyio.Event | None = None

    @property
    def inflight(self) -> int:
        """The number of chats admitted and not yet finished."""
        return len(self._active)

    def try_admit(self) -> ActiveChat | None:
        """Admit one chat, or return ``None`` when the gate is full."""
        if len(self._active) >= self.limit:
            return None
        chat = ActiveChat()
        self._active.add(chat)
        self._metrics.inflight.set(len(self._active))
        return chat

    def release(self, chat: ActiveChat) -> None:
        """Free the slot of a finished chat (idempotent)."""
        self._active.discard(chat)
        self._metrics.inflight.set(len(self._active))
        if not self._active and self._idle is not None:
            self._idle.set()

    def begin_drain(self) -> None:
        """Refuse new chats from now on; running chats carry on."""
        self.draining = True

    def abort_all(self, reason: str) -> None:
        """Abort every running chat with ``reason``."""
        for chat in list(self._active):
            chat.abort(reason)

    async def wait_idle(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for every chat to finish; say whether they did."""
        if self._active:
            self._idle = anyio.Event()
            with anyio.move_on_after(seconds):
                await self._idle.wait()
        return not self._active
