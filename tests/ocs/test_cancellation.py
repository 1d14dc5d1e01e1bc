"""ocs.cancellation: a background task on redis-py is stopped even when a cancellation
is lost inside redis-py (Python 3.11's wait_for around its socket writes)."""

from __future__ import annotations

import asyncio
import random

import redis.asyncio as aioredis

from ocs.cancellation import cancel_and_wait


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again():
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed < 2:  # as a lost cancellation looks from outside
                    swallowed += 1
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
                    continue
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, recancel_after=0.01), 5)
    assert task.cancelled()
    assert swallowed == 2


async def test_a_finished_or_failed_task_is_left_as_it_is():
    async def fails() -> None:
        raise RuntimeError("its own to log")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(task)  # no exception here
    assert isinstance(task.exception(), RuntimeError)


async def test_tasks_looping_on_a_real_redis_with_a_socket_timeout_all_stop(redis_url):
    """Plain cancel-and-await hangs for many of these (redis-py 7, Python 3.11)."""
    client = aioredis.Redis.from_url(redis_url, socket_timeout=1.0)

    async def loop_on_redis() -> None:
        while True:
            pipe = client.pipeline(transaction=False)
            for i in range(16):
                pipe.hmget(f"test-cancellation:{i}", ["a", "b"])
            await pipe.execute()
            await client.ping()

    rng = random.Random(7)
    try:
        for _ in range(100):
            task = asyncio.create_task(loop_on_redis())
            await asyncio.sleep(rng.random() * 0.003)
            await asyncio.wait_for(cancel_and_wait(task, recancel_after=0.02), 5)
            assert task.done()
    finally:
        await client.aclose()
