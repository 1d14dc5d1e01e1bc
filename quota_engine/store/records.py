"""Rated records: what the Lua scripts append to ``ocs:acct:{A}:records``.

Each stream entry has one field, ``r``: a msgpack map written by the script in the
same atomic call that moved the money, so a debit and its record cannot part. The
fields are documented in docs/records.md; :func:`decode_record` turns one into a dict
with every field present (absent optional ones as ``None``, maps as dicts).

``id`` is deterministic: ``"<session-id>;<request-number>;<rating-group key>"``, so
export and invoicing drop duplicates by it.
"""

from __future__ import annotations

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


def decode_record(data: bytes) -> dict[str, Any]:
    """One record (the stream field ``r``) as a dict with every field of :data:`FIELDS`.

    Lua cannot tell an empty map from an empty list, so empty ``used``,
    ``allowances``, ``money`` and ``tariff`` come back as ``{}`` and ``identities`` as
    ``[]``. Unknown fields are kept.
    """
    raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
    if not isinstance(raw, dict):
        raise ValueError("a rated record must be a msgpack map")
    record: dict[str, Any] = {name: None for name in FIELDS}
    record.update({lossy_text(k): v for k, v in raw.items()})
    for name in _MAPS:
        value = record[name]
        record[name] = {} if not value else {lossy_text(k): v for k, v in dict(value).items()}
    if isinstance(record["tariff"], list):
        record["tariff"] = {} if not record["tariff"] else record["tariff"]
    record["identities"] = list(record["identities"] or [])
    record["zero_rated"] = bool(record["zero_rated"])
    return record


async def read_records(
    redis: StoreClient, account_id: str, start: str = "-", count: int | None = 100, end: str = "+"
) -> list[dict[str, Any]]:
    """Records of an account in stream order, from stream id ``start`` (inclusive;
    ``"(<id>"`` for exclusive). Each dict carries its stream id as ``stream_id``."""
    entries = await redis.xrange(keys.records(account_id), min=start, max=end, count=count)
    out = []
    for stream_id, fields in entries:
        data = fields.get(b"r", fields.get("r"))
        record = decode_record(data)
        record["stream_id"] = lossy_text(stream_id)
        out.append(record)
    return out


async def count_records(redis: StoreClient, account_id: str) -> int:
    """How many rated records the account's stream holds."""
    return int(await redis.xlen(keys.records(account_id)))
