"""Server-initiated messages end to end: a top-up sends RAR to the network element
that owns a session holding its final units; barring sends ASR for every session."""

from __future__ import annotations

import asyncio
import datetime

import pytest
from diameter.message.commands import AbortSessionRequest, ReAuthRequest
from diameter.message.constants import E_RE_AUTH_REQUEST_TYPE_AUTHORIZE_ONLY

from tests.charging import messages as m
from tests.charging.conftest import EUR

WEDNESDAY = datetime.datetime(2025, 3, 5, 10, 0, tzinfo=datetime.UTC)
MSISDN = "msisdn:491700000001"


async def open_session(element, sid: str):
    cca = await element.ccr(
        sid, m.INITIAL, 0, services=[m.mscc(10, requested=m.rsu())], timestamp=WEDNESDAY
    )
    assert cca.result_code == 2001
    return cca.multiple_services_credit_control[0]


async def nothing_arrives(element, seconds: float = 0.3) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await element.peer.recv(timeout=seconds)


async def test_credit_sends_rar_to_the_owning_peer_and_reauthorizes(ocs):
    account = await ocs.account("alice", MSISDN, money=2 * EUR)
    pgw = await ocs.connect("pgw.test.net")
    other = await ocs.connect("pgw2.test.net")
    mscc = await open_session(pgw, "pgw.test.net;rar;1")
    assert mscc.final_unit_indication is not None  # 2 MiB, the last the balance affords

    await ocs.accounts.credit(account, "main", 10 * EUR, reason="top-up")
    rar = await pgw.answer_next(2001)
    assert isinstance(rar, ReAuthRequest)
    assert rar.session_id == "pgw.test.net;rar;1"
    assert rar.re_auth_request_type == E_RE_AUTH_REQUEST_TYPE_AUTHORIZE_ONLY
    assert rar.destination_host == b"pgw.test.net"
    assert rar.origin_host == b"ocs.test.net"
    await nothing_arrives(other)

    # the P-GW re-authorizes: new quota without a final unit indication
    cca = await pgw.ccr(
        "pgw.test.net;rar;1",
        m.UPDATE,
        1,
        services=[m.mscc(10, requested=m.rsu(), used=[m.usu(octets=m.MIB)], reporting_reason=7)],
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    [mscc] = cca.multiple_services_credit_control
    assert mscc.granted_service_unit.cc_total_octets == 10 * m.MIB
    assert mscc.final_unit_indication is None


async def test_credit_without_final_unit_sessions_sends_nothing(ocs):
    account = await ocs.account("alice", MSISDN, money=50 * EUR)
    pgw = await ocs.connect()
    mscc = await open_session(pgw, "pgw.test.net;rar;2")
    assert mscc.final_unit_indication is None
    await ocs.accounts.credit(account, "main", EUR, reason="top-up")
    await nothing_arrives(pgw)


async def test_rar_answered_unknown_session_is_fine(ocs):
    account = await ocs.account("alice", MSISDN, money=EUR)
    pgw = await ocs.connect()
    await open_session(pgw, "pgw.test.net;rar;3")
    await ocs.accounts.credit(account, "main", EUR, reason="top-up")
    rar = await pgw.answer_next(5002)
    assert isinstance(rar, ReAuthRequest)
    # the node keeps serving the peer
    cca = await pgw.ccr("pgw.test.net;rar;3", m.TERMINATE, 1, timestamp=WEDNESDAY)
    assert cca.result_code == 2001


async def test_barring_sends_asr_for_every_session_to_its_own_peer(ocs):
    account = await ocs.account("alice", MSISDN, money=50 * EUR)
    pgw = await ocs.connect("pgw.test.net")
    pgw2 = await ocs.connect("pgw2.test.net")
    await open_session(pgw, "pgw.test.net;asr;1")
    await open_session(pgw, "pgw.test.net;asr;2")
    await open_session(pgw2, "pgw2.test.net;asr;3")

    await ocs.accounts.set_status(account, "barred")
    first = await pgw.answer_next()
    second = await pgw.answer_next()
    third = await pgw2.answer_next()
    assert all(isinstance(r, AbortSessionRequest) for r in (first, second, third))
    assert {first.session_id, second.session_id} == {"pgw.test.net;asr;1", "pgw.test.net;asr;2"}
    assert third.session_id == "pgw2.test.net;asr;3"
    assert third.destination_host == b"pgw2.test.net"

    # the network elements end the sessions; reservations are released
    for element, sid in (
        (pgw, "pgw.test.net;asr;1"),
        (pgw, "pgw.test.net;asr;2"),
        (pgw2, "pgw2.test.net;asr;3"),
    ):
        cca = await element.ccr(
            sid,
            m.TERMINATE,
            1,
            services=[m.mscc(10, used=[m.usu(octets=m.MIB)])],
            timestamp=WEDNESDAY,
        )
        assert cca.result_code == 2001
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (47 * EUR, 0)
    # and new sessions are refused
    cca = await pgw.ccr("pgw.test.net;asr;4", services=[m.mscc(10, requested=m.rsu())])
    assert cca.result_code == 4010


async def test_sessions_of_a_peer_connected_elsewhere_get_nothing_here(ocs):
    account = await ocs.account("alice", MSISDN, money=EUR)
    pgw = await ocs.connect("pgw.test.net")
    await open_session(pgw, "pgw.test.net;away;1")
    await pgw.close()
    ocs._peers.remove(pgw)
    await asyncio.sleep(0.05)
    watcher = await ocs.connect("pgw2.test.net")
    assert await ocs.notifier.credit_added(account) == 0
    assert await ocs.notifier.account_barred(account) == 0
    await nothing_arrives(watcher)


async def test_rar_reaches_an_element_behind_a_routing_agent(ocs):
    """The P-GW's CCRs arrive through a routing agent's connection: the RAR goes back
    the same way, addressed to the P-GW itself."""
    account = await ocs.account("alice", MSISDN, money=2 * EUR)
    agent = await ocs.connect("dra.test.net")
    agent.origin_host = "pgw7.core.example"  # what the agent relays carries the P-GW's name
    cca = await agent.ccr(
        "pgw7.core.example;rar;9",
        m.INITIAL,
        0,
        services=[m.mscc(10, requested=m.rsu())],
        timestamp=WEDNESDAY,
    )
    assert cca.multiple_services_credit_control[0].final_unit_indication is not None
    await ocs.accounts.credit(account, "main", 10 * EUR, reason="top-up")
    rar = await agent.answer_next(2001)
    assert isinstance(rar, ReAuthRequest)
    assert rar.session_id == "pgw7.core.example;rar;9"
    assert rar.destination_host == b"pgw7.core.example"
    assert rar.destination_realm == b"test.net"
