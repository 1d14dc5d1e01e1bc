"""GET /v1/accounts/{id}/usage once the exporter is on: the records in the segment files
of the node's records.directory and those still in Redis, each once, in stream-id order.

Records are written by the real engine (SMS direct debits, one record each) and
exported by the real Redis side of the export (RecordFeed: XREADGROUP, then
ack_records.lua, XACK + XDEL) into real segment files (SegmentWriter), as the
exporter does it; only the loop around them is the test's (one test runs the real
Exporter loop, one exports at the worst moment of a read).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgpack
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ocs.api.app import create_app
from ocs.metrics import Metrics
from ocs.records import SegmentSettings, SegmentWriter
from ocs.records.account_records import read_account_records
from ocs.records.exporter import NO_EXPORT_OBSERVER, Exporter, ExportSettings
from ocs.records.segment_format import (
    encode_entry,
    encode_header,
    encode_trailer,
    read_segment,
    segment_name,
)
from quota_engine.model import ChargingRequest, EventAction, Outcome, RequestType, ServiceUsage
from quota_engine.store import keys
from quota_engine.store.record_feed import RecordFeed
from quota_engine.store.records import partition_of_account, read_records
from tests.ocs.api.conftest import EUR, MSISDN, PREPAID, SETTINGS, Http, healthy

BIG = SegmentSettings(max_bytes=1 << 30, max_age=3600)
ALICE = "alice"
ALICE_P = partition_of_account(ALICE)
NEIGHBOUR = next(f"bob-{n}" for n in range(100_000) if partition_of_account(f"bob-{n}") == ALICE_P)
"""An account in alice's partition: its records share her stream and her segments."""
NEIGHBOUR_MSISDN = "msisdn:491700000002"


@pytest.fixture
def records_dir(tmp_path: Path) -> Path:
    return tmp_path / "records"


@asynccontextmanager
async def api(redis_client, engine, records_dir: Path, *accounts: dict[str, Any]):
    """The API with records.directory set to ``records_dir``, ``accounts`` created."""
    settings = dataclasses.replace(SETTINGS, records_directory=str(records_dir))
    app = create_app(settings, Metrics(), healthy, store=redis_client, sessions=engine)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    http = Http(client)
    try:
        for account in accounts:
            body = {**account, "buckets": [{"id": "main", "amount": 100 * EUR}]}
            reply = await http.post("/v1/accounts", body)
            assert reply.status == 201, reply.body
        yield http
    finally:
        await client.close()


@pytest.fixture
async def usage_http(redis_client, engine, catalog_active, records_dir) -> AsyncIterator[Http]:
    """The API with records.directory set, alice and her neighbour created."""
    neighbour = {**PREPAID, "id": NEIGHBOUR, "subscriptions": [NEIGHBOUR_MSISDN]}
    async with api(redis_client, engine, records_dir, PREPAID, neighbour) as http:
        yield http


def sms(session: str, identity: str = MSISDN) -> ChargingRequest:
    return ChargingRequest(
        session_id=session,
        request_type=RequestType.EVENT,
        request_number=0,
        identities=[identity],
        service_context="32274@3gpp.org",
        services=[ServiceUsage(rating_group=200, requested=1)],
        timestamp=1741338000,
        destination="4915112345678",
        action=EventAction.DIRECT_DEBITING,
    )


async def send_sms(engine, count: int, tag: str, identity: str = MSISDN) -> None:
    results = await engine.charge([sms(f"{tag}-{i}", identity) for i in range(count)])
    assert [r.outcome for r in results] == [Outcome.OK] * count


async def usage(http: Http, **params: Any) -> tuple[list[dict[str, Any]], int]:
    reply = await http.get(f"/v1/accounts/{ALICE}/usage", params=params)
    assert reply.status == 200, reply.body
    return reply.body, int(reply.headers["X-Total-Count"])


class Export:
    """The exporter's steps for alice's partition, one at a time."""

    def __init__(self, redis_client, directory: Path) -> None:
        self.feed = RecordFeed(redis_client, "test-exporter")
        self.directory = directory

    async def write(self, count: int, *, acknowledge: int | None = None) -> list[str]:
        """Read ``count`` new entries, write them to one sealed segment, then
        acknowledge (and delete) the first ``acknowledge`` of them (all by default):
        the rest are durable in the segment and still in Redis, as after a crash
        between fsync and acknowledgement."""
        await self.feed.ensure_groups([ALICE_P])
        entries = (await self.feed.read([ALICE_P], count)).get(ALICE_P, [])
        assert len(entries) == count
        with SegmentWriter(self.directory, ALICE_P, BIG) as writer:
            for entry_id, record in entries:
                writer.append(entry_id, record)
        ids = [entry_id for entry_id, _ in entries]
        done = ids if acknowledge is None else ids[:acknowledge]
        assert await self.feed.acknowledge({ALICE_P: done}) == len(done)
        return ids


def segment(directory: Path, partition: int, sequence: int) -> Path:
    return directory / segment_name(partition, sequence)


async def test_records_only_in_redis(usage_http, engine, records_dir):
    await send_sms(engine, 3, "r")
    records, total = await usage(usage_http)
    assert [r["session"] for r in records] == ["r-0", "r-1", "r-2"] and total == 3
    assert all(r["account"] == ALICE and r["stream_id"] for r in records)
    assert not records_dir.exists()


async def test_records_only_in_segments(usage_http, redis_client, engine, records_dir):
    await send_sms(engine, 5, "s")
    before, _ = await usage(usage_http)
    export = Export(redis_client, records_dir)
    await export.write(3)
    await export.write(2)
    assert await read_records(redis_client, ALICE, count=None) == []  # all left Redis
    assert len(list(records_dir.glob("*.seg"))) == 2
    records, total = await usage(usage_http)
    assert records == before and total == 5  # same records, same stream ids, same order


async def test_records_split_across_segments_and_redis_each_once(
    usage_http, redis_client, engine, records_dir
):
    await send_sms(engine, 8, "x")
    before, _ = await usage(usage_http)
    export = Export(redis_client, records_dir)
    await export.write(3)  # 0-2: only in the segment
    ids = await export.write(3, acknowledge=1)  # 3: segment only; 4-5: in both
    live = await read_records(redis_client, ALICE, count=None)
    assert [r["stream_id"] for r in live] == [
        *ids[1:],
        before[6]["stream_id"],
        before[7]["stream_id"],
    ]
    records, total = await usage(usage_http)
    assert records == before and total == 8
    assert len({r["id"] for r in records}) == 8


async def test_after_offset_and_total_across_the_boundary(
    usage_http, redis_client, engine, records_dir
):
    await send_sms(engine, 7, "a")
    before, _ = await usage(usage_http)
    export = Export(redis_client, records_dir)
    await export.write(4, acknowledge=2)  # 0-1 segment only, 2-3 both, 4-6 Redis only
    for n in range(7):
        records, total = await usage(usage_http, after=before[n]["stream_id"])
        assert (records, total) == (before[n + 1 :], 7)
    records, total = await usage(usage_http, after=before[1]["stream_id"], offset=1, limit=3)
    assert (records, total) == (before[3:6], 7)
    records, total = await usage(usage_http, offset=1, limit=2)
    assert (records, total) == (before[1:3], 7)
    walked: list[dict[str, Any]] = []
    page, _ = await usage(usage_http, limit=2)
    while page:  # the money check's walk: after= the last stream id of each page
        walked += page
        page, _ = await usage(usage_http, limit=2, after=page[-1]["stream_id"])
    assert walked == before


async def test_records_of_other_accounts_and_partitions_never_shown(
    usage_http, redis_client, engine, records_dir
):
    await send_sms(engine, 2, "mine")
    await send_sms(engine, 2, "theirs", NEIGHBOUR_MSISDN)  # same partition, other account
    mine, _ = await usage(usage_http)
    assert [r["session"] for r in mine] == ["mine-0", "mine-1"]
    await Export(redis_client, records_dir).write(4)
    # a segment of another partition holding a record that names alice (the directory
    # of another partition count, say): never read for her
    other = (ALICE_P + 1) % keys.partitions()
    stray = {"id": "stray;0;200", "account": ALICE, "session": "stray", "charged": 1}
    path = segment(records_dir, other, 1)
    path.write_bytes(
        encode_header(other, 1, 0)
        + encode_entry("1-0", msgpack.packb(stray))
        + encode_trailer(1, "1-0")
    )
    records, total = await usage(usage_http)
    assert (records, total) == (mine, 2)
    neighbour = await usage_http.get(f"/v1/accounts/{NEIGHBOUR}/usage")
    assert [r["session"] for r in neighbour.body] == ["theirs-0", "theirs-1"]


async def test_a_damaged_segment_does_not_fail_the_request(
    usage_http, redis_client, engine, records_dir, caplog
):
    await send_sms(engine, 6, "d")
    before, _ = await usage(usage_http)
    export = Export(redis_client, records_dir)
    await export.write(3)
    await export.write(3)
    torn = segment(records_dir, ALICE_P, 2)
    last = read_segment(torn).entries[-1]
    torn.write_bytes(torn.read_bytes()[: last.offset + 5])  # cut inside the last entry
    garbage = segment(records_dir, ALICE_P, 9)
    garbage.write_bytes(b"not a segment at all")
    with caplog.at_level(logging.WARNING, logger="ocs.records.account_records"):
        records, total = await usage(usage_http)
    # the last record was acknowledged (gone from Redis) and its entry is torn: lost
    assert (records, total) == (before[:5], 5)
    problems = [
        r.ocs_event[1]["problem"]
        for r in caplog.records
        if getattr(r, "ocs_event", (None,))[0] == "records_segment_warning"
    ]
    assert len(problems) == 2
    assert str(torn) in problems[0] and "torn tail" in problems[0]
    assert str(garbage) in problems[1] and "bad magic" in problems[1]


@pytest.fixture
def few_partitions() -> Iterator[int]:
    """4 partitions (one exporter owns them all), as the exporter's tests run it."""
    keys.set_partitions(4)
    yield 4
    keys.set_partitions(keys.DEFAULT_PARTITIONS)


async def test_usage_is_the_same_before_during_and_after_the_real_exporter_runs(
    few_partitions, redis_client, engine, catalog_active, records_dir
):
    async with api(redis_client, engine, records_dir, PREPAID) as http:
        await send_sms(engine, 12, "e")
        before, _ = await usage(http)
        assert len(before) == 12
        settings = ExportSettings(
            directory=records_dir,
            segments=SegmentSettings(max_bytes=1 << 20, max_age=0.05),
            batch=3,
            poll_interval=0.02,
            lease_ttl=0.6,
            backlog_interval=0.05,
        )
        stop = asyncio.Event()
        exporter = Exporter(RecordFeed(redis_client, "usage-test"), settings, NO_EXPORT_OBSERVER)
        task = asyncio.create_task(exporter.run(stop))
        try:
            deadline = time.monotonic() + 20  # a failure, not a measurement
            while await read_records(redis_client, ALICE, count=None):
                assert time.monotonic() < deadline, "the exporter did not empty the stream"
                assert await usage(http) == (before, 12)  # whatever the export's stage
        finally:
            stop.set()
            await task
        assert list(records_dir.glob("*.seg"))
        assert await usage(http) == (before, 12)


class ExportsRightAfterTheStreamRead:
    """The real Redis client, and the exporter moving every record of alice's stream to
    a segment (then deleting them) right after the stream was read: the worst moment
    for a reader of both."""

    def __init__(self, client, export: Export, count: int) -> None:
        self.client, self.export, self.count = client, export, count

    async def xrange(self, *args: Any, **kwargs: Any) -> Any:
        reply = await self.client.xrange(*args, **kwargs)
        if self.count:
            await self.export.write(self.count)
            self.count = 0
        return reply


async def test_records_leaving_redis_during_a_read_are_found_in_the_segments(
    usage_http, redis_client, engine, records_dir
):
    await send_sms(engine, 4, "m")
    before, _ = await usage(usage_http)
    racing = ExportsRightAfterTheStreamRead(redis_client, Export(redis_client, records_dir), 4)
    found = await read_account_records(racing, records_dir, ALICE)
    assert await read_records(redis_client, ALICE, count=None) == []  # the export happened
    assert (found.records, found.exported) == (before, 4)
