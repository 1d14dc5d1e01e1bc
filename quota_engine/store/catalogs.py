"""Catalogs versioned in Redis: saved once per version, one of them active.

``ocs:catalog:<version>`` holds a catalog document as canonical JSON (sorted keys,
no spaces); a version, once saved, never changes: saving a different document under
the same version is refused, saving the same one again is a no-op. ``ocs:catalog:active``
names the active version; activating one publishes the version on the ``ocs:catalog``
channel, and every OCS node swaps to it (see ``ocs.catalog_holder``).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any

from quota_engine.catalog import DEMO_CATALOG_PATH, Catalog, CatalogError, load_catalog
from quota_engine.store import keys
from quota_engine.store.clients import StoreClient, Subscriber
from quota_engine.store.text import text

__all__ = [
    "CatalogStore",
    "CatalogStoreError",
    "canonical_json",
    "demo_catalog_document",
    "json_ready",
    "subscribe_activations",
]


class CatalogStoreError(ValueError):
    """A version conflict or an unknown version."""


def json_ready(value: Any, path: str = "catalog") -> Any:
    """``value`` with TOML/YAML dates and times as ISO strings and tuples as lists.

    Raises :class:`CatalogError` naming the path of a value JSON cannot hold.
    """
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CatalogError([f"{path}: keys must be strings, got {key!r}"])
            out[key] = json_ready(item, key if path == "catalog" else f"{path}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [json_ready(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, float):
        return value  # load_catalog refuses floats where it wants integers, naming the path
    raise CatalogError([f"{path}: unsupported value {value!r}"])


def canonical_json(document: Mapping[str, Any]) -> str:
    """The stored form: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def demo_catalog_document() -> dict[str, Any]:
    """The demo catalog (quota_engine/catalog/demo_catalog.toml) as a JSON-ready document."""
    with DEMO_CATALOG_PATH.open("rb") as fh:
        document: dict[str, Any] = json_ready(tomllib.load(fh))
    return document


async def subscribe_activations(pubsub: Subscriber) -> None:
    """Subscribe a redis-py ``PubSub`` to the announcements of :meth:`CatalogStore.activate`
    (each message's data is the newly active version)."""
    await pubsub.subscribe(keys.CATALOG_CHANNEL)


class CatalogStore:
    def __init__(self, redis: StoreClient) -> None:
        self._redis = redis

    async def save(self, catalog_document: Mapping[str, Any]) -> str:
        """Validate and store the document under its version; returns the version.

        Raises :class:`CatalogError` when invalid and :class:`CatalogStoreError` when
        the version already holds a different document.
        """
        document = json_ready(catalog_document)
        catalog = load_catalog(document)
        canonical = canonical_json(document)
        key = keys.catalog(catalog.version)
        if await self._redis.set(key, canonical.encode(), nx=True):
            return catalog.version
        stored = await self._redis.get(key)
        if stored is None or text(stored) != canonical:
            raise CatalogStoreError(
                f"catalog version {catalog.version!r} is already saved with a different "
                "document; give the changed catalog a new version"
            )
        return catalog.version

    async def document(self, version: str) -> dict[str, Any] | None:
        """The saved document of ``version``, or None."""
        stored = await self._redis.get(keys.catalog(version))
        if stored is None:
            return None
        document: dict[str, Any] = json.loads(stored)
        return document

    async def load(self, version: str) -> Catalog | None:
        """The saved catalog of ``version`` (validated again), or None."""
        document = await self.document(version)
        return None if document is None else load_catalog(document)

    async def active_version(self) -> str | None:
        version = await self._redis.get(keys.CATALOG_ACTIVE)
        return None if version is None else text(version)

    async def active(self) -> Catalog | None:
        """The active catalog, or None when no version is active."""
        version = await self.active_version()
        if version is None:
            return None
        catalog = await self.load(version)
        if catalog is None:
            raise CatalogStoreError(f"the active catalog version {version!r} is not saved")
        return catalog

    async def activate(self, version: str, *, only_if_none: bool = False) -> bool:
        """Make a saved version active; True when the active version changed.

        A change is published on the catalog channel. ``only_if_none`` activates only
        when no version is active yet (so a default never replaces an operator's choice).
        """
        if not await self._redis.exists(keys.catalog(version)):
            raise CatalogStoreError(f"no saved catalog version {version!r}")
        if only_if_none:
            changed = bool(await self._redis.set(keys.CATALOG_ACTIVE, version, nx=True))
        else:
            previous = await self._redis.set(keys.CATALOG_ACTIVE, version, get=True)
            changed = previous is None or text(previous) != version
        if changed:
            await self._redis.publish(keys.CATALOG_CHANNEL, version)
        return changed
