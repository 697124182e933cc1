"""Injected faults a client must survive (`POST /sandbox/faults`, admin token): failing or
stalled requests, dropped watches, and compaction (every resumed watch then gets 410 Gone).

The whole body is checked before any of it applies; a bad one is a 400 and changes nothing."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.store.store import JSON, bad_request


@dataclass
class Faults:
    """Injected faults (for the cockpit's resilience tests)."""

    fail_next: int = 0
    fail_code: int = 500
    stall_next: int = 0
    stall_seconds: float = 0.0


_FAULT_NUMBERS: dict[str, tuple[type, float, float]] = {
    "fail_next": (int, 0, 1_000_000),
    "fail_code": (int, 400, 599),
    "stall_next": (int, 0, 1_000_000),
    "stall_seconds": (float, 0.0, 600.0),
}


_FLAGS = ("drop_watches", "compact", "revoke_tokens")
"""Faults that act once: end every watch, forget the watch history, revoke issued tokens."""


def fault_changes(spec: JSON) -> dict[str, int | float]:
    """The Faults fields a `/sandbox/faults` body sets, every one checked (400 otherwise)."""
    unknown = set(spec) - set(_FAULT_NUMBERS) - set(_FLAGS)
    if unknown:
        raise bad_request(
            f"unknown fault fields {sorted(unknown)}; known: {sorted([*_FAULT_NUMBERS, *_FLAGS])}"
        )
    for flag in _FLAGS:
        if flag in spec and not isinstance(spec[flag], bool):
            raise bad_request(f"{flag}: Invalid value: {spec[flag]!r}: must be true or false")
    changes: dict[str, int | float] = {}
    for key, (kind, low, high) in _FAULT_NUMBERS.items():
        if key not in spec:
            continue
        value = spec[key]
        number_ok = isinstance(value, int | float) and not isinstance(value, bool)
        if kind is int:
            number_ok = number_ok and float(value).is_integer()
        if not number_ok or not low <= value <= high:  # NaN fails both bounds
            what = "an integer" if kind is int else "a number of seconds"
            raise bad_request(
                f"{key}: Invalid value: {value!r}: must be {what} from {low:g} to {high:g}"
            )
        changes[key] = kind(value)
    return changes
