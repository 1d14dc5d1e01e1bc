"""Diameter metrics and logs of issue 13 against a real `ocs serve` process.

The node runs on a redis-server of its own (started here, so that the test can kill it)
with ``diameter.allowed_peers`` naming the P-GW, and python-diameter plays the P-GW:
CCR-I/U/T, an SMS event, an unknown subscriber (5030) and a session on an empty
balance (2001 with 4012 in its MSCC). /metrics must show each, by CC-Request-Type,
peer, MSCC service and Result-Code; then, Redis hung (SIGSTOP) and then gone (SIGKILL),
CCRs are answered 5012 with the configured Credit-Control-Failure-Handling.

The transport's log lines (peer connect, CER outcome, DPR both ways) are checked on
the in-process node of tests/system/conftest.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import urllib.request
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from ocs.embedded_redis import EmbeddedRedis
from quota_engine.accounts.model import Account, Bucket
from quota_engine.accounts.provisioning import provision_demo
from quota_engine.store.accounts import AccountStore
from tests.charging import messages as m
from tests.helpers import start_ocs_serve, stop_process
from tests.protocol import reference_peer as ref
from tests.protocol.reference_peer import ReferencePeer

PGW = "pgw.test.net"
SMSC = "smsc.test.net"
PREPAID = "491700000001"  # demo-prepaid, 10 EUR
BROKE = "491709990000"  # a prepaid account with nothing left
UNKNOWN = "499999999999"  # nobody's


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def requests(samples, request_type: str, code: int, peer: str = PGW) -> float | None:
    return value(
        samples,
        "ocs_diameter_requests_total",
        command="CCR",
        request_type=request_type,
        result_code=str(code),
        peer=peer,
    )


@pytest.fixture
async def node(tmp_path: Path):
    """`ocs serve` on a redis-server of its own, with the demo subscribers and BROKE."""
    redis_server = EmbeddedRedis(tmp_path / "redis", appendonly=False)
    redis_server.start()
    client = aioredis.Redis.from_url(redis_server.url)
    await provision_demo(client)
    store = AccountStore(client)
    await store.create_account(
        Account(id="broke", kind="prepaid", status="active", currency="EUR", plan="prepaid-basic")
    )
    await store.add_subscription("broke", f"msisdn:{BROKE}")
    await store.put_bucket("broke", Bucket(id="main", kind="money", amount=0))
    await client.aclose()
    node = start_ocs_serve(
        tmp_path,
        origin="ocs.metrics.test",
        env={
            "OCS_REDIS_URL": redis_server.url,
            "OCS_REDIS_TIMEOUT": "0.5",
            "OCS_DIAMETER_ALLOWED_PEERS": f"{PGW},{SMSC}",
            "OCS_CHARGING_FAILURE_HANDLING": "continue",
        },
    )
    process = node.process
    try:
        yield node.diameter_port, node.http_port, redis_server
    finally:
        stop_process(process)
        if redis_server.running:
            redis_server.stop()


async def ccr(peer: ReferencePeer, *args, **kwargs):
    return m.answer_of(await _request_bytes(peer, m.ccr(*args, origin_host=PGW, **kwargs)))


async def _request_bytes(peer: ReferencePeer, message) -> bytes:
    await peer.send(message)
    return await peer.recv_bytes(timeout=10)


async def test_requests_mscc_outcomes_and_units_by_type_peer_and_service(node):
    diameter_port, http_port, redis_server = node
    before = await asyncio.to_thread(scrape, http_port)
    # pre-created: the first 5030 of an unknown subscriber is a rise from 0
    assert requests(before, "initial", 5030) == 0
    assert requests(before, "event", 4012, SMSC) == 0
    assert value(before, "ocs_diameter_mscc_total", service="data", result_code="4012") == 0

    pgw = await ReferencePeer.connect("127.0.0.1", diameter_port)
    assert (await pgw.open(PGW)).result_code == 2001
    subscriber = (("msisdn", PREPAID),)
    opened = await ccr(pgw, "pgw;m;1", m.INITIAL, 0, subscriptions=subscriber,
                       services=[m.mscc(10, requested=m.rsu(octets=m.MIB))])  # fmt: skip
    assert opened.result_code == 2001
    assert m.mscc_by_group(opened)[10].granted_service_unit.cc_total_octets == m.MIB
    updated = await ccr(pgw, "pgw;m;1", m.UPDATE, 1, subscriptions=subscriber,
                        services=[m.mscc(10, requested=m.rsu(octets=m.MIB),
                                         used=[m.usu(octets=300_000)])])  # fmt: skip
    assert updated.result_code == 2001
    closed = await ccr(pgw, "pgw;m;1", m.TERMINATE, 2, subscriptions=subscriber,
                       services=[m.mscc(10, used=[m.usu(octets=200_000)])])  # fmt: skip
    assert closed.result_code == 2001
    unknown = await ccr(pgw, "pgw;m;2", m.INITIAL, 0, subscriptions=(("msisdn", UNKNOWN),),
                        services=[m.mscc(10, requested=m.rsu())])  # fmt: skip
    assert unknown.result_code == 5030
    broke = await ccr(pgw, "pgw;m;3", m.INITIAL, 0, subscriptions=(("msisdn", BROKE),),
                      services=[m.mscc(10, requested=m.rsu(octets=m.MIB))])  # fmt: skip
    assert broke.result_code == 2001 and m.mscc_by_group(broke)[10].result_code == 4012

    smsc = await ReferencePeer.connect("127.0.0.1", diameter_port)
    assert (await smsc.open(SMSC)).result_code == 2001
    for msisdn, expected in ((PREPAID, 2001), (BROKE, 4012)):
        sms = m.answer_of(await _request_bytes(smsc, m.ccr(
            f"smsc;m;{msisdn}", m.EVENT, 0, origin_host=SMSC, context=m.SMS,
            subscriptions=(("msisdn", msisdn),),
            services=[m.mscc(200, requested=m.rsu(events=1))],
            service_information=m.sms_information("+491701234567"),
        )))  # fmt: skip
        assert sms.result_code == expected

    after = await asyncio.to_thread(scrape, http_port)
    assert requests(after, "initial", 2001) == 2  # the prepaid session and the broke one
    assert requests(after, "update", 2001) == 1
    assert requests(after, "terminate", 2001) == 1
    assert requests(after, "initial", 5030) == 1
    assert requests(after, "event", 2001, SMSC) == 1
    assert requests(after, "event", 4012, SMSC) == 1
    assert requests(after, "event", 2001) == 0  # the P-GW sent no event
    assert requests(after, "none", 2001) is None  # every CCR had its type
    assert value(after, "ocs_diameter_requests_total", command="CER", request_type="none",
                 result_code="2001", peer=SMSC) == 1  # fmt: skip
    duration = "ocs_diameter_request_duration_seconds_count"
    assert value(after, duration, command="CCR", request_type="initial") == 3
    assert value(after, duration, command="CCR", request_type="event") == 2
    mscc = "ocs_diameter_mscc_total"
    # data: I, U, T of the session and the broke CCR-I; the 5030 CCA has no MSCC
    assert value(after, mscc, service="data", result_code="2001") == 3
    assert value(after, mscc, service="data", result_code="4012") == 1
    assert value(after, mscc, service="sms", result_code="2001") == 1
    assert value(after, mscc, service="sms", result_code="4012") == 1
    granted = value(after, "ocs_charging_granted_units_total", service="data", unit="octets")
    # what the CCAs' Granted-Service-Units carried: CCR-I and CCR-U, none for the broke one
    sent = [m.mscc_by_group(a)[10].granted_service_unit.cc_total_octets for a in (opened, updated)]
    assert granted == sum(sent) and all(sent)
    used = value(after, "ocs_charging_used_units_total", service="data", unit="octets")
    assert used == 500_000
    assert value(after, "ocs_charging_granted_units_total", service="sms", unit="events") == 1
    assert value(after, "ocs_diameter_inflight_requests") == 0
    assert value(after, "ocs_diameter_peers", state="OPEN") == 2
    assert not [key for key in after if "499999999999" in str(key) or BROKE in str(key)]

    # Redis hung (SIGSTOP): answered 5012 after redis.timeout, with the configured
    # failure handling (continue); then gone (SIGKILL): the same at once
    os.kill(redis_server.pid, signal.SIGSTOP)
    try:
        hung = await ccr(pgw, "pgw;m;4", m.INITIAL, 0, subscriptions=subscriber,
                         services=[m.mscc(10, requested=m.rsu())])  # fmt: skip
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    assert hung.result_code == 5012
    assert hung.credit_control_failure_handling == 1  # CONTINUE
    assert hung.cc_request_type == m.INITIAL
    os.kill(redis_server.pid, signal.SIGKILL)
    gone = await ccr(pgw, "pgw;m;5", m.UPDATE, 1, subscriptions=subscriber,
                     services=[m.mscc(10, requested=m.rsu())])  # fmt: skip
    assert gone.result_code == 5012
    assert gone.credit_control_failure_handling == 1
    down = await asyncio.to_thread(scrape, http_port)
    assert requests(down, "initial", 5012) == 1
    assert requests(down, "update", 5012) == 1
    await pgw.close()
    await smsc.close()


async def test_peer_connect_cer_outcome_and_dpr_are_logged(start_server, caplog):
    server = await start_server(diameter_allowed_peers=(PGW,))
    caplog.set_level(logging.INFO, logger="protocol.connection")

    refused = await ReferencePeer.connect("127.0.0.1", server.port)
    cea = await refused.request(ref.cer("intruder.test.net"))
    assert cea.result_code != 2001
    await refused.close()

    peer = await ReferencePeer.connect("127.0.0.1", server.port)
    assert (await peer.open(PGW)).result_code == 2001
    dpa = await peer.request(ref.dpr(PGW, cause=1))  # BUSY
    assert dpa.result_code == 2001
    assert await peer.wait_closed()

    other = await ReferencePeer.connect("127.0.0.1", server.port)
    assert (await other.open(PGW)).result_code == 2001
    stopping = asyncio.ensure_future(server.stop())
    dpr = await other.recv()
    assert dpr.header.command_code == 282
    reply = dpr.to_answer()
    reply.result_code, reply.origin_host, reply.origin_realm = 2001, PGW.encode(), b"test.net"
    await other.send(reply)
    await stopping

    def events(name: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.msg.split(" ", 1)[0] == name]

    connected = events("diameter_peer_connected")
    assert len(connected) == 3 and all(r.args[0] == "127.0.0.1" for r in connected)
    [rejected] = events("diameter_cer_rejected")
    assert rejected.levelno == logging.WARNING and rejected.args[1] == 3010  # UNKNOWN_PEER
    accepted = events("diameter_cer_accepted")
    assert [r.args[1:] for r in accepted] == [(PGW, 2001), (PGW, 2001)]
    [received] = events("diameter_dpr_received")
    assert received.args[1:] == (PGW, "BUSY")
    [sent] = events("diameter_dpr_sent")
    assert sent.args[1:] == (PGW, "REBOOTING")
    assert all(r.levelno == logging.INFO for r in connected + accepted + [received, sent])


async def test_inflight_counts_the_requests_with_the_application(start_server):
    server = await start_server(application_delay=0.5, diameter_allowed_peers=(PGW,))
    metrics = server.metrics
    gauge = "ocs_diameter_inflight_requests"
    peer = await ReferencePeer.connect("127.0.0.1", server.port)
    assert (await peer.open(PGW)).result_code == 2001
    await peer.send(
        m.ccr("pgw;i;1", origin_host=PGW).as_bytes() + m.ccr("pgw;i;2", origin_host=PGW).as_bytes()
    )
    async with asyncio.timeout(5):
        while metrics.registry.get_sample_value(gauge) != 2:
            await asyncio.sleep(0.01)
    answers = [m.answer_of(await peer.recv_bytes()) for _ in range(2)]
    assert [a.result_code for a in answers] == [5012, 5012]  # this node has no engine
    assert metrics.registry.get_sample_value(gauge) == 0
    total = metrics.registry.get_sample_value(
        "ocs_diameter_requests_total",
        {"command": "CCR", "request_type": "initial", "result_code": "5012", "peer": PGW},
    )
    assert total == 2
    await peer.close()
