"""Diameter and Gy/Ro metrics: requests, answers, MSCC outcomes, peers, RAR/ASR.

Declared here, fed by the protocol's observer hooks (:class:`protocol.connection.Observer`)
and by :mod:`ocs.gy`. Labels stay bounded: ``peer`` is a configured Origin-Host
(``diameter.allowed_peers``) or ``"other"``; ``request_type`` one of
:data:`REQUEST_TYPES`; ``service`` one of :data:`SERVICES`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: CC-Request-Type names (RFC 8506 §8.3), and "none" for requests other than CCR.
REQUEST_TYPES = ("initial", "update", "terminate", "event", "none")
#: Service names of the Service-Context-Ids we charge, and "other".
SERVICES = ("data", "voice", "sms", "other")
#: Units of grants and usage, by service kind.
UNITS = ("octets", "seconds", "events")
#: Peer label of a peer that is not in ``diameter.allowed_peers`` (or when that is empty).
OTHER_PEER = "other"
#: Result-Codes pre-created at 0 for every CCR series, so that the first 5030 shows as a rise.
KNOWN_RESULT_CODES = (
    2001, 3001, 3002, 3004, 3007, 3008, 3009, 4010, 4011, 4012, 5002, 5003, 5004,
    5005, 5009, 5012, 5014, 5030, 5031,
)  # fmt: skip
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
