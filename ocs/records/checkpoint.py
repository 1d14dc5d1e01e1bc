"""The per-partition checkpoint: the last sealed segment and its last stream entry id.

``p0042.checkpoint.json`` is replaced atomically (written to a temporary name,
fsync'd, renamed, the directory fsync'd), so after a crash it is either the old one or
the new one, never half of each. It may lag the segments by one (a crash between a
segment's rename and the checkpoint's): the writer then reads the newer segment's
trailer at start (:func:`ocs.records.writer.SegmentWriter`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "Checkpoint",
    "checkpoint_path",
    "fsync_directory",
    "read_checkpoint",
    "write_checkpoint",
    "write_checkpoints",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Checkpoint:
    partition: int
    sequence: int
    """The last sealed segment's sequence (0: none yet; the first segment is 1)."""
    last_entry_id: str | None
    """The last stream entry id of that segment (what is durable up to)."""
    updated: int = 0
    """Unix s of the write."""


def checkpoint_path(directory: Path, partition: int) -> Path:
    return directory / f"p{partition:04d}.checkpoint.json"


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoint(directory: Path, partition: int) -> Checkpoint | None:
    """The partition's checkpoint; ``None`` when there is none. A damaged one raises
    ``ValueError`` (it is written atomically: damage is not a crash's doing)."""
    path = checkpoint_path(directory, partition)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        checkpoint = Checkpoint(
            partition=int(data["partition"]),
            sequence=int(data["sequence"]),
            last_entry_id=None if data["last_entry_id"] is None else str(data["last_entry_id"]),
            updated=int(data.get("updated", 0)),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: damaged checkpoint: {error}") from None
    if checkpoint.partition != partition:
        raise ValueError(f"{path}: checkpoint of partition {checkpoint.partition}")
    return checkpoint


def write_checkpoint(directory: Path, checkpoint: Checkpoint) -> Checkpoint:
    """Replace the partition's checkpoint atomically and durably; returns it as written."""
    return write_checkpoints(directory, [checkpoint])[0]


def write_checkpoints(directory: Path, checkpoints: Sequence[Checkpoint]) -> list[Checkpoint]:
    """Replace the checkpoints of several partitions of ``directory``, each atomically
    (written and fsync'd under a temporary name, renamed), all durably (one directory
    fsync after the renames); returns them as written."""
    now = int(time.time())
    written = [dataclasses.replace(checkpoint, updated=now) for checkpoint in checkpoints]
    renames: list[tuple[Path, Path]] = []
    for checkpoint in written:
        path = checkpoint_path(directory, checkpoint.partition)
        temporary = path.with_name(path.name + ".tmp")
        data = json.dumps({"format": 1, **dataclasses.asdict(checkpoint)}, sort_keys=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, (data + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        renames.append((temporary, path))
    for temporary, path in renames:
        os.replace(temporary, path)
    if renames:
        fsync_directory(directory)
    return written
