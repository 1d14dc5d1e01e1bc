"""A live API server in a background thread, for synchronous clients (schemathesis,
the CLI, the docs walk-through): the real application on its own event loop, over a
real Redis, with the demo catalog and the demo subscribers provisioned."""

from __future__ import annotations

import asyncio
import threading

import redis.asyncio as aioredis
from aiohttp import web

from ocs.api.app import create_app
from ocs.api.serving import runner_options
from ocs.catalog_holder import CatalogHolder
from ocs.config import Settings
from ocs.metrics import Metrics
from quota_engine.accounts.provisioning import provision_demo
from quota_engine.charging.engine import ChargingEngine, EngineSettings


class LiveServer:
    def __init__(self, redis_url: str, settings: Settings) -> None:
        self.redis_url = redis_url
        self.settings = settings
        self.port = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="live-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"live API server did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        client = aioredis.Redis.from_url(self.redis_url)
        await provision_demo(client)
        holder = CatalogHolder()
        await holder.start(client)
        engine = ChargingEngine(client, holder.current, EngineSettings())

        async def health() -> dict[str, bool]:
            return {"redis": bool(await client.ping())}

        app = create_app(self.settings, Metrics(), health, store=client, sessions=engine)
        runner = web.AppRunner(app, **runner_options())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
            await holder.stop()
            await client.aclose()
