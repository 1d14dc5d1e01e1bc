"""Checking a segment directory: every segment whole, every partition without a gap.

:func:`verify_directory` reads every segment (magic, header against the name, each
frame's length and CRC32, each record a msgpack map, the trailer's count and last id)
and every partition's sequence (1, 2, ... up to its checkpoint, none missing). It
never raises on bad bytes: each finding is a line of the report.

The outcome (:attr:`VerifyReport.status`, the exit status of ``ocs records verify``):

- ``0``: every sealed segment is sound (an unsealed one of a running writer is fine);
- ``1``: damage: a sealed segment is torn or corrupt, a sequence is missing, or a
  checkpoint disagrees; records may be lost, see docs/records.md ("Recovery");
- ``3``: the sealed segments are sound, but a stopped writer left an unsealed segment
  (its torn tail reported with its offset): harmless, its entries were never
  acknowledged, and the next writer of that partition removes it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ocs.records.checkpoint import read_checkpoint
from ocs.records.segment_format import parse_segment_name, read_segment
from ocs.records.writer import writer_is_running
from quota_engine.store.records import decode_record

__all__ = ["SegmentCheck", "VerifyReport", "verify_directory"]

OK, DAMAGED, LEFT_OVER = 0, 1, 3


@dataclasses.dataclass(frozen=True, slots=True)
class SegmentCheck:
    path: Path
    sealed: bool
    """Its name is final (``.seg``), not temporary (``.seg.tmp``)."""
    writer_running: bool
    entries: int
    size: int
    torn_at: int | None
    problems: tuple[str, ...]

    def line(self) -> str:
        state = (
            "sealed"
            if self.sealed
            else ("being written" if self.writer_running else "unsealed, writer stopped")
        )
        verdict = "ok" if not self.problems else "; ".join(self.problems)
        return f"{self.path.name}: {state}, {self.entries} entries, {self.size} bytes: {verdict}"


@dataclasses.dataclass(slots=True)
class VerifyReport:
    segments: list[SegmentCheck] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    """Findings about partitions (gaps, checkpoints), beside the segments' own."""

    @property
    def status(self) -> int:
        if self.problems or any(s.sealed and s.problems for s in self.segments):
            return DAMAGED
        if any(not s.sealed and not s.writer_running for s in self.segments):
            return LEFT_OVER
        return OK

    @property
    def entries(self) -> int:
        return sum(s.entries for s in self.segments if s.sealed)

    def lines(self) -> list[str]:
        return [s.line() for s in self.segments] + self.problems


def _check(path: Path) -> SegmentCheck:
    name = parse_segment_name(path.name)
    assert name is not None
    scan = read_segment(path)
    problems = list(scan.problems)
    for entry in scan.entries:
        try:
            decode_record(entry.record)
        except Exception as error:  # msgpack raises several types on bad bytes
            problems.append(f"the record at offset {entry.offset} is unreadable: {error}")
    running = not name.sealed and writer_is_running(path.parent, name.partition)
    if scan.trailer is None and scan.torn_at is None and not scan.problems:
        if name.sealed:
            problems.append(f"no trailer: the segment ends at offset {scan.size} after a frame")
        elif not running:
            problems.append(f"no trailer: ends at offset {scan.size} after a complete frame")
    if not name.sealed and not running and scan.trailer is not None and not problems:
        problems.append("complete but never renamed (its writer stopped while sealing it)")
    if not name.sealed and running:
        problems = [p for p in problems if not p.startswith("torn tail")]  # still writing
    return SegmentCheck(
        path, name.sealed, running, len(scan.entries), scan.size, scan.torn_at, tuple(problems)
    )


def _partition_problems(directory: Path, partition: int, sequences: list[int]) -> list[str]:
    problems: list[str] = []
    try:
        checkpoint = read_checkpoint(directory, partition)
    except ValueError as error:
        return [str(error)]
    top = max(sequences, default=0)
    if checkpoint is not None and checkpoint.sequence > top:
        top = checkpoint.sequence
        problems.append(
            f"partition {partition}: the checkpoint names sequence {checkpoint.sequence}, "
            f"the last segment is {max(sequences, default=0)}"
        )
    missing = sorted(set(range(1, top + 1)) - set(sequences))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        problems.append(f"partition {partition}: missing segment sequence {shown}")
    return problems


def verify_directory(directory: str | Path) -> VerifyReport:
    """Check every segment and partition of ``directory`` (see the module doc)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no such directory: {directory}")
    report = VerifyReport()
    sealed: dict[int, list[int]] = {}
    partitions: set[int] = set()
    named = [(parse_segment_name(p.name), p) for p in directory.iterdir()]
    for name, path in sorted(
        ((n, p) for n, p in named if n is not None),
        key=lambda item: (item[0].partition, item[0].sequence, not item[0].sealed),
    ):
        partitions.add(name.partition)
        if name.sealed:
            sealed.setdefault(name.partition, []).append(name.sequence)
        report.segments.append(_check(path))
    for path in directory.glob("p*.checkpoint.json"):
        digits = path.name[1:5]
        if digits.isdigit():
            partitions.add(int(digits))
    for partition in sorted(partitions):
        report.problems += _partition_problems(directory, partition, sealed.get(partition, []))
    return report
