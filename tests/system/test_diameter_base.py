"""RFC 6733 base behaviour of the OCS Diameter server, over real TCP.

The server is the real OCS node (``ocs.service.build_node``) listening on a free port;
the peer is python-diameter's message classes on raw sockets.
"""

from __future__ import annotations

import asyncio
import logging
import struct

import pytest
from diameter.message import Message
from diameter.message.avp import Avp
from diameter.message.constants import (
    AVP_AUTH_APPLICATION_ID,
    AVP_CC_REQUEST_TYPE,
    AVP_FAILED_AVP,
    AVP_FIRMWARE_REVISION,
    AVP_HOST_IP_ADDRESS,
    AVP_ORIGIN_HOST,
    AVP_ORIGIN_REALM,
    AVP_PRODUCT_NAME,
    AVP_RESULT_CODE,
    AVP_SESSION_ID,
    AVP_SUPPORTED_VENDOR_ID,
    AVP_VENDOR_ID,
)

from tests.protocol import reference_peer as ref
from tests.protocol.reference_peer import ReferencePeer

FLAG_ERROR = 0x20
FLAG_RETRANSMIT = 0x10


def result_code(message: Message) -> int:
    return message.find_avps((AVP_RESULT_CODE, 0))[0].value


def flags(message: Message) -> int:
    return message.header.command_flags


def failed_avp_payload(message: Message) -> list[Avp]:
    failed = message.find_avps((AVP_FAILED_AVP, 0))
    assert failed, "answer has no Failed-AVP"
    return failed[0].value


async def open_peer(server, origin_host: str = "pgw.test.net") -> ReferencePeer:
    peer = await ReferencePeer.connect("127.0.0.1", server.port)
    cea = await peer.open(origin_host)
    assert result_code(cea) == 2001
    return peer


# capabilities exchange ---------------------------------------------------------------


async def test_cer_gets_cea_2001_with_our_capabilities(start_server):
    server = await start_server()
    peer = await ReferencePeer.connect("127.0.0.1", server.port)
    cer = ref.cer()
    cea = await peer.request(cer)
    assert cea.header.command_code == 257
    assert not cea.header.is_request
    assert cea.header.hop_by_hop_identifier == cer.header.hop_by_hop_identifier
    assert cea.header.end_to_end_identifier == cer.header.end_to_end_identifier
    assert result_code(cea) == 2001
    assert cea.origin_host == b"ocs.test.net"
    assert cea.origin_realm == b"test.net"
    assert cea.find_avps((AVP_HOST_IP_ADDRESS, 0))[0].value[1] == "127.0.0.1"
    assert cea.find_avps((AVP_VENDOR_ID, 0))[0].value == 0
    assert cea.find_avps((AVP_PRODUCT_NAME, 0))[0].value == "ocs"
    assert cea.find_avps((AVP_FIRMWARE_REVISION, 0))[0].value >= 1
    assert [a.value for a in cea.find_avps((AVP_SUPPORTED_VENDOR_ID, 0))] == [10415]
    assert [a.value for a in cea.find_avps((AVP_AUTH_APPLICATION_ID, 0))] == [4]
    await peer.close()


async def test_cer_from_unknown_origin_host_gets_3010_and_close(start_server):
    server = await start_server(diameter_allowed_peers=("pgw.allowed.net",))
    peer = await ReferencePeer.connect("127.0.0.1", server.port)
    cea = await peer.request(ref.cer("pgw.intruder.net"))
    assert result_code(cea) == 3010
    assert flags(cea) & FLAG_ERROR
    assert await peer.wait_closed()


async def test_cer_from_allowed_origin_host_is_accepted(start_server):
    server = await start_server(diameter_allowed_peers=("PGW.allowed.net",))
    peer = await open_peer(server, "pgw.allowed.net")
    await peer.close()


async def test_cer_from_address_outside_allowed_networks_gets_3010(start_server):
    server = await start_server(diameter_allowed_networks=("10.0.0.0/8",))
    peer = await ReferencePeer.connect("127.0.0.1", server.port)
    cea = await peer.request(ref.cer())
    assert result_code(cea) == 3010
    assert await peer.wait_closed()


async def test_cer_without_common_application_gets_5010_and_close(start_server):
    server = await start_server()
    peer = await ReferencePeer.connect("127.0.0.1", server.port)
    cea = await peer.request(ref.cer(applications=(16777238,)))  # Gx only
    assert result_code(cea) == 5010
    assert not flags(cea) & FLAG_ERROR
    assert await peer.wait_closed()


async def test_cer_with_relay_application_is_accepted(start_server):
    server = await start_server()
    peer = await ReferencePeer.connect("127.0.0.1", server.port)
    cea = await peer.request(ref.cer(applications=(0xFFFFFFFF,)))
    assert result_code(cea) == 2001
    await peer.close()


async def test_cer_missing_host_ip_address_gets_5005_with_failed_avp(start_server):
    server = await start_server()
    peer = await ReferencePeer.connect("127.0.0.1", server.port)
    cer = ref.cer()
    cer.host_ip_address = []
    cea = await peer.request(cer)
    assert result_code(cea) == 5005
    assert [a.code for a in failed_avp_payload(cea)] == [AVP_HOST_IP_ADDRESS]
    assert await peer.wait_closed()


async def test_request_before_cer_closes_the_connection(start_server):
    server = await start_server()
    peer = await ReferencePeer.connect("127.0.0.1", server.port)
    await peer.send(ref.dwr())
    assert await peer.wait_closed()


async def test_cer_timeout_closes_a_silent_connection(start_server):
    server = await start_server(diameter_cer_timeout=0.3)
    peer = await ReferencePeer.connect("127.0.0.1", server.port)
    assert await peer.wait_closed(timeout=3)


# watchdog and disconnect -------------------------------------------------------------


async def test_dwr_gets_dwa(start_server):
    server = await start_server()
    peer = await open_peer(server)
    dwr = ref.dwr()
    dwa = await peer.request(dwr)
    assert dwa.header.command_code == 280
    assert dwa.header.hop_by_hop_identifier == dwr.header.hop_by_hop_identifier
    assert result_code(dwa) == 2001
    assert dwa.origin_host == b"ocs.test.net"
    await peer.close()


async def test_dpr_gets_dpa_then_close(start_server):
    server = await start_server()
    peer = await open_peer(server)
    dpa = await peer.request(ref.dpr())
    assert dpa.header.command_code == 282
    assert result_code(dpa) == 2001
    assert await peer.wait_closed()


async def test_a_peer_closing_is_logged_with_its_state_and_cause(start_server, caplog):
    """Issue 13: a peer that goes away, or says goodbye with DPR, leaves a log line."""
    server = await start_server()
    with caplog.at_level(logging.INFO, logger="protocol.connection"):
        gone = await open_peer(server, origin_host="pgw1.test.net")
        await gone.close()  # the TCP connection just ends
        polite = await open_peer(server, origin_host="pgw2.test.net")
        await polite.request(ref.dpr())
        assert await polite.wait_closed()
        for _ in range(100):
            closed = [r for r in caplog.records if r.msg.startswith("diameter_peer_closed")]
            if len(closed) == 2:
                break
            await asyncio.sleep(0.02)
    by_host = {record.args[1]: record.args for record in closed}
    assert by_host["pgw1.test.net"][2:] == ("OPEN", "PEER_DISC")
    assert by_host["pgw2.test.net"][2] == "OPEN"
    assert "DPR" in by_host["pgw2.test.net"][3]


async def test_server_sends_dwr_after_watchdog_interval_of_silence(start_server):
    server = await start_server(diameter_watchdog_interval=6.0)
    peer = await open_peer(server)
    dwr = await peer.recv(timeout=10)  # Tw = 6 s with up to 2 s jitter
    assert dwr.header.command_code == 280 and dwr.header.is_request
    await peer.close()


# application-level errors ------------------------------------------------------------


async def test_unsupported_command_gets_3001_with_e_bit(start_server):
    server = await start_server()
    peer = await open_peer(server)
    request = ref.ccr()
    request.header.command_code = 999
    answer = await peer.request(request)
    assert answer.header.command_code == 999
    assert result_code(answer) == 3001
    assert flags(answer) & FLAG_ERROR
    await peer.close()


async def test_unsupported_application_gets_3007_with_e_bit(start_server):
    server = await start_server()
    peer = await open_peer(server)
    request = ref.ccr()
    request.header.application_id = 16777238
    answer = await peer.request(request)
    assert result_code(answer) == 3007
    assert flags(answer) & FLAG_ERROR
    await peer.close()


async def test_request_with_e_bit_gets_3008(start_server):
    server = await start_server()
    peer = await open_peer(server)
    request = ref.ccr()
    request.header.is_error = True
    answer = await peer.request(request)
    assert result_code(answer) == 3008
    assert flags(answer) & FLAG_ERROR
    await peer.close()


def _first_avp_offset(data: bytes, code: int) -> int:
    offset = 20
    while offset < len(data):
        avp_code, avp_length = (
            struct.unpack_from("!I", data, offset)[0],
            int.from_bytes(data[offset + 5 : offset + 8], "big"),
        )
        if avp_code == code:
            return offset
        offset += (avp_length + 3) & ~3
    raise AssertionError(f"AVP {code} not found")


async def test_reserved_avp_flag_bit_gets_3009_with_failed_avp(start_server):
    server = await start_server()
    peer = await open_peer(server)
    data = bytearray(ref.ccr().as_bytes())
    offset = _first_avp_offset(data, AVP_CC_REQUEST_TYPE)
    data[offset + 4] |= 0x01  # a reserved AVP flag bit
    answer = await peer.request(bytes(data))
    assert result_code(answer) == 3009
    assert [a.code for a in failed_avp_payload(answer)] == [AVP_CC_REQUEST_TYPE]
    await peer.close()


async def test_missing_mandatory_avp_gets_5005_with_failed_avp(start_server):
    server = await start_server()
    peer = await open_peer(server)
    request = ref.ccr()
    data = Message(request.header, [a for a in request.avps if a.code != AVP_CC_REQUEST_TYPE])
    answer = await peer.request(data.as_bytes())
    assert result_code(answer) == 5005
    assert not flags(answer) & FLAG_ERROR
    missing = failed_avp_payload(answer)
    assert [(a.code, a.value) for a in missing] == [(AVP_CC_REQUEST_TYPE, 0)]
    assert answer.find_avps((AVP_SESSION_ID, 0))[0].value == request.session_id
    await peer.close()


async def test_unknown_avp_with_m_bit_gets_5001_with_failed_avp(start_server):
    server = await start_server()
    peer = await open_peer(server)
    request = ref.ccr()
    unknown = Avp(code=987654, payload=b"\x00\x00\x00\x07")
    unknown.is_mandatory = True
    request.append_avp(unknown)
    answer = await peer.request(request)
    assert result_code(answer) == 5001
    assert [(a.code, a.payload) for a in failed_avp_payload(answer)] == [
        (987654, b"\x00\x00\x00\x07")
    ]
    await peer.close()


async def test_unknown_avp_without_m_bit_is_ignored(start_server):
    server = await start_server()
    peer = await open_peer(server)
    request = ref.ccr()
    request.append_avp(Avp(code=987654, payload=b"\x00\x00\x00\x07"))
    answer = await peer.request(request)
    assert result_code(answer) not in (5001, 5014, 3009)
    await peer.close()


async def test_invalid_avp_length_gets_5014_with_failed_avp(start_server):
    server = await start_server()
    peer = await open_peer(server)
    data = bytearray(ref.ccr().as_bytes())
    offset = _first_avp_offset(data, AVP_CC_REQUEST_TYPE)
    data[offset + 5 : offset + 8] = (10).to_bytes(3, "big")  # Enumerated needs 12
    answer = await peer.request(bytes(data))
    assert result_code(answer) == 5014
    assert failed_avp_payload(answer)[0].code == AVP_CC_REQUEST_TYPE
    await peer.close()


async def test_misaligned_message_length_gets_5015(start_server):
    server = await start_server()
    peer = await open_peer(server)
    data = bytearray(ref.ccr().as_bytes() + b"\x00\x00")
    data[1:4] = len(data).to_bytes(3, "big")
    answer = await peer.request(bytes(data))
    assert result_code(answer) == 5015
    # the connection is still usable
    assert result_code(await peer.request(ref.dwr())) == 2001
    await peer.close()


async def test_oversized_message_gets_5015_without_buffering_and_peer_keeps_going(
    start_server,
):
    server = await start_server(diameter_max_message_size=4096)
    peer = await open_peer(server)
    request = ref.ccr()
    request.append_avp(Avp(code=987655, payload=b"x" * 8000))
    answer = await peer.request(request)
    assert result_code(answer) == 5015
    assert answer.header.hop_by_hop_identifier == request.header.hop_by_hop_identifier
    assert result_code(await peer.request(ref.dwr())) == 2001
    await peer.close()


async def test_length_below_header_size_closes_the_connection(start_server):
    server = await start_server()
    peer = await open_peer(server)
    await peer.send(b"\x01\x00\x00\x08" + b"\x00" * 16)
    assert await peer.wait_closed()


async def test_unsupported_version_gets_5011(start_server):
    server = await start_server()
    peer = await open_peer(server)
    data = bytearray(ref.ccr().as_bytes())
    data[0] = 2
    answer = await peer.request(bytes(data))
    assert result_code(answer) == 5011
    await peer.close()


# framing and concurrency -------------------------------------------------------------


async def test_message_split_across_many_reads(start_server):
    server = await start_server()
    peer = await ReferencePeer.connect("127.0.0.1", server.port)
    data = ref.cer().as_bytes()
    for i in range(len(data)):
        peer.writer.write(data[i : i + 1])
        await peer.writer.drain()
        await asyncio.sleep(0)
    assert result_code(await peer.recv()) == 2001
    await peer.close()


async def test_many_messages_in_one_read(start_server):
    server = await start_server()
    peer = await open_peer(server)
    dwrs = [ref.dwr() for _ in range(5)]
    await peer.send(b"".join(d.as_bytes() for d in dwrs))
    answers = [await peer.recv() for _ in dwrs]
    assert [a.header.hop_by_hop_identifier for a in answers] == [
        d.header.hop_by_hop_identifier for d in dwrs
    ]
    await peer.close()


async def test_thousand_requests_in_flight_are_all_answered(start_server):
    server = await start_server()
    peer = await open_peer(server)
    requests = [ref.ccr(session_id=f"pgw.test.net;burst;{i}") for i in range(1000)]
    expected = {r.header.hop_by_hop_identifier: r.session_id for r in requests}
    await peer.send(b"".join(r.as_bytes() for r in requests))
    seen = {}
    codes = set()
    for _ in requests:
        answer = await peer.recv()
        hop_by_hop = answer.header.hop_by_hop_identifier
        seen[hop_by_hop] = answer.find_avps((AVP_SESSION_ID, 0))[0].value
        codes.add(result_code(answer))
    assert seen == expected
    assert codes == {5012}  # valid CCRs, reaching the application (no charging engine yet)
    await peer.close()


async def test_retransmission_with_t_flag_gets_the_cached_answer(start_server):
    server = await start_server()
    peer = await open_peer(server)
    calls = server.node.application.calls
    first = ref.ccr(session_id="pgw.test.net;dup;1")
    answer = await peer.request(first)
    again = ref.ccr(session_id="pgw.test.net;dup;1", hop_by_hop=ref.next_id())
    again.header.end_to_end_identifier = first.header.end_to_end_identifier
    again.header.is_retransmit = True
    repeated = await peer.request(again)
    assert server.node.application.calls == calls + 1
    assert repeated.header.hop_by_hop_identifier == again.header.hop_by_hop_identifier
    assert repeated.as_bytes()[16:] == answer.as_bytes()[16:]
    assert result_code(repeated) == result_code(answer)
    await peer.close()


async def test_same_end_to_end_without_t_flag_is_processed_again(start_server):
    server = await start_server()
    peer = await open_peer(server)
    calls = server.node.application.calls
    first = ref.ccr()
    await peer.request(first)
    again = ref.ccr()
    again.header.end_to_end_identifier = first.header.end_to_end_identifier
    await peer.request(again)
    assert server.node.application.calls == calls + 2
    await peer.close()


# graceful shutdown -------------------------------------------------------------------


async def test_stop_sends_dpr_rebooting_finishes_inflight_and_waits_for_dpa(start_server):
    server = await start_server(application_delay=0.3)
    peer = await open_peer(server)
    request = ref.ccr()
    await peer.send(request)
    await asyncio.sleep(0.05)  # the request is now in flight
    stopping = asyncio.ensure_future(server.stop())
    received = [await peer.recv(), await peer.recv()]
    by_command = {m.header.command_code: m for m in received}
    assert set(by_command) == {272, 282}
    dpr = by_command[282]
    assert dpr.header.is_request
    assert dpr.disconnect_cause == 0  # REBOOTING
    answer = dpr.to_answer()
    answer.result_code = 2001
    answer.origin_host = b"pgw.test.net"
    answer.origin_realm = b"test.net"
    await peer.send(answer)
    assert await peer.wait_closed()
    await asyncio.wait_for(stopping, 5)


async def test_other_peers_keep_being_served_after_a_peer_sends_garbage(start_server):
    server = await start_server()
    good = await open_peer(server)
    bad = await open_peer(server, "pgw2.test.net")
    await bad.send(b"\x01\x00\x00\x01garbage-garbage-garbage")
    assert await bad.wait_closed()
    assert result_code(await good.request(ref.dwr())) == 2001
    await good.close()


@pytest.mark.parametrize("origin_host", ["pgw.test.net"])
async def test_origin_host_is_echoed_in_ccr_answer(start_server, origin_host):
    server = await start_server()
    peer = await open_peer(server, origin_host)
    answer = await peer.request(ref.ccr(origin_host=origin_host))
    assert answer.find_avps((AVP_ORIGIN_HOST, 0))[0].value == b"ocs.test.net"
    assert answer.find_avps((AVP_ORIGIN_REALM, 0))[0].value == b"test.net"
    await peer.close()


def _with_invalid_utf8_origin_host(data: bytes) -> bytes:
    """Replace the first byte of Origin-Host's value with 0xFF (never valid UTF-8)."""
    raw = bytearray(data)
    offset = _first_avp_offset(raw, AVP_ORIGIN_HOST)
    raw[offset + 8] = 0xFF
    return bytes(raw)


async def test_cer_with_invalid_utf8_origin_host_gets_5004_and_close(start_server):
    server = await start_server()
    peer = await ReferencePeer.connect("127.0.0.1", server.port)
    await peer.send(_with_invalid_utf8_origin_host(ref.cer().as_bytes()))
    cea = Message.from_bytes(await peer.recv_bytes())
    assert result_code(cea) == 5004
    assert failed_avp_payload(cea)[0].code == AVP_ORIGIN_HOST
    assert await peer.wait_closed()


async def test_retransmitted_ccr_with_invalid_origin_host_is_still_answered(start_server):
    server = await start_server()
    peer = await open_peer(server)
    request = ref.ccr()
    request.header.is_retransmit = True
    answer = await peer.request(_with_invalid_utf8_origin_host(request.as_bytes()))
    assert result_code(answer) == 5004
    assert result_code(await peer.request(ref.dwr())) == 2001  # and the peer goes on
    await peer.close()


async def test_requests_before_a_framing_fault_are_answered_then_the_connection_closes(
    start_server,
):
    server = await start_server()
    peer = await open_peer(server)
    dwr = ref.dwr()
    await peer.send(dwr.as_bytes() + b"\x01\x00\x00\x08" + bytes(16))
    dwa = await peer.recv()
    assert dwa.header.hop_by_hop_identifier == dwr.header.hop_by_hop_identifier
    assert result_code(dwa) == 2001
    assert await peer.wait_closed()


async def test_a_peer_that_never_reads_cannot_grow_our_write_buffer(start_server):
    """Flow control: while our answers pile up unread, we stop reading from that peer."""
    server = await start_server()
    peer = await open_peer(server)
    (connection,) = server.connections
    chunk = b"".join(ref.dwr().as_bytes() for _ in range(2000))  # ~130 KB of DWRs
    sent = 0
    try:
        while sent < 40_000_000:
            peer.writer.write(chunk)
            await asyncio.wait_for(peer.writer.drain(), 2)
            sent += len(chunk)
    except TimeoutError:
        pass  # the server stopped reading: our send buffer is full
    await asyncio.sleep(0.2)
    assert sent < 40_000_000
    assert connection._transport.get_write_buffer_size() < 2_000_000
    peer.writer.transport.abort()
