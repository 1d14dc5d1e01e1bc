"""HTTP server metrics: requests by route template, connections, timeouts.

``route`` is the route's template (``/v1/accounts/{account_id}``), never the path
as sent; requests that match no route count as ``"unmatched"``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: HTTP latency buckets in seconds, 1 ms to 10 s.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


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
        for kind in ("idle", "request"):
            self.timeouts.labels(kind=kind)
