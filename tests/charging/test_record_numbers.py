"""The rated records carry the number called (voice: called party; SMS: recipient) and
the APN (data), as the network element sent them in the CCR (issue 12: the itemised
invoice's "Number / APN"), also when only the CCR-Initial carried them."""

from __future__ import annotations

import datetime

from diameter.message.constants import (
    E_REQUESTED_ACTION_DIRECT_DEBITING,
    E_REQUESTED_ACTION_REFUND_ACCOUNT,
)

from quota_engine.store.records import read_records
from tests.charging import messages as m
from tests.charging.conftest import EUR

WEDNESDAY = datetime.datetime(2025, 3, 5, 10, 0, tzinfo=datetime.UTC)
MSISDN = "msisdn:491700000001"


async def test_voice_record_carries_the_called_party_of_the_ccr_initial(ocs):
    account = await ocs.account("caller", MSISDN)
    ims = await ocs.connect("scscf.test.net")
    sid = "scscf.test.net;call;1"
    cca = await ims.ccr(
        sid,
        m.INITIAL,
        0,
        context=m.VOICE,
        services=[m.mscc(100, requested=m.rsu())],
        service_information=m.ims_information("tel:+4930123456"),
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    # the CCR-T carries no Service-Information: the session's context is recorded
    cca = await ims.ccr(
        sid,
        m.TERMINATE,
        1,
        context=m.VOICE,
        services=[m.mscc(100, used=[m.usu(seconds=61)])],
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    [record] = await read_records(ocs.redis, account)
    assert (record["cause"], record["charged"]) == ("normal", 200_000)
    assert (record["called"], record["apn"]) == ("4930123456", None)
    assert record["destination"] == "national"


async def test_data_record_carries_the_apn(ocs):
    account = await ocs.account("surfer", MSISDN, money=25 * EUR)
    pgw = await ocs.connect()
    sid = "pgw.test.net;data;1"
    cca = await pgw.ccr(
        sid,
        m.INITIAL,
        0,
        services=[m.mscc(10, requested=m.rsu(octets=m.MIB))],
        service_information=m.ps_information("26201", "internet.test"),
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    cca = await pgw.ccr(
        sid,
        m.TERMINATE,
        1,
        services=[m.mscc(10, used=[m.usu(octets=m.MIB)])],
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    [record] = await read_records(ocs.redis, account)
    assert (record["called"], record["apn"]) == (None, "internet.test")
    assert record["used"] == {"octets": m.MIB}


async def sms(ocs, number: int, action: int, recipient: str | None):
    smsc = await ocs.connect("smsc.test.net")
    info = None if recipient is None else m.sms_information(recipient)
    return await smsc.ccr(
        "smsc.test.net;sms;1",
        m.EVENT,
        number,
        context=m.SMS,
        action=action,
        services=[m.mscc(200, requested=m.rsu(events=1))],
        service_information=info,
        timestamp=WEDNESDAY,
    )


async def test_sms_and_refund_records_carry_the_recipient(ocs):
    account = await ocs.account("texter", MSISDN)
    cca = await sms(ocs, 0, E_REQUESTED_ACTION_DIRECT_DEBITING, "+491701234567")
    assert cca.result_code == 2001
    cca = await sms(ocs, 1, E_REQUESTED_ACTION_REFUND_ACCOUNT, "+491701234567")
    assert cca.result_code == 2001
    event, refund = await read_records(ocs.redis, account)
    assert (event["cause"], event["charged"]) == ("event", 90_000)
    assert (refund["cause"], refund["charged"]) == ("refund", -90_000)
    assert (event["called"], event["apn"]) == ("491701234567", None)
    assert (refund["called"], refund["apn"]) == ("491701234567", None)
