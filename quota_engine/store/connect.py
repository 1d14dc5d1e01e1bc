"""Opening a Redis URL: the client every part of the OCS uses, with one retry policy and
TLS, and the lean link of the charging hot path beside it.

This module takes a URL and TLS files, nothing of the OCS settings: the composition
root (``ocs.redis_store.open_store``) maps its settings here, and starts the private
``redis-server`` when no URL is configured. Tests and tools call it with a URL.

Timeouts: with ``timeout``, every command of the client (connecting included) fails with
:class:`redis.exceptions.TimeoutError` when Redis does not answer within it, and the
connection it was on is closed (redis-py disconnects on a timeout, so the next command
never reads a late reply). Publish/subscribe is the exception: a subscriber waits for
messages as long as none comes, so :meth:`ObservedRedis.pubsub` uses a pool of its own
without a read timeout (connecting is still bounded). Nothing the OCS sends blocks on
purpose (no ``BLOCK``, ``BLPOP`` or ``WAIT``), so one timeout fits every other command.
The client's connections write under ``asyncio.timeout`` rather than redis-py's
``asyncio.wait_for``, which on Python 3.11 can swallow a task's cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline, PubSub
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from quota_engine.store.redis_link import RedisAddress, RedisLink
from quota_engine.store.redis_observer import NO_REDIS_OBSERVER, ErrorKind, RedisObserver

__all__ = [
    "ObservedRedis",
    "RedisUnreachable",
    "TlsFiles",
    "connect",
    "link_to",
    "redis_client",
    "retry_policy",
]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for a ``rediss://`` server: the CA certificates to verify it with
    (None: the system's) and a client certificate with its key, when it asks for one."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class RedisUnreachable(RedisError):
    """The first ``PING`` failed; ``cause`` says why (the URL is not in the message:
    it may hold a password)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def retry_policy() -> Retry:
    """One immediate retry of a command whose connection was lost, none after a
    timeout. Every write the OCS sends is idempotent (scripts keyed by session and
    request number, balance actions by their id, provisioning by content), so a
    command resent on a new connection cannot charge twice; a timed-out one may still
    be running, and waiting seconds between retries would outlast the client's Tx
    timer anyway. (redis-py's asyncio ``Retry``: its synchronous one, accepted by the
    asyncio client all the same, never retries, as the retry loop returns the command's
    coroutine unawaited.)"""
    return Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


T = TypeVar("T")


def _error_kind(error: BaseException) -> ErrorKind | None:
    if isinstance(error, RedisTimeoutError):
        return "timeout"
    if isinstance(error, RedisConnectionError):
        return "connection"
    if isinstance(error, ResponseError):
        return "response"
    return None


async def _observed(observer: RedisObserver, call: Awaitable[T]) -> T:
    """Await ``call`` (one command or pipeline) and tell ``observer`` its round trip, or
    why it failed (an error reply is a round trip too)."""
    start = time.perf_counter()
    try:
        reply = await call
    except RedisError as error:
        kind = _error_kind(error)
        if kind is not None:
            observer.failed(kind)
            if kind == "response":
                observer.answered(time.perf_counter() - start)
        raise
    observer.answered(time.perf_counter() - start)
    return reply


class ObservedRedis(aioredis.Redis):
    """redis-py's asyncio client telling a :class:`RedisObserver` of each command and
    pipeline (its round trip, or why it failed) and of each reconnection, with a
    subscriber pool without read timeout (:meth:`pubsub`)."""

    observer: RedisObserver = NO_REDIS_OBSERVER
    _pubsub_pool: ConnectionPool | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        call = super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return await _observed(self.observer, call)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipe = _ObservedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.observer = self.observer
        return pipe

    def pubsub(self, **kwargs: Any) -> PubSub:
        """A subscriber on connections of their own that wait for messages without a
        read timeout (a silent channel is not a failure); connecting keeps the client's
        connect timeout."""
        if self._pubsub_pool is None:
            pool = self.connection_pool
            self._pubsub_pool = ConnectionPool(
                connection_class=pool.connection_class,
                max_connections=pool.max_connections,
                **{**pool.connection_kwargs, "socket_timeout": None},
            )
        return PubSub(self._pubsub_pool, **kwargs)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self._pubsub_pool is not None:
            await self._pubsub_pool.disconnect()


class _ObservedPipeline(Pipeline):
    observer: RedisObserver = NO_REDIS_OBSERVER

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if not self.command_stack:
            return await super().execute(raise_on_error)
        return await _observed(self.observer, super().execute(raise_on_error))


class _CancellableWrites(AbstractConnection):
    """redis-py's write with its socket timeout under ``asyncio.timeout`` instead of
    ``asyncio.wait_for``: on Python 3.11 ``wait_for`` loses a cancellation that arrives
    as the wrapped write completes (the task carries on as if never cancelled), so a
    node waiting for a cancelled background task never stopped. The rest is
    redis-py's ``send_packed_command`` (redis 7.4)."""

    async def send_packed_command(
        self, command: bytes | str | Any, check_health: bool = True
    ) -> None:
        timeout = self.socket_timeout
        if not timeout:
            await super().send_packed_command(command, check_health)
            return
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()  # type: ignore[no-untyped-call]
        try:
            if isinstance(command, str):
                command = command.encode()
            if isinstance(command, bytes):
                command = [command]
            async with asyncio.timeout(timeout):
                await self._send_packed_command(command)
        except TimeoutError:  # before OSError: it is one
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as error:
            await self.disconnect(nowait=True)
            number, message = ("UNKNOWN", error.args[0]) if len(error.args) == 1 else error.args[:2]
            raise RedisConnectionError(
                f"Error {number} while writing to socket. {message}."
            ) from error
        except BaseException:
            await self.disconnect(nowait=True)
            raise


class _TcpConnection(_CancellableWrites, Connection):
    pass


class _SslConnection(_CancellableWrites, SSLConnection):
    pass


class _UnixConnection(_CancellableWrites, UnixDomainSocketConnection):
    pass


def _connection_class(url: str) -> type[AbstractConnection]:
    if url.startswith("rediss://"):
        return _SslConnection
    if url.startswith("unix://"):
        return _UnixConnection
    return _TcpConnection


def _counting_reconnects(observer: RedisObserver) -> Any:
    """A ``redis_connect_func``: the usual handshake, and a reconnection reported when the
    connection had been connected before (redis-py reuses a connection object after
    it was lost)."""

    async def on_connect(connection: AbstractConnection) -> None:
        await connection.on_connect_check_health(check_health=True)
        if getattr(connection, "_ocs_connected_before", False):
            observer.reconnected()
        connection._ocs_connected_before = True  # type: ignore[attr-defined]

    return on_connect


def redis_client(
    url: str,
    tls: TlsFiles | None = None,
    *,
    timeout: float | None = None,
    observer: RedisObserver = NO_REDIS_OBSERVER,
) -> ObservedRedis:
    """A redis-py client of ``url`` (bytes replies, :func:`retry_policy`), not yet
    connected. ``tls`` applies to a ``rediss://`` URL; the server's certificate and
    host name are always verified. ``timeout`` bounds every command and connecting
    (None: no bound), except subscribers' waits; ``observer`` hears of every command
    and pipeline."""
    options: dict[str, Any] = {}
    if timeout is not None:
        options["socket_timeout"] = timeout
        options["socket_connect_timeout"] = timeout
        options["connection_class"] = _connection_class(url)
    if observer is not NO_REDIS_OBSERVER:
        options["redis_connect_func"] = _counting_reconnects(observer)
    if tls is not None and tls != TlsFiles():
        if not url.startswith("rediss://"):
            raise ValueError("TLS files need a rediss:// URL")
        for option, path in (
            ("ssl_ca_certs", tls.ca_file),
            ("ssl_certfile", tls.cert_file),
            ("ssl_keyfile", tls.key_file),
        ):
            if path is not None:
                options[option] = path
    client = cast(ObservedRedis, ObservedRedis.from_url(url, retry=retry_policy(), **options))
    client.observer = observer
    return client


@contextlib.asynccontextmanager
async def connect(
    url: str,
    tls: TlsFiles | None = None,
    *,
    timeout: float | None = None,
    observer: RedisObserver = NO_REDIS_OBSERVER,
) -> AsyncIterator[ObservedRedis]:
    """:func:`redis_client` checked with one ``PING`` (:class:`RedisUnreachable` when it
    fails), closed on exit."""
    client = redis_client(url, tls, timeout=timeout, observer=observer)
    try:
        try:
            await cast(Awaitable[bool], client.ping())  # redis-py: "awaitable or not"
        except (RedisError, OSError) as error:
            raise RedisUnreachable(error) from None
        yield client
    finally:
        await client.aclose()


def link_to(
    client: aioredis.Redis,
    *,
    timeout: float | None = None,
    reconnect_max_delay: float = 5.0,
    observer: RedisObserver = NO_REDIS_OBSERVER,
) -> RedisLink | None:
    """A :class:`RedisLink` to ``client``'s server (same address, database and
    credentials), for the charging hot path; None for a TLS connection (``rediss://``),
    which RedisLink does not speak: the engine then sends its pipelines through
    ``client``. ``timeout`` bounds every call of the link, connecting included (None:
    5 s to connect, calls unbounded); ``reconnect_max_delay`` caps its back-off."""
    pool = client.connection_pool
    if issubclass(pool.connection_class, SSLConnection):
        return None
    options = pool.connection_kwargs
    address = RedisAddress(
        host=options.get("host", "localhost"),
        port=int(options.get("port", 6379)),
        path=options.get("path"),
        db=int(options.get("db", 0)),
        username=options.get("username"),
        password=options.get("password"),
    )
    return RedisLink(
        address,
        client_name="ocs-charging",
        connect_timeout=5.0 if timeout is None else timeout,
        timeout=timeout,
        reconnect_max_delay=reconnect_max_delay,
        observer=observer,
    )
