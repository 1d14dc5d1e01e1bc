"""HTTP request metrics: a middleware counting and timing every request the application
handles, by method, route template and status (``ocs_http_requests_total``,
``ocs_http_request_duration_seconds``).

Labels stay bounded whatever clients send: ``route`` is the matched route's template
(``/v1/accounts/{account_id}``), never the path, and ``"unmatched"`` for a request no
route matches (404, and 405 for a method the path has no route for); ``method`` is one
of :data:`METHODS`, anything else ``"other"``. The status is the one the client gets:
the error middleware's JSON error answer, or an ``HTTPException`` raised past it
(a redirect), or 500 for an exception no middleware turned into an answer.

It is the outermost middleware (:func:`ocs.api.app.create_app`), so the time includes
authentication and error rendering. Requests aiohttp's parser refuses before the
application (400 on a malformed request line) never reach it; they are logged by
:class:`ocs.api.serving.ServerLog`.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ocs.metrics.http import HttpMetrics

__all__ = ["METHODS", "UNMATCHED", "http_metrics_middleware", "route_label"]

#: Methods counted under their own name; any other is ``"other"``.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The route label of a request no route matched.
UNMATCHED = "unmatched"


def route_label(request: web.Request) -> str:
    """The template of the route ``request`` matched, or :data:`UNMATCHED`."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def http_metrics_middleware(metrics: HttpMetrics) -> Middleware:
    """The middleware feeding ``metrics``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = 499  # the client went away before its answer (nginx's convention)
            raise
        finally:
            method = request.method if request.method in METHODS else "other"
            metrics.observe_request(
                method, route_label(request), status, time.perf_counter() - started
            )

    return middleware
