"""Redis metrics: command latency, errors, reconnects, reachability, the private server.

``client`` is ``"charging"`` (the hot path's :class:`quota_engine.store.redis_link.RedisLink`)
or ``"general"`` (the redis-py client of everything else).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: The label values of ``client``.
CLIENTS = ("charging", "general")
#: The label values of ``kind`` in ``ocs_redis_errors_total``.
ERROR_KINDS = ("timeout", "connection", "response")
#: Redis round-trip buckets in seconds, 50 us to 1 s.
REDIS_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.0025, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip


class RedisMetrics:
    """The ``ocs_redis_*`` metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.command_duration = Histogram(
            "ocs_redis_command_duration_seconds",
            "Round trip of one Redis command or pipeline, by client.",
            ["client"],
            buckets=REDIS_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "ocs_redis_errors",
            "Redis calls that failed, by client and kind (timeout, connection, response).",
            ["client", "kind"],
            registry=registry,
        )
        self.reconnects = Counter(
            "ocs_redis_reconnects",
            "New connections opened after one to Redis was lost, by client.",
            ["client"],
            registry=registry,
        )
        self.up = Gauge(
            "ocs_redis_up",
            "1 while Redis answers within redis.timeout, else 0.",
            registry=registry,
        )
        self.embedded_restarts = Counter(
            "ocs_redis_embedded_restarts",
            "Restarts of the private redis-server after it died.",
            registry=registry,
        )
        for client in CLIENTS:
            self.command_duration.labels(client=client)
            self.reconnects.labels(client=client)
            for kind in ERROR_KINDS:
                self.errors.labels(client=client, kind=kind)
