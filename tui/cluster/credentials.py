"""A context's credentials while the cockpit runs, kept and renewed as client-go keeps them.

A token from an exec plugin (`tui.cluster.exec_plugin`) is cached until its
`expirationTimestamp` (with none, for good) and the plugin runs again only after that, or after
the API server answered 401 to a request that carried the cached token: the first 401 renews
it, and the other requests that were refused with the same token use the renewed one instead of
running the plugin again (client-go's `maybeRefreshCreds`). Every client reads the token here:
the `kubernetes.aio` ApiClient through `RenewingApiClient` and its refresh hook (never blocking
the event loop while the plugin runs), the gateway's HTTP clients through `TargetHeaders`.
Nothing here ever shows a credential: reprs hide them (docs/reliability.md, T6).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from typing import Any

from kubernetes.aio import client as aio_client

from tui.cluster.exec_plugin import ExecCredential, ExecPlugin


class Credentials:
    """The loaded credentials of one context; its repr and str never show them.

    It wraps the `kubernetes` package's own (synchronous) `Configuration`, which holds static
    tokens, token files, certificates and CA; an exec plugin's token is kept here instead.
    """

    __slots__ = ("_configuration", "_credential", "_exec", "_lock")

    def __init__(self, configuration: Any, exec_plugin: ExecPlugin | None = None) -> None:
        self._configuration = configuration
        self._exec = exec_plugin
        self._lock = threading.Lock()
        self._credential: ExecCredential | None = None

    def __repr__(self) -> str:
        return "Credentials(<hidden>)"

    __str__ = __repr__

    def __deepcopy__(self, memo: dict[int, Any]) -> Credentials:
        # One holder per context, shared (it holds a lock and the renewed token): a copied
        # target (`dataclasses.asdict`, `replace`) uses the same credentials.
        return self

    @property
    def configuration(self) -> Any:
        """The loaded `kubernetes.client.Configuration` (it holds secrets: never log it)."""
        return self._configuration

    @property
    def expiring(self) -> bool:
        """Whether the token comes from an exec plugin and can expire or be revoked."""
        return self._exec is not None

    def prime(self) -> None:
        """Run an exec plugin now, while the terminal is still free for it to ask the user
        (`interactiveMode`); later runs happen while the cockpit owns the terminal."""
        if self._exec is not None:
            with self._lock:
                self._credential = self._exec.run(stdin_available=True)

    def cached(self) -> str | None:
        """The `Authorization` value when it needs no plugin run now, else None."""
        if self._exec is None:
            value = self._configuration.get_api_key_with_prefix("BearerToken")
            return str(value) if value else None
        credential = self._credential
        if credential is None or _expired(credential):
            return None
        return f"Bearer {credential.token}"

    def authorization(self) -> str | None:
        """The `Authorization` header value (`Bearer ...`, `Basic ...`), renewed if due; may
        run the exec plugin, so it blocks (async code uses `current()`)."""
        if self._exec is None:
            return self.cached()
        with self._lock:
            if self._credential is None or _expired(self._credential):
                self._credential = self._exec.run()
            return f"Bearer {self._credential.token}"

    async def current(self) -> str | None:
        """`authorization()` for async code: at once when cached, else in a thread."""
        if self._exec is None:
            return self.cached()
        return self.cached() or await asyncio.to_thread(self.authorization)

    def invalidate(self, refused: str | None) -> None:
        """The server answered 401 to `refused` (the `Authorization` value sent): renew on the
        next call, unless another refused request has renewed it already."""
        with self._lock:
            if self._credential is not None and refused == f"Bearer {self._credential.token}":
                self._credential = None


def _expired(credential: ExecCredential) -> bool:
    return credential.expires is not None and time.time() >= credential.expires


class TargetHeaders:
    """A context's credentials as the gateway reads them at each request (its `HeaderSource`)."""

    __slots__ = ("_credentials",)

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def __repr__(self) -> str:
        return "TargetHeaders(<hidden>)"

    def headers(self) -> dict[str, str]:
        """The current `Authorization` header (renewed when its token expired)."""
        authorization = self._credentials.authorization()
        return {"Authorization": authorization} if authorization else {}

    def invalidate(self, refused: Mapping[str, str]) -> None:
        """The server refused these headers: renew them next time (once for all who saw it)."""
        self._credentials.invalidate(refused.get("Authorization"))


def renewing_configuration(
    configuration: aio_client.Configuration, credentials: Credentials
) -> aio_client.Configuration:
    """`configuration` with `credentials`' token, read before each request: a static one set
    once, an exec plugin's through the refresh hook (awaited by the client)."""
    if not credentials.expiring:
        authorization = credentials.cached()
        if authorization:
            configuration.api_key["BearerToken"] = authorization
        return configuration

    async def refresh(target: aio_client.Configuration) -> None:
        renewed = await credentials.current()
        if renewed:
            target.api_key["BearerToken"] = renewed

    # The generated class annotates the hook as None, yet calls it (and awaits a coroutine
    # it returns) before each request that has a BearerToken key, so one is always there.
    configuration.api_key["BearerToken"] = credentials.cached() or ""
    configuration.refresh_api_key_hook = refresh  # type: ignore[assignment]
    return configuration


class RenewingApiClient(aio_client.ApiClient):
    """A `kubernetes.aio` ApiClient that renews an exec plugin's token after a 401 and sends
    the refused request once more with it (a 401 means the server did nothing with it).
    `configuration` comes from `renewing_configuration`."""

    def __init__(self, configuration: aio_client.Configuration, credentials: Credentials) -> None:
        super().__init__(configuration)
        self._credentials = credentials

    async def call_api(  # type: ignore[no-untyped-def]
        self,
        method,
        url,
        header_params=None,
        body=None,
        post_params=None,
        _request_timeout=None,
        _preload_content=True,
    ) -> Any:
        """The generated client's `call_api`, with one renewal after a 401."""
        response = await super().call_api(
            method, url, header_params, body, post_params, _request_timeout, _preload_content
        )
        if response.status != 401 or not self._credentials.expiring:
            return response
        refused = (header_params or {}).get("authorization")
        self._credentials.invalidate(refused)
        renewed = await self._credentials.current()
        if not renewed or renewed == refused:
            return response
        response.response.release()
        headers = {**(header_params or {}), "authorization": renewed}
        return await super().call_api(
            method, url, headers, body, post_params, _request_timeout, _preload_content
        )
