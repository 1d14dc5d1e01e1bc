"""``ocs migrate`` (quota_engine/store/migration.py): data written in key schema 1 (each
account its own hash tag, as commit 4babdd0's keys.py named them) moves to the partition
schema, and charging, the sweeper and the stores see all of it; a crash anywhere in the
migration is repaired by running it again."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from quota_engine.accounts.balance_actions import BalanceActions
from quota_engine.charging.engine import ChargingEngine, EngineSettings
from quota_engine.model import Outcome
from quota_engine.store import keys
from quota_engine.store.accounts import AccountStore
from quota_engine.store.migration import migrate
from quota_engine.store.records import read_records
from quota_engine.store.schema import SchemaError, ensure_schema, read_schema
from tests.quota_engine.conftest import (
    EUR,
    INITIAL,
    MIB,
    NOW,
    TERMINATE,
    UPDATE,
    Clock,
    create_account,
    data_request,
)

DEADLINE_S2 = NOW + 1800 + 60  # opened at NOW: validity 1800, grace 60


@pytest.fixture(autouse=True)
def _default_partitions() -> Iterator[None]:
    """A test that migrates or starts with another count leaves the process's as it was."""
    yield
    keys.set_partitions(keys.DEFAULT_PARTITIONS)


def _schema1_tag(account_id: str) -> str:
    """``_tag`` of 4babdd0's quota_engine/keys.py."""
    return f"ocs:acct:{{{account_id}}}"


@contextlib.contextmanager
def schema1(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The store names keys as schema 1 did (4babdd0: ``ocs:acct:{A}...``, records in
    ``ocs:acct:{A}:records``), so the real scripts write data the way the old code did."""
    with monkeypatch.context() as patch:
        patch.setattr(keys, "_tag", _schema1_tag)
        patch.setattr(keys, "records", lambda account_id: f"{_schema1_tag(account_id)}:records")
        yield


def engine_on(r: Any, demo_pair: Any, clock: Clock) -> ChargingEngine:
    return ChargingEngine(r, lambda: demo_pair, EngineSettings(), clock=clock)


async def write_schema1_data(r: Any, demo_pair: Any, clock: Clock) -> dict[str, Any]:
    """Two accounts with a closed session (records), an open one (reservation, session,
    deadline, idempotency keys) and a top-up under a key (history, topup key)."""
    await create_account(r, "a1", balance=25 * EUR, identities=("msisdn:491700000001",))
    await create_account(r, "b2", balance=5 * EUR, identities=("msisdn:491700000002",))
    engine = engine_on(r, demo_pair, clock)
    clock.now = NOW
    for identity, prefix in (("msisdn:491700000001", "a"), ("msisdn:491700000002", "b")):
        await engine.charge([data_request(f"{prefix}0", INITIAL, 0, identity=identity)])
        await engine.charge(
            [data_request(f"{prefix}0", TERMINATE, 1, used=2 * MIB, requested=None,
                          identity=identity)]
        )  # fmt: skip
    await engine.charge([data_request("s1", INITIAL, 0)])
    [update] = await engine.charge([data_request("s1", UPDATE, 1, used=3 * MIB)])
    await engine.charge([data_request("s2", INITIAL, 0)])
    actions = BalanceActions(r, AccountStore(r))
    await actions.topup("a1", 4 * EUR, key="k1", reason="voucher")
    return {
        "records": {a: await read_records(r, a, count=None) for a in ("a1", "b2")},
        "history": await actions.history("a1"),
        "buckets": {a: await AccountStore(r).buckets(a) for a in ("a1", "b2")},
        "sessions": await engine.sessions_of("a1"),
        "update": update,
    }


def _without_stream_ids(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in rec.items() if k != "stream_id"} for rec in records]


SCHEMA1_KEYS = [
    "ocs:acct:{a1}", "ocs:acct:{a1}:buckets", "ocs:acct:{a1}:subs", "ocs:acct:{a1}:sessions",
    "ocs:acct:{a1}:sess:s1", "ocs:acct:{a1}:sess:s2", "ocs:acct:{a1}:idem:s1:1",
    "ocs:acct:{a1}:records", "ocs:acct:{a1}:history", "ocs:acct:{a1}:topup:k1",
    "ocs:acct:{b2}", "ocs:acct:{b2}:records",
]  # fmt: skip


async def test_migrated_data_is_seen_by_charging_the_sweeper_and_the_stores(
    r, demo_pair, monkeypatch
):
    clock = Clock()
    with schema1(monkeypatch):
        before = await write_schema1_data(r, demo_pair, clock)
    for key in SCHEMA1_KEYS:
        assert await r.exists(key), key
    assert await r.ttl("ocs:acct:{a1}:idem:s1:1") > 0
    with pytest.raises(SchemaError, match="ocs migrate"):
        await ensure_schema(r, 1024)

    report = await migrate(r, 1024)

    assert report.accounts == {"a1", "b2"} and report.left == []
    assert report.records_copied == len(before["records"]["a1"]) + len(before["records"]["b2"])
    assert [key async for key in r.scan_iter(match="ocs:acct:{a1}*")] == []
    assert [key async for key in r.scan_iter(match="ocs:acct:{b2}*")] == []
    assert await r.ttl(keys.idempotency("a1", "s1", 1)) > 0
    assert await read_schema(r) == ("2", 1024)
    await ensure_schema(r, 1024)
    store = AccountStore(r)
    for account_id in ("a1", "b2"):
        assert await store.buckets(account_id) == before["buckets"][account_id]
        got = await read_records(r, account_id, count=None)
        assert _without_stream_ids(got) == _without_stream_ids(before["records"][account_id])
        assert {rec["account"] for rec in got} == {account_id}
    assert await BalanceActions(r, store).history("a1") == before["history"]
    assert await store.resolve("msisdn:491700000001") == "a1"

    engine = engine_on(r, demo_pair, clock)
    assert await engine.sessions_of("a1") == before["sessions"]
    # a retransmission of the request answered before the migration: the stored answer
    clock.now = NOW + 10
    [again] = await engine.charge([data_request("s1", UPDATE, 1, used=3 * MIB)])
    assert again == before["update"]
    main_before = (await store.bucket("a1", "main")).amount
    # the open session goes on and ends
    [update] = await engine.charge([data_request("s1", UPDATE, 2, used=MIB)])
    assert update.outcome is Outcome.OK
    [end] = await engine.charge([data_request("s1", TERMINATE, 3, used=MIB, requested=None)])
    assert end.outcome is Outcome.OK
    records = await read_records(r, "a1", count=None)
    assert records[-1]["id"] == "s1;3;10"
    assert records[-1]["charged"] == 5 * EUR  # 3 + 1 + 1 MiB at 1 EUR per MiB
    # the 3 MiB of the update before the migration were committed then
    assert (await store.bucket("a1", "main")).amount == main_before - 2 * EUR
    # the deadline index still finds the other open session
    assert await engine.sweep(DEADLINE_S2) == 1
    assert (await read_records(r, "a1", count=1, start=f"({records[-1]['stream_id']}"))[0][
        "cause"
    ] == "expired"
    assert await engine.sessions_of("a1") == []
    assert (await store.bucket("a1", "main")).reserved == 0


async def _digest(r: Any) -> dict[str, Any]:
    """Every key with its type and value (streams: their entries' fields, in order;
    strings: their value and whether they expire)."""
    out: dict[str, Any] = {}
    async for raw in r.scan_iter(match="*"):
        key = raw.decode()
        kind = (await r.type(key)).decode()
        if kind == "string":
            value: Any = (await r.get(key), await r.pttl(key) > 0)
        elif kind == "hash":
            value = await r.hgetall(key)
        elif kind == "set":
            value = await r.smembers(key)
        elif kind == "zset":
            value = await r.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            value = await r.lrange(key, 0, -1)
        else:
            value = [fields for _, fields in await r.xrange(key)]
        out[key] = (kind, value)
    return out


class Crash(Exception):
    pass


class CrashingClient:
    """The real client, which "crashes" (raises) at its ``at``-th round trip to Redis."""

    def __init__(self, client: Any, at: int) -> None:
        self._client, self._left = client, at

    def _trip(self) -> None:
        self._left -= 1
        if self._left <= 0:
            raise Crash

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name == "pipeline":

            def pipeline(*args: Any, **kwargs: Any) -> Any:
                pipe = attr(*args, **kwargs)
                execute = pipe.execute

                async def crashing_execute(*a: Any, **k: Any) -> Any:
                    self._trip()
                    return await execute(*a, **k)

                pipe.execute = crashing_execute
                return pipe

            return pipeline

        async def call(*args: Any, **kwargs: Any) -> Any:
            self._trip()
            return await attr(*args, **kwargs)

        return call


async def test_a_crash_anywhere_is_repaired_by_running_again(r, demo_pair, monkeypatch):
    clock = Clock()
    with schema1(monkeypatch):
        await write_schema1_data(r, demo_pair, clock)
    snapshot = {}
    async for key in r.scan_iter(match="*"):
        snapshot[key] = (await r.dump(key), max(await r.pttl(key), 0))

    async def restore() -> None:
        await r.flushdb()
        for key, (dump, ttl) in snapshot.items():
            await r.restore(key, ttl, dump)

    await migrate(r, 1024, batch=2)
    expected = await _digest(r)
    assert any(key.startswith("ocs:records:") for key in expected)
    crashes = 0
    for at in range(1, 1000):
        await restore()
        try:
            await migrate(CrashingClient(r, at), 1024, batch=2)
        except Crash:
            crashes += 1
            assert (await read_schema(r))[0] in (None, "migrating")  # None: before it began
            with pytest.raises(SchemaError, match="ocs migrate"):
                await ensure_schema(r, 1024)
            await migrate(r, 1024, batch=2)
            assert await _digest(r) == expected, f"crash at round trip {at}"
            continue
        break
    assert crashes > 30  # every round trip of the migration was a crash point


async def test_migrating_again_changes_nothing(r, demo_pair, monkeypatch):
    with schema1(monkeypatch):
        await write_schema1_data(r, demo_pair, Clock())
    await migrate(r, 1024)
    once = await _digest(r)
    report = await migrate(r, 1024)
    assert (report.keys_moved, report.records_copied) == (0, 0)
    assert await _digest(r) == once


async def test_another_partition_count_than_the_datas_is_refused(r):
    await migrate(r, 64)
    with pytest.raises(SchemaError, match="64 partitions"):
        await migrate(r, 1024)
    with pytest.raises(SchemaError, match="64 partitions"):
        await ensure_schema(r, 1024)
    await ensure_schema(r, 64)
    assert keys.partitions() == 64


async def test_unrecorded_data_at_another_partition_count_is_refused(r):
    # written at 64 partitions, then ocs:meta lost: 1024 would look for it elsewhere
    keys.set_partitions(64)
    await r.sadd(keys.ACCOUNTS, "a2")  # partition 25 of 64, 409 of 1024
    await r.hset(keys.account("a2"), mapping={"status": "active"})
    keys.set_partitions(keys.DEFAULT_PARTITIONS)
    with pytest.raises(SchemaError, match="not where 1024 partitions put it"):
        await ensure_schema(r, 1024)
    assert await read_schema(r) == (None, None)  # nothing recorded
    await ensure_schema(r, 64)


async def test_data_of_an_unknown_schema_is_refused(r):
    await r.hset(keys.META, mapping={"schema": "3", "partitions": "1024"})
    with pytest.raises(SchemaError, match="key schema 3; this OCS knows schema 2 only"):
        await ensure_schema(r, 1024)
