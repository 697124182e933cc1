"""Validation of chat completion requests: limits, roles, ranges and the field allowlist."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from backend.errors import ApiError
from backend.settings import Settings

__all__ = [
    "MAX_STOP_CHARS",
    "MAX_STOP_SEQUENCES",
    "NUMBER_FIELDS",
    "ROLES",
    "ChatRequest",
    "NumberRange",
    "validate_chat",
]

# What the validator accepts; the OpenAPI description is built from the same values.

# Roles a client may send, and the role the engine gets for each.
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 256


@dataclass(frozen=True, slots=True)
class NumberRange:
    """The values a numeric request field may take."""

    low: int
    high: int
    integer: bool = False

    def describe(self) -> str:
        """Say in words what is allowed, for an error message a person reads."""
        kind = "a whole number" if self.integer else "a number"
        if self.low == self.high:
            return f"{self.low}"
        if self.high >= 2**31:  # no real bound above: do not print a 10-digit number
            if self.low <= -(2**31):
                return "a 64-bit whole number" if self.integer else "a number"
            return f"{kind} of at least {self.low}"
        return f"{kind} from {self.low} to {self.high}"


NUMBER_FIELDS = {
    "n": NumberRange(1, 1, integer=True),  # only one choice is ever produced
    "max_tokens": NumberRange(1, 2**31, integer=True),
    "max_completion_tokens": NumberRange(1, 2**31, integer=True),
    "seed": NumberRange(-(2**63), 2**63 - 1, integer=True),
    "temperature": NumberRange(0, 2),
    "top_p": NumberRange(0, 1),
    "presence_penalty": NumberRange(-2, 2),
    "frequency_penalty": NumberRange(-2, 2),
}
# Numeric fields the engine gets as the client sent them.
_PASSED_ON = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed")


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated chat: what the engine is sent, and how the client wants the reply."""

    model: str
    stream: bool
    include_usage: bool
    engine_payload: dict[str, Any]
    prompt_chars: int


def _invalid(message: str, param: str | None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code=code, param=param)


def _number(body: dict[str, Any], name: str) -> float | int | None:
    value = body.get(name)
    if value is None:
        return None
    allowed = NUMBER_FIELDS[name]
    # bool is an int in Python, but not a number in JSON.
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "an integer" if allowed.integer else "a number"
        raise _invalid(f"'{name}' must be {kind}.", name, "invalid_type")
    if allowed.integer and not isinstance(value, int):
        raise _invalid(f"'{name}' must be an integer.", name, "invalid_type")
    if not math.isfinite(value) or not allowed.low <= value <= allowed.high:
        why = _WHY.get(name, "")
        raise _invalid(f"'{name}' must be {allowed.describe()}{why}, got {value!r}.", name)
    return value


# Why a range is what it is, where a person could not guess it.
_WHY = {"n": ": only one choice is produced"}


def _unicode(text: str, param: str) -> str:
    """Refuse text the engine cannot encode: a lone UTF-16 surrogate such as ``"\\ud800"``.

    JSON may carry one as an escape and Python decodes it into a string, but it is not a
    Unicode character: UTF-8 cannot encode it, so the engine would fail on it mid-request.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        surrogate = f"\\u{ord(text[exc.start]):04x}"
        raise _invalid(
            f"Text contains a lone surrogate ({surrogate}) at character {exc.start}, which is "
            "not valid Unicode; send a whole character instead.",
            param,
            "invalid_unicode",
        ) from None
    return text


def _content_text(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for index, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise _invalid(
                    "Only text content parts are supported.", f"{param}[{index}]", "invalid_type"
                )
            parts.append(part["text"])
        return "".join(parts)
    raise _invalid("Message content must be a string or a list of text parts.", param)


def _messages(body: dict[str, Any], settings: Settings) -> tuple[list[dict[str, str]], int]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("'messages' must be a non-empty array.", "messages", "invalid_type")
    if len(messages) > settings.max_messages:
        raise _invalid(
            f"Too many messages: at most {settings.max_messages} are allowed.",
            "messages",
            "too_many_messages",
        )
    cleaned: list[dict[str, str]] = []
    total = 0
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _invalid("Each message must be an object.", param, "invalid_type")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise _invalid(
                f"Message role must be one of {', '.join(ROLES)}.",
                f"{param}.role",
                "invalid_role",
            )
        text = _unicode(
            _content_text(message.get("content"), f"{param}.content"), f"{param}.content"
        )
        if len(text) > settings.max_message_chars:
            raise _invalid(
                f"Message too long: at most {settings.max_message_chars} characters.",
                f"{param}.content",
                "message_too_long",
            )
        total += len(text)
        if total > settings.max_total_chars:
            raise _invalid(
                f"Conversation too long: at most {settings.max_total_chars} characters in all.",
                "messages",
                "context_too_long",
            )
        cleaned.append({"role": ROLES[role], "content": text})
    return cleaned, total


def _stop(body: dict[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    items = [stop] if isinstance(stop, str) else stop
    if (
        not isinstance(items, list)
        or len(items) > MAX_STOP_SEQUENCES
        or not all(isinstance(item, str) and 0 < len(item) <= MAX_STOP_CHARS for item in items)
    ):
        raise _invalid(
            f"'stop' must be a string or up to {MAX_STOP_SEQUENCES} non-empty strings.", "stop"
        )
    return [_unicode(item, "stop") for item in items]


def validate_chat(body: Any, settings: Settings) -> ChatRequest:
    """Check a parsed request body and build the allowlisted engine payload.

    Raises ``ApiError`` (a 4xx) for anything the backend will not send to the engine.
    """
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.", None, "invalid_type")
    model = body.get("model", settings.model)
    if not isinstance(model, str):
        raise _invalid("'model' must be a string.", "model", "invalid_type")
    if model not in settings.models:
        raise ApiError(
            404,
            f"The model '{model[:100]}' does not exist or is not served here.",
            code="model_not_found",
            param="model",
        )
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _invalid("'stream' must be a boolean.", "stream", "invalid_type")
    _number(body, "n")  # checked, and accepted for compatibility
    messages, prompt_chars = _messages(body, settings)

    # max_completion_tokens is OpenAI's newer name for max_tokens; it wins when both are set.
    requested = _number(body, "max_completion_tokens")
    legacy = _number(body, "max_tokens")
    if requested is None:
        requested = legacy
    max_tokens = settings.max_tokens_cap if requested is None else int(requested)

    payload: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": stream,
        # A larger request is lowered to the cap, not refused: clients often send a generous
        # default, and the reply then ends with finish_reason "length" as at any limit.
        "max_tokens": min(max_tokens, settings.max_tokens_cap),
    }
    for name in _PASSED_ON:
        value = _number(body, name)
        if value is not None:
            payload[name] = value
    stop = _stop(body)
    if stop is not None:
        payload["stop"] = stop
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict) or not isinstance(
            options.get("include_usage", False), bool
        ):
            raise _invalid("'stream_options' must be an object.", "stream_options")
        include_usage = stream and bool(options.get("include_usage"))
    if stream:
        # Usage is always asked of the engine, for the token metric; the client gets the usage
        # chunk only when it asked for one. Engines that do not know the option ignore it.
        payload["stream_options"] = {"include_usage": True}
    return ChatRequest(
        model=model,
        stream=stream,
        include_usage=include_usage,
        engine_payload=payload,
        prompt_chars=prompt_chars,
    )
