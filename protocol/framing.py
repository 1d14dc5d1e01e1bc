"""Streaming Diameter framing: feed bytes as they arrive, take whole messages out.

Shaped like msgpack's streaming ``Unpacker.feed``: the transport feeds every read and
gets back the complete messages it contains, however the bytes were split across
reads. The size limit is checked from the 20-byte header before the body is buffered,
so an oversized message costs no memory: its body is skipped as it streams past and
the caller gets a :class:`Oversized` item carrying the header, so it can still answer
DIAMETER_INVALID_MESSAGE_LENGTH (5015) to the hop-by-hop id.

A length field that cannot frame at all (below the header size) makes the stream
unrecoverable: the messages framed before it are still returned, :attr:`Framer.error`
is set, the next ``feed`` raises :class:`FramingError`, and the connection must close
(RFC 6733 §3: the message length is the only way to find the next message). The
version byte is not checked here: a message with another version is still framed so
that it can be answered with DIAMETER_UNSUPPORTED_VERSION (5011).
"""

from __future__ import annotations

from dataclasses import dataclass

HEADER_LENGTH = 20


class FramingError(Exception):
    """The byte stream cannot be framed any further; the connection must close."""


@dataclass(frozen=True, slots=True)
class Oversized:
    """A message longer than the limit; its body was skipped, its header kept."""

    header: bytes
    length: int


class Framer:
    """Accumulates a TCP byte stream and cuts it into Diameter messages."""

    __slots__ = ("_buffer", "_error", "_max_size", "_skip")

    def __init__(self, max_size: int) -> None:
        if max_size < HEADER_LENGTH:
            raise ValueError(f"max_size must be at least {HEADER_LENGTH}, got {max_size}")
        self._buffer = bytearray()
        self._max_size = max_size
        self._skip = 0
        self._error: FramingError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a message."""
        return len(self._buffer)

    @property
    def error(self) -> FramingError | None:
        """Why the stream cannot be framed any further, once that happened."""
        return self._error

    def feed(self, data: bytes) -> list[bytes | Oversized]:
        """Add ``data``; return every message completed by it, in order."""
        if self._error is not None:
            raise self._error
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return []
            data = data[self._skip :]
            self._skip = 0
        buffer = self._buffer
        buffer += data
        messages: list[bytes | Oversized] = []
        offset = 0
        available = len(buffer)
        while available - offset >= 4:
            length = int.from_bytes(buffer[offset + 1 : offset + 4], "big")
            if length < HEADER_LENGTH:
                self._error = FramingError(f"message length {length} is below the header size")
                break
            if length > self._max_size:
                if available - offset < HEADER_LENGTH:
                    break
                header = bytes(buffer[offset : offset + HEADER_LENGTH])
                messages.append(Oversized(header, length))
                remaining = available - offset
                if remaining >= length:
                    offset += length
                    continue
                self._skip = length - remaining
                offset = available
                break
            if available - offset < length:
                break
            messages.append(bytes(buffer[offset : offset + length]))
            offset += length
        if offset:
            del buffer[:offset]
        return messages
