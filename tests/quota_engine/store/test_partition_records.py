"""An account's records in its partition's stream, shared with other accounts:
read_records and count_records keep that account's entries, in order, over pages."""

from __future__ import annotations

import msgpack
import pytest

from quota_engine.store import keys, records
from quota_engine.store.records import count_records, partition_streams, read_records


def same_partition_as(account_id: str) -> str:
    partition = keys.partition_of(account_id)
    return next(f"b{n}" for n in range(100_000) if keys.partition_of(f"b{n}") == partition)


@pytest.mark.parametrize("page", [1000, 3])
async def test_an_accounts_records_are_filtered_from_the_shared_stream(r, monkeypatch, page):
    monkeypatch.setattr(records, "_PAGE", page)
    other = same_partition_as("a1")
    assert keys.records("a1") == keys.records(other)
    for n in range(10):
        for account_id in ("a1", other, other):
            blob = msgpack.packb({"id": f"{account_id};{n}", "account": account_id})
            await r.xadd(keys.records(account_id), {"r": blob})
    assert await r.xlen(keys.records("a1")) == 30

    mine = await read_records(r, "a1", count=None)
    assert [rec["id"] for rec in mine] == [f"a1;{n}" for n in range(10)]
    assert await count_records(r, "a1") == 10
    assert await count_records(r, other) == 20
    assert [rec["id"] for rec in await read_records(r, "a1", count=4)] == [
        f"a1;{n}" for n in range(4)
    ]
    after = await read_records(r, "a1", start=f"({mine[6]['stream_id']}")
    assert [rec["id"] for rec in after] == ["a1;7", "a1;8", "a1;9"]
    assert await read_records(r, "a1", count=0) == []
    assert await read_records(r, "nobody") == []


def test_the_feed_is_one_stream_per_partition():
    streams = partition_streams()
    assert len(streams) == keys.DEFAULT_PARTITIONS == len({key for _, key in streams})
    assert streams[42] == (42, "ocs:records:{p:42}")
    assert (keys.partition_of("a1"), keys.records("a1")) in streams
