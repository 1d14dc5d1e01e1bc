"""The aiohttp application: health, metrics and the management API, with JSON errors.

:func:`create_app` adds ``/livez`` (the process's event loop runs: no Redis call),
``/readyz`` (ready for traffic: 503 with the reasons while Redis does not answer or the
node drains), ``/healthz`` (the older check, a PING per probe), ``/metrics`` and, when
given the Redis
client, every ``/v1`` route of the one route table :data:`ocs.api.routes.ROUTES`.
Every error leaves through :func:`error_middleware` as ``{"error": {"status": ...,
"message": ..., "fields": [...]}}``; the exception-to-status mapping lives in
:func:`ocs.api.errors.describe` (plus :class:`HealthCheckFailed` here). A response
never carries a stack trace: unexpected exceptions are logged (with the trace) and
answered with a bare 500. Client mistakes (every 4xx) are logged as one WARNING event
``http_client_error`` without a trace; a request target longer than
:data:`ocs.api.serving.MAX_URL` is 414. ``/v1`` requests pass
:func:`ocs.api.auth.auth_middleware` (bearer tokens of ``http.tokens``); the access log
is off, so tokens are never logged.
"""

import asyncio
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis
from aiohttp import web

from ocs.api.auth import TOKENS_KEY, auth_middleware
from ocs.api.context import API_KEY, MAX_BODY, Api, Sessions, billing_context
from ocs.api.errors import describe, error_body
from ocs.api.observability import http_metrics_middleware
from ocs.api.routes import add_routes
from ocs.api.serving import MAX_URL
from ocs.config import Settings
from ocs.logs import log_event
from ocs.metrics import Metrics

#: An async callable naming each dependency and whether it is healthy.
HealthCheck = Callable[[], Awaitable[dict[str, bool]]]
#: A callable giving why the node is not ready for traffic (empty: ready); cheap, no I/O.
ReadinessCheck = Callable[[], list[str]]

SETTINGS_KEY = web.AppKey("settings", Settings)
METRICS_KEY = web.AppKey("metrics", Metrics)
HEALTH_KEY: web.AppKey[HealthCheck] = web.AppKey("health")
HEALTH_TIMEOUT_KEY = web.AppKey("health_timeout", float)
READINESS_KEY: web.AppKey[ReadinessCheck] = web.AppKey("readiness")

METRICS_REALM = 'Bearer realm="ocs-metrics"'

_log = logging.getLogger(__name__)


class HealthCheckFailed(Exception):
    """The health callable itself failed (raised or timed out)."""


__all__ = [
    "HEALTH_KEY",
    "HEALTH_TIMEOUT_KEY",
    "METRICS_KEY",
    "READINESS_KEY",
    "SETTINGS_KEY",
    "HealthCheck",
    "HealthCheckFailed",
    "ReadinessCheck",
    "create_app",
    "error_body",
    "error_middleware",
]


def _describe(exc: BaseException) -> tuple[int, str, list[tuple[str, str]], dict[str, str]]:
    if isinstance(exc, HealthCheckFailed):
        return 503, str(exc), [], {}
    return describe(exc)


_DIGITS = re.compile(r"[0-9]{5,}")


def _where(request: web.Request) -> dict[str, str]:
    """The route template of the request (``/v1/identities/{identity}``), or for an
    unmatched one its path with long digit runs masked: an MSISDN or IMSI in a URL must
    not reach the log in clear."""
    resource = request.match_info.route.resource
    if resource is not None:
        return {"route": resource.canonical}
    return {"path": _DIGITS.sub(lambda m: "*" * len(m.group()), request.path[:200])}


def _log_client_error(request: web.Request, status: int, fields: list[tuple[str, str]]) -> None:
    log_event(
        _log,
        "http_client_error",
        level=logging.WARNING,
        method=request.method,
        status=status,
        fields=[name for name, _ in fields],
        **_where(request),
    )


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        if len(request.raw_path) > MAX_URL:
            raise web.HTTPRequestURITooLong(text=f"the URL is longer than {MAX_URL} bytes")
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects and the like are not errors
            raise
        status, message, fields, headers = _describe(exc)
        if status < 500:
            _log_client_error(request, status, fields)
        return web.json_response(
            error_body(status, message, fields), status=status, headers=headers
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        status, message, fields, headers = _describe(exc)
        if status < 500:
            _log_client_error(request, status, fields)
        elif status == 503 and not isinstance(exc, HealthCheckFailed):
            # a dependency down (Redis, the billing database): one WARNING line per
            # request, no traceback, so an outage does not bury the log in traces
            log_event(
                _log,
                "http_dependency_unavailable",
                level=logging.WARNING,
                method=request.method,
                error=type(exc).__name__,
                **_where(request),
            )
        elif not isinstance(exc, HealthCheckFailed):
            log_event(
                _log,
                "http_unhandled_error",
                level=logging.ERROR,
                exc_info=exc,
                method=request.method,
                **_where(request),
            )
        return web.json_response(
            error_body(status, message, fields), status=status, headers=headers
        )
    return response


async def healthz_handler(request: web.Request) -> web.Response:
    """200 when every check is true, else 503 naming the failing ones."""
    check = request.app[HEALTH_KEY]
    try:
        async with asyncio.timeout(request.app[HEALTH_TIMEOUT_KEY]):
            checks = await check()
    except TimeoutError:
        raise HealthCheckFailed("health check timed out") from None
    except Exception as exc:
        log_event(_log, "health_check_error", level=logging.WARNING, exc_info=exc)
        raise HealthCheckFailed(f"health check failed: {type(exc).__name__}") from exc
    failing = sorted(name for name, ok in checks.items() if ok is not True)
    if failing:
        body = {"status": "fail", "checks": checks, "failing": failing}
        return web.json_response(body, status=503)
    return web.json_response({"status": "ok", "checks": checks})


async def livez_handler(request: web.Request) -> web.Response:
    """200 while the event loop runs (this answer is the proof); nothing else is asked,
    so a Redis outage never makes an orchestrator kill a node that would recover."""
    return web.json_response({"live": True})


async def readyz_handler(request: web.Request) -> web.Response:
    """200 ``{"ready": true, "reasons": []}`` when the node takes traffic, else 503 with
    the reasons (Redis not answering within ``redis.timeout``, draining). No Redis call:
    the state comes from the outcome of the node's real calls and its periodic PING."""
    reasons = request.app[READINESS_KEY]()
    return web.json_response(
        {"ready": not reasons, "reasons": reasons}, status=503 if reasons else 200
    )


def _ready() -> list[str]:
    return []


def _authorized(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # compare bytes: compare_digest refuses non-ASCII str
    return hmac.compare_digest(given.strip().encode(), token.encode())


async def metrics_handler(request: web.Request) -> web.Response:
    """Prometheus exposition; bearer token required when ``http.metrics_token`` is set."""
    token = request.app[SETTINGS_KEY].http_metrics_token
    if token is not None and not _authorized(request, token):
        raise web.HTTPUnauthorized(
            text="missing or wrong bearer token", headers={"WWW-Authenticate": METRICS_REALM}
        )
    body, content_type = request.app[METRICS_KEY].render(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


def create_app(
    settings: Settings,
    metrics: Metrics,
    health: HealthCheck,
    *,
    store: aioredis.Redis | None = None,
    sessions: Sessions | None = None,
    health_timeout: float = 5.0,
    readiness: ReadinessCheck = _ready,
) -> web.Application:
    """The HTTP application; ``health`` is awaited (at most ``health_timeout`` s) per
    /healthz, ``readiness`` called per /readyz (default: always ready).

    With ``store`` (a bytes-mode Redis client) the management API is served under /v1;
    ``sessions`` (the charging engine) lists open sessions and forgets identities
    detached through the API. Without it, /v1 answers 401 or 404. With it, the billing
    database of ``settings.billing_database_url`` serves the customer bill routes
    (:class:`ocs.api.context.BillingDatabase`: opened on first use, closed with the
    application).
    """
    middlewares = [http_metrics_middleware(metrics.http), error_middleware, auth_middleware]
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY)
    app[SETTINGS_KEY] = settings
    app[METRICS_KEY] = metrics
    app[HEALTH_KEY] = health
    app[HEALTH_TIMEOUT_KEY] = health_timeout
    app[TOKENS_KEY] = settings.http_tokens
    app[READINESS_KEY] = readiness
    app.router.add_get("/livez", livez_handler)
    app.router.add_get("/readyz", readyz_handler)
    app.router.add_get("/healthz", healthz_handler)
    app.router.add_get("/metrics", metrics_handler)
    if store is not None:
        app[API_KEY] = Api(store, sessions, Path(settings.records_directory))
        app.cleanup_ctx.append(billing_context(settings))
        add_routes(app)
    return app
