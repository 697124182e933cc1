"""Credentials that change while the cockpit runs: each request asks for the current
`Authorization` header, and a 401 makes the source renew it and the request go once more.

This is what client-go's exec authenticator does for kubectl: tokens from an exec plugin (EKS,
GKE, AKS) expire after minutes, and a revoked one is answered 401; the header read once at
start would fail every chat, health check and metrics poll after that.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from typing import Protocol

import httpx2


class HeaderSource(Protocol):
    """Where the current credentials come from (a kubeconfig context's)."""

    def headers(self) -> Mapping[str, str]:
        """The headers that authenticate a request now (may run an exec plugin: blocking)."""

    def invalidate(self, refused: Mapping[str, str]) -> None:
        """The server refused these headers: renew them on the next `headers()`, unless a
        request refused with the same ones renewed them already."""


class FreshHeaders(httpx2.Auth):
    """httpx2 authentication from a `HeaderSource`, renewed and retried once after a 401."""

    def __init__(self, source: HeaderSource) -> None:
        self._source = source

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        """Send with the current headers; after a 401, with renewed ones, once."""
        sent = await asyncio.to_thread(self._source.headers)
        request.headers.update(sent)
        response = yield request
        if response.status_code == 401:
            self._source.invalidate(sent)
            request.headers.update(await asyncio.to_thread(self._source.headers))
            yield request


__all__ = ["FreshHeaders", "HeaderSource"]
