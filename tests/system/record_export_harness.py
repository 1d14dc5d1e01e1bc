"""Real processes for the record-export crash tests (tests/system/test_record_export_crash.py).

- :class:`AofRedis`: a private ``redis-server`` with ``appendfsync always``, killed and
  restarted on the same port and data directory.
- :class:`OcsProcess`: ``ocs serve`` or ``ocs export`` as a child process on one config
  file, killed with SIGKILL or stopped with SIGTERM.
- :class:`Traffic`: network elements (our Diameter client) running many short data,
  voice and SMS sessions against the node, every request retried (same Session-Id,
  same CC-Request-Number) until it is answered, whatever is killed meanwhile; it knows
  the id of every record its sessions must have made the scripts write.
- :func:`store_partitions`, :func:`money_buckets`, :func:`stream_state`: what Redis holds.
- :class:`RedisProxy`: a TCP proxy in front of Redis that can hold back XREADGROUPs
  while a kill happens, or lose one XREADGROUP reply on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from diameter.message.constants import E_REQUESTED_ACTION_DIRECT_DEBITING

from ocs.embedded_redis import find_redis_server
from protocol.client import client_node, connect
from protocol.connection import PeerConnection, Timers
from protocol.dictionary import constants as c
from quota_engine.store import keys
from quota_engine.store.accounts import AccountStore
from quota_engine.store.record_feed import GROUP
from tests.charging import messages as m
from tests.helpers import ROOT, get_free_port

DEMO_CATALOG = ROOT / "quota_engine" / "catalog" / "demo_catalog.toml"
RETRYABLE = {3002, 3004, 5012}
"""Result-Codes after which a network element sends the same request again (the node
could not reach Redis: 5012 "charging engine unavailable")."""


def _wait_for(condition, timeout: float, what: str, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# --- Redis ------------------------------------------------------------------------------


class AofRedis:
    """redis-server on 127.0.0.1:``port`` with its AOF in ``directory``.

    ``appendfsync always``: Redis writes and fsyncs the AOF before it answers a write,
    so a kill -9 loses nothing it acknowledged. With the default ``everysec`` it may
    lose up to a second of acknowledged writes: debits the network was told about and
    whose records the exporter already made durable and deleted from the stream (the
    segments would then hold money that never left a balance), and deleted entries
    coming back (exported twice). That is a Redis durability choice, not what these
    tests are about.
    """

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or get_free_port()
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            find_redis_server(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            _wait_for(lambda: self._ready(client), 30, "redis-server to load its AOF")
        finally:
            client.close()

    def _ready(self, client: redis.Redis) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"redis-server exited: {log}")
        try:
            info: Any = client.info("persistence")
            return bool(info["loading"] == 0 and client.ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- ocs serve / ocs export -------------------------------------------------------------


def write_config(
    path: Path,
    *,
    redis_url: str,
    partitions: int,
    records: Path,
    export: str,
    segment_max_bytes: int = 16384,
    segment_max_age: float = 0.2,
    export_poll_interval: float = 0.05,
) -> dict[str, int]:
    """A config file for every process of one test; returns its ports."""
    ports = {"diameter": get_free_port(), "http": get_free_port(), "metrics": get_free_port()}
    path.write_text(
        f"""
[diameter]
host = "127.0.0.1"
port = {ports["diameter"]}
origin_host = "ocs.crash.test"
origin_realm = "crash.test"

[http]
host = "127.0.0.1"
port = {ports["http"]}

[redis]
url = "{redis_url}"
partitions = {partitions}

[records]
directory = "{records}"
segment_max_bytes = {segment_max_bytes}
segment_max_age = {segment_max_age}
export = "{export}"
export_poll_interval = {export_poll_interval}
export_lease = 1.0
export_metrics_port = {ports["metrics"]}

[log]
level = "WARNING"
"""
    )
    return ports


def ocs_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ocs", *args]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCS_")}
    return env | {"PYTHONPATH": str(ROOT)}


def run_ocs(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run one ``ocs`` command to its end."""
    return subprocess.run(
        ocs_command(*args), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=60
    )


class OcsProcess:
    """``ocs serve`` or ``ocs export`` (``command``) with ``--config config``; ready once
    it printed a line starting with ``ready``. Output goes to files in ``workdir``
    named by command, config and start (one config file per process)."""

    def __init__(self, command: str, config: Path, workdir: Path, ready: str) -> None:
        self.command, self.config, self.workdir, self.ready = command, config, workdir, ready
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        stem = self.workdir / f"{self.command}-{self.config.stem}-{self.starts}"
        self.stdout = stem.with_suffix(".out")
        self.stderr = stem.with_suffix(".err")
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.process = subprocess.Popen(
                ocs_command(self.command, f"--config={self.config}"),
                cwd=self.workdir,
                env=_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        _wait_for(self._ready, 60, f"ocs {self.command} to start", interval=0.02)

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"ocs {self.command} exited ({self.process.returncode}): {self.errors()}"
            )
        return any(line.startswith(self.ready) for line in self.stdout.read_text().splitlines())

    def errors(self) -> str:
        return self.stderr.read_text(errors="replace")[-4000:]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM; the exit code (SIGKILL after ``timeout``: then an AssertionError)."""
        assert self.process is not None
        if self.process.poll() is not None:
            return self.process.returncode
        self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"ocs {self.command} ignored SIGTERM: {self.errors()}") from None

    def stop(self) -> None:
        if self.running:
            with contextlib.suppress(AssertionError):
                self.terminate(15)


def serve(config: Path, workdir: Path) -> OcsProcess:
    return OcsProcess("serve", config, workdir, "HTTP listening")


def exporter(config: Path, workdir: Path) -> OcsProcess:
    return OcsProcess("export", config, workdir, "exporting rated records")


# --- accounts ---------------------------------------------------------------------------

PREPAID_MONEY = 1_000_000 * 1_000_000  # 1,000,000 EUR: never runs out in a test
POSTPAID_LIMIT = 1_000_000 * 1_000_000


@dataclasses.dataclass(frozen=True)
class Subscriber:
    account: str
    msisdn: str


def subscribers(count: int = 8) -> list[Subscriber]:
    """Half prepaid, half postpaid, on the demo catalog's plans; with 4 partitions they
    fall in every partition (crc32 of the id mod 4: 2, 1, 0, 3, ...)."""
    out = []
    for i in range(count):
        kind = "pre" if i % 2 == 0 else "post"
        out.append(Subscriber(f"crash-{kind}-{i // 2}", f"4917100{i:05d}"))
    return out


def provisioning_document(path: Path, people: Sequence[Subscriber]) -> None:
    """The demo catalog and ``people``'s accounts (prepaid: money in ``main``; postpaid:
    ``main`` at 0, charged against the credit limit)."""
    parts = [f'catalog = "{DEMO_CATALOG}"\n']
    for person in people:
        prepaid = "-pre-" in person.account
        parts.append(
            f"""
[[accounts]]
id = "{person.account}"
kind = "{"prepaid" if prepaid else "postpaid"}"
plan = "{"prepaid-basic" if prepaid else "postpaid-standard"}"
credit_limit = {0 if prepaid else POSTPAID_LIMIT}
subscriptions = ["msisdn:{person.msisdn}"]

  [[accounts.buckets]]
  id = "main"
  kind = "money"
  amount = {PREPAID_MONEY if prepaid else 0}
"""
        )
    path.write_text("".join(parts))


@contextlib.contextmanager
def store_partitions(count: int) -> Iterator[None]:
    """Use ``count`` partitions in this process (the store's key names) for a while:
    the test's Redis was installed with them, the rest of the suite uses the default."""
    previous = keys.partitions()
    keys.set_partitions(count)
    try:
        yield
    finally:
        keys.set_partitions(previous)


@contextlib.asynccontextmanager
async def redis_client(url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


async def money_buckets(url: str, partitions: int, accounts: Sequence[str]) -> dict[str, int]:
    """``{account/bucket: amount}`` of the accounts' money buckets; every reservation
    must be released."""
    out: dict[str, int] = {}
    async with redis_client(url) as client:
        with store_partitions(partitions):
            store = AccountStore(client)
            for account in accounts:
                for bucket in await store.buckets(account):
                    if bucket.kind == "money":
                        assert bucket.reserved == 0, (account, bucket)
                        out[f"{account}/{bucket.id}"] = bucket.amount
    return out


@dataclasses.dataclass(frozen=True)
class StreamState:
    length: int
    pending: int
    added: int | None
    """entries-added: every XADD the scripts ever made (Redis 7; None before)."""


async def stream_state(url: str, partitions: int) -> list[StreamState]:
    """Per partition: what its stream holds, what its export group has pending."""
    out = []
    async with redis_client(url) as client:
        for partition in range(partitions):
            stream = keys.partition_records(partition)
            length = await client.xlen(stream)
            added = pending = 0
            if await client.exists(stream):
                info = await client.xinfo_stream(stream)
                added = info.get("entries-added")
                groups = await client.xinfo_groups(stream)
                pending = sum(
                    int(g["pending"]) for g in groups if g["name"] in (GROUP, GROUP.encode())
                )
            out.append(StreamState(length, pending, added))
    return out


async def wait_drained(url: str, partitions: int, timeout: float = 20) -> list[StreamState]:
    """Wait until the exporters emptied every partition's stream."""
    deadline = time.monotonic() + timeout
    while True:
        state = await stream_state(url, partitions)
        if all(s.length == 0 and s.pending == 0 for s in state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"the streams were not drained: {state}")
        await asyncio.sleep(0.05)


async def wait_delivered(url: str, partitions: int, timeout: float = 20) -> list[StreamState]:
    """Wait until the exporters have read every entry of every stream (all pending)."""
    deadline = time.monotonic() + timeout
    while True:
        state = await stream_state(url, partitions)
        if all(s.length == s.pending for s in state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"the exporters did not read every entry: {state}")
        await asyncio.sleep(0.02)


# --- traffic ----------------------------------------------------------------------------

NATIONAL, MOBILE, INTERNATIONAL = "tel:+4930123456", "tel:+4917012345678", "tel:+33612345678"


class Element:
    """One network element: one connection to the node, opened again whenever it
    breaks; each request is sent again (same bytes: Session-Id, CC-Request-Number)
    until the node answers with something other than a retryable error."""

    def __init__(self, port: int, name: str, patience: float = 30) -> None:
        self.port, self.name, self.patience = port, name, patience
        self.connection: PeerConnection | None = None
        self.lock = asyncio.Lock()
        self.retries = 0

    async def _connection(self) -> PeerConnection | None:
        async with self.lock:
            if self.connection is None or not self.connection.is_open:
                try:
                    self.connection = await connect(
                        client_node("pgw.test.net", "test.net", timers=Timers(request_timeout=5)),
                        "127.0.0.1",
                        self.port,
                        timeout=2,
                    )
                except (OSError, TimeoutError, ConnectionError):
                    self.connection = None
            return self.connection

    async def request(self, message) -> Any:
        data = message.as_bytes()
        deadline = time.monotonic() + self.patience
        while True:
            connection = await self._connection()
            if connection is not None:
                try:
                    answer = await connection.request_raw(data, timeout=5)
                except (ConnectionError, TimeoutError, OSError):
                    pass
                else:
                    if answer.get(c.AVP_RESULT_CODE) not in RETRYABLE:
                        return answer
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no answer for {self.patience} s")
            self.retries += 1
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self.connection is not None and self.connection.is_open:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.connection.disconnect(), 5)


class Traffic:
    """``elements`` network elements running sessions back to back until stopped:
    data (rating group 10, with zero-rated 999 now and then: two records at the
    CCR-T), voice (100) and SMS events (200), on random subscribers.

    :attr:`expected` collects the ids of the records the scripts must have written
    for the sessions that completed (docs/records.md, "When records are written").
    """

    def __init__(self, port: int, people: Sequence[Subscriber], seed: int, elements: int = 12):
        self.port, self.people, self.seed, self.count = port, list(people), seed, elements
        self.expected: set[str] = set()
        self.sessions = 0
        self.elements: list[Element] = []

    async def run(self, stop: asyncio.Event) -> None:
        self.elements = [Element(self.port, f"element-{i}") for i in range(self.count)]
        try:
            await asyncio.gather(*(self._loop(e, i, stop) for i, e in enumerate(self.elements)))
        finally:
            for element in self.elements:
                await element.close()

    @property
    def retries(self) -> int:
        return sum(e.retries for e in self.elements)

    async def _loop(self, element: Element, index: int, stop: asyncio.Event) -> None:
        rng = random.Random(self.seed * 1000 + index)
        n = 0
        while not stop.is_set():
            n += 1
            session = f"pgw.test.net;{self.seed};{index};{n}"
            person = rng.choice(self.people)
            kind = rng.random()
            if kind < 0.5:
                await self._data(element, session, person, rng)
            elif kind < 0.8:
                await self._voice(element, session, person, rng)
            else:
                await self._sms(element, session, person, rng)
            self.sessions += 1

    @staticmethod
    def _ok(answer: Any, what: str) -> None:
        code = answer.get(c.AVP_RESULT_CODE)
        assert code == 2001, f"{what}: Result-Code {code}"

    async def _data(self, element: Element, session: str, person: Subscriber, rng) -> None:
        subscription = (("msisdn", person.msisdn),)
        groups = [10, 999] if rng.random() < 0.3 else [10]

        def ccr(kind: int, number: int, used: dict[int, int] | None, more: bool):
            services = [
                m.mscc(
                    group,
                    requested=m.rsu(octets=m.MIB) if more else None,
                    used=[m.usu(octets=used[group])] if used else (),
                )
                for group in groups
            ]
            return m.ccr(session, kind, number, subscriptions=subscription, services=services)

        answer = await element.request(ccr(m.INITIAL, 0, None, True))
        self._ok(answer, f"{session} CCR-I")
        number = 0
        for _ in range(rng.randrange(2)):
            number += 1
            used = {g: rng.randrange(1, m.MIB) for g in groups}
            self._ok(await element.request(ccr(m.UPDATE, number, used, True)), f"{session} CCR-U")
        number += 1
        used = {g: rng.randrange(1, m.MIB) for g in groups}
        self._ok(await element.request(ccr(m.TERMINATE, number, used, False)), f"{session} CCR-T")
        self.expected.update(f"{session};{number};{g}" for g in groups)

    async def _voice(self, element: Element, session: str, person: Subscriber, rng) -> None:
        subscription = (("msisdn", person.msisdn),)
        info = m.ims_information(rng.choice((NATIONAL, MOBILE, INTERNATIONAL)))

        def ccr(kind: int, number: int, used: int | None, more: bool):
            service = m.mscc(
                100,
                requested=m.rsu() if more else None,
                used=[m.usu(seconds=used)] if used is not None else (),
            )
            return m.ccr(
                session, kind, number, context=m.VOICE, subscriptions=subscription,
                services=[service], service_information=info,
            )  # fmt: skip

        self._ok(await element.request(ccr(m.INITIAL, 0, None, True)), f"{session} CCR-I")
        number = 0
        if rng.random() < 0.5:
            number += 1
            self._ok(
                await element.request(ccr(m.UPDATE, number, rng.randrange(1, 120), True)),
                f"{session} CCR-U",
            )
        number += 1
        self._ok(
            await element.request(ccr(m.TERMINATE, number, rng.randrange(1, 120), False)),
            f"{session} CCR-T",
        )
        self.expected.add(f"{session};{number};100")

    async def _sms(self, element: Element, session: str, person: Subscriber, rng) -> None:
        recipient = rng.choice(("+491701234567", "+447700900123"))
        message = m.ccr(
            session,
            m.EVENT,
            0,
            context=m.SMS,
            subscriptions=(("msisdn", person.msisdn),),
            action=E_REQUESTED_ACTION_DIRECT_DEBITING,
            services=[m.mscc(200, requested=m.rsu(events=1))],
            service_information=m.sms_information(recipient),
        )
        self._ok(await element.request(message), f"{session} SMS")
        self.expected.add(f"{session};0;200")


@contextlib.asynccontextmanager
async def traffic(
    port: int, people: Sequence[Subscriber], seed: int, elements: int = 12
) -> AsyncIterator[Traffic]:
    """Traffic running for the lifetime of the context; leaving it lets every session
    in progress finish (its requests retried until answered) and raises what failed
    (leaving it with an exception cancels the sessions instead)."""
    load = Traffic(port, people, seed, elements)
    stop = asyncio.Event()
    task = asyncio.create_task(load.run(stop))
    try:
        yield load
    except BaseException:
        task.cancel()  # the test failed: do not wait for sessions on a dead node
        with contextlib.suppress(BaseException):
            await task
        raise
    stop.set()
    await task


# --- a proxy in front of Redis --------------------------------------------------------


class _Incomplete(Exception):
    pass


def _resp(buffer: bytes | bytearray, i: int) -> tuple[Any, int]:
    """One RESP2/RESP3 value of ``buffer`` at ``i`` and the offset after it; raises
    _Incomplete when the buffer ends inside it."""
    end = buffer.find(b"\r\n", i)
    if end < 0:
        raise _Incomplete
    kind, line, i = buffer[i : i + 1], bytes(buffer[i + 1 : end]), end + 2
    if kind in (b"$", b"!", b"="):  # bulk string, blob error, verbatim string
        size = int(line)
        if size < 0:
            return None, i
        if len(buffer) < i + size + 2:
            raise _Incomplete
        return bytes(buffer[i : i + size]), i + size + 2
    if kind in (b"*", b"~", b">", b"%"):  # array, set, push, map
        count = int(line)
        if count < 0:
            return None, i
        items = []
        for _ in range(count * 2 if kind == b"%" else count):
            item, i = _resp(buffer, i)
            items.append(item)
        return items, i
    if kind == b"_":
        return None, i
    return line, i  # + - : , # ( simple values


def _values(buffer: bytearray) -> list[tuple[Any, bytes]]:
    """Take the complete RESP values off the front of ``buffer``: (value, its bytes)."""
    out, i = [], 0
    while i < len(buffer):
        try:
            value, after = _resp(buffer, i)
        except _Incomplete:
            break
        out.append((value, bytes(buffer[i:after])))
        i = after
    del buffer[:i]
    return out


class RedisProxy:
    """A TCP proxy in front of Redis (a real socket pair per connection) that knows
    which of the commands it passed are still waiting for their reply.

    :meth:`cut_next_read`: the connection on which the next ``XREADGROUP`` reply
      that holds entries comes back is closed instead of passing it on (Redis
      executed it: the entries are delivered, pending for the exporter, who never
      sees them), as when Redis dies or the network breaks between the two.
    """

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.port = 0
        self.cut = asyncio.Event()
        self._cut_armed = False
        self._waiting: dict[int, list[bool]] = {}
        """Per connection: its commands waiting for a reply, True for an XREADGROUP."""
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def cut_next_read(self) -> None:
        self._cut_armed = True

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter):
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.redis_port)
        except OSError:  # Redis is down
            client_w.close()
            return
        waiting: list[bool] = []
        self._waiting[id(waiting)] = waiting

        async def upstream() -> None:
            buffer = bytearray()
            while data := await client_r.read(65536):
                buffer += data
                commands = _values(buffer)
                reads = [bool(v) and bytes(v[0]).upper() == b"XREADGROUP" for v, _ in commands]
                waiting.extend(reads)
                server_w.write(b"".join(raw for _, raw in commands))
                await server_w.drain()

        async def downstream() -> None:
            buffer = bytearray()
            while data := await server_r.read(65536):
                buffer += data
                for value, raw in _values(buffer):
                    read = waiting.pop(0) if waiting else False
                    if read and self._cut_armed and value:
                        self._cut_armed = False
                        self.cut.set()
                        return  # the reply is dropped, both sides closed
                    client_w.write(raw)
                await client_w.drain()

        pumps = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)  # resets, cancellations
            del self._waiting[id(waiting)]
            for writer in (client_w, server_w):
                writer.close()
