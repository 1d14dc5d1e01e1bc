"""The segment file format: names, frames, and a scan that reports damage instead of raising."""

from __future__ import annotations

import msgpack
import pytest

from ocs.records.segment_format import (
    FORMAT_VERSION,
    MAGIC,
    SegmentName,
    encode_entry,
    encode_header,
    encode_trailer,
    parse_segment_name,
    scan_segment,
    segment_name,
)
from tests.ocs.records.record_factory import entry_id, record_bytes


def _segment(count: int, partition: int = 42, sequence: int = 17, *, trailer: bool = True) -> bytes:
    data = encode_header(partition, sequence, 1_764_547_200)
    data += b"".join(encode_entry(entry_id(i), record_bytes(i)) for i in range(count))
    return data + (
        encode_trailer(count, entry_id(count - 1) if count else None) if trailer else b""
    )


def test_names_say_partition_and_sequence():
    assert segment_name(42, 17) == "p0042-000000000017.seg"
    assert segment_name(42, 17, sealed=False) == "p0042-000000000017.seg.tmp"
    assert parse_segment_name("p0042-000000000017.seg") == SegmentName(42, 17, True)
    assert parse_segment_name("p0042-000000000017.seg.tmp") == SegmentName(42, 17, False)
    for other in ("p0042.checkpoint.json", "p0042.lock", "p42-17.seg", "x0042-000000000017.seg"):
        assert parse_segment_name(other) is None
    # redis.partitions allows 16384 partitions: the last ones take five digits
    assert segment_name(16_383, 1) == "p16383-000000000001.seg"
    assert parse_segment_name("p16383-000000000001.seg") == SegmentName(16_383, 1, True)
    assert parse_segment_name("p01234-000000000001.seg") is None  # one name per partition
    with pytest.raises(ValueError):
        segment_name(16_384, 1)


def test_a_sealed_segment_scans_whole():
    scan = scan_segment(_segment(5), SegmentName(42, 17, True))
    assert scan.problems == [] and scan.sealed and scan.torn_at is None
    assert scan.header == {
        "format": FORMAT_VERSION, "partition": 42, "sequence": 17, "created": 1_764_547_200
    }  # fmt: skip
    assert [e.entry_id for e in scan.entries] == [entry_id(i) for i in range(5)]
    assert [e.record for e in scan.entries] == [record_bytes(i) for i in range(5)]
    assert msgpack.unpackb(scan.entries[0].record)["id"] == msgpack.unpackb(record_bytes(0))["id"]
    assert scan.trailer == {"count": 5, "last": entry_id(4)}


def test_every_truncation_is_a_torn_tail_with_the_offset_of_the_last_whole_frame():
    data = _segment(3)
    whole = scan_segment(data)
    frame_starts = [len(MAGIC), *[e.offset for e in whole.entries], len(data) - len(
        encode_trailer(3, entry_id(2)))]  # fmt: skip
    for cut in range(len(data)):
        scan = scan_segment(data[:cut])  # never raises
        assert not scan.sealed
        assert scan.torn_at is not None or cut in frame_starts, cut
        if scan.torn_at is not None:
            assert scan.torn_at == max(s for s in [0, *frame_starts] if s <= cut), cut
            assert scan.problems == [
                f"torn tail at offset {scan.torn_at}: {cut - scan.torn_at} bytes of an "
                "incomplete frame"
            ]
        assert [e.entry_id for e in scan.entries] == [
            e.entry_id for e in whole.entries if e.offset < (scan.torn_at or cut)
        ]


def test_a_flipped_byte_is_a_checksum_mismatch_and_ends_the_entries():
    data = bytearray(_segment(4))
    offset = scan_segment(bytes(data)).entries[2].offset
    data[offset + 20] ^= 0xFF
    scan = scan_segment(bytes(data))
    assert [e.entry_id for e in scan.entries] == [entry_id(0), entry_id(1)]
    assert scan.problems == [f"checksum mismatch in the frame at offset {offset}"]


def test_header_disagreeing_with_the_name_bad_magic_and_extra_bytes_are_problems():
    assert scan_segment(_segment(1), SegmentName(42, 18, True)).problems == [
        "header says partition 42 sequence 17, the name says 42 18"
    ]
    assert scan_segment(b"NOPE" + _segment(1)[4:]).problems == ["not a record segment (bad magic)"]
    data = _segment(2) + b"\x00"
    assert scan_segment(data).problems == [f"1 bytes after the trailer at offset {len(data) - 1}"]


def test_a_trailer_that_disagrees_with_the_entries_is_a_problem():
    data = _segment(2, trailer=False) + encode_trailer(3, entry_id(2))
    assert scan_segment(data).problems == [
        f"trailer says 3 entries ending at {entry_id(2)}, the segment holds 2 ending at {entry_id(1)}"
    ]


def test_no_trailer_is_not_sealed_but_not_torn():
    scan = scan_segment(_segment(2, trailer=False))
    assert scan.problems == [] and scan.torn_at is None and not scan.sealed
    assert len(scan.entries) == 2
