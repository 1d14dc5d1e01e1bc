"""The Lua scripts of quota_engine/store/lua/ as objects: loaded once, called by EVALSHA.

A script's text is its ``.lua`` file with each ``-- @include <file>`` line replaced by
that file (``lib.lua``, the shared functions). The SHA1 is computed here, so a call is
one ``EVALSHA``; a server that does not know the script answers NOSCRIPT, and the
script is then loaded (``SCRIPT LOAD``) and called again. That happens after a Redis
restart, a ``SCRIPT FLUSH`` or a fail-over to a replica that never saw the script.

Two ways to call:

* ``await CCR(redis, keys, args)`` on a ``redis.asyncio.Redis``;
* :class:`ScriptPipeline` for many calls in one round trip (also on a Redis Cluster
  pipeline: the calls are queued as raw ``EVALSHA`` commands, which redis-py's
  ``ClusterPipeline`` routes by key, whereas it refuses its ``evalsha()`` method):
  queue script calls and plain commands, ``await execute()``; script calls that failed with NOSCRIPT are
  loaded and run again, in order, and their results put in place. A script that was
  not run cannot have written anything, so running it again is safe.

``CCR(pipeline, keys, args)`` on a plain redis-py pipeline also works: the script is
registered with the pipeline, which checks (``SCRIPT EXISTS``) and loads it before
executing; that costs one more round trip, which :class:`ScriptPipeline` avoids.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError, ResponseError

__all__ = [
    "ACK_RECORDS",
    "BALANCE",
    "BALANCE_ACTION",
    "CCR",
    "CREDIT",
    "EVENT",
    "EXPORT_LEASE",
    "LUA_DIR",
    "PUT_BUCKET",
    "REFUND",
    "RELEASE_IDENTITY",
    "SETTLE",
    "SET_STATUS",
    "LuaScript",
    "ScriptPipeline",
    "load_source",
]

LUA_DIR = Path(__file__).with_name("lua")
_INCLUDE = re.compile(r"^-- @include (\S+)[ \t]*$", re.M)


def load_source(name: str, *, _seen: tuple[str, ...] = ()) -> str:
    """The text of ``lua/<name>`` with its ``-- @include`` lines expanded."""
    if name in _seen:
        raise ValueError(f"include cycle: {' -> '.join((*_seen, name))}")
    text = (LUA_DIR / name).read_text(encoding="utf-8")
    return _INCLUDE.sub(lambda m: load_source(m.group(1), _seen=(*_seen, name)), text)


def _is_noscript(error: BaseException) -> bool:
    return isinstance(error, NoScriptError) or (
        isinstance(error, ResponseError) and str(error).startswith("NOSCRIPT")
    )


class LuaScript:
    """One Lua script: ``source``, its ``sha`` (SHA1 hex) and a ``name`` for messages.

    ``script`` is an alias of ``source``: redis-py pipelines read ``.sha`` and
    ``.script`` of the scripts registered with them.
    """

    __slots__ = ("name", "sha", "source")

    def __init__(self, source: str, name: str = "<lua>") -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    @classmethod
    def from_file(cls, name: str) -> LuaScript:
        return cls(load_source(name), name)

    @property
    def script(self) -> str:
        return self.source

    def __repr__(self) -> str:
        return f"LuaScript({self.name!r}, sha={self.sha[:12]})"

    async def load(self, client: Any) -> None:
        """``SCRIPT LOAD`` it (the server answers the same SHA1)."""
        sha = await client.script_load(self.source)
        if isinstance(sha, bytes):
            sha = sha.decode()
        if sha != self.sha:  # pragma: no cover - would mean a different hash function
            raise RuntimeError(f"{self.name}: server SHA1 {sha} != {self.sha}")

    def __call__(self, client: Any, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        """Run on a client (returns an awaitable) or queue on a redis-py pipeline."""
        if isinstance(client, Pipeline):
            client.scripts.add(self)  # type: ignore[arg-type]
            return client.evalsha(self.sha, len(keys), *keys, *args)
        return self._run(client, keys, args)

    async def _run(self, client: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except ResponseError as error:
            if not _is_noscript(error):
                raise
        await self.load(client)
        return await client.evalsha(self.sha, len(keys), *keys, *args)


class ScriptPipeline:
    """Script calls and plain commands sent in one round trip (no MULTI).

    ``script()`` and ``command()`` return the index of their result in the list
    ``execute()`` returns. Errors come back in that list as exception objects (they
    are not raised), so one failing call does not hide the others' results.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._pipe = client.pipeline(transaction=False)
        self._scripts: list[tuple[int, LuaScript, tuple[Any, ...], tuple[Any, ...]]] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def script(self, script: LuaScript, keys: Sequence[Any], args: Sequence[Any]) -> int:
        keys, args = tuple(keys), tuple(args)
        _queue_evalsha(self._pipe, script, keys, args)
        self._scripts.append((self._count, script, keys, args))
        self._count += 1
        return self._count - 1

    def command(self, name: str, *args: Any) -> int:
        self._pipe.execute_command(name, *args)
        self._count += 1
        return self._count - 1

    async def execute(self) -> list[Any]:
        if not self._count:
            return []
        results = list(await self._pipe.execute(raise_on_error=False))
        missing = [item for item in self._scripts if _is_noscript_result(results[item[0]])]
        if missing:
            for script in {item[1].sha: item[1] for item in missing}.values():
                await script.load(self._client)
            retry = self._client.pipeline(transaction=False)
            for _, script, keys, args in missing:
                _queue_evalsha(retry, script, keys, args)
            again = await retry.execute(raise_on_error=False)
            for (index, _, _, _), result in zip(missing, again, strict=True):
                results[index] = result
        self._pipe = self._client.pipeline(transaction=False)
        self._scripts = []
        self._count = 0
        return results


def _queue_evalsha(pipe: Any, script: LuaScript, keys: Sequence[Any], args: Sequence[Any]) -> None:
    # execute_command, not pipe.evalsha(): redis-py's ClusterPipeline blocks the
    # evalsha() method, while the raw command is routed by its first key's slot
    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)


def _is_noscript_result(result: Any) -> bool:
    return isinstance(result, BaseException) and _is_noscript(result)


CCR = LuaScript.from_file("ccr.lua")
EVENT = LuaScript.from_file("event.lua")
REFUND = LuaScript.from_file("refund.lua")
BALANCE = LuaScript.from_file("balance.lua")
SETTLE = LuaScript.from_file("settle.lua")

# the account side: provisioning, status changes, credits, balance actions
PUT_BUCKET = LuaScript.from_file("put_bucket.lua")
CREDIT = LuaScript.from_file("credit.lua")
SET_STATUS = LuaScript.from_file("set_status.lua")
RELEASE_IDENTITY = LuaScript.from_file("release_identity.lua")
BALANCE_ACTION = LuaScript.from_file("balance_action.lua")

# the record export (quota_engine/store/record_feed.py)
ACK_RECORDS = LuaScript.from_file("ack_records.lua")
EXPORT_LEASE = LuaScript.from_file("export_lease.lua")
