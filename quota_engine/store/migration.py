"""``ocs migrate``: moves data from key schema 1 to schema 2 (partitions).

Schema 1 gave every account its own hash tag (``ocs:acct:{<account>}``,
``ocs:acct:{<account>}:buckets``, ..., its own ``ocs:acct:{<account>}:records`` stream);
schema 2 (:mod:`quota_engine.store.keys`) gives it its partition's
(``ocs:acct:{p:<n>}:<account>...``) and one record stream per partition. The migration:

1. records ``ocs:meta`` ``schema = migrating`` and ``partitions`` (so no process starts
   on half-moved data: :func:`quota_engine.store.schema.ensure_schema` refuses);
2. SCANs ``ocs:acct:{*`` once (O(keys), not one scan per account) and moves every
   schema-1 key to the same name under the partition's tag: the account hash, buckets,
   subs, sessions, ``sess:*``, ``idem:*``, ``usage:*``, history, ``topup:*``. Keys change
   slot, so a key is moved with DUMP, RESTORE (its remaining TTL, REPLACE) and DEL, which
   works on Redis Cluster too (RENAME does not across slots);
3. appends each account's records, every field kept, in their order, to its
   partition's stream (new stream ids: the old ones cannot be kept in a stream shared by
   many accounts), a batch per MULTI together with ``ocs:migration:{P}`` (the last old id
   copied; the same slot), then deletes the old stream;
4. deletes the progress hashes and records ``schema = 2``.

Every step is idempotent, so a crash anywhere is repaired by running it again: a key is
deleted only after its copy exists (a second RESTORE REPLACE writes the same value), and
a record batch and its progress mark are written in one transaction. Account ids, hence
the deadline index (``<account>|<session>``), the identity index and the account list,
do not change.

Charging must be stopped while it runs (``ocs serve`` refuses to start on schema-1 data).
On a Redis Cluster run it against each master (SCAN sees one node's keys).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from quota_engine.store import keys
from quota_engine.store.clients import StoreClient
from quota_engine.store.schema import MIGRATING, SchemaError, read_schema
from quota_engine.store.text import lossy_text

__all__ = ["MigrationReport", "migrate"]

_LEGACY_MATCH = f"{keys.PREFIX}:acct:{{*"
_RECORDS = ":records"
_SUFFIXES = (":buckets", ":subs", ":sessions", ":history")
_PREFIXES = (":sess:", ":idem:", ":usage:", ":topup:")


@dataclasses.dataclass
class MigrationReport:
    """What one run of :func:`migrate` did."""

    keys_moved: int = 0
    records_copied: int = 0
    accounts: set[str] = dataclasses.field(default_factory=set)
    left: list[str] = dataclasses.field(default_factory=list)
    """Keys under ``ocs:acct:{`` of no known schema-1 shape, left where they are."""


def _legacy(key: str) -> tuple[str, str] | None:
    """(account, the rest of the key) of a schema-1 key; None for a schema-2 key."""
    head = f"{keys.PREFIX}:acct:{{"
    tag, closed, rest = key[len(head) :].partition("}")
    if not closed or ":" in tag:
        return None
    return tag, rest


def _known(rest: str) -> bool:
    if rest in ("", _RECORDS, *_SUFFIXES):
        return True
    return any(rest.startswith(prefix) and len(rest) > len(prefix) for prefix in _PREFIXES)


async def _move(redis: StoreClient, old: str, new: str) -> bool:
    dump = await redis.execute_command("DUMP", old)
    if dump is None:
        return False
    ttl = int(await redis.execute_command("PTTL", old))
    if ttl == -2:
        return False
    await redis.execute_command("RESTORE", new, max(ttl, 0), dump, "REPLACE")
    await redis.execute_command("DEL", old)
    return True


async def _copy_records(redis: StoreClient, account_id: str, old: str, batch: int) -> int:
    progress = keys.migration_progress(keys.partition_of(account_id))
    target = keys.records(account_id)
    last = await redis.hget(progress, account_id)
    low = "-" if last is None else f"({lossy_text(last)}"
    copied = 0
    while entries := await redis.xrange(old, min=low, max="+", count=batch):
        pipe: Any = redis.pipeline(transaction=True)
        for _, fields in entries:
            pipe.execute_command("XADD", target, "*", *(x for pair in fields.items() for x in pair))
        low_id = lossy_text(entries[-1][0])
        pipe.execute_command("HSET", progress, account_id, low_id)
        await pipe.execute()
        copied += len(entries)
        low = f"({low_id}"
    await redis.execute_command("DEL", old)
    await redis.execute_command("HDEL", progress, account_id)
    return copied


async def _migrate_key(redis: StoreClient, key: str, batch: int, report: MigrationReport) -> None:
    parsed = _legacy(key)
    if parsed is None:
        return
    account_id, rest = parsed
    try:
        new_prefix = keys.account(account_id)
    except ValueError:
        report.left.append(key)
        return
    if not _known(rest):
        report.left.append(key)
        return
    report.accounts.add(account_id)
    if rest == _RECORDS:
        report.records_copied += await _copy_records(redis, account_id, key, batch)
    elif await _move(redis, key, new_prefix + rest):
        report.keys_moved += 1


async def migrate(redis: StoreClient, partitions: int, *, batch: int = 500) -> MigrationReport:
    """Move every schema-1 key to schema 2 with ``partitions`` partitions (see the module
    doc); run it again after a crash. Raises :class:`SchemaError` when the data already
    uses another partition count."""
    keys.check_partitions(partitions)
    schema, recorded = await read_schema(redis)
    if recorded is not None and recorded != partitions:
        raise SchemaError(
            f"the data uses {recorded} partitions, not {partitions}: run with --partitions {recorded}"
        )
    if schema not in (None, MIGRATING, str(keys.SCHEMA_VERSION)):
        raise SchemaError(f"the data is in key schema {schema}; this OCS knows schema 2 only")
    keys.set_partitions(partitions)
    await redis.execute_command(
        "HSET", keys.META, "schema", MIGRATING, "partitions", str(partitions)
    )
    report = MigrationReport()
    cursor: Any = 0
    while True:
        cursor, found = await redis.execute_command(
            "SCAN", cursor, "MATCH", _LEGACY_MATCH, "COUNT", 1000
        )
        for key in found:
            await _migrate_key(redis, lossy_text(key), batch, report)
        if int(cursor) == 0:
            break
    pipe: Any = redis.pipeline(transaction=False)
    for partition in range(partitions):
        pipe.execute_command("DEL", keys.migration_progress(partition))
    await pipe.execute()
    await redis.execute_command("HSET", keys.META, "schema", str(keys.SCHEMA_VERSION))
    return report
