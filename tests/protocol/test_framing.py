"""Streaming framing: whole messages out, however the bytes arrive."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.framing import Framer, FramingError, Oversized


def message(length: int, fill: int = 0xAB) -> bytes:
    """A syntactically framed message of ``length`` bytes (header + filler)."""
    return bytes([1]) + length.to_bytes(3, "big") + bytes([fill]) * (length - 4)


def test_one_message_in_one_feed():
    framer = Framer(4096)
    data = message(40)
    assert framer.feed(data) == [data]
    assert framer.buffered == 0


def test_message_completed_over_several_feeds():
    framer = Framer(4096)
    data = message(64)
    assert framer.feed(data[:3]) == []
    assert framer.feed(data[3:30]) == []
    assert framer.feed(data[30:]) == [data]


def test_many_messages_and_a_partial_one_in_one_feed():
    framer = Framer(4096)
    a, b, c = message(20, 1), message(24, 2), message(28, 3)
    assert framer.feed(a + b + c[:10]) == [a, b]
    assert framer.buffered == 10
    assert framer.feed(c[10:]) == [c]


@given(st.lists(st.integers(min_value=20, max_value=200), min_size=1, max_size=20), st.data())
def test_any_split_yields_the_same_messages(lengths, data):
    messages = [message(n, i % 256) for i, n in enumerate(lengths)]
    stream = b"".join(messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    framer = Framer(4096)
    out = []
    previous = 0
    for cut in [*cuts, len(stream)]:
        out += framer.feed(stream[previous:cut])
        previous = cut
    assert out == messages
    assert framer.buffered == 0


def test_oversized_message_is_reported_and_its_body_skipped_without_buffering():
    framer = Framer(100)
    big, small = message(1000, 7), message(24, 9)
    items = framer.feed(big[:50])
    assert items == [Oversized(big[:20], 1000)]
    assert framer.buffered == 0
    assert framer.feed(big[50:600]) == []
    assert framer.buffered == 0
    assert framer.feed(big[600:] + small) == [small]


def test_oversized_header_itself_split_across_feeds():
    framer = Framer(100)
    big = message(500)
    assert framer.feed(big[:10]) == []
    assert framer.feed(big[10:]) == [Oversized(big[:20], 500)]


def test_length_below_header_size_stops_framing_after_the_good_messages():
    framer = Framer(4096)
    good = message(24)
    assert framer.feed(good + b"\x01\x00\x00\x10" + bytes(16)) == [good]
    assert "below the header size" in str(framer.error)
    with pytest.raises(FramingError, match="below the header size"):
        framer.feed(message(20))


def test_other_versions_are_still_framed_so_they_can_be_answered():
    framer = Framer(4096)
    data = b"\x02" + message(20)[1:]
    assert framer.feed(data) == [data]


def test_max_size_below_header_is_rejected():
    with pytest.raises(ValueError):
        Framer(10)
