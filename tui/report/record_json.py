"""A report's JSON: the record's samples and the figures computed from them, and back.

`record_json` stores `CockpitRecord` (every sample) beside `figures(record)`, so a reader can
recompute each figure from the samples it came from; `record_from_json` rebuilds the record
from that JSON (`kube-llm report` re-renders a report from it, and a test recomputes the figures).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from tui.core.figures import CockpitRecord, figures

FORMAT = "kube-llm-report/1"
"""The JSON's `format` field: a reader refuses any other."""

_T = TypeVar("_T")


class ReportJsonError(ValueError):
    """The JSON is not a kube-llm report (the message says where it differs)."""


def record_json(record: CockpitRecord, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The report's JSON: format, the record, its figures, and any `extra` (a scenario's
    results, say), all plain JSON values."""
    data: dict[str, Any] = {
        "format": FORMAT,
        "record": _plain(dataclasses.asdict(record)),
        "figures": _plain(dataclasses.asdict(figures(record))),
    }
    if extra:
        data.update(_plain(dict(extra)))
    return data


def _plain(value: Any) -> Any:
    """Tuples as lists and enums as their values: what `json.dumps` writes anyway, made
    explicit so the dict compares equal to its own round trip."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def record_from_json(data: Any) -> CockpitRecord:
    """The `CockpitRecord` stored in a report's JSON; `ReportJsonError` when it is not one."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ReportJsonError(f"not a kube-llm report: its `format` is not {FORMAT!r}")
    return _build(CockpitRecord, data.get("record"), "record")


def _build(kind: type[_T], value: Any, where: str) -> _T:
    if not isinstance(value, dict):
        raise ReportJsonError(f"{where}: expected an object, got {type(value).__name__}")
    hints = typing.get_type_hints(kind)
    arguments: dict[str, Any] = {}
    for field in dataclasses.fields(kind):  # type: ignore[arg-type]
        if field.name in value:
            arguments[field.name] = _convert(hints[field.name], value[field.name],
                                             f"{where}.{field.name}")  # fmt: skip
    try:
        return kind(**arguments)
    except TypeError as error:
        raise ReportJsonError(f"{where}: {error}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is not type(None):
                return _convert(option, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise ReportJsonError(f"{where}: expected a list")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ReportJsonError(f"{where}: expected {len(args)} items, got {len(value)}")
        pairs = enumerate(zip(args, value, strict=True))
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in pairs)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _build(hint, value, where)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise ReportJsonError(f"{where}: {value!r} is not a {hint.__name__}") from None
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and not isinstance(value, hint):
        raise ReportJsonError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


__all__ = ["FORMAT", "ReportJsonError", "record_from_json", "record_json"]
