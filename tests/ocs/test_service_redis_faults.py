"""`ocs serve` survives its Redis (issue 13), as real processes with a real redis-server
and a Diameter network element over TCP:

* Redis hung (SIGSTOP): CCRs are answered 5012 within the timeout (plus slack), never
  left unanswered; ``/readyz`` is 503 naming Redis, ``/livez`` stays 200, the API answers
  503 instead of hanging; after SIGCONT the node serves again (2001, ``/readyz`` 200);
* the private redis-server killed (SIGKILL): reaped (no zombie), restarted on the same
  port with its AOF, charging resumes and the money is what it was;
* killed more often than ``redis.embedded_max_restarts`` within a minute: the node stops
  and exits 3;
* an external Redis stopped and started again on its port: the node serves again
  without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from ocs.embedded_redis import EmbeddedRedis
from quota_engine.accounts.provisioning import provision_demo
from tests.charging import messages as m
from tests.helpers import ROOT, get_free_port, stop_process
from tests.protocol.reference_peer import ReferencePeer

TOKEN = "redis-faults-admin-token"
DIGEST = hashlib.sha256(TOKEN.encode()).hexdigest()
TIMEOUT = 0.3  # --redis-timeout of the nodes here
SLACK = 2.0  # what a CCR may take beyond the timeout on a loaded test machine
MIB = 1_048_576
BUCKET = "/v1/accounts/demo-prepaid/buckets/main"


class Node:
    """One `ocs serve` process; its log (JSON lines) in ``workdir/serve.log``."""

    def __init__(self, workdir: Path, *flags: str) -> None:
        self.workdir = workdir
        self.diameter_port = get_free_port()
        self.http_port = get_free_port()
        self.log = workdir / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCS_")}
        env |= {"PYTHONPATH": str(ROOT), "OCS_HTTP_TOKENS": f"admin:{DIGEST}"}
        command = [sys.executable, "-m", "ocs", "serve", "--diameter-host=127.0.0.1"]
        command += [f"--diameter-port={self.diameter_port}", "--http-host=127.0.0.1"]
        command += [f"--http-port={self.http_port}", f"--redis-data-dir={workdir / 'redis'}"]
        command += [f"--redis-timeout={TIMEOUT}", "--redis-reconnect-max-delay=0.5", *flags]
        with self.log.open("w") as stderr:
            self.process = subprocess.Popen(
                command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
            )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("HTTP listening"):
                return
        raise AssertionError(f"ocs serve exited early: {self.log.read_text()}")

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == name:
                    found.append(event)
        return found

    def http(self, path: str, timeout: float = 10.0) -> tuple[int, Any]:
        """(status, JSON body) of a GET; raises TimeoutError when it hangs."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        return status, (json.loads(body) if body.startswith((b"{", b"[")) else body.decode())

    async def get(self, path: str) -> tuple[int, Any]:
        return await asyncio.to_thread(self.http, path)

    async def until(self, path: str, status: int, guard: float = 20.0) -> Any:
        """Poll ``path`` until it answers ``status``; its body."""
        deadline = time.monotonic() + guard
        while True:
            got, body = await self.get(path)
            if got == status:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} still answers {got} {body}, not {status}")
            await asyncio.sleep(0.1)

    async def balance(self) -> int:
        body = await self.until(BUCKET, 200)
        return int(body["amount"])

    def stop(self) -> None:
        stop_process(self.process)
        if self.process.stdout is not None:
            self.process.stdout.close()


class Element:
    """A P-GW: one Diameter connection, data sessions of the demo prepaid subscriber."""

    def __init__(self, peer: ReferencePeer) -> None:
        self.peer = peer
        self.numbers: dict[str, int] = {}

    @classmethod
    async def connect(cls, node: Node) -> Element:
        peer = await ReferencePeer.connect("127.0.0.1", node.diameter_port)
        cea = await peer.open()
        assert cea.result_code == 2001
        return cls(peer)

    async def ccr(
        self, session: str, kind: int, *, used: int | None = None, wait: float = TIMEOUT + SLACK
    ) -> int:
        """Send the session's next request (1 MiB asked, ``used`` octets reported); the
        Result-Code of its answer, which must come within ``wait`` seconds."""
        number = self.numbers.get(session, -1) + 1
        self.numbers[session] = number
        service = m.mscc(
            10,
            requested=None if kind == m.TERMINATE else m.rsu(octets=MIB),
            used=[] if used is None else [m.usu(octets=used)],
        )
        await self.peer.send(m.ccr(session, kind, number, services=[service]))
        answer = m.answer_of(await self.peer.recv_bytes(timeout=wait))
        assert answer.session_id == session
        return int(answer.result_code)

    async def close(self) -> None:
        await self.peer.close()


def process_state(pid: int) -> str | None:
    """The state letter of ``pid`` (``Z``: zombie), None when it is gone (reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return None


async def wait_for(predicate, what: str, guard: float = 20.0) -> None:
    deadline = time.monotonic() + guard
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.stop()


@contextlib.asynccontextmanager
async def external_redis(workdir: Path, port: int | None = None) -> AsyncIterator[EmbeddedRedis]:
    """An "external" redis-server (AOF on) with the demo catalog and subscribers."""
    server = EmbeddedRedis(workdir, port=port)
    await asyncio.to_thread(server.start)
    try:
        client = aioredis.Redis.from_url(server.url)
        await provision_demo(client)
        await client.aclose()
        yield server
    finally:
        with contextlib.suppress(Exception):
            os.kill(server.pid, signal.SIGCONT)
        await asyncio.to_thread(server.stop)


async def test_a_hung_redis_gives_5012_in_time_503_and_resumes(tmp_path: Path, nodes) -> None:
    async with external_redis(tmp_path / "external") as redis_server:
        node = Node(tmp_path, f"--redis-url={redis_server.url}")
        nodes.append(node)
        element = await Element.connect(node)
        try:
            assert await element.ccr("pgw;hung;1", m.INITIAL) == 2001
            assert (await node.get("/readyz")) == (200, {"ready": True, "reasons": []})
            os.kill(redis_server.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                assert await element.ccr("pgw;hung;1", m.UPDATE, used=1000) == 5012
                assert await element.ccr("pgw;hung;2", m.INITIAL) == 5012
                assert time.monotonic() - started < 2 * (TIMEOUT + SLACK)
                body = await node.until("/readyz", 503)
                assert body["ready"] is False
                assert any(reason.startswith("redis") for reason in body["reasons"])
                assert await node.get("/livez") == (200, {"live": True})
                status, error = await node.get(BUCKET)  # the API: 503, not a hang
                assert status == 503, error
                metrics = (await node.get("/metrics"))[1]
                assert "ocs_redis_up 0.0" in metrics and "ocs_ready 0.0" in metrics
                assert 'ocs_redis_errors_total{client="charging",kind="timeout"} 0.0' not in metrics
            finally:
                os.kill(redis_server.pid, signal.SIGCONT)
            await node.until("/readyz", 200)
            assert await element.ccr("pgw;hung;1", m.UPDATE, used=1000) == 2001
            assert await element.ccr("pgw;hung;1", m.TERMINATE, used=1000) == 2001
            metrics = (await node.get("/metrics"))[1]
            assert "ocs_redis_up 1.0" in metrics and "ocs_ready 1.0" in metrics
        finally:
            await element.close()


async def test_an_external_redis_that_comes_back_is_served_again(tmp_path: Path, nodes) -> None:
    port = get_free_port()
    async with external_redis(tmp_path / "external", port) as redis_server:
        node = Node(tmp_path, f"--redis-url={redis_server.url}")
        nodes.append(node)
        element = await Element.connect(node)
        try:
            assert await element.ccr("pgw;back;1", m.INITIAL) == 2001
            await asyncio.to_thread(redis_server.stop)  # SIGTERM: the AOF is flushed
            assert await element.ccr("pgw;back;2", m.INITIAL) == 5012
            body = await node.until("/readyz", 503)
            assert "redis: unreachable" in body["reasons"]
            await asyncio.to_thread(redis_server.start)  # the same port and data
            await node.until("/readyz", 200)
            for _ in range(50):  # the charging link's back-off passes (at most 0.5 s)
                code = await element.ccr("pgw;back;3", m.INITIAL)
                if code == 2001:
                    break
                await asyncio.sleep(0.1)
            assert code == 2001
            assert await element.ccr("pgw;back;1", m.TERMINATE, used=MIB) == 2001
            assert node.process.poll() is None  # never restarted
            metrics = (await node.get("/metrics"))[1]
            assert 'ocs_redis_reconnects_total{client="charging"} 0.0' not in metrics
        finally:
            await element.close()


async def test_a_killed_embedded_redis_is_restarted_and_the_money_kept(
    tmp_path: Path, nodes
) -> None:
    node = Node(tmp_path)
    nodes.append(node)
    element = await Element.connect(node)
    try:
        (first,) = node.events("embedded_redis_started")
        before = await node.balance()
        assert await element.ccr("pgw;kill;1", m.INITIAL) == 2001
        assert await element.ccr("pgw;kill;1", m.TERMINATE, used=MIB) == 2001
        charged = before - await node.balance()
        assert charged > 0
        await asyncio.sleep(1.5)  # appendfsync everysec: what a kill -9 may lose is older
        os.kill(first["pid"], signal.SIGKILL)
        await wait_for(lambda: len(node.events("embedded_redis_started")) == 2, "restarted")
        second = node.events("embedded_redis_started")[1]
        assert second["pid"] != first["pid"] and second["port"] == first["port"]
        assert second.get("restart") is True
        assert process_state(first["pid"]) is None  # reaped: no zombie
        (died,) = node.events("embedded_redis_died")
        assert died["level"] == "ERROR" and died["signal"] == "SIGKILL"
        assert await node.balance() == before - charged  # the AOF kept the money
        for _ in range(50):  # the charging link reconnects
            code = await element.ccr("pgw;kill;2", m.INITIAL)
            if code == 2001:
                break
            await asyncio.sleep(0.1)
        assert code == 2001
        assert await element.ccr("pgw;kill;2", m.TERMINATE, used=MIB) == 2001
        assert await node.balance() == before - 2 * charged
        metrics = (await node.get("/metrics"))[1]
        assert "ocs_redis_embedded_restarts_total 1.0" in metrics
        await node.until("/readyz", 200)
    finally:
        await element.close()


async def test_too_many_deaths_of_the_embedded_redis_exit_3(tmp_path: Path, nodes) -> None:
    node = Node(tmp_path, "--redis-embedded-max-restarts=1")
    nodes.append(node)
    (first,) = node.events("embedded_redis_started")
    os.kill(first["pid"], signal.SIGKILL)
    await wait_for(lambda: len(node.events("embedded_redis_started")) == 2, "restarted")
    second = node.events("embedded_redis_started")[1]
    os.kill(second["pid"], signal.SIGKILL)  # the second death within a minute
    assert await asyncio.to_thread(node.process.wait, 30) == 3
    log = node.log.read_text()
    assert "ocs serve: the private redis-server died again after 1 restarts" in log
    names = [e for e in ("embedded_redis_gave_up", "ocs_stopping", "ocs_stopped") if node.events(e)]
    assert names == ["embedded_redis_gave_up", "ocs_stopping", "ocs_stopped"]
    for pid in (first["pid"], second["pid"]):
        assert process_state(pid) is None


async def test_readyz_is_503_while_the_node_drains(tmp_path: Path, nodes) -> None:
    """After SIGTERM and before exit (here: waiting for a DPA that never comes), the node
    is taken out of rotation: /readyz 503 "draining", /livez still 200."""
    node = Node(tmp_path, "--diameter-dpa-timeout=2")
    nodes.append(node)
    element = await Element.connect(node)
    try:
        assert (await node.get("/readyz"))[0] == 200
        node.process.send_signal(signal.SIGTERM)
        dpr = await element.peer.recv(timeout=10)  # the DPR: left unanswered
        assert dpr.header.command_code == 282
        status, body = await node.get("/readyz")
        assert (status, body) == (
            503,
            {"ready": False, "reasons": ["draining: the node is stopping"]},
        )
        assert (await node.get("/livez"))[0] == 200
        assert "ocs_ready 0.0" in (await node.get("/metrics"))[1]
        assert await asyncio.to_thread(node.process.wait, 20) == 0
    finally:
        await element.close()
