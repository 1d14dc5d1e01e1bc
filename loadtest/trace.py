"""Trace files: Diameter messages with capture timestamps, for record and replay.

Format (all integers big-endian)::

    file    = magic meta record*
    magic   = "OCSTRACE" (8 bytes) version (u16, currently 1)
    meta    = length (u32) + that many bytes of UTF-8 JSON (what captured it, when)
    record  = timestamp_ns (u64, Unix time) connection (u32) direction (u8)
              length (u32) + the Diameter message exactly as it was on the wire

``direction`` is 0 for a message from the client (the network element) to the
server, 1 for the other way. ``connection`` numbers the client connections of one
capture from 1. A file cut short (e.g. the capture was killed) is read up to its last
whole record.

:func:`rewrite` prepares a captured request for replay: a new Session-Id (the old one
with ``;<suffix>`` appended, the optional part RFC 6733 §8.8 allows, so a trace replays
many times without colliding with its own sessions) and new Hop-by-Hop and
End-to-End identifiers.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"OCSTRACE"
VERSION = 1
TO_SERVER = 0
TO_CLIENT = 1
SESSION_ID = 263

_HEAD = struct.Struct(">8sH")
_LEN = struct.Struct(">I")
_RECORD = struct.Struct(">QIBI")
_U32 = struct.Struct(">I")

__all__ = [
    "TO_CLIENT",
    "TO_SERVER",
    "TraceError",
    "TraceReader",
    "TraceRecord",
    "TraceWriter",
    "read_trace",
    "rewrite",
    "session_id",
]


class TraceError(ValueError):
    """Not a trace file, or a record that cannot be used."""


@dataclass(frozen=True, slots=True)
class TraceRecord:
    timestamp_ns: int
    connection: int
    direction: int
    message: bytes


class TraceWriter:
    """Appends records to a new trace file; ``flush`` pushes them to the OS."""

    def __init__(self, path: str | Path, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self._fh: BinaryIO = self.path.open("wb")
        body = json.dumps(
            {"format": "ocs-loadtest trace", "version": VERSION, "created": time.time()}
            | (meta or {})
        ).encode()
        self._fh.write(_HEAD.pack(MAGIC, VERSION) + _LEN.pack(len(body)) + body)
        self.records = 0

    def write(self, timestamp_ns: int, connection: int, direction: int, message: bytes) -> None:
        self._fh.write(_RECORD.pack(timestamp_ns, connection, direction, len(message)))
        self._fh.write(message)
        self.records += 1

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            with contextlib.suppress(OSError):
                os.fsync(self._fh.fileno())
            self._fh.close()


class TraceReader:
    """Reads a trace file: ``meta`` (dict) and the records, in file order."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh: BinaryIO = self.path.open("rb")
        head = self._fh.read(_HEAD.size)
        if len(head) < _HEAD.size:
            raise TraceError(f"{self.path}: not a trace file (too short)")
        magic, version = _HEAD.unpack(head)
        if magic != MAGIC:
            raise TraceError(f"{self.path}: not a trace file (no {MAGIC.decode()} magic)")
        if version != VERSION:
            raise TraceError(f"{self.path}: trace format version {version}, expected {VERSION}")
        raw = self._fh.read(_LEN.size)
        if len(raw) < _LEN.size:
            raise TraceError(f"{self.path}: truncated header")
        (length,) = _LEN.unpack(raw)
        body = self._fh.read(length)
        try:
            self.meta: dict[str, Any] = json.loads(body)
        except ValueError:
            raise TraceError(f"{self.path}: unreadable header") from None

    def __iter__(self) -> Iterator[TraceRecord]:
        fh = self._fh
        while True:
            raw = fh.read(_RECORD.size)
            if len(raw) < _RECORD.size:
                return
            timestamp_ns, connection, direction, length = _RECORD.unpack(raw)
            message = fh.read(length)
            if len(message) < length:
                return
            yield TraceRecord(timestamp_ns, connection, direction, message)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> TraceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_trace(path: str | Path) -> tuple[dict[str, Any], list[TraceRecord]]:
    with TraceReader(path) as reader:
        return reader.meta, list(reader)


def _avps(message: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(offset, code, vendor flag, total padded length) of each top-level AVP."""
    offset, end = 20, len(message)
    while offset + 8 <= end:
        code, flags_length = struct.unpack_from(">II", message, offset)
        length = flags_length & 0xFFFFFF
        if length < 8:
            raise TraceError("AVP length below 8")
        padded = (length + 3) & ~3
        yield offset, code, flags_length >> 24, length, padded
        offset += padded


def session_id(message: bytes) -> str | None:
    """The Session-Id of a raw message, if it has one."""
    for offset, code, flags, length, _ in _avps(message):
        if code == SESSION_ID and not flags & 0x80:
            return message[offset + 8 : offset + length].decode("utf-8", "replace")
    return None


def rewrite(message: bytes, suffix: str | None, hop_by_hop: int, end_to_end: int) -> bytes:
    """``message`` with ``;suffix`` appended to its Session-Id and new identifiers."""
    if len(message) < 20:
        raise TraceError("message shorter than a Diameter header")
    out = bytearray(message)
    if suffix:
        for offset, code, flags, length, padded in _avps(message):
            if code != SESSION_ID or flags & 0x80:
                continue
            value = message[offset + 8 : offset + length] + b";" + suffix.encode()
            new_length = 8 + len(value)
            avp = _U32.pack(code) + _U32.pack((flags << 24) | new_length) + value
            avp += b"\x00" * (((new_length + 3) & ~3) - new_length)
            out = bytearray(message[:offset] + avp + message[offset + padded :])
            total = len(out)
            out[1:4] = total.to_bytes(3, "big")
            break
    out[12:16] = hop_by_hop.to_bytes(4, "big")
    out[16:20] = end_to_end.to_bytes(4, "big")
    return bytes(out)
