"""Stopping a background task: the one way the node does it (sweeper aside, which has its
own stop event).

Why more than ``task.cancel()`` then ``await task``: on Python 3.11 ``asyncio.wait_for``
loses a cancellation that arrives as the awaited call completes, and stock redis-py
writes under it when given a socket timeout (measured: about half of 300 cancellations
of a task looping on PING or a pipeline, with a 1 s socket timeout). The node's own
Redis client no longer does (:mod:`quota_engine.store.connect` writes under
``asyncio.timeout``; tests/quota_engine/store/test_redis_faults.py), which is the fix;
:func:`cancel_and_wait` cancels again until the task is done, so that any other library
a task awaits that loses a cancellation cannot keep the node from stopping either.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["cancel_and_wait"]

RECANCEL_AFTER = 0.1
"""Seconds to wait for a cancelled task before cancelling it again."""


async def cancel_and_wait(
    task: asyncio.Task[Any], *, recancel_after: float = RECANCEL_AFTER
) -> None:
    """Cancel ``task`` and wait until it is done, cancelling it again every
    ``recancel_after`` seconds while it is not; its result or exception is dropped (a
    failure it met is its own to log)."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=recancel_after)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
