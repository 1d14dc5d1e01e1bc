"""Redis faults seen by the two clients of quota_engine.store (issue 13): a hung Redis
(SIGSTOP) makes a call with a timeout fail with TimeoutError instead of waiting forever;
a call that timed out while Redis was alive leaves the connection in step (its late
replies dropped); a connection silent for the timeout is replaced; a dead Redis is not
hammered (back-off, capped) and is reached again when it comes back on its port; the
observer hears of each round trip, failure and reconnection. Real redis-servers of
their own (one per test: they are stopped and killed)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, TimeoutError

from ocs.embedded_redis import EmbeddedRedis
from quota_engine.store.connect import connect, link_to, redis_client
from quota_engine.store.redis_link import RECONNECT_MIN_DELAY, RedisLink

GUARD = 10  # seconds: a hang fails the test instead of blocking the suite


class Observer:
    def __init__(self) -> None:
        self.round_trips = 0
        self.failures: list[str] = []
        self.reconnects = 0

    def answered(self, seconds: float) -> None:
        assert seconds >= 0
        self.round_trips += 1

    def failed(self, kind: str) -> None:
        self.failures.append(kind)

    def reconnected(self) -> None:
        self.reconnects += 1


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test's own (it may be stopped, continued, killed)."""
    redis_server = EmbeddedRedis(tmp_path / "redis", appendonly=False)
    redis_server.start()
    try:
        yield redis_server
    finally:
        with contextlib.suppress(ProcessLookupError, Exception):
            os.kill(redis_server.pid, signal.SIGCONT)
        redis_server.stop()


@contextlib.contextmanager
def stopped(server: EmbeddedRedis) -> Iterator[None]:
    """The server hung (SIGSTOP) for the block; continued (SIGCONT) after it."""
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


@pytest.fixture
async def outside(server: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(server.url)
    yield client
    await client.aclose()


# ---------------------------------------------------------------------- RedisLink


async def test_a_hung_redis_fails_calls_with_a_timeout_and_service_resumes(
    server: EmbeddedRedis,
) -> None:
    observer = Observer()
    link = RedisLink.from_url(server.url, timeout=0.3, connect_timeout=0.3, observer=observer)
    try:
        assert await link.pipeline().get("x").get("y").execute() == [None, None]
        assert observer.round_trips == 1  # one report per pipeline, not per command
        with stopped(server):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(link.pipeline().get("x").execute(), GUARD)
            assert observer.failures == ["timeout"]
            # Redis sent nothing for the whole timeout: the connection was dropped
            await asyncio.sleep(0)
            assert not link.connected
            # the next call opens a new connection, whose handshake times out too
            with pytest.raises((TimeoutError, ConnectionError)):
                await asyncio.wait_for(link.execute_command("PING"), GUARD)
        for _ in range(100):  # within the back-off, calls fail at once; then it connects
            try:
                assert await asyncio.wait_for(link.ping(), GUARD) is True
                break
            except ConnectionError:
                await asyncio.sleep(RECONNECT_MIN_DELAY)
        else:
            raise AssertionError("the link never came back after SIGCONT")
        assert observer.reconnects >= 1
        assert observer.failures[0] == "timeout"
        assert link.backoff == 0
    finally:
        await link.aclose()


async def test_a_call_that_times_out_behind_live_replies_keeps_the_connection_in_step(
    server: EmbeddedRedis, outside: aioredis.Redis
) -> None:
    """The timed-out pipeline stays queued: its replies, when they come, are dropped and
    the calls behind it get their own."""
    link = await RedisLink.connect(server.url, timeout=1.0, client_name="in-step")
    try:
        first = await link.execute_command("CLIENT", "ID")
        ahead = asyncio.ensure_future(link.execute_command("BLPOP", "ahead", 0))
        await asyncio.sleep(0.5)
        late = asyncio.ensure_future(link.execute_command("BLPOP", "late", 0))
        await asyncio.sleep(0.3)
        await outside.rpush("ahead", "a")  # Redis answers `ahead` at 0.8 s: it is alive
        assert await asyncio.wait_for(ahead, GUARD) == [b"ahead", b"a"]
        with pytest.raises(TimeoutError):  # `late` expires at 1.5 s, 0.7 s after a reply
            await asyncio.wait_for(late, GUARD)
        assert link.connected  # not dropped: Redis spoke within the timeout
        behind = asyncio.ensure_future(link.pipeline().get("k").execute_command("PING").execute())
        await outside.set("k", "mine")
        await outside.rpush("late", "for the timed-out call")
        assert await asyncio.wait_for(behind, GUARD) == [b"mine", b"PONG"]
        assert await link.execute_command("CLIENT", "ID") == first  # same connection
        assert await outside.llen("late") == 0  # the timed-out BLPOP did run
    finally:
        await link.aclose()


async def test_a_cancelled_call_keeps_the_connection_in_step(
    server: EmbeddedRedis, outside: aioredis.Redis
) -> None:
    link = await RedisLink.connect(server.url, timeout=5.0)
    try:
        call = asyncio.ensure_future(link.execute_command("BLPOP", "list", 0))
        await asyncio.sleep(0.2)
        call.cancel()
        behind = asyncio.ensure_future(link.execute_command("ECHO", "behind"))
        await outside.rpush("list", "x")
        assert await asyncio.wait_for(behind, GUARD) == b"behind"
    finally:
        await link.aclose()


async def test_reconnect_backs_off_up_to_the_cap_and_finds_redis_again(
    tmp_path: Path, free_port
) -> None:
    port = free_port()
    observer = Observer()
    link = RedisLink.from_url(
        f"redis://127.0.0.1:{port}/0", timeout=0.5, reconnect_max_delay=0.2, observer=observer
    )
    try:
        with pytest.raises(ConnectionError, match="cannot connect"):
            await link.ping()
        assert link.backoff == RECONNECT_MIN_DELAY
        with pytest.raises(ConnectionError, match="next attempt in"):  # no new attempt
            await link.ping()
        for _ in range(6):  # each failed attempt doubles the back-off, up to the cap
            await asyncio.sleep(link.backoff)
            with pytest.raises(ConnectionError, match="cannot connect"):
                await link.ping()
        assert link.backoff == 0.2
        assert set(observer.failures) == {"connection"}
        revived = EmbeddedRedis(tmp_path / "revived", port=port, appendonly=False)
        await asyncio.to_thread(revived.start)
        try:
            await asyncio.sleep(link.backoff)
            assert await link.ping() is True
            assert link.backoff == 0
            assert observer.reconnects == 0  # a first connection, not a reconnection
            await asyncio.to_thread(revived.stop)
            with pytest.raises(ConnectionError):
                await link.ping()
            await asyncio.to_thread(revived.start)
            link.reset_backoff()
            await link.ping()
            assert observer.reconnects == 1
        finally:
            await asyncio.to_thread(revived.stop)
    finally:
        await link.aclose()


async def test_link_to_passes_the_timeout_and_observer(server: EmbeddedRedis) -> None:
    observer = Observer()
    async with connect(server.url) as client:
        link = link_to(client, timeout=0.25, reconnect_max_delay=1.5, observer=observer)
        assert link is not None
        try:
            assert (link.timeout, link.connect_timeout, link.reconnect_max_delay) == (
                0.25,
                0.25,
                1.5,
            )
            await link.ping()
            assert observer.round_trips == 1
        finally:
            await link.aclose()


# ---------------------------------------------------------------------- redis-py client


async def test_the_general_client_times_out_on_a_hung_redis_and_resumes(
    server: EmbeddedRedis,
) -> None:
    observer = Observer()
    async with connect(server.url, timeout=0.3, observer=observer) as client:
        await client.set("k", "v")
        assert await client.pipeline(transaction=False).get("k").get("k").execute() == [
            b"v",
            b"v",
        ]
        answered = observer.round_trips
        with stopped(server):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.get("k"), GUARD)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.pipeline().get("k").execute(), GUARD)
        assert observer.failures == ["timeout", "timeout"]
        assert observer.round_trips == answered
        assert await asyncio.wait_for(client.get("k"), GUARD) == b"v"  # no stale reply
        assert observer.reconnects >= 1  # the timed-out connections were replaced
        with pytest.raises(Exception):  # noqa: B017 - a ResponseError, counted
            await client.execute_command("NOSUCHCOMMAND")
        assert observer.failures[-1] == "response"


async def test_a_subscriber_waits_longer_than_the_timeout(server: EmbeddedRedis) -> None:
    async with connect(server.url, timeout=0.2) as client:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe("channel")
        try:
            listening = asyncio.ensure_future(anext(aiter(pubsub.listen())))
            await asyncio.sleep(0.6)  # three timeouts of silence: still listening
            assert not listening.done()
            await client.publish("channel", "hello")
            message = await asyncio.wait_for(listening, GUARD)
            assert message["data"] == b"hello"
        finally:
            await pubsub.aclose()


def test_redis_client_sets_socket_timeouts() -> None:
    client = redis_client("redis://127.0.0.1:1/0", timeout=0.7)
    options = client.connection_pool.connection_kwargs
    assert (options["socket_timeout"], options["socket_connect_timeout"]) == (0.7, 0.7)
    assert (
        "socket_timeout"
        not in redis_client("redis://127.0.0.1:1/0").connection_pool.connection_kwargs
    )


async def test_a_cancelled_task_of_the_general_client_stops_at_the_first_cancel(
    server: EmbeddedRedis,
) -> None:
    """With a socket timeout, redis-py writes under asyncio.wait_for, which on Python 3.11
    loses a cancellation that arrives as the write completes: the client's connections
    write under asyncio.timeout instead, so one cancel() stops every task."""
    async with connect(server.url, timeout=1.0) as client:

        async def loop_on_redis(n: int) -> None:
            while True:
                if n % 2:
                    await client.ping()
                else:
                    await client.pipeline(transaction=False).get("k").get("l").execute()

        for _ in range(3):
            tasks = [asyncio.ensure_future(loop_on_redis(n)) for n in range(100)]
            await asyncio.sleep(0.2)
            for task in tasks:
                task.cancel()
            done, running = await asyncio.wait(tasks, timeout=GUARD)
            assert not running, f"{len(running)} tasks ignored their cancellation"
            assert all(task.cancelled() for task in done)


def test_the_connections_match_the_url_scheme() -> None:
    from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection

    tcp = redis_client("redis://127.0.0.1:1/0", timeout=1.0).connection_pool.connection_class
    tls = redis_client("rediss://127.0.0.1:1/0", timeout=1.0).connection_pool.connection_class
    unix = redis_client("unix:///tmp/r.sock", timeout=1.0).connection_pool.connection_class
    assert not issubclass(tcp, SSLConnection | UnixDomainSocketConnection)
    assert issubclass(tls, SSLConnection) and issubclass(unix, UnixDomainSocketConnection)
