"""The gateway's short requests (health probes, per-pod `/metrics`, the model list) on aiohttp.

A health probe is a whole request for a few bytes, many times a second under `kube-llm load`
or `bench/loadgen.py`, so the client's own cost per request is most of what it measures. On
`GET /healthz` of one backend at concurrency 10, aiohttp's client (C parser, its own pool) used
about a fifth of httpx2's CPU per request and answered four times as many requests a second
(see `tui.gateway.client`). Streamed chats stay on httpx2, for its maintained SSE parser.

One `ShortCalls` is one pooled `aiohttp.ClientSession` for one target, made on first use (inside
the running loop, as aiohttp wants), carrying that target's headers and TLS settings only.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from tui.gateway.auth import HeaderSource

PROBE_SECONDS = 5.0
"""The whole of a short request, connection included."""
_POOL = 32
_KEEPALIVE_SECONDS = 4.0
_BODY_BYTES = 4 * 1024 * 1024
"""A `/metrics` page is a few KB; anything this large is not one."""


class ShortCallError(Exception):
    """A short request got no answer; `kind` is `connect`, `timeout` or `network`."""

    def __init__(self, kind: str, detail: str) -> None:
        """The failure's kind and the client's words."""
        super().__init__(detail)
        self.kind = kind


@dataclass(frozen=True)
class Answer:
    """A short request's answer: status, headers and the whole body."""

    status: int
    headers: Mapping[str, str]
    """Case-insensitive (aiohttp's own)."""
    body: bytes


def failure_kind(error: BaseException) -> str:
    """The error kind of an aiohttp failure, named as the streamed chats name theirs."""
    if isinstance(error, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return "connect"
    if isinstance(error, TimeoutError):  # aiohttp's ServerTimeoutError is one too
        return "timeout"
    return "network"


class ShortCalls:
    """Pooled GETs to one target, each with a short overall timeout."""

    def __init__(
        self,
        headers: Mapping[str, str],
        tls: ssl.SSLContext | bool,
        auth: HeaderSource | None = None,
    ) -> None:
        """Send `headers` with every request, and `auth`'s current ones (renewed after a 401,
        and the request sent once more); `tls` is aiohttp's `ssl` (a context, or a bool for
        the default verification or none)."""
        self._headers = dict(headers)
        self._tls = tls
        self._auth = auth
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(
                    limit=_POOL, keepalive_timeout=_KEEPALIVE_SECONDS, ssl=self._tls
                ),
                timeout=aiohttp.ClientTimeout(total=PROBE_SECONDS),
                # No proxy or CA from the environment: requests go only to this target.
                trust_env=False,
            )
        return self._session

    async def get(self, url: str) -> Answer:
        """`GET url` and its whole answer; `ShortCallError` when none came."""
        try:
            sent, answer = await self._get_once(url)
            if answer.status == 401 and self._auth is not None and sent is not None:
                self._auth.invalidate(sent)
                _, answer = await self._get_once(url)
            return answer
        except (aiohttp.ClientError, TimeoutError) as error:
            raise ShortCallError(failure_kind(error), str(error) or type(error).__name__) from None

    async def _get_once(self, url: str) -> tuple[Mapping[str, str] | None, Answer]:
        """The answer, and the renewable headers it was sent with."""
        fresh = await asyncio.to_thread(self._auth.headers) if self._auth is not None else None
        async with self._open().get(url, allow_redirects=False, headers=fresh) as response:
            body = await response.content.read(_BODY_BYTES)
            return fresh, Answer(response.status, response.headers, body)

    async def aclose(self) -> None:
        """Close the pool (if it was ever opened)."""
        if self._session is not None:
            await self._session.close()
            self._session = None


__all__ = ["PROBE_SECONDS", "Answer", "ShortCallError", "ShortCalls", "failure_kind"]
