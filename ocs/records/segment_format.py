"""The segment file format: names, frames, and a scan that never raises on bad bytes.

A segment is ``MAGIC`` followed by frames. Every frame is

    kind (1 byte) | length (u32, big-endian) | crc32 of payload (u32, big-endian) | payload

``H`` (header, first, once): a msgpack map ``format``, ``partition``, ``sequence``,
``created`` (Unix s). ``E`` (entry, one per record): a msgpack array ``[stream id
(str), record (bin: the record's msgpack map exactly as the Lua script wrote it)]``.
``T`` (trailer, last, once; written when the segment is sealed): a msgpack map
``count`` (entries) and ``last`` (the last entry's stream id, or nil).

The length and CRC of each frame let a reader tell a complete frame from a torn one
(the tail of a file cut short by a crash), and the trailer tells a sealed segment from
one cut at a frame boundary. docs/records.md ("Export") is the user's description.
"""

from __future__ import annotations

import dataclasses
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import msgpack

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "SEGMENT_SUFFIX",
    "TEMP_SUFFIX",
    "Entry",
    "SegmentName",
    "SegmentScan",
    "encode_entry",
    "encode_header",
    "encode_trailer",
    "parse_segment_name",
    "read_segment",
    "scan_segment",
    "segment_name",
]

MAGIC = b"OCSR"
FORMAT_VERSION = 1
SEGMENT_SUFFIX = ".seg"
TEMP_SUFFIX = ".seg.tmp"
MAX_PARTITION = 16383
"""The highest partition (``redis.partitions`` is at most 16384): five digits from 10000."""
MAX_FRAME = 2**31
"""No frame is larger (a length above it is damage, not a record)."""

_FRAME = struct.Struct(">cII")
FRAME_OVERHEAD = _FRAME.size
_NAME = re.compile(r"^p(\d{4}|1\d{4})-(\d{12})(\.seg|\.seg\.tmp)$")


@dataclasses.dataclass(frozen=True, slots=True)
class SegmentName:
    partition: int
    sequence: int
    sealed: bool
    """``False``: a temporary name (``.seg.tmp``), the segment is still being written."""


def segment_name(partition: int, sequence: int, *, sealed: bool = True) -> str:
    """``p0042-000000000017.seg`` (``.seg.tmp`` while being written)."""
    if not 0 <= partition <= MAX_PARTITION:
        raise ValueError(f"partition must be from 0 to {MAX_PARTITION}, got {partition}")
    if not 0 <= sequence < 10**12:
        raise ValueError(f"sequence must be from 0 to 10^12 - 1, got {sequence}")
    return f"p{partition:04d}-{sequence:012d}{SEGMENT_SUFFIX if sealed else TEMP_SUFFIX}"


def parse_segment_name(name: str) -> SegmentName | None:
    """The parts of a segment file name, ``None`` for any other file."""
    match = _NAME.match(name)
    if match is None:
        return None
    return SegmentName(int(match[1]), int(match[2]), match[3] == SEGMENT_SUFFIX)


def _frame(kind: bytes, payload: bytes) -> bytes:
    return _FRAME.pack(kind, len(payload), zlib.crc32(payload)) + payload


def encode_header(partition: int, sequence: int, created: int) -> bytes:
    """``MAGIC`` and the header frame: the first bytes of a segment."""
    header = {
        "format": FORMAT_VERSION,
        "partition": partition,
        "sequence": sequence,
        "created": created,
    }
    return MAGIC + _frame(b"H", msgpack.packb(header))


_packer = msgpack.Packer(use_bin_type=True)


def encode_entry(entry_id: str, record_bytes: bytes) -> bytes:
    """One entry frame: the stream id and the record's msgpack bytes, unchanged."""
    payload: bytes = _packer.pack([entry_id, record_bytes])
    return _FRAME.pack(b"E", len(payload), zlib.crc32(payload)) + payload


def encode_trailer(count: int, last: str | None) -> bytes:
    return _frame(b"T", msgpack.packb({"count": count, "last": last}))


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    offset: int
    """Where the entry's frame starts in the file."""
    entry_id: str
    record: bytes
    """The record's msgpack map (decode with ``decode_record``)."""


@dataclasses.dataclass(slots=True)
class SegmentScan:
    """What a segment's bytes hold, and what is wrong with them.

    ``entries`` are the entries before the first damage. ``torn_at`` is the offset where
    the readable bytes end when the file ends inside a frame (a torn tail), else
    ``None``; ``problems`` names every defect (a torn tail included), empty for a
    sound sealed segment.
    """

    size: int
    header: dict[str, Any] | None = None
    entries: list[Entry] = dataclasses.field(default_factory=list)
    trailer: dict[str, Any] | None = None
    torn_at: int | None = None
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def sealed(self) -> bool:
        """The trailer was read and matches the entries."""
        return self.trailer is not None and not self.problems


def _read_frame(data: memoryview, offset: int) -> tuple[bytes, bytes, int] | str:
    """``(kind, payload, next offset)`` of the frame at ``offset``, or why not
    (``"torn"`` when the data ends inside it)."""
    if offset + FRAME_OVERHEAD > len(data):
        return "torn"
    kind, length, crc = _FRAME.unpack_from(data, offset)
    if kind not in (b"H", b"E", b"T") or length > MAX_FRAME:
        return f"not a frame at offset {offset} (kind {kind!r}, length {length})"
    start = offset + FRAME_OVERHEAD
    end = start + length
    if end > len(data):
        return "torn"
    payload = bytes(data[start:end])
    if zlib.crc32(payload) != crc:
        return f"checksum mismatch in the frame at offset {offset}"
    return kind, payload, end


def _torn(scan: SegmentScan, offset: int) -> None:
    scan.torn_at = offset
    scan.problems.append(
        f"torn tail at offset {offset}: {scan.size - offset} bytes of an incomplete frame"
    )


def _scan_header(data: memoryview, scan: SegmentScan, expected: SegmentName | None) -> int | None:
    if len(data) < len(MAGIC):
        _torn(scan, 0)
        return None
    if bytes(data[: len(MAGIC)]) != MAGIC:
        scan.problems.append("not a record segment (bad magic)")
        return None
    frame = _read_frame(data, len(MAGIC))
    if frame == "torn":
        _torn(scan, len(MAGIC))
        return None
    if isinstance(frame, str) or frame[0] != b"H":
        scan.problems.append(f"bad header: {frame if isinstance(frame, str) else 'missing'}")
        return None
    try:
        header = msgpack.unpackb(frame[1], raw=False)
    except Exception as error:  # msgpack raises several types on bad bytes
        scan.problems.append(f"bad header: {error}")
        return None
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        scan.problems.append(f"bad header: unknown format {header!r}")
        return None
    scan.header = header
    if expected is not None and (
        header.get("partition") != expected.partition or header.get("sequence") != expected.sequence
    ):
        scan.problems.append(
            f"header says partition {header.get('partition')} sequence "
            f"{header.get('sequence')}, the name says {expected.partition} {expected.sequence}"
        )
    return frame[2]


def _entry(payload: bytes, offset: int) -> Entry | None:
    try:
        value = msgpack.unpackb(payload, raw=False)
    except Exception:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], str)
        or not isinstance(value[1], bytes)
    ):
        return None
    return Entry(offset, value[0], value[1])


def scan_segment(data: bytes, expected: SegmentName | None = None) -> SegmentScan:
    """Read a whole segment's bytes; every defect becomes a problem, none an exception.

    ``expected``: the name's partition and sequence, checked against the header.
    """
    view = memoryview(data)
    scan = SegmentScan(size=len(data))
    offset = _scan_header(view, scan, expected)
    if offset is None:
        return scan
    while offset < len(view):
        frame = _read_frame(view, offset)
        if frame == "torn":
            _torn(scan, offset)
            return scan
        if isinstance(frame, str):
            scan.problems.append(frame)
            return scan
        kind, payload, after = frame
        if kind == b"E":
            entry = _entry(payload, offset)
            if entry is None:
                scan.problems.append(f"the entry at offset {offset} is not [stream id, record]")
                return scan
            scan.entries.append(entry)
        elif kind == b"T":
            _check_trailer(scan, payload, after, offset)
            return scan
        else:
            scan.problems.append(f"a second header at offset {offset}")
            return scan
        offset = after
    return scan


def _check_trailer(scan: SegmentScan, payload: bytes, after: int, offset: int) -> None:
    try:
        trailer = msgpack.unpackb(payload, raw=False)
    except Exception:
        trailer = None
    if not isinstance(trailer, dict):
        scan.problems.append(f"bad trailer at offset {offset}")
        return
    scan.trailer = trailer
    last = scan.entries[-1].entry_id if scan.entries else None
    if trailer.get("count") != len(scan.entries) or trailer.get("last") != last:
        scan.problems.append(
            f"trailer says {trailer.get('count')} entries ending at {trailer.get('last')}, "
            f"the segment holds {len(scan.entries)} ending at {last}"
        )
    if after != scan.size:
        scan.problems.append(f"{scan.size - after} bytes after the trailer at offset {after}")


def read_segment(path: Path) -> SegmentScan:
    """:func:`scan_segment` of a file, its name checked against its header."""
    return scan_segment(path.read_bytes(), parse_segment_name(path.name))
