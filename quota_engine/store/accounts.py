"""AccountStore: accounts, identities and buckets in Redis.

The stored format is a contract with the charging scripts (key schema:
:mod:`quota_engine.store.keys`):

* ``ocs:acct:{P}:A`` HASH of strings: kind, status, currency, credit_limit, plan,
  bill_cycle_day, parent and reseller (only when set), created, and the billing preferences
  tax_exempt, bill_separately (``"1"``) and itemisation (only when not the default)
  (:meth:`Account.to_hash`).
* ``ocs:acct:{P}:A:history`` LIST (quota_engine/store/balance_actions.py): a write that
  changes an account's plan appends ``{"type": "plan_change", "previous", "plan",
  "time"}`` in the same MULTI as the account hash.
* ``ocs:acct:{P}:A:buckets`` HASH bucket id -> msgpack map (:meth:`Bucket.pack`, the
  form of lua/pack_bucket.lua); ``amount`` includes ``reserved``. The charging scripts
  re-pack buckets with Lua's cmsgpack, which drops keys whose value is nil, so readers
  treat a missing key as None.
* ``ocs:sub:<identity>`` -> account id, ``ocs:acct:{P}:A:subs`` SET, ``ocs:accounts`` SET.

Every write to one account's keys is atomic (a script of lua/, called through its
typed arguments and answer in :mod:`quota_engine.store.contract`, or WATCH/MULTI on one
key), so nothing here can lose a reservation the charging scripts make concurrently;
``reserved`` is never written by this module. Writes that span slots (the identity
index, the account list) are ordered so that re-running an interrupted call repairs
the state. Errors name the field at fault (:mod:`quota_engine.accounts.errors`; a
script's refusals are its rows of :data:`~quota_engine.accounts.errors.REFUSALS`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass

from redis.exceptions import WatchError

from quota_engine.accounts.errors import AccountError, ConflictError, NotFoundError, refusal
from quota_engine.accounts.model import (
    OPTIONAL_ACCOUNT_FIELDS,
    STATUSES,
    Account,
    Bucket,
    account_catalog_problems,
    bucket_catalog_problems,
    is_int,
    parse_identity,
    raise_problems,
    require_id,
    validate_account,
    validate_bucket,
)
from quota_engine.catalog import Catalog
from quota_engine.store import keys
from quota_engine.store.catalogs import CatalogStore
from quota_engine.store.clients import StoreClient
from quota_engine.store.contract import (
    CreditArgs,
    PutBucketArgs,
    ReleaseIdentityArgs,
    SetStatusArgs,
    decode_credit,
    decode_put_bucket,
    decode_release_identity,
    decode_set_status,
)
from quota_engine.store.events import ACCOUNT_BARRED, CREDIT_ADDED, publish_account_event
from quota_engine.store.limits import MAX_AMOUNT
from quota_engine.store.scripts import CREDIT, PUT_BUCKET, RELEASE_IDENTITY, SET_STATUS
from quota_engine.store.text import text

__all__ = [
    "KIND_CHANGE",
    "PLAN_CHANGE",
    "AccountSnapshot",
    "AccountStore",
    "kind_change_entry",
    "plan_change_entry",
]

_WATCH_ATTEMPTS = 50
PLAN_CHANGE = "plan_change"
"""The history ``type`` of an account's change of plan."""


KIND_CHANGE = "kind_change"
"""The history ``type`` of an account's change between prepaid and postpaid."""


def plan_change_entry(previous: str, plan: str, at: int) -> str:
    """The history entry (JSON) of a change from plan ``previous`` to ``plan`` at ``at``."""
    return _history_entry({"type": PLAN_CHANGE, "previous": previous, "plan": plan, "time": at})


def kind_change_entry(previous: str, kind: str, at: int) -> str:
    """The history entry (JSON) of a change from kind ``previous`` (prepaid, postpaid)
    to ``kind`` at ``at``: the bill run bills an account's usage only from when it last
    became postpaid, whether its plan changed with it or not."""
    return _history_entry({"type": KIND_CHANGE, "previous": previous, "kind": kind, "time": at})


def _history_entry(entry: dict[str, object]) -> str:
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """One account as stored, read in one go (:meth:`AccountStore.snapshots`):
    ``fields`` is the account hash (:meth:`Account.from_hash` reads it), ``identities``
    sorted, ``history`` the raw JSON entries oldest first, ``partition`` the account's
    record partition."""

    id: str
    fields: dict[str, str]
    identities: tuple[str, ...]
    history: tuple[bytes, ...]
    partition: int


class AccountStore:
    """Accounts, identities and buckets of one Redis (or Redis Cluster).

    Plans and bucket services are checked against ``catalog`` when given, else against
    the catalog active in Redis (re-read when the active version changes); with no
    catalog at all, accounts and buckets are refused.
    """

    def __init__(self, redis: StoreClient, *, catalog: Catalog | None = None) -> None:
        self._redis = redis
        self._fixed_catalog = catalog
        self._catalogs = CatalogStore(redis)
        self._cached: tuple[str, Catalog] | None = None

    # -- catalog

    async def catalog(self) -> Catalog:
        """The catalog accounts are checked against; :class:`AccountError` when none."""
        if self._fixed_catalog is not None:
            return self._fixed_catalog
        version = await self._catalogs.active_version()
        if version is None:
            raise AccountError("plan", "no catalog is active: save and activate one first")
        if self._cached is None or self._cached[0] != version:
            catalog = await self._catalogs.load(version)
            if catalog is None:
                raise AccountError("plan", f"the active catalog {version!r} is not stored")
            self._cached = (version, catalog)
        return self._cached[1]

    async def _require_account(self, account_id: str, field: str = "account") -> None:
        require_id(account_id, field)
        if not await self._redis.exists(keys.account(account_id)):
            raise NotFoundError(field, f"no account {account_id!r}")

    # -- accounts

    async def create_account(
        self, account: Account, *, upsert: bool = False, now: int | None = None
    ) -> str:
        """Store ``account``; returns "created", "updated" or "unchanged".

        The same document again is a no-op ("unchanged"; ``created`` is not compared).
        An existing account that differs raises :class:`ConflictError` naming the
        fields, unless ``upsert``: then the fields are overwritten and the original
        ``created`` is kept. Setting status barred this way publishes account_barred.
        An update that changes the plan appends a ``plan_change`` entry dated ``now``
        (Unix seconds; default: this server's clock) to the account's history, in the
        same transaction as the account (the bill run prorates the fees by it); one
        that changes the kind (prepaid, postpaid) a ``kind_change`` entry (the bill run
        bills usage from when the account became postpaid).
        """
        problems = validate_account(account)
        if not problems:
            problems = account_catalog_problems(account, await self.catalog())
        raise_problems(problems)
        if account.parent is not None:
            await self._require_account(account.parent, "parent")
        key = keys.account(account.id)
        outcome, previous = await self._write_account(key, account, upsert, now)
        await self._redis.sadd(keys.ACCOUNTS, account.id)  # repairs an interrupted create
        if account.status == "barred" and previous is not None and previous.status != "barred":
            await publish_account_event(self._redis, ACCOUNT_BARRED, account.id)
        return outcome

    async def _write_account(
        self, key: str, account: Account, upsert: bool, now: int | None
    ) -> tuple[str, Account | None]:
        async with self._redis.pipeline(transaction=True) as pipe:
            for _ in range(_WATCH_ATTEMPTS):
                try:
                    await pipe.watch(key)
                    stored = await pipe.hgetall(key)
                    previous = Account.from_hash(account.id, stored) if stored else None
                    if previous is None:
                        created = account.created or int(time.time())
                        new, outcome = dataclasses.replace(account, created=created), "created"
                    elif not (diff := previous.differences(account)):
                        await pipe.unwatch()
                        return "unchanged", previous
                    elif not upsert:
                        await pipe.unwatch()
                        raise ConflictError(
                            "account",
                            f"account {account.id!r} exists with a different {', '.join(diff)}",
                        )
                    else:
                        new = dataclasses.replace(account, created=previous.created)
                        outcome = "updated"
                    fields = new.to_hash()
                    pipe.multi()
                    pipe.hset(key, mapping=fields)
                    defaults = [f for f in OPTIONAL_ACCOUNT_FIELDS if f not in fields]
                    if previous is not None and defaults:
                        pipe.hdel(key, *defaults)
                    at = int(time.time()) if now is None else now
                    if previous is not None and previous.plan != new.plan:
                        entry = plan_change_entry(previous.plan, new.plan, at)
                        pipe.rpush(keys.history(account.id), entry)
                    if previous is not None and previous.kind != new.kind:
                        entry = kind_change_entry(previous.kind, new.kind, at)
                        pipe.rpush(keys.history(account.id), entry)
                    await pipe.execute()
                    return outcome, previous
                except WatchError:
                    continue
        raise ConflictError("account", f"account {account.id!r} kept changing; try again")

    async def get_account(self, account_id: str) -> Account | None:
        stored = await self._redis.hgetall(keys.account(account_id))
        return Account.from_hash(account_id, stored) if stored else None

    async def account_ids(self) -> list[str]:
        """Every account id, sorted."""
        return sorted(text(m) for m in await self._redis.smembers(keys.ACCOUNTS))

    async def accounts_with_subscriptions(
        self, account_ids: list[str]
    ) -> list[tuple[Account, list[str]]]:
        """Each account of ``account_ids`` that exists, with its sorted identities, in
        the order given; read in one pipeline."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for account_id in account_ids:
                pipe.hgetall(keys.account(account_id))
                pipe.smembers(keys.subscriptions(account_id))
            replies = await pipe.execute()
        found = []
        for i, account_id in enumerate(account_ids):
            stored, identities = replies[2 * i], replies[2 * i + 1]
            if stored:
                account = Account.from_hash(account_id, stored)
                found.append((account, sorted(text(m) for m in identities)))
        return found

    async def snapshots(self, account_ids: list[str]) -> list[AccountSnapshot]:
        """Each account of ``account_ids`` that exists, in the order given, with its
        identities, its whole history and its partition: three commands per account
        in one pipeline (give a few hundred ids at a time)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for account_id in account_ids:
                pipe.hgetall(keys.account(account_id))
                pipe.smembers(keys.subscriptions(account_id))
                pipe.lrange(keys.history(account_id), 0, -1)
            replies = await pipe.execute()
        found = []
        for i, account_id in enumerate(account_ids):
            stored, identities, history = replies[3 * i : 3 * i + 3]
            if stored:
                found.append(
                    AccountSnapshot(
                        id=account_id,
                        fields={text(k): text(v) for k, v in stored.items()},
                        identities=tuple(sorted(text(m) for m in identities)),
                        history=tuple(history),
                        partition=keys.partition_of(account_id),
                    )
                )
        return found

    async def set_status(self, account_id: str, status: str) -> str:
        """Set the status; returns the previous one. Barring publishes account_barred."""
        if status not in STATUSES:
            raise AccountError("status", "must be one of " + ", ".join(STATUSES))
        previous = await self.write_status(account_id, status)
        if status == "barred":
            await publish_account_event(self._redis, ACCOUNT_BARRED, account_id)
        return previous

    async def write_status(self, account_id: str, status: str) -> str:
        """Write ``status`` as it is (closing writes one outside :data:`STATUSES`);
        returns the previous one. No event: the caller publishes what it means."""
        require_id(account_id)
        call = SetStatusArgs(account_id, status)
        answer = decode_set_status(await SET_STATUS(self._redis, call.keys(), call.argv()))
        if answer.status != "ok":
            raise refusal(SET_STATUS.name, answer.status, account=account_id)
        return answer.previous

    # -- identities

    async def resolve(self, identity: str) -> str | None:
        """The account id an identity belongs to, or None."""
        found = await self._redis.get(keys.subscriber(identity))
        return None if found is None else text(found)

    async def add_subscription(self, account_id: str, identity: str) -> bool:
        """Attach ``identity`` to the account; False when it already was.

        An identity belongs to one account: one attached elsewhere raises
        :class:`ConflictError` (remove it there first).
        """
        identity = parse_identity(identity)
        await self._require_account(account_id)
        key = keys.subscriber(identity)
        added = await self._redis.set(key, account_id, nx=True)
        if not added:
            owner = await self.resolve(identity)
            if owner != account_id:
                raise ConflictError(
                    "identity", f"{identity} belongs to account {owner!r}; remove it there first"
                )
        # SADD after the index: a crash in between is repaired by calling again
        await self._redis.sadd(keys.subscriptions(account_id), identity)
        return bool(added)

    async def remove_subscription(self, account_id: str, identity: str) -> bool:
        """Detach ``identity`` from the account; False when it was not attached to it."""
        identity = parse_identity(identity)
        require_id(account_id)
        call = ReleaseIdentityArgs(identity, account_id)
        answer = decode_release_identity(
            await RELEASE_IDENTITY(self._redis, call.keys(), call.argv())
        )
        removed = await self._redis.srem(keys.subscriptions(account_id), identity)
        return answer.released or bool(removed)

    async def subscriptions(self, account_id: str) -> list[str]:
        members = await self._redis.smembers(keys.subscriptions(account_id))
        return sorted(text(m) for m in members)

    # -- buckets

    async def buckets(self, account_id: str) -> list[Bucket]:
        """The account's buckets, lowest priority first, then by id."""
        stored = await self._redis.hgetall(keys.buckets(account_id))
        found = [Bucket.unpack(text(k), v) for k, v in stored.items()]
        return sorted(found, key=lambda b: (b.priority, b.id))

    async def bucket(self, account_id: str, bucket_id: str) -> Bucket | None:
        raw = await self._redis.hget(keys.buckets(account_id), bucket_id)
        return None if raw is None else Bucket.unpack(bucket_id, raw)

    async def put_bucket(self, account_id: str, bucket: Bucket, *, replace: bool = False) -> str:
        """Create the bucket if missing; returns "created", "replaced" or "unchanged".

        An existing bucket is left alone unless ``replace``: then every field but
        ``reserved`` is overwritten (``bucket.reserved`` is ignored; live reservations
        are kept). Replacing is refused when the new amount is below what is reserved,
        or when kind or unit change while units are reserved. Publishes credit_added
        when a bucket with a positive amount is written.
        """
        problems = validate_bucket(bucket)
        if not problems:
            problems = bucket_catalog_problems(bucket, await self.catalog())
        raise_problems(problems)
        require_id(account_id)
        new = dataclasses.replace(bucket, services=tuple(bucket.services), reserved=0)
        existing = await self.bucket(account_id, bucket.id)
        if existing is not None and (not replace or existing.definition() == new.definition()):
            return "unchanged"
        call = PutBucketArgs(account_id, bucket.id, new.pack(), replace=replace)
        answer = decode_put_bucket(await PUT_BUCKET(self._redis, call.keys(), call.argv()))
        if answer.status == "kept":
            return "unchanged"
        if answer.status not in ("created", "replaced"):
            raise refusal(
                PUT_BUCKET.name,
                answer.status,
                account=account_id,
                bucket=bucket.id,
                amount=bucket.amount,
                detail=answer.reserved,
            )
        if new.amount > 0:
            await publish_account_event(self._redis, CREDIT_ADDED, account_id)
        return answer.status

    async def credit(self, account_id: str, bucket_id: str, amount: int, *, reason: str) -> int:
        """Add ``amount`` (> 0) to a bucket atomically; returns the new amount.

        Only the bucket's ``amount`` changes, inside one script, so reservations the
        charging scripts make at the same time are kept. The credit is appended to the
        account history with ``reason``; credit_added is published.
        """
        if not is_int(amount, 1, MAX_AMOUNT):
            raise AccountError("amount", f"must be an integer from 1 to {MAX_AMOUNT}")
        if not isinstance(reason, str) or not reason.strip():
            raise AccountError("reason", "is required")
        require_id(account_id)
        entry = json.dumps(
            {
                "time": int(time.time()),
                "action": "credit",
                "bucket": bucket_id,
                "amount": amount,
                "reason": reason,
            },
            ensure_ascii=False,
        )
        call = CreditArgs(account_id, bucket_id, amount, entry)
        answer = decode_credit(await CREDIT(self._redis, call.keys(), call.argv()))
        if answer.status != "ok":
            raise refusal(
                CREDIT.name,
                answer.status,
                account=account_id,
                bucket=bucket_id,
                limit=call.limit,
                detail=answer.amount,
            )
        await publish_account_event(self._redis, CREDIT_ADDED, account_id)
        return answer.amount
