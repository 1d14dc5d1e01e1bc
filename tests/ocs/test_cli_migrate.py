"""`ocs migrate` and the schema check of every command that opens Redis, against a real
Redis, in-process via ocs.cli.main."""

from __future__ import annotations

from collections.abc import Iterator

import msgpack
import pytest
import redis

from ocs.cli import main
from ocs.config import Settings
from ocs.redis_store import StoreUnavailable, open_store
from quota_engine.accounts.model import Bucket
from quota_engine.store import keys


@pytest.fixture(autouse=True)
def _default_partitions() -> Iterator[None]:
    """A test that migrates or starts with another count leaves the process's as it was."""
    yield
    keys.set_partitions(keys.DEFAULT_PARTITIONS)


@pytest.fixture
def sync_redis(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), env={})
    out, err = capsys.readouterr()
    return code, out, err


def write_schema1_account(client: redis.Redis) -> None:
    """An account as the code before partitions wrote it: its own hash tag {alice}."""
    client.hset(
        "ocs:acct:{alice}",
        mapping={"kind": "prepaid", "status": "active", "currency": "EUR", "credit_limit": "0",
                 "plan": "prepaid-basic", "bill_cycle_day": "1", "created": "1741300000"},
    )  # fmt: skip
    client.hset(
        "ocs:acct:{alice}:buckets", "main", Bucket(id="main", kind="money", amount=7_000_000).pack()
    )
    client.sadd("ocs:acct:{alice}:subs", "msisdn:491701234567")
    client.set("ocs:sub:msisdn:491701234567", "alice")
    client.sadd("ocs:accounts", "alice")
    record = msgpack.packb({"id": "s1;1;10", "account": "alice", "charged": 3_000_000})
    client.xadd("ocs:acct:{alice}:records", {"r": record})


def test_commands_refuse_schema1_data_until_migrated(capsys, redis_url, sync_redis):
    write_schema1_account(sync_redis)
    code, _, err = run(capsys, "account", "show", "alice", "--redis-url", redis_url)
    assert code == 2 and "run `ocs migrate`" in err

    code, out, err = run(capsys, "migrate", "--redis-url", redis_url)
    assert (code, err) == (0, "")  # the hash, buckets and subs; the stream copied
    assert "1 accounts in key schema 2, 1024 partitions: 3 keys moved, 1 records copied" in out
    assert sync_redis.keys("ocs:acct:{alice}*") == []
    [(_, fields)] = sync_redis.xrange(keys.records("alice"))
    assert msgpack.unpackb(fields[b"r"])["account"] == "alice"

    code, out, err = run(capsys, "account", "show", "alice", "--redis-url", redis_url, "--json")
    assert code == 0, err
    assert '"amount": 7000000' in out

    code, out, _ = run(capsys, "migrate", "--redis-url", redis_url)
    assert code == 0 and "0 keys moved, 0 records copied" in out


def test_another_partition_count_is_refused(capsys, redis_url, sync_redis):
    code, _, _ = run(capsys, "migrate", "--redis-url", redis_url, "--redis-partitions", "64")
    assert code == 0
    assert sync_redis.hgetall("ocs:meta") == {b"schema": b"2", b"partitions": b"64"}
    code, _, err = run(capsys, "migrate", "--redis-url", redis_url)
    assert code == 2 and "64 partitions" in err


async def test_a_node_refuses_another_partition_count_than_the_datas(redis_url):
    async with open_store(Settings(redis_url=redis_url, redis_partitions=16)):
        pass  # an empty Redis: 16 is recorded
    try:
        with pytest.raises(
            StoreUnavailable, match="uses 16 partitions and redis.partitions is 1024"
        ):
            async with open_store(Settings(redis_url=redis_url)):
                pass
    finally:
        keys.set_partitions(1024)
