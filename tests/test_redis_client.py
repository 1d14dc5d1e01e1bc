"""The contract the OCS relies on from redis-py's asyncio client, checked against a
real redis-server: cancelling a task in the middle of a command cancels the task.

The charging engine, the catalog holder and the notifier are all stopped by
cancelling their tasks (SIGTERM, a peer gone, a request past its deadline). A client
that swallows the cancellation and returns the command's reply leaves those tasks
running and the shutdown hanging; redis-py 8.0 and 8.1 do (pyproject pins below 8).
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

ATTEMPTS = 400


async def test_cancelling_a_command_raises_cancelled_error(redis_url):
    client = aioredis.Redis.from_url(redis_url)
    swallowed = cancelled = 0
    try:
        for attempt in range(ATTEMPTS):
            task = asyncio.create_task(client.get("probe"))
            # cancel at spread points of the command's round trip (0 to 300 µs):
            # before sending, while waiting for the reply, while parsing it
            await asyncio.sleep((attempt % 16) * 20e-6)
            if not task.cancel():
                continue  # finished before the cancel: nothing to check
            try:
                await task
            except asyncio.CancelledError:
                cancelled += 1
            else:
                swallowed += 1
        assert await client.ping()  # the client is still usable afterwards
    finally:
        await client.aclose()
    assert cancelled > 0, "no cancel landed while a command was in flight"
    assert swallowed == 0, f"{swallowed} of {swallowed + cancelled} cancellations swallowed"
