"""The one clock of rating: when a request is rated.

A request is rated at one instant, its *rating time*, and that instant alone decides
everything rating depends on: the time band of its price, the bill period whose usage
its tiers count (``ocs:acct:{P}:A:usage:<period>``), which buckets are valid
(``valid_from <= t < valid_to``), where its Validity-Time is cut at the next rate
change, and the times its rated records carry. It is the request's Event-Timestamp
when that is within ``tolerance`` seconds of the server's clock, before or after,
else the server's time: a client cannot backdate its usage into a cheaper band, an
older bill period or the life of an expired allowance, nor date it into the future,
by more than the tolerance.

What is about the server's own bookkeeping stays on server time: session deadlines,
idempotency and usage TTLs, the sweeper, balance history entries.
"""

from __future__ import annotations

__all__ = ["rating_time"]


def rating_time(stamped: int, now: int, tolerance: int) -> int:
    """The instant a request is rated at: ``stamped`` (its Event-Timestamp, or its
    arrival time when it has none) if it is at most ``tolerance`` seconds from ``now``
    (server time) either way, else ``now``."""
    if -tolerance <= stamped - now <= tolerance:
        return stamped
    return now
