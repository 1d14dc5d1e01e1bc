"""``ocs records read`` and ``ocs records verify``: the work behind the two commands
(``ocs/cli.py`` parses their arguments and resolves the directory).

Exit codes: ``read`` 0 (damage it skipped is reported on stderr), 2 no such directory
or a bad ``--from``/``--to``; ``verify`` as :attr:`VerifyReport.status` (0 sound, 1
damage, 3 an unsealed segment left by a stopped writer), 2 no such directory.
"""

from __future__ import annotations

import datetime
import sys
import warnings
from pathlib import Path
from typing import IO

from ocs.records.output import write_records
from ocs.records.reader import RecordReader, SegmentWarning
from ocs.records.verify import verify_directory

__all__ = ["parse_time", "read_command", "verify_command"]


def parse_time(text: str) -> int:
    """Unix seconds from ``1764547200``, ``2026-12-01`` or ``2026-12-01T10:00:00Z``
    (ISO 8601; without an offset: UTC)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (Unix seconds, or ISO 8601 such as 2026-12-01 or "
            "2026-12-01T10:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp())


def read_command(
    directory: Path,
    *,
    start: str | None,
    end: str | None,
    account: str | None,
    form: str,
    out: IO[str] | None = None,
    binary: IO[bytes] | None = None,
    err: IO[str] | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        start_at = None if start is None else parse_time(start)
        end_at = None if end is None else parse_time(end)
    except ValueError as error:
        print(f"ocs records read: {error}", file=err)
        return 2
    if not directory.exists():
        print(f"ocs records read: no such segment directory or file: {directory}", file=err)
        return 2
    reader = RecordReader(directory, start=start_at, end=end_at, account=account)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SegmentWarning)  # printed below, once each
        try:
            write_records(reader, form, out, binary or sys.stdout.buffer)
            out.flush()
        except BrokenPipeError:  # `ocs records read | head`
            return 0
    for message in reader.warnings:
        print(f"ocs records read: warning: {message}", file=err)
    if reader.duplicates or reader.warnings:
        print(
            f"ocs records read: {reader.records} records from {reader.segments} segments, "
            f"{reader.duplicates} duplicates dropped, {len(reader.warnings)} warnings",
            file=err,
        )
    return 0


def verify_command(directory: Path, *, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    try:
        report = verify_directory(directory)
    except FileNotFoundError as error:
        print(f"ocs records verify: {error}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line, file=out)
    verdict = {0: "OK", 1: "DAMAGED", 3: "UNSEALED SEGMENT LEFT BY A STOPPED WRITER"}
    print(
        f"{verdict[report.status]}: {len(report.segments)} segments, "
        f"{report.entries} entries in sealed segments",
        file=out,
    )
    return report.status
