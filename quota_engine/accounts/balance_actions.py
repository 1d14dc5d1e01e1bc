"""Balance actions: idempotent top-ups and adjustments with a history, and closing an account.

TM Forum TMF654 names: a *topupBalance* credits a bucket, an *adjustBalance* moves it up
or down with a reason, the *balanceActionHistory* lists both. Each action is ONE Lua
script call on the account's hash slot that, atomically:

1. looks up the idempotency key ``ocs:acct:{P}:A:topup:<key>``: when present, the stored
   result of the first call is returned and nothing else happens (a different request
   under the same key is refused: :class:`KeyReusedError`);
2. checks the account (exists, not closed) and the bucket (exists, or is created from
   the template the caller gives: the ``main`` money bucket, or a units bucket with its
   services and validity);
3. changes the bucket's ``amount`` only (``reserved`` and every other field are kept, so
   reservations the charging scripts make at the same time are not disturbed), re-packed
   with ``pack_bucket`` (quota_engine/store/lua/pack_bucket.lua);
4. appends the history entry to ``ocs:acct:{P}:A:history`` (JSON: id, type, amount,
   bucket, unit, reason, key, time, resulting_amount, created_bucket) and stores the same
   entry under the key (kept :data:`IDEMPOTENCY_TTL` seconds).

The script is quota_engine/store/lua/balance_action.lua, called through
:mod:`quota_engine.store.balance_actions`. A credit (positive amount) then publishes
``credit_added`` (:mod:`quota_engine.store.events`), so the node holding a session under final unit
indication sends it a Re-Auth-Request. :func:`BalanceActions.close` sets the status
``closed`` (a terminal status outside :data:`quota_engine.accounts.model.STATUSES`: charging
denies it like any status but active), releases the account's identities and publishes
``account_barred``, so open sessions get an Abort-Session-Request.

Errors are :class:`quota_engine.accounts.errors.AccountError` subclasses naming the field:
:class:`~quota_engine.accounts.errors.ValidationError` (bad values),
:class:`~quota_engine.accounts.errors.NotFoundError` (no account), :class:`KeyReusedError`,
and :class:`ActionRefusedError` for a valid request the account's state forbids (closed
account, unknown bucket, unit mismatch, overflow, not enough to take away): the script's
rows of :data:`quota_engine.accounts.errors.REFUSALS`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from quota_engine.accounts.errors import (
    ActionRefusedError,
    KeyReusedError,
    ValidationError,
    refusal,
)
from quota_engine.accounts.model import (
    MAIN_BUCKET,
    Bucket,
    bucket_catalog_problems,
    id_problem,
    is_int,
    validate_bucket,
)
from quota_engine.store.accounts import AccountStore
from quota_engine.store.balance_actions import apply_balance_action, read_history
from quota_engine.store.clients import StoreClient
from quota_engine.store.events import ACCOUNT_BARRED, CREDIT_ADDED, publish_account_event
from quota_engine.store.limits import MAX_AMOUNT
from quota_engine.store.scripts import BALANCE_ACTION

__all__ = [
    "ACTION_TYPES",
    "CLOSED",
    "IDEMPOTENCY_TTL",
    "ActionRefusedError",
    "ActionResult",
    "BalanceActions",
    "KeyReusedError",
    "create_is_default",
    "key_problem",
    "normalize_entry",
]

CLOSED = "closed"
ACTION_TYPES = ("topup", "adjustment")
IDEMPOTENCY_TTL = 90 * 86_400
"""Seconds an idempotency key and its result are kept (a replay after that credits again)."""
MAX_REASON = 500
_KEY = re.compile(r"[A-Za-z0-9._:~-]{1,128}")
_KEY_TEXT = "1 to 128 letters, digits, '.', '_', ':', '~' or '-'"


def key_problem(key: Any) -> str | None:
    """Why ``key`` is not a valid idempotency key, or None."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        return f"must be {_KEY_TEXT}"
    return None


_HISTORY_FIELDS = (
    "id",
    "type",
    "amount",
    "bucket",
    "unit",
    "reason",
    "key",
    "time",
    "resulting_amount",
    "created_bucket",
)


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The outcome of a top-up or adjustment: the history ``entry`` (the first call's,
    for a replay) and whether this call was a ``replay``."""

    entry: dict[str, Any]
    replay: bool

    @property
    def credited(self) -> bool:
        return not self.replay and self.entry["amount"] > 0


def normalize_entry(raw: bytes | str) -> dict[str, Any]:
    """One stored history entry with every field of the API (absent ones None).

    Other writers of the history name their type ``action``: credits of
    :meth:`AccountStore.credit` (``credit``) and refunds of the charging scripts
    (``refund``, with ``currency``, ``units``, ``session``, ``request``); they are shown
    with that type, and their other fields are kept.
    """
    try:
        data = json.loads(raw)
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    entry = {name: data.get(name) for name in _HISTORY_FIELDS}
    entry["type"] = data.get("type") or data.get("action")
    entry["unit"] = data.get("unit") or data.get("currency")
    entry["created_bucket"] = bool(data.get("created_bucket", False))
    entry.update((k, v) for k, v in data.items() if k not in entry and k != "action")
    return entry


class BalanceActions:
    """Top-ups, adjustments, their history and closing, over one Redis.

    ``accounts`` checks the buckets a top-up creates against the catalog (the active one
    unless the store was given a fixed catalog).
    """

    def __init__(self, redis: StoreClient, accounts: AccountStore | None = None) -> None:
        self._redis = redis
        self._accounts = accounts or AccountStore(redis)

    async def topup(
        self,
        account_id: str,
        amount: int,
        *,
        key: str,
        bucket: str = MAIN_BUCKET,
        reason: str | None = None,
        unit: str | None = None,
        create: Bucket | None = None,
        now: int | None = None,
    ) -> ActionResult:
        """Credit ``amount`` (> 0) to ``bucket``, once per ``key``.

        A missing bucket is created from ``create`` (its ``id`` must be ``bucket``; its
        ``amount`` is ignored); a missing ``main`` bucket is created as the money bucket
        without one. ``unit``, when given, must be the bucket's unit (the account
        currency for money, else octets, seconds or events).
        """
        problems = []
        if not is_int(amount, 1, MAX_AMOUNT):
            problems.append(("amount", f"must be an integer from 1 to {MAX_AMOUNT}"))
        template = create
        if template is None and bucket == MAIN_BUCKET:
            template = Bucket(id=MAIN_BUCKET, kind="money", amount=0)
        elif template is not None:
            if template.id != bucket:
                problems.append(("create.id", "must be the bucket id of the top-up"))
            bucket_problems = validate_bucket(template)
            if not bucket_problems:
                bucket_problems = bucket_catalog_problems(template, await self._accounts.catalog())
            problems += [(f"create.{field}", message) for field, message in bucket_problems]
        return await self._run(
            "topup", account_id, amount, key, bucket, reason, unit, template, problems, now
        )

    async def adjust(
        self,
        account_id: str,
        amount: int,
        *,
        key: str,
        reason: str,
        bucket: str = MAIN_BUCKET,
        unit: str | None = None,
        now: int | None = None,
    ) -> ActionResult:
        """Move ``bucket`` up or down by ``amount`` (non-zero), once per ``key``.

        Taking away is refused (:class:`ActionRefusedError`) below what live sessions
        hold reserved (for a postpaid account's main bucket: below reserved minus the
        credit limit). The bucket must exist.
        """
        problems = []
        if not is_int(amount, -MAX_AMOUNT, MAX_AMOUNT) or amount == 0:
            problems.append(
                (
                    "amount",
                    f"must be a non-zero integer from -{MAX_AMOUNT} to {MAX_AMOUNT}",
                )
            )
        if not isinstance(reason, str) or not reason.strip():
            problems.append(("reason", "is required for an adjustment"))
        return await self._run(
            "adjustment", account_id, amount, key, bucket, reason, unit, None, problems, now
        )

    async def _run(
        self,
        action: str,
        account_id: str,
        amount: int,
        key: str,
        bucket: str,
        reason: str | None,
        unit: str | None,
        template: Bucket | None,
        problems: list[tuple[str, str]],
        now: int | None,
    ) -> ActionResult:
        if id_problem(account_id) is not None:
            problems.insert(0, ("account", "must be a valid account id"))
        if (problem := key_problem(key)) is not None:
            problems.append(("key", problem))
        if id_problem(bucket) is not None:
            problems.append(("bucket", "must be a bucket id"))
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
            problems.append(("reason", f"must be a string of at most {MAX_REASON} characters"))
        if unit is not None and not isinstance(unit, str):
            problems.append(("unit", "must be a string"))
        if problems:
            raise ValidationError(problems)
        request = {
            "type": action,
            "amount": amount,
            "bucket": bucket,
            "reason": reason,
            "unit": unit,
            "create": None
            if template is None or create_is_default(template)
            else template.definition(),
        }
        fingerprint = hashlib.sha256(
            json.dumps(request, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        head = json.dumps(
            {
                "id": uuid.uuid4().hex,
                "type": action,
                "amount": amount,
                "bucket": bucket,
                "reason": reason,
                "key": key,
                "time": int(time.time()) if now is None else now,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )[:-1]
        packed = b""
        if template is not None:
            packed = Bucket(
                id=bucket,
                kind=template.kind,
                unit=template.unit,
                amount=0,
                priority=template.priority,
                valid_from=template.valid_from,
                valid_to=template.valid_to,
                services=tuple(template.services),
            ).pack()
        status, payload = await apply_balance_action(
            self._redis,
            account_id,
            key=key,
            bucket=bucket,
            amount=amount,
            fingerprint=fingerprint,
            create=packed,
            unit=unit or "",
            entry_head=head,
            ttl=IDEMPOTENCY_TTL,
        )
        if status == "replay":
            stored_fingerprint, _, entry = payload.partition("\n")
            if stored_fingerprint != fingerprint:
                raise KeyReusedError(
                    "key", f"idempotency key {key!r} was used for a different request"
                )
            return ActionResult(normalize_entry(entry), replay=True)
        if status == "ok":
            result = ActionResult(normalize_entry(payload), replay=False)
            if result.credited:
                await publish_account_event(self._redis, CREDIT_ADDED, account_id)
            return result
        raise refusal(
            BALANCE_ACTION.name,
            status,
            account=account_id,
            bucket=bucket,
            detail=payload,
            limit=MAX_AMOUNT,
            taken=-amount,
            hint=" (give create to make it)" if action == "topup" else "",
        )

    async def history(
        self, account_id: str, offset: int = 0, limit: int = 100
    ) -> tuple[int, list[dict[str, Any]]]:
        """``(total, entries)``: the account's balance actions, newest first."""
        total, raw = await read_history(self._redis, account_id, offset, limit)
        return total, [normalize_entry(item) for item in raw]

    async def close(self, account_id: str) -> tuple[str, list[str]]:
        """Close the account: ``(previous status, identities released)``.

        Closing a closed account changes nothing. Publishes account_barred on the first
        close, so the sessions still open are aborted.
        """
        previous = await self._accounts.write_status(account_id, CLOSED)
        released = []
        for identity in await self._accounts.subscriptions(account_id):
            if await self._accounts.remove_subscription(account_id, identity):
                released.append(identity)
        if previous != CLOSED:
            await publish_account_event(self._redis, ACCOUNT_BARRED, account_id)
        return previous, released


def create_is_default(template: Bucket) -> bool:
    """True for the implicit template of the main money bucket."""
    return template == Bucket(id=MAIN_BUCKET, kind="money", amount=0)
