"""Reading rated records back from segments, each record once.

The exporter acknowledges a stream entry only after its segment is durable, so a crash
between the two exports the entry again into a later segment: the same record, the
same deterministic ``id``. :class:`RecordReader` yields the first and drops the others
(counted in :attr:`RecordReader.duplicates`). The ids of the records yielded are kept
in memory for that (about 100 bytes each; an ``account`` filter keeps only that
account's).

Damage never raises: a torn tail or a bad frame ends that segment's records with a
:class:`SegmentWarning` (sent through :func:`warnings.warn`, unless ``warn=False``, and
kept in :attr:`RecordReader.warnings`); ``ocs records verify`` reports the same in detail.
A ``partition`` filter reads only that partition's files (``GET .../usage`` reads the
one partition an account's records are in).
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from ocs.records.segment_format import SegmentName, parse_segment_name, read_segment
from ocs.records.writer import writer_is_running
from quota_engine.store.records import decode_record

__all__ = ["RecordReader", "SegmentWarning", "iter_records", "segment_files"]


class SegmentWarning(UserWarning):
    """A segment is damaged or incomplete; what could be read of it was read."""


def segment_files(
    path: str | Path, partition: int | Collection[int] | None = None
) -> tuple[list[Path], list[Path]]:
    """``(sealed, unsealed)`` segment files of a directory (ordered by partition, then
    sequence), or of one file given by name; only those of ``partition`` (one, or a
    collection of partitions) when given."""
    path = Path(path)
    wanted = {partition} if isinstance(partition, int) else partition
    if not path.is_dir():
        name = parse_segment_name(path.name)
        if wanted is not None and (name is None or name.partition not in wanted):
            return [], []
        return ([path], []) if name is None or name.sealed else ([], [path])
    named: list[tuple[SegmentName, Path]] = []
    for child in path.iterdir():
        name = parse_segment_name(child.name)
        if name is not None and (wanted is None or name.partition in wanted):
            named.append((name, child))
    named.sort(key=lambda item: (item[0].partition, item[0].sequence, not item[0].sealed))
    return (
        [p for n, p in named if n.sealed],
        [p for n, p in named if not n.sealed],
    )


class RecordReader:
    """The records of ``path`` (a segment directory or one segment file), in order:
    partition by partition, each in sequence and entry order (so each account's records
    in the order its stream had them), each record ``id`` once.

    ``start``/``end`` (Unix s): only records whose ``end`` (the rating time their
    usage ended) is at or after ``start`` and before ``end``. ``account``: only that
    account's. ``partition``: only the files of that partition, or of those partitions
    (by their names; a bill run reads the partitions of its share of the accounts).
    Each record is a dict as ``decode_record`` gives it, with the stream entry's id as
    ``stream_id``. ``warn=False``: damage is only kept in :attr:`warnings` (a server
    logs it), not sent through :func:`warnings.warn` (process-wide, not thread-safe
    to silence).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        start: int | None = None,
        end: int | None = None,
        account: str | None = None,
        partition: int | Collection[int] | None = None,
        warn: bool = True,
    ) -> None:
        self.path = Path(path)
        self.start, self.end, self.account = start, end, account
        self.partition = partition
        self.warn = warn
        self.records = 0
        self.duplicates = 0
        self.segments = 0
        self.warnings: list[str] = []

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        if self.warn:
            warnings.warn(message, SegmentWarning, stacklevel=3)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            raise FileNotFoundError(f"no such segment file or directory: {self.path}")
        sealed, unsealed = segment_files(self.path, self.partition)
        for path in unsealed:
            self._unsealed(path)
        seen: set[str] = set()
        for path in sealed:
            self.segments += 1
            for record in self._segment_records(path):
                if not self._wanted(record):
                    continue
                if record["id"] in seen:
                    self.duplicates += 1
                    continue
                seen.add(record["id"])
                self.records += 1
                yield record

    def _unsealed(self, path: Path) -> None:
        name = parse_segment_name(path.name)
        try:
            if name is not None and writer_is_running(path.parent, name.partition):
                return  # being written now: its records are read once it is sealed
            scan = read_segment(path)
        except FileNotFoundError:  # sealed, or removed by a writer starting, meanwhile
            return
        except OSError as error:
            self._warn(f"{path}: unsealed segment, cannot read: {error}")
            return
        torn = "" if scan.torn_at is None else f", torn tail at offset {scan.torn_at}"
        self._warn(
            f"{path}: unsealed segment of a stopped writer ({len(scan.entries)} complete "
            f"entries{torn}): not read; its entries were never acknowledged, the exporter "
            "exports them again"
        )

    def _segment_records(self, path: Path) -> Iterator[dict[str, Any]]:
        try:
            scan = read_segment(path)
        except OSError as error:
            self._warn(f"{path}: cannot read: {error}")
            return
        if scan.problems:
            self._warn(
                f"{path}: {'; '.join(scan.problems)}; "
                f"{len(scan.entries)} entries before it are read"
            )
        elif scan.trailer is None:
            self._warn(
                f"{path}: no trailer (cut at a frame boundary?) after {len(scan.entries)} entries"
            )
        for entry in scan.entries:
            try:
                record = decode_record(entry.record)
            except Exception as error:  # msgpack raises several types on bad bytes
                self._warn(f"{path}: the record at offset {entry.offset} is unreadable: {error}")
                continue
            record["stream_id"] = entry.entry_id
            yield record

    def _wanted(self, record: dict[str, Any]) -> bool:
        if self.account is not None and record["account"] != self.account:
            return False
        ended = record["end"]
        if self.start is not None and (ended is None or ended < self.start):
            return False
        return not (self.end is not None and (ended is None or ended >= self.end))


def iter_records(
    path_or_dir: str | Path,
    *,
    start: int | None = None,
    end: int | None = None,
    account: str | None = None,
    partition: int | None = None,
) -> Iterator[dict[str, Any]]:
    """The records of a segment directory or file, duplicates dropped (see
    :class:`RecordReader`, which also counts them)."""
    return iter(
        RecordReader(path_or_dir, start=start, end=end, account=account, partition=partition)
    )
