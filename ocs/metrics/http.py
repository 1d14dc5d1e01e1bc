"""HTTP server metrics: requests by route template, connections, timeouts.

``route`` is the route's template (``/v1/accounts/{account_id}``), never the path
as sent; requests that match no route count as ``"unmatched"``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: HTTP latency buckets in seconds, 1 ms to 10 s.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Why a connection was closed by a timeout: idle keep-alive, or a request too slow to come.
TIMEOUT_KINDS = ("idle", "request")


class HttpMetrics:
    """The ``ocs_http_*`` metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "ocs_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "ocs_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.connections = Gauge(
            "ocs_http_connections",
            "HTTP connections open.",
            registry=registry,
        )
        self.connections_refused = Counter(
            "ocs_http_connections_refused",
            "HTTP connections closed at once because http.max_connections were open.",
            registry=registry,
        )
        self.timeouts = Counter(
            "ocs_http_timeouts",
            "HTTP connections closed by a timeout: idle keep-alive or a request too slow.",
            ["kind"],
            registry=registry,
        )
        for kind in TIMEOUT_KINDS:
            self.timeouts.labels(kind=kind)
        self.connections.set(0)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered request; ``method`` and ``route`` already folded into their bounded
        sets by the caller (:mod:`ocs.api.observability`)."""
        self.requests.labels(method=method, route=route, status=str(status)).inc()
        self.request_duration.labels(method=method, route=route).observe(max(seconds, 0.0))

    def connection_opened(self) -> None:
        self.connections.inc()

    def connection_closed(self) -> None:
        self.connections.dec()

    def connection_refused(self) -> None:
        self.connections_refused.inc()

    def timed_out(self, kind: str) -> None:
        """A connection closed by its ``"idle"`` or ``"request"`` timeout."""
        self.timeouts.labels(kind=kind if kind in TIMEOUT_KINDS else "request").inc()
