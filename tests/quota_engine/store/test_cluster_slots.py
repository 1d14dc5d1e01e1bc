"""Redis Cluster safety of the key schema: every script call's keys hash to one slot,
the partition's record stream included.

The slot is computed with Redis Cluster's rule (CRC16 of the hash tag, mod 16384:
``redis.crc.key_slot``, redis-py's implementation of it), not with a real cluster: the
tests have none.
"""

from __future__ import annotations

import dataclasses
import inspect
import zlib

import pytest
from redis.crc import key_slot

from quota_engine.store import contract, keys

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
