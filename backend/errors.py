"""Errors in the OpenAI error shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = [
    "ApiError",
    "error_body",
    "error_response",
    "error_type_for",
    "exception_handlers",
    "sse_error_event",
]


def error_type_for(status: int) -> str:
    """Return the OpenAI error ``type`` that goes with an HTTP status."""
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_body(
    message: str, *, type_: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """Return the OpenAI error object for a message, type, code and parameter."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Return a JSON error response in the OpenAI shape."""
    body = error_body(message, type_=error_type_for(status), code=code, param=param)
    return JSONResponse(body, status_code=status, headers=headers)


def sse_error_event(message: str, *, type_: str, code: str) -> bytes:
    """Return one terminal server-sent event carrying an OpenAI error object."""
    payload = json.dumps(error_body(message, type_=type_, code=code), separators=(",", ":"))
    return b"data: " + payload.encode() + b"\n\n"


class ApiError(Exception):
    """A request the backend refuses with a 4xx or 5xx in the OpenAI shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Keep the status, message, code, parameter and extra headers of the refusal."""
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        """Return the refusal as a JSON response."""
        return error_response(
            self.status, self.message, code=self.code, param=self.param, headers=self.headers
        )


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, str(exc.detail), code=code, headers=exc.headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


exception_handlers: dict[Any, Any] = {
    HTTPException: _http_exception,
    ApiError: _api_error,
}
