"""Kubernetes resource quantities and the API's text forms of numbers, durations and times.

apimachinery's `resource.Quantity`, `metav1.Duration` and `metav1.Time` as the sandbox needs them:
the API server checks quantities in admission, the HPA reads requests and targets, and the
metrics samples are rendered with them.

    parse_cpu_millicores("250m") == 250; parse_memory_bytes("128Mi") == 134217728
    format_cpu_millicores(250) == "250m"; format_memory(134217728) == "128Mi"
    format_decimal_si(1500, scale=-3) == "1500m"   # canonical form, as apimachinery prints
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from fractions import Fraction

from kubernetes.utils import parse_quantity as kubernetes_parse_quantity

_DECIMAL_SUFFIXES = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}


class QuantityError(ValueError):
    """A string that is not a Kubernetes resource quantity."""


def parse_quantity(quantity: str | int | float) -> Fraction:
    """Parse a Kubernetes quantity ("250m", "1", "128Mi", "1e3", "500M") into an exact number
    (the kubernetes client's parser; QuantityError for anything else)."""
    # The client's parser lets spaces through ("1 Mi"); apimachinery does not.
    if (
        isinstance(quantity, bool)
        or (isinstance(quantity, float) and not math.isfinite(quantity))
        or (isinstance(quantity, str) and any(c.isspace() for c in quantity))
    ):
        raise QuantityError(f"not a quantity: {quantity!r}")
    try:
        value = kubernetes_parse_quantity(quantity)
    except (ValueError, TypeError, ArithmeticError):
        raise QuantityError(f"not a quantity: {quantity!r}") from None
    return Fraction(value)


def milli_value(quantity: str | int | float) -> int:
    """A quantity in thousandths, rounded up as apimachinery's ``MilliValue`` does."""
    return math.ceil(parse_quantity(quantity) * 1000)


def parse_cpu_millicores(quantity: str | int | float) -> int:
    """CPU quantity to millicores, rounded up as apimachinery's ``MilliValue`` does."""
    return milli_value(quantity)


def parse_memory_bytes(quantity: str | int | float) -> int:
    """Memory quantity to bytes, rounded up as apimachinery's ``Value`` does."""
    return math.ceil(parse_quantity(quantity))


def format_decimal_si(amount: int, scale: int = 0) -> str:
    """Canonical DecimalSI text of ``amount * 10**scale`` ("1500m", "2", "40M", "123456n").

    Like apimachinery, it picks the largest SI exponent (a multiple of 3) that keeps the
    mantissa an integer; ``scale`` must be a multiple of 3 between -9 and 18.
    """
    if scale not in _DECIMAL_SUFFIXES.values():
        raise ValueError(f"scale must be an SI exponent, not {scale}")
    if amount == 0:
        return "0"
    sign = "-" if amount < 0 else ""
    mantissa, exponent = abs(amount), scale
    while exponent < 18 and mantissa % 1000 == 0:
        mantissa //= 1000
        exponent += 3
    while exponent < 0 and exponent not in (-9, -6, -3):  # pragma: no cover - defensive
        exponent += 3
    suffix = {v: k for k, v in _DECIMAL_SUFFIXES.items()}[exponent]
    return f"{sign}{mantissa}{suffix}"


def format_cpu_millicores(millicores: int) -> str:
    """CPU in millicores as a canonical quantity ("250m", "1", "1500m")."""
    return format_decimal_si(millicores, -3)


def format_cpu_nanocores(nanocores: int) -> str:
    """CPU in nanocores as a canonical quantity ("123456789n", "5m"), as metrics-server reports."""
    return format_decimal_si(nanocores, -9)


def format_memory(num_bytes: int) -> str:
    """Bytes as a canonical BinarySI quantity ("12345Ki", "128Mi", or plain bytes)."""
    if num_bytes == 0:
        return "0"
    suffix = ""
    value = num_bytes
    for name in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"):
        if value % 1024 != 0:
            break
        value //= 1024
        suffix = name
    return f"{value}{suffix}"


def format_go_duration(seconds: float) -> str:
    """Seconds in Go's ``time.Duration`` text, as ``metav1.Duration`` serialises it ("15s")."""
    nanos = round(seconds * 1e9)
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                return f"{sign}{_trim(Fraction(nanos, size))}{unit}"
    hours, rest = divmod(nanos, 3600 * 1_000_000_000)
    minutes, rest = divmod(rest, 60 * 1_000_000_000)
    text = f"{_trim(Fraction(rest, 1_000_000_000))}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return f"{sign}{text}"


def _trim(value: Fraction) -> str:
    """Decimal text of a fraction with at most 9 digits after the point, trailing zeros cut."""
    text = f"{float(value):.9f}".rstrip("0").rstrip(".")
    return text or "0"


def format_rfc3339(epoch_seconds: float) -> str:
    """Wall-clock seconds as an RFC 3339 timestamp with second precision, like the API server."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
