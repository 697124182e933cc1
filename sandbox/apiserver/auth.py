"""Who may call the sandbox's API server: bearer tokens, client certificates, and RBAC through
Roles and RoleBindings.

The kubeconfig's admin token may do anything, and so may a client certificate in the
`system:masters` group or a short-lived admin token (what the kubeconfig's exec credential
plugin hands out, `issue_admin`; `revoke_expiring` ends them all at once). A token issued
to a ServiceAccount (TokenRequest, `kubectl create token`) may do what the Roles bound to it
in its namespace allow, so the cockpit's own Role can be tried against the sandbox. A
SelfSubjectAccessReview (`kubectl auth can-i`) is answered in `sandbox.apiserver.reviews`.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox.apiserver.protocol import CLIENT_CERT_SCOPE_KEY
from sandbox.apiserver.tls import ClientCertificate
from sandbox.pki import ADMIN_GROUP, ADMIN_USER
from sandbox.store.store import JSON, ROLEBINDINGS, ROLES, ApiError, Store


@dataclass(frozen=True)
class User:
    """Who a bearer token belongs to: the sandbox's admin, or a ServiceAccount."""

    name: str
    admin: bool = False
    service_account: tuple[str, str] | None = None  # (namespace, name)
    anonymous: bool = False


ANONYMOUS = User("system:anonymous", anonymous=True)
"""Who a request with no credentials is, as the API server's anonymous authenticator names it
(in the group `system:unauthenticated`)."""

PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version", "/version/"})
"""What the default ClusterRole `system:public-info-viewer` lets anyone read, anonymous too
(its binding names `system:unauthenticated`); `system:discovery` and `system:basic-user` are
bound to `system:authenticated` only."""


class Authenticator:
    """Bearer tokens: the admin token of the kubeconfig plus tokens issued to ServiceAccounts.

    Tokens are kept by their SHA-256 digest: a lookup costs the same whatever the token, and
    its timing says nothing about a stored token.
    """

    def __init__(self, admin_token: str) -> None:
        self._users: dict[bytes, tuple[User, float | None]] = {
            _digest(admin_token.encode()): (User(ADMIN_USER, admin=True), None)
        }

    def issue_admin(self, expiration_seconds: float) -> tuple[str, float]:
        """A new admin token that expires after `expiration_seconds`, and when (epoch)."""
        token = secrets.token_urlsafe(32)
        # Whole seconds: the expirationTimestamp a client reads (RFC 3339, seconds) is the moment
        # the token stops working, never up to a second before it.
        expires = float(int(time.time() + expiration_seconds))
        self._users[_digest(token.encode())] = (User(ADMIN_USER, admin=True), expires)
        return token, expires

    def revoke_expiring(self) -> int:
        """Revoke every token that has an expiry (issued ones); how many went."""
        revoked = [key for key, (_user, expires) in self._users.items() if expires is not None]
        for key in revoked:
            del self._users[key]
        return len(revoked)

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


def certificate_user(certificate: ClientCertificate) -> User | None:
    """The user a verified client certificate names (CN the user, O the groups); None when it
    names none (no CN), as the API server's `CommonNameUserConversion`."""
    if not certificate.common_name:
        return None
    return User(certificate.common_name, admin=ADMIN_GROUP in certificate.organizations)


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


USER_SCOPE_KEY = "kube_llm_user"


class BearerAuth:
    """Pure ASGI middleware: who each HTTP request is, from `Authorization: Bearer <token>` or
    a client certificate the TLS layer checked against the sandbox's CA.

    As the API server's union of authenticators (x509 before tokens, the first success wins):
    a verified certificate naming a user is that user; a certificate that did not verify
    (another CA, expired, not yet valid) is the x509 authenticator's error, and a bearer token
    that is not known is the token authenticator's (`bearertoken.go`: an empty one is no
    token), so either makes the request a 401 `Unauthorized` unless the other succeeds, never
    anonymous (`NewFailOnError`). A request with no credentials at all is `system:anonymous`,
    as with the API server's default `--anonymous-auth=true`: it may read `PUBLIC_PATHS`, and
    anything else is a 403 (a resource's from RBAC, in `authorize`; a path's here).
    """

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self._app = app
        self._authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        supplied = b""
        for name, value in scope.get("headers", []):
            # The scheme is case-insensitive, as the API server reads it (bearertoken.go:
            # `strings.ToLower(parts[0]) != "bearer"`); the kubernetes package's in-cluster
            # loader sends "bearer <token>".
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                supplied = value[7:].strip()
        certificate = scope.get(CLIENT_CERT_SCOPE_KEY)
        user = None
        if certificate is not None and certificate.verified:
            user = certificate_user(certificate)
        if user is None and supplied:
            user = self._authenticator.user(supplied)
        failed = supplied or (certificate is not None and not certificate.verified)
        if user is None and failed:
            error = ApiError(401, "Unauthorized", "Unauthorized")
            await JSONResponse(error.status(), status_code=error.code)(scope, receive, send)
            return
        if user is None:
            user = ANONYMOUS
            path = scope.get("path", "")
            if path not in PUBLIC_PATHS and not is_resource_path(path):
                error = ApiError(
                    403,
                    "Forbidden",
                    f'forbidden: User "{user.name}" cannot {scope["method"].lower()} path "{path}"',
                    {},
                )
                await JSONResponse(error.status(), status_code=error.code)(scope, receive, send)
                return
        scope[USER_SCOPE_KEY] = user
        await self._app(scope, receive, send)


def is_resource_path(path: str) -> bool:
    """Whether a path names a resource (`/api/v1/RESOURCE...`, `/apis/GROUP/VERSION/RESOURCE...`)
    rather than discovery or another path, as the API server's RequestInfo tells them apart."""
    parts = path.strip("/").split("/")
    return (parts[0] == "api" and len(parts) >= 3) or (parts[0] == "apis" and len(parts) >= 4)


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


def bound_rules(store: Store, user: User, namespace: str) -> list[JSON]:
    """The rules of every Role bound to the user's ServiceAccount in `namespace`."""
    if user.service_account is None:
        return []
    sa_namespace, sa_name = user.service_account
    rules: list[JSON] = []
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
        if role is not None:
            rules.extend(rule for rule in role.get("rules") or [] if isinstance(rule, dict))
    return rules


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
    if namespace and any(
        _rule_allows(rule, verb, group, resource, name)
        for rule in bound_rules(store, user, namespace)
    ):
        return
    # As `apierrors.NewForbidden` over the authorizer's attributes: the group-qualified
    # resource (no subresource) and the name, then the attributes (with the subresource).
    plural = resource.split("/")[0]
    qualified = f"{plural}.{group}" if group else plural
    subject = f'{qualified} "{name}"' if name else qualified
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    raise ApiError(
        403,
        "Forbidden",
        f'{subject} is forbidden: User "{user.name}" cannot {verb} resource "{resource}" '
        f'in API group "{group}"{where}',
        {"name": name or "", "group": group, "kind": plural},
    )
