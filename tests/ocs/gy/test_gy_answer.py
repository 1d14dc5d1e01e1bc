"""ChargingResult -> CCA, read back by python-diameter (the independent reference)."""

from __future__ import annotations

import pytest
from diameter.message.constants import (
    AVP_COST_INFORMATION,
    AVP_CURRENCY_CODE,
    AVP_EXPONENT,
    AVP_RATING_GROUP,
    AVP_SERVICE_CONTEXT_ID,
    AVP_UNIT_VALUE,
    AVP_VALUE_DIGITS,
    E_CHECK_BALANCE_RESULT_ENOUGH_CREDIT,
    E_CHECK_BALANCE_RESULT_NO_CREDIT,
    E_FINAL_UNIT_ACTION_REDIRECT,
    E_FINAL_UNIT_ACTION_TERMINATE,
    E_REDIRECT_ADDRESS_TYPE_IPV4_ADDRESS,
    E_REDIRECT_ADDRESS_TYPE_IPV6_ADDRESS,
    E_REDIRECT_ADDRESS_TYPE_SIP_URI,
    E_REDIRECT_ADDRESS_TYPE_URL,
    E_REQUESTED_ACTION_CHECK_BALANCE,
    E_REQUESTED_ACTION_DIRECT_DEBITING,
    E_REQUESTED_ACTION_PRICE_ENQUIRY,
    E_REQUESTED_ACTION_REFUND_ACCOUNT,
)

from ocs.gy.translation import (
    build_cca,
    cost_information,
    parse_ccr,
    redirect_address_type,
    unit_value,
)
from protocol.messages import Codec, LocalIdentity
from quota_engine.model import ChargingResult, Outcome, ServiceGrant, Unit
from tests.charging import messages as m

CODEC = Codec(LocalIdentity("ocs.test.net", "test.net"))


def answer(request, result: ChargingResult):
    """(python-diameter CCA, our Answer) for ``request`` answered with ``result``."""
    decoded = CODEC.decode(request.as_bytes())
    built = build_cca(parse_ccr(CODEC, decoded, 1_750_000_000), result)
    data = CODEC.encode_answer(decoded.header, built, request.session_id)
    return m.answer_of(data), built


def ok(*grants: ServiceGrant, **fields) -> ChargingResult:
    return ChargingResult(Outcome.OK, list(grants), **fields)


def grant(rating_group=10, outcome=Outcome.OK, **fields) -> ServiceGrant:
    return ServiceGrant(rating_group, fields.pop("service_identifier", None), outcome, **fields)


DATA_I = m.ccr("pgw.test.net;a;1", services=[m.mscc(10, requested=m.rsu())])


def test_data_grant_with_every_quota_avp():
    cca, _ = answer(
        m.ccr(
            "pgw.test.net;a;1",
            m.INITIAL,
            0,
            services=[m.mscc(10, service_identifier=7, requested=m.rsu())],
        ),
        ok(
            grant(
                10,
                service_identifier=7,
                unit=Unit.OCTETS,
                granted=5 * m.MIB,
                validity_time=3600,
                quota_threshold=m.MIB,
                quota_holding_time=300,
            )
        ),
    )
    assert cca.result_code == 2001
    assert cca.session_id == "pgw.test.net;a;1"
    assert cca.auth_application_id == 4
    assert (cca.cc_request_type, cca.cc_request_number) == (m.INITIAL, 0)
    assert cca.origin_host == b"ocs.test.net"
    [mscc] = cca.multiple_services_credit_control
    assert mscc.rating_group == 10
    assert mscc.service_identifier == [7]
    assert mscc.result_code == 2001
    assert mscc.granted_service_unit.cc_total_octets == 5 * m.MIB
    assert mscc.granted_service_unit.cc_time is None
    assert mscc.validity_time == 3600
    assert mscc.volume_quota_threshold == m.MIB
    assert mscc.time_quota_threshold is None
    assert mscc.quota_holding_time == 300
    assert mscc.final_unit_indication is None
    assert cca.granted_service_unit is None  # MSCC mode: nothing at the top level


def test_voice_grant_is_cc_time_with_time_quota_threshold():
    cca, _ = answer(
        m.ccr(context=m.VOICE, services=[m.mscc(100, requested=m.rsu())]),
        ok(grant(100, unit=Unit.SECONDS, granted=300, quota_threshold=30)),
    )
    [mscc] = cca.multiple_services_credit_control
    assert mscc.granted_service_unit.cc_time == 300
    assert mscc.granted_service_unit.cc_total_octets is None
    assert mscc.time_quota_threshold == 30
    assert mscc.volume_quota_threshold is None


def test_sms_grant_is_service_specific_units_with_unit_quota_threshold():
    cca, _ = answer(
        m.ccr(context=m.SMS, services=[m.mscc(200, requested=m.rsu(events=1))]),
        ok(grant(200, unit=Unit.EVENTS, granted=1, quota_threshold=0)),
    )
    [mscc] = cca.multiple_services_credit_control
    assert mscc.granted_service_unit.cc_service_specific_units == 1
    assert mscc.unit_quota_threshold == 0


def test_grant_without_unit_uses_the_context_unit():
    cca, _ = answer(
        m.ccr(context=m.VOICE, services=[m.mscc(100, requested=m.rsu())]),
        ok(grant(100, granted=60)),
    )
    assert cca.multiple_services_credit_control[0].granted_service_unit.cc_time == 60


def test_nothing_granted_means_no_gsu():
    cca, _ = answer(
        m.ccr(request_type=m.TERMINATE, services=[m.mscc(10, used=[m.usu(octets=10)])]),
        ok(grant(10, unit=Unit.OCTETS, granted=0)),
    )
    [mscc] = cca.multiple_services_credit_control
    assert mscc.granted_service_unit is None
    assert mscc.result_code == 2001


def test_unsigned32_values_are_clamped():
    cca, _ = answer(
        m.ccr(context=m.VOICE, services=[m.mscc(100, requested=m.rsu())]),
        ok(grant(100, unit=Unit.SECONDS, granted=2**40, validity_time=2**33)),
    )
    [mscc] = cca.multiple_services_credit_control
    assert mscc.granted_service_unit.cc_time == 2**32 - 1
    assert mscc.validity_time == 2**32 - 1


# ----------------------------------------------------------------- result codes


def test_credit_limit_on_one_mscc_keeps_2001_and_never_carries_fui():
    cca, _ = answer(
        m.ccr(services=[m.mscc(10, requested=m.rsu()), m.mscc(999, requested=m.rsu())]),
        ok(
            grant(
                10,
                Outcome.CREDIT_LIMIT_REACHED,
                unit=Unit.OCTETS,
                final_unit=True,
                final_action="terminate",
            ),
            grant(999, Outcome.NOT_APPLICABLE),
        ),
    )
    assert cca.result_code == 2001
    by_group = m.mscc_by_group(cca)
    assert by_group[10].result_code == 4012
    assert by_group[10].granted_service_unit is None
    assert by_group[10].final_unit_indication is None
    assert by_group[999].result_code == 4011


def test_every_service_zero_rated_is_4011():
    cca, _ = answer(
        m.ccr(services=[m.mscc(999, requested=m.rsu())]),
        ok(grant(999, Outcome.NOT_APPLICABLE)),
    )
    assert cca.result_code == 4011
    assert cca.multiple_services_credit_control[0].result_code == 4011


def test_single_service_credit_limit_is_4012_at_the_top():
    cca, _ = answer(
        m.ccr(requested=m.rsu()),
        ok(grant(None, Outcome.CREDIT_LIMIT_REACHED, unit=Unit.OCTETS)),
    )
    assert cca.result_code == 4012
    assert cca.granted_service_unit is None
    assert cca.multiple_services_credit_control == []


def test_single_service_grant_at_the_top_level():
    cca, _ = answer(
        m.ccr(requested=m.rsu(octets=m.MIB)),
        ok(
            grant(
                None,
                unit=Unit.OCTETS,
                granted=m.MIB,
                validity_time=600,
                final_unit=True,
                final_action="terminate",
            )
        ),
    )
    assert cca.result_code == 2001
    assert cca.granted_service_unit.cc_total_octets == m.MIB
    assert cca.validity_time == 600
    assert cca.final_unit_indication.final_unit_action == E_FINAL_UNIT_ACTION_TERMINATE
    assert cca.multiple_services_credit_control == []


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        (Outcome.UNKNOWN_SUBSCRIBER, 5030),
        (Outcome.SERVICE_DENIED, 4010),
        (Outcome.UNKNOWN_SESSION, 5002),
        (Outcome.OUT_OF_ORDER, 5012),
        (Outcome.CREDIT_LIMIT_REACHED, 4012),
    ],
)
def test_request_level_outcomes(outcome, code):
    cca, built = answer(DATA_I, ChargingResult(outcome, [], message="detail"))
    assert cca.result_code == code
    assert cca.multiple_services_credit_control == []
    assert built.error_message == "detail"
    assert (cca.cc_request_type, cca.cc_request_number) == (m.INITIAL, 0)


def test_success_carries_no_error_message():
    _, built = answer(DATA_I, ok(grant(10, granted=1), message="ignored"))
    assert built.error_message is None


def test_no_tariff_on_one_mscc_is_5031_there_only():
    cca, built = answer(
        m.ccr(services=[m.mscc(10, requested=m.rsu()), m.mscc(77, requested=m.rsu())]),
        ok(grant(10, granted=m.MIB, unit=Unit.OCTETS), grant(77, Outcome.NO_TARIFF)),
    )
    assert cca.result_code == 2001
    assert m.mscc_by_group(cca)[77].result_code == 5031
    assert built.failed_avp is None


def test_single_service_rating_failure_names_the_service_context():
    cca, _ = answer(m.ccr(requested=m.rsu()), ok(grant(None, Outcome.NO_TARIFF)))
    assert cca.result_code == 5031
    [failed] = m.failed_avps(cca)
    assert (failed.code, failed.value) == (AVP_SERVICE_CONTEXT_ID, "32251@3gpp.org")


def test_request_level_rating_failure_names_the_unratable_rating_group():
    cca, _ = answer(
        m.ccr(services=[m.mscc(77, requested=m.rsu())]),
        ChargingResult(Outcome.NO_TARIFF, [grant(77, Outcome.NO_TARIFF)]),
    )
    assert cca.result_code == 5031
    [failed] = m.failed_avps(cca)
    assert (failed.code, failed.value) == (AVP_RATING_GROUP, 77)


# ----------------------------------------------------------------- final unit indication


def test_final_unit_terminate():
    cca, _ = answer(
        DATA_I,
        ok(grant(10, granted=m.MIB, unit=Unit.OCTETS, final_unit=True, final_action="terminate")),
    )
    fui = cca.multiple_services_credit_control[0].final_unit_indication
    assert fui.final_unit_action == E_FINAL_UNIT_ACTION_TERMINATE
    assert fui.redirect_server is None


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("http://topup.operator.example/", E_REDIRECT_ADDRESS_TYPE_URL),
        ("10.0.0.1", E_REDIRECT_ADDRESS_TYPE_IPV4_ADDRESS),
        ("2001:db8::1", E_REDIRECT_ADDRESS_TYPE_IPV6_ADDRESS),
        ("sip:topup@ims.example.net", E_REDIRECT_ADDRESS_TYPE_SIP_URI),
    ],
)
def test_final_unit_redirect(address, kind):
    assert redirect_address_type(address) == kind
    cca, _ = answer(
        DATA_I,
        ok(
            grant(
                10,
                granted=m.MIB,
                unit=Unit.OCTETS,
                final_unit=True,
                final_action="redirect",
                redirect_address=address,
            )
        ),
    )
    fui = cca.multiple_services_credit_control[0].final_unit_indication
    assert fui.final_unit_action == E_FINAL_UNIT_ACTION_REDIRECT
    assert fui.redirect_server.redirect_address_type == kind
    assert fui.redirect_server.redirect_server_address == address


def test_redirect_without_an_address_falls_back_to_terminate():
    cca, _ = answer(DATA_I, ok(grant(10, granted=1, final_unit=True, final_action="redirect")))
    fui = cca.multiple_services_credit_control[0].final_unit_indication
    assert fui.final_unit_action == E_FINAL_UNIT_ACTION_TERMINATE


# ----------------------------------------------------------------- events


def sms_event(action=E_REQUESTED_ACTION_DIRECT_DEBITING, services=True):
    return m.ccr(
        "smsc.test.net;e;1",
        m.EVENT,
        0,
        context=m.SMS,
        action=action,
        services=[m.mscc(200, requested=m.rsu(events=1))] if services else (),
        requested=None if services else m.rsu(events=1),
        service_information=m.sms_information("+491701234567"),
    )


def test_direct_debit_event_grants_the_debited_units():
    cca, _ = answer(sms_event(), ok(grant(200, unit=Unit.EVENTS, granted=1), cost=90_000))
    assert cca.result_code == 2001
    assert (
        cca.multiple_services_credit_control[0].granted_service_unit.cc_service_specific_units == 1
    )
    assert cca.cost_information is None


def test_event_that_cannot_be_afforded_is_4012_at_the_top():
    cca, _ = answer(sms_event(), ok(grant(200, Outcome.CREDIT_LIMIT_REACHED)))
    assert cca.result_code == 4012
    assert cca.multiple_services_credit_control[0].result_code == 4012


def test_single_service_event_grants_at_the_top_level():
    cca, _ = answer(sms_event(services=False), ok(grant(None, unit=Unit.EVENTS, granted=1)))
    assert cca.granted_service_unit.cc_service_specific_units == 1


def test_price_enquiry_returns_cost_information():
    cca, _ = answer(
        sms_event(E_REQUESTED_ACTION_PRICE_ENQUIRY),
        ok(grant(200, unit=Unit.EVENTS, granted=1), cost=290_000, currency="EUR"),
    )
    assert cca.result_code == 2001
    assert cca.cost_information.unit_value.value_digits == 29
    assert cca.cost_information.unit_value.exponent == -2
    assert cca.cost_information.currency_code == 978
    assert cca.multiple_services_credit_control[0].granted_service_unit is None


def test_price_enquiry_in_an_unknown_currency_has_no_cost_information():
    cca, _ = answer(
        sms_event(E_REQUESTED_ACTION_PRICE_ENQUIRY), ok(grant(200), cost=1, currency="XTS")
    )
    assert cca.cost_information is None


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (ok(grant(200)), E_CHECK_BALANCE_RESULT_ENOUGH_CREDIT),
        (ChargingResult(Outcome.INSUFFICIENT_BALANCE, []), E_CHECK_BALANCE_RESULT_NO_CREDIT),
        (ok(grant(200, Outcome.INSUFFICIENT_BALANCE)), E_CHECK_BALANCE_RESULT_NO_CREDIT),
    ],
)
def test_check_balance(result, expected):
    cca, _ = answer(sms_event(E_REQUESTED_ACTION_CHECK_BALANCE), result)
    assert cca.result_code == 2001
    assert cca.check_balance_result == expected
    assert cca.cost_information is None
    assert all(x.granted_service_unit is None for x in cca.multiple_services_credit_control)


def test_check_balance_for_an_unknown_subscriber_has_no_balance_result():
    cca, _ = answer(
        sms_event(E_REQUESTED_ACTION_CHECK_BALANCE),
        ChargingResult(Outcome.UNKNOWN_SUBSCRIBER, []),
    )
    assert cca.result_code == 5030
    assert cca.check_balance_result is None


def test_refund_grants_nothing():
    cca, _ = answer(sms_event(E_REQUESTED_ACTION_REFUND_ACCOUNT), ok(grant(200, granted=1)))
    assert cca.result_code == 2001
    assert cca.multiple_services_credit_control[0].granted_service_unit is None


@pytest.mark.parametrize(
    ("micro", "digits", "exponent"),
    [
        (0, 0, 0),
        (1, 1, -6),
        (90_000, 9, -2),
        (1_000_000, 1, 0),
        (12_340_000, 1234, -2),
        (10_000_000, 10, 0),
    ],
)
def test_unit_value(micro, digits, exponent):
    assert unit_value(micro) == (digits, exponent)


def test_cost_information_shape():
    assert cost_information(1_500_000, "USD") == (
        AVP_COST_INFORMATION,
        [
            (AVP_UNIT_VALUE, [(AVP_VALUE_DIGITS, 15), (AVP_EXPONENT, -1)]),
            (AVP_CURRENCY_CODE, 840),  # ISO 4217 numeric code of USD
        ],
    )


def test_answers_are_deterministic():
    result = ok(grant(10, granted=m.MIB, unit=Unit.OCTETS, validity_time=60))
    decoded = CODEC.decode(DATA_I.as_bytes())
    first = CODEC.encode_answer(decoded.header, build_cca(parse_ccr(CODEC, decoded, 1), result))
    again = CODEC.encode_answer(decoded.header, build_cca(parse_ccr(CODEC, decoded, 2), result))
    assert first == again
