"""Opening a Redis URL: the client every part of the OCS uses, with one retry policy and
TLS, and the lean link of the charging hot path beside it.

This module takes a URL and TLS files, nothing of the OCS settings: the composition
root (``ocs.redis_store.open_store``) maps its settings here, and starts the private
``redis-server`` when no URL is configured. Tests and tools call it with a URL.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from quota_engine.store.redis_link import RedisAddress, RedisLink

__all__ = ["RedisUnreachable", "TlsFiles", "connect", "link_to", "redis_client", "retry_policy"]


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


def redis_client(url: str, tls: TlsFiles | None = None) -> aioredis.Redis:
    """A redis-py client of ``url`` (bytes replies, :func:`retry_policy`), not yet
    connected. ``tls`` applies to a ``rediss://`` URL; the server's certificate and
    host name are always verified."""
    options: dict[str, Any] = {}
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
    return aioredis.Redis.from_url(url, retry=retry_policy(), **options)


@contextlib.asynccontextmanager
async def connect(url: str, tls: TlsFiles | None = None) -> AsyncIterator[aioredis.Redis]:
    """:func:`redis_client` checked with one ``PING`` (:class:`RedisUnreachable` when it
    fails), closed on exit."""
    client = redis_client(url, tls)
    try:
        try:
            await cast(Awaitable[bool], client.ping())  # redis-py: "awaitable or not"
        except (RedisError, OSError) as error:
            raise RedisUnreachable(error) from None
        yield client
    finally:
        await client.aclose()


def link_to(client: aioredis.Redis) -> RedisLink | None:
    """A :class:`RedisLink` to ``client``'s server (same address, database and
    credentials), for the charging hot path; None for a TLS connection (``rediss://``),
    which RedisLink does not speak: the engine then sends its pipelines through
    ``client``."""
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
    return RedisLink(address, client_name="ocs-charging")
