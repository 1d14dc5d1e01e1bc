"""Property tests: our codec against python-diameter, and against hostile input.

python-diameter is the independent oracle.  For random AVP trees drawn from its own
dictionary (every type, vendor AVPs, nested groups):

* our encoder produces exactly the bytes python-diameter produces;
* we decode python-diameter's bytes to the tree's values, and python-diameter
  decodes ours to the same values.

A Gy CCR built with python-diameter's CreditControlRequest decodes in ours to what
was put in.  Random and mutated messages either decode or raise CodecError, nothing
else, and whatever decodes can be read.

Time values stay in NTP era 0 (before 2036-02-07) here: python-diameter puts the era
boundary an hour early (its overflow_timestamp is 2085974896, the RFC 5905 value is
2**32 - 2208988800 = 2085978496), so it cannot be the oracle for era 1; the unit
tests pin era 1 down with exact bytes.
"""

from __future__ import annotations

import datetime
import ipaddress
import struct
from dataclasses import dataclass

from diameter.message import Message as PdMessage
from diameter.message import MessageHeader
from diameter.message.avp import Avp
from diameter.message.avp.avp import (
    AvpAddress,
    AvpFloat32,
    AvpFloat64,
    AvpGrouped,
    AvpInteger32,
    AvpInteger64,
    AvpOctetString,
    AvpTime,
    AvpUnsigned32,
    AvpUnsigned64,
    AvpUtf8String,
)
from diameter.message.avp.dictionary import AVP_DICTIONARY, AVP_VENDOR_DICTIONARY
from diameter.message.avp.grouped import (
    MultipleServicesCreditControl,
    PsInformation,
    RequestedServiceUnit,
    ServiceInformation,
    SubscriptionId,
    UsedServiceUnit,
)
from diameter.message.commands import CreditControlRequest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cext import codec
from protocol.dictionary import build_type_table
from protocol.dictionary import constants as c

from . import wire

TYPES = build_type_table()
TGPP = c.VENDOR_TGPP
COMMAND = 1234567  # unknown to python-diameter: it keeps the AVP list as received
ERA0_END = 2_085_974_896  # python-diameter's (early) era boundary, see module docstring
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ============================================================================ AVP trees


def _pd_entry(code: int, vendor: int) -> dict:
    return AVP_DICTIONARY[code] if vendor == 0 else AVP_VENDOR_DICTIONARY[vendor][code]


def _pool(type_code: int) -> list[tuple[int, int]]:
    """Every dictionary AVP our table gives ``type_code``."""
    keys = [(code, 0) for code in AVP_DICTIONARY]
    keys += [(code, v) for v, avps in AVP_VENDOR_DICTIONARY.items() if v for code in avps]
    return sorted(k for k in keys if TYPES.type_of(*k) == type_code)


_host = st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True)

VALUES = {
    codec.OCTET_STRING: st.binary(max_size=40),
    codec.UTF8STRING: st.text(max_size=20),
    codec.DIAMETER_IDENTITY: _host,
    codec.DIAMETER_URI: _host.map(lambda h: f"aaa://{h}:3868"),
    codec.INTEGER32: st.integers(-(2**31), 2**31 - 1),
    codec.INTEGER64: st.integers(-(2**63), 2**63 - 1),
    codec.UNSIGNED32: st.integers(0, 2**32 - 1),
    codec.UNSIGNED64: st.integers(0, 2**64 - 1),
    codec.FLOAT32: st.floats(width=32, allow_nan=False),
    codec.TIME: st.integers(-61_505_152, ERA0_END - 1),
    codec.ADDRESS: st.one_of(
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(str),
        st.from_regex(r"[0-9]{1,15}", fullmatch=True).map(lambda d: (8, d.encode())),
    ),
}
POOLS = {t: _pool(t) for t in VALUES}
assert all(POOLS.values()), "every type has dictionary AVPs"
GROUPS = _pool(codec.GROUPED)


@dataclass(frozen=True)
class Node:
    """One AVP of a generated tree; ``value`` is in our codec's encode form."""

    code: int
    vendor: int
    type: int
    value: object


def _leaf(type_code: int):
    return st.builds(
        lambda key, value: Node(key[0], key[1], type_code, value),
        st.sampled_from(POOLS[type_code]),
        VALUES[type_code],
    )


LEAVES = st.one_of([_leaf(t) for t in VALUES])
TREES = st.lists(
    st.recursive(
        LEAVES,
        lambda children: st.builds(
            lambda key, kids: Node(key[0], key[1], codec.GROUPED, kids),
            st.sampled_from(GROUPS),
            st.lists(children, max_size=4),
        ),
        max_leaves=25,
    ),
    max_size=8,
)


def ours(nodes: list[Node]) -> list[tuple]:
    """The tree as our encoder's tuples (vendor form, flags from the table)."""
    return [
        (n.code, n.vendor, ours(n.value) if n.type == codec.GROUPED else n.value) for n in nodes
    ]


def theirs(node: Node) -> Avp:
    """The tree as python-diameter AVPs, built through its own dictionary."""
    value = node.value
    if node.type == codec.GROUPED:
        return Avp.new(node.code, node.vendor, value=[theirs(n) for n in value])
    if node.type == codec.TIME:
        value = datetime.datetime.fromtimestamp(value, datetime.UTC)
    elif node.type == codec.ADDRESS and isinstance(value, tuple):
        value = value[1].decode()  # E.164 digits: python-diameter picks family 8
    elif _pd_entry(node.code, node.vendor)["type"] is AvpOctetString and isinstance(value, str):
        value = value.encode()  # DiameterIdentity that python-diameter types OctetString
    return Avp.new(node.code, node.vendor, value=value)


def expected(nodes: list[Node]) -> list[tuple]:
    """What decoding the tree must give: (code, vendor, flags, value)."""
    out = []
    for n in nodes:
        flags = TYPES.default_flags(n.code, n.vendor) | (0x80 if n.vendor else 0)
        value = n.value
        if n.type == codec.GROUPED:
            value = expected(value)
        elif n.type == codec.ADDRESS and isinstance(value, str):
            value = ipaddress.ip_address(value).compressed
        out.append((n.code, n.vendor, flags, value))
    return out


def our_view(view) -> list[tuple]:
    out = []
    for code, flags, vendor, value in view.avps():
        if isinstance(value, codec.AvpGroup):
            value = our_view(value)
        out.append((code, vendor, flags, value))
    return out


def their_view(avps: list[Avp]) -> list[tuple]:
    """python-diameter's decoded AVPs in our value conventions."""
    out = []
    for a in avps:
        value = a.value
        if isinstance(a, AvpGrouped):
            value = their_view(value)
        elif isinstance(a, AvpTime):
            value = int(value.timestamp())
        elif isinstance(a, AvpAddress):
            family, text = value
            value = (
                ipaddress.ip_address(text).compressed if family in (1, 2) else (8, text.encode())
            )
        elif TYPES.type_of(a.code, a.vendor_id) in (codec.DIAMETER_IDENTITY, codec.DIAMETER_URI):
            value = value.decode() if isinstance(value, bytes) else value
        out.append((a.code, a.vendor_id, a.flags, value))
    return out


def their_message(nodes: list[Node], flags: int, hop: int, end: int) -> bytes:
    header = MessageHeader(
        command_flags=flags,
        command_code=COMMAND,
        application_id=4,
        hop_by_hop_identifier=hop,
        end_to_end_identifier=end,
    )
    return PdMessage(header, [theirs(n) for n in nodes]).as_bytes()


HEADERS = st.tuples(
    st.sampled_from([0x00, 0x40, 0x80, 0xC0, 0x20, 0x90]),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
)


@SETTINGS
@given(TREES, HEADERS)
def test_we_encode_exactly_what_python_diameter_encodes(nodes, header):
    flags, hop, end = header
    mine = codec.encode_message(flags, COMMAND, 4, hop, end, ours(nodes), TYPES)
    assert mine == their_message(nodes, flags, hop, end)


@SETTINGS
@given(TREES, HEADERS)
def test_we_decode_python_diameter_messages(nodes, header):
    flags, hop, end = header
    msg = codec.decode_message(their_message(nodes, flags, hop, end), TYPES)
    assert (msg.header.flags, msg.header.hop_by_hop, msg.header.end_to_end) == header
    assert msg.header.command_code == COMMAND
    assert our_view(msg) == expected(nodes)
    assert msg.first_unknown_mandatory() is None


@SETTINGS
@given(TREES, HEADERS)
def test_python_diameter_decodes_our_messages(nodes, header):
    flags, hop, end = header
    buf = codec.encode_message(flags, COMMAND, 4, hop, end, ours(nodes), TYPES)
    msg = PdMessage.from_bytes(buf)
    assert msg.header.command_flags == flags
    assert (msg.header.hop_by_hop_identifier, msg.header.end_to_end_identifier) == (hop, end)
    assert their_view(msg.avps) == expected(nodes)


@SETTINGS
@given(TREES)
def test_decode_then_encode_gives_the_same_bytes(nodes):
    buf = codec.encode_avps(ours(nodes), TYPES)
    view = our_view(
        codec.decode_message(codec.encode_message(0, COMMAND, 4, 0, 0, ours(nodes), TYPES), TYPES)
    )

    def tuples(items):
        return [
            (code, vendor, flags, tuples(v) if isinstance(v, list) else v)
            for code, vendor, flags, v in items
        ]

    assert codec.encode_avps(tuples(view), TYPES) == buf


# ---------------------------------------------------------------------------- every type, one class each

PD_CLASSES = {
    codec.OCTET_STRING: (AvpOctetString, st.binary(max_size=20)),
    codec.UTF8STRING: (AvpUtf8String, st.text(max_size=20)),
    codec.INTEGER32: (AvpInteger32, VALUES[codec.INTEGER32]),
    codec.INTEGER64: (AvpInteger64, VALUES[codec.INTEGER64]),
    codec.UNSIGNED32: (AvpUnsigned32, VALUES[codec.UNSIGNED32]),
    codec.UNSIGNED64: (AvpUnsigned64, VALUES[codec.UNSIGNED64]),
    codec.FLOAT32: (AvpFloat32, st.floats(width=32, allow_nan=False)),
    codec.FLOAT64: (AvpFloat64, st.floats(allow_nan=False)),
}


@SETTINGS
@given(
    st.sampled_from(sorted(PD_CLASSES)).flatmap(lambda t: st.tuples(st.just(t), PD_CLASSES[t][1])),
    st.integers(1, 2**32 - 1),
    st.sampled_from([0, TGPP, 2**32 - 1]),
    st.sampled_from([0, 0x40, 0x20, 0x60]),
)
def test_each_type_matches_python_diameters_avp_class(type_and_value, code, vendor, flags):
    """Float64 has no AVP in the dictionary; this covers it with a table of our own."""
    type_code, value = type_and_value
    table = codec.TypeTable({(code, vendor): (type_code, 0)})
    theirs_avp = PD_CLASSES[type_code][0](code, vendor)
    theirs_avp.value = value
    theirs_avp.flags |= flags
    mine = codec.encode_avps([(code, vendor, flags, value)], table)
    assert mine == theirs_avp.as_bytes()
    assert codec.decode_message(wire.message(mine), table).get(code, vendor) == value


# ============================================================================ a Gy CCR from python-diameter

usage = st.integers(0, 2**63)


@st.composite
def gy_requests(draw):
    return {
        "session_id": draw(st.text(min_size=1, max_size=40)),
        "request_number": draw(st.integers(0, 2**32 - 1)),
        "event": draw(st.integers(0, ERA0_END - 1)),
        "msisdn": draw(st.from_regex(r"[0-9]{5,15}", fullmatch=True)),
        "mscc": draw(
            st.lists(
                st.tuples(st.integers(0, 2**32 - 1), usage, usage, usage, st.integers(0, 8)),
                min_size=1,
                max_size=4,
            )
        ),
        "sgsn": draw(st.from_regex(r"[0-9]{5,6}", fullmatch=True)),
        "pdp": draw(st.ip_addresses().map(str)),
    }


@SETTINGS
@given(gy_requests())
def test_gy_ccr_built_by_python_diameter_decodes_to_its_values(req):
    ccr = CreditControlRequest()
    ccr.session_id = req["session_id"]
    ccr.origin_host = b"pgw.example.net"
    ccr.origin_realm = b"example.net"
    ccr.destination_realm = b"ocs.example.net"
    ccr.service_context_id = "32251@3gpp.org"
    ccr.cc_request_type = 2
    ccr.cc_request_number = req["request_number"]
    ccr.event_timestamp = datetime.datetime.fromtimestamp(req["event"], datetime.UTC)
    ccr.subscription_id = [
        SubscriptionId(subscription_id_type=0, subscription_id_data=req["msisdn"])
    ]
    for rating_group, total, up, down, reason in req["mscc"]:
        ccr.multiple_services_credit_control.append(
            MultipleServicesCreditControl(
                requested_service_unit=RequestedServiceUnit(cc_total_octets=total),
                used_service_unit=[
                    UsedServiceUnit(
                        cc_total_octets=total,
                        cc_input_octets=up,
                        cc_output_octets=down,
                        reporting_reason=reason,
                    )
                ],
                rating_group=rating_group,
            )
        )
    ccr.service_information = ServiceInformation(
        ps_information=PsInformation(tgpp_sgsn_mcc_mnc=req["sgsn"], pdp_address=[req["pdp"]])
    )
    msg = codec.decode_message(ccr.as_bytes(), TYPES)

    assert msg.header.is_request and msg.header.command_code == 272
    assert msg.first_unknown_mandatory() is None
    assert msg.get(c.AVP_SESSION_ID) == req["session_id"]
    assert msg.get(c.AVP_ORIGIN_HOST) == "pgw.example.net"
    assert msg.get(c.AVP_CC_REQUEST_NUMBER) == req["request_number"]
    assert msg.get(c.AVP_EVENT_TIMESTAMP) == req["event"]
    sub = msg.group(c.AVP_SUBSCRIPTION_ID)
    assert (sub.get(c.AVP_SUBSCRIPTION_ID_TYPE), sub.get(c.AVP_SUBSCRIPTION_ID_DATA)) == (
        0,
        req["msisdn"],
    )
    got = []
    for g in msg.groups(c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL):
        used = g.group(c.AVP_USED_SERVICE_UNIT)
        assert g.group(c.AVP_REQUESTED_SERVICE_UNIT).get(c.AVP_CC_TOTAL_OCTETS) == used.get(
            c.AVP_CC_TOTAL_OCTETS
        )
        got.append(
            (
                g.get(c.AVP_RATING_GROUP),
                used.get(c.AVP_CC_TOTAL_OCTETS),
                used.get(c.AVP_CC_INPUT_OCTETS),
                used.get(c.AVP_CC_OUTPUT_OCTETS),
                used.get(c.AVP_TGPP_3GPP_REPORTING_REASON, TGPP),
            )
        )
    assert got == req["mscc"]
    ps = msg.group(c.AVP_TGPP_SERVICE_INFORMATION, TGPP).group(c.AVP_TGPP_PS_INFORMATION, TGPP)
    assert ps.get(c.AVP_TGPP_3GPP_SGSN_MCC_MNC, TGPP) == req["sgsn"]
    assert ps.get(c.AVP_TGPP_PDP_ADDRESS, TGPP) == ipaddress.ip_address(req["pdp"]).compressed


# ============================================================================ hostile input

RESULT_CODES = {3008, 3009, 5011, 5014, 5015}


def read_everything(view) -> None:
    """Read every AVP of a decoded view, descending into groups."""
    try:
        items = view.avps()
    except codec.CodecError as error:
        assert error.result_code == 5004
        assert isinstance(error.failed_avp, bytes) and len(error.failed_avp) >= 8
        return
    assert len(items) == len(view)
    for code, _flags, vendor, value in items:
        raw = view.raw_avp(code, vendor)
        assert raw[:4] == struct.pack("!I", code)
        if isinstance(value, codec.AvpGroup):
            read_everything(value)


def decode_or_codec_error(buf: bytes, types: codec.TypeTable) -> None:
    """The only outcomes allowed: a readable message, or a CodecError to answer with."""
    try:
        msg = codec.decode_message(buf, types)
    except codec.CodecError as error:
        assert error.result_code in RESULT_CODES
        if error.result_code in (3009, 5014):
            assert len(error.failed_avp) >= 8 and len(error.failed_avp) % 4 == 0
        else:
            assert error.failed_avp is None
        return
    read_everything(msg)
    unknown = msg.first_unknown_mandatory()
    assert unknown is None or (unknown[4] & 0x40 and len(unknown) % 4 == 0)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes(data):
    decode_or_codec_error(data, wire.TYPES)
    decode_or_codec_error(data, TYPES)


def _header(body: bytes, flags: int) -> bytes:
    return struct.pack("!I", (1 << 24) | (20 + len(body))) + bytes([flags]) + b"\0" * 15


# AVPs that are nearly right: small codes known to the test table (groups included),
# any flags, and a length field that is usually right but sometimes anything.
_near_avps = st.recursive(
    st.tuples(st.integers(0, 20), st.integers(0, 255), st.binary(max_size=24)),
    lambda kids: st.tuples(
        st.sampled_from([wire.GROUP, wire.GROUP2, wire.V_GROUP]),
        st.integers(0, 255),
        st.lists(kids, max_size=4),
    ),
    max_leaves=20,
)


@st.composite
def near_messages(draw):
    def build(item):
        code, flags, data = item
        if isinstance(data, list):
            data = b"".join(build(k) for k in data)
        vendor = flags & 0x80
        head = 12 if vendor else 8
        length = head + len(data)
        if draw(st.integers(0, 9)) == 0:
            length = draw(st.integers(0, length + 16))
        out = struct.pack("!IB", code, flags) + length.to_bytes(3, "big")
        if vendor:
            out += struct.pack("!I", wire.TGPP)
        out += data
        return out + b"\0" * (-len(out) % 4)

    body = b"".join(build(item) for item in draw(st.lists(_near_avps, max_size=6)))
    return _header(body, draw(st.sampled_from([0x80, 0xC0, 0x00, 0xA0, 0x8F])))


@settings(max_examples=500, deadline=None)
@given(near_messages())
def test_nearly_valid_messages(buf):
    decode_or_codec_error(buf, wire.TYPES)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TREES, st.data())
def test_mutated_valid_messages(nodes, data):
    buf = bytearray(codec.encode_message(0xC0, 272, 4, 1, 2, ours(nodes), TYPES))
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(buf) - 1))
        buf[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(buf)))
        del buf[cut:]
        if len(buf) >= 4:
            buf[1:4] = len(buf).to_bytes(3, "big")
    decode_or_codec_error(bytes(buf), TYPES)
