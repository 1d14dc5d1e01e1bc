"""Unit tests of the Cython Diameter codec (cext.codec).

Decoder inputs are built by hand with struct (tests/cext/wire.py); encoder outputs are
compared with hand-written bytes.  Every CodecError path is checked for its
Result-Code and its exact Failed-AVP bytes.
"""

from __future__ import annotations

import collections
import gc
import ipaddress
import math
import random
import struct

import pytest

from cext import codec
from protocol.dictionary import build_type_table
from protocol.dictionary import constants as c

from .wire import (
    ADDR,
    ENUM,
    F32,
    F64,
    GROUP,
    GROUP2,
    I32,
    I64,
    IDENT,
    NOT_M,
    OCTETS,
    TGPP,
    TIME_AVP,
    TYPES,
    U32,
    U64,
    URI,
    UTF8,
    V_GROUP,
    V_U32,
    M,
    avp,
    message,
    u32,
    u64,
)

UNKNOWN = 999  # not in TYPES


def decode(*avps: bytes, **kw) -> codec.Message:
    return codec.decode_message(message(*avps, **kw), TYPES)


def codec_error(buf: bytes, types: codec.TypeTable = TYPES) -> codec.CodecError:
    with pytest.raises(codec.CodecError) as info:
        codec.decode_message(buf, types)
    return info.value


# ============================================================================ constants


def test_constants_have_the_documented_values():
    assert (codec.OCTET_STRING, codec.INTEGER32, codec.INTEGER64, codec.UNSIGNED32) == (1, 2, 3, 4)
    assert (codec.UNSIGNED64, codec.FLOAT32, codec.FLOAT64, codec.GROUPED) == (5, 6, 7, 8)
    assert (codec.ADDRESS, codec.TIME, codec.UTF8STRING, codec.DIAMETER_IDENTITY) == (9, 10, 11, 12)
    assert (codec.DIAMETER_URI, codec.ENUMERATED) == (13, 14)
    assert (codec.FLAG_REQUEST, codec.FLAG_PROXIABLE, codec.FLAG_ERROR) == (0x80, 0x40, 0x20)
    assert codec.FLAG_RETRANSMIT == 0x10
    assert (codec.AVP_FLAG_VENDOR, codec.AVP_FLAG_MANDATORY, codec.AVP_FLAG_PRIVATE) == (
        0x80,
        0x40,
        0x20,
    )
    assert codec.HEADER_LENGTH == 20
    assert codec.TYPE_NAMES[codec.UNSIGNED64] == "Unsigned64"


def test_codec_error_is_a_value_error_with_its_fields():
    error = codec.CodecError("bad", 5014, b"\x00" * 8)
    assert isinstance(error, ValueError)
    assert (str(error), error.result_code, error.failed_avp) == ("bad", 5014, b"\x00" * 8)
    assert codec.CodecError("x", 5015).failed_avp is None


# ============================================================================ codec.TypeTable


def test_type_table_lookups():
    assert TYPES.type_of(U32) == codec.UNSIGNED32
    assert TYPES.type_of(V_U32, TGPP) == codec.UNSIGNED32
    assert TYPES.type_of(V_U32) == 0  # same code, no vendor: unknown
    assert TYPES.type_of(U32, TGPP) == 0
    assert TYPES.default_flags(U32) == M
    assert TYPES.default_flags(NOT_M) == 0
    assert TYPES.default_flags(UNKNOWN) == 0
    assert (U32, 0) in TYPES
    assert (V_U32, TGPP) in TYPES
    assert (UNKNOWN, 0) not in TYPES
    assert "nonsense" not in TYPES
    assert (-1, 0) not in TYPES
    assert len(TYPES) == 18


def test_type_table_with_many_entries_finds_every_one_and_nothing_else():
    rng = random.Random(7)
    keys = {
        (rng.getrandbits(32), rng.choice([0, 0, TGPP, rng.getrandbits(32)])) for _ in range(5000)
    }
    keys |= {(0, 0), (0xFFFFFFFF, 0xFFFFFFFF), (1, 0), (0, 1)}
    entries = {k: (rng.randint(1, 14), rng.choice([0, M, 0x20 | M])) for k in keys}
    table = codec.TypeTable(entries)
    assert len(table) == len(entries)
    for (code, vendor), (type_code, flags) in entries.items():
        assert table.type_of(code, vendor) == type_code
        assert table.default_flags(code, vendor) == flags
    for _ in range(5000):
        key = (rng.getrandbits(32), rng.getrandbits(32))
        if key not in entries:
            assert table.type_of(*key) == 0
            assert key not in table


def test_empty_type_table():
    table = codec.TypeTable({})
    assert len(table) == 0
    assert table.type_of(1) == 0


@pytest.mark.parametrize(
    "entries",
    [
        {(1, 0): (0, 0)},  # type 0
        {(1, 0): (15, 0)},  # no such type
        {(1, 0): (1, 0x01)},  # reserved flag bit
        {(1, 0): (1, 0x100)},
        {(1, 0): (1,)},
        {1: (1, 0)},
        {(-1, 0): (1, 0)},
        {(1, 2**32): (1, 0)},
    ],
)
def test_type_table_rejects_bad_entries(entries):
    with pytest.raises(ValueError):
        codec.TypeTable(entries)


# ============================================================================ header


def test_decode_header_reads_every_field():
    buf = message(avp(U32, u32(1)), flags=0xC0, command=0x123456, app=0xFFFFFFFF)
    h = codec.decode_header(buf)
    assert isinstance(h, codec.Header)
    assert (h.version, h.length, h.flags, h.command_code) == (1, 32, 0xC0, 0x123456)
    assert (h.application_id, h.hop_by_hop, h.end_to_end) == (0xFFFFFFFF, 0x11223344, 0x55667788)
    assert h.is_request and h.is_proxiable and not h.is_error and not h.is_retransmit
    answer = codec.decode_header(message(flags=0x30))
    assert not answer.is_request and answer.is_error and answer.is_retransmit
    assert not answer.is_proxiable


def test_decode_header_accepts_any_bytes_like_and_does_not_validate():
    raw = message(version=7, length=5)  # nonsense, but only 20 bytes are read
    for buf in (raw, bytearray(raw), memoryview(raw), raw + b"extra"):
        h = codec.decode_header(buf)
        assert (h.version, h.length) == (7, 5)


def test_decode_header_is_read_only():
    h = codec.decode_header(message())
    with pytest.raises(AttributeError):
        h.flags = 0


@pytest.mark.parametrize("size", [0, 1, 19])
def test_decode_header_too_short(size):
    with pytest.raises(codec.CodecError) as info:
        codec.decode_header(message()[:size])
    assert info.value.result_code == 5015
    assert info.value.failed_avp is None


# ============================================================================ encoding: bytes per type

# (avp code, value given, exact data bytes on the wire, value decoded back)
TYPE_CASES = [
    (UTF8, "héllo", "héllo".encode(), "héllo"),
    (UTF8, "", b"", ""),
    (UTF8, b"bytes ok", b"bytes ok", "bytes ok"),
    (IDENT, "ocs1.operator.net", b"ocs1.operator.net", "ocs1.operator.net"),
    (
        URI,
        "aaa://host.example.com:3868",
        b"aaa://host.example.com:3868",
        "aaa://host.example.com:3868",
    ),
    (OCTETS, b"\x00\xff\x10", b"\x00\xff\x10", b"\x00\xff\x10"),
    (OCTETS, bytearray(b"ab"), b"ab", b"ab"),
    (OCTETS, "text", b"text", b"text"),
    (I32, -1, b"\xff\xff\xff\xff", -1),
    (I32, -(2**31), b"\x80\x00\x00\x00", -(2**31)),
    (I32, 2**31 - 1, b"\x7f\xff\xff\xff", 2**31 - 1),
    (ENUM, -5, b"\xff\xff\xff\xfb", -5),
    (ENUM, 2, b"\x00\x00\x00\x02", 2),
    (I64, -1, b"\xff" * 8, -1),
    (I64, -(2**63), b"\x80" + b"\x00" * 7, -(2**63)),
    (I64, 2**63 - 1, b"\x7f" + b"\xff" * 7, 2**63 - 1),
    (U32, 0, b"\x00" * 4, 0),
    (U32, 2**32 - 1, b"\xff" * 4, 2**32 - 1),
    (U64, 2**64 - 1, b"\xff" * 8, 2**64 - 1),
    (U64, 5_000_000_000, b"\x00\x00\x00\x01\x2a\x05\xf2\x00", 5_000_000_000),
    (F32, 1.5, b"\x3f\xc0\x00\x00", 1.5),
    (F32, -2, b"\xc0\x00\x00\x00", -2.0),
    (F64, -2.0, b"\xc0" + b"\x00" * 7, -2.0),
    (F64, 0.1, struct.pack("!d", 0.1), 0.1),
    (ADDR, "192.0.2.1", b"\x00\x01\xc0\x00\x02\x01", "192.0.2.1"),
    (ADDR, ipaddress.ip_address("10.0.0.1"), b"\x00\x01\x0a\x00\x00\x01", "10.0.0.1"),
    (
        ADDR,
        "2001:DB8:0:0:0:0:0:1",
        b"\x00\x02\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x01",
        "2001:db8::1",
    ),
    (ADDR, ipaddress.ip_address("::"), b"\x00\x02" + b"\x00" * 16, "::"),
    (ADDR, (8, b"447700900123"), b"\x00\x08447700900123", (8, b"447700900123")),
    (ADDR, (1, b"\x01\x02\x03\x04"), b"\x00\x01\x01\x02\x03\x04", "1.2.3.4"),
    # Time: NTP seconds; era 0 has the top bit set, era 1 (from 2036-02-07) has it clear.
    (TIME_AVP, 0, b"\x83\xaa\x7e\x80", 0),  # 1970-01-01 = NTP 2208988800
    (TIME_AVP, 1_700_000_000, struct.pack("!I", 1_700_000_000 + 2_208_988_800), 1_700_000_000),
    (TIME_AVP, 2_085_978_495, b"\xff\xff\xff\xff", 2_085_978_495),  # last second of era 0
    (TIME_AVP, 2_085_978_496, b"\x00\x00\x00\x00", 2_085_978_496),  # 2036-02-07 06:28:16 UTC
    (TIME_AVP, 2_085_978_497, b"\x00\x00\x00\x01", 2_085_978_497),
    (TIME_AVP, 4_233_462_143, b"\x7f\xff\xff\xff", 4_233_462_143),  # last era-1 value
    (TIME_AVP, -61_505_152, b"\x80\x00\x00\x00", -61_505_152),  # first era-0 value used
]


@pytest.mark.parametrize(("code", "value", "data", "decoded"), TYPE_CASES)
def test_each_type_encodes_to_exact_bytes_and_decodes_back(code, value, data, decoded):
    encoded = codec.encode_avps([(code, value)], TYPES)
    assert encoded == avp(code, data)  # M flag from the table, padding to 4
    msg = codec.decode_message(message(encoded), TYPES)
    got = msg.get(code)
    assert got == decoded
    assert type(got) is type(decoded)


def test_float32_special_values_round_trip():
    for value in (math.inf, -math.inf, 0.0, -0.0, 3.4028234663852886e38):
        assert (
            codec.decode_message(
                codec.encode_message(0, 1, 0, 0, 0, [(F32, value)], TYPES), TYPES
            ).get(F32)
            == value
        )
    nan = codec.decode_message(
        codec.encode_message(0, 1, 0, 0, 0, [(F32, math.nan)], TYPES), TYPES
    ).get(F32)
    assert math.isnan(nan)


def test_float32_rounds_to_nearest_single():
    encoded = codec.encode_avps([(F32, 0.1)], TYPES)
    assert encoded[8:] == struct.pack("!f", 0.1)


@pytest.mark.parametrize(
    "address",
    ["::1", "fe80::1:0:0:1", "2001:db8:0:1:1:1:1:1", "::ffff:1.2.3.4", "1:0:0:1::", "ff02::2"],
)
def test_ipv6_decodes_in_ipaddress_compressed_form(address):
    packed = ipaddress.IPv6Address(address).packed
    msg = decode(avp(ADDR, b"\x00\x02" + packed))
    assert msg.get(ADDR) == ipaddress.IPv6Address(address).compressed


@pytest.mark.parametrize("length", range(0, 9))
def test_odd_length_strings_are_padded_with_zeros(length):
    text = "abcdefgh"[:length]
    encoded = codec.encode_avps([(UTF8, text), (U32, 7)], TYPES)
    first_size = (8 + length + 3) // 4 * 4
    assert encoded[:first_size] == avp(UTF8, text.encode())
    assert int.from_bytes(encoded[5:8], "big") == 8 + length  # length excludes padding
    assert encoded[8 + length : first_size] == b"\x00" * (first_size - 8 - length)
    assert encoded[first_size:] == avp(U32, u32(7))
    msg = codec.decode_message(message(encoded), TYPES)
    assert (msg.get(UTF8), msg.get(U32)) == (text, 7)


def test_message_header_is_encoded():
    buf = codec.encode_message(0xC0, 272, 4, 0xDEADBEEF, 0x01020304, [(U32, 1)], TYPES)
    assert buf == message(
        avp(U32, u32(1)),
        flags=0xC0,
        command=272,
        app=4,
        hop_by_hop=0xDEADBEEF,
        end_to_end=0x01020304,
    )
    assert buf[0] == 1
    assert codec.encode_message(0, 257, 0, 0, 0, [], TYPES) == message(
        flags=0, command=257, app=0, hop_by_hop=0, end_to_end=0
    )


# ============================================================================ encoding: flags


def test_flags_come_from_the_table_unless_given():
    assert codec.encode_avps([(U32, 1)], TYPES)[4] == M
    assert codec.encode_avps([(NOT_M, 1)], TYPES)[4] == 0
    assert codec.encode_avps([(U32, 0, 0, 1)], TYPES)[4] == 0  # explicit: M cleared
    assert codec.encode_avps([(NOT_M, 0, M | 0x20, 1)], TYPES)[4] == M | 0x20  # P kept


def test_vendor_bit_follows_the_vendor():
    encoded = codec.encode_avps([(V_U32, TGPP, 9)], TYPES)
    assert encoded == avp(V_U32, u32(9), flags=M, vendor=TGPP)
    assert encoded[4] == 0xC0
    assert codec.encode_avps([(V_U32, TGPP, 0, 9)], TYPES)[4] == 0x80  # explicit flags, V added
    assert codec.encode_avps([(U32, 0, 0xC0, 9)], TYPES) == avp(U32, u32(9))  # V removed


def test_named_tuples_are_tuples():
    Avp = collections.namedtuple("Avp", "code vendor flags value")
    assert codec.encode_avps([Avp(U32, 0, 0, 7)], TYPES) == avp(U32, u32(7), flags=0)


def test_unknown_avp_needs_bytes_and_gets_no_flags():
    assert codec.encode_avps([(UNKNOWN, b"\x01\x02\x03")], TYPES) == avp(
        UNKNOWN, b"\x01\x02\x03", flags=0
    )
    assert codec.encode_avps([(UNKNOWN, 5, b"")], TYPES) == avp(UNKNOWN, flags=0, vendor=5)
    assert codec.encode_avps([(UNKNOWN, 0, M, b"x")], TYPES) == avp(UNKNOWN, b"x", flags=M)
    with pytest.raises(TypeError, match="AVP 999"):
        codec.encode_avps([(UNKNOWN, "text")], TYPES)


# ============================================================================ encoding: groups


def test_grouped_encoding_is_exact_three_levels_deep():
    avps = [
        (
            GROUP,
            [
                (U32, 1),
                (V_GROUP, TGPP, [(GROUP2, [(UTF8, "abc"), (U64, 2)])]),
            ],
        )
    ]
    level3 = avp(GROUP2, avp(UTF8, b"abc") + avp(U64, u64(2)))
    level2 = avp(V_GROUP, level3, vendor=TGPP)
    expected = avp(GROUP, avp(U32, u32(1)) + level2)
    assert codec.encode_avps(avps, TYPES) == expected


def test_grouped_value_as_bytes_is_copied_verbatim_and_padded():
    inner = avp(UNKNOWN, b"\x01\x02", length=200, pad=False)  # deliberately malformed
    encoded = codec.encode_avps([(GROUP, inner)], TYPES)
    assert encoded == avp(GROUP, inner)
    assert int.from_bytes(encoded[5:8], "big") == 8 + len(inner)
    assert len(encoded) % 4 == 0


def test_empty_group():
    encoded = codec.encode_avps([(GROUP, [])], TYPES)
    assert encoded == avp(GROUP)
    group = codec.decode_message(message(encoded), TYPES).group(GROUP)
    assert isinstance(group, codec.AvpGroup)
    assert len(group) == 0
    assert group.avps() == []


def test_failed_avp_echo_of_a_raw_avp():
    msg = decode(avp(UTF8, b"x"), avp(U32, u32(5)))
    raw = msg.raw_avp(U32)
    answer = codec.encode_message(0, 272, 4, 1, 2, [(GROUP, raw)], TYPES)
    assert codec.decode_message(answer, TYPES).group(GROUP).get(U32) == 5


# ============================================================================ encoding: errors


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (U32, "1"),
        (U32, 1.0),
        (U32, True),
        (U32, None),
        (I32, 2.5),
        (I64, b"1"),
        (U64, [1]),
        (F32, "1.0"),
        (F64, False),
        (TIME_AVP, 1.5),
        (UTF8, 5),
        (IDENT, None),
        (OCTETS, 7),
        (ADDR, 3232235777),
        (ADDR, b"\xc0\x00\x02\x01"),
        (ADDR, (1, "1.2.3.4")),
        (GROUP, 5),
        (GROUP, "children"),
    ],
)
def test_wrong_value_type_is_a_type_error_naming_the_avp(code, value):
    with pytest.raises(TypeError, match=f"AVP {code}\\b"):
        codec.encode_avps([(code, value)], TYPES)


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (U32, -1),
        (U32, 2**32),
        (I32, 2**31),
        (I32, -(2**31) - 1),
        (ENUM, 2**31),
        (I64, 2**63),
        (I64, -(2**63) - 1),
        (I64, 2**100),
        (U64, 2**64),
        (U64, -1),
        (F32, 1e39),
        (F32, -1e39),
        (F64, 2**2000),
        (TIME_AVP, -61_505_153),
        (TIME_AVP, 4_233_462_144),
        (UTF8, "\ud800"),
        (UTF8, b"\xff\xfe"),
        (IDENT, b"\xc3"),
        (ADDR, "192.0.2.256"),
        (ADDR, "not an address"),
        (ADDR, "fe80::1%eth0"),
        (ADDR, (1, b"\x01\x02\x03")),
        (ADDR, (2, b"\x01" * 4)),
        (ADDR, (70000, b"")),
    ],
)
def test_value_out_of_range_is_a_value_error_naming_the_avp(code, value):
    with pytest.raises(ValueError, match=f"AVP {code}\\b"):
        codec.encode_avps([(code, value)], TYPES)


def test_errors_inside_groups_name_the_inner_avp():
    with pytest.raises(ValueError, match="AVP 5\\b"):
        codec.encode_avps([(GROUP, [(GROUP2, [(U32, -1)])])], TYPES)
    with pytest.raises(ValueError, match=f"AVP {V_U32} \\(vendor {TGPP}\\)"):
        codec.encode_avps([(GROUP, [(V_U32, TGPP, 2**40)])], TYPES)


@pytest.mark.parametrize(
    "avps",
    [
        [(U32,)],
        [(U32, 0, 0, 0, 1)],
        [[U32, 1]],
        [U32],
        (U32, 1),  # a bare tuple, not a list of tuples
        "abc",
        None,
        [("5", 1)],
    ],
)
def test_malformed_avp_descriptions_are_type_errors(avps):
    with pytest.raises(TypeError):
        codec.encode_avps(avps, TYPES)


@pytest.mark.parametrize(
    "avps",
    [
        [(-1, b"")],
        [(2**32, b"")],
        [(U32, 2**32, 1)],
        [(U32, 0, 0x01, 1)],  # reserved AVP flag bit
        [(U32, 0, 0x100, 1)],
        [(U32, 0, -1, 1)],
    ],
)
def test_out_of_range_codes_and_flags_are_value_errors(avps):
    with pytest.raises(ValueError):
        codec.encode_avps(avps, TYPES)


def test_self_referencing_group_is_refused():
    children: list = []
    children.append((GROUP, children))
    with pytest.raises(ValueError, match="nested deeper"):
        codec.encode_avps(children, TYPES)


def test_avp_longer_than_24_bits_is_refused():
    with pytest.raises(ValueError, match="longer than"):
        codec.encode_avps([(OCTETS, bytes(2**24))], TYPES)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((0x01, 272, 4, 0, 0), ValueError),  # reserved command flag
        ((0xA0, 272, 4, 0, 0), ValueError),  # E bit on a request
        ((0x100, 272, 4, 0, 0), ValueError),
        ((0, 2**24, 4, 0, 0), ValueError),
        ((0, 272, 2**32, 0, 0), ValueError),
        ((0, 272, 4, -1, 0), ValueError),
        ((0, 272, 4, 0, 2**32), ValueError),
        ((0, "272", 4, 0, 0), TypeError),
        ((0, 272, 4, 0.0, 0), TypeError),
    ],
)
def test_encode_message_checks_the_header(args, error):
    with pytest.raises(error):
        codec.encode_message(*args, [], TYPES)


def test_encode_needs_a_type_table():
    with pytest.raises(TypeError):
        codec.encode_avps([], None)
    with pytest.raises(TypeError):
        codec.encode_message(0, 1, 0, 0, 0, [], {})


# ============================================================================ decoding: API


def sample() -> codec.Message:
    return decode(
        avp(UTF8, b"session;1"),
        avp(U32, u32(10)),
        avp(GROUP, avp(U32, u32(1)) + avp(UTF8, b"a") + avp(U32, u32(2))),
        avp(U32, u32(20)),
        avp(V_U32, u32(30), vendor=TGPP),
        avp(GROUP, avp(U32, u32(3))),
        avp(UNKNOWN, b"\x01\x02\x03", flags=0),
        flags=0xC0,
    )


def test_message_view():
    msg = sample()
    assert len(msg) == 7
    assert msg.header.command_code == 272 and msg.header.is_request
    assert len(msg.raw) == msg.header.length == 20 + 20 + 12 + 44 + 12 + 16 + 20 + 12
    assert msg.get(UTF8) == "session;1"
    assert msg.get(U32) == 10
    assert msg.get_all(U32) == [10, 20]
    assert msg.get(V_U32, TGPP) == 30
    assert msg.get(V_U32) is None
    assert msg.get(U64) is None
    assert msg.get(U64, default=-1) == -1
    assert msg.get_all(U64) == []
    assert msg.get(UNKNOWN) == b"\x01\x02\x03"
    assert [g.get_all(U32) for g in msg.groups(GROUP)] == [[1, 2], [3]]
    assert msg.group(GROUP2) is None
    assert msg.groups(GROUP2) == []
    assert isinstance(msg.get(GROUP), codec.AvpGroup)
    with pytest.raises(TypeError, match="not Grouped"):
        msg.group(U32)


def test_raw_avp_is_the_whole_avp_with_padding():
    msg = sample()
    assert msg.raw_avp(UNKNOWN) == avp(UNKNOWN, b"\x01\x02\x03", flags=0)
    assert len(msg.raw_avp(UNKNOWN)) == 12
    assert msg.raw_avp(V_U32, TGPP) == avp(V_U32, u32(30), vendor=TGPP)
    assert msg.raw_avp(GROUP) == avp(GROUP, avp(U32, u32(1)) + avp(UTF8, b"a") + avp(U32, u32(2)))
    assert msg.raw_avp(U64) is None
    assert msg.group(GROUP).raw_avp(UTF8) == avp(UTF8, b"a")


def test_avps_lists_every_top_level_avp_with_flags_and_vendor():
    items = sample().avps()
    assert [(code, flags, vendor) for code, flags, vendor, _ in items] == [
        (UTF8, M, 0),
        (U32, M, 0),
        (GROUP, M, 0),
        (U32, M, 0),
        (V_U32, 0xC0, TGPP),
        (GROUP, M, 0),
        (UNKNOWN, 0, 0),
    ]
    assert items[4][3] == 30
    assert items[2][3].avps() == [(U32, M, 0, 1), (UTF8, M, 0, "a"), (U32, M, 0, 2)]


def test_message_keeps_the_bytes_it_was_given():
    buf = message(avp(U32, u32(1)))
    msg = codec.decode_message(buf, TYPES)
    assert msg.raw is buf
    assert codec.decode_message(bytearray(buf), TYPES).raw == buf
    assert codec.decode_message(memoryview(buf), TYPES).get(U32) == 1


def test_decode_message_argument_types():
    with pytest.raises(TypeError):
        codec.decode_message("text", TYPES)
    with pytest.raises(TypeError):
        codec.decode_message(64, TYPES)  # bytes(64) would be 64 zero bytes
    with pytest.raises(TypeError):
        codec.decode_message(message(), None)


def test_many_avps_beyond_the_inline_index():
    values = list(range(100))
    msg = decode(*(avp(U32, u32(v)) for v in values))
    assert len(msg) == 100
    assert msg.get_all(U32) == values
    group = decode(avp(GROUP, b"".join(avp(U32, u32(v)) for v in values))).group(GROUP)
    assert len(group) == 100
    assert group.get_all(U32) == values


def test_group_outlives_its_message():
    group = decode(avp(GROUP, avp(UTF8, b"kept"))).group(GROUP)
    gc.collect()
    assert group.get(UTF8) == "kept"


def test_nested_groups_three_levels_with_vendor():
    msg = decode(
        avp(
            GROUP, avp(V_GROUP, avp(GROUP2, avp(U64, u64(2**40)) + avp(UTF8, b"deep")), vendor=TGPP)
        )
    )
    level3 = msg.group(GROUP).group(V_GROUP, TGPP).group(GROUP2)
    assert level3.get(U64) == 2**40
    assert level3.get(UTF8) == "deep"
    assert msg.group(GROUP).group(V_GROUP) is None  # wrong vendor


def test_very_deep_nesting_is_walked_without_recursion():
    inner = avp(U32, u32(5))
    for _ in range(500):
        inner = avp(GROUP, inner)
    msg = decode(inner)
    node = msg
    for _ in range(500):
        node = node.group(GROUP)
    assert node.get(U32) == 5


def test_child_padding_outside_its_group_is_accepted():
    # The group's length ends right after the child's 3 data bytes; its padding
    # (group padding) follows.  Some peers encode it so.
    child = avp(UTF8, b"abc", pad=False)
    group = avp(GROUP, child)
    assert int.from_bytes(group[5:8], "big") == 8 + 11
    msg = decode(group, avp(U32, u32(9)))
    assert msg.group(GROUP).get(UTF8) == "abc"
    assert msg.get(U32) == 9


def test_reencoding_a_decoded_message_gives_the_same_bytes():
    msg = sample()

    def tuples(view):
        out = []
        for code, flags, vendor, value in view.avps():
            if isinstance(value, codec.AvpGroup):
                value = tuples(value)
            out.append((code, vendor, flags, value))
        return out

    h = msg.header
    again = codec.encode_message(
        h.flags, h.command_code, h.application_id, h.hop_by_hop, h.end_to_end, tuples(msg), TYPES
    )
    assert again == msg.raw


# ============================================================================ decoding: 3GPP


def test_gy_mscc_with_3gpp_vendor_avps():
    types = build_type_table()
    ccr = [
        (c.AVP_SESSION_ID, "gw;1;2"),
        (c.AVP_ORIGIN_HOST, "gw.example.net"),
        (c.AVP_EVENT_TIMESTAMP, 1_714_564_800),
        (
            c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL,
            [
                (c.AVP_REQUESTED_SERVICE_UNIT, []),
                (
                    c.AVP_USED_SERVICE_UNIT,
                    [
                        (c.AVP_CC_TOTAL_OCTETS, 2**33),
                        (c.AVP_CC_TIME, 60),
                        (c.AVP_TGPP_3GPP_REPORTING_REASON, TGPP, 3),
                    ],
                ),
                (c.AVP_RATING_GROUP, 100),
                (c.AVP_TGPP_VOLUME_QUOTA_THRESHOLD, TGPP, 5000),
            ],
        ),
        (
            c.AVP_TGPP_SERVICE_INFORMATION,
            TGPP,
            [
                (
                    c.AVP_TGPP_PS_INFORMATION,
                    TGPP,
                    [
                        (c.AVP_TGPP_3GPP_SGSN_MCC_MNC, TGPP, "23415"),
                        (c.AVP_TGPP_PDP_ADDRESS, TGPP, "2001:db8::7"),
                    ],
                ),
            ],
        ),
    ]
    buf = codec.encode_message(0xC0, 272, 4, 1, 2, ccr, types)
    msg = codec.decode_message(buf, types)
    assert msg.first_unknown_mandatory() is None
    assert msg.get(c.AVP_ORIGIN_HOST) == "gw.example.net"  # DiameterIdentity override
    mscc = msg.group(c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL)
    used = mscc.group(c.AVP_USED_SERVICE_UNIT)
    assert used.get(c.AVP_CC_TOTAL_OCTETS) == 2**33
    assert used.get(c.AVP_TGPP_3GPP_REPORTING_REASON, TGPP) == 3
    assert used.get(c.AVP_TGPP_3GPP_REPORTING_REASON) is None  # needs the vendor
    assert mscc.get(c.AVP_TGPP_VOLUME_QUOTA_THRESHOLD, TGPP) == 5000
    assert len(mscc.group(c.AVP_REQUESTED_SERVICE_UNIT)) == 0
    ps = msg.group(c.AVP_TGPP_SERVICE_INFORMATION, TGPP).group(c.AVP_TGPP_PS_INFORMATION, TGPP)
    assert ps.get(c.AVP_TGPP_3GPP_SGSN_MCC_MNC, TGPP) == "23415"
    assert ps.get(c.AVP_TGPP_PDP_ADDRESS, TGPP) == "2001:db8::7"
    # the vendor AVP's header on the wire: V and M set, Vendor-Id 10415
    raw = mscc.raw_avp(c.AVP_TGPP_VOLUME_QUOTA_THRESHOLD, TGPP)
    assert raw == avp(c.AVP_TGPP_VOLUME_QUOTA_THRESHOLD, u32(5000), vendor=TGPP)


# ============================================================================ decoding errors: header


@pytest.mark.parametrize("size", [0, 4, 19])
def test_5015_shorter_than_a_header(size):
    error = codec_error(message()[:size])
    assert (error.result_code, error.failed_avp) == (5015, None)


@pytest.mark.parametrize("length", [24, 36, 28, 0, 20 + 2**20])
def test_5015_length_field_does_not_match(length):
    buf = message(avp(U32, u32(1)), avp(U32, u32(2)), length=length)  # real size 52
    error = codec_error(buf)
    assert (error.result_code, error.failed_avp) == (5015, None)
    assert "length" in str(error)


def test_5015_length_not_a_multiple_of_four():
    buf = message(avp(UTF8, b"ab", pad=False))  # 30 bytes, length field says 30
    assert len(buf) == 30 and int.from_bytes(buf[1:4], "big") == 30
    error = codec_error(buf)
    assert (error.result_code, error.failed_avp) == (5015, None)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_5011_unsupported_version(version):
    error = codec_error(message(avp(U32, u32(1)), version=version))
    assert (error.result_code, error.failed_avp) == (5011, None)


def test_version_is_checked_before_the_length():
    assert codec_error(message(version=2, length=99)).result_code == 5011


def test_3008_error_bit_on_a_request():
    error = codec_error(message(avp(U32, u32(1)), flags=0xA0))
    assert (error.result_code, error.failed_avp) == (3008, None)


def test_error_bit_on_an_answer_is_fine():
    assert decode(avp(U32, u32(1)), flags=0x20).header.is_error


@pytest.mark.parametrize("reserved", [0x01, 0x02, 0x04, 0x08, 0x0F])
def test_reserved_command_flags_are_ignored(reserved):
    # RFC 6733 §3: reserved bits "MUST be set to zero and ignored by the receiver".
    msg = decode(avp(U32, u32(1)), flags=0x80 | reserved)
    assert msg.header.flags == 0x80 | reserved
    assert msg.get(U32) == 1


# ============================================================================ decoding errors: AVPs


@pytest.mark.parametrize("bit", [0x01, 0x02, 0x04, 0x08, 0x10])
def test_3009_reserved_avp_flag_bits(bit):
    bad = avp(UTF8, b"hello", flags=M | bit)
    error = codec_error(message(avp(U32, u32(1)), bad))
    assert error.result_code == 3009
    assert error.failed_avp == bad  # whole AVP, padding included


def test_3009_in_a_nested_avp_reports_the_inner_avp():
    bad = avp(U32, u32(1), flags=0x41)
    error = codec_error(message(avp(GROUP, avp(GROUP2, bad))))
    assert (error.result_code, error.failed_avp) == (3009, bad)


def test_3009_in_an_unknown_avp():
    bad = avp(UNKNOWN, b"abcd", flags=0x10)
    error = codec_error(message(bad))
    assert (error.result_code, error.failed_avp) == (3009, bad)


def test_5014_length_shorter_than_the_header():
    bad = avp(U32, length=7)  # 8 header bytes, length field 7
    buf = message(bad, avp(U32, u32(1)))
    error = codec_error(buf)
    assert error.result_code == 5014
    assert error.failed_avp == bad  # the header as received
    assert int.from_bytes(error.failed_avp[5:8], "big") == 7


def test_5014_length_zero():
    bad = avp(UNKNOWN, length=0)
    error = codec_error(message(bad))
    assert (error.result_code, error.failed_avp) == (5014, bad)


@pytest.mark.parametrize("length", [8, 9, 11])
def test_5014_vendor_avp_shorter_than_its_12_byte_header(length):
    bad = avp(V_U32, vendor=TGPP, length=length)  # 12 bytes: header with Vendor-Id
    error = codec_error(message(bad, avp(U32, u32(1))))
    assert error.result_code == 5014
    assert error.failed_avp == bad


def test_5014_truncated_header_at_the_end_of_the_message():
    tail = b"\x00\x00\x01\x0c"  # 4 bytes: not even an AVP header
    error = codec_error(message(avp(U32, u32(1)), tail))
    assert error.result_code == 5014
    assert error.failed_avp == tail + b"\x00" * 4  # zero-filled to 8


def test_5014_vendor_header_cut_by_the_end_of_the_message():
    tail = struct.pack("!IB", V_U32, 0xC0) + (16).to_bytes(3, "big")  # V set, 8 bytes left
    error = codec_error(message(tail))
    assert error.result_code == 5014
    assert error.failed_avp == tail + b"\x00" * 4  # zero-filled to 12


def test_5014_avp_runs_past_the_end_of_the_message():
    bad = avp(UTF8, b"abcd", length=100)
    error = codec_error(message(avp(U32, u32(1)), bad))
    assert error.result_code == 5014
    assert error.failed_avp == bad  # header plus the data that is there


def test_5014_failed_avp_is_padded_to_a_word():
    bad = avp(UTF8, b"abcdef", length=40)  # 14 bytes + 2 padding in the message
    error = codec_error(message(bad))
    assert error.failed_avp == bad
    assert len(error.failed_avp) == 16


def test_5014_child_runs_past_its_group():
    child = avp(U32, u32(1), length=16)  # claims 16, group holds 12
    group = avp(GROUP, child)
    after = avp(U32, u32(2))  # the child's claimed extra bytes would be here
    error = codec_error(message(group, after))
    assert error.result_code == 5014
    assert error.failed_avp == child  # only what the group holds
    assert len(error.failed_avp) == 12


def test_5014_truncated_header_inside_a_group():
    group = avp(GROUP, avp(U32, u32(1)) + b"\x00\x00\x00\x05")
    error = codec_error(message(group))
    assert error.result_code == 5014
    assert error.failed_avp == b"\x00\x00\x00\x05" + b"\x00" * 4


@pytest.mark.parametrize(
    ("code", "data"),
    [
        (U32, b"\x00\x00\x01"),
        (U32, u64(1)),
        (I32, b""),
        (ENUM, b"\x00\x00\x00\x00\x00"),
        (F32, u64(1)),
        (TIME_AVP, u64(1)),
        (U64, u32(1)),
        (I64, b"\x00" * 9),
        (F64, u32(1)),
        (ADDR, b""),
        (ADDR, b"\x00"),
        (ADDR, b"\x00\x01\x01\x02\x03"),  # IPv4 with 3 address bytes
        (ADDR, b"\x00\x01" + b"\x01" * 16),  # IPv4 with 16
        (ADDR, b"\x00\x02\x01\x02\x03\x04"),  # IPv6 with 4
        (ADDR, b"\x00\x02" + b"\x01" * 17),
    ],
)
def test_5014_wrong_size_for_a_fixed_size_type(code, data):
    bad = avp(code, data)
    error = codec_error(message(avp(UTF8, b"ok"), bad))
    assert error.result_code == 5014
    assert error.failed_avp == bad
    assert codec.TYPE_NAMES[TYPES.type_of(code)] in str(error)


@pytest.mark.parametrize(
    "data", [b"\x00\x08", b"\x00\x08123", b"\x00\x00", b"\xff\xff" + b"\x01" * 30]
)
def test_other_address_families_have_any_length(data):
    family = int.from_bytes(data[:2], "big")
    assert decode(avp(ADDR, data)).get(ADDR) == (family, data[2:])


def test_5014_three_levels_deep_reports_the_inner_avp():
    bad = avp(V_U32, b"\x00\x00\x00\x00\x01", vendor=TGPP)
    buf = message(avp(GROUP, avp(U32, u32(1)) + avp(V_GROUP, avp(GROUP2, bad), vendor=TGPP)))
    error = codec_error(buf)
    assert error.result_code == 5014
    assert error.failed_avp == bad
    assert f"AVP {V_U32} (vendor {TGPP})" in str(error)


def test_unknown_avps_are_not_size_checked_and_not_descended():
    # An AVP the table does not know is opaque: no size rule, no look inside.
    msg = decode(avp(UNKNOWN, b"\x00\x00\x00\x07\x40\x00\x00\x03", flags=0))
    assert msg.get(UNKNOWN) == b"\x00\x00\x00\x07\x40\x00\x00\x03"


def test_the_first_fault_in_message_order_is_reported():
    first = avp(U32, b"\x00")
    second = avp(UTF8, b"x", flags=0x41)
    error = codec_error(message(avp(GROUP, first), second))
    assert (error.result_code, error.failed_avp) == (5014, first)


def test_5004_invalid_utf8_is_reported_when_read():
    bad = avp(UTF8, b"ok\xff\xfe")
    msg = decode(avp(U32, u32(1)), bad)  # structure is fine
    assert msg.get(U32) == 1
    for read in (lambda: msg.get(UTF8), lambda: msg.get_all(UTF8), msg.avps):
        with pytest.raises(codec.CodecError) as info:
            read()
        assert info.value.result_code == 5004
        assert info.value.failed_avp == bad


@pytest.mark.parametrize("code", [IDENT, URI])
def test_5004_invalid_utf8_in_identity_and_uri(code):
    bad = avp(code, b"\xc3\x28")
    with pytest.raises(codec.CodecError) as info:
        decode(bad).get(code)
    assert (info.value.result_code, info.value.failed_avp) == (5004, bad)


def test_5004_inside_a_group():
    bad = avp(UTF8, b"\xed\xa0\x80")  # an encoded surrogate is not valid UTF-8
    group = decode(avp(GROUP, avp(U32, u32(1)) + bad)).group(GROUP)
    assert group.get(U32) == 1
    with pytest.raises(codec.CodecError) as info:
        group.get(UTF8)
    assert (info.value.result_code, info.value.failed_avp) == (5004, bad)


def test_octet_strings_are_not_utf8_checked():
    assert decode(avp(OCTETS, b"\xff")).get(OCTETS) == b"\xff"


# ============================================================================ unknown mandatory AVPs


def test_first_unknown_mandatory_none_when_all_known():
    assert sample().first_unknown_mandatory() is None  # its unknown AVP has no M bit


def test_first_unknown_mandatory_top_level():
    unknown = avp(UNKNOWN, b"abc", flags=M)
    msg = decode(avp(U32, u32(1)), unknown, avp(UNKNOWN + 1, b"", flags=M))
    assert msg.first_unknown_mandatory() == unknown
    assert msg.get(UNKNOWN) == b"abc"  # still readable


def test_first_unknown_mandatory_nested_in_a_known_group():
    unknown = avp(UNKNOWN, u32(1), flags=M, vendor=TGPP)
    msg = decode(avp(U32, u32(1)), avp(GROUP, avp(GROUP2, avp(U32, u32(2)) + unknown)))
    assert msg.first_unknown_mandatory() == unknown


def test_first_unknown_mandatory_is_first_in_message_order():
    nested = avp(UNKNOWN, b"1", flags=M)
    later = avp(UNKNOWN + 1, b"2", flags=M)
    msg = decode(avp(GROUP, nested), later)
    assert msg.first_unknown_mandatory() == nested


def test_known_code_with_unknown_vendor_is_unknown():
    unknown = avp(U32, u32(1), flags=M, vendor=12345)
    assert decode(unknown).first_unknown_mandatory() == unknown


def test_unknown_group_contents_are_not_inspected():
    outer = avp(UNKNOWN, avp(UNKNOWN + 1, b"x", flags=M), flags=0)
    assert decode(outer).first_unknown_mandatory() is None


@pytest.mark.parametrize("cls", [codec.Message, codec.AvpGroup, codec.Header])
def test_views_are_not_built_by_hand(cls):
    with pytest.raises(TypeError):
        cls()
