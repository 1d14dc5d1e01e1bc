"""Stopping a background task that talks to Redis through redis-py.

``task.cancel()`` followed by ``await task`` is not enough there: redis-py's asyncio
client, given a socket timeout (``redis.timeout``), wraps its writes in
``asyncio.wait_for``, and on Python 3.11 a cancellation that arrives as the wrapped
write completes is lost (the task goes on as if never cancelled; measured: about half
of 300 cancellations of a task looping on PING or a pipeline, with a 1 s socket
timeout, none without). A node that waited for such a task never stopped.
:func:`cancel_and_wait` cancels again until the task is done.
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
