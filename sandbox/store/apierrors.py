"""The API server's answers as `Status` objects (errors with Kubernetes' reasons and messages,
and success), and the timestamps objects carry."""

from __future__ import annotations

import datetime as dt

from sandbox.store.resources import JSON, ResourceType


def now() -> dt.datetime:
    """The current time in UTC."""
    return dt.datetime.now(dt.UTC)


def timestamp(moment: dt.datetime | None = None) -> str:
    """RFC 3339 time with second precision, as Kubernetes writes `metav1.Time`."""
    return (moment or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> dt.datetime:
    """Parse a Kubernetes timestamp (with or without fractional seconds)."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def success_status(code: int = 200, details: JSON | None = None) -> JSON:
    """A `Status` object for a successful call."""
    body: JSON = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


class ApiError(Exception):
    """An error the API server answers with a `Status` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: JSON | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> JSON:
        """The `Status` object for this error."""
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _object_error(rt: ResourceType, name: str, code: int, reason: str, message: str) -> ApiError:
    """An error about one named object, with the `details` Kubernetes gives it."""
    return ApiError(code, reason, message, {"name": name, "group": rt.group, "kind": rt.plural})


def _group_resource(rt: ResourceType) -> str:
    """`plural.group`, or the plural alone for the core group, as error messages name it."""
    return f"{rt.plural}.{rt.group}" if rt.group else rt.plural


def not_found(rt: ResourceType, name: str) -> ApiError:
    """The Kubernetes 404 for a missing object."""
    return _object_error(rt, name, 404, "NotFound", f'{_group_resource(rt)} "{name}" not found')


def already_exists(rt: ResourceType, name: str) -> ApiError:
    """The Kubernetes 409 for a create over an existing object."""
    message = f'{_group_resource(rt)} "{name}" already exists'
    return _object_error(rt, name, 409, "AlreadyExists", message)


def conflict(rt: ResourceType, name: str) -> ApiError:
    """The Kubernetes 409 for an update based on a stale resourceVersion."""
    message = (
        f'Operation cannot be fulfilled on {_group_resource(rt)} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )
    return _object_error(rt, name, 409, "Conflict", message)


def gone(rv: int, oldest: int) -> ApiError:
    """The Kubernetes 410 for a resourceVersion older than the retained history."""
    return ApiError(410, "Expired", f"too old resource version: {rv} ({oldest})")


def bad_request(message: str) -> ApiError:
    """A 400 Bad Request."""
    return ApiError(400, "BadRequest", message)
