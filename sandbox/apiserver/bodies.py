"""Request bodies and query parameters at the API server's door, read as the API server reads them.

- Bodies are limited (3 MiB, the API server's `MaxRequestBodyBytes`): a larger declared
  Content-Length gets 413 before any of it is read, a longer stream gets 413 once it passes
  the limit, so no request can make the process hold more than that.
- JSON and YAML decode to plain values with a depth limit, without YAML aliases (which let a
  small document expand into a huge one) and without NaN or Infinity; every failure is a 400.
- DeleteOptions and Evictions sent as Kubernetes protobuf (typed clients such as `kubectl drain`
  send them so) are read for what the sandbox acts on: the grace period, the propagation policy
  and `dryRun`.
- Integer query parameters (`gracePeriodSeconds`, `tailLines`, `timeoutSeconds`, ...) and
  `dryRun` are checked, and a bad one is a 400 that names it.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from starlette.datastructures import QueryParams
from starlette.requests import Request

from sandbox.store.store import JSON, ApiError, bad_request

MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024
"""The API server's default `--max-request-body-bytes`-style limit (3 MiB)."""

MAX_NESTING = 100
"""Deepest nesting of arrays and objects accepted; Kubernetes objects stay far below it."""

PROTOBUF_MAGIC = b"k8s\x00"


def too_large(limit: int) -> ApiError:
    """The API server's 413."""
    return ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


async def read_body(request: Request, limit: int = MAX_REQUEST_BODY_BYTES) -> bytes:
    """The request body, up to `limit` bytes; 413 as soon as it is known to be longer.

    Read once: the result is kept on the request, so later calls return it again.
    """
    cached = getattr(request.state, "sandbox_body", None)
    if cached is not None:
        assert isinstance(cached, bytes)
        return cached
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise bad_request(f"invalid Content-Length {declared!r}") from None
        if length > limit:
            raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    request.state.sandbox_body = body
    return body


class _NoAliasLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses aliases (`*name`): a few hundred bytes of nested
    aliases describe a document of billions of nodes once anything walks it."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases are not accepted by the sandbox", event.start_mark
            )
        return super().compose_node(parent, index)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _refuse_surrogate(text: str) -> None:
    """400 for a string holding a lone surrogate (`"\\ud800"`, or the bytes ED A0 80, which
    `json.loads` lets through): it cannot be encoded as UTF-8, so once stored every read of
    it would fail. The API server's decoder refuses such input at the door too."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request(
            "the request body is not valid UTF-8: it holds a lone surrogate"
        ) from None


def _check_values(value: Any) -> None:
    """400 when arrays and objects nest deeper than MAX_NESTING or a string (key or value) is
    not valid Unicode (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children: Any
        if isinstance(node, str):
            _refuse_surrogate(node)
            continue
        if isinstance(node, dict):
            for key in node:
                if isinstance(key, str):
                    _refuse_surrogate(key)
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > MAX_NESTING:
            raise bad_request(f"the request body nests deeper than {MAX_NESTING} levels")
        stack.extend((child, depth + 1) for child in children)


def decode(body: bytes, content_type: str) -> Any:
    """A JSON (or, for a YAML content type, YAML) document; 400 when it is not one."""
    media = content_type.split(";")[0].strip().lower()
    if "protobuf" in media:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the sandbox reads JSON and YAML bodies here, not {media!r}",
        )
    try:
        if "yaml" in media:
            value = yaml.load(body, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)
        else:
            value = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise bad_request(f"the request body nests deeper than {MAX_NESTING} levels") from None
    except (ValueError, yaml.YAMLError) as error:
        kind = "YAML" if "yaml" in media else "JSON"
        raise bad_request(f"the request body is not valid {kind}: {_one_line(error)}") from None
    _check_values(value)
    return value


def decode_object(body: bytes, content_type: str, *, allow_empty: bool = False) -> JSON:
    """A body that must be one JSON or YAML object."""
    if not body.strip():
        if allow_empty:
            return {}
        raise bad_request("the request body is empty")
    value = decode(body, content_type)
    if not isinstance(value, dict):
        raise bad_request("the request body must be an object")
    return value


async def read_object(request: Request, *, allow_empty: bool = False) -> JSON:
    """The request body as one JSON or YAML object (400 or 413 otherwise)."""
    body = await read_body(request)
    return decode_object(body, request.headers.get("content-type", ""), allow_empty=allow_empty)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:300]


# ---------------------------------------------------------------------------------------------
# Kubernetes protobuf: DeleteOptions and Eviction


def wire_fields(data: bytes) -> dict[int, list[int | bytes]]:
    """The fields of one protobuf message: varints as ints, length-delimited ones as bytes.

    Raises ValueError on a malformed message.
    """
    fields: dict[int, list[int | bytes]] = {}
    index = 0

    def varint() -> int:
        nonlocal index
        value = shift = 0
        while True:
            if index >= len(data) or shift > 63:
                raise ValueError("truncated varint")
            byte = data[index]
            index += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while index < len(data):
        key = varint()
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            fields.setdefault(number, []).append(varint())
        elif wire_type == 2:
            length = varint()
            if index + length > len(data):
                raise ValueError("truncated field")
            fields.setdefault(number, []).append(data[index : index + length])
            index += length
        elif wire_type in (1, 5):
            index += 8 if wire_type == 1 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
    return fields


def protobuf_object(body: bytes) -> bytes:
    """The serialized object inside Kubernetes' protobuf envelope (`k8s\\0` + runtime.Unknown)."""
    if not body.startswith(PROTOBUF_MAGIC):
        raise bad_request("a protobuf body must start with the Kubernetes magic number")
    try:
        raw = wire_fields(body[len(PROTOBUF_MAGIC) :]).get(2, [b""])[0]
    except ValueError as error:
        raise bad_request(f"malformed protobuf body: {error}") from None
    if not isinstance(raw, bytes):
        raise bad_request("malformed protobuf body: the object is not a message")
    return raw


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise ValueError("expected a string field")
    return value.decode()


def delete_options_from_message(message: bytes) -> JSON:
    """The fields of a DeleteOptions message the sandbox reads, as JSON names."""
    try:
        fields = wire_fields(message)
        options: JSON = {}
        if 1 in fields:
            grace = fields[1][0]
            if not isinstance(grace, int):
                raise ValueError("gracePeriodSeconds is not a number")
            # int64 on the wire: two's complement for a negative value.
            options["gracePeriodSeconds"] = grace - (1 << 64) if grace >= 1 << 63 else grace
        if 4 in fields:
            options["propagationPolicy"] = _text(fields[4][0])
        if 5 in fields:
            options["dryRun"] = [_text(value) for value in fields[5]]
    except (ValueError, UnicodeDecodeError) as error:
        raise bad_request(f"malformed protobuf DeleteOptions: {error}") from None
    return options


def delete_options_protobuf(body: bytes) -> JSON:
    """DeleteOptions sent as Kubernetes protobuf."""
    return delete_options_from_message(protobuf_object(body))


def eviction_protobuf(body: bytes) -> JSON:
    """An Eviction sent as Kubernetes protobuf: its deleteOptions (field 2)."""
    try:
        fields = wire_fields(protobuf_object(body))
    except ValueError as error:
        raise bad_request(f"malformed protobuf Eviction: {error}") from None
    message = fields.get(2, [b""])[0]
    if not isinstance(message, bytes):
        raise bad_request("malformed protobuf Eviction: deleteOptions is not a message")
    return {"deleteOptions": delete_options_from_message(message)} if 2 in fields else {}


# ---------------------------------------------------------------------------------------------
# Query parameters


def int_param(params: QueryParams, name: str, *, minimum: int | None = None) -> int | None:
    """An integer query parameter, None when absent; 400 when it is not an integer."""
    text = params.get(name)
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f"{name}: Invalid value: {text!r}: must be an integer") from None
    if minimum is not None and value < minimum:
        raise bad_request(f"{name}: Invalid value: {value}: must be {minimum} or more")
    return value


def dry_run(values: list[str] | Any) -> bool:
    """Whether `dryRun` (from the query or DeleteOptions) asks for a dry run; 400 for a value
    the API server does not know."""
    if values is None:
        return False
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise bad_request("dryRun: Invalid value: must be a list of strings")
    for value in values:
        if value != "All":
            raise bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
    return bool(values)


def flag(params: Any, name: str) -> bool:
    """A boolean query parameter (`true` or `1`)."""
    return params.get(name) in ("true", "1")


def query_dry_run(request: Request) -> bool:
    """Whether the query asks for a dry run (`?dryRun=All`); 400 for an unknown value."""
    return dry_run(request.query_params.getlist("dryRun") or None)


def delete_options(value: Any) -> JSON:
    """DeleteOptions from a JSON body, with the types of the fields the sandbox reads checked."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request("deleteOptions: Invalid value: must be an object")
    grace = value.get("gracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)):
        raise bad_request("gracePeriodSeconds: Invalid value: must be an integer")
    policy = value.get("propagationPolicy")
    if policy is not None and policy not in ("Orphan", "Background", "Foreground"):
        raise bad_request(
            f'propagationPolicy: Unsupported value: "{policy}": supported values: '
            '"Foreground", "Background", "Orphan"'
        )
    return value
