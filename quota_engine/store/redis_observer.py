"""What a Redis client reports about its calls: :class:`RedisObserver`.

:class:`quota_engine.store.redis_link.RedisLink` (the charging hot path) and the redis-py
client of :func:`quota_engine.store.connect.redis_client` call it; ``ocs`` implements it
with its metrics and the Redis state that ``/readyz`` reads (quota_engine knows nothing of
Prometheus). The calls are cheap by contract: one per round trip, never per command.
"""

from __future__ import annotations

from typing import Final, Literal, Protocol

__all__ = ["NO_REDIS_OBSERVER", "ErrorKind", "RedisObserver"]

#: Why a call failed: no answer within the timeout, the connection could not be opened
#: or was lost, or Redis answered with an error reply.
ErrorKind = Literal["timeout", "connection", "response"]


class RedisObserver(Protocol):
    def answered(self, seconds: float) -> None:
        """A round trip (one command or one pipeline) got its replies after ``seconds``."""

    def failed(self, kind: ErrorKind) -> None:
        """A call failed (``timeout``, ``connection``) or got an error reply (``response``)."""

    def reconnected(self) -> None:
        """A new connection was opened after the previous one was lost."""


class _NoObserver:
    __slots__ = ()

    def answered(self, seconds: float) -> None:
        pass

    def failed(self, kind: ErrorKind) -> None:
        pass

    def reconnected(self) -> None:
        pass


NO_REDIS_OBSERVER: Final[RedisObserver] = _NoObserver()
"""Reports to nobody (the default)."""
