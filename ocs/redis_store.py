"""The one way the OCS opens its Redis: :func:`open_store` (``ocs serve``, the ``ocs``
commands that read Redis, and the record exporter).

It maps the ``[redis]`` settings to :func:`quota_engine.store.connect.connect` (which
knows URLs, TLS and the retry policy, and nothing of the settings: quota_engine does
not import ocs) and adds what only the composition root can do: without
``redis.url``, the private ``redis-server`` of ``redis.data_dir``
(:mod:`ocs.embedded_redis`), started for the lifetime of the context and stopped after
it, or, for a command run next to a node (``share_running=True``), the one a running
``ocs serve`` holds.

Every command has the timeout ``redis.timeout`` (subscribers' waits excepted, see
:mod:`quota_engine.store.connect`). ``ocs serve`` passes a :class:`Supervision`: the
private server is then watched, and when it dies (killed, out of memory) it is reaped,
logged at ERROR (``embedded_redis_died``) and started again on the same port and data
directory, so every client reconnects to it and its AOF keeps the balances; after
``redis.embedded_max_restarts`` restarts within :data:`RESTART_WINDOW` seconds the
supervision gives up (``embedded_redis_gave_up``) and asks the node to stop, which then
exits 3 (:class:`EmbeddedRedisLost`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import redis.asyncio as aioredis

from ocs.cancellation import cancel_and_wait
from ocs.config import Settings, redact_url
from ocs.embedded_redis import HOST, LOCK_FILE, EmbeddedRedis, EmbeddedRedisError
from ocs.logs import log_event
from ocs.metrics.redis import RedisMetrics
from quota_engine.store.connect import RedisUnreachable, TlsFiles, connect
from quota_engine.store.redis_observer import NO_REDIS_OBSERVER, RedisObserver
from quota_engine.store.schema import SchemaError, ensure_schema

__all__ = [
    "RESTART_WINDOW",
    "EmbeddedRedisLost",
    "StoreUnavailable",
    "Supervision",
    "open_store",
    "running_embedded_url",
    "tls_files",
]

_log = logging.getLogger(__name__)

RESTART_WINDOW = 60.0
"""Seconds over which restarts of the private redis-server are counted against
``redis.embedded_max_restarts``."""
RESTART_RETRY_DELAY = 1.0
"""Seconds before another attempt when a restart failed."""


class StoreUnavailable(Exception):
    """Redis cannot be used; the message says why and how to fix it, and holds no
    password (safe to print and log)."""


def tls_files(settings: Settings) -> TlsFiles | None:
    """The ``redis.tls_*`` files, None when none is set."""
    files = TlsFiles(
        settings.redis_tls_ca_file, settings.redis_tls_cert_file, settings.redis_tls_key_file
    )
    return None if files == TlsFiles() else files


class EmbeddedRedisLost(Exception):
    """The private redis-server died more often than ``redis.embedded_max_restarts``
    within :data:`RESTART_WINDOW`: ``ocs serve`` stops and exits 3."""


class Supervision:
    """How ``ocs serve`` watches its private redis-server (see the module's docstring).

    ``on_give_up`` is called once, when the restarts are used up (the node stops);
    ``failure`` then holds the :class:`EmbeddedRedisLost` to raise. ``on_restart``
    callbacks run after each successful restart (the charging link drops its back-off).
    """

    def __init__(
        self,
        max_restarts: int,
        on_give_up: Callable[[], None],
        *,
        metrics: RedisMetrics | None = None,
        poll_interval: float = 0.1,
        window: float = RESTART_WINDOW,
    ) -> None:
        self.max_restarts = max_restarts
        self.on_give_up = on_give_up
        self.metrics = metrics
        self.poll_interval = poll_interval
        self.window = window
        self.failure: EmbeddedRedisLost | None = None
        self.on_restart: list[Callable[[], None]] = []
        self.restarts = 0

    async def watch(self, embedded: EmbeddedRedis) -> None:
        """Until cancelled or given up: reap, report and restart ``embedded`` when it dies."""
        recent: deque[float] = deque()
        reported = 0  # pid of the last death reported
        while True:
            await asyncio.sleep(self.poll_interval)
            code = embedded.exit_code()  # waitpid: reaps a dead child at once
            if code is None:
                continue
            pid = embedded.pid
            if pid != reported:
                reported = pid
                log_event(_log, "embedded_redis_died", level=logging.ERROR, pid=pid,
                          exit_code=code, signal=_signal_name(code), log=str(embedded.log_path))  # fmt: skip
            now = time.monotonic()
            while recent and now - recent[0] > self.window:
                recent.popleft()
            if len(recent) >= self.max_restarts:
                self._give_up(len(recent))
                return
            recent.append(now)
            if await self._restart(embedded):
                self.restarts += 1
                if self.metrics is not None:
                    self.metrics.embedded_restarted()
                for callback in self.on_restart:
                    callback()
            else:  # counted against the limit too; not tried again at once
                await asyncio.sleep(RESTART_RETRY_DELAY)

    async def _restart(self, embedded: EmbeddedRedis) -> bool:
        # shielded: the thread cannot be stopped; a cancellation (repeated ones too, as
        # cancel_and_wait sends) waits for it, so the watch never ends while a server is
        # being started (EmbeddedRedis serialises restart and stop besides)
        restart = asyncio.ensure_future(asyncio.to_thread(embedded.restart))
        try:
            await asyncio.shield(restart)
        except asyncio.CancelledError:
            while not restart.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([restart])
            raise
        except EmbeddedRedisError as error:
            log_event(_log, "embedded_redis_restart_failed", level=logging.ERROR,
                      problem=str(error).splitlines()[0])  # fmt: skip
            return False
        return True

    def _give_up(self, restarts: int) -> None:
        message = (
            f"the private redis-server died again after {restarts} restarts within "
            f"{self.window:g} s (redis.embedded_max_restarts = {self.max_restarts}); "
            "see its log in redis.data_dir"
        )
        log_event(_log, "embedded_redis_gave_up", level=logging.ERROR, restarts=restarts,
                  max_restarts=self.max_restarts, window=self.window)  # fmt: skip
        self.failure = EmbeddedRedisLost(message)
        self.on_give_up()


def _signal_name(code: int) -> str | None:
    if code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return str(-code)


@contextlib.asynccontextmanager
async def open_store(
    settings: Settings,
    *,
    share_running: bool = False,
    check_schema: bool = True,
    observer: RedisObserver = NO_REDIS_OBSERVER,
    supervision: Supervision | None = None,
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

    Every command has the timeout ``redis.timeout``; ``observer`` hears of each
    (``ocs serve``: the ``general`` client's metrics). With ``supervision``, a private
    server started here is watched for as long as the context lasts.
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
    watching: asyncio.Task[None] | None = None
    try:
        if embedded is not None and supervision is not None:
            watching = asyncio.create_task(supervision.watch(embedded), name="ocs-redis-watch")
        async with connect(
            url, tls_files(settings), timeout=settings.redis_timeout, observer=observer
        ) as client:
            if check_schema:
                try:
                    await ensure_schema(client, settings.redis_partitions)
                except SchemaError as error:
                    raise StoreUnavailable(f"Redis at {redact_url(url)}: {error}") from None
            yield client
    except RedisUnreachable as error:
        raise StoreUnavailable(f"cannot reach Redis at {redact_url(url)}: {error}") from None
    finally:
        if watching is not None:
            await cancel_and_wait(watching)
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
