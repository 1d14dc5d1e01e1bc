"""A malformed CCR fails alone: the CCRs that arrive with it in the same TCP segment are
charged normally (issue 9, "one bad request fails its neighbours"), end to end over TCP
with python-diameter as the network element."""

from __future__ import annotations

import logging

from diameter.message.avp import Avp
from diameter.message.constants import AVP_ORIGIN_REALM, AVP_SESSION_ID

from tests.charging import messages as m
from tests.charging.conftest import EUR

MIB = m.MIB
ALICE = "msisdn:491700000001"
BOB = "msisdn:491700000002"
BAD_UTF8 = b"\xff\xfe\xfd\xfc"


def initial(session_id: str, msisdn: str):
    return m.ccr(
        session_id,
        subscriptions=(("msisdn", msisdn.removeprefix("msisdn:")),),
        services=[m.mscc(10, requested=m.rsu(octets=MIB))],
    )


def terminate(session_id: str, msisdn: str, octets: int):
    return m.ccr(
        session_id,
        m.TERMINATE,
        1,
        subscriptions=(("msisdn", msisdn.removeprefix("msisdn:")),),
        services=[m.mscc(10, used=[m.usu(octets=octets)])],
    )


def with_bad_utf8(message) -> bytes:
    data = message.as_bytes()
    assert data.count(b"QQQQ") == 1
    return data.replace(b"QQQQ", BAD_UTF8)


async def send_together(element, *frames: bytes) -> list:
    """Write ``frames`` in one write (one TCP segment on loopback); the answers in the
    order of the frames, matched by Hop-by-Hop-Id."""
    await element.peer.send(b"".join(frames))
    answers = {}
    for _ in frames:
        answer = m.answer_of(await element.peer.recv_bytes())
        answers[answer.header.hop_by_hop_identifier] = answer
    return [answers[int.from_bytes(frame[12:16], "big")] for frame in frames]


def traceback_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info is not None or r.levelno >= logging.ERROR]


async def test_invalid_origin_realm_fails_alone_and_its_neighbours_are_charged(ocs, caplog):
    alice = await ocs.account("alice", ALICE, money=10 * EUR)
    bob = await ocs.account("bob", BOB, money=10 * EUR)
    pgw = await ocs.connect()
    bad = initial("pgw.test.net;iso;bad", ALICE)
    bad.origin_realm = b"QQQQ.net"

    with caplog.at_level(logging.INFO):
        good_a, rejected, good_b = await send_together(
            pgw,
            initial("pgw.test.net;iso;a", ALICE).as_bytes(),
            with_bad_utf8(bad),
            initial("pgw.test.net;iso;b", BOB).as_bytes(),
        )
    assert (good_a.result_code, rejected.result_code, good_b.result_code) == (2001, 5004, 2001)
    assert [a.code for a in m.failed_avps(rejected)] == [AVP_ORIGIN_REALM]
    assert rejected.session_id == "pgw.test.net;iso;bad"
    assert [r.levelno for r in caplog.records if r.getMessage() == "ccr_rejected"] == [
        logging.WARNING
    ]
    assert traceback_records(caplog) == []

    finals = await send_together(
        pgw,
        terminate("pgw.test.net;iso;a", ALICE, 3 * MIB).as_bytes(),
        terminate("pgw.test.net;iso;b", BOB, 2 * MIB).as_bytes(),
    )
    assert [a.result_code for a in finals] == [2001, 2001]
    bucket_a, bucket_b = await ocs.main_bucket(alice), await ocs.main_bucket(bob)
    assert (bucket_a.amount, bucket_a.reserved) == (7 * EUR, 0)  # 1 EUR per MiB
    assert (bucket_b.amount, bucket_b.reserved) == (8 * EUR, 0)
    assert await ocs.engine.sessions_of(alice) == []  # the rejected one never opened
    assert await ocs.engine.sessions_of(bob) == []


async def test_empty_and_repeated_session_ids_fail_alone(ocs):
    alice = await ocs.account("alice", ALICE, money=10 * EUR)
    pgw = await ocs.connect()
    empty = initial("", ALICE)
    twice = initial("pgw.test.net;iso;twice", ALICE)
    twice.append_avp(Avp.new(AVP_SESSION_ID, value="pgw.test.net;iso;other"))
    answers = await send_together(
        pgw,
        empty.as_bytes(),
        twice.as_bytes(),
        initial("pgw.test.net;iso;c", ALICE).as_bytes(),
    )
    assert [a.result_code for a in answers] == [5004, 5009, 2001]
    assert [(a.code, a.value) for a in m.failed_avps(answers[0])] == [(AVP_SESSION_ID, "")]
    assert [(a.code, a.value) for a in m.failed_avps(answers[1])] == [
        (AVP_SESSION_ID, "pgw.test.net;iso;other")
    ]
    [final] = await send_together(pgw, terminate("pgw.test.net;iso;c", ALICE, MIB).as_bytes())
    assert final.result_code == 2001
    bucket = await ocs.main_bucket(alice)
    assert (bucket.amount, bucket.reserved) == (9 * EUR, 0)
    assert await ocs.engine.sessions_of(alice) == []
