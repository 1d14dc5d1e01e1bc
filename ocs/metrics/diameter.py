"""Diameter and Gy/Ro metrics: requests, answers, MSCC outcomes, peers, RAR/ASR.

Declared here, fed by the protocol's observer hooks (:class:`protocol.connection.Observer`,
through :class:`DiameterObserver`) and by :mod:`ocs.gy` (:class:`DiameterMetrics` is its
:class:`ocs.gy.observer.GyObserver`). Labels stay bounded: ``peer`` is a configured
Origin-Host (``diameter.allowed_peers``) or ``"other"``; ``request_type`` one of
:data:`REQUEST_TYPES`; ``service`` one of :data:`SERVICES`; ``command`` one of
:data:`COMMAND_CODES`' names or ``"unknown"``; ``result_code`` a Result-Code between
1000 and 5999 or ``"invalid"``.

Every request answered passes here, so the label children are bound once and found
again by a dict lookup (``labels()`` takes a lock and builds a tuple each call).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from quota_engine.store.open_counts import SERVICES, UNITS

#: CC-Request-Type names (RFC 8506 §8.3), and "none" for requests other than CCR.
REQUEST_TYPES = ("initial", "update", "terminate", "event", "none")
#: Service names of the Service-Context-Ids we charge, and "other".
#: Peer label of a peer that is not in ``diameter.allowed_peers`` (or when that is empty).
OTHER_PEER = "other"
#: Command codes with their own ``command`` label value; any other is "unknown".
COMMAND_CODES = {257: "CER", 280: "DWR", 282: "DPR", 272: "CCR", 258: "RAR", 274: "ASR"}
CCR_CODE = 272
#: The request types of a CCR (the ones pre-created), without "none".
CCR_REQUEST_TYPES = REQUEST_TYPES[:4]
#: Result-Codes pre-created at 0 for every CCR series, so that the first 5030 shows as a rise.
KNOWN_RESULT_CODES = (
    2001, 3001, 3002, 3004, 3007, 3008, 3009, 4010, 4011, 4012, 5002, 5003, 5004,
    5005, 5009, 5012, 5014, 5030, 5031,
)  # fmt: skip
#: Result-Codes pre-created at 0 for every MSCC service series.
MSCC_RESULT_CODES = (2001, 4010, 4011, 4012, 5030, 5031)
#: Answers to RAR/ASR pre-created at 0 ("timeout": no answer came).
OUTGOING_RESULTS = ("2001", "5002", "timeout")
OUTGOING_COMMANDS = ("RAR", "ASR")
#: Distinct (command, kind, Result-Code, Origin-Host) keys :class:`DiameterObserver`
#: keeps bound; beyond that (many unlisted peers), the children are looked up each time.
MAX_BOUND_SERIES = 4096


def result_code_label(result_code: int | None) -> str:
    """A Result-Code as a label value: 1xxx-5xxx (RFC 6733 §7.1), "timeout" for None (no
    answer came to a request we sent), else "invalid"."""
    if result_code is None:
        return "timeout"
    return str(result_code) if 1000 <= result_code <= 5999 else "invalid"


#: Request latency buckets in seconds: 0.1 ms to 1 s, fine between 1 and 10 ms where
#: a healthy node's p99 lies.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.0025, 0.003, 0.004, 0.005,
    0.006, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip


class DiameterMetrics:
    """The ``ocs_diameter_*`` and ``ocs_charging_*_units_total`` metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "ocs_diameter_requests",
            "Diameter requests answered, by command, CC-Request-Type, Result-Code of the"
            " answer and peer (a configured Origin-Host or 'other').",
            ["command", "request_type", "result_code", "peer"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "ocs_diameter_request_duration_seconds",
            "Time from a request being decoded to its answer being written.",
            ["command", "request_type"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.inflight = Gauge(
            "ocs_diameter_inflight_requests",
            "Diameter requests decoded and not answered yet.",
            registry=registry,
        )
        self.peers = Gauge(
            "ocs_diameter_peers",
            "Diameter peer connections by state.",
            ["state"],
            registry=registry,
        )
        self.mscc = Counter(
            "ocs_diameter_mscc",
            "Multiple-Services-Credit-Control answers by service and their own Result-Code"
            " (a 2001 CCA may carry 4012 or 5031 for one rating group).",
            ["service", "result_code"],
            registry=registry,
        )
        self.outgoing_requests = Counter(
            "ocs_diameter_outgoing_requests",
            "Requests the OCS sent to peers (RAR, ASR).",
            ["command"],
            registry=registry,
        )
        self.outgoing_answers = Counter(
            "ocs_diameter_outgoing_answers",
            "Answers to the requests the OCS sent, by Result-Code ('timeout' when none came).",
            ["command", "result_code"],
            registry=registry,
        )
        self.granted_units = Counter(
            "ocs_charging_granted_units",
            "Units granted (Granted-Service-Unit), by service and unit.",
            ["service", "unit"],
            registry=registry,
        )
        self.used_units = Counter(
            "ocs_charging_used_units",
            "Units reported used (Used-Service-Unit) and charged, by service and unit.",
            ["service", "unit"],
            registry=registry,
        )
        # children bound once (the gy observer's calls are per MSCC, per answer)
        self._mscc_children = {
            (service, code): self.mscc.labels(service=service, result_code=str(code))
            for service in SERVICES
            for code in MSCC_RESULT_CODES
        }
        self._unit_children = {
            (service, unit): (
                self.granted_units.labels(service=service, unit=unit),
                self.used_units.labels(service=service, unit=unit),
            )
            for service in SERVICES
            for unit in UNITS
        }
        for command in OUTGOING_COMMANDS:
            self.outgoing_requests.labels(command=command)
            for result in OUTGOING_RESULTS:
                self.outgoing_answers.labels(command=command, result_code=result)

    # ocs.gy.observer.GyObserver: the application's MSCCs and units, the notifier's RAR/ASR

    def mscc_answered(self, service: str, result_code: int) -> None:
        child = self._mscc_children.get((service, result_code))
        if child is None:
            child = self.mscc.labels(
                service=service if service in SERVICES else "other",
                result_code=result_code_label(result_code),
            )
        child.inc()

    def units(self, service: str, unit: str, granted: int, used: int) -> None:
        children = self._unit_children.get((service, unit))
        if children is None:  # not one of ours: keep the label sets closed
            children = self._unit_children[
                (service if service in SERVICES else "other", unit if unit in UNITS else "events")
            ]
        if granted:
            children[0].inc(granted)
        if used:
            children[1].inc(used)

    def outgoing_request(self, command: str) -> None:
        command = command if command in OUTGOING_COMMANDS else "unknown"
        self.outgoing_requests.labels(command=command).inc()

    def outgoing_answer(self, command: str, result_code: int | None) -> None:
        command = command if command in OUTGOING_COMMANDS else "unknown"
        self.outgoing_answers.labels(
            command=command, result_code=result_code_label(result_code)
        ).inc()

    def observer(self, allowed_peers: Iterable[str]) -> DiameterObserver:
        """The protocol's observer (:class:`protocol.connection.Observer`) feeding these
        metrics, ``peer`` labelled by the configured ``allowed_peers``."""
        return DiameterObserver(self, allowed_peers)


class DiameterObserver:
    """Maps the transport's observer calls to the ``ocs_diameter_*`` series.

    The transport passes each answer's command code, Result-Code, the application's
    opaque ``kind`` (the Gy application's CC-Request-Type name) and the peer's
    Origin-Host; this folds them into bounded labels and keeps the resulting
    (counter, histogram) children by that raw key, so a request costs one dict lookup
    and two increments. The known CCR Result-Codes are pre-created at 0 for each request
    type and each peer label (each configured peer and "other").
    """

    __slots__ = ("_metrics", "_peer_labels", "_series", "_inflight")

    def __init__(self, metrics: DiameterMetrics, allowed_peers: Iterable[str]) -> None:
        self._metrics = metrics
        self._peer_labels = {peer: peer for peer in allowed_peers}
        self._series: dict[tuple[int, str | None, int, str | None], tuple[Counter, Histogram]] = {}
        self._inflight = metrics.inflight
        for command in COMMAND_CODES.values():
            metrics.request_duration.labels(command=command, request_type="none")
        for request_type in CCR_REQUEST_TYPES:
            metrics.request_duration.labels(command="CCR", request_type=request_type)
            for code in KNOWN_RESULT_CODES:
                for peer in self._peer_labels:
                    self._bind((CCR_CODE, request_type, code, peer))
                metrics.requests.labels(
                    command="CCR", request_type=request_type, result_code=str(code), peer=OTHER_PEER
                )

    def labels(
        self, command_code: int, kind: str | None, result_code: int, peer: str | None
    ) -> tuple[str, str, str, str]:
        """(command, request_type, result_code, peer) label values of one answer."""
        command = COMMAND_CODES.get(command_code, "unknown")
        request_type = kind if command == "CCR" and kind in CCR_REQUEST_TYPES else "none"
        peer_label = self._peer_labels.get(peer, OTHER_PEER) if peer is not None else OTHER_PEER
        return command, request_type, result_code_label(result_code), peer_label

    def _bind(self, key: tuple[int, str | None, int, str | None]) -> tuple[Counter, Histogram]:
        command, request_type, code, peer = self.labels(*key)
        metrics = self._metrics
        series = (
            metrics.requests.labels(
                command=command, request_type=request_type, result_code=code, peer=peer
            ),
            metrics.request_duration.labels(command=command, request_type=request_type),
        )
        if len(self._series) < MAX_BOUND_SERIES:
            self._series[key] = series
        return series

    # protocol.connection.Observer

    def answered(
        self,
        command_code: int,
        result_code: int,
        seconds: float,
        kind: str | None,
        peer: str | None,
    ) -> None:
        series = self._series.get((command_code, kind, result_code, peer))
        if series is None:
            series = self._bind((command_code, kind, result_code, peer))
        series[0].inc()
        series[1].observe(seconds)

    def inflight(self, requests: int) -> None:
        self._inflight.inc(requests)

    def peer_state_changed(self, old: str | None, new: str | None) -> None:
        peers = self._metrics.peers
        if old is not None:
            peers.labels(state=old).dec()
        if new is not None:
            peers.labels(state=new).inc()
