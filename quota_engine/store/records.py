"""Rated records: what the Lua scripts append to their partition's ``ocs:records:{P}``.

Each stream entry has one field, ``r``: a msgpack map written by the script in the
same atomic call that moved the money, so a debit and its record cannot part. A
partition's stream holds the records of all its accounts (:mod:`quota_engine.store.keys`):
it is the feed the exporter reads. The records of one account still in Redis
(:func:`read_records`, :func:`count_records`; ``GET /v1/accounts/{id}/usage`` adds those
of the partition's segment files, :func:`partition_of_account`) are found by reading the
partition's stream and keeping the entries whose ``account`` is that account: O(entries
of the partition), bounded once the exporter trims what it wrote to segment files
(docs/records.md). The
fields are documented in docs/records.md; :func:`decode_record` turns one into a dict
with every field present (absent optional ones as ``None``, maps as dicts).

``id`` is deterministic: ``"<session-id>;<request-number>;<rating-group key>"``, so
export and invoicing drop duplicates by it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgpack

from quota_engine.store import keys
from quota_engine.store.clients import StoreClient
from quota_engine.store.text import lossy_text

__all__ = [
    "CAUSES",
    "FIELDS",
    "count_records",
    "decode_record",
    "partition_of_account",
    "partition_streams",
    "read_records",
    "record_id",
    "rg_key",
]

CAUSES = ("normal", "interim", "expired", "event", "refund")
"""Why a record was written (its ``cause``)."""

FIELDS = (
    "id",
    "account",
    "identities",
    "session",
    "request",
    "peer",
    "context",
    "service",
    "rating_group",
    "service_identifier",
    "unit",
    "start",
    "end",
    "used",
    "charged",
    "allowances",
    "money",
    "price",
    "tariff",
    "catalog",
    "zone",
    "destination",
    "band",
    "zero_rated",
    "cause",
    "currency",
    "capped_from",
    "called",
    "apn",
)
_MAPS = ("used", "allowances", "money")


def rg_key(rating_group: int | None, service_identifier: int | None) -> str:
    """The key of a service within a session and in record ids: the rating group
    (``"10"``), else ``"si<Service-Identifier>"``, else ``"-"`` (single-service CCR)."""
    if rating_group is not None:
        return str(rating_group)
    if service_identifier is not None:
        return f"si{service_identifier}"
    return "-"


def record_id(session_id: str, request_number: int, key: str) -> str:
    return f"{session_id};{request_number};{key}"


_EMPTY_RECORD: dict[str, Any] = dict.fromkeys(FIELDS)


_FIELD_NAMES = frozenset(FIELDS)
_is_text = str.__instancecheck__


def _only_text_keys(mapping: dict[Any, Any]) -> bool:
    # map() of a C function: no Python frame per key (a bill run checks 60 million)
    return all(map(_is_text, mapping))


def decode_record(data: bytes) -> dict[str, Any]:
    """One record (the stream field ``r``) as a dict with every field of :data:`FIELDS`.

    Lua cannot tell an empty map from an empty list, so empty ``used``,
    ``allowances``, ``money`` and ``tariff`` come back as ``{}`` and ``identities`` as
    ``[]``. Unknown fields are kept.
    """
    raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
    if not isinstance(raw, dict):
        raise ValueError("a rated record must be a msgpack map")
    record: dict[str, Any] = _EMPTY_RECORD.copy()
    # the scripts write text keys: taken as they are (a bill run decodes millions of
    # records); a key of another type (bytes from a foreign writer) goes through
    # lossy_text like before
    if raw.keys() <= _FIELD_NAMES or _only_text_keys(raw):
        record.update(raw)
    else:
        record.update({lossy_text(k): v for k, v in raw.items()})
    for name in _MAPS:
        value = record[name]
        if not value:
            record[name] = {}
        elif not (type(value) is dict and _only_text_keys(value)):
            record[name] = {lossy_text(k): v for k, v in dict(value).items()}
    if isinstance(record["tariff"], list):
        record["tariff"] = {} if not record["tariff"] else record["tariff"]
    record["identities"] = list(record["identities"] or [])
    record["zero_rated"] = bool(record["zero_rated"])
    return record


def partition_streams() -> list[tuple[int, str]]:
    """``(partition, stream key)`` of every partition of this process's count: what an
    exporter reads (code outside quota_engine/store/ never spells a key)."""
    return [(p, keys.partition_records(p)) for p in range(keys.partitions())]


def partition_of_account(account_id: str) -> int:
    """The partition whose stream, and whose segment files once exported, hold the
    account's records (all of them: one account, one partition). ValueError for an id
    the key schema refuses."""
    return keys.partition_of(account_id)


_PAGE = 1000
"""Entries read from a partition's stream per XRANGE while looking for one account's."""


async def _records_of(
    redis: StoreClient, account_id: str, start: str, end: str
) -> AsyncIterator[dict[str, Any]]:
    key = keys.records(account_id)
    low = start
    while True:
        entries = await redis.xrange(key, min=low, max=end, count=_PAGE)
        for stream_id, fields in entries:
            record = decode_record(fields.get(b"r", fields.get("r")))
            if record["account"] == account_id:
                record["stream_id"] = lossy_text(stream_id)
                yield record
        if len(entries) < _PAGE:
            return
        low = f"({lossy_text(entries[-1][0])}"


async def read_records(
    redis: StoreClient, account_id: str, start: str = "-", count: int | None = 100, end: str = "+"
) -> list[dict[str, Any]]:
    """Records of an account in stream order, from stream id ``start`` (inclusive;
    ``"(<id>"`` for exclusive), at most ``count`` (None: all). Each dict carries its
    stream id (in the partition's stream) as ``stream_id``."""
    out: list[dict[str, Any]] = []
    if count is not None and count <= 0:
        return out
    async for record in _records_of(redis, account_id, start, end):
        out.append(record)
        if count is not None and len(out) >= count:
            break
    return out


async def count_records(redis: StoreClient, account_id: str) -> int:
    """How many rated records of the account its partition's stream holds."""
    total = 0
    async for _ in _records_of(redis, account_id, "-", "+"):
        total += 1
    return total
