"""Hand-built Diameter bytes for the codec tests, written with struct only.

The decoder tests feed these bytes instead of our encoder's output, so an encoder
bug cannot hide a decoder bug (or the other way round).
"""

from __future__ import annotations

import struct

from cext import codec

M = 0x40
V = 0x80
TGPP = 10415

# A small hand-written table: one AVP code per type, plus vendor and nested groups.
UTF8 = 1
OCTETS = 2
I32 = 3
I64 = 4
U32 = 5
U64 = 6
F32 = 7
F64 = 8
GROUP = 9
ADDR = 10
TIME_AVP = 11
IDENT = 12
URI = 13
ENUM = 14
GROUP2 = 15
NOT_M = 16  # Unsigned32 whose default flags are 0
V_U32 = 100  # vendor TGPP
V_GROUP = 101  # vendor TGPP

TYPES = codec.TypeTable(
    {
        (UTF8, 0): (codec.UTF8STRING, M),
        (OCTETS, 0): (codec.OCTET_STRING, M),
        (I32, 0): (codec.INTEGER32, M),
        (I64, 0): (codec.INTEGER64, M),
        (U32, 0): (codec.UNSIGNED32, M),
        (U64, 0): (codec.UNSIGNED64, M),
        (F32, 0): (codec.FLOAT32, M),
        (F64, 0): (codec.FLOAT64, M),
        (GROUP, 0): (codec.GROUPED, M),
        (ADDR, 0): (codec.ADDRESS, M),
        (TIME_AVP, 0): (codec.TIME, M),
        (IDENT, 0): (codec.DIAMETER_IDENTITY, M),
        (URI, 0): (codec.DIAMETER_URI, M),
        (ENUM, 0): (codec.ENUMERATED, M),
        (GROUP2, 0): (codec.GROUPED, M),
        (NOT_M, 0): (codec.UNSIGNED32, 0),
        (V_U32, TGPP): (codec.UNSIGNED32, M),
        (V_GROUP, TGPP): (codec.GROUPED, M),
    }
)


def avp(
    code: int,
    data: bytes = b"",
    flags: int = M,
    vendor: int | None = None,
    length: int | None = None,
    pad: bool = True,
) -> bytes:
    """One AVP: header (V bit and Vendor-Id when ``vendor`` is given), data, padding.

    ``length`` overrides the length field, to build malformed AVPs.
    """
    header_size = 8
    if vendor is not None:
        flags |= V
        header_size = 12
    if length is None:
        length = header_size + len(data)
    out = struct.pack("!IB", code, flags) + length.to_bytes(3, "big")
    if vendor is not None:
        out += struct.pack("!I", vendor)
    out += data
    if pad:
        out += b"\x00" * (-len(out) % 4)
    return out


def message(
    *avps: bytes,
    flags: int = 0x80,
    command: int = 272,
    app: int = 4,
    hop_by_hop: int = 0x11223344,
    end_to_end: int = 0x55667788,
    version: int = 1,
    length: int | None = None,
) -> bytes:
    """A whole message around already-built AVPs; ``length`` overrides the field."""
    body = b"".join(avps)
    if length is None:
        length = 20 + len(body)
    return (
        bytes([version])
        + length.to_bytes(3, "big")
        + bytes([flags])
        + command.to_bytes(3, "big")
        + struct.pack("!III", app, hop_by_hop, end_to_end)
        + body
    )


def u32(v: int) -> bytes:
    return struct.pack("!I", v)


def u64(v: int) -> bytes:
    return struct.pack("!Q", v)
