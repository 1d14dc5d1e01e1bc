"""The sweeper: settles sessions whose deadline passed because their CCR-T never came.

Every session request moves the session's deadline (``now + validity time + grace``)
in two indexes: the account's ``ocs:acct:{P}:A:sessions`` ZSET, written by ccr.lua in
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

from quota_engine.charging.observer import NO_SWEEPER_OBSERVER, RoundOutcome, SweeperObserver
from quota_engine.store import deadlines
from quota_engine.store.clients import RedisClient
from quota_engine.store.contract import SettleArgs, decode_settle
from quota_engine.store.scripts import SETTLE, ScriptPipeline

__all__ = ["RETRY_DELAY", "Sweeper", "settle_account", "sweep_expired"]

_log = logging.getLogger(__name__)

RETRY_DELAY = 300
"""Seconds an index entry whose settle failed is pushed back before the next attempt."""


async def sweep_expired(redis: RedisClient, now: int, limit: int = 100) -> int:
    """Settle up to ``limit`` sessions of ``ocs:deadlines`` due at ``now``; the count settled."""
    return (await _sweep_round(redis, now, limit))[1]


async def _sweep_round(redis: RedisClient, now: int, limit: int) -> tuple[int, int, int]:
    """One round of :func:`sweep_expired`: (index entries fetched, sessions settled,
    settle calls that failed). Every fetched entry is removed or moved past ``now``."""
    members = await deadlines.due_members(redis, now, limit)
    if not members:
        return 0, 0, 0
    pipe = ScriptPipeline(redis)
    calls: list[tuple[Any, int | None]] = []
    for member in members:
        try:
            parts = deadlines.split_member(member)
            if parts is None:
                raise ValueError("not <account>|<session>")
            settle = SettleArgs(parts[0], parts[1], now)
            call_keys = settle.keys()
        except ValueError as error:
            _log.warning("sweeper_bad_entry member=%r error=%s", member, error)
            calls.append((member, None))
            continue
        calls.append((member, pipe.script(SETTLE, call_keys, settle.argv())))
    results = await pipe.execute() if len(pipe) else []
    fix = redis.pipeline(transaction=False)
    settled = failed = 0
    for member, index in calls:
        if index is None:
            fix.execute_command(*deadlines.unindex(member))
            continue
        result = results[index]
        if isinstance(result, BaseException):
            _log.warning("sweeper_settle_failed member=%r error=%s", member, result)
            failed += 1
            fix.execute_command(*deadlines.index(member, now + RETRY_DELAY))
            continue
        answer = decode_settle(result)
        if answer.outcome == "alive" and answer.deadline is not None:
            fix.execute_command(*deadlines.index(member, answer.deadline))
        else:
            settled += answer.outcome == "settled"
            fix.execute_command(*deadlines.unindex(member))
    await fix.execute()
    return len(members), settled, failed


async def settle_account(redis: RedisClient, account_id: str, now: int) -> int:
    """Settle the expired sessions of one account, found by its own sessions ZSET
    (for when the global index is lost or incomplete); the count settled."""
    pipe = ScriptPipeline(redis)
    for session_id in await deadlines.due_sessions(redis, account_id, now):
        settle = SettleArgs(account_id, session_id, now)
        pipe.script(SETTLE, settle.keys(), settle.argv())
    settled = 0
    for result in await pipe.execute():
        if isinstance(result, BaseException):
            raise result
        settled += decode_settle(result).outcome == "settled"
    return settled


class Sweeper:
    """Runs :func:`sweep_expired` every ``interval`` seconds until stopped.

    ``engine_or_redis`` is a :class:`~quota_engine.charging.engine.ChargingEngine` (its Redis
    client is used) or a ``redis.asyncio.Redis``. When a round fetched ``limit`` due
    index entries (settled or not: entries of sessions that are gone or still alive
    must not hold back expired ones) the next round starts at once; each round removes
    or moves past now every entry it fetched, so this ends. Redis errors are logged
    and retried.

    Each round (:meth:`sweep_once`) is reported to ``observer``: ok, or failed (Redis
    failed the round, or a settle call of it failed: ``sweeper_settle_failed``), its
    duration and the sessions it settled.
    """

    def __init__(
        self,
        engine_or_redis: Any,
        interval: float = 1.0,
        *,
        limit: int = 100,
        clock: Callable[[], float] = time.time,
        observer: SweeperObserver | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._redis = getattr(engine_or_redis, "redis", engine_or_redis)
        self.interval = interval
        self.limit = limit
        self._clock = clock
        self._observer = NO_SWEEPER_OBSERVER if observer is None else observer
        self.settled = 0
        self._fetched = 0

    async def sweep_once(self) -> int:
        """One round; the count settled (a failure is reported, then raised)."""
        self._fetched = 0
        started = time.perf_counter()
        try:
            self._fetched, count, failed = await _sweep_round(
                self._redis, int(self._clock()), self.limit
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            self._observer.sweeper_round("failed", time.perf_counter() - started, 0)
            raise
        outcome: RoundOutcome = "failed" if failed else "ok"
        self._observer.sweeper_round(outcome, time.perf_counter() - started, count)
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
