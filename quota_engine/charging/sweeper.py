"""The sweeper: settles sessions whose deadline passed because their CCR-T never came.

Every session request moves the session's deadline (``now + validity time + grace``)
in two indexes: the account's ``ocs:acct:{A}:sessions`` ZSET, written by ccr.lua in
the same atomic call, and the global ``ocs:deadlines`` ZSET (member
``<account>|<session-id>``), written by the engine right after the script call, from
its answer (it lives in another hash slot, so no script may touch both): ZADD at the
deadline when the session is alive after the call, ZREM when a CCR-T ended it.

The global index can be briefly wrong (an entry for a session that is gone, an old
score, after races between processes or a crash between the two round trips). That only costs a wasted settle call:
settle.lua re-reads the session's own deadline, does nothing while it lies in the
future (and the sweeper moves the entry to that deadline), and removes entries of
sessions that no longer exist. Settling is idempotent, so any number of sweepers, in
any number of OCS processes, may run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import msgpack

from quota_engine.store import keys
from quota_engine.store.scripts import SETTLE, ScriptPipeline

__all__ = ["RETRY_DELAY", "Sweeper", "settle_account", "settle_keys", "sweep_expired"]

_log = logging.getLogger(__name__)

RETRY_DELAY = 300
"""Seconds an index entry whose settle failed is pushed back before the next attempt."""


def settle_keys(account_id: str, session_id: str) -> list[str]:
    """KEYS of settle.lua for one session."""
    return [
        keys.account(account_id),
        keys.buckets(account_id),
        keys.session(account_id, session_id),
        keys.sessions(account_id),
        keys.records(account_id),
    ]


def deadline_member(account_id: str, session_id: str) -> str:
    """The ``ocs:deadlines`` member of a session (account ids never contain ``|``)."""
    return f"{account_id}|{session_id}"


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


async def sweep_expired(redis: Any, now: int, limit: int = 100) -> int:
    """Settle up to ``limit`` sessions of ``ocs:deadlines`` due at ``now``; the count settled."""
    return (await _sweep_round(redis, now, limit))[1]


async def _sweep_round(redis: Any, now: int, limit: int) -> tuple[int, int]:
    """One round of :func:`sweep_expired`: (index entries fetched, sessions settled).
    Every fetched entry is removed or moved past ``now``."""
    members = await redis.zrangebyscore(keys.DEADLINES, "-inf", now, start=0, num=limit)
    if not members:
        return 0, 0
    pipe = ScriptPipeline(redis)
    calls: list[tuple[Any, int | None]] = []
    for member in members:
        account_id, sep, session_id = _text(member).partition("|")
        try:
            if not sep or not session_id:
                raise ValueError("not <account>|<session>")
            call_keys = settle_keys(account_id, session_id)
        except ValueError as error:
            _log.warning("sweeper_bad_entry member=%r error=%s", member, error)
            calls.append((member, None))
            continue
        calls.append((member, pipe.script(SETTLE, call_keys, [session_id, now])))
    results = await pipe.execute() if len(pipe) else []
    fix = redis.pipeline(transaction=False)
    settled = 0
    for member, index in calls:
        if index is None:
            fix.zrem(keys.DEADLINES, member)
            continue
        result = results[index]
        if isinstance(result, BaseException):
            _log.warning("sweeper_settle_failed member=%r error=%s", member, result)
            fix.zadd(keys.DEADLINES, {member: now + RETRY_DELAY})
            continue
        answer = msgpack.unpackb(result, raw=False)
        if answer["o"] == "alive":
            fix.zadd(keys.DEADLINES, {member: answer["dl"]})
        else:
            settled += answer["o"] == "settled"
            fix.zrem(keys.DEADLINES, member)
    await fix.execute()
    return len(members), settled


async def settle_account(redis: Any, account_id: str, now: int) -> int:
    """Settle the expired sessions of one account, found by its own sessions ZSET
    (for when the global index is lost or incomplete); the count settled."""
    due = await redis.zrangebyscore(keys.sessions(account_id), "-inf", now)
    pipe = ScriptPipeline(redis)
    for session_id in due:
        sid = _text(session_id)
        pipe.script(SETTLE, settle_keys(account_id, sid), [sid, now])
    settled = 0
    for result in await pipe.execute():
        if isinstance(result, BaseException):
            raise result
        settled += msgpack.unpackb(result, raw=False)["o"] == "settled"
    return settled


class Sweeper:
    """Runs :func:`sweep_expired` every ``interval`` seconds until stopped.

    ``engine_or_redis`` is a :class:`~quota_engine.charging.engine.ChargingEngine` (its Redis
    client is used) or a ``redis.asyncio.Redis``. When a round fetched ``limit`` due
    index entries (settled or not: entries of sessions that are gone or still alive
    must not hold back expired ones) the next round starts at once; each round removes
    or moves past now every entry it fetched, so this ends. Redis errors are logged
    and retried.
    """

    def __init__(
        self,
        engine_or_redis: Any,
        interval: float = 1.0,
        *,
        limit: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._redis = getattr(engine_or_redis, "redis", engine_or_redis)
        self.interval = interval
        self.limit = limit
        self._clock = clock
        self.settled = 0
        self._fetched = 0

    async def sweep_once(self) -> int:
        self._fetched = 0
        self._fetched, count = await _sweep_round(self._redis, int(self._clock()), self.limit)
        self.settled += count
        return count

    async def run(self, stop_event: asyncio.Event) -> None:
        while not stop_event.is_set():
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Redis down, timeouts: try again next round
                _log.warning("sweeper_round_failed error=%s", error)
                self._fetched = 0
            if self._fetched >= self.limit:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), self.interval)
