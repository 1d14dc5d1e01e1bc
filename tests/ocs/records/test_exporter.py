"""The record exporter (ocs/records/exporter.py) against a real redis-server: records
XADDed to the partition streams as the charging scripts add them (field ``r``, a
msgpack record) end in sealed segments exactly once after dedup, and the streams empty.

Failures are real (a task cancelled mid-way, a consumer that read and vanished, Redis
losing its data, a directory that stops being one) or injected at our own seam (a
:class:`RecordFeed` whose acknowledgement or claim raises Redis's ConnectionError).
Settings are small (a few partitions, 0.6 s leases, 0.1 s segments) so that each test
takes a second or two; waits poll for a state, they never assert a duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from ocs.metrics import Metrics
from ocs.records import (
    RecordReader,
    SegmentWarning,
    iter_records,
    parse_segment_name,
    read_checkpoint,
)
from ocs.records.exporter import Exporter, ExportObserver, ExportSettings
from ocs.records.segment_format import encode_entry, encode_header, read_segment
from ocs.records.writer import SegmentSettings, writer_is_running
from quota_engine.store import keys
from quota_engine.store.record_feed import GROUP, Entry, RecordFeed, entry_order
from tests.ocs.records.record_factory import record_bytes, record_id

PARTITIONS = 4
LEASE = 0.6


@pytest.fixture(autouse=True)
def few_partitions() -> Iterator[int]:
    keys.set_partitions(PARTITIONS)
    yield PARTITIONS
    keys.set_partitions(keys.DEFAULT_PARTITIONS)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(redis_url)
    yield redis
    await redis.aclose()


def export_settings(directory: Path, **overrides: Any) -> ExportSettings:
    fields: dict[str, Any] = {
        "directory": directory,
        "segments": SegmentSettings(max_bytes=1 << 20, max_age=0.1),
        "batch": 50,
        "poll_interval": 0.02,
        "lease_ttl": LEASE,
        "backlog_interval": 0.05,
    }
    return ExportSettings(**{**fields, **overrides})


def metric(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value


async def wait_until(condition: Callable[[], Awaitable[bool] | bool], timeout: float = 10) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "timed out waiting for the exporter"
        await asyncio.sleep(0.01)


class Running:
    """An exporter's ``run`` as a task: ``stop()`` ends it as SIGTERM does, ``kill()``
    cancels it mid-way (what a crash leaves in Redis and on disk, minus the process)."""

    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter
        self.stopping = asyncio.Event()
        self.task = asyncio.create_task(exporter.run(self.stopping))

    @property
    def owned(self) -> list[int]:
        return self.exporter.owned

    async def stop(self) -> None:
        self.stopping.set()
        await self.task

    async def kill(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@contextlib.asynccontextmanager
async def running(
    client: aioredis.Redis,
    settings: ExportSettings,
    name: str,
    observer: ExportObserver | None = None,
    feed: RecordFeed | None = None,
) -> AsyncIterator[Running]:
    exporter = Exporter(
        feed or RecordFeed(client, name), settings, observer or Metrics(process=False)
    )
    run = Running(exporter)
    try:
        yield run
    finally:
        if not run.task.done():
            await run.stop()


class Records:
    """Records XADDed to the partition streams (with ``*`` ids, as the scripts do),
    numbered so that record ``i`` has id ``record_id(i)``."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.count = 0

    async def add(self, per_partition: int, partitions: range | None = None) -> list[str]:
        pipe = self.client.pipeline(transaction=False)
        for _ in range(per_partition):
            for partition in partitions or range(keys.partitions()):
                pipe.xadd(keys.partition_records(partition), {"r": record_bytes(self.count)})
                self.count += 1
        return [entry_id.decode() for entry_id in await pipe.execute()]

    @property
    def ids(self) -> list[str]:
        return sorted(record_id(i) for i in range(self.count))


async def in_streams(client: aioredis.Redis) -> int:
    """Entries the partition streams hold (not exported yet)."""
    pipe = client.pipeline(transaction=False)
    for partition in range(keys.partitions()):
        pipe.xlen(keys.partition_records(partition))
    return sum(await pipe.execute())


async def pending(client: aioredis.Redis) -> Counter[str]:
    """Consumer -> entries delivered to it and not acknowledged, over the partitions."""
    out: Counter[str] = Counter()
    for partition in range(keys.partitions()):
        with contextlib.suppress(Exception):  # no stream or group yet
            summary = await client.xpending(keys.partition_records(partition), GROUP)
            for consumer in summary["consumers"]:
                out[consumer["name"].decode()] += int(consumer["pending"])
    return out


def exported_ids(*directories: Path) -> list[str]:
    """The record ids read back from the directories' segments, duplicates dropped
    across them too (a bill run reading both keeps one of each)."""
    seen: set[str] = set()
    for directory in directories:
        if directory.is_dir():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", SegmentWarning)
                seen.update(record["id"] for record in iter_records(directory))
            # the only damage allowed: what a killed exporter left being written
            for warning in caught:
                assert "unsealed segment of a stopped writer" in str(warning.message)
    return sorted(seen)


def raw_entries(*directories: Path) -> Counter[str]:
    """How many times each record id is written in the sealed segments, no dedup."""
    out: Counter[str] = Counter()
    for directory in directories:
        for path in directory.iterdir():
            name = parse_segment_name(path.name)
            if name is not None and name.sealed:
                for entry in read_segment(path).entries:
                    out[record_id_of(entry.record)] += 1
    return out


def record_id_of(data: bytes) -> str:
    return str(msgpack.unpackb(data, raw=False)["id"])


def temporary_segments(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".seg.tmp"))


def all_exported(client: aioredis.Redis, records: Records, *directories: Path):
    async def check() -> bool:
        return await in_streams(client) == 0 and exported_ids(*directories) == records.ids

    return check


# ------------------------------------------------------------------------------ tests


async def test_every_record_lands_once_and_the_streams_end_empty(client, tmp_path):
    directory = tmp_path / "records"
    records, metrics = Records(client), Metrics(process=False)
    await records.add(10)  # before the exporter starts
    async with running(client, export_settings(directory), "e1", metrics) as run:
        await wait_until(all_exported(client, records, directory))
        assert metric(metrics, "ocs_records_export_partitions") == PARTITIONS
        await records.add(10)  # while it runs
        await wait_until(all_exported(client, records, directory))
        # written: counted from the streams' entries-added since the first measurement
        await wait_until(lambda: metric(metrics, "ocs_records_written_total") == 40)
        await wait_until(lambda: metric(metrics, "ocs_records_export_lag_entries") == 0)
    assert run.task.done()

    reader = RecordReader(directory)
    assert sorted(record["id"] for record in reader) == records.ids
    assert reader.duplicates == 0
    assert set(raw_entries(directory).values()) == {1}
    sealed = [p for p in directory.iterdir() if p.name.endswith(".seg")]
    assert metric(metrics, "ocs_records_exported_total") == 80
    assert metric(metrics, "ocs_records_duplicates_dropped_total") == 0
    assert metric(metrics, "ocs_records_segments_total") == len(sealed)
    assert metric(metrics, "ocs_records_segment_bytes_total") == sum(
        p.stat().st_size for p in sealed
    )
    assert metric(metrics, "ocs_records_fsync_duration_seconds_count") == len(sealed)
    assert metric(metrics, "ocs_records_export_lag_seconds") == 0
    assert metric(metrics, "ocs_records_partitions_over_cap") == 0
    assert metric(metrics, "ocs_records_export_partitions") == 0  # stopped: owns none
    assert await in_streams(client) == 0
    assert await pending(client) == Counter()
    assert temporary_segments(directory) == []


async def test_stop_seals_acknowledges_and_hands_the_partitions_back(client, tmp_path):
    directory = tmp_path / "records"
    records = Records(client)
    settings = export_settings(directory, segments=SegmentSettings(max_age=600))
    async with running(client, settings, "e1") as run:
        await records.add(5)
        await wait_until(lambda: _pending_is(client, {"e1": 20}))  # read,
        await wait_until(lambda: len(temporary_segments(directory)) == PARTITIONS)  # written
        assert exported_ids(directory) == []
        assert await client.zscore(keys.EXPORTERS, "e1") is not None
        await run.stop()

    assert exported_ids(directory) == records.ids  # sealed on stop
    assert temporary_segments(directory) == []
    assert await in_streams(client) == 0  # and acknowledged
    assert await pending(client) == Counter()
    feed = RecordFeed(client, "other")
    assert set((await feed.owners(list(range(PARTITIONS)))).values()) == {None}
    assert await client.zscore(keys.EXPORTERS, "e1") is None
    assert not any(writer_is_running(directory, p) for p in range(PARTITIONS))


async def _pending_is(client: aioredis.Redis, expected: dict[str, int]) -> bool:
    return await pending(client) == Counter(expected)


class AcknowledgementFails(RecordFeed):
    """Acknowledging raises, as when Redis goes away after the segment is durable:
    ``times`` times (None: always)."""

    def __init__(self, client: Any, consumer: str, times: int | None = None) -> None:
        super().__init__(client, consumer)
        self.times = times
        self.failed = 0

    async def acknowledge(self, durable: dict[int, list[str]]) -> int:
        if self.times is None or self.failed < self.times:
            self.failed += 1
            raise RedisConnectionError("injected: connection lost before XACK")
        return await super().acknowledge(durable)


async def test_a_crash_between_fsync_and_acknowledgement_writes_nothing_twice(client, tmp_path):
    """The first exporter seals segments of 3 records (by size) and cannot acknowledge
    them, then dies with 2 records per partition in an open segment. The next one, on
    the same directory, claims all 8 per partition: the 6 at or below the checkpoint
    are acknowledged without being written again, the 2 others are written."""
    directory = tmp_path / "records"
    records = Records(client)
    entry_ids = await records.add(8)
    frame = len(encode_entry(entry_ids[-1], record_bytes(records.count - 1)))
    header = len(encode_header(0, 1, int(time.time())))
    by_size = SegmentSettings(max_bytes=header + frame * 5 // 2, max_age=600)
    failing = AcknowledgementFails(client, "crashed")
    settings = export_settings(directory, segments=by_size)
    async with running(client, settings, "crashed", feed=failing) as first:
        await wait_until(lambda: len(exported_ids(directory)) == 24)  # 2 segments each
        await wait_until(lambda: len(temporary_segments(directory)) == PARTITIONS)
        await wait_until(lambda: failing.failed >= 2)
        await first.kill()
    sealed = sorted(p.name for p in directory.iterdir() if p.name.endswith(".seg"))
    assert len(sealed) == 2 * PARTITIONS
    assert await in_streams(client) == 32  # durable or not, never acknowledged
    assert await pending(client) == Counter({"crashed": 32})
    assert not any(writer_is_running(directory, p) for p in range(PARTITIONS))

    await records.add(3)  # new ones, for the next exporter
    metrics = Metrics(process=False)
    async with running(client, export_settings(directory), "restarted", metrics):
        await wait_until(all_exported(client, records, directory))
    # the crashed one's entries were claimed, found at or below the checkpoint, and
    # acknowledged without being written again
    assert metric(metrics, "ocs_records_duplicates_dropped_total") == 24
    assert metric(metrics, "ocs_records_exported_total") == 44
    assert set(raw_entries(directory).values()) == {1}
    reader = RecordReader(directory)
    assert sorted(record["id"] for record in reader) == records.ids
    assert reader.duplicates == 0
    assert await pending(client) == Counter()


async def test_an_acknowledgement_that_failed_is_made_again(client, tmp_path):
    directory = tmp_path / "records"
    records, metrics = Records(client), Metrics(process=False)
    await records.add(5)
    feed = AcknowledgementFails(client, "e1", times=2)
    async with running(client, export_settings(directory), "e1", metrics, feed=feed):
        await wait_until(all_exported(client, records, directory))
    # the ids it made durable were kept and acknowledged at the next round (had it
    # forgotten them, they would stay pending for it: XREADGROUP never gives them again)
    assert feed.failed == 2
    assert metric(metrics, "ocs_records_exported_total") == 20
    assert set(raw_entries(directory).values()) == {1}


async def test_a_vanished_consumers_entries_are_claimed_and_exported(client, tmp_path):
    directory = tmp_path / "records"
    records = Records(client)
    await records.add(6)
    ghost = RecordFeed(client, "ghost")
    await ghost.ensure_groups(list(range(PARTITIONS)))
    delivered = await ghost.read(list(range(PARTITIONS)), 4)  # then it vanishes
    assert sum(map(len, delivered.values())) == 16
    await records.add(2)
    async with running(client, export_settings(directory), "next"):
        await wait_until(all_exported(client, records, directory))
    assert await pending(client) == Counter()
    for partition in range(PARTITIONS):  # the ghost is forgotten by the groups
        infos = await client.xinfo_consumers(keys.partition_records(partition), GROUP)
        assert {info["name"].decode() for info in infos} == {"next"}


class ClaimFails(RecordFeed):
    """The first claim raises, as when Redis goes away while a partition is taken."""

    failed = False

    async def claim(
        self, partition: int, after: str | None = None, min_idle_ms: int = 0
    ) -> list[Entry]:
        if not self.failed:
            self.failed = True
            raise RedisConnectionError("injected: connection lost in XAUTOCLAIM")
        return await super().claim(partition, after, min_idle_ms)


async def test_a_claim_that_failed_is_made_again(client, tmp_path):
    directory = tmp_path / "records"
    records = Records(client)
    await records.add(3)
    ghost = RecordFeed(client, "ghost")
    await ghost.ensure_groups(list(range(PARTITIONS)))
    await ghost.read(list(range(PARTITIONS)), 10)  # all of it pending for the ghost
    feed = ClaimFails(client, "next")
    async with running(client, export_settings(directory), "next", feed=feed):
        await wait_until(all_exported(client, records, directory))
    assert feed.failed


async def test_a_cancelled_exporters_entries_go_to_the_next_owner(client, tmp_path):
    directory = tmp_path / "records"
    records = Records(client)
    settings = export_settings(directory, segments=SegmentSettings(max_age=600))
    async with running(client, settings, "dying") as first:
        await records.add(4)
        await wait_until(lambda: _pending_is(client, {"dying": 16}))  # read,
        await wait_until(lambda: len(temporary_segments(directory)) == PARTITIONS)  # written
        await first.kill()  # mid-segment: nothing sealed, nothing acknowledged
    assert first.owned == []
    assert not any(writer_is_running(directory, p) for p in range(PARTITIONS))
    assert len(temporary_segments(directory)) == PARTITIONS
    assert await in_streams(client) == 16
    # its leases stay until they expire: then the next exporter claims its entries
    assert set((await first.exporter.feed.owners(list(range(PARTITIONS)))).values()) == {"dying"}

    metrics = Metrics(process=False)
    async with running(client, export_settings(directory), "next", metrics):
        await records.add(1)
        await wait_until(all_exported(client, records, directory))
    assert set(raw_entries(directory).values()) == {1}
    assert temporary_segments(directory) == []  # the dead one's removed by the writers
    assert metric(metrics, "ocs_records_duplicates_dropped_total") == 0


@pytest.mark.parametrize("layout", ["one directory", "two directories"])
async def test_two_exporters_share_the_partitions_and_take_over_from_each_other(
    client, tmp_path, layout
):
    keys.set_partitions(8)
    one, two = tmp_path / "a", tmp_path / ("a" if layout == "one directory" else "b")
    records = Records(client)
    await records.add(3)
    async with running(client, export_settings(one), "a") as a:
        async with running(client, export_settings(two), "b") as b:

            def fair() -> bool:
                return len(a.owned) == len(b.owned) == 4 and not set(a.owned) & set(b.owned)

            await wait_until(fair)
            await records.add(3)
            await wait_until(all_exported(client, records, one, two))
            await wait_until(fair)  # still shared
        # b stopped (close): its partitions are free at once, a takes them all
        assert b.task.done()
        await wait_until(lambda: len(a.owned) == 8)
        await records.add(2)
        await wait_until(all_exported(client, records, one, two))

        slow = export_settings(two, segments=SegmentSettings(max_age=600))
        async with running(client, slow, "c") as c:  # holds what it reads, unsealed
            await wait_until(lambda: len(a.owned) == len(c.owned) == 4)
            await records.add(2)
            await wait_until(lambda: _has_pending(client, "c"))
            await c.kill()  # dies: no more heartbeats, its leases expire
            await wait_until(lambda: len(a.owned) == 8)
            await wait_until(all_exported(client, records, one, two))
    assert exported_ids(one, two) == records.ids
    assert await in_streams(client) == 0
    assert await pending(client) == Counter()
    if layout == "one directory":  # one writer per partition and directory: never twice
        assert set(raw_entries(one).values()) == {1}


async def _has_pending(client: aioredis.Redis, consumer: str) -> bool:
    return (await pending(client))[consumer] > 0


async def test_a_lost_stream_or_group_is_recreated_and_the_export_goes_on(client, tmp_path):
    """DEL of a stream (its group with it) and FLUSHALL (leases and heartbeats too).
    After FLUSHALL the new entries' ids start below what the checkpoints hold (as after
    a fail-over to a replica whose clock is behind): they are new records, exported,
    not taken for ones exported already."""
    keys.set_partitions(2)
    directory = tmp_path / "records"
    records = Records(client)
    async with running(client, export_settings(directory), "e1") as run:
        await records.add(5)
        await wait_until(all_exported(client, records, directory))

        await client.delete(keys.partition_records(0))
        await records.add(3)
        await wait_until(all_exported(client, records, directory))

        await client.flushall()
        pipe = client.pipeline(transaction=False)
        for n in range(4):
            for partition in range(2):
                pipe.xadd(
                    keys.partition_records(partition),
                    {"r": record_bytes(records.count)},
                    id=f"1-{n + 1}",
                )
                records.count += 1
        await pipe.execute()
        await wait_until(all_exported(client, records, directory))
        await wait_until(lambda: len(run.owned) == 2)
    assert set(raw_entries(directory).values()) == {1}


async def test_a_lagging_partition_over_the_cap_is_reported(client, tmp_path, caplog):
    directory = tmp_path / "records"
    records, metrics = Records(client), Metrics(process=False)
    await records.add(30, range(1, 2))  # partition 1 over the cap, written while no
    await records.add(5, range(2, 3))  # exporter ran
    await asyncio.sleep(0.01)  # the oldest entry is older than now
    exporter = Exporter(
        RecordFeed(client, "late"), export_settings(directory, stream_cap=20), metrics
    )
    try:
        await exporter.share()  # owns the partitions, exported nothing yet
        assert exporter.owned == list(range(PARTITIONS))
        with caplog.at_level(logging.WARNING, "ocs.records.exporter"):
            backlog = await exporter.measure_backlog()
        assert [(b.partition, b.entries) for b in backlog] == [(0, 0), (1, 30), (2, 5), (3, 0)]
        assert metric(metrics, "ocs_records_partitions_over_cap") == 1
        assert metric(metrics, "ocs_records_export_lag_entries") == 35
        assert metric(metrics, "ocs_records_export_lag_seconds") > 0
        assert "records_stream_over_cap" in [r.getMessage() for r in caplog.records]
        assert metric(metrics, "ocs_records_written_total") == 0  # a first measurement
        await records.add(4, range(2, 3))
        await exporter.measure_backlog()
        assert metric(metrics, "ocs_records_written_total") == 4
        assert metric(metrics, "ocs_records_export_lag_entries") == 39
    finally:
        await exporter.close()
    assert await in_streams(client) == 39  # close seals and acknowledges what it read: nothing


async def test_a_failing_disk_abandons_the_writers_and_leaves_the_records_in_redis(
    client, tmp_path, caplog
):
    """The directory stops being one (root ignores permissions, so it is replaced by a
    file) while segments are open: sealing fails, the exporter stops with the error,
    every writer is abandoned (each partition's lock released) and every record is still
    in Redis; an exporter on the restored directory exports them all."""
    directory, moved = tmp_path / "records", tmp_path / "moved"
    records = Records(client)
    settings = export_settings(directory, segments=SegmentSettings(max_age=1.5))
    with caplog.at_level(logging.INFO, "ocs.records.exporter"):
        async with running(client, settings, "e1") as run:
            await records.add(3)
            await wait_until(lambda: _pending_is(client, {"e1": 12}))  # read,
            await wait_until(lambda: len(temporary_segments(directory)) == PARTITIONS)
            directory.rename(moved)
            directory.write_text("not a directory\n")
            with pytest.raises(OSError):
                await run.task
    assert run.owned == []
    assert not any(writer_is_running(moved, p) for p in range(PARTITIONS))
    assert "export_abandon_failed" not in [r.getMessage() for r in caplog.records]
    assert await in_streams(client) == 12
    assert exported_ids(moved) == []

    directory.unlink()
    moved.rename(directory)
    async with running(client, export_settings(directory), "e2"):
        await wait_until(all_exported(client, records, directory))
    assert set(raw_entries(directory).values()) == {1}
    assert temporary_segments(directory) == []


class ReplyLost(RecordFeed):
    """The first read that gives entries is run by Redis, then its reply is lost (the
    connection cut): the entries are pending for this consumer, which never saw them."""

    lost: dict[int, list[Entry]] | None = None

    async def read(
        self, partitions: Sequence[int], count: int, regrouped: list[int] | None = None
    ) -> dict[int, list[Entry]]:
        batches = await super().read(partitions, count, regrouped)
        if batches and self.lost is None:
            self.lost = batches
            raise RedisConnectionError("injected: connection lost before the reply")
        return batches


async def test_entries_of_a_read_whose_reply_was_lost_are_claimed_by_the_same_exporter(
    client, tmp_path
):
    directory = tmp_path / "records"
    records = Records(client)
    feed = ReplyLost(client, "e1")
    async with running(client, export_settings(directory), "e1", feed=feed):
        await records.add(3)
        await wait_until(lambda: feed.lost is not None)
        await records.add(2)  # read after the lost ones
        await wait_until(all_exported(client, records, directory))
    assert sum(map(len, (feed.lost or {}).values())) > 0
    assert set(raw_entries(directory).values()) == {1}


async def test_claimed_entries_below_the_checkpoint_missing_from_the_segments_are_written(
    client, tmp_path
):
    """Entries pending for an exporter that never got them (a reply lost as it died),
    below entries it sealed later: the next owner on the directory finds them at or
    below the checkpoint's last entry id but not in the segments, and writes them."""
    keys.set_partitions(1)
    directory = tmp_path / "records"
    records = Records(client)
    async with running(client, export_settings(directory), "dying") as first:
        await records.add(3)
        await wait_until(all_exported(client, records, directory))
        # what Redis gave "dying" in a reply it never received
        await records.add(4)
        lost = await RecordFeed(client, "dying").read([0], 2)
        assert len(lost[0]) == 2
        await wait_until(lambda: len(exported_ids(directory)) == records.count - 2)
        await wait_until(lambda: _pending_is(client, {"dying": 2}))  # the rest acknowledged
        await first.kill()
    checkpoint = read_checkpoint(directory, 0)
    assert checkpoint is not None and checkpoint.last_entry_id is not None
    assert all(entry_order(e) < entry_order(checkpoint.last_entry_id) for e, _ in lost[0])

    metrics = Metrics(process=False)
    async with running(client, export_settings(directory), "next", metrics):
        await wait_until(all_exported(client, records, directory))
    assert metric(metrics, "ocs_records_duplicates_dropped_total") == 0
    assert set(raw_entries(directory).values()) == {1}


class Measured(Metrics):
    """Metrics that count the exporter's backlog measurements (the first comes after
    its first read)."""

    measured = 0

    def export_backlog(self, entries: int, lag_seconds: float, over_cap: int, written: int) -> None:
        self.measured += 1
        super().export_backlog(entries, lag_seconds, over_cap, written)


async def test_stop_exports_what_was_written_since_the_last_poll(client, tmp_path):
    directory = tmp_path / "records"
    records, metrics = Records(client), Measured(process=False)
    settings = export_settings(directory, poll_interval=60.0, backlog_interval=60.0)
    async with running(client, settings, "e1", metrics) as run:
        await wait_until(lambda: metrics.measured > 0)  # polled once: nothing there
        await records.add(3)
        await run.stop()
    assert exported_ids(directory) == records.ids
    assert await in_streams(client) == 0


async def test_an_exporter_restarted_under_the_same_name_takes_its_leases_back_at_once(
    client, tmp_path
):
    """ocs serve starts the next exporter of a process under the same name after one
    failed: it need not wait for the leases the failed one left (a minute here)."""
    directory = tmp_path / "records"
    records = Records(client)
    settings = export_settings(directory, lease_ttl=60.0)
    async with running(client, settings, "host:42") as first:
        await wait_until(lambda: len(first.owned) == PARTITIONS)
        await first.kill()  # as a failure does: abandoned, leases left
    async with running(client, settings, "host:42") as second:
        await wait_until(lambda: len(second.owned) == PARTITIONS)
        await records.add(2)
        await wait_until(all_exported(client, records, directory))
    async with running(client, settings, "host:43") as other:  # another name waits
        await records.add(1)
        # released by the clean stop: taken long before the 60 s leases would expire
        await wait_until(lambda: len(other.owned) == PARTITIONS, timeout=10)
        await wait_until(all_exported(client, records, directory))


async def test_a_seal_failing_on_stop_abandons_the_other_writers(client, tmp_path):
    directory, moved = tmp_path / "records", tmp_path / "moved"
    records = Records(client)
    settings = export_settings(directory, segments=SegmentSettings(max_age=600))
    async with running(client, settings, "e1") as run:
        await records.add(2)
        await wait_until(lambda: len(temporary_segments(directory)) == PARTITIONS)
        directory.rename(moved)
        directory.write_text("not a directory\n")
        with pytest.raises(OSError):
            await run.stop()  # the first seal fails
    assert run.owned == []
    assert not any(writer_is_running(moved, p) for p in range(PARTITIONS))
    assert await in_streams(client) == 8


async def test_idle_partitions_are_read_less_often_and_still_exported(client, tmp_path):
    """An idle partition costs Redis one XREADGROUP per up to IDLE_POLL_FACTOR poll
    intervals, not one per interval; a record that arrives is still exported."""

    async def reads() -> int:
        stats = await client.info("commandstats")
        return int(stats.get("cmdstat_xreadgroup", {}).get("calls", 0))

    poll = 0.05
    async with running(client, export_settings(tmp_path, poll_interval=poll), "idle:1") as run:
        await wait_until(lambda: len(run.owned) == PARTITIONS)
        before, started = await reads(), time.monotonic()
        await asyncio.sleep(2.0)
        idle_reads, idle_seconds = await reads() - before, time.monotonic() - started
        # at one read per interval it would be idle_seconds / poll per partition (40)
        assert idle_reads < PARTITIONS * idle_seconds / poll / 3
        records = Records(client)
        await records.add(1)
        await wait_until(lambda: sorted(exported_ids(tmp_path)) == records.ids)


async def test_entries_stranded_with_another_consumer_are_swept_up(client, tmp_path):
    """Entries a read delivered to a consumer that is not the owner (an exporter whose
    XREADGROUP Redis ran after its lease had passed on, and that then died) are claimed
    by the owner once idle long enough, without waiting for a change of owner."""
    directory = tmp_path / "records"
    settings = export_settings(directory, poll_interval=5.0)  # the owner reads rarely
    records = Records(client)
    async with running(client, settings, "owner:1") as owner:
        await wait_until(lambda: len(owner.owned) == PARTITIONS)
        await records.add(3)
        late = RecordFeed(client, "late:2")  # reads before the owner's next poll
        taken = await late.read(range(PARTITIONS), 100)
        # the owner's first poll after taking its leases may have read some first
        # (then those are exported the ordinary way); the rest are stranded with late
        stranded = sum(map(len, taken.values()))
        assert 0 < stranded <= 3 * PARTITIONS
        assert (await pending(client))["late:2"] == stranded
        await wait_until(all_exported(client, records, directory))
        assert (await pending(client))["late:2"] == 0


async def test_a_full_redis_does_not_stop_the_export_that_frees_it(client, tmp_path, caplog):
    """At maxmemory (noeviction) Redis refuses the heartbeat, new leases and XGROUP
    CREATE ... MKSTREAM; the exporter keeps reading, writing and acknowledging what it
    owns (those still work), which is what frees the memory."""
    directory = tmp_path / "records"
    records = Records(client)
    async with running(client, export_settings(directory), "full:1") as run:
        await wait_until(lambda: len(run.owned) == PARTITIONS)
        await records.add(5)
        await client.config_set("maxmemory", "1")
        try:
            with caplog.at_level(logging.WARNING, logger="ocs.records.exporter"):
                await wait_until(lambda: "export_redis_full" in caplog.text)
            assert not run.task.done() and len(run.owned) == PARTITIONS
            await wait_until(all_exported(client, records, directory))
        finally:
            await client.config_set("maxmemory", "0")
