"""Node metrics: sampled sessions and reservations, the sweeper, the catalog, the event
loop and the garbage collector, readiness.

Fed by :mod:`ocs.node_monitor` (the sample of ``ocs:open:{P}``, event-loop lag, GC
pauses), by the sweeper (:class:`~quota_engine.charging.observer.SweeperObserver`,
implemented here) and by :class:`ocs.catalog_holder.CatalogHolder` (its observer).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from quota_engine.charging.observer import RoundOutcome
from quota_engine.store.open_counts import SERVICES, UNITS, OpenCounts

#: Event-loop lag and GC pause buckets in seconds, 0.1 ms to 1 s.
PAUSE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
#: Sweeper round durations in seconds, 1 ms to 10 s.
ROUND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class NodeMetrics:
    """Sampled state and the node's own health."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sessions_open = Gauge(
            "ocs_sessions_open",
            "Open charging sessions in Redis, by service (sampled every metrics.sample_interval).",
            ["service"],
            registry=registry,
        )
        self.reservations_money = Gauge(
            "ocs_reservations_money_micro_units",
            "Money reserved by open sessions, in micro-units of the currency, by service"
            " (sampled).",
            ["service"],
            registry=registry,
        )
        self.reservations_units = Gauge(
            "ocs_reservations_units",
            "Units reserved (granted, not yet reported) by open sessions, by service and"
            " unit (sampled).",
            ["service", "unit"],
            registry=registry,
        )
        self.sample_duration = Gauge(
            "ocs_sample_duration_seconds",
            "Time the last sample of sessions and reservations took.",
            registry=registry,
        )
        self.sweeper_rounds = Counter(
            "ocs_sweeper_rounds",
            "Rounds of the expired-session sweeper, by outcome (ok, failed).",
            ["outcome"],
            registry=registry,
        )
        self.sweeper_round_duration = Histogram(
            "ocs_sweeper_round_duration_seconds",
            "Time one sweeper round took.",
            buckets=ROUND_BUCKETS,
            registry=registry,
        )
        self.sweeper_settled = Counter(
            "ocs_sweeper_settled_sessions",
            "Expired sessions the sweeper settled (usage committed, the rest released).",
            registry=registry,
        )
        self.catalog_version = Gauge(
            "ocs_catalog_active_version",
            "1 for the version (label) of the catalog the node rates with; the series of"
            " the version it rated with before is removed.",
            ["version"],
            registry=registry,
        )
        self.catalog_loaded = Gauge(
            "ocs_catalog_loaded_timestamp_seconds",
            "Unix time the node started rating with the active catalog.",
            registry=registry,
        )
        self.event_loop_lag = Histogram(
            "ocs_event_loop_lag_seconds",
            "How late the event loop ran a callback scheduled at a fixed interval.",
            buckets=PAUSE_BUCKETS,
            registry=registry,
        )
        self.gc_pause = Histogram(
            "ocs_gc_pause_seconds",
            "Pauses of the Python garbage collector, by generation.",
            ["generation"],
            buckets=PAUSE_BUCKETS,
            registry=registry,
        )
        self.ready = Gauge(
            "ocs_ready",
            "1 while the node is ready for traffic (/readyz answers 200), else 0.",
            registry=registry,
        )
        for outcome in ("ok", "failed"):
            self.sweeper_rounds.labels(outcome=outcome)
        for generation in ("0", "1", "2"):
            self.gc_pause.labels(generation=generation)
        for service in SERVICES:
            self.sessions_open.labels(service=service)
            self.reservations_money.labels(service=service)
            for unit in UNITS:
                self.reservations_units.labels(service=service, unit=unit)
        self._catalog_version: str | None = None

    # ------------------------------------------------------------------ feeding

    def sampled(self, counts: OpenCounts, seconds: float) -> None:
        """A sample of the open sessions and reservations (read in ``seconds``)."""
        for service, sessions in counts.sessions.items():
            self.sessions_open.labels(service=service).set(sessions)
        for service, money in counts.money.items():
            self.reservations_money.labels(service=service).set(money)
        for (service, unit), units in counts.units.items():
            self.reservations_units.labels(service=service, unit=unit).set(units)
        self.sample_duration.set(seconds)

    def sweeper_round(self, outcome: RoundOutcome, seconds: float, settled: int) -> None:
        """:class:`~quota_engine.charging.observer.SweeperObserver`: one round ended."""
        self.sweeper_rounds.labels(outcome=outcome).inc()
        self.sweeper_round_duration.observe(seconds)
        if settled:
            self.sweeper_settled.inc(settled)

    def catalog_activated(self, version: str, at: float) -> None:
        """The node rates with catalog ``version`` since ``at`` (Unix seconds)."""
        previous, self._catalog_version = self._catalog_version, version
        if previous is not None and previous != version:
            self.catalog_version.remove(previous)
        self.catalog_version.labels(version=version).set(1)
        self.catalog_loaded.set(at)

    def event_loop_lagged(self, seconds: float) -> None:
        """A callback scheduled at a fixed interval ran ``seconds`` late."""
        self.event_loop_lag.observe(max(seconds, 0.0))

    def gc_paused(self, generation: int, seconds: float) -> None:
        """A collection of ``generation`` (0, 1, 2) took ``seconds``."""
        label = str(generation) if 0 <= generation <= 2 else "2"
        self.gc_pause.labels(generation=label).observe(seconds)
