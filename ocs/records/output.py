"""Records as JSON lines, CSV (for finance) or msgpack: what ``ocs records read`` prints.

CSV: one row per record, the columns of :data:`CSV_COLUMNS` (documented in
docs/records.md, "CSV columns"). Money is exact: ``charged`` in integer micro-units and
``charged_decimal`` as a decimal string in the currency's major unit with six
fraction digits (``-1.250000``); never a float.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

import msgpack

__all__ = ["CSV_COLUMNS", "FORMATS", "csv_row", "micro_decimal", "write_records"]

CSV_COLUMNS = (
    "id",
    "account",
    "session",
    "request",
    "cause",
    "start",
    "end",
    "start_utc",
    "end_utc",
    "context",
    "service",
    "rating_group",
    "service_identifier",
    "unit",
    "used",
    "charged",
    "charged_decimal",
    "currency",
    "allowances",
    "money",
    "price",
    "catalog",
    "zone",
    "destination",
    "band",
    "zero_rated",
    "capped_from",
    "peer",
    "identities",
    "stream_id",
)


def micro_decimal(micro: int) -> str:
    """An amount of micro-units as an exact decimal string: 6000000 -> ``"6.000000"``."""
    sign = "-" if micro < 0 else ""
    whole, fraction = divmod(abs(micro), 1_000_000)
    return f"{sign}{whole}.{fraction:06d}"


def _utc(seconds: Any) -> str:
    if not isinstance(seconds, int):
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json(value: Any) -> str:
    return json.dumps(value or {}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def csv_row(record: dict[str, Any]) -> list[str]:
    """The :data:`CSV_COLUMNS` of one record."""
    used = record.get("used") or {}
    unit = record.get("unit")
    charged = record.get("charged")
    values: dict[str, Any] = {
        **record,
        "start_utc": _utc(record.get("start")),
        "end_utc": _utc(record.get("end")),
        "used": used.get(unit) if unit is not None else (sum(used.values()) if used else None),
        "charged_decimal": micro_decimal(charged) if isinstance(charged, int) else "",
        "allowances": _json(record.get("allowances")),
        "money": _json(record.get("money")),
        "identities": " ".join(record.get("identities") or []),
    }
    return [_text(values.get(column)) for column in CSV_COLUMNS]


def _write_json(records: Iterable[dict[str, Any]], text: IO[str], _: IO[bytes]) -> int:
    count = 0
    for record in records:
        text.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count


def _write_csv(records: Iterable[dict[str, Any]], text: IO[str], _: IO[bytes]) -> int:
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    for record in records:
        writer.writerow(csv_row(record))
        count += 1
    return count


def _write_msgpack(records: Iterable[dict[str, Any]], _: IO[str], binary: IO[bytes]) -> int:
    packer = msgpack.Packer(use_bin_type=True)
    count = 0
    for record in records:
        binary.write(packer.pack(record))
        count += 1
    binary.flush()
    return count


Writer = Callable[[Iterable[dict[str, Any]], IO[str], IO[bytes]], int]
FORMATS: dict[str, Writer] = {"json": _write_json, "csv": _write_csv, "msgpack": _write_msgpack}


def write_records(
    records: Iterable[dict[str, Any]], form: str, text: IO[str], binary: IO[bytes]
) -> int:
    """Write ``records`` in format ``form`` (JSON lines and CSV to ``text``, msgpack
    maps one after the other to ``binary``); returns how many."""
    return FORMATS[form](records, text, binary)
