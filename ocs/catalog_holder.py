"""The catalog an OCS node rates with, kept in step with the version active in Redis.

:meth:`CatalogHolder.current` returns the ``(Catalog, Rater)`` pair; it is the
``catalog_source`` the quota engine calls once per request, so a request is rated
wholly with one catalog. A new version activated anywhere (``ocs provision``, the
HTTP API) is announced on the catalog channel
(:func:`quota_engine.store.catalogs.subscribe_activations`); the holder loads it, builds its Rater
and swaps the pair with one attribute assignment. A version that fails to load is
logged and the node keeps rating with the one it has. After a lost subscription the
holder re-reads the active version, so an activation missed meanwhile is not lost.

Each swap (the first load included) is told to the holder's :class:`CatalogObserver`
(``ocs.metrics.node.NodeMetrics``: ``ocs_catalog_active_version`` and
``ocs_catalog_loaded_timestamp_seconds``) with the version and the Unix time of the swap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ocs.cancellation import cancel_and_wait
from ocs.logs import log_event
from quota_engine.catalog import Catalog, CatalogError
from quota_engine.charging.rating import Rater
from quota_engine.store.catalogs import (
    CatalogStore,
    CatalogStoreError,
    demo_catalog_document,
    subscribe_activations,
)

__all__ = ["CatalogHolder", "CatalogObserver", "NoActiveCatalog"]

_log = logging.getLogger("ocs.catalog")


class NoActiveCatalog(RuntimeError):
    """No catalog is active in Redis and the holder may not install the demo one."""


class CatalogObserver(Protocol):
    def catalog_activated(self, version: str, at: float) -> None:
        """The node rates with catalog ``version`` since ``at`` (Unix seconds)."""


class CatalogHolder:
    """Holds the current ``(Catalog, Rater)``; ``install_demo`` activates the demo
    catalog at start when no version is active (the embedded default); ``observer``
    is told of every swap."""

    def __init__(
        self,
        *,
        install_demo: bool = False,
        retry_delay: float = 1.0,
        observer: CatalogObserver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._observer = observer
        self._clock = clock
        self._activated_at: float | None = None
        self._install_demo = install_demo
        self._retry_delay = retry_delay
        self._pair: tuple[Catalog, Rater] | None = None
        self._store: CatalogStore | None = None
        self._pubsub: aioredis.client.PubSub | None = None
        self._task: asyncio.Task[None] | None = None

    def current(self) -> tuple[Catalog, Rater]:
        pair = self._pair
        if pair is None:
            raise RuntimeError("CatalogHolder.current() before start()")
        return pair

    @property
    def version(self) -> str | None:
        pair = self._pair
        return None if pair is None else pair[0].version

    @property
    def activated_at(self) -> float | None:
        """Unix time the current version became the one the node rates with."""
        return self._activated_at

    async def start(self, redis: aioredis.Redis) -> None:
        """Load the active catalog and follow activations; raises :class:`NoActiveCatalog`."""
        self._store = CatalogStore(redis)
        self._pubsub = redis.pubsub()
        # subscribe first: an activation between loading and subscribing is not missed
        await subscribe_activations(self._pubsub)
        try:
            if await self._store.active_version() is None:
                if not self._install_demo:
                    raise NoActiveCatalog(
                        "no catalog is active in Redis: load one with `ocs provision FILE`"
                    )
                version = await self._store.save(demo_catalog_document())
                await self._store.activate(version, only_if_none=True)
            await self.reload(strict=True)
        except BaseException:
            await self._pubsub.aclose()
            self._pubsub = None
            raise
        self._task = asyncio.create_task(self._follow(), name="catalog-holder")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)  # it reloads through redis-py
            self._task = None
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None

    async def reload(self, *, strict: bool = False) -> bool:
        """Swap to the active version if it is not the current one; True when swapped.

        A version that cannot be loaded raises when ``strict``, else is logged and skipped.
        """
        assert self._store is not None
        version = await self._store.active_version()
        if version is None or version == self.version:
            return False
        try:
            catalog = await self._store.load(version)
            if catalog is None:
                raise CatalogStoreError(f"the active catalog version {version!r} is not saved")
            pair = (catalog, Rater(catalog))
        except (CatalogError, CatalogStoreError, ValueError, OverflowError) as exc:
            if strict:
                raise
            log_event(_log, "catalog_load_failed", level=logging.ERROR, version=version,
                      kept=self.version, error=str(exc))  # fmt: skip
            return False
        previous = self.version
        self._pair = pair  # the swap: one assignment
        self._activated_at = at = self._clock()
        if self._observer is not None:
            self._observer.catalog_activated(version, at)
        log_event(_log, "catalog_activated", version=version, previous=previous)
        return True

    async def _follow(self) -> None:
        assert self._pubsub is not None
        while True:
            try:
                async for message in self._pubsub.listen():
                    if message.get("type") == "message":
                        await self.reload()
            except (RedisError, OSError) as exc:
                log_event(_log, "catalog_subscription_lost", level=logging.WARNING,
                          error=str(exc), retry_in=self._retry_delay)  # fmt: skip
                await asyncio.sleep(self._retry_delay)
                with contextlib.suppress(RedisError, OSError):
                    await subscribe_activations(self._pubsub)
                    await self.reload()
