"""Every Prometheus metric of the OCS, declared in this one package: the Diameter side in
:mod:`ocs.metrics.diameter`, Redis in :mod:`ocs.metrics.redis`, the HTTP server in
:mod:`ocs.metrics.http`, sampled state and the node's health in :mod:`ocs.metrics.node`,
the charging engine, records and billing here. docs/runbook.md lists them all.

Rules for adding one: ``ocs_`` prefix, base units (seconds, bytes), ``_total``
for counters, histograms for latencies, and bounded labels only. A label value
must come from a small closed set (a command name, a Result-Code, a peer state):
never a Session-Id, account, subscriber (MSISDN/IMSI) or peer address, since each
distinct value creates a time series that lives until the process exits.
To keep that true whatever callers pass, :meth:`Metrics.observe_answer` folds
unknown commands into ``"unknown"`` and impossible Result-Codes into ``"invalid"``.

:class:`Metrics` is also the charging engine's observer
(:class:`quota_engine.charging.observer.EngineObserver`): ``ocs serve`` passes it to
the engine, which reports batch sizes, cache hits and misses, stale reruns and
failed requests as counts.

It is the record exporter's observer too
(:class:`ocs.records.exporter.ExportObserver`, the ``ocs_records_*`` metrics), in
``ocs serve`` and in ``ocs export``.

Each :class:`Metrics` owns its own ``CollectorRegistry``; nothing is registered
in prometheus_client's global default registry, so two instances (two tests,
two servers in one process) never share counts.
"""

import platform
from collections.abc import Iterable
from importlib import metadata

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

from ocs.metrics.diameter import OTHER_PEER, DiameterMetrics, DiameterObserver
from ocs.metrics.http import HttpMetrics
from ocs.metrics.node import NodeMetrics
from ocs.metrics.redis import RedisMetrics
from ocs.records.writer import SealedSegment

#: Commands with their own label value; anything else is counted as "unknown".
COMMANDS = frozenset({"CER", "DWR", "DPR", "CCR", "RAR", "ASR"})
#: The charging engine's caches, the label values of ``ocs_charging_cache_lookups_total``.
CACHES = ("identity", "account")
#: Requests per charging batch: 1 to 1024 in powers of two.
BATCH_BUCKETS = tuple(float(2**n) for n in range(11))
#: fsync latency buckets in seconds, 50 us to 5 s (disks differ by orders of magnitude).
FSYNC_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0,
)  # fmt: skip


def package_version() -> str:
    """The installed version of the ``ocs`` distribution, or ``"0+unknown"``."""
    try:
        return metadata.version("ocs")
    except metadata.PackageNotFoundError:
        return "0+unknown"


#: Outcomes of an invoice in a bill run, the label values of ``ocs_bill_run_invoices_total``.
BILL_RUN_OUTCOMES = ("created", "refreshed", "finalized", "failed")
#: Invoice states, the label values of ``ocs_invoices``.
INVOICE_STATES = ("draft", "final", "void")
#: What a delivery step did with an invoice's delivery (ocs.billing.delivery.run).
DELIVERY_OUTCOMES = ("sent", "printed", "retrying", "failed", "interrupted")


class BillingMetrics:
    """The bill run's metrics, in the registry given: ``ocs serve``'s (its scheduled bill
    run) or a registry of its own written to a file (``ocs bill-run --metrics-file``, for
    node_exporter's textfile collector)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.bill_run_duration = Gauge(
            "ocs_bill_run_duration_seconds",
            "Wall time of the last bill run.",
            registry=registry,
        )
        self.bill_run_last_success = Gauge(
            "ocs_bill_run_last_success_timestamp_seconds",
            "Unix time the last bill run without errors ended.",
            registry=registry,
        )
        self.bill_run_invoices = Counter(
            "ocs_bill_run_invoices_total",
            "Invoices handled by bill runs: created, drafts refreshed, finalised, and"
            " invoice accounts that could not be billed (failed).",
            ["outcome"],
            registry=registry,
        )
        self.bill_run_records = Counter(
            "ocs_bill_run_records_total",
            "Rated records put on invoices by bill runs (late ones included).",
            registry=registry,
        )
        self.invoices = Gauge(
            "ocs_invoices",
            "Invoices in the billing database by state, as the last bill run left them.",
            ["state"],
            registry=registry,
        )
        self.deliveries = Counter(
            "ocs_invoice_deliveries_total",
            "Invoice deliveries by what the delivery step did: sent (e-mail accepted),"
            " printed (in a print batch), retrying (a temporary failure), failed,"
            " interrupted (left sending by a crash).",
            ["outcome"],
            registry=registry,
        )
        self.deliveries_waiting = Gauge(
            "ocs_invoice_deliveries_waiting",
            "Deliveries due that the last delivery step did not attempt (no SMTP server or"
            " print directory configured, or the SMTP server failed).",
            registry=registry,
        )
        self.delivery_last_success = Gauge(
            "ocs_invoice_delivery_last_success_timestamp_seconds",
            "Unix time the last delivery step without an SMTP or print directory error ended.",
            registry=registry,
        )
        for outcome in BILL_RUN_OUTCOMES:
            self.bill_run_invoices.labels(outcome)
        for state in INVOICE_STATES:
            self.invoices.labels(state)
        for outcome in DELIVERY_OUTCOMES:
            self.deliveries.labels(outcome)

    def bill_run(
        self,
        *,
        seconds: float,
        ended_at: float,
        outcomes: dict[str, int],
        records: int,
        states: dict[str, int],
        ok: bool,
    ) -> None:
        self.bill_run_duration.set(seconds)
        if ok:
            self.bill_run_last_success.set(ended_at)
        for outcome, count in outcomes.items():
            if outcome in BILL_RUN_OUTCOMES and count:
                self.bill_run_invoices.labels(outcome).inc(count)
        self.bill_run_records.inc(records)
        for state in INVOICE_STATES:
            self.invoices.labels(state).set(states.get(state, 0))

    def delivery(
        self, *, outcomes: dict[str, int], waiting: int, ended_at: float, ok: bool
    ) -> None:
        """One delivery step's counts (:class:`ocs.billing.delivery.run.DeliverySummary`)."""
        for outcome, count in outcomes.items():
            if outcome in DELIVERY_OUTCOMES and count:
                self.deliveries.labels(outcome).inc(count)
        self.deliveries_waiting.set(waiting)
        if ok:
            self.delivery_last_success.set(ended_at)


class Metrics:
    """The OCS metrics and the registry that holds them."""

    def __init__(self, version: str | None = None, *, process: bool = True) -> None:
        """``process`` adds the standard ``process_*`` metrics (CPU, memory, fds)."""
        self.registry = CollectorRegistry()
        self.build_info = Gauge(
            "ocs_build_info",
            "Always 1; the labels tell which OCS and Python are running.",
            ["version", "python"],
            registry=self.registry,
        )
        self.build_info.labels(
            version=version or package_version(), python=platform.python_version()
        ).set(1)
        self.diameter = DiameterMetrics(self.registry)
        for command in sorted(COMMANDS):  # known series exist from the start, at 0
            self.diameter.request_duration.labels(command=command, request_type="none")
        self.redis = RedisMetrics(self.registry)
        self.http = HttpMetrics(self.registry)
        self.node = NodeMetrics(self.registry)
        self.charging_batch_requests = Histogram(
            "ocs_charging_batch_requests",
            "Requests per charging batch (one engine call, one Redis round trip when cached).",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.charging_cache_lookups = Counter(
            "ocs_charging_cache_lookups",
            "Lookups in the charging engine's caches, by cache and result (hit or miss).",
            ["cache", "result"],
            registry=self.registry,
        )
        # children bound once: labels() costs a lock and a lookup, on every batch
        self._cache_children = {
            cache: (
                self.charging_cache_lookups.labels(cache=cache, result="hit"),
                self.charging_cache_lookups.labels(cache=cache, result="miss"),
            )
            for cache in CACHES
        }
        self.charging_stale_requests = Counter(
            "ocs_charging_stale_requests",
            "Requests rated from an outdated cached account, refused by their script "
            "and run again.",
            registry=self.registry,
        )
        self.charging_failed_requests = Counter(
            "ocs_charging_failed_requests",
            "Charging requests that failed in the engine (Redis or script errors).",
            registry=self.registry,
        )
        self.charging_capped_reports = Counter(
            "ocs_charging_capped_reports",
            "Usage reports cut by usage sanity (beyond the grant times the cap factor, or "
            "the unit's cap); the rest was not charged.",
            registry=self.registry,
        )
        self.charging_untrusted_timestamps = Counter(
            "ocs_charging_untrusted_timestamps",
            "Requests whose Event-Timestamp was further than [charging] timestamp_tolerance "
            "from server time, rated at server time.",
            registry=self.registry,
        )
        self._declare_records()
        if process:
            ProcessCollector(registry=self.registry)

    def _declare_records(self) -> None:
        self.records_written = Counter(
            "ocs_records_written",
            "Rated records the charging scripts appended to the partition streams this "
            "exporter owns (Redis 7 and later).",
            registry=self.registry,
        )
        self.records_exported = Counter(
            "ocs_records_exported",
            "Rated records made durable in segment files and removed from Redis.",
            registry=self.registry,
        )
        self.records_duplicates_dropped = Counter(
            "ocs_records_duplicates_dropped",
            "Stream entries given again after a crash that were durable in a segment "
            "already: acknowledged without being written twice.",
            registry=self.registry,
        )
        self.records_segments = Counter(
            "ocs_records_segments",
            "Segment files sealed (fsync'd and renamed).",
            registry=self.registry,
        )
        self.records_segment_bytes = Counter(
            "ocs_records_segment_bytes",
            "Bytes of the segment files sealed.",
            registry=self.registry,
        )
        self.records_fsync_duration = Histogram(
            "ocs_records_fsync_duration_seconds",
            "Time in fsync (the segment and its directory) per segment sealed.",
            buckets=FSYNC_BUCKETS,
            registry=self.registry,
        )
        self.records_export_lag_entries = Gauge(
            "ocs_records_export_lag_entries",
            "Rated records in Redis not exported yet (the exporter's partitions).",
            registry=self.registry,
        )
        self.records_export_lag_seconds = Gauge(
            "ocs_records_export_lag_seconds",
            "Age of the oldest rated record in Redis not exported yet (0 when none).",
            registry=self.registry,
        )
        self.records_partitions_over_cap = Gauge(
            "ocs_records_partitions_over_cap",
            "Partitions whose record stream holds more than records.stream_cap entries.",
            registry=self.registry,
        )
        self.records_export_partitions = Gauge(
            "ocs_records_export_partitions",
            "Partitions this exporter owns (exports) now.",
            registry=self.registry,
        )
        self.billing = BillingMetrics(self.registry)

    def observe_answer(self, command: str, result_code: int, seconds: float) -> None:
        """Count one answered request and record how long it took."""
        if seconds < 0:
            raise ValueError(f"duration must not be negative, got {seconds!r}")
        command = command if command in COMMANDS else "unknown"
        # Result-Codes are 1xxx-5xxx (RFC 6733 §7.1); anything else is a bug upstream
        code = str(result_code) if 1000 <= result_code <= 5999 else "invalid"
        self.diameter.requests.labels(
            command=command, request_type="none", result_code=code, peer=OTHER_PEER
        ).inc()
        self.diameter.request_duration.labels(command=command, request_type="none").observe(seconds)

    def diameter_observer(self, allowed_peers: Iterable[str] = ()) -> DiameterObserver:
        """The Diameter transport's observer (:class:`protocol.connection.Observer`):
        requests by command, CC-Request-Type, Result-Code and peer (each of
        ``allowed_peers``, ``diameter.allowed_peers``, or "other"), latency, requests in
        flight and peers by state."""
        return self.diameter.observer(allowed_peers)

    def peer_state_changed(self, old: str | None, new: str | None) -> None:
        """Move one peer connection from state ``old`` to ``new``.

        ``None`` means "no connection": ``(None, "WAIT_CER")`` for a new one,
        ``("CLOSED", None)`` for one that is gone. Pass the name of a
        ``protocol.peer_state.PeerState`` member so that the label set stays closed.
        """
        if old is not None:
            self.diameter.peers.labels(state=old).dec()
        if new is not None:
            self.diameter.peers.labels(state=new).inc()

    # the charging engine's observer (quota_engine.charging.observer.EngineObserver)

    def charge_batch(self, requests: int) -> None:
        self.charging_batch_requests.observe(requests)

    def cache_lookups(self, cache: str, hits: int, misses: int) -> None:
        children = self._cache_children.get(cache)
        if children is None:  # not a cache of ours: keep the label set closed
            children = (
                self.charging_cache_lookups.labels(cache="unknown", result="hit"),
                self.charging_cache_lookups.labels(cache="unknown", result="miss"),
            )
        if hits:
            children[0].inc(hits)
        if misses:
            children[1].inc(misses)

    def stale_requests(self, requests: int) -> None:
        self.charging_stale_requests.inc(requests)

    def failed_requests(self, requests: int) -> None:
        self.charging_failed_requests.inc(requests)

    def capped_reports(self, reports: int) -> None:
        self.charging_capped_reports.inc(reports)

    def untrusted_timestamps(self, requests: int) -> None:
        self.charging_untrusted_timestamps.inc(requests)

    # the record exporter's observer (ocs.records.exporter.ExportObserver)

    def exported(self, records: int) -> None:
        self.records_exported.inc(records)

    def duplicates(self, records: int) -> None:
        self.records_duplicates_dropped.inc(records)

    def segment_sealed(self, segment: SealedSegment) -> None:
        self.records_segments.inc()
        self.records_segment_bytes.inc(segment.size)
        self.records_fsync_duration.observe(segment.fsync_seconds)

    def export_backlog(self, entries: int, lag_seconds: float, over_cap: int, written: int) -> None:
        self.records_export_lag_entries.set(entries)
        self.records_export_lag_seconds.set(lag_seconds)
        self.records_partitions_over_cap.set(over_cap)
        if written:
            self.records_written.inc(written)

    def owned_partitions(self, partitions: int) -> None:
        self.records_export_partitions.set(partitions)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition body and its Content-Type.

        ``accept`` is the scraper's Accept header: OpenMetrics when it asks for
        it, else the Prometheus text format it names (0.0.4 when none).
        """
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
