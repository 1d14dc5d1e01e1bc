"""The in-process cache of the charging engine: entries expire ``ttl`` seconds after
they were put, and at most ``size`` are kept.

One class for the engine's two caches (identity -> account, and the account fields
and period usage that rating needs). A hit runs on every CCR, so :meth:`ExpiringCache.get`
is one dict lookup and one comparison; the clock is the caller's (one
``time.monotonic()`` per batch, passed in as ``now``), not read per lookup.

When full, the oldest eighth of the entries is dropped. A put moves its key to the
end of the dict, so insertion order is expiry order (every entry lives ``ttl`` from its
put): the entries dropped are those that would expire first. That costs a few
evictions per put on a full cache (amortised: one pass over an eighth every
``size // 8`` puts), where clearing the whole cache would turn the next batches into
misses for every subscriber at once.
"""

from __future__ import annotations

from collections.abc import Hashable
from itertools import islice
from typing import Generic, TypeVar

__all__ = ["ExpiringCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    """``key -> value`` for ``ttl`` seconds of the caller's monotonic clock, at most
    ``size`` entries. ``ttl == 0`` caches nothing (every get misses)."""

    __slots__ = ("_entries", "_evict", "size", "ttl")

    def __init__(self, ttl: float, size: int) -> None:
        if not ttl >= 0:  # also refuses NaN
            raise ValueError(f"ttl must not be negative, got {ttl!r}")
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size!r}")
        self.ttl = ttl
        self.size = size
        self._evict = max(1, size // 8)
        self._entries: dict[K, tuple[float, V]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, now: float) -> V | None:
        """The value of ``key`` if it was put less than ``ttl`` before ``now``."""
        hit = self._entries.get(key)
        if hit is None:
            return None
        if hit[0] <= now:
            del self._entries[key]
            return None
        return hit[1]

    def put(self, key: K, value: V, now: float) -> None:
        """Keep ``value`` for ``key`` until ``now + ttl`` (replacing any older one)."""
        if self.ttl <= 0:
            return
        entries = self._entries
        if entries.pop(key, None) is None and len(entries) >= self.size:
            for old in list(islice(entries, self._evict)):
                del entries[old]
        entries[key] = (now + self.ttl, value)

    def pop(self, key: K) -> None:
        """Forget ``key`` (no error when it is not cached)."""
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
