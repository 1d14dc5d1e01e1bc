"""Two `ocs serve` processes on one Redis: shared balances, crash, money conservation.

OCS nodes are stateless (sessions live in Redis), so a session may move between
nodes at any request. 200 concurrent data sessions on ONE prepaid account with a
small balance must never take it below zero, and money must be conserved: initial
balance == final balance + the sum of the rated records' charges. Killing a node
with SIGKILL under traffic must not change that: the network element retries the
same request (same CC-Request-Number) on the other node.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from protocol.client import client_node, connect
from protocol.connection import PeerConnection
from protocol.dictionary import constants as c
from quota_engine.accounts.model import Account, Bucket
from quota_engine.accounts.provisioning import provision_demo
from quota_engine.store.accounts import AccountStore
from quota_engine.store.records import read_records
from tests.charging import messages as m
from tests.helpers import ROOT, get_free_port

EUR = 1_000_000
BALANCE = 20 * EUR  # 20 MiB of data at 1 EUR per MiB for 200 sessions that want 2 MiB each
SESSIONS = 200


class Node:
    """One `ocs serve` process on the shared Redis."""

    def __init__(self, redis_url: str, workdir: Path, name: str) -> None:
        self.redis_url = redis_url
        self.workdir = workdir
        self.name = name
        self.diameter_port = get_free_port()
        self.http_port = get_free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCS_")}
        env |= {"PYTHONPATH": str(ROOT), "OCS_REDIS_URL": self.redis_url}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ocs",
                "serve",
                "--diameter-host=127.0.0.1",
                f"--diameter-port={self.diameter_port}",
                "--http-host=127.0.0.1",
                f"--http-port={self.http_port}",
                f"--diameter-origin-host={self.name}.ocs.test",
            ],
            cwd=self.workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for line in self.process.stdout:
            if line.startswith("HTTP listening"):
                return
        raise AssertionError(f"{self.name} did not start")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
async def shared_account(redis_url):
    client = aioredis.Redis.from_url(redis_url)
    await provision_demo(client)  # installs the demo catalog (and demo accounts)
    store = AccountStore(client)
    await store.create_account(
        Account(
            id="shared",
            kind="prepaid",
            status="active",
            currency="EUR",
            credit_limit=0,
            plan="prepaid-basic",
            bill_cycle_day=1,
        )
    )
    await store.add_subscription("shared", "msisdn:491709999999")
    await store.put_bucket("shared", Bucket(id="main", kind="money", amount=BALANCE, priority=100))
    yield client
    await client.aclose()


@pytest.fixture
def nodes(redis_url, tmp_path):
    pair = [Node(redis_url, tmp_path, "a"), Node(redis_url, tmp_path, "b")]
    for node in pair:
        node.start()
    yield pair
    for node in pair:
        node.stop()


class Element:
    """A network element with one multiplexed connection to each node (our client,
    which correlates answers by Hop-by-Hop-Id); on a dead node it sends the same
    request, same CC-Request-Number, to the other node."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.connections: dict[str, PeerConnection | None] = {}
        self.connecting: dict[str, asyncio.Lock] = {node.name: asyncio.Lock() for node in nodes}
        self.failovers = 0  # requests that had to be sent again to another node

    async def connection(self, node: Node) -> PeerConnection | None:
        async with self.connecting[node.name]:
            connection = self.connections.get(node.name)
            if connection is None or not connection.is_open:
                try:
                    connection = await connect(
                        client_node("pgw.test.net", "test.net"), "127.0.0.1", node.diameter_port
                    )
                except (OSError, TimeoutError):
                    return None
                self.connections[node.name] = connection
            return connection

    async def request(self, message, first: int):
        """Send on node ``first``; on a dead connection, the same request elsewhere."""
        data = message.as_bytes()
        for attempt in range(10):
            node = self.nodes[(first + attempt) % len(self.nodes)]
            connection = await self.connection(node)
            if connection is not None:
                try:
                    return await connection.request_raw(data, timeout=10)
                except (ConnectionError, TimeoutError):
                    pass
            self.failovers += 1
            await asyncio.sleep(0.2)
        raise AssertionError("no node answered")

    async def close(self) -> None:
        for connection in self.connections.values():
            if connection is not None and connection.is_open:
                await connection.disconnect()


async def run_session(element: Element, index: int, crash: asyncio.Event | None) -> None:
    session = f"pgw.test.net;shared;{index}"
    subscription = (("msisdn", "491709999999"),)
    rng = random.Random(index)

    async def send(request_type, number, **kw):
        message = m.ccr(session, request_type, number, subscriptions=subscription, **kw)
        return await element.request(message, rng.randrange(2))

    answer = await send(m.INITIAL, 0, services=[m.mscc(10, requested=m.rsu(octets=m.MIB))])
    assert answer.get(c.AVP_RESULT_CODE) == 2001
    granted = _granted(answer)
    if crash is not None and index == SESSIONS // 2:
        crash.set()
    await asyncio.sleep(rng.random() * 0.2)
    answer = await send(
        m.UPDATE,
        1,
        services=[m.mscc(10, requested=m.rsu(octets=m.MIB), used=[m.usu(octets=granted)])],
    )
    assert answer.get(c.AVP_RESULT_CODE) == 2001
    granted = _granted(answer)
    answer = await send(m.TERMINATE, 2, services=[m.mscc(10, used=[m.usu(octets=granted)])])
    assert answer.get(c.AVP_RESULT_CODE) == 2001


def _granted(answer) -> int:
    mscc = answer.group(c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL)
    grant = mscc.group(c.AVP_GRANTED_SERVICE_UNIT) if mscc is not None else None
    return (grant.get(c.AVP_CC_TOTAL_OCTETS) or 0) if grant is not None else 0


async def assert_money_conserved(client) -> None:
    store = AccountStore(client)
    (main,) = [b for b in await store.buckets("shared") if b.id == "main"]
    records = await read_records(client, "shared", count=None)
    charged = sum(record["charged"] for record in records)
    assert main.reserved == 0
    assert main.amount >= 0
    assert main.amount + charged == BALANCE
    assert charged > 0
    assert await client.zcard("ocs:acct:{p:187}:shared:sessions") == 0


async def test_two_nodes_share_one_small_balance_without_going_below_zero(shared_account, nodes):
    element = Element(nodes)
    await asyncio.gather(*(run_session(element, i, None) for i in range(SESSIONS)))
    await element.close()
    await assert_money_conserved(shared_account)


async def test_kill_9_of_one_node_under_traffic_loses_no_money(shared_account, nodes):
    element = Element(nodes)
    crash = asyncio.Event()

    async def crash_and_restart():
        await crash.wait()
        nodes[0].kill()
        await asyncio.sleep(0.5)
        await asyncio.to_thread(nodes[0].start)

    await asyncio.gather(
        crash_and_restart(), *(run_session(element, i, crash) for i in range(SESSIONS))
    )
    await element.close()
    assert element.failovers > 0  # the kill did hit requests in flight
    assert nodes[0].process.poll() is None  # restarted and serving
    await assert_money_conserved(shared_account)
