"""Buckets and balances of an account, top-ups, adjustments and their history (TMF654).

Top-ups and adjustments need an ``Idempotency-Key`` header: the same key again (same
request) credits nothing and answers the first result, with ``Idempotent-Replayed:
true``; the key with a different request is a 409. See
:mod:`quota_engine.accounts.balance_actions` for the atomic script behind them.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from quota_engine.accounts.balance_actions import ActionResult
from quota_engine.accounts.model import MAIN_BUCKET, Bucket

from . import schema
from .common import key_and_body, path_id, require_account
from .context import api_of
from .errors import ApiError
from .pagination import page, paged, window

REPLAYED_HEADER = "Idempotent-Replayed"
_DAY = 86_400


async def list_buckets(request: web.Request) -> web.Response:
    api = api_of(request)
    account_id = path_id(request)
    offset, limit = page(request)
    await require_account(api, account_id)
    buckets = await api.accounts.buckets(account_id)
    return paged([b.to_dict() for b in window(buckets, offset, limit)], len(buckets))


async def get_bucket(request: web.Request) -> web.Response:
    api = api_of(request)
    account_id = path_id(request)
    bucket_id = path_id(request, "bucket_id")
    await require_account(api, account_id)
    bucket = await api.accounts.bucket(account_id, bucket_id)
    if bucket is None:
        raise ApiError(
            404,
            f"account {account_id!r} has no bucket {bucket_id!r}",
            [("bucket_id", "no such bucket")],
        )
    return web.json_response(bucket.to_dict())


async def get_balances(request: web.Request) -> web.Response:
    """The buckets summed per kind and unit (money in the account currency)."""
    api = api_of(request)
    account = await require_account(api, path_id(request))
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    for bucket in await api.accounts.buckets(account.id):
        unit = account.currency if bucket.kind == "money" else (bucket.unit or "")
        total = totals.setdefault(
            (bucket.kind, unit),
            {
                "kind": bucket.kind,
                "unit": unit,
                "amount": 0,
                "reserved": 0,
                "available": 0,
                "buckets": [],
            },
        )
        total["amount"] += bucket.amount
        total["reserved"] += bucket.reserved
        total["available"] += bucket.available
        total["buckets"].append(bucket.id)
    balances = sorted(totals.values(), key=lambda b: (b["kind"] != "money", b["unit"]))
    for balance in balances:
        if balance["kind"] == "money" and account.kind == "postpaid":
            balance["credit_limit"] = account.credit_limit
    return web.json_response(
        {"account": account.id, "status": account.status, "balances": balances}
    )


def _template(bucket_id: str, create: dict[str, Any] | None, now: int) -> Bucket | None:
    if create is None:
        return None
    valid_to = create.get("valid_to")
    if "valid_days" in create:
        if valid_to is not None:
            raise ApiError.refused([("create.valid_days", "give valid_days or valid_to, not both")])
        valid_to = create.get("valid_from", now) + create["valid_days"] * _DAY
    return Bucket(
        id=bucket_id,
        kind=create.get("kind", "units"),
        unit=create.get("unit"),
        amount=0,
        priority=create.get("priority", 0),
        valid_from=create.get("valid_from", now if "valid_days" in create else None),
        valid_to=valid_to,
        services=tuple(create.get("services", ())),
    )


def _answer(result: ActionResult) -> web.Response:
    return web.json_response(
        result.entry,
        status=201,
        headers={REPLAYED_HEADER: "true" if result.replay else "false"},
    )


async def topup(request: web.Request) -> web.Response:
    """TMF654 topupBalance: credit money or units, once per Idempotency-Key."""
    api = api_of(request)
    account_id = path_id(request)
    key, body = await key_and_body(request, schema.TOPUP_IN, per="top-up or adjustment")
    now = int(time.time())
    bucket_id = body.get("bucket", MAIN_BUCKET)
    result = await api.actions.topup(
        account_id,
        body["amount"],
        key=key,
        bucket=bucket_id,
        reason=body.get("reason"),
        unit=body.get("unit"),
        create=_template(bucket_id, body.get("create"), now),
        now=now,
    )
    return _answer(result)


async def adjust(request: web.Request) -> web.Response:
    """TMF654 adjustBalance: move a bucket up or down with a reason, once per key."""
    api = api_of(request)
    account_id = path_id(request)
    key, body = await key_and_body(request, schema.ADJUST_IN, per="top-up or adjustment")
    result = await api.actions.adjust(
        account_id,
        body["amount"],
        key=key,
        reason=body["reason"],
        bucket=body.get("bucket", MAIN_BUCKET),
        unit=body.get("unit"),
    )
    return _answer(result)


async def history(request: web.Request) -> web.Response:
    """TMF654 balanceActionHistory: top-ups, adjustments, refunds, credits; newest first."""
    api = api_of(request)
    account_id = path_id(request)
    offset, limit = page(request)
    await require_account(api, account_id)
    total, entries = await api.actions.history(account_id, offset, limit)
    return paged(entries, total)
