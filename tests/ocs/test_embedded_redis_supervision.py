"""The private redis-server supervised (issue 13): killed with SIGKILL, it is reaped (no
zombie), reported, restarted on the same port and data directory with its AOF (the data
is there again), and the supervision gives up after ``max_restarts`` within the window.
Real redis-servers, real signals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import redis

from ocs.cancellation import cancel_and_wait
from ocs.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from ocs.metrics import Metrics
from ocs.redis_store import Supervision

GUARD = 20.0


def process_state(pid: int) -> str | None:
    """The state letter of ``pid`` in /proc (``Z``: a zombie), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rpartition(")")[2].split()[0]


async def wait_for(predicate, what: str) -> None:
    for _ in range(int(GUARD / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {what}")


def test_restart_uses_the_same_port_and_data(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    try:
        port, first = server.port, server.pid
        client = redis.Redis.from_url(server.url)
        client.set("money", 1_000_000)
        client.execute_command("CONFIG", "SET", "appendfsync", "always")
        client.set("money", 750_000)
        with pytest.raises(EmbeddedRedisError, match="still running"):
            server.restart()
        assert server.exit_code() is None
        os.kill(first, signal.SIGKILL)
        while server.exit_code() is None:
            pass
        assert server.exit_code() == -signal.SIGKILL
        assert process_state(first) is None  # reaped: no zombie left
        server.restart()
        assert server.pid != first and server.port == port
        assert client.get("money") == b"750000"  # the AOF replayed; the client reconnected
        client.close()
    finally:
        server.stop()
    with pytest.raises(EmbeddedRedisError):
        server.restart()  # stopped: nothing to restart


async def test_supervision_restarts_a_killed_server_then_gives_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False)
    server.start()
    metrics = Metrics(process=False)
    gave_up = asyncio.Event()
    restarted: list[int] = []
    supervision = Supervision(2, gave_up.set, metrics=metrics.redis, poll_interval=0.02)
    supervision.on_restart.append(lambda: restarted.append(server.pid))
    watching = asyncio.create_task(supervision.watch(server))
    caplog.set_level(logging.ERROR, logger="ocs.redis_store")
    try:
        pids = [server.pid]
        for round_ in (1, 2):
            os.kill(pids[-1], signal.SIGKILL)
            await wait_for(lambda: server.pid != pids[-1] and server.running, "restarted")
            assert process_state(pids[-1]) is None  # the dead one was reaped
            pids.append(server.pid)
            assert supervision.restarts == round_
            assert restarted == pids[1:]
        assert metrics.registry.get_sample_value("ocs_redis_embedded_restarts_total") == 2
        died = [r for r in caplog.records if "embedded_redis_died" in r.getMessage()]
        assert len(died) == 2 and all(r.levelno == logging.ERROR for r in died)
        os.kill(pids[-1], signal.SIGKILL)  # the third death within the window: give up
        await asyncio.wait_for(gave_up.wait(), GUARD)
        await asyncio.wait_for(watching, GUARD)
        assert supervision.failure is not None
        assert "2 restarts" in str(supervision.failure)
        assert process_state(pids[-1]) is None
        assert not server.running
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        server.stop()


async def test_zero_restarts_gives_up_at_the_first_death(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False)
    server.start()
    gave_up = asyncio.Event()
    supervision = Supervision(0, gave_up.set, poll_interval=0.02)
    watching = asyncio.create_task(supervision.watch(server))
    try:
        pid = server.pid
        os.kill(pid, signal.SIGKILL)
        await asyncio.wait_for(gave_up.wait(), GUARD)
        assert supervision.restarts == 0 and server.pid == pid
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        server.stop()


async def test_a_failed_restart_is_logged_and_tried_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ocs.redis_store.RESTART_RETRY_DELAY", 0.3)
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False, start_timeout=5)
    server.start()
    supervision = Supervision(5, lambda: None, poll_interval=0.3)
    caplog.set_level(logging.ERROR, logger="ocs.redis_store")
    squatter = socket.socket()
    watching: asyncio.Task[None] | None = None
    try:
        first = server.pid
        os.kill(first, signal.SIGKILL)
        while server.exit_code() is None:
            await asyncio.sleep(0.01)
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", server.port))  # someone took the port meanwhile
        squatter.listen()
        watching = asyncio.create_task(supervision.watch(server))
        await wait_for(
            lambda: any("embedded_redis_restart_failed" in r.getMessage() for r in caplog.records),
            "a failed restart logged",
        )
        squatter.close()  # the port is free again: the next attempt starts it
        await wait_for(lambda: server.running, "restarted after the failure")
        assert supervision.restarts == 1 and server.pid != first
        died = [r for r in caplog.records if "embedded_redis_died" in r.getMessage()]
        assert len(died) == 1  # one death, reported once, whatever the attempts
    finally:
        squatter.close()
        if watching is not None:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        server.stop()


class SlowRestart(EmbeddedRedis):
    """A real server whose restarts take 0.5 s longer (a slow disk replaying its AOF)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.restarting = threading.Event()

    def restart(self) -> str:
        self.restarting.set()
        time.sleep(0.5)
        return super().restart()


async def test_stopping_during_a_restart_leaves_no_server_running(tmp_path: Path) -> None:
    """The node stops (cancel_and_wait on the watch, then stop()) while the supervision
    restarts the server: the watch ends only after the restart, and stop() stops the
    server it started, so no redis-server is left holding the port and the lock."""
    server = SlowRestart(tmp_path / "redis", appendonly=False)
    server.start()
    supervision = Supervision(5, lambda: None, poll_interval=0.02)
    watching = asyncio.create_task(supervision.watch(server))
    first = server.pid
    os.kill(first, signal.SIGKILL)
    await asyncio.wait_for(asyncio.to_thread(server.restarting.wait), GUARD)
    await asyncio.wait_for(cancel_and_wait(watching, recancel_after=0.02), GUARD)
    assert server.running and server.pid != first  # the restart finished first
    second = server.pid
    await asyncio.to_thread(server.stop)
    assert process_state(second) is None
    with pytest.raises(EmbeddedRedisError, match="not started|stopped"):
        server.restart()  # and none after the stop


def test_the_server_is_in_a_session_of_its_own(tmp_path: Path) -> None:
    """A Ctrl-C or a terminal's SIGHUP goes to the node's process group; the server
    must not get it (it would stop before the node's in-flight answers)."""
    with EmbeddedRedis(tmp_path / "redis", appendonly=False) as server:
        assert os.getsid(server.pid) == server.pid != os.getsid(0)
        assert os.getpgid(server.pid) != os.getpgid(0)
