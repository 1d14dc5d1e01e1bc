"""Accounts, their identities (subscriptions) and the identity index.

Creating an account is provisioning one entry: the body is a provisioning account
(docs/provisioning.md) and goes through :func:`quota_engine.accounts.provisioning.provision`,
the same validation and store calls as ``ocs provision``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from quota_engine.accounts.balance_actions import CLOSED
from quota_engine.accounts.model import Account
from quota_engine.accounts.provisioning import ProvisioningError, provision

from . import schema
from .common import (
    account_resource,
    json_body,
    open_account,
    path_id,
    path_identity,
    require_account,
)
from .context import Api, api_of
from .errors import ApiError, split_problem
from .pagination import page, paged, window

ENTRY = "accounts[0]"


async def require_catalog(api: Api) -> None:
    """422 when no catalog is active: accounts are checked against it."""
    if await api.catalogs.active_version() is None:
        raise ApiError(
            422,
            "no catalog is active: upload and activate one first",
            [("plan", "no catalog is active")],
        )


async def list_accounts(request: web.Request) -> web.Response:
    api = api_of(request)
    offset, limit = page(request)
    ids = await api.accounts.account_ids()
    found = await api.accounts.accounts_with_subscriptions(window(ids, offset, limit))
    items = [{**account.to_dict(), "subscriptions": identities} for account, identities in found]
    return paged(items, len(ids))


def _candidate(entry: dict[str, Any], currency: str) -> Account:
    """The account the provisioning entry describes (its defaults as provisioning has them)."""
    return Account(
        id=entry["id"],
        kind=entry["kind"],
        status=entry.get("status", "active"),
        currency=entry.get("currency", currency),
        credit_limit=entry.get("credit_limit", 0),
        plan=entry["plan"],
        bill_cycle_day=entry.get("bill_cycle_day", 1),
        parent=entry.get("parent"),
        tax_exempt=entry.get("tax_exempt", False),
        bill_separately=entry.get("bill_separately", False),
        itemisation=entry.get("itemisation", "detailed"),
        name=entry.get("name"),
        address=entry.get("address"),
        locale=entry.get("locale"),
        email=entry.get("email"),
        delivery=entry.get("delivery", "email"),
        reseller=entry.get("reseller"),
    )


async def create_account(request: web.Request) -> web.Response:
    """201 created; 200 when the same account exists (its missing identities and buckets
    are added, as provisioning does); 409 when an account with that id differs."""
    api = api_of(request)
    entry = await json_body(request, schema.ACCOUNT_IN)
    await require_catalog(api)
    existing = await api.accounts.get_account(entry["id"])
    if existing is not None:
        if existing.status == CLOSED:
            raise ApiError(
                409, f"account {existing.id!r} is closed", [("id", "is a closed account")]
            )
        catalog = await api.accounts.catalog()
        differences = existing.differences(_candidate(entry, catalog.currency))
        if differences:
            raise ApiError(
                409,
                f"account {existing.id!r} exists with a different {', '.join(differences)}",
                [(name, "differs from the stored account") for name in differences],
            )
    try:
        report = await provision(api.redis, {"accounts": [entry]})
    except ProvisioningError as exc:
        raise ApiError.refused([split_problem(p, ENTRY) for p in exc.problems]) from None
    outcome = report.accounts[0].outcome
    if outcome == "kept":  # created concurrently with other values
        raise ApiError(409, f"account {entry['id']!r} exists with other values", [("id", "exists")])
    account = await require_account(api, entry["id"])
    body = {"outcome": outcome, "account": await account_resource(api, account)}
    return web.json_response(
        body,
        status=201 if outcome == "created" else 200,
        headers={"Location": f"/v1/accounts/{account.id}"},
    )


async def get_account(request: web.Request) -> web.Response:
    api = api_of(request)
    account = await require_account(api, path_id(request))
    return web.json_response(await account_resource(api, account))


async def patch_account(request: web.Request) -> web.Response:
    """Change status, plan, credit limit, the billing preferences (tax_exempt,
    bill_separately, itemisation, reseller: null unsets) or the customer contact (name, address, locale, email,
    delivery; null unsets a contact field). Barring publishes account_barred (ASR); a new plan is
    a ``plan_change`` entry of the balance history."""
    api = api_of(request)
    account_id = path_id(request)
    changes = await json_body(request, schema.ACCOUNT_PATCH)
    account = await open_account(api, account_id)
    if set(changes) == {"status"}:
        await api.accounts.set_status(account_id, changes["status"])
    else:
        await api.accounts.create_account(dataclasses.replace(account, **changes), upsert=True)
    return web.json_response(await account_resource(api, await require_account(api, account_id)))


async def close_account(request: web.Request) -> web.Response:
    """Close: status closed (terminal), identities released, open sessions aborted."""
    api = api_of(request)
    account_id = path_id(request)
    previous, released = await api.actions.close(account_id)
    for identity in released:
        api.forget(identity)
    account = await require_account(api, account_id)
    return web.json_response(
        {
            "previous_status": previous,
            "released": released,
            "account": await account_resource(api, account),
        }
    )


async def list_subscriptions(request: web.Request) -> web.Response:
    api = api_of(request)
    account_id = path_id(request)
    offset, limit = page(request)
    await require_account(api, account_id)
    identities = await api.accounts.subscriptions(account_id)
    return paged(window(identities, offset, limit), len(identities))


async def add_subscription(request: web.Request) -> web.Response:
    """201 when attached, 200 when it already was; 409 when another account holds it."""
    api = api_of(request)
    account_id = path_id(request)
    body = await json_body(request, schema.SUBSCRIPTION_IN)
    await open_account(api, account_id)
    added = await api.accounts.add_subscription(account_id, body["identity"])
    result = {"identity": body["identity"], "account": account_id, "added": added}
    return web.json_response(result, status=201 if added else 200)


async def remove_subscription(request: web.Request) -> web.Response:
    api = api_of(request)
    account_id = path_id(request)
    identity = path_identity(request)
    await require_account(api, account_id)
    if not await api.accounts.remove_subscription(account_id, identity):
        raise ApiError(
            404,
            f"{identity} is not attached to account {account_id!r}",
            [("identity", "not attached")],
        )
    api.forget(identity)
    return web.Response(status=204)


async def get_identity(request: web.Request) -> web.Response:
    api = api_of(request)
    identity = path_identity(request)
    account_id = await api.accounts.resolve(identity)
    if account_id is None:
        raise ApiError(404, f"no account holds {identity}", [("identity", "no such identity")])
    return web.json_response({"identity": identity, "account": account_id})
