"""One account's rated records wherever they are now: exported to its partition's
segment files, or still in its partition's Redis stream (``GET /v1/accounts/{id}/usage``).

The exporter moves records from the stream to segment files and then deletes them
from the stream, so an account's records are split between the two, and a record
exported whose acknowledgement has not reached Redis yet is in both.
:func:`read_account_records` reads both and keeps each record ``id`` once, in stream-id
order: all of an account's records are in one partition
(:func:`quota_engine.store.records.partition_of_account`), whose stream ids order
them, and each segment entry keeps the id its entry had in the stream.

The stream is read first, then the segments: a record that leaves the stream in
between was made durable in a sealed segment before it left, so it is found there.
Only the account's partition's segment files are read (O(records of that partition),
as the stream scan is), in a worker thread (blocking file I/O). A damaged or
unreadable segment never fails the read: its readable records are used and the damage
is logged (``records_segment_warning``) and returned in :attr:`AccountRecords.warnings`.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import logging
from pathlib import Path
from typing import Any

from ocs.logs import log_event
from ocs.records.reader import RecordReader
from quota_engine.store.clients import StoreClient
from quota_engine.store.record_feed import entry_order
from quota_engine.store.records import partition_of_account, read_records

__all__ = ["AccountRecords", "exported_records", "merge_records", "read_account_records"]

logger = logging.getLogger("ocs.records.account_records")


@dataclasses.dataclass(frozen=True, slots=True)
class AccountRecords:
    """An account's records, each ``id`` once, in stream-id order, each with its
    ``stream_id``."""

    records: list[dict[str, Any]]
    exported: int
    """How many of them were read from segment files (the others only from Redis)."""
    warnings: list[str]
    """What was wrong with the segment files read (logged already)."""

    def after(self, stream_id: str) -> list[dict[str, Any]]:
        """The records whose stream id comes after ``stream_id`` (``ms-seq``)."""
        start = bisect.bisect_right(
            self.records, entry_order(stream_id), key=lambda r: entry_order(r["stream_id"])
        )
        return self.records[start:]


def exported_records(
    directory: Path, account_id: str, partition: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """The account's records in ``partition``'s sealed segments of ``directory`` (none
    when it does not exist), and what was wrong with them. Blocking; never raises for
    damaged or unreadable files."""
    if not directory.is_dir():
        return [], []
    reader = RecordReader(directory, account=account_id, partition=partition, warn=False)
    records: list[dict[str, Any]] = []
    try:
        for record in reader:
            try:
                entry_order(record["stream_id"])
            except ValueError:
                reader.warnings.append(
                    f"{directory}: record {record['id']!r} has no valid stream id "
                    f"({record['stream_id']!r}): left out"
                )
                continue
            records.append(record)
    except OSError as error:  # the directory itself (a file's own errors are warnings)
        reader.warnings.append(f"{directory}: cannot read: {error}")
    return records, reader.warnings


def merge_records(*sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of ``sources`` in stream-id order, each ``id`` once (the first
    source's copy of a record found in several)."""
    seen: set[str] = set()
    merged: list[dict[str, Any]] = []
    everything = [record for source in sources for record in source]
    for record in sorted(everything, key=lambda r: entry_order(r["stream_id"])):  # stable
        if record["id"] in seen:
            continue
        seen.add(record["id"])
        merged.append(record)
    return merged


async def read_account_records(
    redis: StoreClient, directory: Path | None, account_id: str
) -> AccountRecords:
    """Every record of the account: its partition's stream, then its partition's
    segment files in ``directory`` (None: the stream only)."""
    partition = partition_of_account(account_id)
    live = await read_records(redis, account_id, count=None)
    if directory is None:
        return AccountRecords(merge_records(live), 0, [])
    exported, problems = await asyncio.to_thread(exported_records, directory, account_id, partition)
    for problem in problems:
        log_event(
            logger,
            "records_segment_warning",
            level=logging.WARNING,
            partition=partition,
            problem=problem,
        )
    return AccountRecords(merge_records(exported, live), len(exported), problems)
