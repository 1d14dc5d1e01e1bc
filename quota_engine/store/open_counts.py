"""The open sessions and their outstanding reservations, read from the partitions'
counters.

ccr.lua and settle.lua keep, in the same atomic call that writes or deletes a
session, the counters of its partition's ``ocs:open:{P}`` hash (lua/open_counts.lua):
per service class, the open sessions, the money their open grants hold reserved
(micro-units) and the units granted and not yet reported, per unit. A retransmission
answered from the stored result writes nothing, a CCR-T and the sweeper take the
session's part off, and a crash cannot separate a session from its counts (one
script). Sampling is therefore one ``HMGET`` per partition, pipelined
(:func:`read_open_counts`): the cost depends on the number of partitions, not of
sessions, and each command touches one hash slot (Redis Cluster routes the pipeline).

The service class of a session is its Service-Context-Id's: ``32251@3gpp.org`` data,
``32260@3gpp.org`` and ``32275@3gpp.org`` (MMTel) voice, ``32274@3gpp.org`` sms, any
other ``other`` (:data:`SERVICE_OF_CONTEXT`, the same table as the Lua's).

Sessions opened before the counters existed are counted from their next request on
(the scripts mark a counted session, ``cm``, and subtract only marked ones).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quota_engine.store import keys
from quota_engine.store.clients import PipelineClient

__all__ = [
    "FIELDS",
    "SERVICES",
    "SERVICE_OF_CONTEXT",
    "UNITS",
    "OpenCounts",
    "read_open_counts",
    "service_of_context",
]

SERVICES = ("data", "voice", "sms", "other")
"""The service classes of the counters."""
UNITS = ("octets", "seconds", "events")
"""The units of the granted-units counters."""
SERVICE_OF_CONTEXT = {
    "32251@3gpp.org": "data",
    "32260@3gpp.org": "voice",
    "32275@3gpp.org": "voice",
    "32274@3gpp.org": "sms",
}
"""Service-Context-Id (lower case) -> service class; others are ``"other"``
(lua/open_counts.lua, OPEN_SERVICES, holds the same table)."""

DEFAULT_BATCH = 64
"""Partitions read per round trip: each reply is parsed on the event loop between two
round trips, so a batch holds the loop about a millisecond, not the whole sample."""

_KINDS = ("sessions", "money", *UNITS)
FIELDS = tuple(f"{service}:{kind}" for service in SERVICES for kind in _KINDS)
"""Every field of a partition's hash (lua/open_counts.lua), in the order read."""


def service_of_context(context: str) -> str:
    """The service class of a Service-Context-Id."""
    return SERVICE_OF_CONTEXT.get(context.lower(), "other")


def _zeros() -> dict[str, int]:
    return dict.fromkeys(SERVICES, 0)


@dataclass(slots=True)
class OpenCounts:
    """Totals over every partition. Every service and (service, unit) is present."""

    sessions: dict[str, int] = field(default_factory=_zeros)
    """Open sessions by service."""
    money: dict[str, int] = field(default_factory=_zeros)
    """Micro-units reserved by open grants, by service."""
    units: dict[tuple[str, str], int] = field(
        default_factory=lambda: {(s, u): 0 for s in SERVICES for u in UNITS}
    )
    """Units granted and not yet reported, by (service, unit)."""

    @classmethod
    def of_sums(cls, sums: list[int]) -> OpenCounts:
        """The totals of the sums of :data:`FIELDS`, in their order."""
        out = cls()
        values = iter(sums)
        for service in SERVICES:
            out.sessions[service] = next(values)
            out.money[service] = next(values)
            for unit in UNITS:
                out.units[service, unit] = next(values)
        return out


async def read_open_counts(
    client: PipelineClient, partitions: int | None = None, *, batch: int = DEFAULT_BATCH
) -> OpenCounts:
    """Sum the counters of partitions ``0 .. partitions - 1`` (default: all of this
    process's, :func:`keys.partitions`), ``batch`` partitions per round trip."""
    count = keys.partitions() if partitions is None else partitions
    if batch < 1:
        raise ValueError("batch must be at least 1")
    sums = [0] * len(FIELDS)
    for start in range(0, count, batch):
        pipe = client.pipeline(transaction=False)
        for partition in range(start, min(start + batch, count)):
            pipe.hmget(keys.partition_open_counts(partition), FIELDS)
        for values in await pipe.execute():
            for i, value in enumerate(values):
                if value is not None:
                    sums[i] += int(value)
    return OpenCounts.of_sums(sums)
