"""What the quota engine needs from a Redis client, as protocols (structural types).

Two clients meet them: ``redis.asyncio.Redis`` (redis-py, bytes responses) and
:class:`~quota_engine.store.redis_link.RedisLink` (the hot path's lean link, which has
pipelines only). Code that takes a client names the protocol of what it calls, so
either one (or a Cluster client, a test double) fits where it may:

* :class:`PipelineClient`: pipelines of plain commands. The engine's hot path
  (identity and account reads, script calls, deadline index updates) needs only this,
  so it runs on a RedisLink.
* :class:`RedisClient`: a pipeline client that also answers single commands: the
  engine's slower side (the sessions view, the sweeper).
* :class:`StoreClient`: a client with what the account, catalog and balance-action
  stores call as well (hashes, sets, lists, streams, publishing, WATCH/MULTI);
  :class:`Subscriber` the pub/sub object they subscribe.

Commands return ``Any``: replies are bytes, ints, lists or maps as the server sends
them, and redis-py types its own returns as "awaitable or not".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = ["Pipeline", "PipelineClient", "RedisClient", "StoreClient", "Subscriber"]


class Pipeline(Protocol):
    """Commands queued, sent in one round trip by :meth:`execute`."""

    def execute_command(self, *args: Any) -> Any: ...

    def get(self, name: str) -> Any: ...

    def hmget(self, name: str, keys: Any, *args: Any) -> Any: ...

    def hgetall(self, name: str) -> Any: ...

    def zadd(self, name: str, mapping: Mapping[Any, float]) -> Any: ...

    def zrem(self, name: str, *values: Any) -> Any: ...

    async def execute(self, raise_on_error: bool = True) -> list[Any]: ...


class PipelineClient(Protocol):
    """A client that makes pipelines (redis-py's Redis, RedisLink)."""

    def pipeline(self, transaction: bool = ...) -> Pipeline: ...


class RedisClient(PipelineClient, Protocol):
    """A client that also answers single commands (redis-py's Redis)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any: ...

    def get(self, name: str) -> Any: ...

    def mget(self, keys: Sequence[str], *args: str) -> Any: ...

    def zrange(self, name: str, start: int, end: int) -> Any: ...

    def zrangebyscore(
        self,
        name: str,
        min: float | str,
        max: float | str,
        start: int | None = None,
        num: int | None = None,
    ) -> Any: ...


class StoreClient(RedisClient, Protocol):
    """What the account, catalog and balance-action stores call (redis-py's asyncio
    Redis or RedisCluster): single commands, publishing, and for WATCH/MULTI a
    transactional pipeline (typed ``Any``: redis-py's own is untyped)."""

    def pipeline(self, transaction: bool = ...) -> Any: ...

    def exists(self, *names: str) -> Any: ...

    def set(self, name: str, value: str | bytes, *, nx: bool = ..., get: bool = ...) -> Any: ...

    def hget(self, name: str, key: str) -> Any: ...

    def hgetall(self, name: str) -> Any: ...

    def smembers(self, name: str) -> Any: ...

    def sadd(self, name: str, *values: str) -> Any: ...

    def srem(self, name: str, *values: str) -> Any: ...

    def llen(self, name: str) -> Any: ...

    def lrange(self, name: str, start: int, end: int) -> Any: ...

    def xlen(self, name: str) -> Any: ...

    def xrange(self, name: str, min: str = ..., max: str = ..., count: int | None = ...) -> Any: ...

    def publish(self, channel: str, message: str) -> Any: ...


class Subscriber(Protocol):
    """A redis-py ``PubSub``, as the store subscribes it to a channel."""

    async def subscribe(self, *channels: str) -> Any: ...
