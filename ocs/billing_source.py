"""The billing view of the accounts, read from the charging store for the bill run.

``ocs/billing`` never imports Redis or the store (it works from exported records and
plain values), so the composition root reads the accounts here into
:class:`~ocs.billing.accounts.BillingAccount` values and hands them over:

* the account hash (kind, status, currency, plan, bill cycle day, parent, created, and
  the billing preferences ``tax_exempt``, ``bill_separately``, ``itemisation``, ``reseller``, and the
  customer contact for the documents: name, address, locale, e-mail, delivery);
* its identities (its lines) and its record partition;
* from its balance history (docs/data-model.md, "Balance history"): the
  ``plan_change`` entries, oldest first, as :class:`~ocs.billing.accounts.PlanChange`,
  and the ``adjustment`` entries of money buckets (an operator's one-off credit or
  charge; the entry's ``unit`` is the currency) as
  :class:`~ocs.billing.accounts.Adjustment`, amounts in micro-units as stored.
  Top-ups, credits, refunds and adjustments of units buckets are no invoice lines.

:func:`read_billing_accounts` reads every account, ``batch`` accounts per pipeline
(three commands each: the hash, the identities, the history), :data:`IN_FLIGHT`
pipelines at a time, never one round trip per account: 100,000 accounts with two
history entries each took about 12 s on the development machine, nearly all of it
redis-py and this module decoding replies (Redis itself is under a second).

Bad data does not stop a bill run: a history entry that cannot be read (not JSON, or
a plan change or adjustment whose fields are missing or of the wrong type) is skipped
and logged (``billing_history_entry_skipped``, WARNING, with the account, the entry's
position, oldest 0, and the problem); an account hash that cannot be read (a
non-numeric ``bill_cycle_day``, say) skips the account and is logged
(``billing_account_unreadable``, ERROR). ``ocs bill-audit`` then reports the records of
a skipped account as on no invoice.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from ocs.billing.accounts import Adjustment, BillingAccount, Contact, KindChange, PlanChange
from ocs.logs import log_event, mask_identity
from quota_engine.accounts.model import BUCKET_UNITS, Account, require_id
from quota_engine.store.accounts import (
    KIND_CHANGE,
    PLAN_CHANGE,
    AccountSnapshot,
    AccountStore,
)
from quota_engine.store.clients import StoreClient

if TYPE_CHECKING:
    from ocs.config import Settings

__all__ = [
    "ADJUSTMENT",
    "read_billing_account",
    "read_billing_accounts",
    "read_document_accounts",
    "read_document_inputs",
]

logger = logging.getLogger(__name__)

IN_FLIGHT = 4
"""Pipelines of :func:`read_billing_accounts` sent at once (each on a connection of its own)."""

ADJUSTMENT = "adjustment"
"""The history ``type`` of an operator's adjustment (quota_engine.accounts.balance_actions)."""


class _Garbled(ValueError):
    """A history entry that cannot be read; the message says why."""


async def read_billing_accounts(redis: StoreClient, *, batch: int = 500) -> list[BillingAccount]:
    """Every account of the store as the bill run sees it, sorted by id.

    ``batch`` accounts are read per pipeline. An account removed between listing and
    reading is left out; unreadable data is skipped and logged (module doc).
    """
    if type(batch) is not int or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    store = AccountStore(redis)
    ids = await store.account_ids()
    batches = [ids[start : start + batch] for start in range(0, len(ids), batch)]
    found: list[BillingAccount] = []
    for first in range(0, len(batches), IN_FLIGHT):
        # a few pipelines at once: Redis answers one while this process decodes another
        replies = await asyncio.gather(
            *(store.snapshots(ids) for ids in batches[first : first + IN_FLIGHT])
        )
        for snapshots in replies:
            for snapshot in snapshots:
                account = billing_account(snapshot)
                if account is not None:
                    found.append(account)
    return found


async def read_billing_account(redis: StoreClient, account_id: str) -> BillingAccount | None:
    """One account as the bill run sees it (an off-cycle run); None when it does not
    exist or cannot be read. :class:`~quota_engine.accounts.errors.AccountError` for an
    id that no account can have."""
    require_id(account_id)
    snapshots = await AccountStore(redis).snapshots([account_id])
    return billing_account(snapshots[0]) if snapshots else None


async def read_document_accounts(
    redis: StoreClient, account_ids: list[str]
) -> tuple[dict[str, Contact], dict[str, int]]:
    """The contact and the record partition of each of ``account_ids`` (an invoice's
    accounts, for its document), in one pipeline; an account that no longer exists or
    cannot be read is left out (its document shows its id, no address, no records)."""
    snapshots = await AccountStore(redis).snapshots(account_ids)
    contacts: dict[str, Contact] = {}
    partitions: dict[str, int] = {}
    for snapshot in snapshots:
        account = billing_account(snapshot)
        if account is not None:
            contacts[account.id] = account.contact
            partitions[account.id] = account.partition
    return contacts, partitions


def read_document_inputs(
    settings: Settings, account_ids: list[str]
) -> tuple[dict[str, Contact], dict[str, int], str]:
    """For ``ocs invoice pdf|html``: :func:`read_document_accounts` and the active
    catalog's time zone (UTC without one), from the Redis of ``settings`` (``redis.url``,
    else the private Redis of ``redis.data_dir``, the running node's when there is one);
    ValueError saying why Redis cannot be used."""
    from redis.exceptions import RedisError

    from ocs.redis_store import StoreUnavailable, open_store
    from quota_engine.store.catalogs import CatalogStore

    async def read() -> tuple[dict[str, Contact], dict[str, int], str]:
        async with open_store(settings, share_running=True) as client:
            contacts, partitions = await read_document_accounts(client, account_ids)
            catalog = await CatalogStore(client).active()
        return contacts, partitions, catalog.timezone if catalog is not None else "UTC"

    try:
        return asyncio.run(read())
    except (StoreUnavailable, RedisError) as error:
        raise ValueError(
            f"cannot read the customer's contact from Redis: {error}\n"
            "Give the Redis with --redis-url (or OCS_REDIS_URL, redis.url)."
        ) from None


def billing_account(snapshot: AccountSnapshot) -> BillingAccount | None:
    """The billing view of one stored account; None (logged) when its hash is unreadable."""
    try:
        account = Account.from_hash(snapshot.id, snapshot.fields)
    except ValueError as exc:
        log_event(
            logger,
            "billing_account_unreadable",
            level=logging.ERROR,
            account=mask_identity(snapshot.id),
            problem=str(exc),
        )
        return None
    plan_changes: list[PlanChange] = []
    kind_changes: list[KindChange] = []
    adjustments: list[Adjustment] = []
    for index, raw in enumerate(snapshot.history):
        try:
            entry = _entry(raw)
            kind = entry.get("type")
            if kind == PLAN_CHANGE:
                plan_changes.append(_plan_change(entry))
            elif kind == KIND_CHANGE:
                kind_changes.append(_kind_change(entry))
            elif kind == ADJUSTMENT and _is_money(entry):
                adjustments.append(_adjustment(entry))
        except _Garbled as exc:
            log_event(
                logger,
                "billing_history_entry_skipped",
                level=logging.WARNING,
                account=mask_identity(snapshot.id),
                index=index,
                problem=str(exc),
            )
    plan_changes.sort(key=lambda change: change.at)  # stable: list order for one second
    kind_changes.sort(key=lambda change: change.at)
    return BillingAccount(
        id=account.id,
        kind=account.kind,
        status=account.status,
        currency=account.currency,
        plan=account.plan,
        bill_cycle_day=account.bill_cycle_day,
        parent=account.parent,
        created=account.created,
        partition=snapshot.partition,
        subscriptions=snapshot.identities,
        tax_exempt=account.tax_exempt,
        bill_separately=account.bill_separately,
        itemisation=account.itemisation,
        reseller=account.reseller,
        plan_changes=tuple(plan_changes),
        kind_changes=tuple(kind_changes),
        adjustments=tuple(adjustments),
        contact=Contact(
            name=account.name,
            address=account.address,
            locale=account.locale,
            email=account.email,
            delivery=account.delivery,
        ),
    )


def _entry(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise _Garbled("not JSON") from None
    if not isinstance(data, dict):
        raise _Garbled("not a JSON object")
    return data


def _text(entry: dict[str, Any], name: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value:
        raise _Garbled(f"{entry.get('type')}: {name} must be a non-empty string, got {value!r}")
    return value


def _int(entry: dict[str, Any], name: str) -> int:
    value = entry.get(name)
    if type(value) is not int:
        raise _Garbled(f"{entry.get('type')}: {name} must be an integer, got {value!r}")
    return value


def _is_money(entry: dict[str, Any]) -> bool:
    """Whether an adjustment is of a money bucket: its ``unit`` is the account currency
    (balance_action.lua writes the currency for money, else the units bucket's unit)."""
    unit = entry.get("unit")
    if not isinstance(unit, str) or not unit:
        raise _Garbled(f"adjustment: unit must be a currency or a unit, got {unit!r}")
    return unit not in BUCKET_UNITS


def _plan_change(entry: dict[str, Any]) -> PlanChange:
    return PlanChange(
        at=_int(entry, "time"), previous=_text(entry, "previous"), plan=_text(entry, "plan")
    )


def _kind_change(entry: dict[str, Any]) -> KindChange:
    return KindChange(
        at=_int(entry, "time"), previous=_text(entry, "previous"), kind=_text(entry, "kind")
    )


def _adjustment(entry: dict[str, Any]) -> Adjustment:
    reason = entry.get("reason")
    if not isinstance(reason, str):
        raise _Garbled(f"adjustment: reason must be a string, got {reason!r}")
    return Adjustment(
        id=_text(entry, "id"),
        at=_int(entry, "time"),
        amount=_int(entry, "amount"),
        bucket=_text(entry, "bucket"),
        reason=reason,
    )
