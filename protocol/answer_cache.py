"""Answers remembered for retransmitted requests (RFC 6733 §5.5.4 and §6.2).

A request sent again with the T flag after a failover carries the same End-to-End-Id
and Origin-Host as the first copy. When we have already answered that first copy we
send the same answer again instead of processing the request twice. The cache is
bounded in size and in age: entries older than ``ttl`` seconds are ignored (the RFC
asks duplicate detection to cover at least 4 minutes).
"""

from __future__ import annotations

from collections import OrderedDict


class AnswerCache:
    """Bounded map (Origin-Host, End-to-End-Id) -> answer bytes, oldest evicted first."""

    __slots__ = ("_entries", "_max_entries", "_ttl")

    def __init__(self, max_entries: int, ttl: float) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._entries: OrderedDict[tuple[str, int], tuple[float, bytes]] = OrderedDict()
        self._max_entries = max_entries
        self._ttl = ttl

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, origin_host: str, end_to_end: int, answer: bytes, now: float) -> None:
        key = (origin_host, end_to_end)
        entries = self._entries
        entries[key] = (now, answer)
        entries.move_to_end(key)
        while len(entries) > self._max_entries:
            entries.popitem(last=False)

    def get(self, origin_host: str, end_to_end: int, hop_by_hop: int, now: float) -> bytes | None:
        """The cached answer re-addressed to ``hop_by_hop``, or None.

        The retransmission may come with a new Hop-by-Hop-Id; the answer must carry it.
        """
        entry = self._entries.get((origin_host, end_to_end))
        if entry is None or now - entry[0] > self._ttl:
            return None
        answer = entry[1]
        return answer[:12] + hop_by_hop.to_bytes(4, "big") + answer[16:]
