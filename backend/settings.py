"""Backend settings, read once from the environment and validated."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

__all__ = ["Settings", "SettingsError"]

_T = TypeVar("_T")

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
# The HTTP client to the engine (backend.engine_clients): aiohttp, or httpx2 as a way back.
ENGINE_TRANSPORTS = ("aiohttp", "httpx")


class SettingsError(ValueError):
    """An environment variable holds a value the backend cannot run with."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the backend process is configured with (see ``Settings.from_env``)."""

    engine_url: str = "http://127.0.0.1:11434"
    model: str = "tinyllama"
    models: tuple[str, ...] = ("tinyllama",)
    max_inflight: int = 4
    max_queue: int = 16
    queue_timeout: float = 30.0
    first_token_timeout: float = 60.0
    request_timeout: float = 300.0
    engine_read_timeout: float = 30.0
    engine_connect_timeout: float = 5.0
    engine_transport: str = "aiohttp"
    max_body_bytes: int = 1_048_576
    max_messages: int = 64
    max_message_chars: int = 32_000
    max_total_chars: int = 100_000
    max_tokens_cap: int = 1024
    pod_name: str = field(default_factory=socket.gethostname)
    host: str = "0.0.0.0"
    port: int = 8000
    shutdown_timeout: float = 20.0
    log_level: str = "info"
    ready_cache_seconds: float = 1.0
    warmup: bool = False

    def __post_init__(self) -> None:
        """Check cross-field rules, so a hand-built ``Settings`` is as safe as one from env."""
        if not self.models:
            raise SettingsError("MODELS must name at least one model")
        if self.model not in self.models:
            raise SettingsError(
                f"MODEL {self.model!r} must be one of MODELS ({', '.join(self.models)})"
            )
        if self.first_token_timeout > self.request_timeout:
            raise SettingsError(
                f"FIRST_TOKEN_TIMEOUT ({self.first_token_timeout}) must not exceed "
                f"REQUEST_TIMEOUT ({self.request_timeout})"
            )
        if self.max_queue < 0 or self.queue_timeout <= 0:
            raise SettingsError("MAX_QUEUE must be 0 or more and QUEUE_TIMEOUT greater than 0")
        _check_choice("ENGINE_TRANSPORT", self.engine_transport, ENGINE_TRANSPORTS)
        _check_choice("LOG_LEVEL", self.log_level, LOG_LEVELS)
        if not self.pod_name or not self.pod_name.isascii() or not self.pod_name.isprintable():
            raise SettingsError("POD_NAME must be a non-empty printable ASCII string")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables; raise ``SettingsError`` on a bad value."""
        env = os.environ if environ is None else environ
        default = cls(pod_name="default")

        def get(name: str, parse: Callable[[str, str], _T], fallback: _T) -> _T:
            raw = env.get(name, "").strip()
            return fallback if raw == "" else parse(name, raw)

        model = get("MODEL", _name, default.model)
        fallback_models: tuple[str, ...] = (model,)
        models = get("MODELS", _name_list, fallback_models)
        return cls(
            engine_url=get("ENGINE_URL", _http_url, default.engine_url),
            model=model,
            models=models,
            max_inflight=get("MAX_INFLIGHT", _positive_int, default.max_inflight),
            max_queue=get("MAX_QUEUE", _non_negative_int, default.max_queue),
            queue_timeout=get("QUEUE_TIMEOUT", _positive_float, default.queue_timeout),
            first_token_timeout=get(
                "FIRST_TOKEN_TIMEOUT", _positive_float, default.first_token_timeout
            ),
            request_timeout=get("REQUEST_TIMEOUT", _positive_float, default.request_timeout),
            engine_read_timeout=get(
                "ENGINE_READ_TIMEOUT", _positive_float, default.engine_read_timeout
            ),
            engine_connect_timeout=get(
                "ENGINE_CONNECT_TIMEOUT", _positive_float, default.engine_connect_timeout
            ),
            engine_transport=get("ENGINE_TRANSPORT", _lower, default.engine_transport),
            max_body_bytes=get("MAX_BODY_BYTES", _positive_int, default.max_body_bytes),
            max_messages=get("MAX_MESSAGES", _positive_int, default.max_messages),
            max_message_chars=get("MAX_MESSAGE_CHARS", _positive_int, default.max_message_chars),
            max_total_chars=get("MAX_TOTAL_CHARS", _positive_int, default.max_total_chars),
            max_tokens_cap=get("MAX_TOKENS_CAP", _positive_int, default.max_tokens_cap),
            pod_name=get("POD_NAME", _name, socket.gethostname()),
            host=get("HOST", _name, default.host),
            port=get("PORT", _port, default.port),
            shutdown_timeout=get("SHUTDOWN_TIMEOUT", _positive_float, default.shutdown_timeout),
            log_level=get("LOG_LEVEL", _lower, default.log_level),
            ready_cache_seconds=get(
                "READY_CACHE_SECONDS", _non_negative_float, default.ready_cache_seconds
            ),
            warmup=get("WARMUP", _bool, default.warmup),
        )


def _name(name: str, raw: str) -> str:
    if any(ch.isspace() for ch in raw) or not raw.isprintable():
        raise SettingsError(f"{name} must not contain spaces or control characters, got {raw!r}")
    return raw


def _name_list(name: str, raw: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in raw.split(","))
    if any(not item for item in items):
        raise SettingsError(f"{name} must be a comma-separated list of names, got {raw!r}")
    return tuple(dict.fromkeys(_name(name, item) for item in items))


def _int(name: str, raw: str, kind: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {kind}, got {raw!r}") from None


def _positive_int(name: str, raw: str) -> int:
    value = _int(name, raw, "a whole number")
    if value < 1:
        raise SettingsError(f"{name} must be at least 1, got {value}")
    return value


def _non_negative_int(name: str, raw: str) -> int:
    value = _int(name, raw, "a whole number")
    if value < 0:
        raise SettingsError(f"{name} must be 0 or more, got {value}")
    return value


def _port(name: str, raw: str) -> int:
    value = _int(name, raw, "a port number")
    if not 0 <= value <= 65535:
        raise SettingsError(f"{name} must be between 0 and 65535, got {value}")
    return value


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise SettingsError(f"{name} must be a finite number, got {raw!r}")
    return value


def _positive_float(name: str, raw: str) -> float:
    value = _float(name, raw)
    if value <= 0:
        raise SettingsError(f"{name} must be greater than 0, got {raw!r}")
    return value


def _non_negative_float(name: str, raw: str) -> float:
    value = _float(name, raw)
    if value < 0:
        raise SettingsError(f"{name} must not be negative, got {raw!r}")
    return value


def _http_url(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name} must be an http:// or https:// URL, got {raw!r}")
    try:
        _ = parts.port
    except ValueError:
        raise SettingsError(f"{name} has an invalid port: {raw!r}") from None
    return raw.rstrip("/")


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _bool(name: str, raw: str) -> bool:
    value = raw.lower()
    if value not in _TRUE + _FALSE:
        raise SettingsError(f"{name} must be true or false, got {raw!r}")
    return value in _TRUE


def _lower(name: str, raw: str) -> str:
    # Names of choices are case-insensitive; Settings checks the value is one of them.
    return raw.lower()


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
