"""API trouble in plain words: what went wrong and, for a 403, which permission is missing.

The messages go straight into the cockpit's status line and event log, so they say what a user
can act on ("403: the cockpit may not watch pods in kube-llm (needs get/list/watch pods, ...)")
and never carry a credential (response headers are not included).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes.aio.client.exceptions import ApiException

ROLE_FILE = "kustomize/base/cockpit-role.yaml"


class KubeconfigError(Exception):
    """The kubeconfig cannot be used; the message says why and what to do, in plain words."""


@dataclass(frozen=True)
class Permission:
    """What one request needs from RBAC: a verb on a resource (`pods`, `pods/eviction`)."""

    verb: str
    resource: str
    group: str = ""
    needs: str = ""
    """The verbs the cockpit's Role grants on this resource, as `get/list/watch`."""

    @property
    def resource_name(self) -> str:
        """The resource as kubectl names it: `pods`, `deployments.apps`, `pods.metrics.k8s.io`."""
        return f"{self.resource}.{self.group}" if self.group else self.resource


def status_body(error: ApiException) -> dict[str, Any]:
    """The API's `Status` object from an error's body, or {} when the body is not one."""
    body = error.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def status_message(error: ApiException) -> str:
    """The `message` of the API's Status body, else the reason the client recorded (the watch
    helper puts "Reason: message" there for an ERROR event)."""
    message = status_body(error).get("message")
    return str(message) if message else str(error.reason or "")


def status_causes(error: ApiException) -> list[dict[str, str]]:
    """The `details.causes` of the API's Status body (a PDB refusal names the budget there)."""
    details = status_body(error).get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    return [c for c in causes if isinstance(c, dict)] if isinstance(causes, list) else []


ANONYMOUS_USER = "system:anonymous"
"""Who the API server takes a request with no credentials for (its default anonymous access)."""


def forbidden(permission: Permission, namespace: str, error: ApiException | None = None) -> str:
    """A 403 in words: the verb, the resource, the namespace, and what the Role must grant; or,
    when the API server took the request as `system:anonymous`, that the kubeconfig's user
    sent no credentials at all (no Role can fix that)."""
    if error is not None and f'User "{ANONYMOUS_USER}"' in status_message(error):
        return (
            f"403: the API server took the cockpit for {ANONYMOUS_USER}: the kubeconfig's user "
            "has no credentials (no token, client certificate or exec plugin)"
        )
    needs = permission.needs or permission.verb
    return (
        f"403: the cockpit may not {permission.verb} {permission.resource_name} in {namespace} "
        f"(needs {needs} {permission.resource_name}, see {ROLE_FILE})"
    )


def describe(error: BaseException, timeout: float | None = None) -> str:
    """Any failure of a request to the API server in a few plain words (no 403 here: see
    `forbidden`, which knows the permission)."""
    if isinstance(error, ApiException):
        status = error.status
        message = status_message(error)
        if status == 401:
            return "401: the API server refused the credentials (expired token or certificate?)"
        if status == 410:
            return "410 Gone: the resource version is too old"
        if status == 404:
            return f"404: {message}" if message else "404 Not Found"
        if status:
            reason = _status_reason(error)
            return (
                f"{status} {reason}: {message}"
                if message and message != reason
                else (f"{status} {reason}".strip())
            )
        return message or "the API server answered something that is not Kubernetes JSON"
    if isinstance(error, TimeoutError):
        if timeout:
            return f"the API server did not answer within {timeout:g} s"
        return "the API server did not answer in time"
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return f"the API server's TLS certificate is not trusted: {error.certificate_error}"
    if isinstance(error, aiohttp.ClientConnectorError):
        os_error = error.os_error
        if isinstance(os_error, ConnectionRefusedError):
            return f"connection refused ({error.host}:{error.port})"
        return f"cannot connect to {error.host}:{error.port}: {os_error.strerror or os_error}"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the API server closed the connection"
    if isinstance(error, aiohttp.ClientPayloadError):
        return "the connection dropped in the middle of a response"
    if isinstance(error, aiohttp.ClientError):
        return f"{type(error).__name__}: {error}"
    if isinstance(error, ConnectionError):
        return f"connection lost: {error.strerror or type(error).__name__}"
    if isinstance(error, OSError):
        return f"network error: {error.strerror or error}"
    if isinstance(error, ValueError):
        return "the API server sent a response that is not valid JSON"
    return f"{type(error).__name__}: {error}"


def _status_reason(error: ApiException) -> str:
    reason = status_body(error).get("reason")
    return str(reason) if reason else str(error.reason or "").split(":", 1)[0]
