"""The Redis side of the record export (quota_engine/store/record_feed.py) on a real
redis-server, 7 and 6.2: consumer groups, read / claim / acknowledge, backlog, the
partition leases and the exporters' heartbeats.

Entries are XADDed as the charging scripts add them: field ``r``, a msgpack record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from quota_engine.store import keys, record_feed
from quota_engine.store.record_feed import GROUP, RecordFeed, entry_order
from tests.ocs.records.record_factory import record_bytes

PARTITIONS = 4


@pytest.fixture(autouse=True)
def few_partitions() -> Iterator[int]:
    keys.set_partitions(PARTITIONS)
    yield PARTITIONS
    keys.set_partitions(keys.DEFAULT_PARTITIONS)


async def add(client: aioredis.Redis, partition: int, numbers: range) -> list[str]:
    """XADD records ``numbers`` to the partition's stream; their entry ids."""
    pipe = client.pipeline(transaction=False)
    for i in numbers:
        pipe.xadd(keys.partition_records(partition), {"r": record_bytes(i)})
    return [entry_id.decode() for entry_id in await pipe.execute()]


async def pending(client: aioredis.Redis, partition: int) -> dict[str, int]:
    """Consumer -> entries pending for it in the partition's export group."""
    summary = await client.xpending(keys.partition_records(partition), GROUP)
    return {c["name"].decode(): int(c["pending"]) for c in summary["consumers"]}


async def consumers(client: aioredis.Redis, partition: int) -> set[str]:
    infos = await client.xinfo_consumers(keys.partition_records(partition), GROUP)
    return {info["name"].decode() for info in infos}


def test_entry_order_compares_ids_numerically():
    assert entry_order("1700000000000-5") == (1700000000000, 5)
    assert entry_order("99") == (99, 0)
    assert entry_order("9-10") > entry_order("9-9")
    assert entry_order("10-0") > entry_order("9-99")  # not string order


async def test_ensure_groups_creates_stream_and_group_and_is_idempotent(any_r):
    feed = RecordFeed(any_r, "e1")
    await add(any_r, 1, range(3))  # a stream that exists already: read from its first entry
    await feed.ensure_groups([0, 1])
    await feed.ensure_groups([0, 1, 2])
    for partition in (0, 1, 2):
        groups = await any_r.xinfo_groups(keys.partition_records(partition))
        assert [g["name"].decode() for g in groups] == [GROUP]
    assert not await any_r.exists(keys.partition_records(3))
    assert [len(v) for v in (await feed.read([1], 10)).values()] == [3]


async def test_read_gives_new_entries_once_and_leaves_them_pending(any_r):
    feed = RecordFeed(any_r, "e1")
    await feed.ensure_groups(list(range(PARTITIONS)))
    ids0 = await add(any_r, 0, range(5))
    ids2 = await add(any_r, 2, range(5, 7))

    first = await feed.read([0, 1, 2], 3)
    assert first == {
        0: [(ids0[n], record_bytes(n)) for n in range(3)],
        2: [(ids2[0], record_bytes(5)), (ids2[1], record_bytes(6))],
    }  # partition 1 is empty: not in the answer
    assert await feed.read([0, 1, 2], 3) == {
        0: [(ids0[3], record_bytes(3)), (ids0[4], record_bytes(4))]
    }
    assert await feed.read([0, 1, 2], 3) == {}
    # delivered, not acknowledged: pending for this consumer, still in the stream
    assert await pending(any_r, 0) == {"e1": 5}
    assert await any_r.xlen(keys.partition_records(0)) == 5
    # another consumer of the group is given nothing already delivered
    assert await RecordFeed(any_r, "e2").read([0, 2], 10) == {}


async def test_read_of_a_lost_group_recreates_it(any_r):
    feed = RecordFeed(any_r, "e1")
    await feed.ensure_groups([0, 1])
    await add(any_r, 0, range(2))
    await any_r.delete(keys.partition_records(0))  # Redis lost the stream and its group
    assert await feed.read([0, 1], 10) == {}  # NOGROUP, not an error
    ids = await add(any_r, 0, range(2, 4))
    assert await feed.read([0, 1], 10) == {
        0: [(ids[0], record_bytes(2)), (ids[1], record_bytes(3))]
    }


async def test_claim_takes_every_pending_entry_of_the_partition_in_id_order(any_r, monkeypatch):
    monkeypatch.setattr(record_feed, "_CLAIM_PAGE", 3)  # several XAUTOCLAIM pages
    await RecordFeed(any_r, "x").ensure_groups([0, 1])
    ids = await add(any_r, 0, range(8))
    await add(any_r, 1, range(8, 10))
    dead, other = RecordFeed(any_r, "dead"), RecordFeed(any_r, "other")
    await dead.read([0, 1], 5)
    await other.read([0, 1], 5)  # the rest of partition 0
    assert await pending(any_r, 0) == {"dead": 5, "other": 3}

    claimed = await RecordFeed(any_r, "next").claim(0)
    assert claimed == [(ids[n], record_bytes(n)) for n in range(8)]
    assert await pending(any_r, 0) == {"next": 8}
    assert await pending(any_r, 1) == {"dead": 2}  # another partition: untouched
    assert await RecordFeed(any_r, "again").claim(2) == []  # no group yet: created
    assert await any_r.xinfo_groups(keys.partition_records(2))


async def test_claim_skips_entries_deleted_while_pending(any_r):
    feed = RecordFeed(any_r, "dead")
    await feed.ensure_groups([0])
    ids = await add(any_r, 0, range(4))
    await feed.read([0], 10)
    await any_r.xdel(keys.partition_records(0), ids[1])
    claimed = await RecordFeed(any_r, "next").claim(0)
    assert [entry_id for entry_id, _ in claimed] == [ids[0], ids[2], ids[3]]


async def test_acknowledge_acks_and_deletes_only_the_given_entries(any_r):
    feed = RecordFeed(any_r, "e1")
    await feed.ensure_groups([0, 1])
    ids0 = await add(any_r, 0, range(6))
    ids1 = await add(any_r, 1, range(6, 9))
    await feed.read([0, 1], 10)

    deleted = await feed.acknowledge({0: ids0[:4], 1: ids1, 2: []})
    assert deleted == 7
    assert await any_r.xlen(keys.partition_records(0)) == 2
    assert await any_r.xlen(keys.partition_records(1)) == 0
    assert await pending(any_r, 0) == {"e1": 2}
    assert await pending(any_r, 1) == {}
    assert [e[0] for e in await RecordFeed(any_r, "e2").claim(0)] == ids0[4:]
    # again (an acknowledgement retried): nothing left to delete, no error
    assert await feed.acknowledge({0: ids0[:4], 1: ids1}) == 0
    assert await feed.acknowledge({}) == 0


async def test_acknowledge_of_many_ids_in_one_call(any_r):
    feed = RecordFeed(any_r, "e1")
    await feed.ensure_groups([0])
    ids = await add(any_r, 0, range(2500))  # more than one unpack() slice in the script
    await feed.read([0], 3000)
    assert await feed.acknowledge({0: ids}) == 2500
    assert await any_r.xlen(keys.partition_records(0)) == 0
    assert await pending(any_r, 0) == {}


async def test_backlog_counts_what_the_streams_hold(any_r):
    feed = RecordFeed(any_r, "e1")
    ids = await add(any_r, 1, range(5))
    await feed.ensure_groups([0, 1])
    await feed.read([1], 2)
    await feed.acknowledge({1: ids[:2]})
    empty, one, missing = await feed.backlog([0, 1, 3])
    assert (empty.partition, empty.entries, empty.oldest_ms) == (0, 0, None)
    assert (one.partition, one.entries) == (1, 3)
    assert one.oldest_ms == entry_order(ids[2])[0]  # the oldest entry left
    assert (missing.partition, missing.entries, missing.oldest_ms, missing.added) == (
        3,
        0,
        None,
        None,
    )
    info = await any_r.info("server")
    if int(str(info["redis_version"]).split(".")[0]) >= 7:
        assert (empty.added, one.added) == (0, 5)
    else:
        assert (empty.added, one.added) == (None, None)


async def test_a_lease_is_taken_once_renewed_and_released_only_by_its_owner(any_r):
    a, b = RecordFeed(any_r, "a"), RecordFeed(any_r, "b")
    assert await a.acquire([0, 1], 10_000) == [0, 1]
    assert await b.acquire([0, 1, 2], 10_000) == [2]  # NX: a's stay a's
    assert await a.owners([0, 1, 2, 3]) == {0: "a", 1: "a", 2: "b", 3: None}

    assert await a.renew([0, 1, 2], 60_000) == [2]  # not a's: reported lost, left alone
    assert await any_r.pttl(keys.export_lease(0)) > 10_000
    assert 0 < await any_r.pttl(keys.export_lease(2)) <= 10_000
    await b.release([0, 2])  # 0 is a's: stays
    assert await a.owners([0, 1, 2]) == {0: "a", 1: "a", 2: None}
    await a.release([0, 1])
    assert await a.owners([0, 1]) == {0: None, 1: None}
    assert await a.renew([0], 10_000) == [0]


async def test_a_lease_expires(any_r):
    a, b = RecordFeed(any_r, "a"), RecordFeed(any_r, "b")
    assert await a.acquire([0], 1) == [0]  # 1 ms
    while await any_r.exists(keys.export_lease(0)):
        await asyncio.sleep(0.002)
    assert await a.owners([0]) == {0: None}
    assert await a.renew([0], 10_000) == [0]
    assert await b.acquire([0], 10_000) == [0]


async def test_heartbeats_list_the_live_exporters(any_r):
    a, b, c = RecordFeed(any_r, "a"), RecordFeed(any_r, "b"), RecordFeed(any_r, "c")
    now = 1_800_000_000_000
    assert await b.heartbeat(now, 1000) == ["b"]
    assert await a.heartbeat(now + 10, 1000) == ["a", "b"]
    assert await c.heartbeat(now + 500, 600) == ["a", "b", "c"]
    # a (until now+1010) and b (until now+1000) stopped heartbeating; c renews
    assert await c.heartbeat(now + 1005, 600) == ["a", "c"]
    assert await c.heartbeat(now + 1010, 600) == ["c"]
    await c.leave()
    assert await a.heartbeat(now + 1020, 1000) == ["a"]


async def test_forget_idle_consumers_keeps_those_live_or_with_pending_entries(any_r):
    feed = RecordFeed(any_r, "me")
    await feed.ensure_groups([0])
    await add(any_r, 0, range(4))
    await RecordFeed(any_r, "gone-busy").read([0], 1)
    for name in ("gone-idle", "live", "me"):  # each given one entry, then acknowledges it
        other = RecordFeed(any_r, name)
        [(entry_id, _)] = (await other.read([0], 1))[0]
        assert await other.acknowledge({0: [entry_id]}) == 1
    await any_r.execute_command(
        "XGROUP", "CREATECONSUMER", keys.partition_records(0), GROUP, "gone-never"
    )
    assert await consumers(any_r, 0) == {"gone-busy", "gone-idle", "live", "me", "gone-never"}
    await feed.forget_idle_consumers(0, ["live"])
    assert await consumers(any_r, 0) == {"gone-busy", "live", "me"}
    await feed.forget_idle_consumers(3, ["live"])  # no stream: nothing to do, no error


async def test_claim_after_an_id_takes_only_the_later_entries(any_r):
    await RecordFeed(any_r, "x").ensure_groups([0])
    ids = await add(any_r, 0, range(6))
    await RecordFeed(any_r, "e1").read([0], 6)
    claimed = await RecordFeed(any_r, "e2").claim(0, after=ids[3])
    assert claimed == [(ids[4], record_bytes(4)), (ids[5], record_bytes(5))]
    assert await pending(any_r, 0) == {"e1": 4, "e2": 2}
    assert await RecordFeed(any_r, "e2").claim(0, after=ids[5]) == []
