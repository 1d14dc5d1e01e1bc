"""Export benchmark: how many rated records per second one exporter process takes out of
Redis into durable segment files (``ocs.records.exporter.Exporter`` against the
session's private redis-server on 127.0.0.1).

Each round pre-fills the ``redis.partitions`` (1024) partition streams with ``RECORDS``
records the size ``ccr.lua`` writes (a data record with its tariff, about 640 bytes of
msgpack; field ``r``, as the scripts XADD them), spread over the partitions, and one
exporter that already owns every partition (its leases taken, its segment writers
open: the state of a running exporter). The timed part is the exporter working off
that backlog: its rounds (XREADGROUP of every partition, the records appended to the
partitions' segments in its disk thread, XACK + XDEL) until every record is read, then
``close()``, which seals every open segment (fsync of the file, rename, fsync of the
directory, checkpoint) and acknowledges and deletes what it sealed. At the end every
stream is empty and every record is in a sealed segment (checked after the rounds).
Target (issue 10): at least 50,000 records/s for one exporter process.

Run with ``pytest tests/benchmarks/test_export_bench.py --benchmark-only
--benchmark-enable`` (``EXPORT_BENCH_RECORDS`` changes the number of records).
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from ocs.records import SegmentSettings, iter_records
from ocs.records.exporter import Exporter, ExportSettings
from quota_engine.store import keys
from quota_engine.store.record_feed import RecordFeed
from tests.benchmarks.sample_records import sample_record

RECORDS = int(os.environ.get("EXPORT_BENCH_RECORDS", "200000"))


class Observer:
    """An export observer that counts the records acknowledged and the segments sealed."""

    def __init__(self) -> None:
        self.count = 0
        self.segments = 0

    def exported(self, records: int) -> None:
        self.count += records

    def duplicates(self, records: int) -> None:
        pass

    def segment_sealed(self, segment) -> None:
        self.segments += 1

    def export_backlog(self, entries, lag_seconds, over_cap, written) -> None:
        pass

    def owned_partitions(self, partitions: int) -> None:
        pass


_RECORDS: list[bytes] = []


def all_records() -> list[bytes]:
    """The ``RECORDS`` records (distinct ids), made once."""
    if len(_RECORDS) < RECORDS:
        _RECORDS[:] = [sample_record(i) for i in range(RECORDS)]
    return _RECORDS


async def _fill(client: aioredis.Redis, records: int, partitions: int) -> None:
    """XADD ``records`` records, record i to partition i % partitions, in pipelines."""
    chunk = 10_000
    data = all_records()
    for start in range(0, records, chunk):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(records, start + chunk)):
            pipe.execute_command("XADD", keys.partition_records(i % partitions), "*", "r", data[i])
        await pipe.execute()


async def _backlog(client: aioredis.Redis, partitions: int) -> int:
    pipe = client.pipeline(transaction=False)
    for partition in range(partitions):
        pipe.execute_command("XLEN", keys.partition_records(partition))
    return sum(int(n) for n in await pipe.execute())


async def _drain(exporter: Exporter) -> None:
    """The exporter's rounds until no partition has more to give (each waits for its
    next poll: every record read and written), then ``close()``: seal, ack, delete."""
    while await exporter.step() == 0:
        pass
    await exporter.close()


@pytest.mark.benchmark(group="export")
def test_export_throughput(benchmark, loop, redis_url, tmp_path):
    partitions = keys.partitions()
    client = aioredis.Redis.from_url(redis_url)
    rounds = itertools.count()
    state: dict[str, object] = {}

    def setup():
        directory = tmp_path / f"round-{next(rounds)}"
        for old in tmp_path.glob("round-*"):
            shutil.rmtree(old, ignore_errors=True)
        loop.run_until_complete(client.flushall())
        loop.run_until_complete(_fill(client, RECORDS, partitions))
        observer = Observer()
        settings = ExportSettings(
            directory=directory,
            segments=SegmentSettings(),
            poll_interval=1.0,
            backlog_interval=3600.0,
        )
        exporter = Exporter(RecordFeed(client, "bench:1"), settings, observer)
        loop.run_until_complete(exporter.share())  # owns every partition, writers open
        assert len(exporter.owned) == partitions
        state.update(exporter=exporter, observer=observer, directory=directory)
        return (exporter, observer), {}

    def export_round(exporter: Exporter, observer: Observer) -> None:
        loop.run_until_complete(_drain(exporter))

    benchmark.pedantic(export_round, setup=setup, rounds=3, warmup_rounds=0)
    observer = state["observer"]
    assert isinstance(observer, Observer) and observer.count == RECORDS
    assert loop.run_until_complete(_backlog(client, partitions)) == 0
    directory = state["directory"]
    assert isinstance(directory, Path)
    assert sum(1 for _ in iter_records(directory)) == RECORDS
    benchmark.extra_info["records_per_round"] = RECORDS
    benchmark.extra_info["partitions"] = partitions
    benchmark.extra_info["segments_per_round"] = observer.segments
    benchmark.extra_info["bytes_per_record"] = sum(map(len, all_records())) // RECORDS
    benchmark.extra_info["records_per_second"] = round(RECORDS / benchmark.stats["median"])
    loop.run_until_complete(client.flushall())
    loop.run_until_complete(client.aclose())
