"""List pages: `limit` and `continue`, as the API server pages a list (kubectl asks for 500 at a
time; the official client's pagers follow `metadata.continue`).

The continue token has the shape the API server's etcd3 store writes
(`k8s.io/apiserver/pkg/storage/continue.go`): base64url of
`{"v": "meta.k8s.io/v1", "rv": N, "start": "<namespace>/<name>\\u0000"}`. The next page starts
after that key. The store keeps no snapshots, so a later page shows the objects as they are
now, under the first page's resourceVersion; a token older than the watch history is 410
Expired, as a compacted one is upstream.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from starlette.datastructures import QueryParams

from sandbox.apiserver.bodies import int_param
from sandbox.store.store import JSON, ApiError, bad_request

_CONTINUE_FORMAT = "meta.k8s.io/v1"


@dataclass(frozen=True)
class Page:
    """One page of a list: its items, resourceVersion, and what the list metadata says."""

    items: list[JSON]
    resource_version: str
    metadata: JSON


def resource_version_param(params: QueryParams) -> int | None:
    """`resourceVersion` as a number (None when absent, empty or "0"); 400 when not one."""
    text = params.get("resourceVersion") or ""
    if text in ("", "0"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f"invalid resource version {text!r}") from None
    if value < 0:
        raise bad_request(f"invalid resource version {text!r}")
    return value


def _token(rv: int, namespace: str, name: str) -> str:
    start = f"{namespace}/{name}\x00"
    raw = json.dumps({"v": _CONTINUE_FORMAT, "rv": rv, "start": start}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[int, tuple[str, str]]:
    """The resourceVersion and the (namespace, name) key a continue token resumes after."""
    invalid = bad_request("continue key is not valid: the token was not made by this server")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        decoded = json.loads(raw)
    except (binascii.Error, ValueError):
        raise invalid from None
    if not isinstance(decoded, dict) or decoded.get("v") != _CONTINUE_FORMAT:
        raise invalid
    rv, start = decoded.get("rv"), decoded.get("start")
    if not isinstance(rv, int) or rv <= 0 or not isinstance(start, str) or "/" not in start:
        raise invalid
    namespace, _, name = start.rstrip("\x00").partition("/")
    return rv, (namespace, name)


def page(items: list[JSON], current_rv: int, oldest_rv: int, params: QueryParams) -> Page:
    """The page of `items` (sorted by namespace and name) a list request asks for."""
    limit = int_param(params, "limit", minimum=0) or 0
    token = params.get("continue") or ""
    rv = current_rv
    if token:
        if params.get("resourceVersion") not in (None, "", "0"):
            raise bad_request("specifying resource version is not allowed when using continue")
        rv, after = _decode_token(token)
        if rv < oldest_rv:
            raise ApiError(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list "
                "result. You can start a new list without the continue parameter.",
            )
        items = [
            obj
            for obj in items
            if (obj["metadata"].get("namespace", ""), obj["metadata"]["name"]) > after
        ]
    else:
        resource_version_param(params)
    metadata: JSON = {"resourceVersion": str(rv)}
    if limit and len(items) > limit:
        last = items[limit - 1]["metadata"]
        metadata["continue"] = _token(rv, last.get("namespace", ""), last["name"])
        metadata["remainingItemCount"] = len(items) - limit
        items = items[:limit]
    return Page(items, str(rv), metadata)
