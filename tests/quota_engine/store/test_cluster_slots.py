"""Redis Cluster safety of the key schema: every script call's keys hash to one slot,
the partition's record stream included.

The slot is computed with Redis Cluster's rule (CRC16 of the hash tag, mod 16384:
``redis.crc.key_slot``, redis-py's implementation of it), not with a real cluster: the
tests have none.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import zlib

import pytest
from redis.crc import key_slot

from quota_engine.store import contract, keys, scripts
from quota_engine.store.record_feed import RecordFeed
from quota_engine.store.scripts import load_source

ACCOUNTS = ["a1", "acc", "shared", "x", "491700000001", "A.b_c-9", "ü-account"]
SCRIPT_CALLS = sorted(
    (cls for _, cls in inspect.getmembers(contract, inspect.isclass)
     if dataclasses.is_dataclass(cls) and callable(getattr(cls, "keys", None))
     and cls.__module__ == contract.__name__),
    key=lambda cls: cls.__name__,
)  # fmt: skip


def _call(cls: type, account: str) -> object:
    """An instance of ``cls`` with every init field set (markers where a value is only
    formatted into a key) and ``account``."""
    values: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.init:
            values[f.name] = account if f.name == "account" else f"<{f.name}>"
    return cls(**values)


def test_every_script_call_of_the_contract_is_checked():
    names = {cls.__name__ for cls in SCRIPT_CALLS}
    assert {"CcrArgs", "EventArgs", "RefundArgs", "SettleArgs", "BalanceArgs"} <= names
    assert {"PutBucketArgs", "CreditArgs", "SetStatusArgs", "BalanceActionArgs"} <= names


@pytest.mark.parametrize("cls", SCRIPT_CALLS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("account", ACCOUNTS)
def test_a_script_call_touches_one_slot(cls, account):
    names = _call(cls, account).keys()  # noqa: SIM118 - the script call's KEYS, not a dict
    slots = {key_slot(key.encode()) for key in names}
    assert len(slots) == 1, names
    if any(key.startswith("ocs:acct:") for key in names):
        partition = keys.partition_of(account)
        assert slots == {key_slot(keys.partition_records(partition).encode())}


def test_the_record_stream_is_the_partitions_and_in_the_accounts_slot():
    for account in ACCOUNTS:
        partition = zlib.crc32(account.encode()) % 1024
        assert keys.partition_of(account) == partition
        assert keys.records(account) == f"ocs:records:{{p:{partition}}}"
        assert keys.account(account) == f"ocs:acct:{{p:{partition}}}:{account}"
        assert key_slot(keys.records(account).encode()) == key_slot(keys.buckets(account).encode())


def test_partitions_spread_over_slots():
    slots = {key_slot(keys.partition_records(p).encode()) for p in range(1024)}
    assert len(slots) > 990  # 1024 tags over 16384 slots: few collisions


@pytest.mark.parametrize("bad", ["", "a{b", "a}b", "a|b", "a:b"])
def test_account_ids_that_would_break_the_schema_are_refused(bad):
    with pytest.raises(ValueError):
        keys.buckets(bad)


EXPORT_SCRIPTS = {"ack_records.lua", "export_lease.lua"}
"""The record export's scripts (quota_engine/store/record_feed.py), called with
partition keys rather than a contract dataclass."""


async def test_the_export_scripts_touch_one_slot_the_partition_streams(r, monkeypatch):
    """Every script call the record feed makes (acknowledge, renew, release) names keys
    of one slot: the slot of the partition's record stream (the lease lives there too)."""
    calls: list[tuple[str, tuple[str, ...]]] = []
    queue = scripts._queue_evalsha

    def recording(pipe, script, names, args):
        calls.append((script.name, tuple(names)))
        queue(pipe, script, names, args)

    monkeypatch.setattr(scripts, "_queue_evalsha", recording)
    partitions = [0, 1, 42, 1023]
    feed = RecordFeed(r, "slot-test")
    await feed.acknowledge({p: [f"{p + 1}-0", f"{p + 2}-0"] for p in partitions})
    assert await feed.acquire(partitions, 10_000) == partitions
    assert await feed.renew(partitions, 10_000) == []
    await feed.release(partitions)

    # each script once per partition at least (a call the server answered NOSCRIPT
    # is queued again)
    assert {(name, names[0]) for name, names in calls} == {
        *(("ack_records.lua", keys.partition_records(p)) for p in partitions),
        *(("export_lease.lua", keys.export_lease(p)) for p in partitions),
    }
    for name, names in calls:
        slots = {key_slot(key.encode()) for key in names}
        assert len(slots) == 1, (name, names)
        [partition] = {p for p in partitions if keys.partition_tag(p) in names[0]}
        assert slots == {key_slot(keys.partition_records(partition).encode())}, (name, names)


@pytest.mark.parametrize("name", sorted(EXPORT_SCRIPTS))
def test_the_export_scripts_touch_only_the_keys_they_are_given(name):
    """A key built inside a script would escape the check above (and the cluster's
    routing): the export scripts name keys only as KEYS[1]."""
    source = load_source(name)
    code = "\n".join(line.split("--", 1)[0] for line in source.splitlines())
    assert "KEYS[1]" in code
    assert re.findall(r"KEYS\[(\w+)\]", code) == ["1"] * code.count("KEYS[")
    assert "ocs:" not in code
