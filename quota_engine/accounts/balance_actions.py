"""Balance actions: idempotent top-ups and adjustments with a history, and closing an account.

TM Forum TMF654 names: a *topupBalance* credits a bucket, an *adjustBalance* moves it up
or down with a reason, the *balanceActionHistory* lists both. Each action is ONE Lua
script call on the account's hash slot that, atomically:

1. looks up the idempotency key ``ocs:acct:{A}:topup:<key>``: when present, the stored
   result of the first call is returned and nothing else happens (a different request
   under the same key is refused: :class:`KeyReusedError`);
2. checks the account (exists, not closed) and the bucket (exists, or is created from
   the template the caller gives: the ``main`` money bucket, or a units bucket with its
   services and validity);
3. changes the bucket's ``amount`` only (``reserved`` and every other field are kept, so
   reservations the charging scripts make at the same time are not disturbed), re-packed
   with :data:`quota_engine.accounts.model.PACK_BUCKET_LUA`;
4. appends the history entry to ``ocs:acct:{A}:history`` (JSON: id, type, amount,
   bucket, unit, reason, key, time, resulting_amount, created_bucket) and stores the same
   entry under the key (kept :data:`IDEMPOTENCY_TTL` seconds).

A credit (positive amount) then publishes ``credit_added`` on
:data:`quota_engine.store.keys.EVENTS_CHANNEL`, so the node holding a session under final unit
indication sends it a Re-Auth-Request. :func:`BalanceActions.close` sets the status
``closed`` (a terminal status outside :data:`quota_engine.accounts.model.STATUSES`: charging
denies it like any status but active), releases the account's identities and publishes
``account_barred``, so open sessions get an Abort-Session-Request.

Errors are :class:`quota_engine.accounts.model.AccountError` subclasses naming the field:
:class:`~quota_engine.accounts.model.ValidationError` (bad values),
:class:`~quota_engine.accounts.model.NotFoundError` (no account), :class:`KeyReusedError`, and
:class:`ActionRefusedError` for a valid request the account's state forbids (closed
account, unknown bucket, unit mismatch, overflow, not enough to take away).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from quota_engine.accounts.model import (
    MAIN_BUCKET,
    PACK_BUCKET_LUA,
    AccountError,
    AccountStore,
    Bucket,
    NotFoundError,
    ValidationError,
    bucket_catalog_problems,
    validate_bucket,
)
from quota_engine.store import keys

__all__ = [
    "ACTION_TYPES",
    "CLOSED",
    "IDEMPOTENCY_TTL",
    "ActionRefusedError",
    "BalanceActions",
    "KeyReusedError",
    "idempotency_key",
    "key_problem",
]

CLOSED = "closed"
ACTION_TYPES = ("topup", "adjustment")
IDEMPOTENCY_TTL = 90 * 86_400
"""Seconds an idempotency key and its result are kept (a replay after that credits again)."""
MAX_REASON = 500
_KEY = re.compile(r"[A-Za-z0-9._:~-]{1,128}")
_KEY_TEXT = "1 to 128 letters, digits, '.', '_', ':', '~' or '-'"


class KeyReusedError(AccountError):
    """The idempotency key was used before for a different request (HTTP 409)."""


class ActionRefusedError(AccountError):
    """A valid request that the account's current state forbids (HTTP 422)."""


def key_problem(key: Any) -> str | None:
    """Why ``key`` is not a valid idempotency key, or None."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        return f"must be {_KEY_TEXT}"
    return None


def idempotency_key(account_id: str, key: str) -> str:
    """``ocs:acct:{A}:topup:<key>``: in the account's slot, for top-ups and adjustments."""
    return f"{keys.account(account_id)}:topup:{key}"


# KEYS[1] account hash, KEYS[2] buckets hash, KEYS[3] history list, KEYS[4] idempotency key.
# ARGV[1] bucket id, ARGV[2] signed amount (integer), ARGV[3] request fingerprint (hex),
# ARGV[4] msgpack bucket to create when missing ('' = none; amount 0, reserved 0),
# ARGV[5] unit the caller expects ('' = any; the currency for money),
# ARGV[6] history entry JSON without its closing brace, ARGV[7] largest amount,
# ARGV[8] key TTL in seconds.
# Returns {status, payload}: replay (stored "<fingerprint>\n<entry>") | no_account |
# closed | no_bucket | unit_mismatch ("<kind> <unit>") | overflow (current amount) |
# below (most that can be taken) | ok (the entry). Only the bucket's "amount" changes.
_APPLY = (
    PACK_BUCKET_LUA
    + """
local stored = redis.call('GET', KEYS[4])
if stored then return {'replay', stored} end
local A = redis.call('HMGET', KEYS[1], 'status', 'kind', 'credit_limit', 'currency')
if not A[1] then return {'no_account', ''} end
if A[1] == 'closed' then return {'closed', ''} end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
local bucket, created
if raw then
  bucket, created = cmsgpack.unpack(raw), false
  if ARGV[4] ~= '' then
    local want = cmsgpack.unpack(ARGV[4])
    if want['kind'] ~= bucket['kind'] or want['unit'] ~= bucket['unit'] then
      return {'unit_mismatch', tostring(bucket['kind']) .. ' ' .. tostring(bucket['unit'])}
    end
  end
else
  if ARGV[4] == '' then return {'no_bucket', ''} end
  bucket, created = cmsgpack.unpack(ARGV[4]), true
end
local unit = bucket['unit']
if bucket['kind'] == 'money' then unit = A[4] end
if ARGV[5] ~= '' and ARGV[5] ~= unit then
  return {'unit_mismatch', tostring(bucket['kind']) .. ' ' .. tostring(unit)}
end
local current = tonumber(bucket['amount']) or 0
local reserved = tonumber(bucket['reserved']) or 0
local delta = tonumber(ARGV[2])
local amount = current + delta
if amount > tonumber(ARGV[7]) then
  return {'overflow', string.format('%d', current)}
end
if delta < 0 then
  local floor = reserved
  if bucket['id'] == 'main' and bucket['kind'] == 'money' and A[2] == 'postpaid' then
    floor = reserved - (tonumber(A[3]) or 0)
  end
  if amount < floor then
    local most = current - floor
    if most < 0 then most = 0 end
    return {'below', string.format('%d', most)}
  end
end
bucket['amount'] = amount
redis.call('HSET', KEYS[2], ARGV[1], pack_bucket(bucket))
local entry = ARGV[6] .. ',"unit":' .. cjson.encode(unit or cjson.null)
  .. ',"resulting_amount":' .. string.format('%d', amount)
  .. ',"created_bucket":' .. (created and 'true' or 'false') .. '}'
redis.call('RPUSH', KEYS[3], entry)
redis.call('SET', KEYS[4], ARGV[3] .. '\\n' .. entry, 'EX', tonumber(ARGV[8]))
return {'ok', entry}
"""
)

# KEYS[1] account hash; returns {1, previous status} (status set to closed) or {0, ''}.
_CLOSE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
local old = redis.call('HGET', KEYS[1], 'status') or ''
redis.call('HSET', KEYS[1], 'status', 'closed')
return {1, old}
"""

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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _is_int(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


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

    def __init__(self, redis: aioredis.Redis, accounts: AccountStore | None = None) -> None:
        self._redis = redis
        self._accounts = accounts or AccountStore(redis)
        self._apply = redis.register_script(_APPLY)
        self._close = redis.register_script(_CLOSE)

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
        if not _is_int(amount, 1, keys.MAX_AMOUNT):
            problems.append(("amount", f"must be an integer from 1 to {keys.MAX_AMOUNT}"))
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
        if not _is_int(amount, -keys.MAX_AMOUNT, keys.MAX_AMOUNT) or amount == 0:
            problems.append(
                (
                    "amount",
                    f"must be a non-zero integer from -{keys.MAX_AMOUNT} to {keys.MAX_AMOUNT}",
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
        if not isinstance(account_id, str) or _text_problem(account_id):
            problems.insert(0, ("account", "must be a valid account id"))
        if (problem := key_problem(key)) is not None:
            problems.append(("key", problem))
        if not isinstance(bucket, str) or _text_problem(bucket):
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
        status, payload = await self._apply(
            keys=[
                keys.account(account_id),
                keys.buckets(account_id),
                keys.history(account_id),
                idempotency_key(account_id, key),
            ],
            args=[
                bucket,
                amount,
                fingerprint,
                packed,
                unit or "",
                head,
                keys.MAX_AMOUNT,
                IDEMPOTENCY_TTL,
            ],
        )
        status, payload = _text(status), _text(payload)
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
                await self._publish("credit_added", account_id)
            return result
        raise _refusal(status, payload, account_id, bucket, amount, action)

    async def history(
        self, account_id: str, offset: int = 0, limit: int = 100
    ) -> tuple[int, list[dict[str, Any]]]:
        """``(total, entries)``: the account's balance actions, newest first."""
        key = keys.history(account_id)
        total = int(await self._redis.llen(key))
        if offset >= total or limit <= 0:
            return total, []
        end = total - 1 - offset
        start = max(0, end - limit + 1)
        raw = await self._redis.lrange(key, start, end)
        return total, [normalize_entry(item) for item in reversed(raw)]

    async def close(self, account_id: str) -> tuple[str, list[str]]:
        """Close the account: ``(previous status, identities released)``.

        Closing a closed account changes nothing. Publishes account_barred on the first
        close, so the sessions still open are aborted.
        """
        found, previous = await self._close(keys=[keys.account(account_id)])
        if not found:
            raise NotFoundError("account", f"no account {account_id!r}")
        previous = _text(previous)
        released = []
        for identity in await self._accounts.subscriptions(account_id):
            if await self._accounts.remove_subscription(account_id, identity):
                released.append(identity)
        if previous != CLOSED:
            await self._publish("account_barred", account_id)
        return previous, released

    async def _publish(self, event: str, account_id: str) -> None:
        message = json.dumps({"event": event, "account": account_id})
        await self._redis.publish(keys.EVENTS_CHANNEL, message)


def create_is_default(template: Bucket) -> bool:
    """True for the implicit template of the main money bucket."""
    return template == Bucket(id=MAIN_BUCKET, kind="money", amount=0)


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _text_problem(value: str) -> bool:
    return not _ID.fullmatch(value)


def _refusal(
    status: str, payload: str, account_id: str, bucket: str, amount: int, action: str
) -> AccountError:
    if status == "no_account":
        return NotFoundError("account", f"no account {account_id!r}")
    if status == "closed":
        return ActionRefusedError("account", f"account {account_id!r} is closed")
    if status == "no_bucket":
        hint = " (give create to make it)" if action == "topup" else ""
        return ActionRefusedError(
            "bucket", f"account {account_id!r} has no bucket {bucket!r}{hint}"
        )
    if status == "unit_mismatch":
        return ActionRefusedError("unit", f"bucket {bucket!r} is {payload}")
    if status == "overflow":
        return ActionRefusedError(
            "amount", f"bucket {bucket!r} would exceed {keys.MAX_AMOUNT} (it holds {payload})"
        )
    if status == "below":
        return ActionRefusedError(
            "amount",
            f"cannot take {-amount} from bucket {bucket!r}: at most {payload} is free "
            "(units reserved by live sessions stay)",
        )
    return AccountError("account", f"unexpected script status {status!r}")
