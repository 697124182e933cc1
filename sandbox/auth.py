"""Who may call the sandbox's API server: bearer tokens and RBAC through Roles and RoleBindings.

The kubeconfig's admin token may do anything; a token issued to a ServiceAccount (TokenRequest,
`kubectl create token`) may do what the Roles bound to it in its namespace allow, so the
cockpit's own Role can be tried against the sandbox. A SelfSubjectAccessReview (`kubectl auth
can-i`) may arrive as Kubernetes protobuf, which is decoded here as far as the review needs.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox.bodies import protobuf_object, wire_fields
from sandbox.store import JSON, ROLEBINDINGS, ROLES, ApiError, Store, bad_request


@dataclass(frozen=True)
class User:
    """Who a bearer token belongs to: the sandbox's admin, or a ServiceAccount."""

    name: str
    admin: bool = False
    service_account: tuple[str, str] | None = None  # (namespace, name)


class Authenticator:
    """Bearer tokens: the admin token of the kubeconfig plus tokens issued to ServiceAccounts.

    Tokens are kept by their SHA-256 digest: a lookup costs the same whatever the token, and
    its timing says nothing about a stored token.
    """

    def __init__(self, admin_token: str) -> None:
        self._users: dict[bytes, tuple[User, float | None]] = {
            _digest(admin_token.encode()): (User("kube-llm-sandbox-admin", admin=True), None)
        }

    def issue(
        self, namespace: str, service_account: str, expiration_seconds: float | None = None
    ) -> str:
        """A new token for a ServiceAccount (what TokenRequest returns), valid for
        `expiration_seconds` (None: as long as the sandbox runs)."""
        token = secrets.token_urlsafe(32)
        name = f"system:serviceaccount:{namespace}:{service_account}"
        expires = None if expiration_seconds is None else time.time() + expiration_seconds
        user = User(name, service_account=(namespace, service_account))
        self._users[_digest(token.encode())] = (user, expires)
        return token

    def user(self, supplied: bytes) -> User | None:
        """The user of a token, unless it is unknown or expired."""
        found = self._users.get(_digest(supplied))
        if found is None:
            return None
        user, expires = found
        if expires is not None and time.time() >= expires:
            del self._users[_digest(supplied)]
            return None
        return user


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


USER_SCOPE_KEY = "kube_llm_user"


class BearerAuth:
    """Pure ASGI middleware: every HTTP request needs `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self._app = app
        self._authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        supplied = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value.startswith(b"Bearer "):
                supplied = value[len(b"Bearer ") :].strip()
        user = self._authenticator.user(supplied) if supplied else None
        if user is None:
            error = ApiError(401, "Unauthorized", "Unauthorized")
            await JSONResponse(error.status(), status_code=error.code)(scope, receive, send)
            return
        scope[USER_SCOPE_KEY] = user
        await self._app(scope, receive, send)


def _rule_allows(rule: JSON, verb: str, group: str, resource: str, name: str | None) -> bool:
    def has(values: list[str] | None, wanted: str) -> bool:
        return values is not None and ("*" in values or wanted in values)

    if not (
        has(rule.get("verbs"), verb)
        and has(rule.get("apiGroups"), group)
        and has(rule.get("resources"), resource)
    ):
        return False
    names = rule.get("resourceNames")
    return not names or (name is not None and name in names)


def authorize(
    store: Store,
    user: User,
    verb: str,
    group: str,
    resource: str,
    namespace: str | None,
    name: str | None,
) -> None:
    """RBAC for ServiceAccounts through namespaced Roles and RoleBindings (403 when denied)."""
    if user.admin:
        return
    allowed = False
    if namespace and user.service_account is not None:
        sa_namespace, sa_name = user.service_account
        for binding in store.list(ROLEBINDINGS, namespace):
            subjects = binding.get("subjects") or []
            if not any(
                s.get("kind") == "ServiceAccount"
                and s.get("name") == sa_name
                and (s.get("namespace") or namespace) == sa_namespace
                for s in subjects
            ):
                continue
            ref = binding.get("roleRef") or {}
            if ref.get("kind") != "Role":
                continue
            role = store.find(ROLES, namespace, ref.get("name", ""))
            if role and any(
                _rule_allows(rule, verb, group, resource, name) for rule in role.get("rules") or []
            ):
                allowed = True
                break
    if allowed:
        return
    subject = f'{resource} "{name}"' if name else resource
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    raise ApiError(
        403,
        "Forbidden",
        f'{subject} is forbidden: User "{user.name}" cannot {verb} resource "{resource}" '
        f'in API group "{group}"{where}',
        {"name": name or "", "group": group, "kind": resource.split("/")[0]},
    )


def decode_access_review_protobuf(body: bytes) -> JSON:
    """The spec of a SelfSubjectAccessReview sent as Kubernetes protobuf (as kubectl does).

    The envelope is `k8s\\0` plus a runtime.Unknown whose field 2 holds the object; the
    review's field 2 is its spec, whose field 1 is resourceAttributes and field 2
    nonResourceAttributes. Anything malformed is a 400.
    """
    names = {1: "namespace", 2: "verb", 3: "group", 4: "version", 5: "resource"}
    names.update({6: "subresource", 7: "name"})
    spec: JSON = {}
    try:
        review = wire_fields(protobuf_object(body))
        spec_fields = wire_fields(_message(review[2][0])) if 2 in review else {}
        if 1 in spec_fields:
            attributes = wire_fields(_message(spec_fields[1][0]))
            spec["resourceAttributes"] = {
                names[number]: _message(values[0]).decode()
                for number, values in attributes.items()
                if number in names
            }
        if 2 in spec_fields:
            attributes = wire_fields(_message(spec_fields[2][0]))
            spec["nonResourceAttributes"] = {
                name: _message(attributes[number][0]).decode()
                for number, name in ((1, "path"), (2, "verb"))
                if number in attributes
            }
    except (ValueError, UnicodeDecodeError) as error:
        raise bad_request(f"malformed protobuf SelfSubjectAccessReview: {error}") from None
    return spec


def _message(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError("expected a length-delimited field")
    return value
