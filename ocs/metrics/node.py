"""Node metrics: sampled sessions and reservations, the sweeper, the catalog, the event
loop and the garbage collector, readiness."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
            "Version of the catalog the node rates with.",
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
