"""store/text.py (the three decoding policies) and store/events.py (account events)."""

from __future__ import annotations

import asyncio

import pytest

from quota_engine.store.events import (
    ACCOUNT_BARRED,
    CREDIT_ADDED,
    parse_account_event,
    publish_account_event,
    subscribe_account_events,
)
from quota_engine.store.text import lossy_text, raw_text, text

BAD = b"caf\xc3\xa9 \xff"  # valid UTF-8, then a byte that is not


def test_text_is_strict_utf8():
    assert text(b"caf\xc3\xa9") == "café"
    assert text("as is") == "as is"
    assert text(None) is None
    with pytest.raises(UnicodeDecodeError):
        text(BAD)


def test_lossy_text_replaces_and_passes_other_values_through():
    assert lossy_text(BAD) == "café \ufffd"
    assert lossy_text(7) == 7
    assert lossy_text(None) is None


def test_raw_text_gives_the_same_bytes_back():
    assert raw_text(BAD).encode("utf-8", "surrogateescape") == BAD
    assert raw_text(b"a1|s1") == "a1|s1"
    assert raw_text(12) == "12"


@pytest.mark.parametrize(
    "data",
    [None, b"", b"not json", b"[]", b'{"event": "credit_added"}', b'{"event": 1, "account": "a"}'],
)
def test_parse_account_event_refuses_what_is_not_one(data):
    with pytest.raises(ValueError):
        parse_account_event(data)


async def test_published_events_reach_a_subscriber(r):
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    await subscribe_account_events(pubsub)
    await publish_account_event(r, CREDIT_ADDED, "a1")
    await publish_account_event(r, ACCOUNT_BARRED, "a2")
    heard = []
    async with asyncio.timeout(5):
        while len(heard) < 2:
            message = await pubsub.get_message(timeout=1)
            if message is not None:
                heard.append(parse_account_event(message["data"]))
    await pubsub.aclose()
    assert heard == [("credit_added", "a1"), ("account_barred", "a2")]
