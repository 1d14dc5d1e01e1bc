"""Seeded mutation fuzzing of CCRs mixed with valid ones on one connection (issue 9).

The real node (tests/charging/conftest.py: Diameter server, charging engine, real
Redis) gets rounds of frames in ONE write each: a few valid CCRs of the valid
subscribers' sessions (python-diameter builds them) shuffled among mutated CCRs of
another subscriber. Mutations: bit flips, byte overwrites, truncation, a bad AVP
length, a repeated AVP, invalid UTF-8 in a string, a random AVP inserted, and a few
of them at once; now and then a frame whose message length is wrong ends a
connection's life (the stream can no longer be framed: RFC 6733 lets either side
close it), after which the test reconnects.

Asserted:

- every valid CCR gets 2001 with its own Session-Id (one whose connection the server
  closed because of a mutated frame before it is sent again with the T flag on a new
  connection, as a client fails over), and the valid accounts are charged exactly
  what they reported, to the micro-unit;
- every mutated frame that is a request gets an answer with its Hop-by-Hop-Id, or
  the server closes the connection; every message back is well framed;
- the node logs no error or traceback (a bug met by a mutated frame would), and it
  still serves a new connection at the end;
- no reservation is left behind: the sessions mutated CCRs opened are swept, and
  every account ends with nothing reserved and no open session.

The seed is fixed (``OCS_FUZZ_SEED`` to try another); the run takes a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from diameter.message.constants import AVP_RESULT_CODE, AVP_SESSION_ID

from tests.charging import messages as m
from tests.charging.conftest import EUR
from tests.protocol.reference_peer import ReferencePeer

SEED = int(os.environ.get("OCS_FUZZ_SEED", "20261202"))
ROUNDS = 120
MUTATED_PER_ROUND = 25  # 3,000 mutated frames
MIB = m.MIB
MONEY = 1_000 * EUR  # 1 EUR per MiB (prepaid-basic data), never runs out here
VALID_SUBSCRIBERS = ("491700000101", "491700000102", "491700000103")
FUZZ_SUBSCRIBER = "447700900999"  # far from the valid ones: no mutation reaches them
FUZZ_HOP_BASE = 0x80000000  # valid frames use small Hop-by-Hop-Ids
READ_TIMEOUT = 5.0

CER, DWR, DPR = 257, 280, 282
FLAG_REQUEST, FLAG_RETRANSMIT = 0x80, 0x10


# ------------------------------------------------------------------------- frames


def hop_of(frame: bytes) -> int:
    return int.from_bytes(frame[12:16], "big")


def set_length(frame: bytearray) -> bytes:
    frame[1:4] = len(frame).to_bytes(3, "big")
    return bytes(frame)


def top_level_avps(frame: bytes) -> list[tuple[int, int]]:
    """(offset, padded length) of each top-level AVP of a well-formed frame."""
    spans, offset = [], 20
    while offset + 8 <= len(frame):
        length = int.from_bytes(frame[offset + 5 : offset + 8], "big")
        if length < 8:
            break
        padded = (length + 3) & ~3
        spans.append((offset, padded))
        offset += padded
    return spans


def fuzz_template(rng: random.Random, index: int) -> bytes:
    """A valid CCR of the fuzz subscriber, of one of several shapes."""
    session = f"fuzz.test.net;{SEED};{index}"
    common = dict(origin_host="fuzz.test.net", subscriptions=(("msisdn", FUZZ_SUBSCRIBER),))
    shape = rng.randrange(6)
    if shape == 0:
        message = m.ccr(session, services=[m.mscc(10, requested=m.rsu(octets=MIB))], **common)
    elif shape == 1:
        message = m.ccr(
            session,
            m.UPDATE,
            rng.randrange(1, 4),
            services=[m.mscc(10, requested=m.rsu(), used=[m.usu(octets=rng.randrange(MIB))])],
            service_information=m.ps_information("26201", "internet"),
            **common,
        )
    elif shape == 2:
        message = m.ccr(
            session, m.TERMINATE, 2, services=[m.mscc(10, used=[m.usu(octets=1)])], **common
        )
    elif shape == 3:
        message = m.ccr(
            session,
            m.EVENT,
            context=m.SMS,
            service_information=m.sms_information("491709876543"),
            **common,
        )
    elif shape == 4:
        message = m.ccr(
            session,
            context=m.VOICE,
            services=[m.mscc(100, requested=m.rsu(seconds=60))],
            service_information=m.ims_information("tel:+491709876543"),
            user_name="fuzz@test.net",
            **common,
        )
    else:
        message = m.ccr(session, requested=m.rsu(octets=MIB), **common)  # single service
    message.header.hop_by_hop_identifier = FUZZ_HOP_BASE + index
    return message.as_bytes()


def _flip_bits(rng: random.Random, frame: bytearray) -> None:
    for _ in range(rng.randint(1, 6)):
        # the version byte now and then, never the length
        position = 0 if rng.random() < 0.05 else rng.randrange(4, len(frame))
        frame[position] ^= 1 << rng.randrange(8)


def _overwrite_bytes(rng: random.Random, frame: bytearray) -> None:
    for _ in range(rng.randint(1, 4)):
        frame[rng.randrange(4, len(frame))] = rng.randrange(256)


def _truncate(rng: random.Random, frame: bytearray) -> None:
    del frame[rng.randrange(20, len(frame)) :]


def _bad_avp_length(rng: random.Random, frame: bytearray) -> None:
    spans = top_level_avps(bytes(frame))
    if not spans:
        return
    offset, padded = rng.choice(spans)
    length = rng.choice((0, 1, 7, 8, 9, 11, 12, padded - 1, padded + 4, rng.randrange(1 << 24)))
    frame[offset + 5 : offset + 8] = length.to_bytes(3, "big")


def _repeat_avp(rng: random.Random, frame: bytearray) -> None:
    spans = top_level_avps(bytes(frame))
    if not spans:
        return
    offset, padded = rng.choice(spans)
    frame[offset + padded : offset + padded] = frame[offset : offset + padded]


def _bad_utf8(rng: random.Random, frame: bytearray) -> None:
    strings = [b"fuzz.test.net", b"test.net", b"ocs.test", b"3gpp.org", FUZZ_SUBSCRIBER.encode()]
    needle = rng.choice(strings)
    found = bytes(frame).find(needle)
    if found < 0:
        return
    frame[found + rng.randrange(len(needle))] = rng.choice((0x80, 0xC0, 0xC3, 0xED, 0xFE, 0xFF))


def _insert_avp(rng: random.Random, frame: bytearray) -> None:
    spans = top_level_avps(bytes(frame))
    at = rng.choice([offset for offset, _ in spans] + [len(frame)])
    code = rng.choice((263, 264, 296, 283, 416, 415, 461, 443, 444, 456, 437, 446, 873, 987654))
    flags = rng.choice((0x00, 0x40, 0x80, 0xC0))
    data = rng.randbytes(rng.choice((0, 1, 3, 4, 8, 12, 17)))
    header = code.to_bytes(4, "big") + bytes([flags])
    vendor = (10415).to_bytes(4, "big") if flags & 0x80 else b""
    length = 8 + len(vendor) + len(data)
    avp = header + length.to_bytes(3, "big") + vendor + data
    frame[at:at] = avp + bytes(-len(avp) % 4)


def _command_code(rng: random.Random, frame: bytearray) -> None:
    """Another command: CER, DWR, DPR (the server answers, then closes), RAR, ..."""
    code = rng.choice((CER, DWR, DPR, 258, 271, 274, 999, rng.randrange(1 << 24)))
    frame[5:8] = code.to_bytes(3, "big")


MUTATIONS = (
    _flip_bits,
    _overwrite_bytes,
    _truncate,
    _bad_avp_length,
    _repeat_avp,
    _bad_utf8,
    _insert_avp,
)


def mutate(rng: random.Random, template: bytes) -> bytes:
    """``template`` mutated; its message length field matches its bytes."""
    frame = bytearray(template)
    for mutation in rng.sample(MUTATIONS, rng.choice((1, 1, 1, 2, 3))):
        if len(frame) > 20:
            mutation(rng, frame)
    if rng.random() < 0.01:
        _command_code(rng, frame)
    if len(frame) < 20:
        frame.extend(bytes(20 - len(frame)))
    return set_length(frame)


def unframable(rng: random.Random, template: bytes) -> bytes:
    """A frame whose message length field lies (longer or shorter than its bytes)."""
    frame = bytearray(template)
    wrong = rng.choice((len(frame) + rng.randrange(4, 400), rng.randrange(20, len(frame))))
    frame[1:4] = wrong.to_bytes(3, "big")
    return bytes(frame)


def _result_code(answer: bytes) -> int:
    """The Result-Code of an answer, 0 when it has none. Read by hand: the Failed-AVP
    of a 5014 holds the malformed AVP as it came, which python-diameter cannot read."""
    for offset, _ in top_level_avps(answer):
        if int.from_bytes(answer[offset : offset + 4], "big") == AVP_RESULT_CODE:
            return int.from_bytes(answer[offset + 8 : offset + 12], "big")
    return 0


# ------------------------------------------------------------------------- valid traffic


@dataclass
class ValidSession:
    session_id: str
    subscriber: str
    number: int = 0
    used: int = 0  # MiB reported so far


@dataclass
class Expected:
    """What one round waits for: valid frames (by Hop-by-Hop-Id, with their
    Session-Id) and the Hop-by-Hop-Ids of the mutated requests."""

    valid: dict[int, tuple[str, bytes]] = field(default_factory=dict)
    mutated: set[int] = field(default_factory=set)


class Fuzzer:
    def __init__(self, ocs, rng: random.Random) -> None:
        self.ocs = ocs
        self.rng = rng
        self.peer: ReferencePeer | None = None
        self.sessions: list[ValidSession] = []
        self.charged_mib = dict.fromkeys(VALID_SUBSCRIBERS, 0)
        self.opened = 0
        self.fuzz_index = 0
        self.stats = dict(valid=0, mutated=0, answered=0, closes=0, resent=0, unframable=0)
        self.result_codes: Counter[int] = Counter()  # of the mutated frames' answers

    async def connect(self) -> ReferencePeer:
        if self.peer is None:
            peer = await ReferencePeer.connect("127.0.0.1", self.ocs.server.port)
            cea = await peer.open("pgw.test.net")
            assert cea.result_code == 2001
            self.peer = peer
        return self.peer

    async def drop(self) -> None:
        if self.peer is not None:
            await self.peer.close()
            self.peer = None

    def valid_frames(self, final: bool = False) -> list[tuple[ValidSession, bytes, int]]:
        """The next step of some sessions (all of them, CCR-T, when ``final``); with
        the MiB each step reports."""
        rng = self.rng
        frames = []
        if not final:
            for _ in range(rng.randint(0, 2)):
                self.opened += 1
                subscriber = rng.choice(VALID_SUBSCRIBERS)
                session = ValidSession(f"pgw.test.net;fuzz-valid;{SEED};{self.opened}", subscriber)
                self.sessions.append(session)
                message = m.ccr(
                    session.session_id,
                    subscriptions=(("msisdn", subscriber),),
                    services=[m.mscc(10, requested=m.rsu(octets=2 * MIB))],
                )
                frames.append((session, message.as_bytes(), 0))
        started = {s.session_id for s, _, _ in frames}
        ongoing = [s for s in self.sessions if s.session_id not in started]
        steps = ongoing if final else rng.sample(ongoing, min(len(ongoing), rng.randint(0, 3)))
        for session in steps:
            used = rng.randint(0, 2)
            session.number += 1
            terminating = final or rng.random() < 0.4
            message = m.ccr(
                session.session_id,
                m.TERMINATE if terminating else m.UPDATE,
                session.number,
                subscriptions=(("msisdn", session.subscriber),),
                services=[
                    m.mscc(
                        10,
                        requested=None if terminating else m.rsu(octets=2 * MIB),
                        used=[m.usu(octets=used * MIB)],
                    )
                ],
            )
            frames.append((session, message.as_bytes(), used))
            if terminating:
                self.sessions.remove(session)
        return frames

    def mutated_frames(self, count: int, taken: set[int]) -> list[bytes]:
        frames = []
        while len(frames) < count:
            self.fuzz_index += 1
            frame = mutate(self.rng, fuzz_template(self.rng, self.fuzz_index))
            if frame[4] & FLAG_REQUEST and hop_of(frame) in taken:
                continue  # its answer could not be told from another's
            taken.add(hop_of(frame))
            frames.append(frame)
        return frames

    async def round(self, final: bool = False, mutated: int = MUTATED_PER_ROUND) -> None:
        valid = self.valid_frames(final)
        expected = Expected()
        for session, frame, used in valid:
            expected.valid[hop_of(frame)] = (session.session_id, frame)
            self.charged_mib[session.subscriber] += used
        mutated_frames = self.mutated_frames(mutated, set(expected.valid))
        expected.mutated = {hop_of(f) for f in mutated_frames if f[4] & FLAG_REQUEST}
        frames = [frame for _, frame, _ in valid] + mutated_frames
        self.rng.shuffle(frames)
        self.stats["valid"] += len(valid)
        self.stats["mutated"] += len(mutated_frames)
        while True:
            peer = await self.connect()
            await peer.send(b"".join(frames))
            if await self.collect(peer, expected):
                return
            # closed by the server: a client resends what got no answer, T flag set
            self.stats["closes"] += 1
            await self.drop()
            frames = [
                bytes([f[0], *f[1:4], f[4] | FLAG_RETRANSMIT, *f[5:]])
                for _, f in expected.valid.values()
            ]
            self.stats["resent"] += len(frames)
            expected.mutated = set()

    async def collect(self, peer: ReferencePeer, expected: Expected) -> bool:
        """Read until every expected answer came (True) or the server closed (False)."""
        while expected.valid or expected.mutated:
            try:
                data = await peer.recv_bytes(READ_TIMEOUT)
            except (asyncio.IncompleteReadError, ConnectionResetError):
                return False
            except TimeoutError:
                raise AssertionError(
                    f"no answer and no close: valid {sorted(expected.valid)}, "
                    f"mutated {sorted(expected.mutated)}"
                ) from None
            assert data[0] == 1 and int.from_bytes(data[1:4], "big") == len(data)
            assert not data[4] & FLAG_REQUEST, "the server sent a request"
            hop = hop_of(data)
            if hop in expected.valid:
                session_id, _ = expected.valid.pop(hop)
                answer = m.answer_of(data)
                assert (answer.result_code, answer.session_id) == (2001, session_id), (
                    answer.result_code,
                    answer.find_avps((AVP_SESSION_ID, 0)),
                )
            elif hop in expected.mutated:
                expected.mutated.discard(hop)
                self.stats["answered"] += 1
                self.result_codes[_result_code(data)] += 1
        return True

    async def end_connection_with_an_unframable_frame(self) -> None:
        peer = await self.connect()
        self.fuzz_index += 1
        await peer.send(unframable(self.rng, fuzz_template(self.rng, self.fuzz_index)))
        self.stats["unframable"] += 1
        await self.drop()


async def test_mutated_ccrs_never_hurt_the_valid_ones(ocs, caplog):
    rng = random.Random(SEED)
    accounts = {
        subscriber: await ocs.account(f"valid-{subscriber}", f"msisdn:{subscriber}", money=MONEY)
        for subscriber in VALID_SUBSCRIBERS
    }
    fuzz_account = await ocs.account("fuzzed", f"msisdn:{FUZZ_SUBSCRIBER}", money=MONEY)
    fuzzer = Fuzzer(ocs, rng)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        for number in range(ROUNDS):
            await fuzzer.round()
            if number % 15 == 14:
                await fuzzer.end_connection_with_an_unframable_frame()
        await fuzzer.round(final=True, mutated=0)
        await fuzzer.drop()
    elapsed = time.monotonic() - started

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors[:5]]
    stats = fuzzer.stats
    assert stats["mutated"] >= ROUNDS * MUTATED_PER_ROUND
    assert stats["valid"] > 2 * ROUNDS
    assert stats["answered"] > stats["mutated"] // 2, stats  # most mutated frames are requests

    # charged exactly what was reported, and nothing left reserved or open
    for subscriber, account in accounts.items():
        bucket = await ocs.main_bucket(account)
        assert (bucket.amount, bucket.reserved) == (
            MONEY - fuzzer.charged_mib[subscriber] * EUR,
            0,
        ), subscriber
        assert await ocs.engine.sessions_of(account) == []
    far_future = int(time.time()) + 10 * 365 * 86400
    while await ocs.engine.sweep(far_future, limit=1000):
        pass
    assert await ocs.engine.sessions_of(fuzz_account) == []
    assert (await ocs.main_bucket(fuzz_account)).reserved == 0

    # the node still serves a new connection
    pgw = await ocs.connect()
    subscriber = VALID_SUBSCRIBERS[0]
    cca = await pgw.ccr(
        "pgw.test.net;fuzz-after;1",
        subscriptions=(("msisdn", subscriber),),
        services=[m.mscc(10, requested=m.rsu())],
    )
    assert cca.result_code == 2001
    cca = await pgw.ccr(
        "pgw.test.net;fuzz-after;1",
        m.TERMINATE,
        1,
        subscriptions=(("msisdn", subscriber),),
        services=[m.mscc(10, used=[m.usu(octets=0)])],
    )
    assert cca.result_code == 2001
    codes = dict(sorted(fuzzer.result_codes.items()))
    print(f"fuzz seed {SEED}: {stats}, mutated answered {codes}, in {elapsed:.1f} s")
