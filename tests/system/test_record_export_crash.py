"""Crash tests of the record export (issue 10, Acceptance), with real processes only.

A private redis-server with AOF (``appendfsync always``, see
:class:`~tests.system.record_export_harness.AofRedis`), ``ocs serve`` on it, and the
exporter either inside ``ocs serve`` (``records.export = "on"``) or as ``ocs export``
processes. Network elements (our Diameter client) run data, voice and SMS sessions
back to back on eight accounts spread over the four partitions, retrying each request
(same Session-Id and CC-Request-Number) until it is answered. Meanwhile the exporter,
``ocs serve`` or Redis is killed with SIGKILL at seeded random moments and restarted.

After the traffic and the drain (every partition stream empty, nothing pending) and a
SIGTERM of every OCS process, :func:`assert_exported_exactly_once` checks the
guarantees of docs/records.md: every record id the scripts wrote (the traffic knows
them; Redis' ``entries-added`` counts them) is read exactly once from the segments by
``iter_records``/``RecordReader`` (duplicates dropped), none is missing, and the money
that left the accounts' money buckets is the sum of ``charged`` over the segments,
bucket by bucket (``money``). Kills that leave a segment being written (a torn tail)
must be reported by ``ocs records verify`` (exit 3, the offset) and recovered: the
next writer removes the ``.seg.tmp`` and its entries come again from Redis.

Entries of an XREADGROUP whose reply was lost (a Redis kill between its execution and
the reply) are claimed by the same exporter or written by the partition's next owner,
and SIGTERM exports what was charged since the exporter's last poll (the Redis kill
test still holds back XREADGROUPs for the instant of each kill).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from ocs.records import RecordReader, SegmentWarning, parse_segment_name, verify_directory
from ocs.records.segment_format import read_segment
from quota_engine.store.records import decode_record
from tests.system import record_export_harness as h

pytestmark = pytest.mark.system

PARTITIONS = 4
"""redis.partitions: few, so that segments fill up (a kill lands mid-segment)."""
SEGMENT_BYTES = 65536
"""The writer puts a quarter of this on disk at a time: a segment being written has
whole 16 KiB chunks on disk (about 22 records each), cut anywhere in a frame."""


@dataclasses.dataclass
class Rig:
    """One test's Redis, config file and OCS processes."""

    tmp: Path
    redis: h.AofRedis
    config: Path
    ports: dict[str, int]
    people: list[h.Subscriber]
    before: dict[str, int]
    processes: list[h.OcsProcess] = dataclasses.field(default_factory=list)
    proxies: list[h.RedisProxy] = dataclasses.field(default_factory=list)

    @property
    def records(self) -> Path:
        return self.tmp / "records"

    def serve(self) -> h.OcsProcess:
        process = h.serve(self.config, self.tmp)
        self.processes.append(process)
        return process

    def exporter(self, config: Path | None = None) -> h.OcsProcess:
        process = h.exporter(config or self.config, self.tmp)
        self.processes.append(process)
        return process

    async def proxy(self) -> h.RedisProxy:
        """A proxy in front of this rig's Redis (stopped by the fixture)."""
        proxy = h.RedisProxy(self.redis.port)
        await proxy.start()
        self.proxies.append(proxy)
        return proxy

    def config_via(self, proxy: h.RedisProxy | None = None) -> Path:
        """A config file (ports of its own) that reaches Redis through ``proxy``, or
        directly."""
        config = self.tmp / f"proxied-{len(list(self.tmp.glob('proxied-*.toml')))}.toml"
        url = proxy.url if proxy is not None else self.redis.url
        h.write_config(
            config, redis_url=url, partitions=PARTITIONS, records=self.records, export="off"
        )
        return config

    def leftovers(self) -> list[Path]:
        if not self.records.exists():
            return []
        return sorted(self.records.glob("*.seg.tmp"))


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Rig]]]:
    """Factory: Redis started, the config written, the accounts provisioned with
    ``ocs provision``, their money buckets read."""
    rigs: list[Rig] = []

    async def make(**records_settings) -> Rig:
        redis = h.AofRedis(tmp_path / "redis")
        await asyncio.to_thread(redis.start)
        config = tmp_path / "ocs.toml"
        ports = h.write_config(
            config,
            redis_url=redis.url,
            partitions=PARTITIONS,
            records=tmp_path / "records",
            **records_settings,
        )
        people = h.subscribers()
        document = tmp_path / "accounts.toml"
        h.provisioning_document(document, people)
        provisioned = await asyncio.to_thread(
            h.run_ocs, "provision", f"--config={config}", str(document), cwd=tmp_path
        )
        assert provisioned.returncode == 0, provisioned.stderr
        before = await h.money_buckets(redis.url, PARTITIONS, [p.account for p in people])
        rig = Rig(tmp_path, redis, config, ports, people, before)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        for process in rig.processes:
            await asyncio.to_thread(process.stop)
        for proxy in rig.proxies:
            await proxy.stop()
        await asyncio.to_thread(rig.redis.stop)


async def verify(rig: Rig) -> tuple[int, str]:
    """``ocs records verify DIR``: exit status and report."""
    result = await asyncio.to_thread(h.run_ocs, "records", "verify", str(rig.records), cwd=rig.tmp)
    assert result.returncode in (0, 1, 3), result.stderr
    return result.returncode, result.stdout + result.stderr


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # sealed (renamed) meanwhile
        return 0


@dataclasses.dataclass
class Leftover:
    """A segment a killed writer was writing, as ``ocs records verify`` found it."""

    path: Path
    torn_at: int | None
    ids: set[str]

    @property
    def torn_mid_segment(self) -> bool:
        """Cut inside a frame after some of the segment reached the disk."""
        return bool(self.torn_at)


async def check_leftovers(rig: Rig) -> list[Leftover]:
    """Right after a kill: the writer's unsealed segments are reported (exit 3, each by
    name, a torn tail with its offset), and nothing else is wrong (exit 0 without)."""
    found = []
    for path in rig.leftovers():
        scan = read_segment(path)
        ids = {decode_record(entry.record)["id"] for entry in scan.entries}
        found.append(Leftover(path, scan.torn_at, ids))
    status, report = await verify(rig)
    assert status == (3 if found else 0), report
    for leftover in found:
        line = next(line for line in report.splitlines() if line.startswith(leftover.path.name))
        assert "unsealed, writer stopped" in line, report
        if leftover.torn_at is not None:
            assert f"torn tail at offset {leftover.torn_at}" in line, report
    return found


async def recovered(rig: Rig, leftovers: list[Leftover]) -> None:
    """The restarted writers removed what the killed one left and wrote those sequences
    anew, sealed (once the dead exporter's leases ran out, 1 s): from the entries Redis
    gave again, the leftovers' among them (checked at the end)."""

    def rewritten() -> bool:
        return all(left.path.with_suffix("").exists() for left in leftovers)

    await until(rewritten, 15, "the leftovers' sequences written anew")


async def assert_exported_exactly_once(rig: Rig, load: h.Traffic) -> list[dict]:
    """The streams are drained and every OCS process is stopped (SIGTERM, exit 0):
    the segments hold each record the scripts wrote once after dedup, and their
    ``charged`` is the money that left the balances."""
    state = await h.wait_drained(rig.redis.url, PARTITIONS)
    for process in rig.processes:
        if process.running:
            assert await asyncio.to_thread(process.terminate) == 0, process.errors()
    assert rig.leftovers() == []  # SIGTERM sealed the open segments
    status, report = await verify(rig)
    assert status == 0, report
    assert verify_directory(rig.records).status == 0

    reader = RecordReader(rig.records)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SegmentWarning)  # no damage, no leftover
        records = list(reader)
    ids = [record["id"] for record in records]
    assert len(ids) == len(set(ids))
    raw = Counter(
        decode_record(entry.record)["id"]
        for path in sorted(rig.records.glob("*.seg"))
        for entry in read_segment(path).entries
    )
    assert reader.duplicates == sum(raw.values()) - len(raw)  # what dedup dropped
    assert set(raw) == set(ids)

    # no record lost, none made up: the traffic's sessions, and Redis' own count
    sessions = {record_id.rsplit(";", 2)[0] for record_id in load.expected}
    interim = {r["id"] for r in records if r["cause"] == "interim"}  # a tariff change
    assert {r["session"] for r in records if r["cause"] == "interim"} <= sessions
    assert set(ids) - interim == load.expected
    added = [s.added for s in state]
    if None not in added:  # Redis 7: entries-added of every stream, AOF included
        assert sum(added) == len(records)
    final = await h.stream_state(rig.redis.url, PARTITIONS)
    assert all(s.length == 0 and s.pending == 0 for s in final), final

    # money: per bucket, what left it is what the records say they took from it
    after = await h.money_buckets(rig.redis.url, PARTITIONS, [p.account for p in rig.people])
    taken: Counter[str] = Counter()
    for record in records:
        assert sum(record["money"].values()) == record["charged"], record
        for bucket, amount in record["money"].items():
            taken[f"{record['account']}/{bucket}"] += amount
    left = {bucket: rig.before[bucket] - after[bucket] for bucket in rig.before}
    assert {b: v for b, v in left.items() if v} == {b: v for b, v in taken.items() if v}
    assert sum(left.values()) == sum(r["charged"] for r in records) > 0
    return records


async def test_kill_9_of_ocs_export_mid_segment(make_rig):
    """`ocs export` (the only exporter) killed while it writes a segment, three times:
    the torn segment is reported, removed by the next exporter, its entries exported
    again from Redis; nothing lost, nothing twice."""
    rng = random.Random(1001)
    rig = await make_rig(export="off", segment_max_bytes=SEGMENT_BYTES)
    await asyncio.to_thread(rig.serve().start)
    export = rig.exporter()
    await asyncio.to_thread(export.start)
    leftovers: list[Leftover] = []
    async with h.traffic(rig.ports["diameter"], rig.people, seed=1001) as load:
        kills = 0
        while kills < 3 or (not any(left.torn_mid_segment for left in leftovers) and kills < 8):
            kills += 1
            await asyncio.sleep(rng.uniform(0.2, 0.6))
            # mid-segment: a chunk of the open segment is on disk
            await until(lambda: any(map(size, rig.leftovers())), 10, "a segment being written")
            export.kill()
            found = await check_leftovers(rig)
            leftovers += found
            await asyncio.sleep(rng.uniform(0, 0.3))  # the traffic goes on meanwhile
            await asyncio.to_thread(export.start)
            await recovered(rig, found)
    assert any(left.torn_mid_segment for left in leftovers)
    records = await assert_exported_exactly_once(rig, load)
    exported = {r["id"] for r in records}
    for leftover in leftovers:
        assert leftover.ids <= exported  # exported again from Redis
    assert load.sessions > 200


async def test_kill_9_of_ocs_serve_with_the_exporter_inside(make_rig):
    """`ocs serve` with records.export on, killed under traffic three times: the network
    elements retry on the restarted node; the new exporter recovers the partitions."""
    rng = random.Random(2002)
    rig = await make_rig(export="on", segment_max_bytes=SEGMENT_BYTES)
    node = rig.serve()
    await asyncio.to_thread(node.start)
    async with h.traffic(rig.ports["diameter"], rig.people, seed=2002) as load:
        for _ in range(3):
            await asyncio.sleep(rng.uniform(0.3, 0.9))
            node.kill()
            found = await check_leftovers(rig)
            await asyncio.sleep(rng.uniform(0, 0.3))
            await asyncio.to_thread(node.start)
            await recovered(rig, found)
        await asyncio.sleep(0.3)
    assert load.retries > 0  # the kills hit requests in flight
    await assert_exported_exactly_once(rig, load)
    assert load.sessions > 200


async def test_kill_9_of_redis_under_traffic(make_rig):
    """Redis killed and restarted (AOF) three times under traffic, with two `ocs export`
    processes sharing the partitions. One outage outlasts the leases (1 s): the
    exporters take the partitions anew after it. A kill may land between Redis running
    an exporter's XREADGROUP and the exporter getting its reply (the entries are then
    pending for it and never given again by a read): they must be claimed and exported
    all the same (test_a_read_whose_reply_was_lost_* make that case deterministic).
    Charging (`ocs serve`, export off) reaches Redis too: kills land on its scripts."""
    rng = random.Random(3003)
    rig = await make_rig(export="off", segment_max_bytes=SEGMENT_BYTES)
    await asyncio.to_thread(rig.serve().start)
    for _ in range(2):  # ports of their own (metrics), one Redis
        await asyncio.to_thread(rig.exporter(rig.config_via()).start)
    async with h.traffic(rig.ports["diameter"], rig.people, seed=3003) as load:
        for outage in (rng.uniform(0.05, 0.4), 1.5, rng.uniform(0.05, 0.4)):
            await asyncio.sleep(rng.uniform(0.3, 0.9))
            rig.redis.kill()
            await asyncio.sleep(outage)
            await asyncio.to_thread(rig.redis.start)
        await asyncio.sleep(0.5)
    assert load.retries > 0
    assert all(process.running for process in rig.processes)  # Redis outages waited out
    await assert_exported_exactly_once(rig, load)
    assert load.sessions > 200


async def test_sigterm_of_ocs_serve_seals_the_open_segments_and_acknowledges_them(make_rig):
    """Segments that would stay open for an hour: SIGTERM of `ocs serve` (the exporter
    inside) seals them, acknowledges and deletes their entries (the streams are empty
    after it) and leaves no .seg.tmp. (`ocs export`'s SIGTERM ends every test above.)"""
    rig = await make_rig(export="on", segment_max_bytes=2**30, segment_max_age=3600.0)
    node = rig.serve()
    await asyncio.to_thread(node.start)
    async with h.traffic(rig.ports["diameter"], rig.people, seed=4004, elements=4) as load:
        await asyncio.sleep(0.7)
    await until(lambda: len(rig.leftovers()) == PARTITIONS, 10, "every partition's segment")
    # the exporter has read every entry (SIGTERM does not read again: see
    # test_sigterm_exports_what_was_charged_since_the_last_poll) and acknowledged none
    state = await h.wait_delivered(rig.redis.url, PARTITIONS)
    assert 0 < sum(s.length for s in state) == sum(s.added or 0 for s in state)
    assert not any(
        (name := parse_segment_name(p.name)) is not None and name.sealed
        for p in rig.records.iterdir()
    )
    assert await asyncio.to_thread(node.terminate) == 0, node.errors()
    assert rig.leftovers() == []
    state = await h.stream_state(rig.redis.url, PARTITIONS)
    assert all(s.length == 0 and s.pending == 0 for s in state), state
    await assert_exported_exactly_once(rig, load)


async def test_sigterm_exports_what_was_charged_since_the_last_poll(make_rig):
    """`ocs serve` stops its Diameter side before its exporter, so on SIGTERM the
    exporter can export every record the node charged: the streams are empty after a
    clean stop. A long poll interval makes the last poll come before the traffic."""
    rig = await make_rig(export="on", export_poll_interval=30.0)
    node = rig.serve()
    await asyncio.to_thread(node.start)
    await asyncio.sleep(0.5)  # the exporter took the partitions and read them (empty)
    async with h.traffic(rig.ports["diameter"], rig.people, seed=5005, elements=4) as load:
        await asyncio.sleep(0.5)
    state = await h.stream_state(rig.redis.url, PARTITIONS)
    assert sum(s.length for s in state) == len(load.expected) > 0
    assert await asyncio.to_thread(node.terminate) == 0, node.errors()
    state = await h.stream_state(rig.redis.url, PARTITIONS)
    assert all(s.length == 0 for s in state), state


async def lose_a_read_reply(rig: Rig) -> tuple[h.Traffic, h.OcsProcess]:
    """`ocs export` through a proxy that cuts the connection instead of passing on one
    XREADGROUP reply holding entries; the traffic goes on after it, and the exporter
    reconnects and exports the entries written after the cut."""
    proxy = await rig.proxy()
    await asyncio.to_thread(rig.serve().start)
    export = rig.exporter(rig.config_via(proxy))
    await asyncio.to_thread(export.start)
    async with h.traffic(rig.ports["diameter"], rig.people, seed=6006, elements=4) as load:
        await asyncio.sleep(0.3)
        proxy.cut_next_read()
        await asyncio.wait_for(proxy.cut.wait(), 10)
        await asyncio.sleep(0.5)
    assert export.running
    return load, export


async def test_a_read_whose_reply_was_lost_is_exported_by_the_same_exporter(make_rig):
    """What a Redis kill between an XREADGROUP and its reply does, made deterministic."""
    rig = await make_rig(export="off")
    load, _ = await lose_a_read_reply(rig)
    await h.wait_drained(rig.redis.url, PARTITIONS, timeout=2)  # claimed, not stuck pending
    await assert_exported_exactly_once(rig, load)


async def test_a_read_whose_reply_was_lost_is_exported_by_the_next_owner(make_rig):
    rig = await make_rig(export="off")
    load, export = await lose_a_read_reply(rig)
    assert await asyncio.to_thread(export.terminate) == 0  # a clean hand-over
    await asyncio.to_thread(export.start)
    await assert_exported_exactly_once(rig, load)
