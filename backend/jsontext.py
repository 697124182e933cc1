"""Strict JSON for every body the gateway reads: a client's request and the engine's replies."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["parse_json"]


def parse_json(data: bytes) -> Any:
    """Parse engine JSON, refusing NaN and infinities (they are not JSON).

    The same as ``json.loads(data, parse_constant=...)``, on one decoder made once: ``loads``
    with an argument builds a decoder (and its C scanner) per call, which showed in the
    profile of every streamed chunk.
    """
    # An object's opening '{"' rules out the BOMs and NUL bytes detect_encoding looks for.
    encoding = "utf-8" if data.startswith(b'{"') else json.detect_encoding(data)
    text = data.decode(encoding, "surrogatepass")
    try:
        value, end = _DECODER.raw_decode(text)
    except json.JSONDecodeError:
        return _DECODER.decode(text)  # leading whitespace, or an error to report as loads does
    if end != len(text):
        return _DECODER.decode(text)  # trailing whitespace, or extra data
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
