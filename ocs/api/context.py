"""What the handlers work with: the stores over one Redis, and the charging engine's view
of open sessions. One :class:`Api` per application, under :data:`API_KEY`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as aioredis
from aiohttp import web

from quota_engine.accounts.balance_actions import BalanceActions
from quota_engine.store.accounts import AccountStore
from quota_engine.store.catalogs import CatalogStore

from .errors import ApiError

__all__ = ["API_KEY", "MAX_BODY", "Api", "Sessions", "is_json_type", "read_json"]

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
