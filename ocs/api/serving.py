"""How the HTTP server is run: request-line and header limits, and its log.

aiohttp parses the request line and headers before any handler or middleware runs, and
answers what it cannot parse itself (400, plain text) while logging the parse error at
ERROR with a traceback. A client that sends a URL of 70 KiB is not a server fault, so:

* the parser accepts request lines up to :data:`MAX_LINE` bytes, well above
  :data:`MAX_URL`; a URL between the two reaches the application, whose error
  middleware answers 414 with the JSON error body;
* what the parser still refuses (a longer line, a header over :data:`MAX_FIELD` bytes,
  bad syntax) is logged by :class:`ServerLog` as one WARNING event
  ``http_bad_request`` (status, error class, client address; no traceback, and no
  part of the request, which may carry a subscriber identity); anything else aiohttp
  reports stays an ERROR with its trace.

Connections are bounded and timed (issue 13: slow or idle clients must never take the
file descriptors Diameter needs). :class:`ApiRunner` serves the application through
:class:`LimitedServer`, whose :class:`LimitedRequestHandler` (one per connection):

* closes a connection at once, before reading a byte, when ``http.max_connections``
  are already open (``ocs_http_connections_refused_total``);
* closes a connection idle for ``http.keepalive_timeout`` seconds: open without a
  byte of a request since it was accepted or since its last response
  (``ocs_http_timeouts_total{kind="idle"}``);
* closes a connection whose request (line, headers and body) is not whole
  ``http.request_timeout`` seconds after its first byte came, however slowly the
  bytes trickle in (slowloris; ``ocs_http_timeouts_total{kind="request"}``). Only the
  client's sending counts: not the time the application takes to answer, nor the time
  aiohttp stops reading because the application has not consumed the body read so far
  (a large bulk upload processed as it streams).

``ocs serve`` and the tests' live server build their runner with :class:`ApiRunner`
(or ``web.AppRunner(app, **runner_options())`` for the parser limits alone).

The handler relies on aiohttp's ``RequestHandler`` internals (its keep-alive
callback ``_process_keepalive``, ``_waiter``, ``_messages``, the transport pause hooks
``_pause_transport_reading``/``_resume_transport_reading``); tests/ocs/api/
test_http_limits.py exercises each limit over real TCP against the installed aiohttp.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from ocs.config import Settings
from ocs.logs import log_event
from ocs.metrics.http import HttpMetrics

__all__ = [
    "MAX_FIELD",
    "MAX_LINE",
    "MAX_URL",
    "ApiRunner",
    "HttpLimits",
    "LimitedRequestHandler",
    "LimitedServer",
    "ServerLog",
    "runner_options",
]

MAX_URL = 8 * 1024
"""Longest request target (path and query, as sent) the API serves; 414 above."""
MAX_LINE = 64 * 1024
"""Longest request line aiohttp's parser reads; above, it answers 400 itself."""
MAX_FIELD = 8190
"""Longest header line (aiohttp's default); above, the parser answers 400."""

_log = logging.getLogger(__name__)


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger, with the client's parse errors demoted to a WARNING event.

    aiohttp calls ``logger.exception(...)`` for every error it answers itself; the
    exception of a request it could not parse is an ``HttpProcessingError`` with a 4xx
    code.
    """

    def __init__(self) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else None
        if isinstance(error, HttpProcessingError) and 400 <= error.code < 500:
            remote = args[0] if args else None
            log_event(
                _log,
                "http_bad_request",
                level=logging.WARNING,
                status=error.code,
                error=type(error).__name__,
                remote=str(remote) if remote is not None else None,
            )
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


def runner_options() -> dict[str, Any]:
    """Keyword arguments of ``web.AppRunner`` for the API: no access log (tokens are
    never logged), the parser limits above and :class:`ServerLog`."""
    return {
        "access_log": None,
        "logger": ServerLog(),
        "max_line_size": MAX_LINE,
        "max_field_size": MAX_FIELD,
    }


@dataclass
class HttpLimits:
    """The connection bound and timeouts of one HTTP server, and its open connections."""

    max_connections: int
    keepalive_timeout: float
    request_timeout: float
    metrics: HttpMetrics | None = None
    open: int = field(default=0, init=False)

    @classmethod
    def from_settings(cls, settings: Settings, metrics: HttpMetrics | None = None) -> HttpLimits:
        return cls(
            max_connections=settings.http_max_connections,
            keepalive_timeout=settings.http_keepalive_timeout,
            request_timeout=settings.http_request_timeout,
            metrics=metrics,
        )


class LimitedRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol with the bound and the two timeouts of
    :class:`HttpLimits` (see the module's docstring)."""

    def __init__(self, manager: Server, *, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(manager, keepalive_timeout=limits.keepalive_timeout, **kwargs)
        self._limits = limits
        self._counted = False
        # from a request's first byte until it is whole: its timer, or while this side
        # does not read (flow control) the seconds it has left
        self._receiving = False
        self._request_timer: asyncio.TimerHandle | None = None
        self._request_deadline = 0.0
        self._request_left: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        limits = self._limits
        if limits.open >= limits.max_connections:
            # refused before aiohttp sees it: no task, no timer, the descriptor freed now
            self._manager = None  # connection_lost() is then a no-op
            transport.close()
            if limits.metrics is not None:
                limits.metrics.connection_refused()
            return
        limits.open += 1
        self._counted = True
        if limits.metrics is not None:
            limits.metrics.connection_opened()
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._request_received()
        if self._counted:
            self._counted = False
            self._limits.open -= 1
            if self._limits.metrics is not None:
                self._limits.metrics.connection_closed()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._force_close or self._close:
            return
        if data and not self._receiving and self._payload_parser is None:
            # the first byte of a request: it has request_timeout to be whole
            self._receiving = True
            self._arm_request_timer(self._limits.request_timeout)
        queued = len(self._messages)
        super().data_received(data)
        if len(self._messages) > queued:
            # the newest request's line and headers are in; it is whole with its body
            _message, payload = self._messages[-1]
            payload.on_eof(self._request_received)

    def _arm_request_timer(self, delay: float) -> None:
        self._request_deadline = self._loop.time() + delay
        self._request_timer = self._loop.call_later(delay, self._request_timed_out)

    def _request_received(self) -> None:
        self._receiving = False
        self._request_left = None
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    # aiohttp stops reading the socket while the application has not consumed what was
    # read (a handler streaming a large body, e.g. bulk provisioning): that time is
    # ours, not the client's, so the request's clock stops with it.

    def _pause_transport_reading(self) -> None:
        super()._pause_transport_reading()
        if self._request_timer is not None:
            self._request_left = max(self._request_deadline - self._loop.time(), 0.0)
            self._request_timer.cancel()
            self._request_timer = None

    def _resume_transport_reading(self) -> None:
        super()._resume_transport_reading()
        if self._receiving and self._request_timer is None and self._request_left is not None:
            left, self._request_left = self._request_left, None
            self._arm_request_timer(left)

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if self._force_close or self.transport is None or not self._receiving:
            return
        if not self.transport.is_reading():  # paused by a path the hooks above missed
            self._arm_request_timer(self._limits.request_timeout)
            return
        if self._limits.metrics is not None:
            self._limits.metrics.timed_out("request")
        log_event(_log, "http_request_timeout", level=logging.DEBUG, peer=_peer(self))
        self.force_close()

    def _process_keepalive(self) -> None:
        # aiohttp's keep-alive callback, counted, and leaving a request that has begun
        # to arrive to its own timer
        self._keepalive_handle = None
        if self._force_close or not self._keepalive:
            return
        now = self._loop.time()
        close_time = self._next_keepalive_close_time
        if now < close_time:
            self._keepalive_handle = self._loop.call_at(close_time, self._process_keepalive)
            return
        if self._receiving:
            return
        if self._waiter is not None and not self._waiter.done():
            if self._limits.metrics is not None:
                self._limits.metrics.timed_out("idle")
            self.force_close()


def _peer(handler: RequestHandler) -> str | None:
    peer = handler.peername
    if isinstance(peer, tuple):
        return f"{peer[0]}:{peer[1]}"
    return peer


class LimitedServer(Server):
    """aiohttp's low-level server making :class:`LimitedRequestHandler` connections."""

    def __init__(self, *args: Any, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits

    def __call__(self) -> RequestHandler:
        return LimitedRequestHandler(self, limits=self.limits, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """``web.AppRunner`` of the API: :func:`runner_options`, and connections bounded and
    timed by ``settings`` (``http.max_connections``, ``http.keepalive_timeout``,
    ``http.request_timeout``), counted in ``metrics`` when given."""

    def __init__(
        self, app: web.Application, settings: Settings, metrics: HttpMetrics | None = None
    ) -> None:
        super().__init__(app, **runner_options())
        self.limits = HttpLimits.from_settings(settings, metrics)

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        # the application's request handler and factory, served by a LimitedServer
        return LimitedServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            limits=self.limits,
            **server._kwargs,
        )
