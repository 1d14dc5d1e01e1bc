"""Redis metrics: command latency, errors, reconnects, reachability, the private server.

``client`` is ``"charging"`` (the hot path's :class:`quota_engine.store.redis_link.RedisLink`)
or ``"general"`` (the redis-py client of everything else). :meth:`RedisMetrics.client`
gives each client its :class:`~quota_engine.store.redis_observer.RedisObserver`; both
feed one :class:`RedisState` (``ocs_redis_up``), which ``/readyz`` reads instead of
sending a PING per probe.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from quota_engine.store.redis_observer import ErrorKind

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

        self.state = RedisState(self.up)

    def client(self, name: str) -> ClientObserver:
        """The observer of client ``name`` (one of :data:`CLIENTS`)."""
        if name not in CLIENTS:
            raise ValueError(f"unknown Redis client {name!r}")
        return ClientObserver(self, name)

    def embedded_restarted(self) -> None:
        """The private redis-server died and was started again."""
        self.embedded_restarts.inc()


class RedisState:
    """Whether Redis answers, from the outcome of the calls the clients really make (and
    the node's periodic PING): up after any answer, down after a call that timed out or
    lost its connection. Feeds ``ocs_redis_up``; starts up (the node starts only once
    Redis answered its first PING)."""

    __slots__ = ("_gauge", "problem", "since", "up")

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge
        self.up = True
        self.problem: str | None = None
        """Why Redis is down (``timeout`` or ``connection``), None while up."""
        self.since = time.monotonic()
        gauge.set(1)

    def answered(self) -> None:
        if not self.up:
            self.up, self.problem, self.since = True, None, time.monotonic()
            self._gauge.set(1)

    def failed(self, kind: ErrorKind) -> None:
        if kind == "response":
            return  # Redis answered (with an error reply): it is up
        if self.up or self.problem != kind:
            self.up, self.problem, self.since = False, kind, time.monotonic()
            self._gauge.set(0)


class ClientObserver:
    """One client's metrics (children bound once: ``labels()`` is not free) and the
    shared :class:`RedisState`; a :class:`~quota_engine.store.redis_observer.RedisObserver`."""

    __slots__ = ("_duration", "_errors", "_reconnects", "_state")

    def __init__(self, metrics: RedisMetrics, client: str) -> None:
        self._duration = metrics.command_duration.labels(client=client)
        self._errors = {
            kind: metrics.errors.labels(client=client, kind=kind) for kind in ERROR_KINDS
        }
        self._reconnects = metrics.reconnects.labels(client=client)
        self._state = metrics.state

    def answered(self, seconds: float) -> None:
        self._duration.observe(seconds)
        state = self._state
        if not state.up:
            state.answered()

    def failed(self, kind: ErrorKind) -> None:
        self._errors[kind].inc()
        self._state.failed(kind)

    def reconnected(self) -> None:
        self._reconnects.inc()
