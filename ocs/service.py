"""`ocs serve`: the composition root that starts and stops every part of one OCS node.

Start order: Redis (embedded when no URL is configured), the charging engine and its
sweeper, the record exporter (``records.export``), the Diameter server, the HTTP side. Stop order on SIGTERM/SIGINT is the reverse, with the Diameter side first told to
disconnect gracefully (DPR with Disconnect-Cause REBOOTING, in-flight answers finished,
DPA awaited) so network elements fail over cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar, cast

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import Gauge
from redis.exceptions import RedisError

from ocs.api.app import create_app
from ocs.api.serving import ApiRunner
from ocs.billing_schedule import billing_schedule
from ocs.cancellation import cancel_and_wait
from ocs.catalog_holder import CatalogHolder, NoActiveCatalog
from ocs.config import Settings
from ocs.gy.application import CreditControlApplication
from ocs.gy.coalescer import ChargingCoalescer
from ocs.gy.notifier import Notifier
from ocs.gy.peer_routes import Routes
from ocs.logs import log_event
from ocs.metrics import Metrics
from ocs.metrics.node import NodeMetrics
from ocs.metrics.redis import RedisState
from ocs.node_monitor import monitoring
from ocs.records.service import exporting, runs_in_serve
from ocs.redis_store import EmbeddedRedisLost, StoreUnavailable, Supervision, open_store
from protocol.answer_cache import AnswerCache
from protocol.base import PeerPolicy
from protocol.connection import Application, Node, PeerConnection, Timers
from protocol.messages import Codec, LocalIdentity
from protocol.server import DiameterServer
from quota_engine.accounts.provisioning import provision_demo
from quota_engine.charging.engine import ChargingEngine
from quota_engine.charging.observer import NO_OBSERVER, EngineObserver
from quota_engine.charging.settings import EngineSettings
from quota_engine.charging.sweeper import Sweeper
from quota_engine.numbering import NumberingPlan
from quota_engine.store.connect import link_to
from quota_engine.store.redis_observer import NO_REDIS_OBSERVER, RedisObserver

logger = logging.getLogger("ocs.service")

T = TypeVar("T")


def build_node(
    settings: Settings,
    metrics: Metrics,
    application_factory: Callable[[Codec], Application] = CreditControlApplication,
) -> Node:
    """The Diameter node of this OCS, serving the application ``application_factory`` makes."""
    identity = LocalIdentity(
        origin_host=settings.diameter_origin_host,
        origin_realm=settings.diameter_origin_realm,
        vendor_id=settings.diameter_vendor_id,
        product_name=settings.diameter_product_name,
        firmware_revision=settings.diameter_firmware_revision,
    )
    codec = Codec(identity)
    application = application_factory(codec)
    policy = PeerPolicy.build(
        [application.application_id],
        settings.diameter_allowed_peers,
        settings.diameter_allowed_networks,
    )
    timers = Timers(
        watchdog_interval=settings.diameter_watchdog_interval,
        cer_timeout=settings.diameter_cer_timeout,
        dpa_timeout=settings.diameter_dpa_timeout,
        max_message_size=settings.diameter_max_message_size,
        max_inflight_batches=settings.diameter_max_inflight_batches,
    )
    cache = AnswerCache(settings.diameter_duplicate_cache_size, settings.diameter_duplicate_ttl)
    observer = metrics.diameter_observer(settings.diameter_allowed_peers)
    return Node(codec, policy, timers, application, observer, cache)


def engine_settings(settings: Settings) -> EngineSettings:
    """The engine's settings from ``[charging]``: field ``x`` of :class:`EngineSettings`
    is setting ``charging_x`` (``[charging] x``)."""
    return EngineSettings(
        **{
            field.name: getattr(settings, f"charging_{field.name}")
            for field in dataclasses.fields(EngineSettings)
        }
    )


def numbering_plan(settings: Settings) -> NumberingPlan:
    """The numbering plan from ``[numbering]``: how national-format numbers become E.164."""
    return NumberingPlan(
        country_code=settings.numbering_country_code,
        national_prefix=settings.numbering_national_prefix,
        international_prefix=settings.numbering_international_prefix,
    )


@contextlib.asynccontextmanager
async def charging(
    settings: Settings,
    store: aioredis.Redis,
    observer: EngineObserver = NO_OBSERVER,
    *,
    redis_observer: RedisObserver = NO_REDIS_OBSERVER,
    supervision: Supervision | None = None,
    node: NodeMetrics | None = None,
) -> AsyncIterator[ChargingEngine]:
    """The catalog, the charging engine (reporting to ``observer``) and the
    expired-session sweeper (the catalog's version and the sweeper's rounds reported to
    ``node``).

    The engine's pipelines go through a :class:`~quota_engine.store.redis_link.RedisLink`
    with the timeout ``redis.timeout`` and a back-off capped at
    ``redis.reconnect_max_delay``, reporting to ``redis_observer``; a restart of the
    private Redis (``supervision``) lets it reconnect at once.

    On the embedded default (no Redis URL) the demo catalog and the demo subscribers
    of docs/provisioning.md are installed, idempotently, so a fresh `ocs serve`
    charges at once. With a configured Redis an active catalog must exist.
    """
    embedded = not settings.redis_url
    holder = CatalogHolder(install_demo=embedded, observer=node)
    await holder.start(store)
    if embedded:
        await provision_demo(store)
    link = link_to(
        store,
        timeout=settings.redis_timeout,
        reconnect_max_delay=settings.redis_reconnect_max_delay,
        observer=redis_observer,
    )
    if link is not None:
        await link.ensure_connected()
        if supervision is not None:
            supervision.on_restart.append(link.reset_backoff)
    engine = ChargingEngine(
        store, holder.current, engine_settings(settings), link=link, observer=observer
    )
    stop_sweeping = asyncio.Event()
    sweeping = Sweeper(
        engine,
        settings.charging_sweep_interval,
        limit=settings.charging_sweep_limit,
        observer=node,
    )
    sweeper = asyncio.create_task(sweeping.run(stop_sweeping), name="ocs-sweeper")
    try:
        yield engine
    finally:
        stop_sweeping.set()
        await sweeper
        await holder.stop()
        if link is not None:
            await link.aclose()


REDIS_PING_INTERVAL = 1.0
"""Seconds between the node's own PINGs of Redis (``ocs_redis_up`` and ``/readyz`` follow
the real calls too; the PING notices a hung or returned Redis when there is no traffic)."""


class Readiness:
    """Whether the node takes traffic (``/readyz``): Redis answers within
    ``redis.timeout`` (:class:`~ocs.metrics.redis.RedisState`) and the node is not
    draining (a stop signal came). Keeps ``ocs_ready`` in step each time it is asked."""

    def __init__(self, state: RedisState, gauge: Gauge, timeout: float) -> None:
        self._state = state
        self._gauge = gauge
        self._timeout = timeout
        self.draining = False

    def reasons(self) -> list[str]:
        """Why the node is not ready; empty when it is."""
        reasons = []
        state = self._state
        if not state.up:
            if state.problem == "timeout":
                reasons.append(f"redis: no answer within {self._timeout:g} s")
            else:
                reasons.append("redis: unreachable")
        if self.draining:
            reasons.append("draining: the node is stopping")
        self._gauge.set(0 if reasons else 1)
        return reasons


async def _watch_redis(store: aioredis.Redis, readiness: Readiness, timeout: float) -> None:
    """PING Redis every :data:`REDIS_PING_INTERVAL` (the client's observer records the
    outcome) and keep ``ocs_ready`` in step."""
    while True:
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(2 * timeout):  # the client's timeout, and a margin
                await cast(Awaitable[bool], store.ping())
        readiness.reasons()
        await asyncio.sleep(REDIS_PING_INTERVAL)


async def serve(settings: Settings, stop: asyncio.Event, *, own_process: bool = False) -> None:
    """Run one OCS node until ``stop`` is set; ``own_process``: the node is the whole
    process (``ocs serve``), which may tune process-wide settings for it.

    Raises :class:`~ocs.redis_store.EmbeddedRedisLost` after stopping when the private
    redis-server died more often than ``redis.embedded_max_restarts`` within a minute."""
    metrics = Metrics()
    supervision = (
        None
        if settings.redis_url
        else Supervision(settings.redis_embedded_max_restarts, stop.set, metrics=metrics.redis)
    )
    readiness = Readiness(metrics.redis.state, metrics.node.ready, settings.redis_timeout)
    async with (
        open_store(
            settings, observer=metrics.redis.client("general"), supervision=supervision
        ) as store,
        charging(
            settings,
            store,
            metrics,
            redis_observer=metrics.redis.client("charging"),
            supervision=supervision,
            node=metrics.node,
        ) as engine,
        exporting(store, settings, metrics)
        if runs_in_serve(settings)
        else contextlib.nullcontext(),
        billing_schedule(store, settings, metrics.billing),
        monitoring(settings, store, metrics),
    ):

        async def health() -> dict[str, bool]:
            try:
                redis_ok = bool(await cast(Awaitable[bool], store.ping()))
            except Exception:
                redis_ok = False
            return {"redis": redis_ok, "diameter": True}

        connections: set[PeerConnection] = set()
        routes = Routes(connections)
        coalescer = ChargingCoalescer(engine.charge, max_batch=settings.charging_max_batch)
        node = build_node(
            settings,
            metrics,
            lambda codec: CreditControlApplication(
                codec,
                coalescer,
                routes=routes,
                numbering=numbering_plan(settings),
                failure_handling=settings.charging_failure_handling,
                observer=metrics.diameter,
            ),
        )
        server = DiameterServer(
            node, settings.diameter_host, settings.diameter_port, connections=connections
        )
        addresses = await _listening(
            "Diameter", settings.diameter_host, settings.diameter_port, server.start()
        )
        notifier = Notifier(store, engine, routes, observer=metrics.diameter)
        await notifier.start()
        app = create_app(
            settings, metrics, health, store=store, sessions=engine, readiness=readiness.reasons
        )
        runner = ApiRunner(app, settings, metrics.http)
        await runner.setup()
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        watching = asyncio.create_task(
            _watch_redis(store, readiness, settings.redis_timeout), name="ocs-redis-ping"
        )
        try:
            await _listening("HTTP", settings.http_host, settings.http_port, site.start())
            if own_process:
                settle_garbage_collector()
            for host, port in addresses:
                print(f"Diameter listening on {host}:{port}", flush=True)
            print(f"HTTP listening on http://{settings.http_host}:{settings.http_port}", flush=True)
            log_event(
                logger,
                "ocs_started",
                diameter_port=server.port,
                http_port=settings.http_port,
                origin_host=settings.diameter_origin_host,
            )
            readiness.reasons()
            await stop.wait()
        finally:
            readiness.draining = True
            readiness.reasons()
            log_event(logger, "ocs_stopping", peers=len(server.connections))
            await server.stop()
            await notifier.stop()
            await runner.cleanup()
            await cancel_and_wait(watching)
    log_event(logger, "ocs_stopped")
    if supervision is not None and supervision.failure is not None:
        raise supervision.failure


class ListenError(Exception):
    """A listening socket could not be opened (a port in use, an address not on this
    host): ``ocs serve`` says which and exits 2, after stopping what had started."""


async def _listening(what: str, host: str, port: int, starting: Awaitable[T]) -> T:
    try:
        return await starting
    except OSError as error:
        reason = error.strerror or str(error)
        log_event(logger, "listen_failed", level=logging.ERROR, listener=what, host=host,
                  port=port, problem=reason)  # fmt: skip
        raise ListenError(f"cannot listen for {what} on {host}:{port}: {reason}") from None


GC_YOUNG_THRESHOLD = 20_000
"""Allocations between young-generation collections (CPython's default is 700)."""


def settle_garbage_collector() -> None:
    """Once the node is up: freeze what start-up allocated (catalog, rater, modules)
    so that full collections never walk it again, and collect the young generation
    less often. A CCR allocates a few hundred short-lived objects, nearly all freed
    by reference counting; with the default threshold the collector ran every couple
    of requests and took about 7% of the CPU under load."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""Signals that stop ``ocs serve`` gracefully (peers told by DPR, the embedded Redis
stopped). SIGHUP too: a closed terminal or a supervisor's reload signal would otherwise
kill the process at once, orphaning the embedded redis-server whose lock then blocks the
next start. (The node has no configuration reload: restart it to apply a change.)"""


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping(signum: signal.Signals) -> None:
        log_event(logger, "signal_received", signal=signum.name)
        stop.set()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stopping, signum)
    await serve(settings, stop, own_process=True)


def run(settings: Settings) -> int:
    """Entry point of `ocs serve`; returns the process exit code."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(_main(settings))
    except (NoActiveCatalog, StoreUnavailable, ListenError) as error:
        print(f"ocs serve: {error}", file=sys.stderr)
        return 2
    except EmbeddedRedisLost as error:
        print(f"ocs serve: {error}", file=sys.stderr)
        return 3
    return 0
