"""CCR -> ChargingRequest: every AVP path and every error path, on real bytes that
python-diameter (the independent reference) encoded."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from diameter.message import Message
from diameter.message.avp import Avp
from diameter.message.avp.grouped import ServiceInformation, SmsInformation, SubscriptionId
from diameter.message.constants import (
    AVP_AUTH_APPLICATION_ID,
    AVP_CALLED_STATION_ID,
    AVP_CC_REQUEST_NUMBER,
    AVP_CC_REQUEST_TYPE,
    AVP_CC_TOTAL_OCTETS,
    AVP_DESTINATION_HOST,
    AVP_DESTINATION_REALM,
    AVP_EVENT_TIMESTAMP,
    AVP_MULTIPLE_SERVICES_CREDIT_CONTROL,
    AVP_MULTIPLE_SERVICES_INDICATOR,
    AVP_ORIGIN_HOST,
    AVP_ORIGIN_REALM,
    AVP_RATING_GROUP,
    AVP_REQUESTED_ACTION,
    AVP_REQUESTED_SERVICE_UNIT,
    AVP_SERVICE_CONTEXT_ID,
    AVP_SESSION_ID,
    AVP_SUBSCRIPTION_ID,
    AVP_SUBSCRIPTION_ID_DATA,
    AVP_SUBSCRIPTION_ID_TYPE,
    AVP_TERMINATION_CAUSE,
    AVP_TGPP_3GPP_SGSN_MCC_MNC,
    AVP_TGPP_ADDRESS_DATA,
    AVP_TGPP_CALLED_PARTY_ADDRESS,
    AVP_TGPP_PS_INFORMATION,
    AVP_TGPP_RECIPIENT_ADDRESS,
    AVP_TGPP_SERVICE_INFORMATION,
    AVP_USED_SERVICE_UNIT,
    AVP_USER_NAME,
    E_3GPP_REPORTING_REASON_FINAL,
    E_3GPP_REPORTING_REASON_QUOTA_EXHAUSTED,
    E_3GPP_REPORTING_REASON_THRESHOLD,
    E_REQUESTED_ACTION_CHECK_BALANCE,
    E_REQUESTED_ACTION_DIRECT_DEBITING,
    E_REQUESTED_ACTION_PRICE_ENQUIRY,
    E_REQUESTED_ACTION_REFUND_ACCOUNT,
    E_TERMINATION_CAUSE_DIAMETER_LOGOUT,
    VENDOR_TGPP,
)

from cext import codec as raw_codec
from ocs.gy.translation import CCR_MANDATORY, e164_digits, normalize_context, parse_ccr
from protocol.errors import DiameterError
from protocol.messages import Codec, LocalIdentity
from quota_engine.model import EventAction, RequestType, ServiceUsage
from tests.charging import messages as m

CODEC = Codec(LocalIdentity("ocs.test.net", "test.net"))
NOW = 1_750_000_000


def decode(message) -> raw_codec.Message:
    data = message if isinstance(message, bytes) else message.as_bytes()
    return CODEC.decode(data)


def parse(message):
    return parse_ccr(CODEC, decode(message), NOW)


def first_service(**ccr_fields: Any) -> ServiceUsage:
    """The first service of a CCR built by ``m.ccr(**ccr_fields)``, parsed."""
    services: list[ServiceUsage] = parse(m.ccr(**ccr_fields)).request.services
    return services[0]


def parse_error(message) -> DiameterError:
    with pytest.raises(DiameterError) as caught:
        parse(message)
    return caught.value


def failed_avp(error: DiameterError) -> list[Avp]:
    """The Failed-AVP content as python-diameter reads it."""
    assert error.failed_avp is not None
    offset, avps = 0, []
    data = error.failed_avp
    while offset < len(data):
        avp = Avp.from_bytes(data[offset:])
        avps.append(avp)
        offset += (int.from_bytes(data[offset + 5 : offset + 8], "big") + 3) & ~3
    return avps


def without(message, code: int) -> bytes:
    return Message(message.header, [a for a in message.avps if a.code != code]).as_bytes()


# ----------------------------------------------------------------- the request itself


def test_data_initial_request_in_multiple_services_mode():
    parsed = parse(
        m.ccr(
            "pgw.test.net;7;1",
            m.INITIAL,
            0,
            services=[m.mscc(10, service_identifier=1, requested=m.rsu())],
            timestamp=datetime.datetime(2025, 3, 3, 12, 0, tzinfo=datetime.UTC),
        )
    )
    request = parsed.request
    assert parsed.multiple_services
    assert parsed.request_type == m.INITIAL and parsed.request_number == 0
    assert request.session_id == "pgw.test.net;7;1"
    assert request.request_type is RequestType.INITIAL
    assert request.request_number == 0
    assert request.identities == ["msisdn:491700000001"]
    assert request.service_context == "32251@3gpp.org"
    assert request.peer == "pgw.test.net"
    assert request.timestamp == 1_741_003_200
    assert request.action is None
    assert request.services == [
        ServiceUsage(rating_group=10, service_identifier=1, requested=0, used=0)
    ]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (m.INITIAL, RequestType.INITIAL),
        (m.UPDATE, RequestType.UPDATE),
        (m.TERMINATE, RequestType.TERMINATE),
        (m.EVENT, RequestType.EVENT),
    ],
)
def test_cc_request_types(value, kind):
    parsed = parse(m.ccr(request_type=value, number=3))
    assert parsed.request.request_type is kind
    assert parsed.request.request_number == 3
    assert parsed.request_type == value


def test_timestamp_defaults_to_arrival_time():
    assert parse(m.ccr()).request.timestamp == NOW


def test_termination_cause():
    request = parse(
        m.ccr(request_type=m.TERMINATE, termination_cause=E_TERMINATION_CAUSE_DIAMETER_LOGOUT)
    ).request
    assert request.termination_cause == E_TERMINATION_CAUSE_DIAMETER_LOGOUT


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("32251@3gpp.org", "32251@3gpp.org"),
        ("ext.01.001.8.32251@3gpp.org", "32251@3gpp.org"),
        ("10.262.01.17.32260@3gpp.org", "32260@3gpp.org"),
        ("service@operator.example", "service@operator.example"),
        ("a.b@operator.example", "a.b@operator.example"),
    ],
)
def test_service_context_is_normalized(sent, expected):
    assert normalize_context(sent) == expected
    assert parse(m.ccr(context=sent)).request.service_context == expected


# ----------------------------------------------------------------- identities


def test_subscription_id_types():
    request = parse(
        m.ccr(
            subscriptions=(
                ("msisdn", "+491700000001"),
                ("imsi", "262011234567890"),
                ("sip", "sip:alice@ims.example.net"),
                ("nai", "alice@example.net"),
                ("private", "secret-42"),
            )
        )
    ).request
    assert request.identities == [
        "msisdn:491700000001",
        "imsi:262011234567890",
        "sip:sip:alice@ims.example.net",
        "nai:alice@example.net",
    ]


@pytest.mark.parametrize(
    ("sip", "identities"),
    [
        ("sip:alice@ims.example.net;transport=tcp", ["sip:sip:alice@ims.example.net"]),
        ("alice@ims.example.net", ["sip:sip:alice@ims.example.net"]),
        (
            "sip:+491700000001@ims.example.net;user=phone",
            ["sip:sip:+491700000001@ims.example.net", "msisdn:491700000001"],
        ),
        ("tel:+49-170-0000001", ["msisdn:491700000001"]),
    ],
)
def test_sip_uri_subscription_ids(sip, identities):
    assert parse(m.ccr(subscriptions=(("sip", sip),))).request.identities == identities


def test_user_name_is_the_nai_fallback_after_subscription_ids():
    request = parse(m.ccr(user_name="alice@example.net")).request
    assert request.identities == ["msisdn:491700000001", "nai:alice@example.net"]
    request = parse(m.ccr(subscriptions=(), user_name="alice@example.net")).request
    assert request.identities == ["nai:alice@example.net"]


def test_duplicate_identities_are_listed_once():
    request = parse(
        m.ccr(
            subscriptions=(("msisdn", "491700000001"), ("msisdn", "+491700000001")),
            user_name=None,
        )
    ).request
    assert request.identities == ["msisdn:491700000001"]


def test_subscription_id_inside_service_information_is_used_too():
    info = ServiceInformation(subscription_id=[SubscriptionId(1, "262011234567890")])
    request = parse(m.ccr(service_information=info)).request
    assert request.identities == ["msisdn:491700000001", "imsi:262011234567890"]


def test_no_identity_at_all_reaches_the_engine_empty():
    assert parse(m.ccr(subscriptions=())).request.identities == []


# ----------------------------------------------------------------- services and units


def test_requested_service_unit_absent_empty_and_with_amounts():
    services = parse(
        m.ccr(
            services=[
                m.mscc(10),
                m.mscc(11, requested=m.rsu()),
                m.mscc(12, requested=m.rsu(octets=5 * m.MIB)),
                m.mscc(13, requested=m.rsu(octets=0)),
            ]
        )
    ).request.services
    assert [s.requested for s in services] == [None, 0, 5 * m.MIB, 0]


def test_data_usage_sums_total_or_input_plus_output_and_ignores_time():
    service = first_service(
        request_type=m.UPDATE,
        services=[
            m.mscc(
                10,
                used=[
                    m.usu(octets=1000),
                    m.usu(input_octets=300, output_octets=200),
                    m.usu(seconds=60),
                ],
            )
        ],
    )
    assert service.used == 1500


def test_voice_usage_is_cc_time():
    service = first_service(
        context=m.VOICE,
        request_type=m.UPDATE,
        services=[m.mscc(100, used=[m.usu(seconds=61), m.usu(octets=999), m.usu(seconds=4)])],
    )
    assert service.used == 65


def test_voice_requested_is_cc_time():
    service = first_service(
        context=m.VOICE, services=[m.mscc(100, requested=m.rsu(seconds=120, octets=7))]
    )
    assert service.requested == 120


def test_sms_usage_is_service_specific_units_or_one_per_report():
    service = first_service(
        context=m.SMS,
        request_type=m.UPDATE,
        services=[m.mscc(200, used=[m.usu(events=2), m.usu()])],
    )
    assert service.used == 3


def test_unknown_context_takes_the_first_unit_present():
    service = first_service(
        context="video@operator.example",
        request_type=m.UPDATE,
        services=[m.mscc(1, requested=m.rsu(seconds=30), used=[m.usu(seconds=20)])],
    )
    assert (service.requested, service.used) == (30, 20)


def test_reporting_reason_final_at_mscc_level():
    service = first_service(
        request_type=m.UPDATE,
        services=[
            m.mscc(10, used=[m.usu(octets=5)], reporting_reason=E_3GPP_REPORTING_REASON_FINAL)
        ],
    )
    assert service.final and service.reporting_reason == E_3GPP_REPORTING_REASON_FINAL


def test_reporting_reason_final_at_usu_level():
    service = first_service(
        request_type=m.UPDATE,
        services=[
            m.mscc(
                10,
                used=[
                    m.usu(octets=5, reason=E_3GPP_REPORTING_REASON_THRESHOLD),
                    m.usu(octets=7, reason=E_3GPP_REPORTING_REASON_FINAL),
                ],
            )
        ],
    )
    assert service.final
    assert service.reporting_reason == E_3GPP_REPORTING_REASON_THRESHOLD
    assert service.used == 12


def test_other_reporting_reasons_are_not_final():
    service = first_service(
        request_type=m.UPDATE,
        services=[
            m.mscc(
                10,
                requested=m.rsu(),
                used=[m.usu(octets=5)],
                reporting_reason=E_3GPP_REPORTING_REASON_QUOTA_EXHAUSTED,
            )
        ],
    )
    assert not service.final
    assert service.reporting_reason == E_3GPP_REPORTING_REASON_QUOTA_EXHAUSTED


def test_termination_ends_every_service():
    services = parse(
        m.ccr(request_type=m.TERMINATE, services=[m.mscc(10, used=[m.usu(octets=1)]), m.mscc(11)])
    ).request.services
    assert [s.final for s in services] == [True, True]


def test_single_service_mode_uses_top_level_units():
    parsed = parse(
        m.ccr(
            request_type=m.UPDATE,
            requested=m.rsu(octets=m.MIB),
            used=[m.usu(octets=100), m.usu(octets=50)],
        )
    )
    assert not parsed.multiple_services
    assert parsed.request.services == [ServiceUsage(requested=m.MIB, used=150)]


def test_single_service_mode_without_units():
    parsed = parse(m.ccr())
    assert not parsed.multiple_services
    assert parsed.request.services == [ServiceUsage()]


@pytest.mark.parametrize("kind", [m.UPDATE, m.TERMINATE])
def test_update_or_termination_without_any_units_asks_for_nothing(kind):
    parsed = parse(m.ccr(request_type=kind))
    assert not parsed.multiple_services
    assert parsed.request.services == []


def test_event_without_units_is_one_service():
    parsed = parse(m.ccr(context=m.SMS, request_type=m.EVENT, multiple_services=1))
    assert not parsed.multiple_services
    assert parsed.request.services == [ServiceUsage()]


def test_multiple_services_indicator_without_mscc_asks_for_nothing():
    parsed = parse(m.ccr(multiple_services=1))
    assert parsed.multiple_services
    assert parsed.request.services == []


def test_multiple_services_indicator_zero_is_single_service_mode():
    parsed = parse(m.ccr(multiple_services=0, requested=m.rsu()))
    assert not parsed.multiple_services
    assert parsed.request.services == [ServiceUsage(requested=0)]


def test_several_msccs_keep_their_order():
    services = parse(
        m.ccr(services=[m.mscc(10, requested=m.rsu()), m.mscc(999, requested=m.rsu())])
    ).request.services
    assert [s.rating_group for s in services] == [10, 999]


# ----------------------------------------------------------------- events


@pytest.mark.parametrize(
    ("value", "action"),
    [
        (E_REQUESTED_ACTION_DIRECT_DEBITING, EventAction.DIRECT_DEBITING),
        (E_REQUESTED_ACTION_REFUND_ACCOUNT, EventAction.REFUND_ACCOUNT),
        (E_REQUESTED_ACTION_CHECK_BALANCE, EventAction.CHECK_BALANCE),
        (E_REQUESTED_ACTION_PRICE_ENQUIRY, EventAction.PRICE_ENQUIRY),
    ],
)
def test_requested_action(value, action):
    assert parse(m.ccr(request_type=m.EVENT, action=value)).request.action is action


def test_event_without_requested_action_is_direct_debiting():
    request = parse(m.ccr(context=m.SMS, request_type=m.EVENT)).request
    assert request.action is EventAction.DIRECT_DEBITING


def test_requested_action_is_ignored_outside_events():
    assert parse(m.ccr(action=E_REQUESTED_ACTION_PRICE_ENQUIRY)).request.action is None


def test_sms_event_with_recipient():
    request = parse(
        m.ccr(
            context=m.SMS,
            request_type=m.EVENT,
            action=E_REQUESTED_ACTION_DIRECT_DEBITING,
            services=[m.mscc(200, requested=m.rsu(events=1))],
            service_information=m.sms_information("+447700900123"),
        )
    ).request
    assert request.destination == "447700900123"
    assert request.services[0].requested == 1


def test_sms_recipient_address_directly_in_sms_information():
    recipient = Avp.new(AVP_TGPP_RECIPIENT_ADDRESS, VENDOR_TGPP)
    recipient.value = [Avp.new(AVP_TGPP_ADDRESS_DATA, VENDOR_TGPP, value="00491701234567")]
    info = ServiceInformation(sms_information=SmsInformation())
    info.sms_information.additional_avps = [recipient]
    message = m.ccr(context=m.SMS, request_type=m.EVENT, service_information=info)
    assert parse(message).request.destination == "491701234567"


# ----------------------------------------------------------------- service information


def test_ps_information_gives_visited_network_and_apn():
    request = parse(m.ccr(service_information=m.ps_information("20801", "internet"))).request
    assert request.visited_mcc_mnc == "20801"
    assert request.apn == "internet"


def test_home_network_without_ps_information():
    request = parse(m.ccr()).request
    assert request.visited_mcc_mnc is None and request.apn is None


@pytest.mark.parametrize(
    ("called", "digits"),
    [
        ("tel:+491701234567", "491701234567"),
        ("tel:+49-170-123.4567;phone-context=ims.example", "491701234567"),
        ("sip:+33612345678@ims.example.net;user=phone", "33612345678"),
        ("sips:+33612345678@ims.example.net", "33612345678"),
        ("+491701234567", "491701234567"),
        ("00447700900123", "447700900123"),
        ("sip:alice@ims.example.net", None),
    ],
)
def test_voice_called_party(called, digits):
    request = parse(m.ccr(context=m.VOICE, service_information=m.ims_information(called))).request
    assert request.destination == digits


@pytest.mark.parametrize(
    ("value", "digits"),
    [
        (None, None),
        ("", None),
        ("TEL:+1 (555) 0100", "15550100"),
        ("+", None),
        ("12a", None),
        ("00", None),
        ("0049301234", "49301234"),
        ("0301234", "0301234"),
        ("٣٣", None),  # digits, but not ASCII ones
    ],
)
def test_e164_digits(value, digits):
    assert e164_digits(value) == digits


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize(("code", "vendor"), CCR_MANDATORY)
def test_missing_mandatory_avp_is_5005_with_an_example_failed_avp(code, vendor):
    error = parse_error(without(m.ccr(), code))
    assert error.result_code == 5005
    [avp] = failed_avp(error)
    assert (avp.code, avp.vendor_id) == (code, vendor)
    assert set(avp.payload) <= {0}  # a zero-filled value of the type's minimum size


def test_missing_session_id_example_is_empty():
    error = parse_error(without(m.ccr(), AVP_SESSION_ID))
    assert [avp.payload for avp in failed_avp(error)] == [b""]


def test_mandatory_avps_are_the_rfc_8506_list():
    assert [code for code, _ in CCR_MANDATORY] == [
        AVP_SESSION_ID,
        AVP_ORIGIN_HOST,
        AVP_ORIGIN_REALM,
        AVP_DESTINATION_REALM,
        AVP_AUTH_APPLICATION_ID,
        AVP_SERVICE_CONTEXT_ID,
        AVP_CC_REQUEST_TYPE,
        AVP_CC_REQUEST_NUMBER,
    ]


@pytest.mark.parametrize("value", [0, 5, 255])
def test_bad_cc_request_type_is_5004_with_the_avp(value):
    error = parse_error(m.ccr(request_type=value))
    assert error.result_code == 5004
    [avp] = failed_avp(error)
    assert (avp.code, avp.value) == (AVP_CC_REQUEST_TYPE, value)


def test_bad_requested_action_is_5004_with_the_avp():
    error = parse_error(m.ccr(request_type=m.EVENT, action=9))
    assert error.result_code == 5004
    [avp] = failed_avp(error)
    assert (avp.code, avp.value) == (AVP_REQUESTED_ACTION, 9)


def test_wrong_auth_application_id_is_5004():
    message = m.ccr()
    message.auth_application_id = 16777238
    error = parse_error(message)
    assert error.result_code == 5004
    assert [a.code for a in failed_avp(error)] == [AVP_AUTH_APPLICATION_ID]


def test_subscription_id_without_data_is_5005():
    message = m.ccr(subscriptions=())
    broken = Avp.new(AVP_SUBSCRIPTION_ID)
    broken.value = [Avp.new(AVP_SUBSCRIPTION_ID_TYPE, value=0)]
    message.append_avp(broken)
    error = parse_error(message)
    assert error.result_code == 5005
    assert [a.code for a in failed_avp(error)] == [AVP_SUBSCRIPTION_ID_DATA]


def test_invalid_utf8_is_5004_with_the_avp():
    avps = [
        (AVP_SESSION_ID, "pgw.test.net;bad;1"),
        (AVP_ORIGIN_HOST, "pgw.test.net"),
        (AVP_ORIGIN_REALM, "test.net"),
        (AVP_DESTINATION_REALM, "ocs.test"),
        (AVP_AUTH_APPLICATION_ID, 4),
        (AVP_SERVICE_CONTEXT_ID, "32251@3gpp.org"),
        (AVP_CC_REQUEST_TYPE, 1),
        (AVP_CC_REQUEST_NUMBER, 0),
        (AVP_SUBSCRIPTION_ID, [(AVP_SUBSCRIPTION_ID_TYPE, 0), (AVP_SUBSCRIPTION_ID_DATA, "ZZZZ")]),
    ]
    data = raw_codec.encode_message(0xC0, 272, 4, 1, 2, avps, CODEC.types)
    data = data.replace(b"ZZZZ", b"\xff\xfe\xff\xfe")
    error = parse_error(data)
    assert error.result_code == 5004
    assert [a.code for a in failed_avp(error)] == [AVP_SUBSCRIPTION_ID_DATA]


# ----------------------------------------------------------------- validation of values
# (issue 9: every UTF8String / DiameterIdentity the OCS reads is checked, empty ids are
# refused, single-occurrence AVPs repeated are 5009)

MARKER = "QQQQ"
BAD_UTF8 = b"\xff\xfe\xfd\xfc"  # as long as MARKER, so no length changes


def with_bad_utf8(message) -> bytes:
    """``message`` with the one value containing MARKER made invalid UTF-8."""
    data = message.as_bytes()
    assert data.count(MARKER.encode()) == 1
    return data.replace(MARKER.encode(), BAD_UTF8)


def _with(message, **attributes):
    for name, value in attributes.items():
        setattr(message, name, value)
    return message


BAD_UTF8_CASES = {
    "Session-Id": (lambda: m.ccr(MARKER), AVP_SESSION_ID, 0),
    "Origin-Host": (lambda: m.ccr(origin_host=MARKER), AVP_ORIGIN_HOST, 0),
    "Origin-Realm": (lambda: _with(m.ccr(), origin_realm=MARKER.encode()), AVP_ORIGIN_REALM, 0),
    "Destination-Realm": (
        lambda: _with(m.ccr(), destination_realm=MARKER.encode()),
        AVP_DESTINATION_REALM,
        0,
    ),
    "Destination-Host": (
        lambda: _with(m.ccr(), destination_host=MARKER.encode()),
        AVP_DESTINATION_HOST,
        0,
    ),
    "Service-Context-Id": (lambda: m.ccr(context=MARKER), AVP_SERVICE_CONTEXT_ID, 0),
    "Subscription-Id-Data": (
        lambda: m.ccr(subscriptions=(("msisdn", MARKER),)),
        AVP_SUBSCRIPTION_ID_DATA,
        0,
    ),
    "User-Name": (lambda: m.ccr(user_name=MARKER), AVP_USER_NAME, 0),
    "Called-Station-Id": (
        lambda: m.ccr(service_information=m.ps_information(apn=MARKER)),
        AVP_CALLED_STATION_ID,
        0,
    ),
    "3GPP-SGSN-MCC-MNC": (
        lambda: m.ccr(service_information=m.ps_information(visited=MARKER)),
        AVP_TGPP_3GPP_SGSN_MCC_MNC,
        VENDOR_TGPP,
    ),
    "Called-Party-Address": (
        lambda: m.ccr(context=m.VOICE, service_information=m.ims_information("tel:" + MARKER)),
        AVP_TGPP_CALLED_PARTY_ADDRESS,
        VENDOR_TGPP,
    ),
    "Address-Data": (
        lambda: m.ccr(
            request_type=m.EVENT, context=m.SMS, service_information=m.sms_information(MARKER)
        ),
        AVP_TGPP_ADDRESS_DATA,
        VENDOR_TGPP,
    ),
}


@pytest.mark.parametrize("case", list(BAD_UTF8_CASES))
def test_invalid_utf8_in_any_string_the_ocs_reads_is_5004_with_that_avp(case):
    build, code, vendor = BAD_UTF8_CASES[case]
    error = parse_error(with_bad_utf8(build()))
    assert error.result_code == 5004
    [avp] = failed_avp(error)
    assert (avp.code, avp.vendor_id) == (code, vendor)
    assert BAD_UTF8 in avp.payload


def test_empty_session_id_is_5004_with_the_avp():
    error = parse_error(m.ccr(""))
    assert error.result_code == 5004
    [avp] = failed_avp(error)
    assert (avp.code, avp.payload) == (AVP_SESSION_ID, b"")


@pytest.mark.parametrize(
    ("attribute", "code"),
    [
        ("origin_host", AVP_ORIGIN_HOST),
        ("origin_realm", AVP_ORIGIN_REALM),
        ("destination_realm", AVP_DESTINATION_REALM),
        ("destination_host", AVP_DESTINATION_HOST),
    ],
)
def test_empty_diameter_identity_is_5004_with_the_avp(attribute, code):
    error = parse_error(_with(m.ccr(), **{attribute: b""}))
    assert error.result_code == 5004
    [avp] = failed_avp(error)
    assert (avp.code, avp.payload) == (code, b"")


def _appended(message, *avps: Avp) -> bytes:
    for avp in avps:
        message.append_avp(avp)
    return message.as_bytes()


def _grouped(code: int, *children: Avp, vendor: int = 0) -> Avp:
    avp = Avp.new(code, vendor)
    avp.value = list(children)
    return avp


# (what the CCR carries once, and the second occurrence appended after it)
REPEATED_CASES = {
    "Session-Id": (m.ccr, Avp.new(AVP_SESSION_ID, value="pgw.test.net;other;1")),
    "Origin-Host": (m.ccr, Avp.new(AVP_ORIGIN_HOST, value=b"other.test.net")),
    "Origin-Realm": (m.ccr, Avp.new(AVP_ORIGIN_REALM, value=b"other.net")),
    "Destination-Realm": (m.ccr, Avp.new(AVP_DESTINATION_REALM, value=b"other.net")),
    "Auth-Application-Id": (m.ccr, Avp.new(AVP_AUTH_APPLICATION_ID, value=4)),
    "Service-Context-Id": (m.ccr, Avp.new(AVP_SERVICE_CONTEXT_ID, value=m.VOICE)),
    "CC-Request-Type": (m.ccr, Avp.new(AVP_CC_REQUEST_TYPE, value=m.UPDATE)),
    "CC-Request-Number": (m.ccr, Avp.new(AVP_CC_REQUEST_NUMBER, value=7)),
    "Destination-Host": (
        lambda: _with(m.ccr(), destination_host=b"ocs.test.net"),
        Avp.new(AVP_DESTINATION_HOST, value=b"ocs2.test.net"),
    ),
    "User-Name": (lambda: m.ccr(user_name="a@b"), Avp.new(AVP_USER_NAME, value="c@d")),
    "Event-Timestamp": (
        lambda: m.ccr(timestamp=datetime.datetime(2025, 3, 3, tzinfo=datetime.UTC)),
        Avp.new(AVP_EVENT_TIMESTAMP, value=datetime.datetime(2025, 3, 4)),
    ),
    "Requested-Action": (
        lambda: m.ccr(request_type=m.EVENT, action=E_REQUESTED_ACTION_DIRECT_DEBITING),
        Avp.new(AVP_REQUESTED_ACTION, value=E_REQUESTED_ACTION_REFUND_ACCOUNT),
    ),
    "Multiple-Services-Indicator": (
        lambda: m.ccr(multiple_services=1),
        Avp.new(AVP_MULTIPLE_SERVICES_INDICATOR, value=0),
    ),
    "Termination-Cause": (
        lambda: m.ccr(
            request_type=m.TERMINATE, termination_cause=E_TERMINATION_CAUSE_DIAMETER_LOGOUT
        ),
        Avp.new(AVP_TERMINATION_CAUSE, value=E_TERMINATION_CAUSE_DIAMETER_LOGOUT),
    ),
    "Requested-Service-Unit": (
        lambda: m.ccr(requested=m.rsu(octets=1)),
        _grouped(AVP_REQUESTED_SERVICE_UNIT, Avp.new(AVP_CC_TOTAL_OCTETS, value=2)),
    ),
    "Service-Information": (
        lambda: m.ccr(service_information=m.ps_information(visited="26201")),
        _grouped(AVP_TGPP_SERVICE_INFORMATION, vendor=VENDOR_TGPP),
    ),
}


@pytest.mark.parametrize("case", list(REPEATED_CASES))
def test_single_occurrence_avp_repeated_is_5009_with_the_second(case):
    build, second = REPEATED_CASES[case]
    error = parse_error(_appended(build(), second))
    assert error.result_code == 5009
    [avp] = failed_avp(error)
    assert avp.as_bytes() == second.as_bytes()


def _mscc_avp(*children: Avp) -> Avp:
    return _grouped(AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, *children)


NESTED_REPEATED_CASES = {
    "Rating-Group in MSCC": (
        _mscc_avp(Avp.new(AVP_RATING_GROUP, value=10), Avp.new(AVP_RATING_GROUP, value=11)),
        Avp.new(AVP_RATING_GROUP, value=11),
    ),
    "Requested-Service-Unit in MSCC": (
        _mscc_avp(
            Avp.new(AVP_RATING_GROUP, value=10),
            _grouped(AVP_REQUESTED_SERVICE_UNIT),
            _grouped(AVP_REQUESTED_SERVICE_UNIT, Avp.new(AVP_CC_TOTAL_OCTETS, value=5)),
        ),
        _grouped(AVP_REQUESTED_SERVICE_UNIT, Avp.new(AVP_CC_TOTAL_OCTETS, value=5)),
    ),
    "CC-Total-Octets in a USU": (
        _mscc_avp(
            Avp.new(AVP_RATING_GROUP, value=10),
            _grouped(
                AVP_USED_SERVICE_UNIT,
                Avp.new(AVP_CC_TOTAL_OCTETS, value=5),
                Avp.new(AVP_CC_TOTAL_OCTETS, value=6),
            ),
        ),
        Avp.new(AVP_CC_TOTAL_OCTETS, value=6),
    ),
    "Subscription-Id-Data": (
        _grouped(
            AVP_SUBSCRIPTION_ID,
            Avp.new(AVP_SUBSCRIPTION_ID_TYPE, value=0),
            Avp.new(AVP_SUBSCRIPTION_ID_DATA, value="491700000002"),
            Avp.new(AVP_SUBSCRIPTION_ID_DATA, value="491700000003"),
        ),
        Avp.new(AVP_SUBSCRIPTION_ID_DATA, value="491700000003"),
    ),
    "3GPP-SGSN-MCC-MNC in PS-Information": (
        _grouped(
            AVP_TGPP_SERVICE_INFORMATION,
            _grouped(
                AVP_TGPP_PS_INFORMATION,
                Avp.new(AVP_TGPP_3GPP_SGSN_MCC_MNC, VENDOR_TGPP, value="26201"),
                Avp.new(AVP_TGPP_3GPP_SGSN_MCC_MNC, VENDOR_TGPP, value="20801"),
                vendor=VENDOR_TGPP,
            ),
            vendor=VENDOR_TGPP,
        ),
        Avp.new(AVP_TGPP_3GPP_SGSN_MCC_MNC, VENDOR_TGPP, value="20801"),
    ),
}


@pytest.mark.parametrize("case", list(NESTED_REPEATED_CASES))
def test_single_occurrence_avp_repeated_inside_a_group_is_5009_with_the_second(case):
    container, second = NESTED_REPEATED_CASES[case]
    error = parse_error(_appended(m.ccr(multiple_services=1), container))
    assert error.result_code == 5009
    [avp] = failed_avp(error)
    assert avp.as_bytes() == second.as_bytes()


def test_avps_the_grammar_allows_many_times_may_repeat():
    message = m.ccr(
        subscriptions=(("msisdn", "491700000001"), ("imsi", "001010000000001")),
        services=[
            m.mscc(10, requested=m.rsu(), used=[m.usu(octets=1), m.usu(seconds=2)]),
            m.mscc(20, service_identifier=5, used=[m.usu(octets=3)]),
        ],
    )
    unknown = Avp(code=987654, payload=b"\x00\x00\x00\x07")  # *[ AVP ], twice
    parsed = parse(_appended(message, unknown, unknown))
    assert [s.rating_group for s in parsed.request.services] == [10, 20]
    assert parsed.request.identities == ["msisdn:491700000001", "imsi:001010000000001"]


def test_missing_avp_comes_before_repeated_and_repeated_before_invalid():
    message = m.ccr("")
    message.append_avp(Avp.new(AVP_SESSION_ID, value="again"))
    assert parse_error(message).result_code == 5009  # repeated before the empty value
    assert parse_error(without(message, AVP_CC_REQUEST_TYPE)).result_code == 5005
