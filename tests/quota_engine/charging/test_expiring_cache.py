"""quota_engine.charging.cache: expiry by the caller's clock, a hard size bound, and
eviction of the entries that would expire first."""

from __future__ import annotations

import math

import pytest

from quota_engine.charging.cache import ExpiringCache


def test_an_entry_lives_ttl_seconds_from_its_put():
    cache: ExpiringCache[str, str] = ExpiringCache(ttl=30.0, size=10)
    cache.put("msisdn:1", "A1", now=100.0)
    assert cache.get("msisdn:1", 129.9) == "A1"
    assert cache.get("msisdn:1", 130.0) is None
    assert len(cache) == 0  # an expired entry is dropped when met


def test_a_put_replaces_and_restarts_the_ttl():
    cache: ExpiringCache[str, str] = ExpiringCache(ttl=10.0, size=10)
    cache.put("k", "old", now=0.0)
    cache.put("k", "new", now=8.0)
    assert cache.get("k", 15.0) == "new"
    assert len(cache) == 1


def test_ttl_zero_caches_nothing():
    cache: ExpiringCache[str, str] = ExpiringCache(ttl=0.0, size=10)
    cache.put("k", "v", now=0.0)
    assert cache.get("k", 0.0) is None and len(cache) == 0


def test_the_size_is_never_exceeded_and_the_oldest_go_first():
    cache: ExpiringCache[int, int] = ExpiringCache(ttl=60.0, size=16)
    for n in range(100):
        cache.put(n, n, now=float(n) / 100)
        assert len(cache) <= 16
    assert cache.get(99, 1.0) == 99  # the newest stay
    assert cache.get(0, 1.0) is None  # the oldest were dropped
    kept = [n for n in range(100) if cache.get(n, 1.0) is not None]
    assert kept == list(range(100 - len(kept), 100))  # exactly the newest ones


def test_a_refreshed_entry_is_not_the_next_to_go():
    cache: ExpiringCache[str, int] = ExpiringCache(ttl=60.0, size=2)
    cache.put("a", 1, now=0.0)
    cache.put("b", 2, now=1.0)
    cache.put("a", 3, now=2.0)  # "a" now expires after "b"
    cache.put("c", 4, now=3.0)  # full: "b" goes
    assert (cache.get("a", 4.0), cache.get("b", 4.0), cache.get("c", 4.0)) == (3, None, 4)


def test_pop_and_clear():
    cache: ExpiringCache[str, int] = ExpiringCache(ttl=60.0, size=8)
    cache.put("a", 1, now=0.0)
    cache.put("b", 2, now=0.0)
    cache.pop("a")
    cache.pop("missing")
    assert cache.get("a", 0.0) is None and cache.get("b", 0.0) == 2
    cache.clear()
    assert len(cache) == 0


@pytest.mark.parametrize(("ttl", "size"), [(-1.0, 1), (math.nan, 1), (1.0, 0)])
def test_bad_bounds_are_refused(ttl, size):
    with pytest.raises(ValueError):
        ExpiringCache(ttl=ttl, size=size)
