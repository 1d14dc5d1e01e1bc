"""Writing one partition's records to rotated, fsync'd segment files.

:class:`SegmentWriter` is what the exporter loop calls: it appends stream entries as
they are read from the partition's stream, and :meth:`SegmentWriter.flush` returns the
entry ids that are now durable, the ones the exporter may acknowledge and trim from
Redis. An entry is durable once its segment is sealed:

1. the segment is written under a temporary name (``p0042-000000000017.seg.tmp``),
2. sealed (trailer), fsync'd, renamed to its final name (``.seg``), the directory fsync'd,
3. then the partition's checkpoint is replaced (``p0042.checkpoint.json``).

A crash before 2 ends leaves a temporary file whose entries were never reported
durable (so never acknowledged: the stream gives them again); a restarted writer
removes it and writes its sequence anew. A crash between 2 and 3 leaves a checkpoint one
segment behind, which a restarted writer repairs from that segment's trailer. A sealed
segment is never written again: a new writer always starts a new sequence.

One writer per partition and directory at a time: it holds an exclusive ``flock`` on
``p0042.lock`` (a second one gets :class:`WriterBusy`).
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType

from ocs.records.checkpoint import (
    Checkpoint,
    fsync_directory,
    read_checkpoint,
    write_checkpoint,
    write_checkpoints,
)
from ocs.records.segment_format import (
    encode_entry,
    encode_header,
    encode_trailer,
    parse_segment_name,
    read_segment,
    segment_name,
)

__all__ = [
    "SealedSegment",
    "SegmentSettings",
    "SegmentWriter",
    "WriterBusy",
    "flush_together",
    "lock_path",
    "seal_together",
    "writer_is_running",
]

_BUFFER = 1 << 20
_LOCK_TRIES = 20


@dataclasses.dataclass(frozen=True, slots=True)
class SegmentSettings:
    """When a segment is sealed and a new one begun."""

    max_bytes: int = 64 * 1024 * 1024
    """Sealed once it holds this many bytes or more (so it may exceed it by one record)."""
    max_age: float = 60.0
    """Seconds after its first record a segment is sealed (at the next append or flush)."""

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or not self.max_age > 0:
            raise ValueError(f"invalid segment settings {self}")


@dataclasses.dataclass(frozen=True, slots=True)
class SealedSegment:
    """What sealing one segment wrote and cost (for the exporter's metrics)."""

    partition: int
    sequence: int
    records: int
    size: int
    """Bytes of the file."""
    fsync_seconds: float
    """Time in the file's and the directory's fsync calls."""


class _ChunkedFile:
    """A file written in whole chunks of ``chunk`` bytes (the rest kept until the next
    chunk or :meth:`flush`), whatever the frames: what a crash leaves on disk is a
    prefix of the segment cut anywhere, a frame included (a torn tail), and each
    ``write(2)`` is large."""

    def __init__(self, fd: int, chunk: int) -> None:
        self.fd, self.chunk = fd, chunk
        self._buffer = bytearray()

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= self.chunk:
            self._write(len(self._buffer) // self.chunk * self.chunk)

    def _write(self, count: int) -> None:
        view = memoryview(self._buffer)
        done = 0
        try:
            while done < count:
                done += os.write(self.fd, view[done:count])
        finally:
            view.release()
        del self._buffer[:count]

    def flush(self) -> None:
        self._write(len(self._buffer))

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        """Close the file; once only (after a failed seal, abandon closes it again: a
        second ``os.close`` would close whatever file took the number since)."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class WriterBusy(Exception):
    """Another writer holds the partition's lock in that directory."""


def lock_path(directory: Path, partition: int) -> Path:
    return directory / f"p{partition:04d}.lock"


class SegmentWriter:
    """Writes the records of ``partition`` to segments in ``directory`` (created if missing).

    Not thread-safe; one per partition. Opening it recovers the partition (see the
    module doc): :attr:`discarded` lists the temporary segments of a crashed writer it
    removed, :attr:`checkpoint` is where durability stands.
    """

    def __init__(
        self,
        directory: str | Path,
        partition: int,
        settings: SegmentSettings | None = None,
        *,
        on_seal: Callable[[SealedSegment], None] | None = None,
        _held: tuple[int, Sequence[str]] | None = None,
    ) -> None:
        """``on_seal`` is called after each segment is sealed and checkpointed.
        (``_held``: the partition's lock and the names of its files, from
        :meth:`open_many`.)"""
        self.directory = Path(directory)
        self.partition = partition
        self.settings = settings or SegmentSettings()
        self._on_seal = on_seal
        segment_name(partition, 0)  # validates the partition
        names: Sequence[str] | None = None
        if _held is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _lock_partition(self.directory, partition)
        else:
            self._lock_fd, names = _held
        self._file: _ChunkedFile | None = None
        self._temporary: Path | None = None
        self._size = 0
        self._opened_at = 0.0
        self._pending: list[str] = []
        self._durable: list[str] = []
        self.discarded: list[Path] = []
        self.sealed_at_open: tuple[Path, ...] = ()
        """The partition's sealed segments when the writer opened, newest first."""
        try:
            self.checkpoint = self._recover(
                names if names is not None else os.listdir(self.directory)
            )
        except BaseException:
            self._unlock()
            raise
        self.next_sequence = self.checkpoint.sequence + 1

    @classmethod
    def open_many(
        cls,
        directory: str | Path,
        partitions: Iterable[int],
        settings: SegmentSettings | None = None,
        *,
        on_seal: Callable[[SealedSegment], None] | None = None,
    ) -> tuple[dict[int, SegmentWriter], list[int]]:
        """Writers of many partitions, and the partitions another writer holds (busy).

        The directory is listed once, after every lock is held, instead of once per
        writer: an exporter taking a thousand partitions of a directory of many
        segments would otherwise list it a thousand times."""
        directory = Path(directory)
        partitions = list(partitions)
        for partition in partitions:
            segment_name(partition, 0)
        directory.mkdir(parents=True, exist_ok=True)
        locks: dict[int, int] = {}
        busy: list[int] = []
        writers: dict[int, SegmentWriter] = {}
        try:
            for partition in partitions:
                try:
                    locks[partition] = _lock_partition(directory, partition)
                except WriterBusy:
                    busy.append(partition)
            names: dict[int, list[str]] = {}
            for name in os.listdir(directory):
                parsed = parse_segment_name(name)
                if parsed is not None and parsed.partition in locks:
                    names.setdefault(parsed.partition, []).append(name)
            for partition in list(locks):
                fd = locks.pop(partition)  # the writer owns it now (and unlocks on failure)
                writers[partition] = cls(
                    directory, partition, settings, on_seal=on_seal,
                    _held=(fd, names.get(partition, [])),
                )  # fmt: skip
        except BaseException:
            for fd in locks.values():
                os.close(fd)
            for writer in writers.values():
                writer.abandon()
            raise
        return writers, busy

    # --- opening: lock and recovery --------------------------------------------------

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = -1

    def _recover(self, names: Iterable[str]) -> Checkpoint:
        """Repair the partition from what a crash left (``names``: the directory's file
        names, listed after the lock was taken)."""
        checkpoint = read_checkpoint(self.directory, self.partition) or Checkpoint(
            self.partition, 0, None
        )
        sealed: list[tuple[int, Path]] = []
        for file_name in names:
            name = parse_segment_name(file_name)
            if name is None or name.partition != self.partition:
                continue
            path = self.directory / file_name
            if name.sealed:
                sealed.append((name.sequence, path))
            else:  # a crashed writer's: never reported durable, so given again by Redis
                path.unlink()
                self.discarded.append(path)
        self.sealed_at_open = tuple(path for _, path in sorted(sealed, reverse=True))
        newer = sorted(s for s in sealed if s[0] > checkpoint.sequence)
        if self.discarded or newer:
            fsync_directory(self.directory)
        if newer:  # sealed after the last checkpoint was written
            last = checkpoint.last_entry_id
            for _, path in newer:
                scan = read_segment(path)
                if scan.entries:
                    last = scan.entries[-1].entry_id
            checkpoint = write_checkpoint(
                self.directory, Checkpoint(self.partition, newer[-1][0], last)
            )
        return checkpoint

    # --- writing ---------------------------------------------------------------------

    def _open(self) -> _ChunkedFile:
        temporary = self.directory / segment_name(self.partition, self.next_sequence, sealed=False)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        # chunks well below a segment's size: a crash leaves a prefix of the segment
        file = _ChunkedFile(fd, min(_BUFFER, max(4096, self.settings.max_bytes // 4)))
        header = encode_header(self.partition, self.next_sequence, int(time.time()))
        file.write(header)
        self._file, self._temporary = file, temporary
        self._size = len(header)
        self._opened_at = time.monotonic()
        return file

    def append(self, entry_id: str, record_bytes: bytes) -> None:
        """Add one stream entry (its id and its ``r`` field) to the open segment.

        Durable only once :meth:`flush` (or :meth:`close`) has returned its id."""
        file = self._file or self._open()
        frame = encode_entry(entry_id, record_bytes)
        file.write(frame)
        self._size += len(frame)
        self._pending.append(entry_id)
        if (
            self._size >= self.settings.max_bytes
            or time.monotonic() - self._opened_at >= self.settings.max_age
        ):
            self._seal()

    def _seal(self) -> None:
        seal_together([self])

    def _due(self, force: bool) -> bool:
        """Whether the open segment is to be sealed now (``force``: whenever it is open)."""
        return self._file is not None and (
            force or time.monotonic() - self._opened_at >= self.settings.max_age
        )

    def _seal_file(self) -> tuple[str | None, float]:
        """Sealing, step 1: the trailer, fsync, the rename to the final name. Returns the
        last entry id and the seconds fsync took; nothing is durable before step 2."""
        file, temporary = self._file, self._temporary
        assert file is not None and temporary is not None
        last = self._pending[-1] if self._pending else None
        trailer = encode_trailer(len(self._pending), last)
        file.write(trailer)
        self._size += len(trailer)
        file.flush()
        started = time.perf_counter()
        os.fsync(file.fileno())
        fsync_seconds = time.perf_counter() - started
        file.close()
        final = self.directory / segment_name(self.partition, self.next_sequence)
        if final.exists():  # cannot happen with the lock held; never overwrite one
            raise FileExistsError(f"{final} exists: refusing to overwrite a sealed segment")
        os.rename(temporary, final)
        self._file = self._temporary = None
        return last, fsync_seconds

    def _sealed(self, checkpoint: Checkpoint, fsync_seconds: float) -> None:
        """Sealing, step 3 (the rename and the checkpoint durable): the appended ids are
        durable, the next segment takes the next sequence."""
        self.checkpoint = checkpoint
        sealed = SealedSegment(
            self.partition, self.next_sequence, len(self._pending), self._size, fsync_seconds
        )
        self.next_sequence += 1
        self._durable.extend(self._pending)
        self._pending = []
        if self._on_seal is not None:
            self._on_seal(sealed)

    def flush(self, *, force: bool = False) -> list[str]:
        """Seal the open segment when it is older than ``max_age`` (or ``force``), and
        return the entry ids made durable since the last call, in append order."""
        return flush_together([self], force=force)[0]

    def _take_durable(self) -> list[str]:
        durable, self._durable = self._durable, []
        return durable

    @property
    def pending(self) -> int:
        """Entries appended and not yet durable."""
        return len(self._pending)

    @property
    def pending_ids(self) -> tuple[str, ...]:
        """The ids of the entries appended and not yet durable."""
        return tuple(self._pending)

    def close(self) -> list[str]:
        """Seal the open segment (when it holds entries), release the partition, and
        return the entry ids made durable since the last :meth:`flush`."""
        try:
            if self._file is not None:
                if self._pending:
                    self._seal()
                else:
                    self._file.close()
                    assert self._temporary is not None
                    self._temporary.unlink()
                    self._file = self._temporary = None
            durable, self._durable = self._durable, []
            return durable
        finally:
            self._unlock()

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()

    def abandon(self) -> None:
        """Release the partition without sealing: the open segment stays a temporary
        file, as a crash would leave it (its entries were never reported durable, so
        Redis gives them again), and the next writer removes it."""
        try:
            if self._file is not None:
                self._file.close()
                self._file = None
        finally:
            self._unlock()


def seal_together(writers: Sequence[SegmentWriter]) -> None:
    """Seal the open segments of ``writers`` (writers of one directory) at once: each
    file fsync'd and renamed, then ONE directory fsync for all the renames, then their
    checkpoints written with ONE directory fsync for all of them: 2 fsyncs per segment
    and 2 per call, instead of 4 per segment (an exporter seals a round's segments of
    a thousand partitions together). A crash in between leaves what a crash during one
    seal leaves (sealed segments newer than their checkpoints, repaired at the next
    start); no id is reported durable before all of it is done."""
    if not writers:
        return
    directory = writers[0].directory
    if any(writer.directory != directory for writer in writers):
        raise ValueError("seal_together takes writers of one directory")
    files = [(writer, *writer._seal_file()) for writer in writers]
    started = time.perf_counter()
    fsync_directory(directory)
    shared = time.perf_counter() - started
    checkpoints = write_checkpoints(
        directory,
        [Checkpoint(writer.partition, writer.next_sequence, last) for writer, last, _ in files],
    )
    for (writer, _, seconds), checkpoint in zip(files, checkpoints, strict=True):
        writer._sealed(checkpoint, seconds + shared)


def flush_together(writers: Sequence[SegmentWriter], *, force: bool = False) -> list[list[str]]:
    """:meth:`SegmentWriter.flush` of each writer (of one directory), the segments due
    sealed together (:func:`seal_together`): the ids made durable, per writer."""
    seal_together([writer for writer in writers if writer._due(force)])
    return [writer._take_durable() for writer in writers]


def _lock_partition(directory: Path, partition: int) -> int:
    """The partition's lock in ``directory``, held (its file descriptor), or WriterBusy."""
    fd = os.open(lock_path(directory, partition), os.O_RDWR | os.O_CREAT, 0o644)
    # a few tries: `ocs records verify` takes the lock shared for an instant
    for attempt in range(_LOCK_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if attempt < _LOCK_TRIES - 1:
                time.sleep(0.01)
    os.close(fd)
    raise WriterBusy(f"partition {partition} in {directory} has a writer already")


def writer_is_running(directory: Path, partition: int) -> bool:
    """Whether a writer holds the partition's lock in ``directory`` now."""
    try:
        fd = os.open(lock_path(directory, partition), os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
