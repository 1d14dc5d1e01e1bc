"""A retransmitted CCR (same Session-Id and CC-Request-Number, with or without the T
flag) gets the same CCA and is charged once."""

from __future__ import annotations

import datetime

from tests.charging import messages as m
from tests.charging.conftest import EUR

WEDNESDAY = datetime.datetime(2025, 3, 5, 10, 0, tzinfo=datetime.UTC)
MSISDN = "msisdn:491700000001"
SID = "pgw.test.net;retx;1"


def update(number: int = 1):
    return m.ccr(
        SID,
        m.UPDATE,
        number,
        services=[m.mscc(10, requested=m.rsu(), used=[m.usu(octets=3 * m.MIB)])],
        timestamp=WEDNESDAY,
    )


async def started(ocs):
    account = await ocs.account("alice", MSISDN, money=25 * EUR)
    pgw = await ocs.connect()
    cca = await pgw.request(
        m.ccr(SID, m.INITIAL, 0, services=[m.mscc(10, requested=m.rsu())], timestamp=WEDNESDAY)
    )
    assert cca.result_code == 2001
    return account, pgw


async def test_t_flag_with_the_same_end_to_end_id_is_answered_from_the_cache(ocs):
    account, pgw = await started(ocs)
    first = update()
    answer = await pgw.request_bytes(first)
    calls = ocs.application.calls
    again = update()
    again.header.end_to_end_identifier = first.header.end_to_end_identifier
    again.header.is_retransmit = True
    repeated = await pgw.request_bytes(again)
    assert ocs.application.calls == calls  # the transport's duplicate cache answered
    assert repeated[16:] == answer[16:]
    assert int.from_bytes(repeated[12:16], "big") == again.header.hop_by_hop_identifier
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (22 * EUR, 10 * EUR)


async def test_t_flag_after_failover_is_answered_by_the_engine_once(ocs):
    account, pgw = await started(ocs)
    answer = await pgw.request_bytes(update())
    calls = ocs.application.calls
    again = update()  # new End-to-End-Id: another node's cache would not know it
    again.header.is_retransmit = True
    repeated = await pgw.request_bytes(again)
    assert ocs.application.calls == calls + 1
    assert repeated[20:] == answer[20:]  # every AVP identical
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (22 * EUR, 10 * EUR)


async def test_same_request_number_without_t_flag_gets_the_same_answer_once(ocs):
    account, pgw = await started(ocs)
    answer = await pgw.request_bytes(update())
    repeated = await pgw.request_bytes(update())
    assert repeated[20:] == answer[20:]
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (22 * EUR, 10 * EUR)


async def test_repeated_initial_request_reserves_once(ocs):
    account, pgw = await started(ocs)
    again = await pgw.request(
        m.ccr(SID, m.INITIAL, 0, services=[m.mscc(10, requested=m.rsu())], timestamp=WEDNESDAY)
    )
    assert again.result_code == 2001
    assert again.multiple_services_credit_control[0].granted_service_unit.cc_total_octets == (
        10 * m.MIB
    )
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (25 * EUR, 10 * EUR)


async def test_repeated_termination_debits_once(ocs):
    account, pgw = await started(ocs)
    terminate = m.ccr(
        SID, m.TERMINATE, 1, services=[m.mscc(10, used=[m.usu(octets=m.MIB)])], timestamp=WEDNESDAY
    )
    answer = await pgw.request_bytes(terminate)
    terminate.header.is_retransmit = True
    terminate.header.end_to_end_identifier = m.next_id()
    repeated = await pgw.request_bytes(terminate)
    assert repeated[20:] == answer[20:]
    assert m.answer_of(repeated).result_code == 2001  # not 5002: the stored answer
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (24 * EUR, 0)


async def test_repeated_sms_event_debits_once(ocs):
    account = await ocs.account("texter", MSISDN)
    smsc = await ocs.connect("smsc.test.net")

    def event():
        return m.ccr(
            "smsc.test.net;retx;1",
            m.EVENT,
            0,
            origin_host="smsc.test.net",
            context=m.SMS,
            services=[m.mscc(200, requested=m.rsu(events=1))],
            service_information=m.sms_information("+491701234567"),
            timestamp=WEDNESDAY,
        )

    answer = await smsc.request_bytes(event())
    repeated = await smsc.request_bytes(event())
    assert repeated[20:] == answer[20:]
    assert (await ocs.main_bucket(account)).amount == 10 * EUR - 90_000


async def test_a_batch_in_one_read_is_charged_in_order(ocs):
    account, pgw = await started(ocs)
    requests = [update(1), update(2)]
    await pgw.peer.send(b"".join(r.as_bytes() for r in requests))
    answers = [m.answer_of(await pgw.peer.recv_bytes()) for _ in requests]
    assert sorted(a.cc_request_number for a in answers) == [1, 2]
    assert all(a.result_code == 2001 for a in answers)
    bucket = await ocs.main_bucket(account)
    assert bucket.amount == 19 * EUR  # 3 MiB twice
