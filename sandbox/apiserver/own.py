"""The sandbox's own endpoints, beside the Kubernetes API: `POST /sandbox/faults` (faults a
client must survive, for tests) and `POST /sandbox/token` (short-lived admin tokens for the
kubeconfig's exec credential plugin). Both need the admin."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.apiserver.auth import USER_SCOPE_KEY, Authenticator, User
from sandbox.apiserver.bodies import read_object
from sandbox.apiserver.faults import Faults, fault_changes
from sandbox.apiserver.routing import status_response
from sandbox.store.store import ApiError, Store, bad_request, timestamp


class ApiServerState(Protocol):
    """What these endpoints change: the store, the credentials and the faults."""

    store: Store
    authenticator: Authenticator
    faults: Faults


async def faults(server: ApiServerState, request: Request) -> Response:
    user: User = request.scope[USER_SCOPE_KEY]
    if not user.admin:
        return status_response(ApiError(403, "Forbidden", "fault injection is for the admin"))
    try:
        spec = await read_object(request)
        # The whole request is checked before any of it applies.
        changes = fault_changes(spec)
    except ApiError as error:
        return status_response(error)
    if spec.get("compact"):
        server.store.compact()
    if spec.get("drop_watches"):
        server.store.close_watches()
    if spec.get("revoke_tokens"):
        server.authenticator.revoke_expiring()
    for key, value in changes.items():
        setattr(server.faults, key, value)
    return JSONResponse(
        {
            "fail_next": server.faults.fail_next,
            "fail_code": server.faults.fail_code,
            "stall_next": server.faults.stall_next,
            "stall_seconds": server.faults.stall_seconds,
        }
    )


async def token(server: ApiServerState, request: Request) -> Response:
    """A short-lived admin token as an ExecCredential: what the kubeconfig's exec plugin
    (`python -m sandbox.credential`) asks for with the admin's client certificate."""
    user: User = request.scope[USER_SCOPE_KEY]
    try:
        if not user.admin:
            raise ApiError(403, "Forbidden", "tokens are issued to the admin only")
        spec = await read_object(request, allow_empty=True)
        seconds = spec.get("expirationSeconds", 600)
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not seconds >= 1:
            raise bad_request("expirationSeconds: Invalid value: must be a positive integer")
    except ApiError as error:
        return status_response(error)
    token, expires = server.authenticator.issue_admin(seconds)
    return JSONResponse(
        {
            "apiVersion": "client.authentication.k8s.io/v1",
            "kind": "ExecCredential",
            "status": {
                "token": token,
                "expirationTimestamp": timestamp(dt.datetime.fromtimestamp(expires, dt.UTC)),
            },
        }
    )
