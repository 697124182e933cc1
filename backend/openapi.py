"""The OpenAPI description of the backend's public API, served on ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from backend.settings import Settings
from backend.state import backend_state
from backend.validation import MAX_STOP_CHARS, MAX_STOP_SEQUENCES, NUMBER_FIELDS, ROLES

__all__ = ["build_openapi", "openapi_endpoint"]

_ERROR = {"$ref": "#/components/schemas/Error"}
# One server-sent event: data is a JSON chunk, a JSON error (the last event), or [DONE].
_SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "string"}},
}


def _error_responses(*codes: int) -> dict[str, Any]:
    descriptions = {
        400: "Invalid request",
        404: "Unknown model",
        413: "Body too large",
        429: "Too many chats in progress (Retry-After)",
        502: "The engine failed",
        503: "Engine unavailable or shutting down (Retry-After)",
        504: "The engine missed a deadline",
    }
    return {
        str(code): {
            "description": descriptions[code],
            "content": {"application/json": {"schema": _ERROR}},
        }
        for code in codes
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    # The backend treats an explicit null like an absent field, as the OpenAI API does.
    return {**schema, "nullable": True}


def _chat_request(settings: Settings) -> dict[str, Any]:
    text = {"type": "string", "maxLength": settings.max_message_chars}
    stop = {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS}
    message = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"type": "string", "enum": list(ROLES)},
            "content": {
                "oneOf": [
                    text,
                    {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["type", "text"],
                            "properties": {
                                "type": {"type": "string", "enum": ["text"]},
                                "text": text,
                            },
                        },
                    },
                ]
            },
        },
    }
    return {
        "type": "object",
        "required": ["messages"],
        "description": (
            f"At most {settings.max_total_chars} characters over all messages and "
            f"{settings.max_body_bytes} bytes in all. Unknown fields are dropped; "
            f"max_tokens is capped at {settings.max_tokens_cap}."
        ),
        "properties": {
            "model": {"type": "string", "enum": list(settings.models)},
            "messages": {
                "type": "array",
                "minItems": 1,
                "maxItems": settings.max_messages,
                "items": message,
            },
            "stream": _nullable({"type": "boolean"}),
            **{
                name: _nullable(
                    {
                        "type": "integer" if allowed.integer else "number",
                        "minimum": allowed.low,
                        "maximum": allowed.high,
                    }
                )
                for name, allowed in NUMBER_FIELDS.items()
            },
            "stop": _nullable(
                {"oneOf": [stop, {"type": "array", "maxItems": MAX_STOP_SEQUENCES, "items": stop}]}
            ),
            "stream_options": _nullable(
                {"type": "object", "properties": {"include_usage": {"type": "boolean"}}}
            ),
        },
    }


def build_openapi(settings: Settings) -> dict[str, Any]:
    """Return the OpenAPI description for a backend with ``settings`` (its limits included)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "kube-llm backend",
            "version": "0.1.0",
            "description": "OpenAI-compatible chat gateway in front of an LLM engine sidecar.",
        },
        "paths": {
            "/v1/chat/completions": {
                "post": {
                    "summary": "Create a chat completion (server-sent events when streamed)",
                    "operationId": "createChatCompletion",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _chat_request(settings)}},
                    },
                    "responses": {
                        "200": {
                            "description": "The completion, or its stream of chunks",
                            "content": {
                                "application/json": {"schema": {"type": "object"}},
                                "text/event-stream": {"schema": _SSE_EVENT},
                            },
                        },
                        **_error_responses(400, 404, 413, 429, 502, 503, 504),
                    },
                }
            },
            "/v1/models": _get("listModels", "List the models this backend serves"),
            "/healthz": _get("healthz", "Liveness: the process answers"),
            "/readyz": _get(
                "readyz", "Readiness: engine reachable, model listed, not draining", 503
            ),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "Text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {"schemas": {"Error": _ERROR_SCHEMA}},
    }


def _get(operation: str, summary: str, *errors: int) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "operationId": operation,
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **_error_responses(*errors),
            },
        }
    }


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": "string", "nullable": True},
                "code": {"type": "string", "nullable": True},
            },
        }
    },
}


async def openapi_endpoint(request: Request) -> Response:
    """Serve ``GET /openapi.json``."""
    return JSONResponse(build_openapi(backend_state(request).settings))
