"""The session deadline indexes, for the sweeper.

Two indexes hold every open session's deadline (Unix seconds): the account's own
``ocs:acct:{P}:A:sessions`` ZSET, written by ccr.lua and settle.lua in their atomic
calls, and the global ``ocs:deadlines`` ZSET (member ``<account>|<session-id>``),
which no script may write (it has no hash tag, so it lives in another slot on a
Cluster): the engine queues its updates next to the script calls, and the sweeper
reads the due entries from it. The functions here return the commands as tuples for
the caller's pipeline, so no caller names the key.
"""

from __future__ import annotations

from typing import Any

from quota_engine.store import keys
from quota_engine.store.clients import RedisClient

__all__ = ["due_members", "due_sessions", "index", "member", "split_member", "unindex"]


def member(account_id: str, session_id: str) -> str:
    """The ``ocs:deadlines`` member of a session (account ids never contain ``|``)."""
    return f"{account_id}|{session_id}"


def split_member(value: bytes | str) -> tuple[str, str] | None:
    """``(account, session)`` of a member; None when it is not ``<account>|<session>``."""
    text = value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
    account_id, sep, session_id = text.partition("|")
    if not sep or not account_id or not session_id:
        return None
    return account_id, session_id


def index(session_member: Any, deadline: int) -> tuple[Any, ...]:
    """The command that indexes a session at ``deadline`` (ZADD)."""
    return ("ZADD", keys.DEADLINES, deadline, session_member)


def unindex(session_member: Any) -> tuple[Any, ...]:
    """The command that drops a session from the index (ZREM)."""
    return ("ZREM", keys.DEADLINES, session_member)


async def due_members(redis: RedisClient, now: int, limit: int) -> list[Any]:
    """Up to ``limit`` members of ``ocs:deadlines`` due at ``now``, soonest first."""
    return list(await redis.zrangebyscore(keys.DEADLINES, "-inf", now, start=0, num=limit))


async def due_sessions(redis: RedisClient, account_id: str, now: int) -> list[str]:
    """The sessions of one account due at ``now``, by the account's own index."""
    due = await redis.zrangebyscore(keys.sessions(account_id), "-inf", now)
    return [s.decode("utf-8", "surrogateescape") if isinstance(s, bytes) else s for s in due]
