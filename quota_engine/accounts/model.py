"""Accounts, subscriptions and balance buckets in Redis (key schema: :mod:`quota_engine.store.keys`).

The stored format is a contract with the charging scripts:

* ``ocs:acct:{A}`` HASH of strings: kind, status, currency, credit_limit, plan,
  bill_cycle_day, parent (only when set), created.
* ``ocs:acct:{A}:buckets`` HASH bucket id -> msgpack map (see :class:`Bucket`);
  ``amount`` includes ``reserved``. The charging scripts re-pack buckets with Lua's
  cmsgpack, which drops keys whose value is nil, so readers treat a missing key as None.
* ``ocs:sub:<identity>`` -> account id, ``ocs:acct:{A}:subs`` SET, ``ocs:accounts`` SET.

Every write to one account's keys is atomic (a small Lua script or WATCH/MULTI on one
key), so nothing here can lose a reservation the charging scripts make concurrently;
``reserved`` is never written by this module. Writes that span slots (the identity
index, the account list) are ordered so that re-running an interrupted call repairs
the state. Errors name the field at fault: :class:`AccountError` and its subclasses.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from quota_engine.catalog import Catalog
from quota_engine.store import keys
from quota_engine.store.catalogs import CatalogStore

__all__ = [
    "ACCOUNT_KINDS",
    "BUCKET_KINDS",
    "BUCKET_UNITS",
    "MAIN_BUCKET",
    "PACK_BUCKET_LUA",
    "STATUSES",
    "Account",
    "AccountError",
    "AccountStore",
    "Bucket",
    "ConflictError",
    "NotFoundError",
    "ValidationError",
    "account_catalog_problems",
    "bucket_catalog_problems",
    "identity_problem",
    "parse_identity",
    "validate_account",
    "validate_bucket",
]

ACCOUNT_KINDS = ("prepaid", "postpaid")
STATUSES = ("active", "suspended", "barred")
BUCKET_KINDS = ("money", "units")
BUCKET_UNITS = ("octets", "seconds", "events")
MAIN_BUCKET = "main"
MAX_PRIORITY = 2**31 - 1

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ID_TEXT = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
_CURRENCY = re.compile(r"[A-Z]{3}")
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
_IDENTITY_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "msisdn": (re.compile(r"[1-9][0-9]{6,14}"), "must be an E.164 number: 7 to 15 digits, no '+'"),
    "imsi": (re.compile(r"[0-9]{15}"), "must be an IMSI: 15 digits"),
    "sip": (
        re.compile(rf"sips?:(?:[^\s@;]+@)?{_HOST}(?::[0-9]{{1,5}})?"),
        'must be a SIP URI such as "sip:alice@example.net" (identity "sip:sip:alice@example.net")',
    ),
    "nai": (re.compile(rf"[^\s@]+@{_HOST}"), "must be a NAI user@realm"),
}
_MAX_IDENTITY = 255


# --------------------------------------------------------------------------- errors


class AccountError(ValueError):
    """A request the store refuses; ``field`` names the value at fault."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class ValidationError(AccountError):
    """A document with problems; ``problems`` lists every one as ``(field, message)``."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__(*self.problems[0])
        self.args = ("; ".join(f"{f}: {m}" for f, m in self.problems),)

    def __str__(self) -> str:
        return self.args[0]


class NotFoundError(AccountError):
    """The account or bucket does not exist."""


class ConflictError(AccountError):
    """The request contradicts what is stored (identity on another account, ...)."""


# --------------------------------------------------------------------------- values


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _is_int(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def identity_problem(identity: Any) -> str | None:
    """Why ``identity`` (``kind:value``, see :func:`keys.identity`) is invalid, or None."""
    if not isinstance(identity, str):
        return 'must be a string "type:value" such as "msisdn:491700000001"'
    kind, sep, value = identity.partition(":")
    if not sep or kind not in _IDENTITY_RULES:
        return f'must be "type:value" with type one of {", ".join(keys.IDENTITY_TYPES)}'
    pattern, message = _IDENTITY_RULES[kind]
    if len(identity) > _MAX_IDENTITY or not pattern.fullmatch(value):
        return f"{kind} {message}, got {value!r}"
    return None


def parse_identity(identity: Any, field: str = "identity") -> str:
    """The canonical identity string; :class:`AccountError` naming ``field`` when invalid."""
    problem = identity_problem(identity)
    if problem is not None:
        raise AccountError(field, problem)
    return identity


def _id_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        return f"must be {_ID_TEXT}"
    return None


@dataclass(frozen=True, kw_only=True, slots=True)
class Account:
    id: str
    kind: str
    status: str = "active"
    currency: str
    credit_limit: int = 0  # micro-units; postpaid only
    plan: str
    bill_cycle_day: int = 1
    parent: str | None = None
    created: int | None = None  # Unix seconds; set by the store on creation

    def to_hash(self) -> dict[str, str]:
        """The stored fields (``parent`` only when set, ``created`` only when known)."""
        fields = {
            "kind": self.kind,
            "status": self.status,
            "currency": self.currency,
            "credit_limit": str(self.credit_limit),
            "plan": self.plan,
            "bill_cycle_day": str(self.bill_cycle_day),
        }
        if self.parent is not None:
            fields["parent"] = self.parent
        if self.created is not None:
            fields["created"] = str(self.created)
        return fields

    @classmethod
    def from_hash(cls, account_id: str, stored: Mapping[Any, Any]) -> Account:
        f = {_text(k): _text(v) for k, v in stored.items()}
        return cls(
            id=account_id,
            kind=f.get("kind", ""),
            status=f.get("status", ""),
            currency=f.get("currency", ""),
            credit_limit=int(f.get("credit_limit", "0")),
            plan=f.get("plan", ""),
            bill_cycle_day=int(f.get("bill_cycle_day", "1")),
            parent=f.get("parent") or None,
            created=int(f["created"]) if f.get("created") else None,
        )

    def differences(self, other: Account) -> list[str]:
        """Names of the fields that differ from ``other`` (``created`` ignored)."""
        return [
            f.name
            for f in dataclasses.fields(self)
            if f.name != "created" and getattr(self, f.name) != getattr(other, f.name)
        ]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class Bucket:
    """A balance: money (micro-units of the account currency) or units of one type.

    ``amount`` includes ``reserved`` (units held by live sessions); ``available`` is what
    is left to grant. ``services`` lists service ids: for money, empty means every
    service; a units bucket applies only to the services listed. Lower ``priority`` is
    consumed first. ``valid_from``/``valid_to`` are Unix seconds (None: unbounded).
    """

    id: str
    kind: str
    unit: str | None = None
    amount: int
    reserved: int = 0
    priority: int = 0
    valid_from: int | None = None
    valid_to: int | None = None
    services: tuple[str, ...] = ()

    @property
    def available(self) -> int:
        return self.amount - self.reserved

    def to_map(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "unit": self.unit,
            "amount": self.amount,
            "reserved": self.reserved,
            "priority": self.priority,
            "valid_from": self.valid_from,
            "valid_to": self.valid_to,
            "services": list(self.services),
        }

    def pack(self) -> bytes:
        return msgpack.packb(self.to_map())

    @classmethod
    def unpack(cls, bucket_id: str, data: bytes) -> Bucket:
        m = msgpack.unpackb(data, raw=False)
        return cls(
            id=m.get("id") or bucket_id,
            kind=m.get("kind") or "money",
            unit=m.get("unit"),
            amount=int(m.get("amount") or 0),
            reserved=int(m.get("reserved") or 0),
            priority=int(m.get("priority") or 0),
            valid_from=m.get("valid_from"),
            valid_to=m.get("valid_to"),
            services=tuple(m.get("services") or ()),
        )

    def definition(self) -> dict[str, Any]:
        """Everything provisioning sets, i.e. all but ``reserved``."""
        m = self.to_map()
        del m["reserved"]
        return m

    def to_dict(self) -> dict[str, Any]:
        return {**self.to_map(), "available": self.available}


# --------------------------------------------------------------------------- validation


def validate_account(account: Account) -> list[tuple[str, str]]:
    """Every problem of ``account`` on its own, as ``(field, message)``."""
    problems: list[tuple[str, str]] = []

    def check(ok: bool, field: str, message: str) -> None:
        if not ok:
            problems.append((field, message))

    if (problem := _id_problem(account.id)) is not None:
        problems.append(("id", problem))
    check(account.kind in ACCOUNT_KINDS, "kind", "must be one of " + ", ".join(ACCOUNT_KINDS))
    check(account.status in STATUSES, "status", "must be one of " + ", ".join(STATUSES))
    check(
        isinstance(account.currency, str) and bool(_CURRENCY.fullmatch(account.currency)),
        "currency",
        "must be an ISO 4217 code (three capital letters)",
    )
    if not _is_int(account.credit_limit, 0, keys.MAX_AMOUNT):
        problems.append(
            ("credit_limit", f"must be an integer from 0 to {keys.MAX_AMOUNT} (micro-units)")
        )
    elif account.kind == "prepaid" and account.credit_limit != 0:
        problems.append(("credit_limit", "must be 0 for a prepaid account"))
    check(isinstance(account.plan, str) and bool(account.plan.strip()), "plan", "is required")
    check(
        _is_int(account.bill_cycle_day, 1, 28), "bill_cycle_day", "must be an integer from 1 to 28"
    )
    if account.parent is not None:
        if (problem := _id_problem(account.parent)) is not None:
            problems.append(("parent", problem))
        elif account.parent == account.id:
            problems.append(("parent", "an account cannot be its own parent"))
    if account.created is not None:
        check(_is_int(account.created, 0, keys.MAX_AMOUNT), "created", "must be Unix seconds")
    return problems


def validate_bucket(bucket: Bucket) -> list[tuple[str, str]]:
    """Every problem of ``bucket`` on its own (``reserved`` is not checked: never written)."""
    problems: list[tuple[str, str]] = []
    if (problem := _id_problem(bucket.id)) is not None:
        problems.append(("id", problem))
    if bucket.kind not in BUCKET_KINDS:
        problems.append(("kind", "must be one of " + ", ".join(BUCKET_KINDS)))
    elif bucket.kind == "money" and bucket.unit is not None:
        problems.append(("unit", "a money bucket has no unit (its unit is the account currency)"))
    elif bucket.kind == "units" and bucket.unit not in BUCKET_UNITS:
        problems.append(("unit", "must be one of " + ", ".join(BUCKET_UNITS)))
    if bucket.id == MAIN_BUCKET and bucket.kind != "money":
        problems.append(("kind", f'the bucket "{MAIN_BUCKET}" is the money bucket'))
    if not _is_int(bucket.amount, 0, keys.MAX_AMOUNT):
        problems.append(("amount", f"must be an integer from 0 to {keys.MAX_AMOUNT} (below 2**53)"))
    if not _is_int(bucket.priority, 0, MAX_PRIORITY):
        problems.append(("priority", f"must be an integer from 0 to {MAX_PRIORITY}"))
    for name in ("valid_from", "valid_to"):
        value = getattr(bucket, name)
        if value is not None and not _is_int(value, 0, keys.MAX_AMOUNT):
            problems.append((name, "must be Unix seconds"))
    if (
        _is_int(bucket.valid_from, 0, keys.MAX_AMOUNT)
        and _is_int(bucket.valid_to, 0, keys.MAX_AMOUNT)
        and bucket.valid_to <= bucket.valid_from
    ):
        problems.append(("valid_to", "must be after valid_from"))
    services = bucket.services
    if not isinstance(services, tuple | list) or not all(
        isinstance(s, str) and s.strip() for s in services
    ):
        problems.append(("services", "must be a list of service ids"))
    elif len(set(services)) != len(services):
        problems.append(("services", "lists a service twice"))
    elif bucket.kind == "units" and not services:
        problems.append(("services", "a units bucket must name the services it applies to"))
    return problems


def account_catalog_problems(account: Account, catalog: Catalog) -> list[tuple[str, str]]:
    """Problems of ``account`` against ``catalog``: plan, plan type, currency."""
    problems: list[tuple[str, str]] = []
    plan = catalog.plan(account.plan)
    if plan is None:
        known = ", ".join(p.id for p in catalog.plans) or "none"
        problems.append(
            ("plan", f"unknown plan {account.plan!r} in catalog {catalog.version} (plans: {known})")
        )
    elif plan.type is not None and plan.type != account.kind:
        problems.append(("plan", f"plan {plan.id!r} is for {plan.type} accounts"))
    if account.currency != catalog.currency:
        problems.append(
            (
                "currency",
                f"must be the catalog currency {catalog.currency} (catalog {catalog.version})",
            )
        )
    return problems


def bucket_catalog_problems(bucket: Bucket, catalog: Catalog) -> list[tuple[str, str]]:
    """Problems of ``bucket`` against ``catalog``: known services of the bucket's unit."""
    problems: list[tuple[str, str]] = []
    if not isinstance(bucket.services, tuple | list):
        return problems
    for i, service_id in enumerate(bucket.services):
        service = catalog.service(service_id) if isinstance(service_id, str) else None
        if service is None:
            problems.append((f"services[{i}]", f"unknown service {service_id!r}"))
        elif bucket.kind == "units" and service.unit != bucket.unit:
            problems.append(
                (f"services[{i}]", f"service {service_id!r} is counted in {service.unit}")
            )
    return problems


def _check_id(value: Any, field: str = "account") -> None:
    if (problem := _id_problem(value)) is not None:
        raise AccountError(field, problem)


def _raise_problems(problems: Iterable[tuple[str, str]]) -> None:
    problems = list(problems)
    if problems:
        raise ValidationError(problems)


# --------------------------------------------------------------------------- scripts

# Contract of each script: KEYS and ARGV as documented; every key is in one account's
# slot. Amounts are integers below 2**53, exact in Lua numbers.

#: Lua source of ``pack_bucket(b)``: re-packs a bucket the way the charging scripts do,
#: the contract's fields in order with explicit nils (cmsgpack.pack would drop them), then
#: any other field as it is. Prepend it to a script that rewrites buckets (balance_actions).
PACK_BUCKET_LUA = """
local FIELDS = {'id', 'kind', 'unit', 'amount', 'reserved', 'priority', 'valid_from',
                'valid_to', 'services'}
local function pack_bucket(b)
  local parts, known = {}, {}
  for _, name in ipairs(FIELDS) do
    known[name] = true
    parts[#parts + 1] = cmsgpack.pack(name)
    parts[#parts + 1] = b[name] == nil and '\\192' or cmsgpack.pack(b[name])
  end
  for name, v in pairs(b) do
    if not known[name] then
      parts[#parts + 1] = cmsgpack.pack(name)
      parts[#parts + 1] = cmsgpack.pack(v)
    end
  end
  local count = #parts / 2
  local header = count < 16 and string.char(128 + count)
    or '\\222' .. string.char(math.floor(count / 256), count % 256)
  return header .. table.concat(parts)
end
"""

# KEYS[1] account hash, KEYS[2] buckets hash; ARGV[1] bucket id, ARGV[2] msgpack bucket
# (reserved 0), ARGV[3] "1" = replace an existing bucket. Returns {status, reserved}:
# created | kept | replaced | no_account | unit_change | below_reserved.
_PUT_BUCKET = (
    PACK_BUCKET_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'no_account', 0} end
local old = redis.call('HGET', KEYS[2], ARGV[1])
if not old then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  return {'created', 0}
end
if ARGV[3] ~= '1' then return {'kept', 0} end
local cur = cmsgpack.unpack(old)
local new = cmsgpack.unpack(ARGV[2])
local reserved = tonumber(cur['reserved']) or 0
if reserved == 0 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  return {'replaced', 0}
end
if cur['kind'] ~= new['kind'] or cur['unit'] ~= new['unit'] then
  return {'unit_change', reserved}
end
if new['amount'] < reserved then return {'below_reserved', reserved} end
new['reserved'] = reserved
redis.call('HSET', KEYS[2], ARGV[1], pack_bucket(new))
return {'replaced', reserved}
"""
)

# KEYS[1] buckets hash, KEYS[2] history list; ARGV[1] bucket id, ARGV[2] amount > 0,
# ARGV[3] largest amount allowed, ARGV[4] history entry (JSON). Returns {status, amount}:
# ok (new amount) | no_bucket | overflow (current amount). Only "amount" changes.
_CREDIT = (
    PACK_BUCKET_LUA
    + """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {'no_bucket', 0} end
local bucket = cmsgpack.unpack(raw)
local current = tonumber(bucket['amount']) or 0
local amount = current + tonumber(ARGV[2])
if amount > tonumber(ARGV[3]) then return {'overflow', current} end
bucket['amount'] = amount
redis.call('HSET', KEYS[1], ARGV[1], pack_bucket(bucket))
redis.call('RPUSH', KEYS[2], ARGV[4])
return {'ok', amount}
"""
)

# KEYS[1] account hash; ARGV[1] new status. Returns {1, previous status} or {0, ''}.
_SET_STATUS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
local old = redis.call('HGET', KEYS[1], 'status') or ''
redis.call('HSET', KEYS[1], 'status', ARGV[1])
return {1, old}
"""

# KEYS[1] identity key; ARGV[1] account id. Deletes the key only if it maps to ARGV[1].
_RELEASE_IDENTITY = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_WATCH_ATTEMPTS = 50


# --------------------------------------------------------------------------- store


class AccountStore:
    """Accounts, identities and buckets of one Redis (or Redis Cluster).

    Plans and bucket services are checked against ``catalog`` when given, else against
    the catalog active in Redis (re-read when the active version changes); with no
    catalog at all, accounts and buckets are refused.
    """

    def __init__(self, redis: aioredis.Redis, *, catalog: Catalog | None = None) -> None:
        self._redis = redis
        self._fixed_catalog = catalog
        self._catalogs = CatalogStore(redis)
        self._cached: tuple[str, Catalog] | None = None
        self._put_bucket = redis.register_script(_PUT_BUCKET)
        self._credit = redis.register_script(_CREDIT)
        self._set_status = redis.register_script(_SET_STATUS)
        self._release = redis.register_script(_RELEASE_IDENTITY)

    # -- catalog and events

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

    async def _publish(self, event: str, account_id: str) -> None:
        message = json.dumps({"event": event, "account": account_id})
        await self._redis.publish(keys.EVENTS_CHANNEL, message)

    async def _require_account(self, account_id: str, field: str = "account") -> None:
        _check_id(account_id, field)
        if not await self._redis.exists(keys.account(account_id)):
            raise NotFoundError(field, f"no account {account_id!r}")

    # -- accounts

    async def create_account(self, account: Account, *, upsert: bool = False) -> str:
        """Store ``account``; returns "created", "updated" or "unchanged".

        The same document again is a no-op ("unchanged"; ``created`` is not compared).
        An existing account that differs raises :class:`ConflictError` naming the
        fields, unless ``upsert``: then the fields are overwritten and the original
        ``created`` is kept. Setting status barred this way publishes account_barred.
        """
        problems = validate_account(account)
        if not problems:
            problems = account_catalog_problems(account, await self.catalog())
        _raise_problems(problems)
        if account.parent is not None:
            await self._require_account(account.parent, "parent")
        key = keys.account(account.id)
        outcome, previous = await self._write_account(key, account, upsert)
        await self._redis.sadd(keys.ACCOUNTS, account.id)  # repairs an interrupted create
        if account.status == "barred" and previous is not None and previous.status != "barred":
            await self._publish("account_barred", account.id)
        return outcome

    async def _write_account(
        self, key: str, account: Account, upsert: bool
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
                    pipe.multi()
                    pipe.hset(key, mapping=new.to_hash())
                    if new.parent is None:
                        pipe.hdel(key, "parent")
                    await pipe.execute()
                    return outcome, previous
                except WatchError:
                    continue
        raise ConflictError("account", f"account {account.id!r} kept changing; try again")

    async def get_account(self, account_id: str) -> Account | None:
        stored = await self._redis.hgetall(keys.account(account_id))
        return Account.from_hash(account_id, stored) if stored else None

    async def set_status(self, account_id: str, status: str) -> str:
        """Set the status; returns the previous one. Barring publishes account_barred."""
        if status not in STATUSES:
            raise AccountError("status", "must be one of " + ", ".join(STATUSES))
        _check_id(account_id)
        found, previous = await self._set_status(keys=[keys.account(account_id)], args=[status])
        if not found:
            raise NotFoundError("account", f"no account {account_id!r}")
        if status == "barred":
            await self._publish("account_barred", account_id)
        return _text(previous)

    # -- identities

    async def resolve(self, identity: str) -> str | None:
        """The account id an identity belongs to, or None."""
        found = await self._redis.get(keys.subscriber(identity))
        return None if found is None else _text(found)

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
        _check_id(account_id)
        deleted = await self._release(keys=[keys.subscriber(identity)], args=[account_id])
        removed = await self._redis.srem(keys.subscriptions(account_id), identity)
        return bool(deleted or removed)

    async def subscriptions(self, account_id: str) -> list[str]:
        members = await self._redis.smembers(keys.subscriptions(account_id))
        return sorted(_text(m) for m in members)

    # -- buckets

    async def buckets(self, account_id: str) -> list[Bucket]:
        """The account's buckets, lowest priority first, then by id."""
        stored = await self._redis.hgetall(keys.buckets(account_id))
        found = [Bucket.unpack(_text(k), v) for k, v in stored.items()]
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
        _raise_problems(problems)
        _check_id(account_id)
        new = dataclasses.replace(bucket, services=tuple(bucket.services), reserved=0)
        existing = await self.bucket(account_id, bucket.id)
        if existing is not None and (not replace or existing.definition() == new.definition()):
            return "unchanged"
        status, reserved = await self._put_bucket(
            keys=[keys.account(account_id), keys.buckets(account_id)],
            args=[bucket.id, new.pack(), "1" if replace else "0"],
        )
        status = _text(status)
        if status == "no_account":
            raise NotFoundError("account", f"no account {account_id!r}")
        if status == "unit_change":
            raise ConflictError(
                "kind", f"bucket {bucket.id!r} has {reserved} units reserved; kind and unit stay"
            )
        if status == "below_reserved":
            raise ConflictError(
                "amount", f"bucket {bucket.id!r} has {reserved} reserved, more than {bucket.amount}"
            )
        if status == "kept":
            return "unchanged"
        if new.amount > 0:
            await self._publish("credit_added", account_id)
        return status

    async def credit(self, account_id: str, bucket_id: str, amount: int, *, reason: str) -> int:
        """Add ``amount`` (> 0) to a bucket atomically; returns the new amount.

        Only the bucket's ``amount`` changes, inside one script, so reservations the
        charging scripts make at the same time are kept. The credit is appended to the
        account history with ``reason``; credit_added is published.
        """
        if not _is_int(amount, 1, keys.MAX_AMOUNT):
            raise AccountError("amount", f"must be an integer from 1 to {keys.MAX_AMOUNT}")
        if not isinstance(reason, str) or not reason.strip():
            raise AccountError("reason", "is required")
        _check_id(account_id)
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
        status, value = await self._credit(
            keys=[keys.buckets(account_id), keys.history(account_id)],
            args=[bucket_id, amount, keys.MAX_AMOUNT, entry],
        )
        status = _text(status)
        if status == "no_bucket":
            raise NotFoundError("bucket", f"account {account_id!r} has no bucket {bucket_id!r}")
        if status == "overflow":
            raise AccountError(
                "amount", f"the bucket would exceed {keys.MAX_AMOUNT} (it holds {value})"
            )
        await self._publish("credit_added", account_id)
        return int(value)
