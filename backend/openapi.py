"""The OpenAPI description of the backend's public API, served on ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["OPENAPI", "openapi_endpoint"]

_ERROR = {"$ref": "#/components/schemas/Error"}


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


_MESSAGE = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
        "content": {
            "oneOf": [
                {"type": "string"},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["type", "text"],
                        "properties": {
                            "type": {"type": "string", "enum": ["text"]},
                            "text": {"type": "string"},
                        },
                    },
                },
            ]
        },
    },
}

_CHAT_REQUEST = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        "model": {"type": "string"},
        "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
        "stream": {"type": "boolean"},
        "max_tokens": {"type": "integer", "minimum": 1},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "seed": {"type": "integer"},
        "n": {"type": "integer", "minimum": 1, "maximum": 1},
        "stop": {
            "oneOf": [
                {"type": "string"},
                {"type": "array", "maxItems": 4, "items": {"type": "string"}},
            ]
        },
        "stream_options": {
            "type": "object",
            "properties": {"include_usage": {"type": "boolean"}},
        },
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "kube-llm backend",
        "version": "0.1.0",
        "description": "OpenAI-compatible chat gateway in front of an LLM engine sidecar.",
    },
    "paths": {
        "/v1/chat/completions": {
            "post": {
                "summary": "Create a chat completion (streamed as server-sent events when asked)",
                "operationId": "createChatCompletion",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _CHAT_REQUEST}},
                },
                "responses": {
                    "200": {
                        "description": "The completion, or its stream of chunks",
                        "content": {
                            "application/json": {"schema": {"type": "object"}},
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    **_error_responses(400, 404, 413, 429, 502, 503, 504),
                },
            }
        },
        "/v1/models": {
            "get": {
                "summary": "List the models this backend serves",
                "operationId": "listModels",
                "responses": {
                    "200": {
                        "description": "The model list",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "operationId": "healthz",
                "responses": {
                    "200": {
                        "description": "The process answers",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: engine reachable, model listed, not draining",
                "operationId": "readyz",
                "responses": {
                    "200": {
                        "description": "Ready",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_error_responses(503),
                },
            }
        },
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
    "components": {
        "schemas": {
            "Error": {
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
        }
    },
}


async def openapi_endpoint(request: Request) -> Response:
    """Serve ``GET /openapi.json``."""
    return JSONResponse(OPENAPI)
