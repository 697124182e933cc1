"""Field checks for object validation: the causes found so far, and one check per shape
(object, list, string, integer, string map, int-or-percent, DNS names, qualified names).

Each check records a cause for a bad value and hands back what can be read further, so one
pass over an object finds every bad field, as the API server reports them."""

from __future__ import annotations

import json
import re
from typing import Any

from sandbox.store.resources import JSON

DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")


ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class Causes:
    """The field errors found in one object."""

    def __init__(self) -> None:
        self.items: list[JSON] = []

    def add(self, field: str, reason: str, message: str) -> None:
        """Record one cause."""
        self.items.append({"reason": reason, "message": message, "field": field})

    def required(self, field: str) -> None:
        """A required field is missing."""
        self.add(field, "FieldValueRequired", "Required value")

    def invalid(self, field: str, value: Any, detail: str) -> None:
        """A field has a value the API server refuses."""
        self.add(field, "FieldValueInvalid", f"Invalid value: {shown(value)}: {detail}")

    def unsupported(self, field: str, value: Any, supported: tuple[str, ...]) -> None:
        """A field's value is not one of the supported ones."""
        listed = ", ".join(f'"{choice}"' for choice in supported)
        self.add(
            field,
            "FieldValueNotSupported",
            f"Unsupported value: {shown(value)}: supported values: {listed}",
        )

    def wrong_type(self, field: str, value: Any, expected: str) -> None:
        """A field has the wrong type."""
        self.add(
            field, "FieldValueTypeInvalid", f"Invalid value: {shown(value)}: must be {expected}"
        )


def shown(value: Any) -> str:
    """A value as an error message shows it: JSON, so control characters arrive escaped."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def check_object(causes: Causes, value: Any, field: str, *, required: bool = False) -> JSON | None:
    """`value` if it is an object; a cause (and None) otherwise."""
    if value is None:
        if required:
            causes.required(field)
        return None
    if not isinstance(value, dict):
        causes.wrong_type(field, value, "an object")
        return None
    return value


def check_list(causes: Causes, value: Any, field: str, *, required: bool = False) -> list[Any]:
    """`value` if it is a list; a cause (and an empty list) otherwise."""
    if value is None:
        if required:
            causes.required(field)
        return []
    if not isinstance(value, list):
        causes.wrong_type(field, value, "a list")
        return []
    return value


def check_objects(
    causes: Causes, value: Any, field: str, *, required: bool = False
) -> list[tuple[str, JSON]]:
    """The objects of a list with their field paths; a cause for each item that is not one."""
    found = []
    for index, item in enumerate(check_list(causes, value, field, required=required)):
        where = f"{field}[{index}]"
        if isinstance(item, dict):
            found.append((where, item))
        else:
            causes.wrong_type(where, item, "an object")
    return found


def check_string(causes: Causes, value: Any, field: str, *, required: bool = False) -> str | None:
    """`value` if it is a string; a cause (and None) otherwise."""
    if value is None or (required and value == ""):
        if required:
            causes.required(field)
        return None
    if not isinstance(value, str):
        causes.wrong_type(field, value, "a string")
        return None
    return value


def check_integer(
    causes: Causes,
    value: Any,
    field: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    required: bool = False,
    bits: int = 32,
) -> int | None:
    """`value` if it is an integer within the bounds; a cause otherwise.

    The API's integers are int32 unless the field is an int64 (`bits=64`): a value outside
    the type cannot be stored by the API server, so it is refused here too.
    """
    if value is None:
        if required:
            causes.required(field)
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        causes.wrong_type(field, value, "an integer")
        return None
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if not low <= value <= high:
        causes.invalid(field, value, f"must fit in an int{bits} ({low} to {high})")
        return None
    if minimum is not None and value < minimum:
        causes.invalid(field, value, f"must be greater than or equal to {minimum}")
    elif maximum is not None and value > maximum:
        causes.invalid(field, value, f"must be less than or equal to {maximum}")
    return value


def check_strings(causes: Causes, value: Any, field: str) -> None:
    """A cause for every item of a list that is not a string."""
    for index, item in enumerate(check_list(causes, value, field)):
        if not isinstance(item, str):
            causes.wrong_type(f"{field}[{index}]", item, "a string")


def check_string_map(causes: Causes, value: Any, field: str) -> dict[str, str]:
    """The string values of a map; a cause for each other one."""
    mapping = check_object(causes, value, field) or {}
    for key, item in mapping.items():
        if not isinstance(item, str):
            causes.wrong_type(f"{field}[{key}]", item, "a string")
    return {k: v for k, v in mapping.items() if isinstance(v, str)}


def check_int_or_percent(causes: Causes, value: Any, field: str) -> None:
    """An integer of 0 or more, or a percentage such as '25%'."""
    if value is None:
        return
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            causes.invalid(field, value, "must be greater than or equal to 0")
    elif not (isinstance(value, str) and re.fullmatch(r"[0-9]+%", value)):
        causes.invalid(field, value, "must be an integer or a percentage (e.g. '25%')")


def check_dns_name(
    causes: Causes, value: str, field: str, rule: tuple[re.Pattern[str], int, str]
) -> None:
    """A DNS name by `rule` (pattern, length limit, words for the message)."""
    pattern, limit, words = rule
    if len(value) > limit:
        causes.invalid(field, value, f"must be no more than {limit} characters")
    elif not pattern.fullmatch(value):
        causes.invalid(
            field,
            value,
            f"{words} must consist of lower case alphanumeric characters, '-' or '.', and "
            "must start and end with an alphanumeric character",
        )


def check_qualified_name(causes: Causes, key: str, field: str) -> None:
    """A label or annotation key: an optional DNS prefix and a name."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.fullmatch(prefix)):
        causes.invalid(field, key, "prefix part must be a lowercase RFC 1123 subdomain")
    if not name or len(name) > 63 or not QUALIFIED_NAME.fullmatch(name):
        causes.invalid(
            field,
            key,
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (at most 63)",
        )
