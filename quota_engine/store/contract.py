"""The typed Python <-> Lua contract of the charging scripts: their KEYS, ARGV and answers.

Each charging script of ``lua/`` takes a few keys of one account and one argument (a
msgpack map with short keys, settle.lua two plain values) and answers a msgpack map.
This module is the one place that knows those shapes: the engine and the sweeper build
an argument object, take its :meth:`keys` and :meth:`argv` for the script call and
decode the answer with the script's decoder.

============  ==============  =================================  ============  ==============
script        arguments       one service (its encoder)          answer        decoder
============  ==============  =================================  ============  ==============
ccr.lua       CcrArgs         SessionService (wire)              ChargeAnswer  decode_ccr
event.lua     EventArgs       EventService (wire_event)          ChargeAnswer  decode_debit
refund.lua    RefundArgs      EventService (wire_refund)         ChargeAnswer  decode_debit
balance.lua   BalanceArgs     EventService (wire_balance)        ChargeAnswer  decode_balance
settle.lua    SettleArgs      -                                  SettleAnswer  decode_settle
============  ==============  =================================  ============  ==============

The services of the answers are decoded into the model's own
:class:`~quota_engine.model.ServiceGrant` (:data:`GRANT_WIRE`), and a price is a
:class:`ScriptPrice`. The deadline index the engine updates next to ccr.lua is
:mod:`quota_engine.store.deadlines`.

Every field names its wire key in its metadata (``sid``, ``rg``, ...; ``None``: the
field only names KEYS); the encoders (``wire()``) and decoders are written out by hand
all the same, because they run once per request and once per service on the hot path.
tests/quota_engine/store/test_contract.py checks encoders, decoders and metadata against
each other and against the contract header of each ``.lua`` file.

The fields the request scripts share are declared once (``_RequestArgs``: ccr.lua,
event.lua, refund.lua; ``_RatedRequestArgs``: ccr.lua, event.lua); each script's
``keys()`` and ``wire()`` stay its own, next to its header's KEYS and ARGV.

The argument and answer classes are not frozen: they are built once per call, where a
frozen dataclass costs six times as much to build. :class:`ScriptPrice`, built once per
distinct price and shared by many calls, is frozen and keeps its wire map.

The account scripts (put_bucket, credit, set_status, release_identity,
balance_action: plain ARGV values, a list for an answer) have their classes in the
last section, "the account scripts".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import msgpack

from quota_engine.model import Outcome, ServiceGrant, Unit
from quota_engine.store import keys
from quota_engine.store.limits import MAX_AMOUNT
from quota_engine.store.text import text

__all__ = [
    "GRANT_WIRE",
    "STALE",
    "BalanceArgs",
    "CcrArgs",
    "ChargeAnswer",
    "EventArgs",
    "EventService",
    "RatedService",
    "RatedWith",
    "RatingContext",
    "RefundArgs",
    "ScriptPrice",
    "SessionService",
    "SettleAnswer",
    "SettleArgs",
    "balance_answer",
    "ccr_answer",
    "debit_answer",
    "decode_balance",
    "decode_ccr",
    "decode_debit",
    "decode_settle",
    "pack",
    "settle_answer",
]

STALE: Final = "stale"
"""The outcome of a ccr.lua or event.lua call whose request was rated with an outdated
copy of the account (lib.lua ``rated_with_outdated``): nothing was written, the engine
rates the request again. Not an :class:`~quota_engine.model.Outcome`: it never leaves
the engine."""


def pack(value: Any) -> bytes:
    """msgpack for the scripts: Redis' cmsgpack knows no bin type, so bytes and str
    both go as str."""
    packed: bytes = msgpack.packb(value, use_bin_type=False)
    return packed


def _unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False)


def _wire(name: str | int | None) -> dict[str, str | int | None]:
    """A field's metadata: its key in the wire map (an int: its ARGV position;
    None: the field only names KEYS)."""
    return {"wire": name}


_UNITS: Final = {u.value: u for u in Unit}
_OUTCOMES: Final = {o.value: o for o in Outcome}

# ------------------------------------------------------------------ arguments


@dataclass(frozen=True, slots=True)
class ScriptPrice:
    """A price as the scripts take it (``p``): the four numbers of the linear formula
    (lib.lua ``charge``), a key that changes when the price does, and the rated
    record's price metadata, msgpack-encoded (a map the scripts splice into the
    record as is)."""

    first_increment: int = field(metadata=_wire("fi"))
    first_cost: int = field(metadata=_wire("fc"))
    next_increment: int = field(metadata=_wire("ni"))
    next_cost: int = field(metadata=_wire("nc"))
    key: str = field(metadata=_wire("key"))
    record_metadata: bytes = field(metadata=_wire("m"))
    _wire_map: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        wire_map = {
            "fi": self.first_increment,
            "fc": self.first_cost,
            "ni": self.next_increment,
            "nc": self.next_cost,
            "key": self.key,
            "m": self.record_metadata,
        }
        object.__setattr__(self, "_wire_map", wire_map)

    def wire(self) -> dict[str, Any]:
        """The wire map, built once (callers must not change it)."""
        return self._wire_map


class RatedWith(NamedTuple):
    """The account fields a request was rated with (``w``, a list on the wire); the
    scripts compare them with the account's before writing anything."""

    plan: str
    bill_cycle_day: str
    currency: str


@dataclass(slots=True)
class RatingContext:
    """The inputs of rating that a session remembers (``rc``; docs/diameter.md, "What
    a CCR may omit"): many network elements send Service-Information only in
    CCR-Initial. None: not known. A request's own value replaces the remembered one
    from that request on (:meth:`over`); ccr.lua keeps the result in the session and
    refuses (``stale``, with the session's context) a request rated with another.
    Not frozen (built per request); shared values must not be changed."""

    destination: str | None = field(default=None, metadata=_wire("d"))
    """Called party or SMS recipient, E.164 digits."""
    visited_mcc_mnc: str | None = field(default=None, metadata=_wire("v"))
    """3GPP-SGSN-MCC-MNC: the network the subscriber is in (roaming zone)."""
    apn: str | None = field(default=None, metadata=_wire("a"))
    """Called-Station-Id (APN)."""

    def over(self, base: RatingContext) -> RatingContext:
        """This context where it knows a value, else ``base``'s."""
        destination, visited, apn = self.destination, self.visited_mcc_mnc, self.apn
        if destination is None and visited is None and apn is None:
            return base
        return RatingContext(
            base.destination if destination is None else destination,
            base.visited_mcc_mnc if visited is None else visited,
            base.apn if apn is None else apn,
        )

    def wire(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.destination is not None:
            out["d"] = self.destination
        if self.visited_mcc_mnc is not None:
            out["v"] = self.visited_mcc_mnc
        if self.apn is not None:
            out["a"] = self.apn
        return out

    @classmethod
    def from_wire(cls, value: object) -> RatingContext:
        """The context of a wire map (an empty one may come as a list: cmsgpack
        packs an empty table as an array)."""
        if not isinstance(value, Mapping):
            return cls()
        return cls(value.get("d"), value.get("v"), value.get("a"))


@dataclass(slots=True)
class RatedService:
    """What rating made of one service of a request; the part every charging script
    takes. ``key`` is :func:`quota_engine.store.records.rg_key` of the two ids."""

    key: str = field(metadata=_wire("k"))
    rating_group: int | None = field(metadata=_wire("rg"))
    service_identifier: int | None = field(metadata=_wire("si"))
    service: str | None = field(default=None, metadata=_wire("sv"))
    """The catalog's service id (None: no service for these ids)."""
    unit: str | None = field(default=None, metadata=_wire("unit"))
    preset: str | None = field(default=None, metadata=_wire("st"))
    """An outcome decided before the script runs (e.g. ``"no_tariff"``)."""
    price: ScriptPrice | None = field(default=None, metadata=_wire("p"))
    zero_rated: bool = field(default=False, metadata=_wire("zr"))
    usage_range: tuple[int, int] | None = field(default=None, metadata=_wire("ur"))
    """``(from, until)`` of period usage a tier price holds for (until -1: no bound)."""


@dataclass(slots=True)
class SessionService(RatedService):
    """One service (MSCC) of a session request, for ccr.lua. The grant fields
    (``validity_time`` to ``redirect_address``) go with ``requested`` only."""

    used: int = field(default=0, metadata=_wire("used"))
    final: bool = field(default=False, metadata=_wire("final"))
    reported: int | None = field(default=None, metadata=_wire("rep"))
    """The units reported, when more than ``used`` (already cut to the unit's cap;
    at most 2**53 - 1): for the record's ``capped_from``. None: ``used`` is all."""
    used_before: int | None = field(default=None, metadata=_wire("ub"))
    """Of ``used``, the units to commit at the stored price when the rate changed
    inside the report (the rest at ``price``); None: no rate change seen."""
    change_at: int | None = field(default=None, metadata=_wire("tc"))
    """With ``used_before`` from the clock: the instant (Unix s) of the rate change;
    ccr.lua splits only a grant priced before it. None: the client's own split."""
    requested: int | None = field(default=None, metadata=_wire("req"))
    """Units wanted, not rounded (ccr.lua rounds with the continuation flag); None: no
    new grant."""
    validity_time: int | None = field(default=None, metadata=_wire("vt"))
    tariff_time_change: int | None = field(default=None, metadata=_wire("ttc"))
    """The instant (Unix s) the rate changes inside the grant, for the CCA (with
    ``requested``); None: it does not."""
    threshold_percent: int | None = field(default=None, metadata=_wire("thr"))
    holding_time: int | None = field(default=None, metadata=_wire("qht"))
    final_action: str | None = field(default=None, metadata=_wire("fa"))
    redirect_address: str | None = field(default=None, metadata=_wire("ra"))

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "k": self.key,
            "rg": self.rating_group,
            "si": self.service_identifier,
            "sv": self.service,
            "unit": self.unit,
            "used": self.used,
            "final": self.final,
        }
        if self.reported is not None:
            out["rep"] = self.reported
        if self.used_before is not None:
            out["ub"] = self.used_before
            if self.change_at is not None:
                out["tc"] = self.change_at
        if self.preset is not None:
            out["st"] = self.preset
        price = self.price
        if price is not None:
            out["p"] = price.wire()
            out["zr"] = self.zero_rated
            if self.usage_range is not None:
                out["ur"] = self.usage_range
        if self.requested is not None:
            out["req"] = self.requested
            out["vt"] = self.validity_time
            if self.tariff_time_change is not None:
                out["ttc"] = self.tariff_time_change
            out["thr"] = self.threshold_percent
            out["qht"] = self.holding_time
            out["fa"] = self.final_action
            out["ra"] = self.redirect_address
        return out


@dataclass(slots=True)
class EventService(RatedService):
    """One service of a CCR-Event: debited (event.lua), refunded (refund.lua) or
    checked (balance.lua); each script has its encoder."""

    units: int = field(default=0, metadata=_wire("units"))
    amount: int | None = field(default=None, metadata=_wire("amount"))
    """Micro-units to credit back (refund.lua)."""

    def _rated(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "k": self.key,
            "rg": self.rating_group,
            "si": self.service_identifier,
            "sv": self.service,
            "unit": self.unit,
            "units": self.units,
        }
        if self.preset is not None:
            out["st"] = self.preset
        if self.price is not None:
            out["p"] = self.price.wire()
            out["zr"] = self.zero_rated
        return out

    def wire_event(self) -> dict[str, Any]:
        out = self._rated()
        if self.usage_range is not None and self.price is not None:
            out["ur"] = self.usage_range
        return out

    def wire_refund(self) -> dict[str, Any]:
        out = self._rated()
        if self.amount is not None:
            out["amount"] = self.amount
        return out

    def wire_balance(self) -> dict[str, Any]:
        return self._rated()


class _MapArgs:
    """The arguments of a script whose ARGV is one msgpack map, its :meth:`wire`."""

    __slots__ = ()

    def wire(self) -> dict[str, Any]:
        raise NotImplementedError

    def argv(self) -> list[bytes]:
        return [pack(self.wire())]


@dataclass(slots=True)
class _RequestArgs(_MapArgs):
    """What every script that charges one request takes (ccr.lua, event.lua,
    refund.lua): whose request it is and which, when, how long its answer is kept for
    retransmissions, and what its records note."""

    account: str = field(metadata=_wire("acct"))
    session_id: str = field(metadata=_wire("sid"))
    request_number: int = field(metadata=_wire("n"))
    timestamp: int = field(metadata=_wire("ts"))
    """The rating time (:mod:`quota_engine.charging.rating_clock`): bucket validity
    and the records' times; the engine rated the request's band and tier period at it."""
    now: int = field(metadata=_wire("now"))
    """Server time: rates nothing (refund.lua dates its history entry with it)."""
    idempotency_ttl: int = field(metadata=_wire("ttl"))
    peer: str = field(metadata=_wire("peer"))
    context: str = field(metadata=_wire("ctx"))
    identities: Sequence[str] = field(metadata=_wire("ids"))


@dataclass(slots=True)
class _RatedRequestArgs(_RequestArgs):
    """And what the scripts that debit rated usage take (ccr.lua, event.lua): the
    account fields the request was rated with, checked before anything is written, and
    the bill period whose usage they update."""

    usage_ttl: int = field(metadata=_wire("uttl"))
    rated_with: RatedWith | None = field(metadata=_wire("w"))
    """None: not checked (the engine always sends it)."""
    period: str = field(metadata=_wire(None))
    """The bill period whose usage hash the script updates (KEYS[7] of ccr.lua, the last of event.lua)."""


@dataclass(slots=True)
class CcrArgs(_RatedRequestArgs):
    """ccr.lua: one CCR-Initial, -Update or -Terminate."""

    request_type: str = field(metadata=_wire("type"))
    """``"initial"``, ``"update"`` or ``"terminate"``."""
    deadline: int = field(metadata=_wire("dl"))
    """The session's deadline after this request (the sweeper settles it then)."""
    services: list[SessionService] = field(metadata=_wire("s"))
    rating_context: RatingContext = field(default_factory=RatingContext, metadata=_wire("rc"))
    """What the request was rated with: its own values over the session's (see
    :class:`RatingContext`)."""
    carried_context: RatingContext | None = field(default=None, metadata=_wire("rq"))
    """The values the request itself carried; None: the same as ``rating_context``
    (a CCR-Initial, or one that carried every value it was rated with)."""
    cap_factor: int = field(default=2, metadata=_wire("cf"))
    """A report is committed up to this many times the grant it was made against..."""
    cap_floor: Mapping[str, int] | None = field(default=None, metadata=_wire("cfl"))
    """... or up to this many units of its unit (``{"octets": ..., "seconds": ...,
    "events": ...}``) if that is more: small grants see large relative overruns."""

    def keys(self) -> list[str]:
        account, session = self.account, self.session_id
        return [
            keys.account(account),
            keys.buckets(account),
            keys.session(account, session),
            keys.sessions(account),
            keys.idempotency(account, session, self.request_number),
            keys.records(account),
            keys.period_usage(account, self.period),
            keys.open_counts(account),
        ]

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sid": self.session_id,
            "acct": self.account,
            "n": self.request_number,
            "type": self.request_type,
            "ts": self.timestamp,
            "now": self.now,
            "dl": self.deadline,
            "ttl": self.idempotency_ttl,
            "uttl": self.usage_ttl,
            "peer": self.peer,
            "ctx": self.context,
            "ids": self.identities,
            "s": [service.wire() for service in self.services],
            "w": self.rated_with,
            "rc": self.rating_context.wire(),
            "cf": self.cap_factor,
        }
        if self.cap_floor is not None:
            out["cfl"] = self.cap_floor
        if self.carried_context is not None:
            out["rq"] = self.carried_context.wire()
        return out


@dataclass(slots=True)
class EventArgs(_RatedRequestArgs):
    """event.lua: a CCR-Event that debits its services now (DIRECT_DEBITING)."""

    services: list[EventService] = field(metadata=_wire("s"))
    rating_context: RatingContext = field(default_factory=RatingContext, metadata=_wire("rc"))
    """What the event carried (SMS recipient, APN...): its records' ``called`` and
    ``apn``."""

    def keys(self) -> list[str]:
        account = self.account
        return [
            keys.account(account),
            keys.buckets(account),
            keys.idempotency(account, self.session_id, self.request_number),
            keys.records(account),
            keys.period_usage(account, self.period),
        ]

    def wire(self) -> dict[str, Any]:
        return {
            "sid": self.session_id,
            "acct": self.account,
            "n": self.request_number,
            "ts": self.timestamp,
            "now": self.now,
            "ttl": self.idempotency_ttl,
            "uttl": self.usage_ttl,
            "peer": self.peer,
            "ctx": self.context,
            "ids": self.identities,
            "s": [service.wire_event() for service in self.services],
            "w": self.rated_with,
            "rc": self.rating_context.wire(),
        }


@dataclass(slots=True)
class RefundArgs(_RequestArgs):
    """refund.lua: a CCR-Event that credits money back (REFUND_ACCOUNT)."""

    services: list[EventService] = field(metadata=_wire("s"))
    rating_context: RatingContext = field(default_factory=RatingContext, metadata=_wire("rc"))
    """What the event carried: its records' ``called`` and ``apn``."""

    def keys(self) -> list[str]:
        account = self.account
        return [
            keys.account(account),
            keys.buckets(account),
            keys.idempotency(account, self.session_id, self.request_number),
            keys.records(account),
            keys.history(account),
        ]

    def wire(self) -> dict[str, Any]:
        return {
            "sid": self.session_id,
            "acct": self.account,
            "n": self.request_number,
            "ts": self.timestamp,
            "now": self.now,
            "ttl": self.idempotency_ttl,
            "peer": self.peer,
            "ctx": self.context,
            "ids": self.identities,
            "s": [service.wire_refund() for service in self.services],
            "rc": self.rating_context.wire(),
        }


@dataclass(slots=True)
class BalanceArgs(_MapArgs):
    """balance.lua: a CCR-Event that asks whether its services are affordable
    (CHECK_BALANCE). Read-only."""

    account: str = field(metadata=_wire(None))
    now: int = field(metadata=_wire("now"))
    """The request's rating time: the buckets valid then count."""
    services: list[EventService] = field(metadata=_wire("s"))

    def keys(self) -> list[str]:
        return [keys.account(self.account), keys.buckets(self.account)]

    def wire(self) -> dict[str, Any]:
        return {"now": self.now, "s": [service.wire_balance() for service in self.services]}


@dataclass(slots=True)
class SettleArgs:
    """settle.lua: settle one session whose deadline passed (the sweeper)."""

    account: str = field(metadata=_wire(None))
    session_id: str = field(metadata=_wire(1))
    now: int = field(metadata=_wire(2))

    def keys(self) -> list[str]:
        account = self.account
        return [
            keys.account(account),
            keys.buckets(account),
            keys.session(account, self.session_id),
            keys.sessions(account),
            keys.records(account),
            keys.open_counts(account),
        ]

    def argv(self) -> list[Any]:
        return [self.session_id, self.now]


# ------------------------------------------------------------------ answers


@dataclass(slots=True)
class ChargeAnswer:
    """The answer of ccr.lua, event.lua, refund.lua or balance.lua. Which fields a
    script sets: its decoder's docstring."""

    outcome: str = field(metadata=_wire("o"))
    """An :class:`~quota_engine.model.Outcome` value, or :data:`STALE`."""
    services: list[ServiceGrant] = field(metadata=_wire("s"))
    """One per service of the arguments, in their order."""
    request_number: int | None = field(default=None, metadata=_wire("n"))
    deadline: int | None = field(default=None, metadata=_wire("dl"))
    """ccr.lua: the session's deadline when it is alive after the call, else None."""
    cost: int | None = field(default=None, metadata=_wire("c"))
    """event.lua: the money debited; refund.lua: minus the money credited."""
    balance: int | None = field(default=None, metadata=_wire("bal"))
    """balance.lua: the free money."""
    capped: list[list[Any]] | None = field(default=None, metadata=_wire("cap"))
    """ccr.lua: ``[rating group key, units reported, units committed]`` of each service
    whose report was cut (usage sanity); None: none was."""
    stored_context: Any = field(default=None, metadata=_wire("rc"))
    """ccr.lua, with :data:`STALE`: the session's rating context as the script sent it
    (a map, or an empty list); None: the account was outdated, not the context."""

    @property
    def is_stale(self) -> bool:
        return self.outcome == STALE

    @property
    def session_context(self) -> RatingContext | None:
        """The session's rating context that a stale request must be rated with
        (None: the answer carries none)."""
        stored = self.stored_context
        return None if stored is None else RatingContext.from_wire(stored)


GRANT_WIRE: Final = {
    "rating_group": "rg",
    "service_identifier": "si",
    "outcome": "o",
    "unit": "u",
    "granted": "g",
    "validity_time": "vt",
    "quota_threshold": "thr",
    "quota_holding_time": "qht",
    "final_unit": "fu",
    "final_action": "fa",
    "redirect_address": "ra",
    "cost": "c",
    "tariff_time_change": "ttc",
}
"""The wire key of each :class:`~quota_engine.model.ServiceGrant` field in the
answers' services (``s``): the scripts' per-service answer is decoded into the model's
own type, with no object in between."""


def _session_grants(items: Sequence[Mapping[str, Any]]) -> list[ServiceGrant]:
    grants = []
    for item in items:
        unit = item.get("u")
        grants.append(
            ServiceGrant(
                rating_group=item.get("rg"),
                service_identifier=item.get("si"),
                outcome=_OUTCOMES[item["o"]],
                unit=_UNITS.get(unit) if unit else None,
                granted=item.get("g", 0),
                validity_time=item.get("vt"),
                quota_threshold=item.get("thr"),
                quota_holding_time=item.get("qht"),
                final_unit=bool(item.get("fu")),
                final_action=item.get("fa"),
                redirect_address=item.get("ra"),
                cost=item.get("c", 0),
                tariff_time_change=item.get("ttc"),
            )
        )
    return grants


def _debit_grants(items: Sequence[Mapping[str, Any]]) -> list[ServiceGrant]:
    grants = []
    for item in items:
        unit = item.get("u")
        grants.append(
            ServiceGrant(
                rating_group=item.get("rg"),
                service_identifier=item.get("si"),
                outcome=_OUTCOMES[item["o"]],
                unit=_UNITS.get(unit) if unit else None,
                granted=item.get("g", 0),
                cost=item.get("c", 0),
            )
        )
    return grants


def ccr_answer(answer: Mapping[str, Any]) -> ChargeAnswer:
    """ccr.lua's answer map: outcome, request number, deadline, services."""
    return ChargeAnswer(
        answer["o"],
        _session_grants(answer.get("s") or ()),
        request_number=answer.get("n"),
        deadline=answer.get("dl"),
        capped=answer.get("cap"),
        stored_context=answer.get("rc"),
    )


def debit_answer(answer: Mapping[str, Any]) -> ChargeAnswer:
    """event.lua's or refund.lua's answer map: outcome, request number, cost, services."""
    return ChargeAnswer(
        answer["o"],
        _debit_grants(answer.get("s") or ()),
        request_number=answer.get("n"),
        cost=answer.get("c"),
    )


def balance_answer(answer: Mapping[str, Any]) -> ChargeAnswer:
    """balance.lua's answer map: outcome, free money, services."""
    return ChargeAnswer(
        answer["o"], _debit_grants(answer.get("s") or ()), balance=answer.get("bal")
    )


def decode_ccr(raw: bytes) -> ChargeAnswer:
    return ccr_answer(_unpack(raw))


def decode_debit(raw: bytes) -> ChargeAnswer:
    return debit_answer(_unpack(raw))


def decode_balance(raw: bytes) -> ChargeAnswer:
    return balance_answer(_unpack(raw))


@dataclass(slots=True)
class SettleAnswer:
    """settle.lua's answer."""

    outcome: str = field(metadata=_wire("o"))
    """``"settled"``, ``"gone"`` (no such session) or ``"alive"`` (its deadline is later)."""
    records: int = field(default=0, metadata=_wire("records"))
    """Records appended (``"settled"``)."""
    deadline: int | None = field(default=None, metadata=_wire("dl"))
    """The session's deadline (``"alive"``)."""


def settle_answer(answer: Mapping[str, Any]) -> SettleAnswer:
    return SettleAnswer(answer["o"], answer.get("records", 0), answer.get("dl"))


def decode_settle(raw: bytes) -> SettleAnswer:
    return settle_answer(_unpack(raw))


# ================================================================== the account scripts
#
# put_bucket.lua, credit.lua, set_status.lua, release_identity.lua and
# balance_action.lua: the scripts of the account side (quota_engine/store/accounts.py,
# quota_engine/store/balance_actions.py). They take plain ARGV values by position and
# answer a list (release_identity.lua an integer), so each field's metadata names its
# ARGV position (None: the field only names KEYS) and each answer is a NamedTuple of
# the list, in its order; ``argv()`` and the decoders are the only places that know
# positions. Their headers list ARGV and the answer by position, naming the fields
# (``--   1 bucket_id  ...``).
#
# ===================  =====================  =====================  ========================
# script               arguments              answer                 decoder
# ===================  =====================  =====================  ========================
# put_bucket.lua       PutBucketArgs          PutBucketAnswer        decode_put_bucket
# credit.lua           CreditArgs             CreditAnswer           decode_credit
# set_status.lua       SetStatusArgs          SetStatusAnswer        decode_set_status
# release_identity.lua ReleaseIdentityArgs    ReleaseIdentityAnswer  decode_release_identity
# balance_action.lua   BalanceActionArgs      BalanceActionAnswer    decode_balance_action
# ack_records.lua      AckRecordsArgs         AckRecordsAnswer       decode_ack_records
# export_lease.lua     ExportLeaseArgs        ExportLeaseAnswer      decode_export_lease
# ===================  =====================  =====================  ========================
#
# The last two are the record export's (quota_engine/store/record_feed.py): they touch
# a partition's keys, not an account's, and answer no status.
#
# :data:`ACCOUNT_SCRIPT_STATUSES` lists the statuses each script can answer; which of
# them are refusals, and the error each becomes, is
# quota_engine/accounts/errors.py (REFUSALS).

__all__ += [
    "ACCOUNT_SCRIPT_STATUSES",
    "AckRecordsAnswer",
    "AckRecordsArgs",
    "BalanceActionAnswer",
    "BalanceActionArgs",
    "CreditAnswer",
    "CreditArgs",
    "ExportLeaseAnswer",
    "ExportLeaseArgs",
    "PutBucketAnswer",
    "PutBucketArgs",
    "ReleaseIdentityAnswer",
    "ReleaseIdentityArgs",
    "SetStatusAnswer",
    "SetStatusArgs",
    "decode_ack_records",
    "decode_balance_action",
    "decode_credit",
    "decode_export_lease",
    "decode_put_bucket",
    "decode_release_identity",
    "decode_set_status",
]

ACCOUNT_SCRIPT_STATUSES: Final[Mapping[str, frozenset[str]]] = {
    "put_bucket.lua": frozenset(
        {"created", "kept", "replaced", "no_account", "unit_change", "below_reserved"}
    ),
    "credit.lua": frozenset({"ok", "no_bucket", "overflow"}),
    "set_status.lua": frozenset({"ok", "no_account"}),
    "balance_action.lua": frozenset(
        {
            "replay",
            "no_account",
            "closed",
            "no_bucket",
            "unit_mismatch",
            "overflow",
            "below",
            "ok",
        }
    ),
}
"""Script name -> every status its answer's ``status`` can be (release_identity.lua
answers no status)."""

ScriptValue = str | int | bytes
"""One ARGV value of an account script."""


@dataclass(slots=True)
class PutBucketArgs:
    """put_bucket.lua: create one bucket, or replace its definition while keeping what
    live sessions hold reserved on it."""

    account: str = field(metadata=_wire(None))
    bucket_id: str = field(metadata=_wire(1))
    packed_bucket: bytes = field(metadata=_wire(2))
    """The bucket as stored (``Bucket.pack``, pack_bucket.lua's form), reserved 0."""
    replace: bool = field(default=False, metadata=_wire(3))
    """Replace an existing bucket (False: keep it, answer ``"kept"``)."""

    def keys(self) -> list[str]:
        return [keys.account(self.account), keys.buckets(self.account)]

    def argv(self) -> list[ScriptValue]:
        return [self.bucket_id, self.packed_bucket, "1" if self.replace else "0"]


class PutBucketAnswer(NamedTuple):
    status: str
    """``"created"``, ``"kept"``, ``"replaced"`` or a refusal."""
    reserved: int
    """The units reserved on the stored bucket (0 when none)."""


def decode_put_bucket(reply: Sequence[Any]) -> PutBucketAnswer:
    status, reserved = reply
    return PutBucketAnswer(text(status), int(reserved))


@dataclass(slots=True)
class CreditArgs:
    """credit.lua: add money or units to one bucket, with a history entry."""

    account: str = field(metadata=_wire(None))
    bucket_id: str = field(metadata=_wire(1))
    amount: int = field(metadata=_wire(2))
    """The amount to add (> 0)."""
    history_entry: str = field(metadata=_wire(4))
    """The JSON entry appended to the history when the credit is made."""
    limit: int = field(default=MAX_AMOUNT, metadata=_wire(3))
    """The largest amount the bucket may hold."""

    def keys(self) -> list[str]:
        return [keys.buckets(self.account), keys.history(self.account)]

    def argv(self) -> list[ScriptValue]:
        return [self.bucket_id, self.amount, self.limit, self.history_entry]


class CreditAnswer(NamedTuple):
    status: str
    """``"ok"`` or a refusal."""
    amount: int
    """``"ok"``: the new amount; ``"overflow"``: the current one; else 0."""


def decode_credit(reply: Sequence[Any]) -> CreditAnswer:
    status, amount = reply
    return CreditAnswer(text(status), int(amount))


@dataclass(slots=True)
class SetStatusArgs:
    """set_status.lua: set an account's status, only if the account exists."""

    account: str = field(metadata=_wire(None))
    new_status: str = field(metadata=_wire(1))

    def keys(self) -> list[str]:
        return [keys.account(self.account)]

    def argv(self) -> list[ScriptValue]:
        return [self.new_status]


class SetStatusAnswer(NamedTuple):
    status: str
    """``"ok"`` or ``"no_account"``."""
    previous: str
    """The status before (``""`` when the account had none, or none exists)."""


def decode_set_status(reply: Sequence[Any]) -> SetStatusAnswer:
    status, previous = reply
    return SetStatusAnswer(text(status), text(previous))


@dataclass(slots=True)
class ReleaseIdentityArgs:
    """release_identity.lua: remove an identity from the identity index if it still
    points at ``account``."""

    identity: str = field(metadata=_wire(None))
    account: str = field(metadata=_wire(1))

    def keys(self) -> list[str]:
        return [keys.subscriber(self.identity)]

    def argv(self) -> list[ScriptValue]:
        return [self.account]


class ReleaseIdentityAnswer(NamedTuple):
    released: bool
    """The index entry was deleted (False: absent, or another account's)."""


def decode_release_identity(reply: int) -> ReleaseIdentityAnswer:
    return ReleaseIdentityAnswer(bool(reply))


@dataclass(slots=True)
class BalanceActionArgs:
    """balance_action.lua: one top-up or adjustment of a bucket, once per idempotency
    key (quota_engine/accounts/balance_actions.py has the semantics)."""

    account: str = field(metadata=_wire(None))
    idempotency_key: str = field(metadata=_wire(None))
    """The caller's key; the result is kept under ``ocs:acct:{A}:topup:<key>``."""
    bucket_id: str = field(metadata=_wire(1))
    amount: int = field(metadata=_wire(2))
    """Signed, non-zero."""
    fingerprint: str = field(metadata=_wire(3))
    """The request's fingerprint (hex): a replay under the same key must carry it."""
    create: bytes | None = field(metadata=_wire(4))
    """The packed bucket to create when missing (amount 0, reserved 0); None: none."""
    unit: str | None = field(metadata=_wire(5))
    """The unit the caller expects (the account currency for money); None: any."""
    entry_head: str = field(metadata=_wire(6))
    """The history entry's JSON without its closing brace (the script completes it)."""
    ttl: int = field(metadata=_wire(8))
    """Seconds the result is kept under the idempotency key."""
    limit: int = field(default=MAX_AMOUNT, metadata=_wire(7))
    """The largest amount a bucket may hold."""

    def keys(self) -> list[str]:
        account = self.account
        return [
            keys.account(account),
            keys.buckets(account),
            keys.history(account),
            keys.topup(account, self.idempotency_key),
        ]

    def argv(self) -> list[ScriptValue]:
        return [
            self.bucket_id,
            self.amount,
            self.fingerprint,
            b"" if self.create is None else self.create,
            "" if self.unit is None else self.unit,
            self.entry_head,
            self.limit,
            self.ttl,
        ]


class BalanceActionAnswer(NamedTuple):
    status: str
    """``"ok"``, ``"replay"`` or a refusal."""
    payload: str
    """``"ok"``: the completed history entry; ``"replay"``: the stored
    ``"<fingerprint>\\n<entry>"``; a refusal: its detail (``""`` when none)."""


def decode_balance_action(reply: Sequence[Any]) -> BalanceActionAnswer:
    status, payload = reply
    return BalanceActionAnswer(text(status), text(payload))


@dataclass(slots=True)
class AckRecordsArgs:
    """ack_records.lua: acknowledge and delete entries of a partition's record stream
    that are durable in a segment file."""

    partition: int = field(metadata=_wire(None))
    group: str = field(metadata=_wire(1))
    entry_ids: tuple[str, ...] = field(metadata=_wire(2))

    def keys(self) -> list[str]:
        return [keys.partition_records(self.partition)]

    def argv(self) -> list[ScriptValue]:
        # one value, not one per id: stream ids hold no space, and a fixed ARGV keeps
        # the script's contract checkable like the others'
        return [self.group, " ".join(self.entry_ids)]


class AckRecordsAnswer(NamedTuple):
    acknowledged: int
    """Entries acknowledged by this call."""
    deleted: int
    """Entries deleted by this call."""


def decode_ack_records(reply: Sequence[Any]) -> AckRecordsAnswer:
    acknowledged, deleted = reply
    return AckRecordsAnswer(int(acknowledged), int(deleted))


@dataclass(slots=True)
class ExportLeaseArgs:
    """export_lease.lua: renew (``ttl_ms`` > 0) or release (0) an exporter's lease on a
    partition, only while that exporter holds it."""

    partition: int = field(metadata=_wire(None))
    owner: str = field(metadata=_wire(1))
    ttl_ms: int = field(metadata=_wire(2))

    def keys(self) -> list[str]:
        return [keys.export_lease(self.partition)]

    def argv(self) -> list[ScriptValue]:
        return [self.owner, self.ttl_ms]


class ExportLeaseAnswer(NamedTuple):
    held: bool
    """The caller held the lease (it is renewed, or released)."""


def decode_export_lease(reply: int) -> ExportLeaseAnswer:
    return ExportLeaseAnswer(bool(reply))
