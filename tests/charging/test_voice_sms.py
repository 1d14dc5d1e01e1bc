"""IMS voice (Ro, 32260, CC-Time) and SMS events (Ro, 32274) end to end: destination
prefixes, time bands, charging increments, price enquiry and balance check."""

from __future__ import annotations

import datetime

import pytest
from diameter.message.constants import (
    E_CHECK_BALANCE_RESULT_ENOUGH_CREDIT,
    E_CHECK_BALANCE_RESULT_NO_CREDIT,
    E_REQUESTED_ACTION_CHECK_BALANCE,
    E_REQUESTED_ACTION_DIRECT_DEBITING,
    E_REQUESTED_ACTION_PRICE_ENQUIRY,
)

from tests.charging import messages as m
from tests.charging.conftest import EUR

WEDNESDAY = datetime.datetime(2025, 3, 5, 10, 0, tzinfo=datetime.UTC)
SATURDAY = datetime.datetime(2025, 3, 8, 10, 0, tzinfo=datetime.UTC)
MSISDN = "msisdn:491700000001"


async def call(ocs, called: str, seconds: int, when=WEDNESDAY) -> int:
    """One call of ``seconds`` to ``called``; returns what it cost in micro-units."""
    account = await ocs.account("caller", MSISDN)
    ims = await ocs.connect("scscf.test.net")
    sid = f"scscf.test.net;call;{called}"
    info = m.ims_information(called)
    cca = await ims.ccr(
        sid,
        m.INITIAL,
        0,
        context=m.VOICE,
        services=[m.mscc(100, requested=m.rsu())],
        service_information=info,
        timestamp=when,
    )
    assert cca.result_code == 2001
    [mscc] = cca.multiple_services_credit_control
    assert mscc.granted_service_unit.cc_time == 300  # the default voice grant
    assert mscc.granted_service_unit.cc_total_octets is None
    assert mscc.time_quota_threshold == 60
    cca = await ims.ccr(
        sid,
        m.TERMINATE,
        1,
        context=m.VOICE,
        services=[m.mscc(100, used=[m.usu(seconds=seconds)])],
        service_information=info,
        timestamp=when,
    )
    assert cca.result_code == 2001
    bucket = await ocs.main_bucket(account)
    assert bucket.reserved == 0
    return 10 * EUR - bucket.amount


@pytest.mark.parametrize(
    ("called", "seconds", "cost"),
    [
        ("tel:+4930123456", 61, 200_000),  # national, 0.10 EUR/min, per minute: 2 min
        ("tel:+4930123456", 60, 100_000),
        ("sip:+4917012345678@ims.test.net;user=phone", 59, 150_000),  # mobile 0.15 EUR/min
        ("tel:+33612345678", 10, 250_000),  # international 0.50 EUR/min, first 30 s
        ("tel:+33612345678", 31, 300_000),  # 30 s + one 6 s step = 36 s
        ("tel:+33612345678", 61, 550_000),  # 30 s + 6 steps = 66 s
    ],
)
async def test_voice_call_prices(ocs, called, seconds, cost):
    assert await call(ocs, called, seconds) == cost


async def test_weekend_national_calls_are_half_price(ocs):
    assert await call(ocs, "tel:+4930123456", 61, when=SATURDAY) == 100_000


async def test_voice_grant_is_cut_to_the_balance_with_final_unit(ocs):
    await ocs.account("caller", MSISDN, money=250_000)  # 2.5 minutes national
    ims = await ocs.connect("scscf.test.net")
    cca = await ims.ccr(
        "scscf.test.net;call;low",
        context=m.VOICE,
        services=[m.mscc(100, requested=m.rsu(seconds=600))],
        service_information=m.ims_information("tel:+4930123456"),
        timestamp=WEDNESDAY,
    )
    [mscc] = cca.multiple_services_credit_control
    assert mscc.granted_service_unit.cc_time == 120
    assert mscc.final_unit_indication is not None


# ------------------------------------------------------------------ SMS


async def sms(ocs, recipient: str, action=E_REQUESTED_ACTION_DIRECT_DEBITING, number=0):
    smsc = await ocs.connect("smsc.test.net")
    return await smsc.ccr(
        f"smsc.test.net;sms;{recipient}",
        m.EVENT,
        number,
        context=m.SMS,
        action=action,
        services=[m.mscc(200, requested=m.rsu(events=1))],
        service_information=m.sms_information(recipient),
        timestamp=WEDNESDAY,
    )


@pytest.mark.parametrize(
    ("recipient", "cost"),
    [("+491701234567", 90_000), ("+447700900123", 290_000), ("00447700900123", 290_000)],
)
async def test_sms_direct_debit(ocs, recipient, cost):
    account = await ocs.account("texter", MSISDN)
    cca = await sms(ocs, recipient)
    assert cca.result_code == 2001
    assert (cca.cc_request_type, cca.cc_request_number) == (m.EVENT, 0)
    [mscc] = cca.multiple_services_credit_control
    assert mscc.result_code == 2001
    assert mscc.granted_service_unit.cc_service_specific_units == 1
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (10 * EUR - cost, 0)


async def test_sms_that_cannot_be_afforded_is_4012(ocs):
    account = await ocs.account("texter", MSISDN, money=50_000)
    cca = await sms(ocs, "+491701234567")
    assert cca.result_code == 4012
    assert cca.multiple_services_credit_control[0].result_code == 4012
    assert (await ocs.main_bucket(account)).amount == 50_000


async def test_sms_price_enquiry(ocs):
    account = await ocs.account("texter", MSISDN)
    cca = await sms(ocs, "+447700900123", E_REQUESTED_ACTION_PRICE_ENQUIRY)
    assert cca.result_code == 2001
    assert cca.cost_information.unit_value.value_digits == 29
    assert cca.cost_information.unit_value.exponent == -2
    assert cca.cost_information.currency_code == 978  # EUR
    assert (await ocs.main_bucket(account)).amount == 10 * EUR


@pytest.mark.parametrize(
    ("money", "expected"),
    [(10 * EUR, E_CHECK_BALANCE_RESULT_ENOUGH_CREDIT), (10_000, E_CHECK_BALANCE_RESULT_NO_CREDIT)],
)
async def test_sms_balance_check(ocs, money, expected):
    account = await ocs.account("texter", MSISDN, money=money)
    cca = await sms(ocs, "+491701234567", E_REQUESTED_ACTION_CHECK_BALANCE)
    assert cca.result_code == 2001
    assert cca.check_balance_result == expected
    assert (await ocs.main_bucket(account)).amount == money


async def test_sms_for_an_unknown_subscriber_is_5030(ocs):
    await ocs.account("texter", MSISDN)
    smsc = await ocs.connect("smsc.test.net")
    cca = await smsc.ccr(
        "smsc.test.net;sms;x",
        m.EVENT,
        0,
        context=m.SMS,
        subscriptions=(("msisdn", "499999999999"),),
        services=[m.mscc(200, requested=m.rsu(events=1))],
        service_information=m.sms_information("+491701234567"),
    )
    assert cca.result_code == 5030
