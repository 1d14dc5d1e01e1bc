"""What the handlers work with: the stores over one Redis, and the charging engine's view
of open sessions. One :class:`Api` per application, under :data:`API_KEY`; the billing
database (:class:`BillingDatabase`) under :data:`BILLING_KEY`."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import redis.asyncio as aioredis
from aiohttp import web

from ocs.config import Settings
from ocs.logs import log_event
from quota_engine.accounts.balance_actions import BalanceActions
from quota_engine.store.accounts import AccountStore
from quota_engine.store.catalogs import CatalogStore

from .errors import ApiError

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

__all__ = [
    "API_KEY",
    "BILLING_KEY",
    "MAX_BODY",
    "Api",
    "BillingDatabase",
    "Sessions",
    "billing_context",
    "billing_of",
    "is_json_type",
    "read_json",
]

_log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BODY = 4 * 1024 * 1024
"""Largest JSON request body, in bytes (413 above); NDJSON bulk uploads are streamed."""


class Sessions(Protocol):
    """The charging engine as the API sees it (:class:`quota_engine.charging.engine.ChargingEngine`)."""

    async def sessions_of(self, account_id: str) -> list[dict[str, Any]]: ...

    def forget(self, identity: str | None = None) -> None: ...


class Api:
    def __init__(
        self,
        redis: aioredis.Redis,
        sessions: Sessions | None = None,
        records_directory: Path | None = None,
    ) -> None:
        """``records_directory``: where this node's exporter writes rated-record
        segments (``records.directory``); None: records are read from Redis only."""
        self.redis = redis
        self.records_directory = records_directory
        self.accounts = AccountStore(redis)
        self.catalogs = CatalogStore(redis)
        self.actions = BalanceActions(redis, self.accounts)
        self.sessions = sessions

    def forget(self, identity: str) -> None:
        """Drop an identity from this node's engine cache (other nodes: after its TTL)."""
        if self.sessions is not None:
            self.sessions.forget(identity)


API_KEY = web.AppKey("api", Api)


class BillingDatabase:
    """The billing database (``billing.database_url``) as the API uses it: opened on the
    first request that needs it, not at start-up, so that a node whose operator runs no
    billing never creates one, and a database that cannot be used yet answers 503 (with
    what to do) until it can, without a restart.

    **Migrations.** The embedded SQLite default is migrated on first use (a new
    installation works at once; the migration takes SQLite's write lock, so several
    workers opening it together are safe). A PostgreSQL database is never created or
    upgraded behind the operator's back: it must be at this version's schema already
    (``ocs billing migrate``), else the billing routes answer 503 saying so.

    The engine is synchronous (:mod:`ocs.billing.database`): every call runs in a thread
    (:func:`asyncio.to_thread`), never on the event loop. Reads use a read-only
    transaction (on SQLite it does not take the write lock, so it never waits for a bill
    run); writes one transaction each.
    """

    def __init__(self, settings: Settings) -> None:
        """``settings``: the ``billing.*`` settings (database URL, entity, number
        formats, late window) the billing routes use."""
        self.settings = settings
        self.url = settings.billing_database_url
        self._engine: Engine | None = None
        self._lock = asyncio.Lock()

    @property
    def migrates(self) -> bool:
        """Whether opening migrates the database (SQLite only)."""
        return self.url.lower().startswith("sqlite")

    async def engine(self) -> Engine:
        if self._engine is not None:
            return self._engine
        async with self._lock:
            if self._engine is None:
                self._engine = await asyncio.to_thread(self._open)
        return self._engine

    def _open(self) -> Engine:
        from ocs.billing.database import BillingDatabaseError, open_database

        try:
            return open_database(self.url, upgrade=self.migrates)
        except BillingDatabaseError as exc:
            log_event(_log, "billing_database_unavailable", level=logging.WARNING, reason=str(exc))
            raise

    async def read(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)`` in a read-only transaction, in a thread."""
        from ocs.billing.database import reading

        engine = reading(await self.engine())

        def run() -> T:
            with engine.connect() as connection:
                return work(connection)

        return await asyncio.to_thread(run)

    async def write(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)`` in one transaction (committed when it returns), in a thread."""
        engine = await self.engine()

        def run() -> T:
            with engine.begin() as connection:
                return work(connection)

        return await asyncio.to_thread(run)

    async def call(self, work: Callable[[Engine], T]) -> T:
        """``work(engine)`` in a thread, for billing code that runs its own transactions
        (an off-cycle bill run)."""
        engine = await self.engine()
        return await asyncio.to_thread(work, engine)

    async def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await asyncio.to_thread(engine.dispose)


BILLING_KEY = web.AppKey("billing", BillingDatabase)


def billing_context(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    """The application's cleanup context that provides :data:`BILLING_KEY` and closes
    the database's connections when the application stops."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        database = BillingDatabase(settings)
        app[BILLING_KEY] = database
        try:
            yield
        finally:
            await database.close()

    return context


def billing_of(request: web.Request) -> BillingDatabase:
    return request.app[BILLING_KEY]


def api_of(request: web.Request) -> Api:
    return request.app[API_KEY]


def is_json_type(media_type: str) -> bool:
    """``application/json`` or a ``+json`` type of application/ (RFC 6839), any case;
    ``media_type`` without its parameters (aiohttp's ``request.content_type``)."""
    kind, _, subtype = media_type.lower().partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def read_json(request: web.Request) -> Any:
    """The request body parsed as JSON; 400 naming ``body`` when it is not JSON.

    A body must be declared JSON (``Content-Type: application/json``, parameters such as
    ``charset`` allowed, or an ``application/*+json`` type): anything else, or none, is
    415 before the body is read. aiohttp refuses a body larger than the application's
    ``client_max_size`` with 413.
    """
    if not request.body_exists:
        raise ApiError.invalid([("body", "a JSON body is required")])
    declared = request.headers.get("Content-Type", "").strip()
    if not declared or not is_json_type(request.content_type):
        raise ApiError(
            415,
            "the body must be JSON: send Content-Type: application/json",
            [("Content-Type", f"must be application/json, got {declared[:100] or 'none'!r}")],
        )
    raw = await request.read()
    if not raw:
        raise ApiError.invalid([("body", "a JSON body is required")])
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError.invalid([("body", f"not valid JSON: {exc}")]) from None
