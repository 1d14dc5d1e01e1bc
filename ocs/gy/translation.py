"""Credit-Control-Request -> :class:`ChargingRequest`, :class:`ChargingResult` -> CCA.

The translation between Diameter (RFC 8506, 3GPP TS 32.299) and the quota engine's
charging terms, in both directions. Every AVP code and enumerated value comes from
python-diameter's constants (``protocol.dictionary.constants``); the choices made
here are documented in docs/diameter.md, "Credit control (Gy/Ro)".

Units: the handler does not know a service's unit type before rating, so the
reported usage is summed in the unit the Service-Context-Id implies: octets
(CC-Total-Octets, else CC-Input-Octets + CC-Output-Octets) for PS data (32251),
seconds (CC-Time) for IMS voice (32260), events (CC-Service-Specific-Units, else 1
per Used-Service-Unit) for SMS (32274). Other contexts take the first unit the
request carries, in the order octets, seconds, events.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from cext.codec import AvpGroup, CodecError, Message
from ocs.gy.grammar import CCR_OCCURRENCES
from ocs.gy.result_codes import RATING_FAILED, answer_codes
from protocol.dictionary import constants as c
from protocol.errors import INVALID_AVP_VALUE, DiameterError, from_codec_error
from protocol.messages import Answer, AvpSpec, Codec, check_mandatory, check_occurrences
from quota_engine.accounts.model import identity as canonical_identity
from quota_engine.model import (
    ChargingRequest,
    ChargingResult,
    EventAction,
    Outcome,
    RequestType,
    ServiceGrant,
    ServiceUsage,
    Unit,
)
from quota_engine.numbering import NO_PLAN, NumberingPlan, e164
from quota_engine.store.records import rg_key

TGPP = c.VENDOR_TGPP
CREDIT_CONTROL_APPLICATION = c.APP_DIAMETER_CREDIT_CONTROL_APPLICATION

# RFC 8506 §3.1: the fixed and required AVPs of a Credit-Control-Request.
CCR_MANDATORY = (
    (c.AVP_SESSION_ID, 0),
    (c.AVP_ORIGIN_HOST, 0),
    (c.AVP_ORIGIN_REALM, 0),
    (c.AVP_DESTINATION_REALM, 0),
    (c.AVP_AUTH_APPLICATION_ID, 0),
    (c.AVP_SERVICE_CONTEXT_ID, 0),
    (c.AVP_CC_REQUEST_TYPE, 0),
    (c.AVP_CC_REQUEST_NUMBER, 0),
)
SUBSCRIPTION_ID_MANDATORY = ((c.AVP_SUBSCRIPTION_ID_TYPE, 0), (c.AVP_SUBSCRIPTION_ID_DATA, 0))

REQUEST_TYPES: dict[int, RequestType] = {
    c.E_CC_REQUEST_TYPE_INITIAL_REQUEST: RequestType.INITIAL,
    c.E_CC_REQUEST_TYPE_UPDATE_REQUEST: RequestType.UPDATE,
    c.E_CC_REQUEST_TYPE_TERMINATION_REQUEST: RequestType.TERMINATE,
    c.E_CC_REQUEST_TYPE_EVENT_REQUEST: RequestType.EVENT,
}
REQUEST_TYPE_VALUES = {kind: value for value, kind in REQUEST_TYPES.items()}

EVENT_ACTIONS: dict[int, EventAction] = {
    c.E_REQUESTED_ACTION_DIRECT_DEBITING: EventAction.DIRECT_DEBITING,
    c.E_REQUESTED_ACTION_REFUND_ACCOUNT: EventAction.REFUND_ACCOUNT,
    c.E_REQUESTED_ACTION_CHECK_BALANCE: EventAction.CHECK_BALANCE,
    c.E_REQUESTED_ACTION_PRICE_ENQUIRY: EventAction.PRICE_ENQUIRY,
}

# Subscription-Id-Type -> identity kind (quota_engine.accounts.model.identity); END_USER_PRIVATE
# is ignored.
SUBSCRIPTION_KINDS: dict[int, str] = {
    c.E_SUBSCRIPTION_ID_TYPE_END_USER_E164: "msisdn",
    c.E_SUBSCRIPTION_ID_TYPE_END_USER_IMSI: "imsi",
    c.E_SUBSCRIPTION_ID_TYPE_END_USER_SIP_URI: "sip",
    c.E_SUBSCRIPTION_ID_TYPE_END_USER_NAI: "nai",
}

CONTEXT_UNITS: dict[str, Unit] = {
    c.SERVICE_CONTEXT_PS_CHARGING: Unit.OCTETS,
    c.SERVICE_CONTEXT_IMS_CHARGING: Unit.SECONDS,
    c.SERVICE_CONTEXT_MMTEL_SERVICE_CHARGING: Unit.SECONDS,
    c.SERVICE_CONTEXT_SMS_SERVICE_CHARGING: Unit.EVENTS,
}

REPORTING_REASON_FINAL = c.E_3GPP_REPORTING_REASON_FINAL
# RFC 8506 §8.27 Tariff-Change-Usage in a Used-Service-Unit (2, INDETERMINATE: neither)
TARIFF_CHANGE_BEFORE = c.E_TARIFF_CHANGE_USAGE_UNIT_BEFORE_TARIFF_CHANGE
TARIFF_CHANGE_AFTER = c.E_TARIFF_CHANGE_USAGE_UNIT_AFTER_TARIFF_CHANGE
MULTIPLE_SERVICES_SUPPORTED = c.E_MULTIPLE_SERVICES_INDICATOR_MULTIPLE_SERVICES_SUPPORTED

# ISO 4217 numeric codes for Currency-Code (RFC 8506 §8.11). Cost-Information is left
# out of the answer for a currency not listed here.
CURRENCY_NUMERIC: dict[str, int] = {
    "AED": 784, "AUD": 36, "BGN": 975, "BRL": 986, "CAD": 124, "CHF": 756, "CNY": 156,
    "CZK": 203, "DKK": 208, "EUR": 978, "GBP": 826, "HKD": 344, "HUF": 348, "ILS": 376,
    "INR": 356, "ISK": 352, "JPY": 392, "KRW": 410, "MXN": 484, "NOK": 578, "NZD": 554,
    "PLN": 985, "RON": 946, "RSD": 941, "RUB": 643, "SAR": 682, "SEK": 752, "SGD": 702,
    "TRY": 949, "UAH": 980, "USD": 840, "ZAR": 710,
}  # fmt: skip

MAX_UNSIGNED32 = 2**32 - 1
MAX_UNSIGNED64 = 2**64 - 1
MICRO_EXPONENT = -6  # money is in micro-units


@dataclass(slots=True)
class ParsedCCR:
    """A CCR in charging terms plus what its answer needs from the request."""

    request: ChargingRequest
    request_type: int  # CC-Request-Type as sent, echoed in the CCA
    request_number: int  # CC-Request-Number as sent, echoed in the CCA
    multiple_services: bool  # MSCC mode (answer with MSCCs) or single-service mode
    message: Message
    mscc: list[AvpGroup] = field(default_factory=list)
    origin_realm: str = ""  # of the network element, for the RAR/ASR route

    @property
    def echo(self) -> list[AvpSpec]:
        return echo_avps(self.request_type, self.request_number)


def echo_avps(request_type: int, request_number: int) -> list[AvpSpec]:
    """The AVPs every CCA repeats from its CCR (RFC 8506 §3.2)."""
    return [
        (c.AVP_AUTH_APPLICATION_ID, CREDIT_CONTROL_APPLICATION),
        (c.AVP_CC_REQUEST_TYPE, request_type),
        (c.AVP_CC_REQUEST_NUMBER, request_number),
    ]


def error_answer(message: Message, error: DiameterError) -> Answer:
    """The CCA for a CCR that could not be parsed (5005, 5004, ...)."""
    type_value = _get_or(message, c.AVP_CC_REQUEST_TYPE, 0)
    echo = echo_avps(type_value, _get_or(message, c.AVP_CC_REQUEST_NUMBER, 0))
    request_type = REQUEST_TYPES.get(type_value)
    return Answer(
        error.result_code,
        echo,
        error.message or None,
        error.failed_avp,
        None if request_type is None else request_type.value,
    )


def _get_or(message: Message, code: int, default: int) -> int:
    try:
        value = message.get(code)
    except CodecError:
        return default
    return default if value is None else value


# ------------------------------------------------------------------------ CCR parsing


def parse_ccr(
    codec: Codec, message: Message, now: int, numbering: NumberingPlan = NO_PLAN
) -> ParsedCCR:
    """Translate a CCR; raises :class:`DiameterError` with Failed-AVP: 5005 for a
    missing AVP, else 5009 for a single-occurrence AVP repeated
    (:mod:`ocs.gy.grammar`), else 5004 for an invalid value.

    ``now`` (Unix seconds) is the timestamp when the CCR has no Event-Timestamp;
    ``numbering`` turns national-format numbers into E.164 (quota_engine.numbering).
    """
    check_mandatory(codec, message, CCR_MANDATORY)
    check_occurrences(message, CCR_OCCURRENCES)
    try:
        return _parse(codec, message, now, numbering)
    except CodecError as error:  # e.g. a UTF8String that is not UTF-8
        raise from_codec_error(error) from None


def _invalid(container: Message | AvpGroup, code: int, vendor: int, what: str) -> DiameterError:
    return DiameterError(INVALID_AVP_VALUE, what, container.raw_avp(code, vendor))


# Refused when empty (5004): an empty Session-Id would make every peer that sends one
# share one session, and an empty DiameterIdentity is no FQDN (RFC 6733 §4.3.1).
# Destination-Host is optional, and Destination-* are read only to be checked.
_NON_EMPTY = (
    (c.AVP_SESSION_ID, "Session-Id"),
    (c.AVP_ORIGIN_HOST, "Origin-Host"),
    (c.AVP_ORIGIN_REALM, "Origin-Realm"),
    (c.AVP_DESTINATION_REALM, "Destination-Realm"),
    (c.AVP_DESTINATION_HOST, "Destination-Host"),
)


def _addressing(message: Message) -> tuple[str, str, str]:
    """Session-Id, Origin-Host and Origin-Realm, once every AVP of :data:`_NON_EMPTY`
    is checked: an empty one raises 5004, one that is not UTF-8 ``CodecError`` (5004
    too). The three are present: ``check_mandatory`` ran."""
    values: list[Any] = []
    for code, name in _NON_EMPTY:
        value = message.get(code)
        if value == "":
            raise _invalid(message, code, 0, f"empty {name}")
        values.append(value)
    return values[0], values[1], values[2]


def _parse(codec: Codec, message: Message, now: int, numbering: NumberingPlan) -> ParsedCCR:
    session_id, origin_host, origin_realm = _addressing(message)
    # present (check_mandatory ran): the defaults only type the values
    type_value: int = message.get(c.AVP_CC_REQUEST_TYPE, 0, 0)
    request_type = REQUEST_TYPES.get(type_value)
    if request_type is None:
        raise _invalid(message, c.AVP_CC_REQUEST_TYPE, 0, f"CC-Request-Type {type_value}")
    if message.get(c.AVP_AUTH_APPLICATION_ID) != CREDIT_CONTROL_APPLICATION:
        raise _invalid(message, c.AVP_AUTH_APPLICATION_ID, 0, "Auth-Application-Id is not 4")
    request_number: int = message.get(c.AVP_CC_REQUEST_NUMBER, 0, 0)
    context = normalize_context(message.get(c.AVP_SERVICE_CONTEXT_ID, 0, ""))
    unit = CONTEXT_UNITS.get(context)

    action = None
    if request_type is RequestType.EVENT:
        action_value = message.get(c.AVP_REQUESTED_ACTION)
        if action_value is None:
            action = EventAction.DIRECT_DEBITING
        else:
            action = EVENT_ACTIONS.get(action_value)
            if action is None:
                raise _invalid(
                    message, c.AVP_REQUESTED_ACTION, 0, f"Requested-Action {action_value}"
                )

    identities: list[str] = []
    _add_subscription_ids(codec, message, identities, numbering)

    visited = message.get(c.AVP_TGPP_3GPP_SGSN_MCC_MNC, TGPP)
    apn = message.get(c.AVP_CALLED_STATION_ID)
    destination = None
    info = message.group(c.AVP_TGPP_SERVICE_INFORMATION, TGPP)
    if info is not None:
        _add_subscription_ids(codec, info, identities, numbering)
        ps = info.group(c.AVP_TGPP_PS_INFORMATION, TGPP)
        if ps is not None:
            visited = ps.get(c.AVP_TGPP_3GPP_SGSN_MCC_MNC, TGPP, visited)
            apn = ps.get(c.AVP_CALLED_STATION_ID, 0, apn)
        ims = info.group(c.AVP_TGPP_IMS_INFORMATION, TGPP)
        if ims is not None:
            # Requested-Party-Address (the address before a translation) stands in
            # when Called-Party-Address is missing (docs/diameter.md)
            called = ims.get(c.AVP_TGPP_CALLED_PARTY_ADDRESS, TGPP) or ims.get(
                c.AVP_TGPP_REQUESTED_PARTY_ADDRESS, TGPP
            )
            destination = e164_digits(called, numbering)
        sms = info.group(c.AVP_TGPP_SMS_INFORMATION, TGPP)
        if sms is not None and destination is None:
            destination = _sms_recipient(sms, numbering)
    user_name = message.get(c.AVP_USER_NAME)
    if user_name:
        nai = canonical_identity("nai", user_name)
        if nai not in identities:
            identities.append(nai)

    multiple_indicator = message.get(c.AVP_MULTIPLE_SERVICES_INDICATOR)
    mscc = message.groups(c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL)
    terminating = request_type is RequestType.TERMINATE
    if mscc:
        multiple = True
        services = _services_of(mscc, unit, terminating)
    elif request_type is RequestType.EVENT:
        multiple = False
        services = [_service_usage(message, unit, terminating, in_mscc=False)]
    elif multiple_indicator == MULTIPLE_SERVICES_SUPPORTED:
        # 3GPP: a CCR-I/U/T with MSI=1 and no MSCC opens, keeps or closes the session
        # and asks for nothing; rating groups come in later MSCCs.
        multiple = True
        services = []
    else:
        # RFC 8506 single-service mode: the units are at the top level. A CCR-U or
        # CCR-T without any reports or asks for nothing (a CCR-T still settles
        # every reservation of the session).
        multiple = False
        has_units = message.raw_avp(c.AVP_REQUESTED_SERVICE_UNIT) is not None or (
            message.raw_avp(c.AVP_USED_SERVICE_UNIT) is not None
        )
        if has_units or request_type is RequestType.INITIAL:
            services = [_service_usage(message, unit, terminating, in_mscc=False)]
        else:
            services = []

    timestamp = message.get(c.AVP_EVENT_TIMESTAMP)
    request = ChargingRequest(
        session_id=session_id,
        request_type=request_type,
        request_number=request_number,
        identities=identities,
        service_context=context,
        services=services,
        timestamp=now if timestamp is None else timestamp,
        peer=origin_host,
        action=action,
        destination=destination,
        visited_mcc_mnc=visited or None,
        apn=apn or None,
        termination_cause=message.get(c.AVP_TERMINATION_CAUSE),
    )
    return ParsedCCR(request, type_value, request_number, multiple, message, mscc, origin_realm)


def normalize_context(context: str) -> str:
    """``<ext>.<MNC>.<MCC>.<release>.32251@3gpp.org`` -> ``32251@3gpp.org`` (TS 32.299
    §7.1.12); any other Service-Context-Id is returned unchanged."""
    local, at, domain = context.rpartition("@")
    if at and domain.lower() == "3gpp.org" and "." in local:
        return f"{local.rsplit('.', 1)[1]}@{domain}"
    return context


def e164_digits(address: str | None, numbering: NumberingPlan = NO_PLAN) -> str | None:
    """The E.164 digits of a number or tel:/sip: URI, or None when there are none.

    ``tel:+49-170-1234567;phone-context=...`` and ``sip:+491701234567@ims;user=phone``
    give ``491701234567``; a leading ``+`` or international prefix is dropped, and a
    national prefix becomes ``numbering``'s country code (without one, numbers in
    national format are taken as they are): :func:`quota_engine.numbering.e164`.
    """
    return e164(address, numbering)


def _add_subscription_ids(
    codec: Codec, container: Message | AvpGroup, identities: list[str], numbering: NumberingPlan
) -> None:
    for group in container.groups(c.AVP_SUBSCRIPTION_ID):
        check_mandatory(codec, group, SUBSCRIPTION_ID_MANDATORY)
        kind = SUBSCRIPTION_KINDS.get(group.get(c.AVP_SUBSCRIPTION_ID_TYPE, 0, -1))
        data = group.get(c.AVP_SUBSCRIPTION_ID_DATA)
        if kind is None or not data:
            continue
        for identity in subscription_identities(kind, data.strip(), numbering):
            if identity not in identities:
                identities.append(identity)


def subscription_identities(kind: str, data: str, numbering: NumberingPlan = NO_PLAN) -> list[str]:
    """Canonical identities (quota_engine.accounts.model.identity) of one Subscription-Id.

    E.164 numbers lose a leading ``+`` (national ones get ``numbering``'s country
    code); a SIP URI keeps its scheme
    (``sip:sip:alice@example.net``) but not its parameters, and one whose user part
    is a number (``sip:+491701234567@ims...;user=phone``) also gives the MSISDN; a
    tel: URI sent as SIP_URI is an MSISDN.
    """
    if kind == "msisdn":
        return [canonical_identity("msisdn", e164_digits(data, numbering) or data)]
    if kind == "sip":
        scheme = data[:5].lower()
        if scheme.startswith("tel:"):
            digits = e164_digits(data, numbering)
            return [canonical_identity("msisdn", digits)] if digits else []
        if not scheme.startswith(("sip:", "sips:")):
            data = "sip:" + data
        uri = data.split(";", 1)[0]
        found = [canonical_identity("sip", uri)]
        user = uri.split(":", 1)[1].split("@", 1)[0] if "@" in uri else ""
        if user.startswith("+"):
            digits = e164_digits(user, numbering)
            if digits:
                found.append(canonical_identity("msisdn", digits))
        return found
    return [canonical_identity(kind, data)]


def _sms_recipient(sms: AvpGroup, numbering: NumberingPlan) -> str | None:
    addresses = [
        address
        for info in sms.groups(c.AVP_TGPP_RECIPIENT_INFO, TGPP)
        for address in info.groups(c.AVP_TGPP_RECIPIENT_ADDRESS, TGPP)
    ]
    # Releases before Recipient-Info carried Recipient-Address in SMS-Information.
    addresses += sms.groups(c.AVP_TGPP_RECIPIENT_ADDRESS, TGPP)
    for address in addresses:
        digits = e164_digits(address.get(c.AVP_TGPP_ADDRESS_DATA, TGPP), numbering)
        if digits:
            return digits
    return None


def _services_of(
    groups: list[AvpGroup], unit: Unit | None, terminating: bool
) -> list[ServiceUsage]:
    """One ServiceUsage per MSCC; two MSCCs for the same service are refused (5004).

    A session keeps one reservation per service (Rating-Group, else
    Service-Identifier), so a second MSCC with the same key would be granted again
    against the one reservation.
    """
    services = []
    seen: set[str] = set()
    for group in groups:
        service = _service_usage(group, unit, terminating, in_mscc=True)
        key = rg_key(service.rating_group, service.service_identifier)
        if key in seen:
            code = (
                c.AVP_RATING_GROUP
                if service.rating_group is not None
                else (c.AVP_SERVICE_IDENTIFIER)
            )
            raise DiameterError(
                INVALID_AVP_VALUE,
                f"more than one Multiple-Services-Credit-Control for service {key}",
                group.raw_avp(code),
            )
        seen.add(key)
        services.append(service)
    return services


def _service_usage(
    avps: AvpGroup | Message, unit: Unit | None, terminating: bool, *, in_mscc: bool
) -> ServiceUsage:
    """The usage of one service: an MSCC (``in_mscc``), or a CCR without MSCCs, whose
    top level gives only the Requested- and Used-Service-Units (no Rating-Group,
    Service-Identifier or Reporting-Reason of its own).

    The first Reporting-Reason found (the MSCC's, else its USUs' in order) is the
    service's; a FINAL one anywhere, or a CCR-T, makes the service final.
    """
    usus = avps.groups(c.AVP_USED_SERVICE_UNIT)
    reason = avps.get(c.AVP_TGPP_3GPP_REPORTING_REASON, TGPP) if in_mscc else None
    final = terminating or reason == REPORTING_REASON_FINAL
    for usu in usus:
        usu_reason = usu.get(c.AVP_TGPP_3GPP_REPORTING_REASON, TGPP)
        if usu_reason is not None:
            reason = usu_reason if reason is None else reason
            final = final or usu_reason == REPORTING_REASON_FINAL
    used, before, after = _used(usus, unit)
    return ServiceUsage(
        rating_group=avps.get(c.AVP_RATING_GROUP) if in_mscc else None,
        service_identifier=avps.get(c.AVP_SERVICE_IDENTIFIER) if in_mscc else None,
        requested=_requested(avps.group(c.AVP_REQUESTED_SERVICE_UNIT), unit),
        used=used,
        reporting_reason=reason,
        final=final,
        used_before_change=before,
        used_after_change=after,
    )


def _octets(units: AvpGroup) -> int | None:
    total: int | None = units.get(c.AVP_CC_TOTAL_OCTETS)
    if total is not None:
        return total
    into = units.get(c.AVP_CC_INPUT_OCTETS)
    out = units.get(c.AVP_CC_OUTPUT_OCTETS)
    if into is None and out is None:
        return None
    return (into or 0) + (out or 0)


def _amount(units: AvpGroup, unit: Unit) -> int | None:
    if unit is Unit.OCTETS:
        return _octets(units)
    code = c.AVP_CC_TIME if unit is Unit.SECONDS else c.AVP_CC_SERVICE_SPECIFIC_UNITS
    amount: int | None = units.get(code)
    return amount


def _unit_of(groups: list[AvpGroup]) -> Unit:
    """For a context of unknown unit: the first unit any of ``groups`` carries."""
    for unit in (Unit.OCTETS, Unit.SECONDS, Unit.EVENTS):
        if any(_amount(group, unit) is not None for group in groups):
            return unit
    return Unit.EVENTS


def _requested(rsu: AvpGroup | None, unit: Unit | None) -> int | None:
    if rsu is None:
        return None
    amount = _amount(rsu, unit or _unit_of([rsu]))
    return 0 if amount is None else amount  # empty RSU: the server decides


def _used(usus: list[AvpGroup], unit: Unit | None) -> tuple[int, int | None, int | None]:
    """The units the USUs report, and of them those tagged by Tariff-Change-Usage
    (RFC 8506 §8.27) as used before and after a tariff change (None: no USU tagged
    so; UNITS_INDETERMINATE or no tag counts in neither)."""
    if not usus:
        return 0, None, None
    unit = unit or _unit_of(usus)
    total = 0
    before: int | None = None
    after: int | None = None
    for usu in usus:
        amount = _amount(usu, unit)
        if amount is None and unit is Unit.EVENTS:
            amount = 1  # an event reported without units counts once
        amount = amount or 0
        total += amount
        change = usu.get(c.AVP_TARIFF_CHANGE_USAGE)
        if change == TARIFF_CHANGE_BEFORE:
            before = (before or 0) + amount
        elif change == TARIFF_CHANGE_AFTER:
            after = (after or 0) + amount
    return total, before, after


# ------------------------------------------------------------------------ CCA building


def build_cca(parsed: ParsedCCR, result: ChargingResult) -> Answer:
    """The CCA for ``parsed`` given the engine's ``result``."""
    request = parsed.request
    top, per_service = answer_codes(result, request.request_type, parsed.multiple_services)
    avps = parsed.echo
    failed_avp = None
    if top == RATING_FAILED:
        failed_avp = _rating_failed_avp(parsed, result)
    request_ok = result.outcome in (Outcome.OK, Outcome.INSUFFICIENT_BALANCE)
    action = request.action
    context_unit = CONTEXT_UNITS.get(request.service_context)
    grants_units = request_ok and (action is None or action is EventAction.DIRECT_DEBITING)
    if parsed.multiple_services:
        for grant, code in zip(result.services, per_service, strict=True):
            avps.append(
                (
                    c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL,
                    _mscc(grant, code, context_unit, grants_units),
                )
            )
    elif result.services and request_ok:
        grant = result.services[0]
        if grant.outcome is Outcome.OK and grants_units:
            gsu = _gsu(grant, context_unit)
            if gsu is not None:
                avps.append(gsu)
            if grant.validity_time is not None:
                avps.append((c.AVP_VALIDITY_TIME, _u32(grant.validity_time)))
            fui = _final_unit_indication(grant)
            if fui is not None:
                avps.append(fui)
    if request_ok and action is EventAction.PRICE_ENQUIRY:
        cost = cost_information(result.cost, result.currency)
        if cost is not None:
            avps.append(cost)
    if request_ok and action is EventAction.CHECK_BALANCE:
        avps.append((c.AVP_CHECK_BALANCE_RESULT, check_balance_result(result)))
    message = result.message if top != c.E_RESULT_CODE_DIAMETER_SUCCESS else None
    return Answer(top, avps, message, failed_avp, request.request_type.value)


def check_balance_result(result: ChargingResult) -> int:
    insufficient = result.outcome is Outcome.INSUFFICIENT_BALANCE or any(
        grant.outcome is Outcome.INSUFFICIENT_BALANCE for grant in result.services
    )
    if insufficient:
        return c.E_CHECK_BALANCE_RESULT_NO_CREDIT
    return c.E_CHECK_BALANCE_RESULT_ENOUGH_CREDIT


def _mscc(
    grant: ServiceGrant, code: int, context_unit: Unit | None, grants_units: bool
) -> list[AvpSpec]:
    """One Multiple-Services-Credit-Control of the answer; quota AVPs only for a
    service granted units, never a Final-Unit-Indication next to a failure code."""
    granted = grant.outcome is Outcome.OK and grants_units
    avps: list[AvpSpec] = []
    if granted:
        gsu = _gsu(grant, context_unit)
        if gsu is not None:
            avps.append(gsu)
    if grant.service_identifier is not None:
        avps.append((c.AVP_SERVICE_IDENTIFIER, grant.service_identifier))
    if grant.rating_group is not None:
        avps.append((c.AVP_RATING_GROUP, grant.rating_group))
    if granted and grant.validity_time is not None:
        avps.append((c.AVP_VALIDITY_TIME, _u32(grant.validity_time)))
    avps.append((c.AVP_RESULT_CODE, code))
    if granted:
        fui = _final_unit_indication(grant)
        if fui is not None:
            avps.append(fui)
        if grant.quota_threshold is not None:
            threshold = _threshold_code(grant.unit or context_unit)
            if threshold is not None:
                avps.append((threshold, TGPP, _u32(grant.quota_threshold)))
        if grant.quota_holding_time is not None:
            avps.append((c.AVP_TGPP_QUOTA_HOLDING_TIME, TGPP, _u32(grant.quota_holding_time)))
    return avps


def _gsu(grant: ServiceGrant, context_unit: Unit | None) -> AvpSpec | None:
    if grant.granted <= 0:
        return None
    unit = grant.unit or context_unit or Unit.EVENTS
    if unit is Unit.OCTETS:
        inner = (c.AVP_CC_TOTAL_OCTETS, min(grant.granted, MAX_UNSIGNED64))
    elif unit is Unit.SECONDS:
        inner = (c.AVP_CC_TIME, _u32(grant.granted))
    else:
        inner = (c.AVP_CC_SERVICE_SPECIFIC_UNITS, min(grant.granted, MAX_UNSIGNED64))
    if grant.tariff_time_change is None:
        return (c.AVP_GRANTED_SERVICE_UNIT, [inner])
    # RFC 8506 §8.17: Tariff-Time-Change goes first in the Granted-Service-Unit
    return (
        c.AVP_GRANTED_SERVICE_UNIT,
        [(c.AVP_TARIFF_TIME_CHANGE, grant.tariff_time_change), inner],
    )


def _threshold_code(unit: Unit | None) -> int | None:
    if unit is Unit.OCTETS:
        return c.AVP_TGPP_VOLUME_QUOTA_THRESHOLD
    if unit is Unit.SECONDS:
        return c.AVP_TGPP_TIME_QUOTA_THRESHOLD
    if unit is Unit.EVENTS:
        return c.AVP_TGPP_UNIT_QUOTA_THRESHOLD
    return None


def _final_unit_indication(grant: ServiceGrant) -> AvpSpec | None:
    """Final-Unit-Indication (RFC 8506 §8.34) for a grant that is the last one."""
    if not grant.final_unit or grant.outcome is not Outcome.OK:
        return None
    if grant.final_action == "redirect" and grant.redirect_address:
        server = [
            (c.AVP_REDIRECT_ADDRESS_TYPE, redirect_address_type(grant.redirect_address)),
            (c.AVP_REDIRECT_SERVER_ADDRESS, grant.redirect_address),
        ]
        inner = [
            (c.AVP_FINAL_UNIT_ACTION, c.E_FINAL_UNIT_ACTION_REDIRECT),
            (c.AVP_REDIRECT_SERVER, server),
        ]
    else:
        inner = [(c.AVP_FINAL_UNIT_ACTION, c.E_FINAL_UNIT_ACTION_TERMINATE)]
    return (c.AVP_FINAL_UNIT_INDICATION, inner)


def redirect_address_type(address: str) -> int:
    """Redirect-Address-Type (RFC 8506 §8.38) of a redirect target."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        if address[:5].lower().startswith(("sip:", "sips:")):
            return c.E_REDIRECT_ADDRESS_TYPE_SIP_URI
        return c.E_REDIRECT_ADDRESS_TYPE_URL
    if ip.version == 4:
        return c.E_REDIRECT_ADDRESS_TYPE_IPV4_ADDRESS
    return c.E_REDIRECT_ADDRESS_TYPE_IPV6_ADDRESS


def unit_value(micro: int) -> tuple[int, int]:
    """(Value-Digits, Exponent) of an amount of micro-units, trailing zeros removed."""
    digits, exponent = micro, MICRO_EXPONENT
    if digits == 0:
        return 0, 0
    while exponent < 0 and digits % 10 == 0:
        digits //= 10
        exponent += 1
    return digits, exponent


def cost_information(micro: int, currency: str | None) -> AvpSpec | None:
    """Cost-Information (RFC 8506 §8.7), or None for a currency without a numeric code."""
    numeric = CURRENCY_NUMERIC.get(currency or "")
    if numeric is None:
        return None
    digits, exponent = unit_value(micro)
    return (
        c.AVP_COST_INFORMATION,
        [
            (c.AVP_UNIT_VALUE, [(c.AVP_VALUE_DIGITS, digits), (c.AVP_EXPONENT, exponent)]),
            (c.AVP_CURRENCY_CODE, numeric),
        ],
    )


def _rating_failed_avp(parsed: ParsedCCR, result: ChargingResult) -> bytes | None:
    """RFC 8506 §9.1: 5031 carries the AVP that rating failed on: the Rating-Group (or
    Service-Identifier) of the first unratable MSCC, else the Service-Context-Id."""
    for grant in result.services:
        if grant.outcome is not Outcome.NO_TARIFF:
            continue
        for group in parsed.mscc:
            if (
                group.get(c.AVP_RATING_GROUP) == grant.rating_group
                and group.get(c.AVP_SERVICE_IDENTIFIER) == grant.service_identifier
            ):
                raw = group.raw_avp(c.AVP_RATING_GROUP) or group.raw_avp(c.AVP_SERVICE_IDENTIFIER)
                if raw is not None:
                    return raw
        break
    return parsed.message.raw_avp(c.AVP_SERVICE_CONTEXT_ID)


def _u32(value: int) -> int:
    return max(0, min(value, MAX_UNSIGNED32))
