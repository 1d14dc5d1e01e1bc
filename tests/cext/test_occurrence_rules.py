"""``OccurrenceRules`` and ``Message.first_repeated``: the C check of AVPs that may occur
once (RFC 6733 §3.2), against a plain-Python reading of the same bytes.

Messages are built with python-diameter (the independent encoder) from random trees of a
small alphabet: base and vendor AVPs, Grouped AVPs the rules constrain, nested in each
other.
"""

from __future__ import annotations

import pytest
from diameter.message import Message as PdMessage
from diameter.message.avp import Avp
from diameter.message.commands import CreditControlRequest
from hypothesis import given, settings
from hypothesis import strategies as st

from cext import codec
from protocol.dictionary import build_type_table
from protocol.dictionary import constants as c

TYPES = build_type_table()
TGPP = c.VENDOR_TGPP
MSCC = (c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, 0)
RSU = (c.AVP_REQUESTED_SERVICE_UNIT, 0)
SUBSCRIPTION_ID = (c.AVP_SUBSCRIPTION_ID, 0)
RULES_SPEC: dict[tuple[int, int] | None, list[tuple[int, int]]] = {
    None: [(c.AVP_SESSION_ID, 0), (c.AVP_ORIGIN_HOST, 0), (c.AVP_TGPP_3GPP_SGSN_MCC_MNC, TGPP)],
    MSCC: [(c.AVP_RATING_GROUP, 0), RSU],
    RSU: [(c.AVP_CC_TOTAL_OCTETS, 0)],
}
RULES = codec.OccurrenceRules(RULES_SPEC)

LEAVES = {
    (c.AVP_SESSION_ID, 0): st.sampled_from(["a;1", "b;2", ""]),
    (c.AVP_ORIGIN_HOST, 0): st.sampled_from([b"pgw.test.net", b"x"]),
    (c.AVP_TGPP_3GPP_SGSN_MCC_MNC, TGPP): st.sampled_from(["26201", "20801"]),
    (c.AVP_RATING_GROUP, 0): st.integers(0, 2**32 - 1),
    (c.AVP_SERVICE_IDENTIFIER, 0): st.integers(0, 9),
    (c.AVP_CC_TOTAL_OCTETS, 0): st.integers(0, 2**64 - 1),
    (c.AVP_CC_TIME, 0): st.integers(0, 99),
}
GROUPS = [MSCC, RSU, SUBSCRIPTION_ID]


def _leaf(key: tuple[int, int]) -> st.SearchStrategy[Avp]:
    code, vendor = key
    return LEAVES[key].map(lambda value: Avp.new(code, vendor, value=value))


def _group(children: st.SearchStrategy[list[Avp]]) -> st.SearchStrategy[Avp]:
    def build(key: tuple[int, int], avps: list[Avp]) -> Avp:
        avp = Avp.new(key[0], key[1])
        avp.value = avps
        return avp

    return st.builds(build, st.sampled_from(GROUPS), children)


AVPS = st.recursive(
    st.one_of([_leaf(key) for key in LEAVES]),
    lambda children: _group(st.lists(children, max_size=5)),
    max_leaves=25,
)


def message_bytes(avps: list[Avp]) -> bytes:
    message = CreditControlRequest()
    message.header.hop_by_hop_identifier = 1
    message.header.end_to_end_identifier = 2
    return PdMessage(message.header, avps).as_bytes()


def reference(data: bytes) -> bytes | None:
    """What first_repeated must find, read in plain Python."""

    def walk(pos: int, end: int, container: tuple[int, int] | None, depth: int) -> bytes | None:
        singles, seen = RULES_SPEC.get(container, []), set()
        while pos < end:
            code = int.from_bytes(data[pos : pos + 4], "big")
            flags = data[pos + 4]
            length = int.from_bytes(data[pos + 5 : pos + 8], "big")
            header = 12 if flags & 0x80 else 8
            vendor = int.from_bytes(data[pos + 8 : pos + 12], "big") if header == 12 else 0
            key = (code, vendor)
            padded = (length + 3) & ~3
            if key in singles:
                if key in seen:
                    return data[pos : pos + padded]
                seen.add(key)
            if key in RULES_SPEC and depth < 8:
                found = walk(pos + header, pos + length, key, depth + 1)
                if found is not None:
                    return found
            pos += padded
        return None

    return walk(20, len(data), None, 0)


@settings(max_examples=400, deadline=None)
@given(avps=st.lists(AVPS, max_size=8))
def test_first_repeated_finds_what_a_plain_reading_finds(avps):
    data = message_bytes(avps)
    assert codec.decode_message(data, TYPES).first_repeated(RULES) == reference(data)


def test_none_without_repeats_and_the_second_occurrence_with():
    once = [Avp.new(c.AVP_SESSION_ID, value="a"), Avp.new(c.AVP_ORIGIN_HOST, value=b"h")]
    assert codec.decode_message(message_bytes(once), TYPES).first_repeated(RULES) is None
    second = Avp.new(c.AVP_SESSION_ID, value="second")
    data = message_bytes([*once, second])
    assert codec.decode_message(data, TYPES).first_repeated(RULES) == second.as_bytes()


def test_a_repeat_in_a_group_the_rules_do_not_list_is_allowed():
    group = Avp.new(*SUBSCRIPTION_ID)
    group.value = [Avp.new(c.AVP_RATING_GROUP, value=1), Avp.new(c.AVP_RATING_GROUP, value=2)]
    data = message_bytes([group])
    assert codec.decode_message(data, TYPES).first_repeated(RULES) is None


def test_deep_nesting_is_checked_to_a_bounded_depth():
    inner = [Avp.new(c.AVP_RATING_GROUP, value=1), Avp.new(c.AVP_RATING_GROUP, value=2)]
    for _ in range(200):  # MSCC in MSCC in ...: no recursion without bound
        group = Avp.new(*MSCC)
        group.value = inner
        inner = [group]
    data = message_bytes(inner)
    assert codec.decode_message(data, TYPES).first_repeated(RULES) is None


def test_rules_take_at_most_64_keys_per_container_and_uint32_codes():
    assert len(codec.OccurrenceRules({None: [(code, 0) for code in range(64)]})) == 1
    with pytest.raises(ValueError):
        codec.OccurrenceRules({None: [(code, 0) for code in range(65)]})
    with pytest.raises(OverflowError):
        codec.OccurrenceRules({None: [(2**32, 0)]})
    assert len(codec.OccurrenceRules({})) == 1  # the message level, empty
