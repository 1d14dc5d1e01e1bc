"""Bearer tokens of the management API: who may call which ``/v1`` route.

The configuration (``http.tokens``, ``OCS_HTTP_TOKENS``) holds the SHA-256 hex digest
of each token with its role. A request's ``Authorization: Bearer <token>`` is hashed and
compared with EVERY configured digest in constant time (no early exit), so neither the
comparison nor the loop tells how close a guess was. Roles: ``admin`` may do
everything, ``viewer`` only what the route table marks ``viewer`` (reads). Without a
valid token every ``/v1`` route answers 401 (before 404 or 405, so unauthenticated
callers learn nothing about the routes); with a token whose role is too low, 403.

Tokens are never logged or echoed: not the header, not its digest.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from ocs.config import ApiToken
from ocs.logs import log_event, mask_identity

from .errors import ApiError, describe

__all__ = ["API_PREFIX", "REALM", "RANK", "TOKENS_KEY", "auth_middleware", "role_of_token"]

API_PREFIX = "/v1"
REALM = 'Bearer realm="ocs-api"'
RANK = {"viewer": 1, "admin": 2}

TOKENS_KEY: web.AppKey[tuple[ApiToken, ...]] = web.AppKey("api_tokens")
ROLE_LOOKUP_KEY = web.AppKey("api_route_roles", dict)

_log = logging.getLogger("ocs.api")
_NO_MATCH = "0" * 64  # compared against when no token is configured, to keep timing flat


def role_of_token(header: str | None, tokens: Sequence[ApiToken]) -> str | None:
    """The highest role of the tokens whose digest matches the bearer token, or None."""
    scheme, _, given = (header or "").partition(" ")
    token = given.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest().encode()
    best: str | None = None
    for item in tokens or (ApiToken(_NO_MATCH, "viewer"),):
        matched = hmac.compare_digest(digest, item.sha256.encode())
        if matched and item.sha256 != _NO_MATCH and RANK[item.role] > RANK.get(best or "", 0):
            best = item.role
    return best


def _required_role(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    if resource is None:
        return "viewer"  # no such route: any valid token, then 404/405
    roles: dict[tuple[str, str], str] = request.app.get(ROLE_LOOKUP_KEY, {})
    return roles.get((route.method, resource.canonical), "admin")


def is_api_path(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if not is_api_path(request.path):
        return await handler(request)
    tokens = request.app.get(TOKENS_KEY) or ()
    role = role_of_token(request.headers.get("Authorization"), tokens)
    if role is None:
        given = "Authorization" in request.headers
        raise ApiError(
            401,
            "a valid bearer token is required" if given else "missing bearer token",
            headers={"WWW-Authenticate": REALM + (', error="invalid_token"' if given else "")},
        )
    needed = _required_role(request)
    if RANK[role] < RANK[needed]:
        _audit(request, role, 403)
        raise ApiError(403, f"this token's role ({role}) may not do this; it needs {needed}")
    if request.method in ("GET", "HEAD"):
        return await handler(request)
    try:
        response = await handler(request)
    except Exception as exc:
        _audit(request, role, describe(exc)[0])
        raise
    _audit(request, role, response.status)
    return response


def _audit(request: web.Request, role: str, status: int) -> None:
    """One log event per write and per refused request of a known token: the route (its
    pattern: no identity in clear), the account id masked to its last 4 characters
    (ocs.logs.mask_identity), the role and the status. Never the
    token."""
    resource = request.match_info.route.resource
    log_event(
        _log,
        "api_write",
        method=request.method,
        route=resource.canonical if resource is not None else "-",
        account=mask_identity(request.match_info.get("account_id") or "") or None,
        role=role,
        status=status,
    )
