"""Trace files and the rewriting of captured requests for replay."""

from __future__ import annotations

import pytest
from diameter.message import Message as PdMessage

from cext import codec
from loadtest.trace import (
    TO_CLIENT,
    TO_SERVER,
    TraceError,
    TraceReader,
    TraceWriter,
    read_trace,
    rewrite,
    session_id,
)
from protocol.dictionary import build_type_table
from protocol.dictionary import constants as c

TYPES = build_type_table()


def ccr(session: str = "pgw.example.net;1;42") -> bytes:
    return codec.encode_message(
        0xC0,
        c.CMD_CREDIT_CONTROL,
        4,
        0x11111111,
        0x22222222,
        [
            (c.AVP_SESSION_ID, session),
            (c.AVP_ORIGIN_HOST, "pgw.example.net"),
            (c.AVP_ORIGIN_REALM, "example.net"),
            (c.AVP_DESTINATION_REALM, "ocs.example"),
            (c.AVP_AUTH_APPLICATION_ID, 4),
            (c.AVP_SERVICE_CONTEXT_ID, "32251@3gpp.org"),
            (c.AVP_CC_REQUEST_TYPE, 1),
            (c.AVP_CC_REQUEST_NUMBER, 0),
        ],
        TYPES,
    )


def test_write_then_read_back(tmp_path):
    path = tmp_path / "a.trace"
    writer = TraceWriter(path, {"listen": "x"})
    writer.write(1_000_000_000, 1, TO_SERVER, ccr())
    writer.write(1_500_000_000, 2, TO_CLIENT, b"\x01" * 20)
    writer.close()
    meta, records = read_trace(path)
    assert meta["listen"] == "x" and meta["version"] == 1
    assert [(r.timestamp_ns, r.connection, r.direction) for r in records] == [
        (1_000_000_000, 1, TO_SERVER),
        (1_500_000_000, 2, TO_CLIENT),
    ]
    assert records[0].message == ccr()


def test_a_file_cut_short_reads_up_to_its_last_whole_record(tmp_path):
    path = tmp_path / "cut.trace"
    writer = TraceWriter(path)
    writer.write(1, 1, TO_SERVER, ccr())
    writer.write(2, 1, TO_SERVER, ccr())
    writer.close()
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    assert len(read_trace(path)[1]) == 1


def test_not_a_trace(tmp_path):
    path = tmp_path / "x.trace"
    path.write_bytes(b"GARBAGE!" + b"\x00" * 20)
    with pytest.raises(TraceError, match="magic"):
        TraceReader(path)


def test_rewrite_appends_to_the_session_id_and_sets_new_ids():
    original = ccr("pgw.example.net;1;42")
    out = rewrite(original, "lt1.0", 7, 8)
    message = PdMessage.from_bytes(out)
    assert message.session_id == "pgw.example.net;1;42;lt1.0"
    assert message.header.hop_by_hop_identifier == 7
    assert message.header.end_to_end_identifier == 8
    assert message.header.length == len(out) and len(out) % 4 == 0
    assert message.cc_request_type == 1 and message.service_context_id == "32251@3gpp.org"
    assert session_id(out) == "pgw.example.net;1;42;lt1.0"
    # our codec agrees, every padding included
    assert codec.decode_message(out, TYPES).get(c.AVP_ORIGIN_HOST) == "pgw.example.net"


def test_rewrite_without_suffix_only_changes_ids():
    original = ccr()
    out = rewrite(original, None, 1, 2)
    assert out[20:] == original[20:] and out[:12] == original[:12]
