"""Which key schema the data is in: ``ocs:meta``, checked by every process at start-up.

The number of partitions decides every account's keys (:mod:`quota_engine.store.keys`),
so it is chosen once, at install time, and recorded in ``ocs:meta`` (``schema``,
``partitions``) by the first process that starts on an empty Redis. Every later process
(``ocs serve``, the ``ocs`` commands, the exporter) calls :func:`ensure_schema` with its
configured value and refuses to start when it differs, when the data is still in schema 1
(each account its own hash tag: run ``ocs migrate``), or when a migration did not finish.
"""

from __future__ import annotations

from quota_engine.store import keys
from quota_engine.store.clients import StoreClient
from quota_engine.store.text import lossy_text

__all__ = ["MIGRATING", "SchemaError", "ensure_schema", "read_schema"]

MIGRATING = "migrating"
"""``ocs:meta`` ``schema`` while ``ocs migrate`` moves schema-1 data."""

_SAMPLE = 100
"""Accounts looked at to tell schema-1 data from data without ``ocs:meta``."""


class SchemaError(Exception):
    """The data is not in the key schema this process would use; the message says how to
    fix it."""


async def read_schema(redis: StoreClient) -> tuple[str | None, int | None]:
    """``ocs:meta``'s schema and partitions (None when absent)."""
    meta = {lossy_text(k): lossy_text(v) for k, v in (await redis.hgetall(keys.META)).items()}
    partitions = meta.get("partitions")
    return meta.get("schema"), int(partitions) if partitions is not None else None


async def _accounts_sample(redis: StoreClient) -> list[str]:
    _, members = await redis.execute_command("SSCAN", keys.ACCOUNTS, 0, "COUNT", _SAMPLE)
    return [lossy_text(member) for member in members]


async def _check_unrecorded_data(redis: StoreClient) -> None:
    """No ``ocs:meta``: the data must be empty or already where this schema puts it."""
    for account_id in await _accounts_sample(redis):
        if await redis.exists(keys.legacy_prefix(account_id)):
            raise SchemaError(
                "the data is in key schema 1 (each account its own hash tag): "
                "run `ocs migrate` before starting"
            )
        if not await redis.exists(keys.account(account_id)):
            raise SchemaError(
                f"account {account_id} is not where {keys.partitions()} partitions put it "
                "and ocs:meta does not say how many partitions the data uses: "
                "set redis.partitions to the value the data was written with"
            )


async def ensure_schema(redis: StoreClient, partitions: int) -> None:
    """Check the data against ``partitions`` and use that count in this process.

    On an empty Redis (no ``ocs:meta``, no account) records schema 2 with ``partitions``
    (HSETNX: of two processes starting at once, the first wins and the second is checked
    against it). Raises :class:`SchemaError` when the data uses another count, is in
    schema 1, or is being migrated.
    """
    keys.check_partitions(partitions)
    schema, recorded = await read_schema(redis)
    if schema is None:
        previous = keys.partitions()
        keys.set_partitions(partitions)
        try:
            await _check_unrecorded_data(redis)
        finally:
            keys.set_partitions(previous)
        pipe = redis.pipeline(transaction=True)
        pipe.hsetnx(keys.META, "schema", str(keys.SCHEMA_VERSION))
        pipe.hsetnx(keys.META, "partitions", str(partitions))
        await pipe.execute()
        schema, recorded = await read_schema(redis)
    if schema == MIGRATING:
        raise SchemaError("a migration to key schema 2 did not finish: run `ocs migrate` again")
    if schema != str(keys.SCHEMA_VERSION):
        raise SchemaError(f"the data is in key schema {schema}; this OCS knows schema 2 only")
    if recorded != partitions:
        raise SchemaError(
            f"the data uses {recorded} partitions and redis.partitions is {partitions}: "
            "the partition count is chosen at install time and cannot change; "
            f"set redis.partitions = {recorded}"
        )
    keys.set_partitions(partitions)
