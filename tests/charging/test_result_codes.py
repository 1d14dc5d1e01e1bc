"""Every Result-Code of the credit-control answer, end to end over TCP."""

from __future__ import annotations

import datetime

from diameter.message import Message
from diameter.message.constants import (
    AVP_CC_REQUEST_TYPE,
    AVP_ERROR_MESSAGE,
    AVP_RATING_GROUP,
    AVP_SERVICE_CONTEXT_ID,
    AVP_SUBSCRIPTION_ID,
    AVP_SUBSCRIPTION_ID_TYPE,
)

from tests.charging import messages as m
from tests.charging.conftest import EUR

WEDNESDAY = datetime.datetime(2025, 3, 5, 10, 0, tzinfo=datetime.UTC)
MSISDN = "msisdn:491700000001"


def data_request():
    return [m.mscc(10, requested=m.rsu())]


async def test_2001(ocs):
    await ocs.account("alice", MSISDN)
    pgw = await ocs.connect()
    cca = await pgw.ccr("pgw.test.net;rc;2001", services=data_request(), timestamp=WEDNESDAY)
    assert cca.result_code == 2001
    assert cca.origin_host == b"ocs.test.net"
    assert cca.session_id == "pgw.test.net;rc;2001"


async def test_identities_are_tried_in_order(ocs):
    await ocs.account("alice", "imsi:001010000000001")
    pgw = await ocs.connect()
    cca = await pgw.ccr(
        "pgw.test.net;rc;imsi",
        subscriptions=(("msisdn", "491709999999"), ("imsi", "001010000000001")),
        services=data_request(),
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001


async def test_5030_unknown_subscriber(ocs):
    pgw = await ocs.connect()
    cca = await pgw.ccr("pgw.test.net;rc;5030", services=data_request())
    assert cca.result_code == 5030
    assert cca.multiple_services_credit_control == []


async def test_5030_without_any_identity(ocs):
    pgw = await ocs.connect()
    cca = await pgw.ccr("pgw.test.net;rc;noid", subscriptions=(), services=data_request())
    assert cca.result_code == 5030


async def test_4010_barred_account(ocs):
    await ocs.account("alice", MSISDN, status="barred")
    pgw = await ocs.connect()
    cca = await pgw.ccr("pgw.test.net;rc;4010", services=data_request())
    assert cca.result_code == 4010


async def test_4010_suspended_account(ocs):
    await ocs.account("alice", MSISDN, status="suspended")
    pgw = await ocs.connect()
    cca = await pgw.ccr("pgw.test.net;rc;4010s", services=data_request())
    assert cca.result_code == 4010


async def test_4011_zero_rated_only(ocs):
    await ocs.account("alice", MSISDN)
    pgw = await ocs.connect()
    cca = await pgw.ccr(
        "pgw.test.net;rc;4011", services=[m.mscc(999, requested=m.rsu())], timestamp=WEDNESDAY
    )
    assert cca.result_code == 4011


async def test_4012_in_the_mscc_and_2001_at_the_top(ocs):
    await ocs.account("alice", MSISDN, money=0)
    pgw = await ocs.connect()
    cca = await pgw.ccr("pgw.test.net;rc;4012", services=data_request(), timestamp=WEDNESDAY)
    assert cca.result_code == 2001
    assert cca.multiple_services_credit_control[0].result_code == 4012


async def test_5031_unknown_service(ocs):
    await ocs.account("alice", MSISDN)
    pgw = await ocs.connect()
    cca = await pgw.ccr(
        "pgw.test.net;rc;5031", services=[m.mscc(4242, requested=m.rsu())], timestamp=WEDNESDAY
    )
    assert cca.result_code == 2001
    assert cca.multiple_services_credit_control[0].result_code == 5031


async def test_5002_update_for_an_unknown_session(ocs):
    await ocs.account("alice", MSISDN)
    pgw = await ocs.connect()
    cca = await pgw.ccr(
        "pgw.test.net;rc;nosuch",
        m.UPDATE,
        1,
        services=[m.mscc(10, used=[m.usu(octets=1)])],
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 5002


async def test_5002_termination_of_an_unknown_session(ocs):
    await ocs.account("alice", MSISDN)
    pgw = await ocs.connect()
    cca = await pgw.ccr("pgw.test.net;rc;gone", m.TERMINATE, 3, timestamp=WEDNESDAY)
    assert cca.result_code == 5002
    assert (cca.cc_request_type, cca.cc_request_number) == (m.TERMINATE, 3)


async def test_5012_for_an_older_request_number(ocs):
    account = await ocs.account("alice", MSISDN)
    pgw = await ocs.connect()
    sid = "pgw.test.net;rc;order"
    await pgw.ccr(sid, m.INITIAL, 0, services=data_request(), timestamp=WEDNESDAY)
    cca = await pgw.ccr(
        sid, m.UPDATE, 2, services=[m.mscc(10, used=[m.usu(octets=m.MIB)])], timestamp=WEDNESDAY
    )
    assert cca.result_code == 2001
    before = await ocs.main_bucket(account)
    stale = await pgw.ccr(
        sid, m.UPDATE, 1, services=[m.mscc(10, used=[m.usu(octets=m.MIB)])], timestamp=WEDNESDAY
    )
    assert stale.result_code == 5012
    [message] = stale.find_avps((AVP_ERROR_MESSAGE, 0))
    assert "CC-Request-Number" in message.value
    assert (stale.cc_request_type, stale.cc_request_number) == (m.UPDATE, 1)
    assert await ocs.main_bucket(account) == before


async def test_5004_bad_cc_request_type(ocs):
    pgw = await ocs.connect()
    cca = await pgw.ccr("pgw.test.net;rc;5004", request_type=7)
    assert cca.result_code == 5004
    [failed] = m.failed_avps(cca)
    assert (failed.code, failed.value) == (AVP_CC_REQUEST_TYPE, 7)
    assert cca.cc_request_type == 7
    assert ocs.application.calls == 1  # it reached the application, not the engine


async def test_5005_missing_service_context_id(ocs):
    pgw = await ocs.connect()
    request = m.ccr("pgw.test.net;rc;5005")
    broken = Message(request.header, [a for a in request.avps if a.code != AVP_SERVICE_CONTEXT_ID])
    cca = await pgw.request(broken.as_bytes())
    assert cca.result_code == 5005
    [failed] = m.failed_avps(cca)
    assert failed.code == AVP_SERVICE_CONTEXT_ID


async def test_5005_subscription_id_without_its_type(ocs):
    pgw = await ocs.connect()
    request = m.ccr("pgw.test.net;rc;5005b", subscriptions=())
    subscription = next(a for a in m.ccr().avps if a.code == AVP_SUBSCRIPTION_ID)
    subscription.value = [a for a in subscription.value if a.code != AVP_SUBSCRIPTION_ID_TYPE]
    request.append_avp(subscription)
    cca = await pgw.request(request)
    assert cca.result_code == 5005
    assert [a.code for a in m.failed_avps(cca)] == [AVP_SUBSCRIPTION_ID_TYPE]


async def test_balance_unchanged_after_refused_requests(ocs):
    account = await ocs.account("alice", MSISDN, status="barred")
    pgw = await ocs.connect()
    await pgw.ccr("pgw.test.net;rc;b", services=data_request(), timestamp=WEDNESDAY)
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (10 * EUR, 0)


async def test_5004_two_msccs_for_the_same_rating_group_reserve_nothing(ocs):
    """One reservation per rating group: a second MSCC for it would be granted twice."""
    account = await ocs.account("alice", MSISDN, money=25 * EUR)
    before = await ocs.main_bucket(account)
    pgw = await ocs.connect()
    services = [
        m.mscc(10, service_identifier=1, requested=m.rsu(octets=20 * m.MIB)),
        m.mscc(10, service_identifier=2, requested=m.rsu(octets=20 * m.MIB)),
    ]
    cca = await pgw.ccr("pgw.test.net;rc;dup", services=services, timestamp=WEDNESDAY)
    assert cca.result_code == 5004
    [failed] = m.failed_avps(cca)
    assert (failed.code, failed.value) == (AVP_RATING_GROUP, 10)
    assert await ocs.main_bucket(account) == before
