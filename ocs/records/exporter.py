"""The record exporter: partition streams in Redis -> sealed segment files -> acknowledged.

One :class:`Exporter` runs in ``ocs export`` (a service of its own) or inside ``ocs
serve`` (``records.export``). It works in rounds:

1. **Share** (every ``lease_ttl / 3``): heartbeat in Redis, count the live exporters,
   renew its partition leases, give up partitions beyond its fair share
   (``ceil(partitions / exporters)``), take free ones up to it. On taking a partition it
   opens the partition's :class:`SegmentWriter` (which recovers what a crash left) and
   claims what earlier owners were given and never acknowledged (``XAUTOCLAIM``; a
   claim that failed, Redis being away, is made again at the next round).
2. **Read** its partitions' new entries (``XREADGROUP``), at most ``batch`` per
   partition: each partition once per ``poll_interval``, again at once when a read
   came back full (catching up), less often (down to ``IDLE_POLL_FACTOR`` times the
   interval) while its reads come back empty. A read whose reply was lost (the
   connection cut after Redis ran it) left its entries pending for this exporter, and
   ``>`` never gives them again: before reading those partitions again it claims their
   pending entries above the last one it got. Now and then (:meth:`Exporter.sweep_stale`)
   it also claims entries pending longer than any exporter holds one, whoever has them.
3. **Write** them to the partitions' open segments and seal those that are full or old
   (fsync, rename, directory fsync, checkpoint; the segments due in a round together),
   in a thread of its own, so a slow disk never stalls the charging loop of ``ocs serve``.
4. **Acknowledge and delete** from Redis the entries now durable (``ack_records.lua``).

A full Redis (``maxmemory``, noeviction) refuses the heartbeat and new leases: the
exporter then keeps exporting what it owns (reads, acknowledgements and lease renewals
still work, and they free the memory) and takes nothing new.

Exactly once in effect: an entry leaves Redis only after its segment is durable, so
none is lost; a crash between the fsync and the acknowledgement leaves durable entries
in Redis, pending for the crashed exporter. The next owner claims them; those at or
below its directory's checkpoint (the partition's last durable entry id) are looked for
in the partition's latest sealed segments, and the ones found there (same id, same
record) are acknowledged without being written twice. Every other entry is written,
whatever its id: an entry whose read reply was lost lies below entries sealed after
it, and a stream that Redis lost may start its ids again lower (a fail-over to a
replica whose clock is behind), so a record is never dropped for its id. Entries
exported twice all the same (a lease taken over from a stalled exporter, a stream
given again from its start, a durable entry beyond the segments looked at) carry the
same record id, and the readers (:func:`ocs.records.iter_records`) keep one.

Every ``backlog_interval`` it measures what its partitions' streams still hold (the
export lag, in entries and seconds) and reports partitions above ``stream_cap``:
charging never stops for a lagging export (a record dropped is money lost), the
operator is told (metrics, alert, log) instead. docs/records.md has the guarantees,
docs/runbook.md the operator's view.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import ParamSpec, Protocol, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ocs.logs import log_event
from ocs.records.segment_format import read_segment
from ocs.records.writer import SealedSegment, SegmentSettings, SegmentWriter, flush_together
from quota_engine.store.record_feed import Entry, PartitionBacklog, RecordFeed, entry_order

__all__ = [
    "IDLE_POLL_FACTOR",
    "NO_EXPORT_OBSERVER",
    "ExportObserver",
    "ExportSettings",
    "Exporter",
    "exporter_name",
]

logger = logging.getLogger("ocs.records.exporter")

IDLE_POLL_FACTOR = 8
"""An idle partition is read at least once per this many poll intervals."""

_REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError)
_LOOKUP_SEGMENTS = 8
"""Most sealed segments of a partition read back to find which claimed entries are
durable already (the newest first): a crash leaves them in the last one or few."""
_P = ParamSpec("_P")
_T = TypeVar("_T")


def exporter_name() -> str:
    """``<host>:<pid>``: this process's name in the consumer groups and on its leases."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclasses.dataclass(frozen=True, slots=True)
class ExportSettings:
    """How an exporter works (``[records]`` settings, docs/configuration.md)."""

    directory: Path
    segments: SegmentSettings = SegmentSettings()
    batch: int = 5000
    """Most entries read from one partition's stream per read."""
    poll_interval: float = 1.0
    """Seconds between two reads of a partition that had nothing more to give; a
    partition whose reads keep coming back empty is read less often, down to once per
    :data:`IDLE_POLL_FACTOR` times this."""
    lease_ttl: float = 15.0
    """Seconds a partition's lease lasts unless renewed; an exporter that died leaves
    its partitions to the others after this long."""
    stream_cap: int = 100_000
    """Entries of a partition's stream above which the export is reported lagging."""
    backlog_interval: float = 5.0
    """Seconds between two measurements of the streams' backlog."""

    def __post_init__(self) -> None:
        if self.batch < 1 or self.stream_cap < 1:
            raise ValueError(f"invalid export settings {self}")
        if not (self.poll_interval > 0 and self.lease_ttl > 0 and self.backlog_interval > 0):
            raise ValueError(f"invalid export settings {self}")


class ExportObserver(Protocol):
    """What an exporter reports, for metrics (``ocs.metrics.Metrics`` is one)."""

    def exported(self, records: int) -> None:
        """This many entries became durable in segments and were acknowledged."""

    def duplicates(self, records: int) -> None:
        """This many entries given again by Redis were durable already (at or below the
        checkpoint): acknowledged without writing them twice."""

    def segment_sealed(self, segment: SealedSegment) -> None:
        """A segment was sealed (its size, records and fsync time)."""

    def export_backlog(self, entries: int, lag_seconds: float, over_cap: int, written: int) -> None:
        """The owned partitions' streams hold ``entries`` not exported yet, the oldest
        ``lag_seconds`` old; ``over_cap`` of them hold more than the cap; the scripts
        wrote ``written`` records to them since the last measurement."""

    def owned_partitions(self, partitions: int) -> None:
        """This exporter now owns this many partitions."""


class NoExportObserver:
    __slots__ = ()

    def exported(self, records: int) -> None:
        pass

    def duplicates(self, records: int) -> None:
        pass

    def segment_sealed(self, segment: SealedSegment) -> None:
        pass

    def export_backlog(self, entries: int, lag_seconds: float, over_cap: int, written: int) -> None:
        pass

    def owned_partitions(self, partitions: int) -> None:
        pass


NO_EXPORT_OBSERVER: ExportObserver = NoExportObserver()


@dataclasses.dataclass(slots=True)
class _Partition:
    """An owned partition: its writer (used only in the disk thread) and where it stands."""

    number: int
    writer: SegmentWriter
    floor: tuple[int, int] | None
    """The checkpoint's last entry id when the partition was taken: claimed entries
    at or below it may be durable in this directory already (looked for in the
    segments); entries above it are not."""
    claimed: bool = False
    """Whether what earlier owners left pending was claimed (and exported) yet."""
    last_seen: str | None = None
    """The highest entry id this exporter got for the partition (read or claimed)."""
    lost_read: bool = False
    """A read of the partition failed: its reply may have been lost, leaving entries
    above :attr:`last_seen` pending for this exporter, to claim before reading again."""
    unacknowledged: list[str] = dataclasses.field(default_factory=list)
    """Durable entry ids whose acknowledgement has not reached Redis yet."""
    next_read: float = 0.0
    """Monotonic time of the next read."""
    interval: float = 0.0
    """Seconds from this read to the next when it gives nothing (0: the poll interval)."""

    def schedule(self, now: float, entries: int, settings: ExportSettings) -> None:
        """When to read again after a read that gave ``entries``: at once when it came
        back full (catching up); after ``poll_interval`` when it gave some; after twice
        the last wait when it gave none, up to :data:`IDLE_POLL_FACTOR` times the poll
        interval (an idle partition costs Redis a command every 8 s, not every second)."""
        if entries >= settings.batch:
            self.interval, self.next_read = 0.0, now
            return
        if entries or not self.interval:
            self.interval = settings.poll_interval
        else:
            self.interval = min(self.interval * 2, settings.poll_interval * IDLE_POLL_FACTOR)
        self.next_read = now + self.interval


class Exporter:
    """Exports the record streams of the partitions it owns to ``settings.directory``."""

    def __init__(
        self,
        feed: RecordFeed,
        settings: ExportSettings,
        observer: ExportObserver = NO_EXPORT_OBSERVER,
    ) -> None:
        self.feed = feed
        self.settings = settings
        self.observer = observer
        self._owned: dict[int, _Partition] = {}
        self._disk = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ocs-export")
        self._added: dict[int, int] = {}
        self._live: list[str] = [feed.consumer]
        """The live exporters at the last heartbeat Redis took."""
        self._next_sweep = 0.0
        self._next_share = 0.0
        self._next_backlog = 0.0

    @property
    def owned(self) -> list[int]:
        """The partitions this exporter owns now."""
        return sorted(self._owned)

    # --- the loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Export until ``stop`` is set; then read the partitions once more (what was
        charged since the last poll), seal what is open, acknowledge it and give the
        partitions back. Redis outages are waited out (logged, retried)."""
        log_event(logger, "export_started", exporter=self.feed.consumer)
        failing = False
        try:
            while not stop.is_set():
                try:
                    wait = await self.step()
                    if failing:
                        log_event(logger, "export_redis_back", exporter=self.feed.consumer)
                        failing = False
                except _REDIS_ERRORS as error:
                    if not failing:
                        log_event(
                            logger, "export_redis_unavailable", level=logging.WARNING,
                            error=str(error),
                        )  # fmt: skip
                        failing = True
                    wait = min(self.settings.poll_interval, 1.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
            with contextlib.suppress(*_REDIS_ERRORS):
                await self.drain()
        except BaseException:
            await self.abandon()
            raise
        await self.close()
        log_event(logger, "export_stopped", exporter=self.feed.consumer)

    async def step(self) -> float:
        """One round (share when due, read, write, acknowledge, measure when due);
        returns the seconds until the next is due."""
        now = time.monotonic()
        if now >= self._next_share:
            await self.share()
            self._next_share = now + self.settings.lease_ttl / 3
        await self._retry_acknowledgements()
        await self._claim_pending()
        if now >= self._next_sweep:
            await self.sweep_stale()
            self._next_sweep = now + max(self.settings.lease_ttl, self.settings.segments.max_age)
        due = [p.number for p in self._owned.values() if p.next_read <= now]
        if due:
            batches = await self._read(due)
            for number in due:
                self._owned[number].schedule(now, len(batches.get(number, ())), self.settings)
            await self._export(batches)
        else:
            await self._export({})
        if now >= self._next_backlog:
            await self.measure_backlog()
            self._next_backlog = now + self.settings.backlog_interval
        wake = min(
            [self._next_share, self._next_backlog, *(p.next_read for p in self._owned.values())]
        )
        return max(0.0, wake - time.monotonic())

    async def drain(self) -> None:
        """Read and write what the owned partitions' streams hold now (stopping: what
        was charged since the last poll), for at most a third of the lease; sealing and
        acknowledging is :meth:`close`'s."""
        deadline = time.monotonic() + self.settings.lease_ttl / 3
        await self._retry_acknowledgements()
        await self._claim_pending()
        due = self.owned
        while due and time.monotonic() < deadline:
            batches = await self._read(due)
            await self._export(batches)
            due = [n for n, b in batches.items() if len(b) >= self.settings.batch]

    async def _read(self, due: list[int]) -> dict[int, list[Entry]]:
        """New entries of the partitions ``due``; when the read fails its reply may have
        been lost with entries in it, so those partitions are marked to claim first."""
        regrouped: list[int] = []
        try:
            batches = await self.feed.read(due, self.settings.batch, regrouped)
        except _REDIS_ERRORS:
            for number in due:
                self._owned[number].lost_read = True
            raise
        for number in regrouped:  # a new stream: its ids may start below what was seen
            self._owned[number].last_seen = None
        return batches

    # --- sharing the partitions ----------------------------------------------------------

    async def share(self) -> None:
        """Heartbeat, renew the leases, and move towards this exporter's fair share."""
        ttl_ms = int(self.settings.lease_ttl * 1000)
        try:
            live = self._live = await self.feed.heartbeat(int(time.time() * 1000), ttl_ms)
            full = False
        except OutOfMemoryError:
            # Redis is full: keep exporting what this exporter owns (reading,
            # acknowledging and renewing still work, and they are what frees memory),
            # take nothing new until it has room again
            live, full = self._live, True
            log_event(logger, "export_redis_full", level=logging.WARNING, owned=len(self._owned))
        partitions = self.feed.partitions()
        fair = math.ceil(len(partitions) / max(1, len(live)))
        lost = await self.feed.renew(self.owned, ttl_ms)
        if lost:
            log_event(logger, "export_lease_lost", level=logging.WARNING, partitions=len(lost))
            await self._drop(lost, release=False)
        if len(self._owned) > fair:
            await self._drop(self.owned[fair:], release=True)
        elif len(self._owned) < fair and not full:
            owners = await self.feed.owners([p for p in partitions if p not in self._owned])
            free = [p for p, owner in owners.items() if owner is None]
            want = fair - len(self._owned)
            taken = await self.feed.acquire(free[:want], ttl_ms)
            # leases under this name that it does not own: left by an exporter of this
            # process that failed (ocs serve starts the next one under the same name),
            # taken back at once rather than after they expire
            left = [p for p, owner in owners.items() if owner == self.feed.consumer]
            if left and len(taken) < want:
                left = left[: want - len(taken)]
                gone = set(await self.feed.renew(left, ttl_ms))
                taken = sorted([*taken, *(p for p in left if p not in gone)])
            if taken:
                await self._take(taken, live)
        self.observer.owned_partitions(len(self._owned))

    async def _take(self, partitions: list[int], live: Iterable[str]) -> None:
        await self.feed.ensure_groups(partitions)
        writers, busy = await self._on_disk(
            SegmentWriter.open_many,
            self.settings.directory,
            partitions,
            self.settings.segments,
            on_seal=self.observer.segment_sealed,
        )
        if busy:  # another process writes them in this directory
            await self.feed.release(busy)
        for number, writer in sorted(writers.items()):
            last = writer.checkpoint.last_entry_id
            floor = None if last is None else entry_order(last)
            self._owned[number] = _Partition(number, writer, floor)
        log_event(logger, "export_partitions_taken", partitions=len(writers))
        await self._claim_pending(live)

    async def _claim_pending(self, live: Iterable[str] | None = None) -> None:
        """Claim and export what earlier owners of the partitions taken were given and
        never acknowledged, and what reads whose reply was lost left pending for this
        exporter (until it is done: a Redis error leaves it to the next round, for
        XREADGROUP never gives those entries again)."""
        for partition in [p for p in self._owned.values() if not p.claimed or p.lost_read]:
            if partition.claimed:  # only what the lost reply held: above what it got
                claimed = await self.feed.claim(partition.number, after=partition.last_seen)
            else:
                claimed = await self.feed.claim(partition.number)
                if live is not None:
                    await self.feed.forget_idle_consumers(partition.number, live)
            if claimed:
                await self._export({partition.number: claimed}, claimed=True)
            partition.claimed = True
            partition.lost_read = False

    async def sweep_stale(self) -> None:
        """Claim and export the owned partitions' entries pending for longer than any
        entry this exporter holds can be (twice ``segment_max_age`` plus the lease),
        whoever holds them: entries a read delivered to an exporter that lost the
        partition meanwhile, or whose reply was lost unnoticed. Without this they
        would wait for the partition to change owner."""
        idle_ms = int((2 * self.settings.segments.max_age + self.settings.lease_ttl) * 1000)
        for partition in list(self._owned.values()):
            if not partition.claimed:
                continue  # _claim_pending takes everything first
            held = {*partition.unacknowledged, *partition.writer.pending_ids}
            stale = await self.feed.claim(partition.number, min_idle_ms=idle_ms)
            stale = [entry for entry in stale if entry[0] not in held]
            if stale:
                log_event(
                    logger, "export_stale_claimed", level=logging.WARNING,
                    partition=partition.number, entries=len(stale),
                )  # fmt: skip
                await self._export({partition.number: stale}, claimed=True)

    async def _drop(self, partitions: list[int], *, release: bool) -> None:
        """Seal and close the partitions' writers, acknowledge what they made durable,
        and (``release``) give their leases back."""
        dropped: list[_Partition] = []
        for number in partitions:
            partition = self._owned.get(number)
            if partition is None:
                continue
            # owned until closed: a writer whose close failed is abandoned with the rest
            partition.unacknowledged += await self._on_disk(partition.writer.close)
            dropped.append(self._owned.pop(number))
            self._added.pop(number, None)  # counted anew from the next owner's first look
        await self._acknowledge(dropped)
        if release:
            await self.feed.release([p.number for p in dropped])

    # --- writing and acknowledging ---------------------------------------------------------

    async def _export(self, batches: dict[int, list[Entry]], *, claimed: bool = False) -> None:
        """Write the batches, seal what is due, acknowledge what is durable. Entries
        ``claimed`` (given before, to someone) that the partition's sealed segments in
        this directory hold already are acknowledged, not written again."""
        skipped: dict[int, list[str]] = {}
        work: list[tuple[_Partition, list[Entry]]] = []
        for number, entries in batches.items():
            partition = self._owned.get(number)
            if partition is None or not entries:
                continue
            last = entries[-1][0]  # reads and claims give entries in id order
            if partition.last_seen is None or entry_order(last) > entry_order(partition.last_seen):
                partition.last_seen = last
            floor = partition.floor
            old = [e for e in entries if entry_order(e[0]) <= floor] if claimed and floor else []
            if old:
                found = await self._on_disk(_durable_among, partition.writer.sealed_at_open, old)
                if found:
                    skipped[number] = [e[0] for e in old if e[0] in found]
                    entries = [e for e in entries if e[0] not in found]
            work.append((partition, entries))
        partitions = list(self._owned.values())
        durable = await self._on_disk(_write_and_flush, work, partitions)
        for partition, ids in zip(partitions, durable, strict=True):
            partition.unacknowledged += ids
            partition.unacknowledged += skipped.get(partition.number, ())
        if skipped:
            self.observer.duplicates(sum(map(len, skipped.values())))
        await self._acknowledge(partitions)

    async def _acknowledge(self, partitions: Iterable[_Partition]) -> None:
        pending = {p.number: p.unacknowledged for p in partitions if p.unacknowledged}
        if not pending:
            return
        deleted = await self.feed.acknowledge(pending)
        for partition in partitions:
            partition.unacknowledged = []
        # what this call removed from Redis: an acknowledgement made again after its
        # reply was lost, or of entries another exporter removed, is not counted twice
        self.observer.exported(deleted)

    async def _retry_acknowledgements(self) -> None:
        await self._acknowledge(self._owned.values())

    async def _on_disk(self, function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run ``function`` in the disk thread (every writer call goes there)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._disk, functools.partial(function, *args, **kwargs))

    # --- backlog ------------------------------------------------------------------------

    async def measure_backlog(self) -> list[PartitionBacklog]:
        """Measure and report the owned partitions' backlog; returns it."""
        backlog = await self.feed.backlog(self.owned)
        now_ms = time.time() * 1000
        entries = sum(b.entries for b in backlog)
        oldest = [b.oldest_ms for b in backlog if b.oldest_ms is not None]
        lag = max(0.0, (now_ms - min(oldest)) / 1000) if oldest else 0.0
        over = [b.partition for b in backlog if b.entries > self.settings.stream_cap]
        written = 0
        for b in backlog:
            if b.added is not None:
                before = self._added.get(b.partition)
                if before is not None and b.added > before:
                    written += b.added - before
                self._added[b.partition] = b.added
        self.observer.export_backlog(entries, lag, len(over), written)
        if over:
            log_event(
                logger, "records_stream_over_cap", level=logging.WARNING,
                partitions=len(over), cap=self.settings.stream_cap, entries=entries,
            )  # fmt: skip
        return backlog

    # --- stopping -----------------------------------------------------------------------

    async def abandon(self) -> None:
        """After a failure: release the writers without sealing (what they held is in
        Redis still, given again to the next owner) and stop the disk thread."""
        try:
            for partition in list(self._owned.values()):
                try:  # every writer, whatever one of them raises: each holds a lock
                    await self._on_disk(partition.writer.abandon)
                except Exception as error:
                    log_event(
                        logger, "export_abandon_failed", level=logging.ERROR,
                        partition=partition.number, error=repr(error),
                    )  # fmt: skip
            self._owned.clear()
            self.observer.owned_partitions(0)
        finally:
            await asyncio.to_thread(self._disk.shutdown, True)  # never blocks the loop

    async def close(self) -> None:
        """Seal the open segments, acknowledge them, give every lease back and leave.
        A writer that fails to seal (the disk) raises, after the writers not closed yet
        are abandoned (each partition's lock released)."""
        try:
            if self._owned:
                try:
                    with contextlib.suppress(*_REDIS_ERRORS):  # closed all the same
                        await self._drop(self.owned, release=True)
                except BaseException:
                    await self.abandon()
                    raise
                self._owned.clear()
            self.observer.owned_partitions(0)
            with contextlib.suppress(*_REDIS_ERRORS):
                await self.feed.leave()
        finally:
            await asyncio.to_thread(self._disk.shutdown, True)  # never blocks the loop


def _durable_among(sealed: Sequence[Path], entries: list[Entry]) -> set[str]:
    """(In the disk thread.) The ids of ``entries`` that the partition's segments
    ``sealed`` (when its writer opened, newest first) hold with the same record,
    looked for in the newest :data:`_LOOKUP_SEGMENTS` (those not found are written again:
    at worst a duplicate the readers drop, never a record lost). Entries at or below
    the checkpoint were sealed before the writer opened, so ``sealed`` has them."""
    wanted = dict(entries)
    oldest = min(entry_order(entry_id) for entry_id in wanted)
    found: set[str] = set()
    for path in sealed[:_LOOKUP_SEGMENTS]:
        try:
            scan = read_segment(path)
        except OSError:  # moved away by a consumer since: its entries are written again
            continue
        found.update(e.entry_id for e in scan.entries if wanted.get(e.entry_id) == e.record)
        if len(found) == len(wanted):
            break
        if scan.entries and max(entry_order(e.entry_id) for e in scan.entries) < oldest:
            break  # older segments hold older entries still
    return found


def _write_and_flush(
    work: list[tuple[_Partition, list[Entry]]], partitions: list[_Partition]
) -> list[list[str]]:
    """(In the disk thread.) Append each batch to its partition's segment, then seal the
    segments that are due, together (one directory fsync for all); returns the ids
    made durable, per partition of ``partitions``."""
    for partition, entries in work:
        append = partition.writer.append
        for entry_id, record in entries:
            append(entry_id, record)
    return flush_together([partition.writer for partition in partitions])
