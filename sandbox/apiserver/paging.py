"""List pages: `limit` and `continue`, as the API server pages a list (kubectl asks for 500 at a
time; the official client's pagers follow `metadata.continue`).

The continue token has the shape the API server's etcd3 store writes
(`k8s.io/apiserver/pkg/storage/continue.go`): base64url of
`{"v": "meta.k8s.io/v1", "rv": N, "start": "<namespace>/<name>\\u0000"}`. The next page starts
after that key, and shows the objects as they were at the first page's resourceVersion (the
store undoes the later changes from its watch history, as etcd reads an old revision), so a
paged list is one consistent list; a token older than the watch history is 410 Expired, as a
compacted one is upstream. `resourceVersionMatch=Exact` reads a list at its resourceVersion
the same way.
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


@dataclass(frozen=True)
class ListQuery:
    """What a list request asks for: the resourceVersion to read at (None: now), where a
    continued list resumes, and how many items a page holds (0: all)."""

    at: int | None
    after: tuple[str, str] | None
    limit: int


def list_query(params: QueryParams, current_rv: int, oldest_rv: int) -> ListQuery:
    """The list a request asks for, validated as the API server validates `ListOptions`
    (`k8s.io/apimachinery/pkg/apis/meta/internalversion/validation`) and read as its etcd3
    store reads one (`k8s.io/apiserver/pkg/storage/etcd3/store.go` GetList): a continued list
    and an `Exact` list read the objects at their resourceVersion, as does the legacy case of a
    `limit` with a resourceVersion and no `resourceVersionMatch`."""
    limit = int_param(params, "limit", minimum=0) or 0
    token = params.get("continue") or ""
    match = params.get("resourceVersionMatch") or ""
    text = params.get("resourceVersion") or ""
    if match:
        _check_match(match, text, token)
    if token:
        if text not in ("", "0"):
            raise bad_request("specifying resource version is not allowed when using continue")
        rv, after = _decode_token(token)
        if rv < oldest_rv:
            raise ApiError(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list "
                "result. You can start a new list without the continue parameter.",
            )
        return ListQuery(rv, after, limit)
    asked = resource_version_param(params)
    exact = match == "Exact" or (not match and limit > 0)
    if asked is None or not exact:
        return ListQuery(None, None, limit)
    if asked > current_rv:
        raise ApiError(
            504,
            "Timeout",
            f"Too large resource version: {asked}, current: {current_rv}",
            {
                "causes": [
                    {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
                ],
                "retryAfterSeconds": 1,
            },
        )
    if asked < oldest_rv:
        raise ApiError(410, "Expired", "The resourceVersion for the provided list is too old.")
    return ListQuery(asked, None, limit)


def _check_match(match: str, resource_version: str, token: str) -> None:
    """422 for a `resourceVersionMatch` the API server refuses, with its messages."""
    field = "resourceVersionMatch"
    errors: list[tuple[str, str]] = []
    if not resource_version:
        errors.append(
            ("FieldValueForbidden", f"{field} is forbidden unless resourceVersion is provided")
        )
    if token:
        errors.append(("FieldValueForbidden", f"{field} is forbidden when continue is provided"))
    if match not in ("Exact", "NotOlderThan"):
        errors.append(
            (
                "FieldValueNotSupported",
                f'Unsupported value: "{match}": supported values: "Exact", "NotOlderThan", ""',
            )
        )
    if match == "Exact" and resource_version == "0":
        errors.append(
            ("FieldValueForbidden", f'{field} "exact" is forbidden for resourceVersion "0"')
        )
    if not errors:
        return
    described = [
        f"{field}: {'Forbidden: ' if reason == 'FieldValueForbidden' else ''}{message}"
        for reason, message in errors
    ]
    joined = described[0] if len(described) == 1 else "[" + ", ".join(described) + "]"
    raise ApiError(
        422,
        "Invalid",
        f'ListOptions.meta.k8s.io "" is invalid: {joined}',
        {
            "group": "meta.k8s.io",
            "kind": "ListOptions",
            "causes": [
                {"reason": reason, "message": message, "field": field} for reason, message in errors
            ],
        },
    )


def page(items: list[JSON], query: ListQuery, current_rv: int) -> Page:
    """The page of `items` (sorted by namespace and name, read at `query.at`) the query asks
    for."""
    rv = current_rv if query.at is None else query.at
    if query.after is not None:
        after = query.after
        items = [
            obj
            for obj in items
            if (obj["metadata"].get("namespace", ""), obj["metadata"]["name"]) > after
        ]
    metadata: JSON = {"resourceVersion": str(rv)}
    limit = query.limit
    if limit and len(items) > limit:
        last = items[limit - 1]["metadata"]
        metadata["continue"] = _token(rv, last.get("namespace", ""), last["name"])
        metadata["remainingItemCount"] = len(items) - limit
        items = items[:limit]
    return Page(items, str(rv), metadata)
