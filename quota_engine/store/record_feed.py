"""The Redis side of the record export: consumer groups on the partition streams,
acknowledgement, backlog, and the leases that share the partitions among exporters.

Each partition's stream ``ocs:records:{P}`` has one consumer group, :data:`GROUP`. An
exporter reads a partition only while it holds the partition's lease
(``ocs:export:lease:{P}``, a key with a TTL, in the stream's slot); on taking a lease
it claims (``XAUTOCLAIM``) what the group delivered to earlier owners and they never
acknowledged, so entries of a dead exporter are exported by the next one. An entry is
acknowledged *and deleted* (``ack_records.lua``) once it is durable in a segment
file, so a stream holds exactly the entries not exported yet: its length is the
export lag (:meth:`RecordFeed.backlog`).

Exporters announce themselves in ``ocs:exporters`` (a ZSET scored by when their
heartbeat expires); each takes about ``partitions / live exporters`` leases
(``ocs.records.exporter``). Every command names one partition's keys (or only
``ocs:exporters``), so all of it runs on Redis Cluster.

Stream entry ids are returned as ``str``; records as the bytes of their ``r`` field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from redis.exceptions import OutOfMemoryError, ResponseError

from quota_engine.store import keys
from quota_engine.store.contract import (
    AckRecordsArgs,
    ExportLeaseArgs,
    decode_ack_records,
    decode_export_lease,
)
from quota_engine.store.scripts import ACK_RECORDS, EXPORT_LEASE, ScriptPipeline
from quota_engine.store.text import lossy_text

__all__ = ["GROUP", "Entry", "PartitionBacklog", "RecordFeed", "entry_order"]

GROUP = "export"
"""The consumer group of every partition stream."""

Entry = tuple[str, bytes]
"""A stream entry: its id and its record (the ``r`` field)."""

_CLAIM_PAGE = 1000


def entry_order(entry_id: str) -> tuple[int, int]:
    """A stream id as ``(milliseconds, sequence)``, for comparing two ids."""
    millis, _, sequence = entry_id.partition("-")
    return int(millis), int(sequence or 0)


@dataclasses.dataclass(frozen=True, slots=True)
class PartitionBacklog:
    """What a partition's stream holds now: the entries not exported yet."""

    partition: int
    entries: int
    oldest_ms: int | None
    """Unix ms of the oldest entry (from its id), None when the stream is empty."""
    added: int | None
    """Entries ever added to the stream (Redis 7 and later; None before)."""


def _entries(raw: Any) -> list[Entry]:
    out: list[Entry] = []
    for entry_id, fields in raw or ():
        if fields is None:  # deleted after it was delivered: nothing to export
            continue
        value = fields.get(b"r", fields.get("r", b""))
        out.append(
            (lossy_text(entry_id), value if isinstance(value, bytes) else str(value).encode())
        )
    return out


def _fields(reply: Any) -> dict[str, Any]:
    """An XINFO reply (a map, or a flat list of names and values) with str names."""
    pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
    return {lossy_text(name): value for name, value in pairs}


def _is_nogroup(result: Any) -> bool:
    return isinstance(result, ResponseError) and str(result).startswith("NOGROUP")


def _raise_errors(results: Iterable[Any]) -> None:
    for result in results:
        if isinstance(result, BaseException):
            raise result


class RecordFeed:
    """The export's view of Redis for one exporter, ``consumer`` (its name in the
    groups and on its leases)."""

    def __init__(self, client: Any, consumer: str) -> None:
        self.client = client
        self.consumer = consumer

    # --- partitions ------------------------------------------------------------------

    @staticmethod
    def partitions() -> range:
        return range(keys.partitions())

    async def ensure_groups(self, partitions: Sequence[int]) -> None:
        """Create the export group of each partition's stream (and the stream) when
        missing, reading from its first entry."""
        pipe = self.client.pipeline(transaction=False)
        for partition in partitions:
            pipe.execute_command(
                "XGROUP", "CREATE", keys.partition_records(partition), GROUP, "0", "MKSTREAM"
            )
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, ResponseError) and str(result).startswith("BUSYGROUP"):
                continue
            if isinstance(result, OutOfMemoryError):
                # Redis is full (XGROUP CREATE ... MKSTREAM is refused even when the
                # group exists): the export must go on, it is what frees memory; a
                # group really missing is created by the next read (NOGROUP)
                continue
            if isinstance(result, BaseException):
                raise result

    # --- reading and acknowledging ----------------------------------------------------

    async def read(
        self, partitions: Sequence[int], count: int, regrouped: list[int] | None = None
    ) -> dict[int, list[Entry]]:
        """New entries (never delivered to anyone) of each partition, at most ``count``
        each, now pending for this consumer. A partition whose group is gone (Redis
        lost its data) gets it back, is added to ``regrouped``, and is read at the next
        call."""
        pipe = self.client.pipeline(transaction=False)
        for partition in partitions:
            pipe.execute_command(
                "XREADGROUP", "GROUP", GROUP, self.consumer, "COUNT", count,
                "STREAMS", keys.partition_records(partition), ">",
            )  # fmt: skip
        results = await pipe.execute(raise_on_error=False)
        out: dict[int, list[Entry]] = {}
        lost: list[int] = []
        for partition, result in zip(partitions, results, strict=True):
            if _is_nogroup(result):
                lost.append(partition)
                continue
            if isinstance(result, BaseException):
                raise result
            if not result:
                continue
            # [[stream, entries]] (RESP2) or {stream: [entries]} (RESP3)
            raw = next(iter(result.values()))[0] if isinstance(result, dict) else result[0][1]
            entries = _entries(raw)
            if entries:
                out[partition] = entries
        if lost:
            await self.ensure_groups(lost)
            if regrouped is not None:
                regrouped.extend(lost)
        return out

    async def claim(
        self, partition: int, after: str | None = None, min_idle_ms: int = 0
    ) -> list[Entry]:
        """Every entry of the partition delivered and not acknowledged (only those with
        an id above ``after``, when given, and only those delivered at least
        ``min_idle_ms`` ago), whoever it was delivered to, now pending for this
        consumer, in id order."""
        key = keys.partition_records(partition)
        out: list[Entry] = []
        start = "0-0"
        if after is not None:
            millis, sequence = entry_order(after)
            start = f"{millis}-{sequence + 1}"
        while True:
            try:
                reply = await self.client.execute_command(
                    "XAUTOCLAIM",
                    key,
                    GROUP,
                    self.consumer,
                    min_idle_ms,
                    start,
                    "COUNT",
                    _CLAIM_PAGE,
                )
            except ResponseError as error:
                if not str(error).startswith("NOGROUP"):
                    raise
                await self.ensure_groups([partition])
                return out
            out.extend(_entries(reply[1]))
            start = lossy_text(reply[0])
            if start == "0-0":
                return out

    async def acknowledge(self, durable: dict[int, list[str]]) -> int:
        """Acknowledge and delete the entries of each partition that are durable in a
        segment; returns how many were deleted."""
        pipe = ScriptPipeline(self.client)
        for partition, ids in durable.items():
            if ids:
                call = AckRecordsArgs(partition, GROUP, tuple(ids))
                pipe.script(ACK_RECORDS, call.keys(), call.argv())
        results = await pipe.execute()
        _raise_errors(results)
        return sum(decode_ack_records(result).deleted for result in results)

    async def forget_idle_consumers(self, partition: int, keep: Iterable[str]) -> None:
        """Remove the partition group's consumers with nothing pending that are not in
        ``keep`` (exporters that are gone): a restarted exporter has a new name."""
        keep = {*keep, self.consumer}
        key = keys.partition_records(partition)
        try:
            consumers = await self.client.execute_command("XINFO", "CONSUMERS", key, GROUP)
        except ResponseError:
            return
        pipe = self.client.pipeline(transaction=False)
        for consumer in consumers:
            info = _fields(consumer)
            name = lossy_text(info["name"])
            if name not in keep and int(info["pending"]) == 0:
                pipe.execute_command("XGROUP", "DELCONSUMER", key, GROUP, name)
        await pipe.execute(raise_on_error=False)

    async def backlog(self, partitions: Sequence[int]) -> list[PartitionBacklog]:
        """How many entries each partition's stream holds (not exported yet), and when
        the oldest was written."""
        pipe = self.client.pipeline(transaction=False)
        for partition in partitions:
            pipe.execute_command("XINFO", "STREAM", keys.partition_records(partition))
        out: list[PartitionBacklog] = []
        for partition, info in zip(
            partitions, await pipe.execute(raise_on_error=False), strict=True
        ):
            if isinstance(info, BaseException):  # no stream yet
                out.append(PartitionBacklog(partition, 0, None, None))
                continue
            fields = _fields(info)
            first = fields.get("first-entry")
            oldest = entry_order(lossy_text(first[0]))[0] if first else None
            added = fields.get("entries-added")
            out.append(
                PartitionBacklog(
                    partition, int(fields["length"]), oldest, None if added is None else int(added)
                )
            )
        return out

    # --- sharing the partitions --------------------------------------------------------

    async def heartbeat(self, now_ms: int, ttl_ms: int) -> list[str]:
        """Announce this exporter until ``now_ms + ttl_ms``; returns the live exporters
        (this one included), sorted."""
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command("ZADD", keys.EXPORTERS, now_ms + ttl_ms, self.consumer)
        pipe.execute_command("ZREMRANGEBYSCORE", keys.EXPORTERS, "-inf", now_ms)
        pipe.execute_command("ZRANGE", keys.EXPORTERS, 0, -1)
        results = await pipe.execute()
        return sorted(lossy_text(name) for name in results[2])

    async def leave(self) -> None:
        """This exporter is stopping: the others share its partitions at once."""
        await self.client.execute_command("ZREM", keys.EXPORTERS, self.consumer)

    async def acquire(self, partitions: Sequence[int], ttl_ms: int) -> list[int]:
        """Take the lease of each free partition among ``partitions``; returns the ones taken."""
        pipe = self.client.pipeline(transaction=False)
        for partition in partitions:
            pipe.execute_command(
                "SET", keys.export_lease(partition), self.consumer, "NX", "PX", ttl_ms
            )
        results = await pipe.execute(raise_on_error=False)
        _raise_errors(results)
        return [p for p, result in zip(partitions, results, strict=True) if result]

    async def renew(self, partitions: Sequence[int], ttl_ms: int) -> list[int]:
        """Renew this exporter's leases; returns the partitions whose lease it no
        longer holds (expired, taken over)."""
        return await self._leases(partitions, ttl_ms)

    async def release(self, partitions: Sequence[int]) -> None:
        """Give up this exporter's leases (those it still holds)."""
        await self._leases(partitions, 0)

    async def _leases(self, partitions: Sequence[int], ttl_ms: int) -> list[int]:
        pipe = ScriptPipeline(self.client)
        for partition in partitions:
            call = ExportLeaseArgs(partition, self.consumer, ttl_ms)
            pipe.script(EXPORT_LEASE, call.keys(), call.argv())
        results = await pipe.execute()
        _raise_errors(results)
        return [
            p
            for p, reply in zip(partitions, results, strict=True)
            if not decode_export_lease(reply).held
        ]

    async def owners(self, partitions: Sequence[int]) -> dict[int, str | None]:
        """Who holds each partition's lease now (None: nobody)."""
        pipe = self.client.pipeline(transaction=False)
        for partition in partitions:
            pipe.execute_command("GET", keys.export_lease(partition))
        results = await pipe.execute()
        return {
            p: None if owner is None else lossy_text(owner)
            for p, owner in zip(partitions, results, strict=True)
        }
