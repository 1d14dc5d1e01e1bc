"""The one way the OCS opens its Redis: :func:`open_store` (``ocs serve``, the ``ocs``
commands that read Redis, and the record exporter).

It maps the ``[redis]`` settings to :func:`quota_engine.store.connect.connect` (which
knows URLs, TLS and the retry policy, and nothing of the settings: quota_engine does
not import ocs) and adds what only the composition root can do: without
``redis.url``, the private ``redis-server`` of ``redis.data_dir``
(:mod:`ocs.embedded_redis`), started for the lifetime of the context and stopped after
it, or, for a command run next to a node (``share_running=True``), the one a running
``ocs serve`` holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import redis.asyncio as aioredis

from ocs.config import Settings, redact_url
from ocs.embedded_redis import HOST, LOCK_FILE, EmbeddedRedis, EmbeddedRedisError
from quota_engine.store.connect import RedisUnreachable, TlsFiles, connect
from quota_engine.store.schema import SchemaError, ensure_schema

__all__ = ["StoreUnavailable", "open_store", "running_embedded_url", "tls_files"]


class StoreUnavailable(Exception):
    """Redis cannot be used; the message says why and how to fix it, and holds no
    password (safe to print and log)."""


def tls_files(settings: Settings) -> TlsFiles | None:
    """The ``redis.tls_*`` files, None when none is set."""
    files = TlsFiles(
        settings.redis_tls_ca_file, settings.redis_tls_cert_file, settings.redis_tls_key_file
    )
    return None if files == TlsFiles() else files


@contextlib.asynccontextmanager
async def open_store(
    settings: Settings, *, share_running: bool = False, check_schema: bool = True
) -> AsyncIterator[aioredis.Redis]:
    """A redis-py client (bytes replies) of the configured Redis, answering ``PING``.

    Without ``redis.url``: the private server of ``redis.data_dir``; with
    ``share_running``, the one a running ``ocs serve`` holds when there is one (see
    :func:`running_embedded_url`), else one started here and stopped on exit. With
    ``check_schema`` (all but ``ocs migrate``), the data must be in this version's key
    schema with ``redis.partitions`` partitions
    (:func:`quota_engine.store.schema.ensure_schema`, which records them on an empty
    Redis). Raises :class:`StoreUnavailable` when the server cannot be started or
    reached, or its data is not in that schema.
    """
    embedded: EmbeddedRedis | None = None
    url = settings.redis_url
    if not url and share_running:
        url = running_embedded_url(settings.redis_data_dir)
    if not url:
        embedded = EmbeddedRedis(Path(settings.redis_data_dir))
        try:
            url = await asyncio.to_thread(embedded.start)
        except EmbeddedRedisError as error:
            raise StoreUnavailable(
                f"no redis.url is set and the private Redis of {settings.redis_data_dir} "
                f"cannot be used: {error}\n"
                "Give the Redis to use with --redis-url, OCS_REDIS_URL or redis.url."
            ) from None
    try:
        async with connect(url, tls_files(settings)) as client:
            if check_schema:
                try:
                    await ensure_schema(client, settings.redis_partitions)
                except SchemaError as error:
                    raise StoreUnavailable(f"Redis at {redact_url(url)}: {error}") from None
            yield client
    except RedisUnreachable as error:
        raise StoreUnavailable(f"cannot reach Redis at {redact_url(url)}: {error}") from None
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def running_embedded_url(data_dir: str | Path) -> str | None:
    """URL of the private redis-server a running ``ocs serve`` holds ``data_dir`` with.

    The data directory's lock file names the server's pid. On Linux, ``/proc`` tells
    whether that process runs in the directory (redis-server changes into its ``--dir``)
    and its port (from its process title ``redis-server 127.0.0.1:PORT``, or from
    ``--port`` when the title is not rewritten). None when none is found.
    """
    directory = Path(data_dir).resolve()
    try:
        pid = int((directory / LOCK_FILE).read_text().split()[0])
        proc = Path(f"/proc/{pid}")
        if Path(os.readlink(proc / "cwd")) != directory:
            return None
        argv = (proc / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ").split()
    except (OSError, ValueError, IndexError):
        return None
    if not argv or "redis-server" not in argv[0]:
        return None
    if "--port" in argv[:-1]:
        port = argv[argv.index("--port") + 1]
    else:
        port = next((a.rpartition(":")[2] for a in argv[1:] if a.startswith(f"{HOST}:")), "")
    return f"redis://{HOST}:{int(port)}/0" if port.isdigit() else None
