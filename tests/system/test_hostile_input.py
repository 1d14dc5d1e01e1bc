"""Random and mutated bytes never take the server down (hypothesis, real TCP).

The OCS Diameter node runs on its own event loop in a background thread; each
hypothesis example opens a fresh connection, completes CER/CEA, sends hostile bytes
and requires either an answer or a close. A control peer opened before the attack
must still be served afterwards.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
from diameter.message import Message
from diameter.message.constants import (
    AVP_CC_REQUEST_NUMBER,
    AVP_FAILED_AVP,
    AVP_ORIGIN_REALM,
    AVP_RESULT_CODE,
    AVP_SESSION_ID,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cext.codec import Message as RawMessage
from ocs.metrics import Metrics
from ocs.service import build_node
from protocol.messages import Answer, Codec
from protocol.server import DiameterServer
from tests.helpers import node_settings
from tests.protocol import reference_peer as ref
from tests.protocol.reference_peer import ReferencePeer


class ThreadedServer:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        settings = node_settings(diameter_max_message_size=8192, diameter_cer_timeout=2.0)
        self.server: DiameterServer | None = None
        self.settings = settings

    def start(self) -> int:
        self.thread.start()

        async def start() -> DiameterServer:
            server = DiameterServer(build_node(self.settings, Metrics()), "127.0.0.1", 0)
            await server.start()
            return server

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        return self.server.port

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


_pending: dict[int, bytes] = {}  # bytes read past the last message, per socket


def recv_message(sock: socket.socket) -> bytes | None:
    """One whole message, or None when the server closed the connection."""
    data = _pending.pop(sock.fileno(), b"")
    while len(data) < 4 or len(data) < int.from_bytes(data[1:4], "big"):
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    length = int.from_bytes(data[1:4], "big")
    if len(data) > length:
        _pending[sock.fileno()] = data[length:]
    return data[:length]


def open_socket(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    _pending.pop(sock.fileno(), None)
    sock.sendall(ref.cer().as_bytes())
    cea = recv_message(sock)
    assert cea is not None and Message.from_bytes(cea).result_code == 2001
    return sock


@pytest.fixture(scope="module")
def server():
    """The server, and a control peer that opened before any attack."""
    server = ThreadedServer()
    port = server.start()
    control = open_socket(port)
    yield port, control
    control.close()
    server.stop()


@pytest.fixture
def server_port(server):
    return server[0]


VALID = ref.ccr().as_bytes()


@st.composite
def mutated_ccr(draw) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 6))):
        index = draw(st.integers(4, len(data) - 1))  # keep a framable length
        data[index] = draw(st.integers(0, 255))
    return bytes(data)


def framable(payload: bytes) -> bytes:
    """Random bytes behind a valid Diameter length, so the server must parse them."""
    return b"\x01" + (20 + len(payload)).to_bytes(3, "big") + bytes(16) + payload


def assert_still_sane(sock: socket.socket, data: bytes) -> None:
    """Send ``data`` then a DWR: the server must close, or answer the DWR.

    Whatever else comes back first (error answers to the hostile bytes) must be well
    framed. Hostile bytes without the R bit are answers with an unknown Hop-by-Hop-Id,
    which the RFC says to discard silently, hence the DWR probe.
    """
    probe = ref.dwr()
    sock.sendall(data + probe.as_bytes())
    while True:
        message = recv_message(sock)
        if message is None:
            return  # closed: allowed
        assert message[0] == 1
        assert int.from_bytes(message[1:4], "big") == len(message)
        is_request = message[4] & 0x80
        if message[12:16] == probe.header.hop_by_hop_identifier.to_bytes(4, "big"):
            assert not is_request and int.from_bytes(message[5:8], "big") == 280
            return


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=mutated_ccr())
def test_mutated_requests_get_an_answer_or_a_close(server_port, data):
    with open_socket(server_port) as sock:
        assert_still_sane(sock, data)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=st.binary(min_size=0, max_size=300))
def test_random_bodies_get_an_answer_or_a_close(server_port, payload):
    with open_socket(server_port) as sock:
        assert_still_sane(sock, framable(payload))


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(garbage=st.binary(min_size=1, max_size=200))
def test_garbage_before_cer_never_crashes(server_port, garbage):
    with socket.create_connection(("127.0.0.1", server_port), timeout=5) as sock:
        sock.sendall(garbage)
        sock.shutdown(socket.SHUT_WR)
        while recv_message(sock) is not None:
            pass


def test_control_peer_is_still_served_after_the_attacks(server):
    port, control = server
    assert_still_sane(control, b"")  # answers its DWR (server DWRs in between are skipped)
    with open_socket(port) as sock:  # and new peers are still accepted
        assert_still_sane(sock, b"")


# ------------------------------------------------ answers to requests without a Session-Id


def _answer_to(port: int, data: bytes) -> Message:
    with open_socket(port) as sock:
        sock.sendall(data)
        answer = recv_message(sock)
    assert answer is not None
    return Message.from_bytes(answer)


def _avp_values(message: Message, code: int) -> list:
    return [avp.value for avp in message.find_avps((code, 0))]


def test_unreadable_session_id_gets_an_e_bit_answer_with_the_header_ids(server_port):
    request = ref.ccr("QQQQ;1;1")
    data = request.as_bytes().replace(b"QQQQ", b"\xff\xfe\xfd\xfc")
    answer = _answer_to(server_port, data)
    assert answer.header.is_error  # RFC 6733 §7.2 answer-message: 0*1< Session-Id >
    assert answer.header.hop_by_hop_identifier == request.header.hop_by_hop_identifier
    assert answer.header.end_to_end_identifier == request.header.end_to_end_identifier
    assert _avp_values(answer, AVP_RESULT_CODE) == [5004]
    assert _avp_values(answer, AVP_SESSION_ID) == []
    [failed] = _avp_values(answer, AVP_FAILED_AVP)
    assert [(a.code, a.payload[:4]) for a in failed] == [(AVP_SESSION_ID, b"\xff\xfe\xfd\xfc")]


def test_missing_session_id_gets_an_e_bit_answer(server_port):
    request = ref.ccr()
    data = Message(request.header, [a for a in request.avps if a.code != AVP_SESSION_ID])
    answer = _answer_to(server_port, data.as_bytes())
    assert answer.header.is_error
    assert answer.header.hop_by_hop_identifier == request.header.hop_by_hop_identifier
    assert _avp_values(answer, AVP_RESULT_CODE) == [5005]


def test_an_error_answer_that_can_echo_the_session_id_is_a_cca_without_e_bit(server_port):
    request = ref.ccr("pgw.test.net;realm;1")
    request.origin_realm = b"QQQQ.net"
    answer = _answer_to(server_port, request.as_bytes().replace(b"QQQQ", b"\xff\xfe\xfd\xfc"))
    assert not answer.header.is_error
    assert _avp_values(answer, AVP_RESULT_CODE) == [5004]
    assert _avp_values(answer, AVP_SESSION_ID) == ["pgw.test.net;realm;1"]
    [failed] = _avp_values(answer, AVP_FAILED_AVP)
    assert [a.code for a in failed] == [AVP_ORIGIN_REALM]


# ------------------------------------------------ a bug met by one message fails it alone


class ExplodingCodec(Codec):
    """Our codec, but for a bug that decoding a message with ``;explode`` meets."""

    def decode(self, buf: bytes) -> RawMessage:
        if b";explode" in buf:
            raise RuntimeError("a bug met while decoding")
        return super().decode(buf)


class EchoApplication:
    """Answers 2001; an answer for ``...;unencodable`` carries a value out of range."""

    application_id = 4
    commands = frozenset({272})

    async def handle(self, requests, peer):
        answers = []
        for request in requests:
            number = request.get(AVP_CC_REQUEST_NUMBER)
            if request.get(AVP_SESSION_ID).endswith(";unencodable"):
                number = -1  # an Unsigned32 cannot hold it: encoding the answer raises
            answers.append(Answer(2001, [(AVP_CC_REQUEST_NUMBER, number)]))
        return answers


async def test_a_bug_met_by_one_message_of_a_read_fails_that_message_alone():
    settings = node_settings()
    node = build_node(settings, Metrics(), lambda codec: EchoApplication())
    node.codec = ExplodingCodec(node.codec.identity)
    server = DiameterServer(node, "127.0.0.1", 0)
    await server.start()
    peer = await ReferencePeer.connect("127.0.0.1", server.port)
    try:
        assert (await peer.open()).result_code == 2001
        sessions = ["pgw;a", "pgw;unencodable", "pgw;b", "pgw;explode", "pgw;c"]
        requests = [ref.ccr(session) for session in sessions]
        await peer.send(b"".join(request.as_bytes() for request in requests))
        answers = {}
        for _ in requests:
            answer = await peer.recv()
            answers[answer.header.hop_by_hop_identifier] = answer
        codes = [
            _avp_values(answers[r.header.hop_by_hop_identifier], AVP_RESULT_CODE) for r in requests
        ]
        assert codes == [[2001], [5012], [2001], [5012], [2001]]
        assert (await peer.request(ref.dwr())).result_code == 2001  # and it goes on
    finally:
        await peer.close()
        await server.stop()


def test_reserved_header_flag_bits_are_ignored(server_port):
    # RFC 6733 §3: reserved bits are set to 0 by the sender and ignored by the receiver,
    # so the request reaches the application (no engine on this node: 5012), never 3008
    request = ref.ccr("pgw.test.net;reserved;1")
    data = bytearray(request.as_bytes())
    data[4] |= 0x0F
    answer = _answer_to(server_port, bytes(data))
    assert _avp_values(answer, AVP_RESULT_CODE) == [5012]
    assert not answer.header.is_error
    assert _avp_values(answer, AVP_SESSION_ID) == ["pgw.test.net;reserved;1"]
