"""The answer cache behind T-flag retransmissions."""

from __future__ import annotations

import pytest

from protocol.answer_cache import AnswerCache

ANSWER = bytes(12) + (1).to_bytes(4, "big") + b"rest-of-answer"


def test_cached_answer_is_readdressed_to_the_new_hop_by_hop_id():
    cache = AnswerCache(10, 240.0)
    cache.put("pgw", 7, ANSWER, now=0.0)
    again = cache.get("pgw", 7, hop_by_hop=99, now=1.0)
    assert again == bytes(12) + (99).to_bytes(4, "big") + b"rest-of-answer"


def test_other_origin_host_or_end_to_end_id_is_a_miss():
    cache = AnswerCache(10, 240.0)
    cache.put("pgw", 7, ANSWER, now=0.0)
    assert cache.get("other", 7, 1, now=0.0) is None
    assert cache.get("pgw", 8, 1, now=0.0) is None


def test_entries_expire_after_ttl():
    cache = AnswerCache(10, 240.0)
    cache.put("pgw", 7, ANSWER, now=0.0)
    assert cache.get("pgw", 7, 1, now=240.0) is not None
    assert cache.get("pgw", 7, 1, now=240.5) is None


def test_oldest_entries_are_evicted_beyond_the_bound():
    cache = AnswerCache(2, 240.0)
    for e2e in (1, 2, 3):
        cache.put("pgw", e2e, ANSWER, now=0.0)
    assert len(cache) == 2
    assert cache.get("pgw", 1, 1, now=0.0) is None
    assert cache.get("pgw", 3, 1, now=0.0) is not None


def test_zero_size_is_rejected():
    with pytest.raises(ValueError):
        AnswerCache(0, 1.0)
