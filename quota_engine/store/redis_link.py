"""A lean Redis client for the charging hot path: pipelines on one connection.

Why: under load the OCS spent about 39% of its CPU inside redis-py's asyncio pipeline
machinery (command packing, a parsing coroutine per reply, response callbacks, the
connection pool). The hot path needs much less: pipelines of a few command kinds
(``GET``, ``HMGET``, ``HGETALL``, ``ZADD``, ``ZREM``, ``EVALSHA``), each sent in one
write, replies parsed by hiredis. :class:`RedisLink` does just that:

* one connection (TCP or Unix socket) to a standalone Redis, an
  :class:`asyncio.Protocol` feeding a :class:`hiredis.Reader`;
* commands packed by ``hiredis.pack_command`` (RESP packed here when missing);
* many pipelines in flight at once on the connection: each pipeline's commands go
  out in ONE ``transport.write``; replies are matched to pipelines in FIFO order,
  one future per pipeline (not per command);
* back-pressure: a pipeline waits for the transport's write buffer to drain below
  its high-water mark before it writes;
* a lost connection fails every pipeline in flight with
  :class:`redis.exceptions.ConnectionError`; the next call opens a new connection
  (made lazily, shared by the calls that wait for it). After a failed attempt the
  next one waits an exponential back-off (0.05 s doubling up to
  ``reconnect_max_delay``); a call made meanwhile fails at once with
  ``ConnectionError`` instead of hammering a dead server;
* ``timeout``: a call that has no replies within ``timeout`` seconds (connecting and
  waiting for the write buffer included) fails with
  :class:`redis.exceptions.TimeoutError`. Its pipeline stays queued on the connection:
  replies that come later are read and dropped, so the connection stays in step for
  the calls behind it. When nothing at all came from Redis for ``timeout`` seconds
  while a call waited, Redis is hung or unreachable: the connection is dropped (the
  calls waiting on it fail at once with ``ConnectionError``) and the next call opens a
  new one. A timed-out command may still run on the server later;
* a cancelled call leaves its pipeline's replies to be read and dropped, so the
  connection stays in step;
* an optional :class:`~quota_engine.store.redis_observer.RedisObserver` hears of each
  round trip (its duration), each failure and each reconnection: one call per
  pipeline, never per command.

Replies are raw, as the server sends them (``bytes``, ``int``, ``None``, lists;
status replies such as ``OK`` are ``b"OK"``, where redis-py would give ``True``),
except :meth:`LinkPipeline.hgetall` (a ``dict`` of bytes, as redis-py) and
:meth:`RedisLink.ping` (``True``). Error replies become
:class:`redis.exceptions.ResponseError` (:class:`~redis.exceptions.NoScriptError`
for ``NOSCRIPT``, and redis-py's other subclasses for ``READONLY``, ``OOM``,
``NOPERM``, ``EXECABORT``), with redis-py's message text.

What it does NOT do: Redis Cluster, Sentinel, TLS, pub/sub, RESP3 push messages,
MULTI/EXEC transactions, ``decode_responses``, and no automatic retry of commands: a
command whose connection was lost or that timed out may or may not have run (a script
call need not be idempotent), so the caller decides. The API is the subset of redis-py's asyncio client and pipeline that
:mod:`quota_engine.charging.engine`, :mod:`quota_engine.store.scripts` (``LuaScript``,
``ScriptPipeline``) and the sweeper's hot part use.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
from redis.exceptions import (
    AuthenticationError,
    DataError,
    ExecAbortError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from quota_engine.store.redis_observer import NO_REDIS_OBSERVER, RedisObserver

__all__ = ["LinkPipeline", "RedisAddress", "RedisLink", "pack_command", "parse_url"]


# ---------------------------------------------------------------------- addresses


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where and how to connect: TCP ``host``/``port`` or a Unix socket ``path``."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        where = f"unix:{self.path}" if self.path else f"{self.host}:{self.port}"
        return f"{where} db {self.db}"


def parse_url(url: str) -> RedisAddress:
    """``redis://[[user]:password@]host[:port][/db]`` or ``unix:///path[?db=N]``.

    Both take ``?db=N`` and ``?password=...``/``?username=...`` in the query too.
    """
    parts = urlsplit(url)
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    username = unquote(parts.username) if parts.username else query.get("username")
    password = unquote(parts.password) if parts.password is not None else query.get("password")
    if username and password is None:
        raise ValueError("a Redis URL with a user name needs a password")
    db = query.get("db")
    if parts.scheme == "redis":
        if not db and parts.path.strip("/"):
            db = parts.path.strip("/")
        address = RedisAddress(
            host=parts.hostname or "localhost",
            port=parts.port or 6379,
            db=_db_number(db),
            username=username,
            password=password,
        )
    elif parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// Redis URL needs a socket path")
        address = RedisAddress(
            path=parts.path, db=_db_number(db), username=username, password=password
        )
    else:
        raise ValueError(f"RedisLink supports redis:// and unix:// URLs, not {parts.scheme!r}")
    return address


def _db_number(text: str | None) -> int:
    try:
        db = int(text or 0)
    except ValueError:
        raise ValueError(f"Redis database must be a number, not {text!r}") from None
    if db < 0:
        raise ValueError("Redis database must not be negative")
    return db


# ---------------------------------------------------------------------- RESP


def _pack_resp(args: tuple[Any, ...]) -> bytes:
    """RESP array of bulk strings; the encoding rules of redis-py's ``Encoder``."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bytearray | memoryview):
            data = bytes(arg)
        elif isinstance(arg, float):
            data = repr(arg).encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        else:
            raise DataError(
                f"Invalid input of type: {type(arg).__name__!r}. "
                "Convert to a bytes, string, int or float first."
            )
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


_hiredis_pack = getattr(hiredis, "pack_command", None)


def pack_command(args: tuple[Any, ...]) -> bytes:
    """One command as RESP bytes (``hiredis.pack_command`` when it can)."""
    if _hiredis_pack is not None:
        try:
            packed: bytes = _hiredis_pack(args)
            return packed
        except TypeError:  # bool, None, bytearray, memoryview: the rules of _pack_resp
            pass
    return _pack_resp(args)


_ERRORS: dict[str, type[ResponseError]] = {
    "ERR": ResponseError,
    "NOSCRIPT": NoScriptError,
    "READONLY": ReadOnlyError,
    "OOM": OutOfMemoryError,
    "NOPERM": NoPermissionError,
    "EXECABORT": ExecAbortError,
}


def _reply_error(message: str) -> ResponseError:
    """An error reply as redis-py makes it: a known code picks the class and is cut off."""
    code, _, rest = message.partition(" ")
    kind = _ERRORS.get(code)
    return ResponseError(message) if kind is None else kind(rest)


def _command_name(packed: bytes) -> str:
    return packed.split(b"\r\n", 3)[2].decode("utf-8", "replace")


def _pairs_to_dict(reply: list[Any]) -> dict[Any, Any]:
    items = iter(reply)
    return dict(zip(items, items, strict=True))


def _flatten(first: Any, rest: tuple[Any, ...]) -> list[Any]:
    """redis-py's ``list_or_args``: ``first`` is one key or an iterable of keys."""
    keys = [first] if isinstance(first, bytes | str | int | float) else list(first)
    keys.extend(rest)
    return keys


# ---------------------------------------------------------------------- protocol


class _Pending:
    """One pipeline waiting for its ``count`` replies until ``deadline`` (loop time)."""

    __slots__ = ("count", "deadline", "future", "replies")

    def __init__(
        self, future: asyncio.Future[list[Any]], count: int, deadline: float | None
    ) -> None:
        self.future = future
        self.count = count
        self.deadline = deadline
        self.replies: list[Any] = []


class _LinkProtocol(asyncio.Protocol):
    """The connection: writes packed pipelines, hands replies out in FIFO order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._reader = hiredis.Reader(replyError=_reply_error)
        self._pending: deque[_Pending] = deque()
        self._transport: asyncio.Transport | None = None
        self.paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.lost: str | None = None
        """Why the connection is gone (None while it is up)."""
        self.closed: asyncio.Future[None] = loop.create_future()
        self.heard = loop.time()
        """Loop time when Redis last sent something (or the connection was made)."""
        self.timeout: float | None = None
        """Seconds a call may wait for its replies (None: no limit); see :meth:`_watch`."""
        self._watchdog: asyncio.TimerHandle | None = None

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport, hence no isinstance
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.heard = self._loop.time()
        reader = self._reader
        reader.feed(data)
        pending = self._pending
        while pending:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as error:
                self.lost = f"Redis protocol error: {error}"
                assert self._transport is not None
                self._transport.abort()
                return
            if reply is False:
                return
            head = pending[0]
            head.replies.append(reply)
            if len(head.replies) == head.count:
                pending.popleft()
                if not head.future.done():  # done: cancelled by its caller
                    head.future.set_result(head.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self.lost is None:
            self.lost = f"Redis connection lost: {exc}" if exc else "Redis closed the connection"
        while self._pending:
            future = self._pending.popleft().future
            if not future.done():
                future.set_exception(RedisConnectionError(self.lost))
        self._wake_writers()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake_writers()

    # used by RedisLink

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def request(
        self, data: bytes, count: int, budget: float | None = None
    ) -> asyncio.Future[list[Any]]:
        """Write ``count`` packed commands at once; the future gets their replies, or
        :class:`~redis.exceptions.TimeoutError` when they are not all there within
        ``budget`` seconds (None: :attr:`timeout`, which None makes unlimited)."""
        if self.lost is not None:
            raise RedisConnectionError(self.lost)
        assert self._transport is not None
        future = self._loop.create_future()
        timeout = self.timeout
        if timeout is None:
            self._pending.append(_Pending(future, count, None))
        else:
            deadline = self._loop.time() + (timeout if budget is None else budget)
            self._pending.append(_Pending(future, count, deadline))
            watchdog = self._watchdog
            if watchdog is None:
                self._watchdog = self._loop.call_at(deadline, self._watch)
            elif budget is not None and deadline < watchdog.when():  # a shortened budget
                watchdog.cancel()
                self._watchdog = self._loop.call_at(deadline, self._watch)
        self._transport.write(data)
        return future

    def _watch(self) -> None:
        """The watchdog: one timer per connection, not one per call (a timer per call
        costs a heap push and a cancelled handle per round trip). It runs at the
        earliest deadline of the calls waiting (the calls are few: the batches in
        flight), fails those past their deadline (their replies, when they come, are
        dropped) and is set again for the next. When Redis sent nothing at all for the
        timeout, it is hung or unreachable: the connection is dropped (the calls
        waiting on it fail at once) and the next call opens a new one."""
        self._watchdog = None
        timeout = self.timeout
        if timeout is None or self.lost is not None:
            return
        now = self._loop.time()
        expired = False
        upcoming: float | None = None
        for pending in self._pending:
            deadline = pending.deadline
            if deadline is None or pending.future.done():  # the handshake's; answered
                continue
            if deadline > now:
                upcoming = deadline if upcoming is None else min(upcoming, deadline)
                continue
            pending.future.set_exception(
                RedisTimeoutError(f"Redis did not answer within {timeout:g} s")
            )
            expired = True
        if upcoming is not None:
            self._watchdog = self._loop.call_at(upcoming, self._watch)
        if expired and now - self.heard >= timeout:
            self.lost = f"Redis sent nothing for {timeout:g} s"
            assert self._transport is not None
            self._transport.abort()

    async def drain(self) -> None:
        """Return when the write buffer is below its high-water mark."""
        while self.paused and self.lost is None:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._drain_waiters:
                    self._drain_waiters.remove(waiter)
        if self.lost is not None:
            raise RedisConnectionError(self.lost)

    def _wake_writers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def close(self) -> None:
        if self.lost is None:
            self.lost = "Redis connection closed by the client"
        if self._transport is not None:
            self._transport.close()
        await asyncio.shield(self.closed)


# ---------------------------------------------------------------------- client

RECONNECT_MIN_DELAY = 0.05
"""Seconds of back-off after the first failed attempt to connect; doubled per failure."""


class RedisLink:
    """One connection to a standalone Redis, for pipelines on the hot path.

    ``RedisLink.from_url(url)`` connects at the first call, ``await
    RedisLink.connect(url)`` at once. When the connection is lost, the calls in
    flight fail with :class:`redis.exceptions.ConnectionError` and the next call
    reconnects (one attempt; if it fails, that call fails, and calls fail at once
    until the back-off has passed: 0.05 s, doubling per failed attempt up to
    ``reconnect_max_delay``). ``timeout`` (None: none) bounds every call, connecting
    included (:class:`redis.exceptions.TimeoutError`). Commands are never retried: one
    that was in flight when the connection broke, or that timed out, may or may not
    have run on the server.
    """

    connection_pool = None
    """No pool (what :class:`~quota_engine.charging.engine.ChargingEngine` looks for)."""

    def __init__(
        self,
        address: RedisAddress,
        *,
        connect_timeout: float = 5.0,
        client_name: str | None = None,
        timeout: float | None = None,
        reconnect_max_delay: float = 5.0,
        observer: RedisObserver = NO_REDIS_OBSERVER,
    ) -> None:
        self.address = address
        self.connect_timeout = connect_timeout
        self.client_name = client_name
        self.timeout = timeout
        self.reconnect_max_delay = reconnect_max_delay
        self.observer = observer
        self._protocol: _LinkProtocol | None = None
        self._opening: asyncio.Task[_LinkProtocol] | None = None
        self._closed = False
        self._had_connection = False
        self._backoff = 0.0
        self._next_attempt = 0.0  # time.monotonic() before which no attempt is made
        self._last_failure = ""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisLink:
        """A link to ``url`` (see :func:`parse_url`; ``options`` as the constructor's);
        it connects at its first call."""
        return cls(parse_url(url), **options)

    @classmethod
    async def connect(cls, url: str, **options: Any) -> RedisLink:
        """A link to ``url``, connected (AUTH, SELECT and CLIENT SETNAME done)."""
        link = cls.from_url(url, **options)
        await link.ensure_connected()
        return link

    def __repr__(self) -> str:
        state = "closed" if self._closed else "up" if self.connected else "down"
        return f"RedisLink({self.address}, {state})"

    @property
    def connected(self) -> bool:
        return self._protocol is not None and self._protocol.lost is None

    @property
    def in_flight(self) -> int:
        """Pipelines (and single commands) written and waiting for their replies."""
        return self._protocol.in_flight if self._protocol is not None else 0

    # ------------------------------------------------------------------ connection

    async def ensure_connected(self) -> None:
        """Connect now unless connected (raises ConnectionError/AuthenticationError)."""
        if not self.connected:
            await self._reconnect()

    @property
    def backoff(self) -> float:
        """Seconds the link waits after its last failed attempt to connect (0: none)."""
        return self._backoff

    def reset_backoff(self) -> None:
        """Let the next call try to connect at once (the server is known to be back)."""
        self._next_attempt = 0.0

    async def _reconnect(self) -> _LinkProtocol:
        if self._closed:
            raise RedisConnectionError("the RedisLink is closed")
        if self._opening is None:
            wait = self._next_attempt - time.monotonic()
            if wait > 0:
                raise RedisConnectionError(f"{self._last_failure} (next attempt in {wait:.2f} s)")
            self._opening = asyncio.ensure_future(self._open())
            # a failure that only cancelled callers waited for is not "never retrieved"
            self._opening.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.shield(self._opening)

    async def _open(self) -> _LinkProtocol:
        loop = asyncio.get_running_loop()
        address = self.address
        transport: asyncio.Transport | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                if address.path:
                    transport, protocol = await loop.create_unix_connection(
                        lambda: _LinkProtocol(loop), address.path
                    )
                else:
                    transport, protocol = await loop.create_connection(
                        lambda: _LinkProtocol(loop), address.host, address.port
                    )
                await self._handshake(protocol)
        except BaseException as error:
            if transport is not None:
                transport.abort()
            if isinstance(error, Exception):
                self._failed_attempt(error)
            if isinstance(error, TimeoutError):  # before OSError: it is one
                raise RedisConnectionError(self._last_failure) from None
            if isinstance(error, OSError):
                raise RedisConnectionError(self._last_failure) from error
            raise
        finally:
            self._opening = None
        protocol.timeout = self.timeout
        self._protocol = protocol
        self._backoff = self._next_attempt = 0.0
        if self._had_connection:
            self.observer.reconnected()
        self._had_connection = True
        return protocol

    def _failed_attempt(self, error: Exception) -> None:
        if isinstance(error, TimeoutError):
            self._last_failure = (
                f"timed out connecting to Redis at {self.address} after {self.connect_timeout} s"
            )
        elif isinstance(error, OSError):
            self._last_failure = f"cannot connect to Redis at {self.address}: {error}"
        else:
            self._last_failure = str(error)
        self._backoff = min(max(self._backoff * 2, RECONNECT_MIN_DELAY), self.reconnect_max_delay)
        self._next_attempt = time.monotonic() + self._backoff

    async def _handshake(self, protocol: _LinkProtocol) -> None:
        address = self.address
        commands: list[tuple[Any, ...]] = []
        if address.password is not None:
            user = (address.username,) if address.username else ()
            commands.append(("AUTH", *user, address.password))
        if address.db:
            commands.append(("SELECT", address.db))
        if self.client_name:
            commands.append(("CLIENT", "SETNAME", self.client_name))
        if not commands:
            return
        packed = b"".join(pack_command(command) for command in commands)
        replies = await protocol.request(packed, len(commands))
        for command, reply in zip(commands, replies, strict=True):
            if isinstance(reply, ResponseError):
                if command[0] == "AUTH":
                    raise AuthenticationError(f"Redis AUTH failed at {address}: {reply}")
                raise RedisConnectionError(f"Redis {command[0]} failed at {address}: {reply}")

    async def aclose(self) -> None:
        """Close the connection; calls in flight fail, later calls raise ConnectionError."""
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            await protocol.close()

    async def __aenter__(self) -> RedisLink:
        await self.ensure_connected()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ commands

    async def _request(self, data: bytes, count: int) -> list[Any]:
        """Send ``count`` packed commands in one write; their replies, in order."""
        start = time.perf_counter()
        timeout = self.timeout
        try:
            protocol = self._protocol
            if protocol is None or protocol.lost is not None or protocol.paused:
                protocol = await self._writable(timeout)
                budget = None if timeout is None else timeout - (time.perf_counter() - start)
                replies = await protocol.request(data, count, budget)
            else:
                replies = await protocol.request(data, count)
        except RedisTimeoutError:
            self.observer.failed("timeout")
            raise
        except RedisConnectionError:
            self.observer.failed("connection")
            raise
        self.observer.answered(time.perf_counter() - start)
        return replies

    async def _writable(self, timeout: float | None) -> _LinkProtocol:
        """The connection, opened when needed, its write buffer below the high-water
        mark; within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                protocol = self._protocol
                if protocol is None or protocol.lost is not None:
                    protocol = await self._reconnect()
                if protocol.paused:
                    await protocol.drain()
                return protocol
        except TimeoutError:
            raise RedisTimeoutError(f"Redis did not answer within {timeout:g} s") from None

    def pipeline(self, transaction: bool = False) -> LinkPipeline:
        """A new pipeline (no MULTI/EXEC: ``transaction=True`` is refused)."""
        if transaction:
            raise NotImplementedError("RedisLink pipelines do not support MULTI/EXEC")
        return LinkPipeline(self)

    async def execute_command(self, *args: Any) -> Any:
        """One command; an error reply is raised."""
        reply = (await self._request(pack_command(args), 1))[0]
        if isinstance(reply, ResponseError):
            self.observer.failed("response")
            raise reply
        return reply

    async def ping(self) -> bool:
        return bool(await self.execute_command("PING") == b"PONG")

    async def script_load(self, source: str | bytes) -> bytes:
        """``SCRIPT LOAD``: the script's SHA1 (hex, as bytes)."""
        sha: bytes = await self.execute_command("SCRIPT", "LOAD", source)
        return sha

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        """``EVALSHA``; a script unknown to the server raises NoScriptError."""
        return await self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)


class LinkPipeline:
    """Commands queued, then sent in one write by :meth:`execute` (no MULTI/EXEC).

    The queueing methods return the pipeline (as redis-py's do). After
    :meth:`execute` the pipeline is empty and may be used again.
    """

    __slots__ = ("_commands", "_dicts", "_link")

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._commands: list[bytes] = []
        self._dicts: list[int] = []  # indexes of HGETALL replies, made dicts

    def __len__(self) -> int:
        return len(self._commands)

    def reset(self) -> None:
        """Drop the queued commands."""
        self._commands = []
        self._dicts = []

    def execute_command(self, *args: Any) -> LinkPipeline:
        self._commands.append(pack_command(args))
        return self

    def get(self, name: Any) -> LinkPipeline:
        return self.execute_command("GET", name)

    def hmget(self, name: Any, keys: Any, *args: Any) -> LinkPipeline:
        return self.execute_command("HMGET", name, *_flatten(keys, args))

    def hgetall(self, name: Any) -> LinkPipeline:
        """The reply is a dict (field -> value, bytes), ``{}`` for a missing key."""
        self._dicts.append(len(self._commands))
        return self.execute_command("HGETALL", name)

    def zadd(self, name: Any, mapping: Mapping[Any, float | int]) -> LinkPipeline:
        if not mapping:
            raise DataError("ZADD requires at least one element/score pair")
        args: list[Any] = []
        for member, score in mapping.items():
            args.append(score)
            args.append(member)
        return self.execute_command("ZADD", name, *args)

    def zrem(self, name: Any, *values: Any) -> LinkPipeline:
        return self.execute_command("ZREM", name, *values)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Send the queued commands; their replies in order.

        An error reply is a :class:`~redis.exceptions.ResponseError` in its place;
        with ``raise_on_error`` the first one is raised instead, once every reply
        was read (the other commands ran).
        """
        commands, dicts = self._commands, self._dicts
        if not commands:
            return []
        self.reset()
        replies = await self._link._request(b"".join(commands), len(commands))
        for index in dicts:
            if not isinstance(replies[index], ResponseError):
                replies[index] = _pairs_to_dict(replies[index])
        if raise_on_error:
            for index, reply in enumerate(replies):
                if isinstance(reply, ResponseError):
                    self._link.observer.failed("response")
                    message = reply.args[0] if reply.args else ""
                    name = _command_name(commands[index])
                    reply.args = (
                        f"Command # {index + 1} ({name}) of pipeline caused error: {message}",
                        *reply.args[1:],
                    )
                    raise reply
        return replies
