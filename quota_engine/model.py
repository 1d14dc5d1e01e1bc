"""What the quota engine is asked and what it answers, in charging terms only.

``ocs.gy.application`` translates a Credit-Control-Request into a :class:`ChargingRequest` and a
:class:`ChargingResult` back into a CCA; nothing here knows an AVP or a Result-Code.
Outcomes are enums; ``ocs.gy.application`` maps each one to its Result-Code in one table.

Units are integers of the service's unit type (octets, seconds, events); money is
integer micro-units.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class RequestType(enum.Enum):
    INITIAL = "initial"
    UPDATE = "update"
    TERMINATE = "terminate"
    EVENT = "event"


class EventAction(enum.Enum):
    """What a one-off request (CCR-Event) asks for (RFC 8506 Requested-Action)."""

    DIRECT_DEBITING = "direct_debiting"
    REFUND_ACCOUNT = "refund_account"
    CHECK_BALANCE = "check_balance"
    PRICE_ENQUIRY = "price_enquiry"


class Outcome(enum.Enum):
    """The verdict for a whole request or for one service (rating group) in it."""

    OK = "ok"
    UNKNOWN_SUBSCRIBER = "unknown_subscriber"  # no account for any identity
    SERVICE_DENIED = "service_denied"  # account barred or suspended
    NOT_APPLICABLE = "not_applicable"  # zero-rated: credit control does not apply
    CREDIT_LIMIT_REACHED = "credit_limit_reached"  # nothing left to grant
    NO_TARIFF = "no_tariff"  # no service or no rate for it in the plan
    OUT_OF_ORDER = "out_of_order"  # request number older than the session's last
    UNKNOWN_SESSION = "unknown_session"  # update for a session that does not exist
    INSUFFICIENT_BALANCE = "insufficient_balance"  # check-balance: not enough


class Unit(enum.Enum):
    OCTETS = "octets"
    SECONDS = "seconds"
    EVENTS = "events"


@dataclass(slots=True)
class ServiceUsage:
    """One service of a request: a Multiple-Services-Credit-Control, or the
    single-service request itself when the CCR carries no MSCC (then both ids are None).

    ``requested`` is None when no units were requested (no RSU), 0 when an empty RSU
    asks the server to decide (centralised unit determination), else the amount.
    ``used`` is the sum of the reported Used-Service-Units for the service's unit type
    (time and volume may arrive in separate USUs; the handler picks the relevant one).
    """

    rating_group: int | None = None
    service_identifier: int | None = None
    requested: int | None = None
    used: int = 0
    reporting_reason: int | None = None
    final: bool = False  # this service is ending (reporting reason FINAL)
    used_before_change: int | None = None
    """Of ``used``, the units the client reported as used before a tariff change
    (RFC 8506 Tariff-Change-Usage UNITS_BEFORE_TARIFF_CHANGE); None: no USU said so."""
    used_after_change: int | None = None
    """Of ``used``, the units reported as used after it (UNITS_AFTER_TARIFF_CHANGE);
    None: no USU said so. What neither counts is indeterminate (UNITS_INDETERMINATE,
    or no Tariff-Change-Usage)."""


@dataclass(slots=True)
class ChargingRequest:
    session_id: str
    request_type: RequestType
    request_number: int
    identities: list[str]  # canonical, see quota_engine.accounts.model.identity(); first match wins
    service_context: str
    services: list[ServiceUsage]
    timestamp: int  # Event-Timestamp or arrival time, Unix seconds
    peer: str = ""  # Origin-Host of the network element that owns the session
    action: EventAction | None = None  # for EVENT requests
    destination: str | None = None  # called party, E.164 digits (voice, SMS)
    visited_mcc_mnc: str | None = None  # 3GPP-SGSN-MCC-MNC when roaming
    apn: str | None = None
    termination_cause: int | None = None


@dataclass(slots=True)
class ServiceGrant:
    """The answer for one service."""

    rating_group: int | None
    service_identifier: int | None
    outcome: Outcome
    unit: Unit | None = None
    granted: int = 0  # units granted (whole increments)
    validity_time: int | None = None  # seconds
    quota_threshold: int | None = None  # units left when the client should re-ask
    quota_holding_time: int | None = None  # seconds
    final_unit: bool = False  # this grant is the last one the balance affords
    final_action: str | None = None  # "terminate" or "redirect"
    redirect_address: str | None = None
    cost: int = 0  # micro-units: price of the request (price enquiry, direct debit)
    tariff_time_change: int | None = None  # Unix s: the rate changes inside the grant


@dataclass(slots=True)
class ChargingResult:
    outcome: Outcome
    services: list[ServiceGrant] = field(default_factory=list)
    account_id: str | None = None
    currency: str | None = None
    balance: int | None = None  # micro-units available, for check-balance
    cost: int = 0  # total price (price enquiry) or total debit (event)
    message: str | None = None  # human-readable detail for Error-Message
