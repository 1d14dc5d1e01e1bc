"""The exporter as a service: ``ocs export``, and the task ``ocs serve`` runs with
``records.export`` on.

``ocs export`` opens the Redis ``ocs serve`` would (the embedded one of
``redis.data_dir`` when it is running, with no ``redis.url``), serves ``/metrics`` and
``/health`` on ``http.host:records.export_metrics_port``, and exports until SIGTERM or
SIGINT, then seals its open segments and hands its partitions back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from ocs.api.serving import ApiRunner
from ocs.config import Settings
from ocs.logs import log_event
from ocs.metrics import Metrics
from ocs.records.exporter import Exporter, ExportObserver, ExportSettings, exporter_name
from ocs.records.writer import SegmentSettings
from ocs.redis_store import StoreUnavailable, open_store
from quota_engine.store.record_feed import RecordFeed

__all__ = ["export", "export_settings", "exporting", "run", "runs_in_serve"]

logger = logging.getLogger("ocs.records.service")

RESTART_DELAY = 5.0
"""Seconds before an exporter that failed (not a Redis outage) is started again."""


def export_settings(settings: Settings) -> ExportSettings:
    """The exporter's settings from ``[records]``."""
    return ExportSettings(
        directory=Path(settings.records_directory),
        segments=SegmentSettings(
            max_bytes=settings.records_segment_max_bytes,
            max_age=settings.records_segment_max_age,
        ),
        batch=settings.records_export_batch,
        poll_interval=settings.records_export_poll_interval,
        lease_ttl=settings.records_export_lease,
        stream_cap=settings.records_stream_cap,
    )


def runs_in_serve(settings: Settings) -> bool:
    """Whether ``ocs serve`` runs the exporter: ``records.export``, where ``auto`` means
    on with the embedded Redis."""
    if settings.records_export == "auto":
        return not settings.redis_url
    return settings.records_export == "on"


async def _supervise(
    client: Any, settings: Settings, observer: ExportObserver, stop: asyncio.Event
) -> None:
    """Run exporters until ``stop``; one that fails is logged and replaced (what it
    had not acknowledged is in Redis still, and the next one exports it)."""
    while not stop.is_set():
        exporter = Exporter(
            RecordFeed(client, exporter_name()), export_settings(settings), observer
        )
        try:
            await exporter.run(stop)
        except Exception as error:
            log_event(logger, "export_failed", level=logging.ERROR, error=repr(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RESTART_DELAY)


@contextlib.asynccontextmanager
async def exporting(
    client: Any, settings: Settings, observer: ExportObserver
) -> AsyncIterator[None]:
    """The exporter running as a task for the lifetime of the context (``ocs serve``)."""
    stop = asyncio.Event()
    task = asyncio.create_task(_supervise(client, settings, observer, stop), name="ocs-export")
    try:
        yield
    finally:
        stop.set()
        await task


async def export(settings: Settings, stop: asyncio.Event) -> None:
    """``ocs export`` until ``stop`` is set."""
    metrics = Metrics()
    async with open_store(settings, share_running=True) as client:

        async def serve_metrics(request: web.Request) -> web.Response:
            body, content_type = metrics.render(request.headers.get("Accept"))
            return web.Response(body=body, headers={"Content-Type": content_type})

        async def health(request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        app = web.Application()
        app.router.add_get("/metrics", serve_metrics)
        app.router.add_get("/health", health)
        # bounded and timed like the node's API: scrapers and stray clients cannot
        # hold the descriptors the exporter's partition locks need
        runner = ApiRunner(app, settings, metrics.http)
        await runner.setup()
        site = web.TCPSite(runner, settings.http_host, settings.records_export_metrics_port)
        await site.start()
        print(
            f"exporting rated records to {settings.records_directory}; metrics on "
            f"http://{settings.http_host}:{settings.records_export_metrics_port}/metrics",
            flush=True,
        )
        try:
            await _supervise(client, settings, metrics, stop)
        finally:
            await runner.cleanup()


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGHUP too, as ocs serve: a closed terminal must not kill the exporter (and the
    # private redis-server it may have started) without stopping them
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)
    await export(settings, stop)


def run(settings: Settings) -> int:
    """Entry point of ``ocs export``; returns the process exit code."""
    try:
        asyncio.run(_main(settings))
    except StoreUnavailable as error:
        print(f"ocs export: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the metrics port is taken, the directory cannot be written
        print(f"ocs export: {error}", file=sys.stderr)
        return 2
    return 0
