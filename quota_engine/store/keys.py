"""The Redis key schema: every key the quota engine reads or writes is named here.

Accounts are grouped into a fixed number of **partitions** (:func:`partitions`, 1024 by
default, chosen at install time and recorded in ``ocs:meta``: see
:mod:`quota_engine.store.schema`). An account's partition is
``crc32(utf-8 account id) mod partitions`` (:func:`partition_of`, zlib's CRC-32: stable
across processes, machines and Python versions). Every key of an account carries its
partition's hash tag ``{p:<n>}`` (decimal, no padding), followed by the account id, so
one Lua script call touches a single hash slot and runs unchanged on Redis Cluster, and
the script that moves the money appends the rated record, in the same atomic call, to
its partition's stream ``ocs:records:{p:<n>}``: the global record feed is
:func:`partitions` streams, never a scan of per-account streams (docs/records.md).

An account id may not contain ``{``, ``}``, ``|`` (the deadline index's separator) or
``:`` (it ends the id in the key): :func:`partition_of` refuses them. ``p:<n>`` is never
an account id (no ``:``), so a key of this schema never looks like one of schema 1
(``ocs:acct:{<account>}...``, :func:`legacy_prefix`, read only by the migration).

Only the identity index, the account list, the catalog, the deadline index and
``ocs:meta`` live outside a partition's slot; no script touches them together with
account keys. Below, ``{P}`` is the account's partition tag and ``A`` the account id.

| key | type | holds |
| --- | --- | --- |
| ``ocs:acct:{P}:A`` | HASH | account fields: kind, status, currency, credit_limit, plan, bill_cycle_day, parent, reseller, created, tax_exempt, bill_separately, itemisation, name, address, locale, email, delivery |
| ``ocs:acct:{P}:A:buckets`` | HASH | bucket id -> msgpack bucket (kind, unit, amount, reserved, priority, valid_from, valid_to, services) |
| ``ocs:acct:{P}:A:subs`` | SET | the account's identities (``msisdn:491700000001``, ``imsi:...``, ``sip:...``, ``nai:...``) |
| ``ocs:acct:{P}:A:sess:<session-id>`` | STRING | msgpack session state (request number, deadline, peer, per-rating-group reservations and prices) |
| ``ocs:acct:{P}:A:sessions`` | ZSET | open session ids scored by deadline (Unix seconds) |
| ``ocs:acct:{P}:A:idem:<session-id>:<n>`` | STRING | msgpack result of CC-Request-Number n, kept for retransmissions (TTL) |
| ``ocs:acct:{P}:A:usage:<period>`` | HASH | service id -> units used in the bill period (for tiers); ``<period>`` is the period's first local day, ``2025-03-01`` (``quota_engine.charging.periods.bill_period``) |
| ``ocs:acct:{P}:A:history`` | LIST | balance actions (top-ups, adjustments, refunds), JSON, oldest first |
| ``ocs:acct:{P}:A:topup:<key>`` | STRING | ``<fingerprint>\\n<history entry>`` of the top-up or adjustment made under an idempotency key (TTL) |
| ``ocs:open:{P}`` | HASH | the partition's open-session counters, kept by ccr.lua and settle.lua: ``<class>:sessions``, ``<class>:money`` (micro-units reserved), ``<class>:<unit>`` (units granted, not yet reported), class ``data``, ``voice``, ``sms`` or ``other`` (lua/open_counts.lua; read by :mod:`quota_engine.store.open_counts`) |
| ``ocs:records:{P}`` | STREAM | rated records of the partition's accounts, field ``r`` = msgpack map (its ``account`` field says whose) |
| ``ocs:export:lease:{P}`` | STRING | the exporter (``<host>:<pid>``) that owns the partition's export now (TTL: ``records.export_lease``) |
| ``ocs:exporters`` | ZSET | live exporters, scored by when their heartbeat expires (Unix ms): how many share the partitions |
| ``ocs:migration:{P}`` | HASH | account -> last schema-1 record id copied into ``ocs:records:{P}`` (only while ``ocs migrate`` runs) |
| ``ocs:sub:<identity>`` | STRING | account id of an identity (canonical form: ``quota_engine.accounts.model.identity``) |
| ``ocs:accounts`` | SET | every account id |
| ``ocs:deadlines`` | ZSET | ``<account>|<session>`` scored by deadline, for the sweeper |
| ``ocs:meta`` | HASH | ``schema`` (``2``) and ``partitions``: the key schema the data is in |
| ``ocs:catalog:<version>`` / ``ocs:catalog:active`` | STRING | catalog documents (JSON) and the active version |
| ``ocs:catalog`` | pub/sub channel | announces a newly activated catalog version |
| ``ocs:events`` | pub/sub channel | JSON ``{"event": "credit_added" or "account_barred", "account": A}`` |

Buckets and sessions are stored as msgpack maps (Lua's ``cmsgpack``): integers stay
exact, unlike ``cjson`` which prints numbers with 14 significant digits. Lua numbers
are doubles, so every amount must stay below 2**53 (about 9e9 currency units in
micro-units, or 8 PiB in octets); the store refuses larger values
(:data:`quota_engine.store.limits.MAX_AMOUNT`).

Only modules of ``quota_engine/store/`` import this one (tests/test_import_rules.py).
"""

from __future__ import annotations

import functools
import zlib

from quota_engine.store.limits import MAX_AMOUNT

__all__ = [
    "ACCOUNTS",
    "CATALOG_ACTIVE",
    "CATALOG_CHANNEL",
    "DEADLINES",
    "DEFAULT_PARTITIONS",
    "EVENTS_CHANNEL",
    "EXPORTERS",
    "MAX_AMOUNT",
    "MAX_PARTITIONS",
    "META",
    "PREFIX",
    "SCHEMA_VERSION",
    "account",
    "buckets",
    "catalog",
    "check_partitions",
    "export_lease",
    "history",
    "idempotency",
    "legacy_prefix",
    "migration_progress",
    "open_counts",
    "partition_of",
    "partition_open_counts",
    "partition_records",
    "partition_tag",
    "partitions",
    "period_usage",
    "records",
    "session",
    "sessions",
    "set_partitions",
    "subscriber",
    "subscriptions",
    "topup",
]

PREFIX = "ocs"

SCHEMA_VERSION = 2
"""The key schema of this module (1: each account's own hash tag ``{<account>}``)."""

DEFAULT_PARTITIONS = 1024
MAX_PARTITIONS = 16384
"""Redis Cluster's number of hash slots: more partitions could not spread further."""

_partitions = DEFAULT_PARTITIONS
_FORBIDDEN = frozenset("{}|:")


def partitions() -> int:
    """How many partitions the accounts of this process are spread over."""
    return _partitions


def check_partitions(count: int) -> int:
    """``count`` if it is a valid number of partitions, else ValueError."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_PARTITIONS:
        raise ValueError(f"partitions must be an integer from 1 to {MAX_PARTITIONS}: {count!r}")
    return count


def set_partitions(count: int) -> None:
    """Use ``count`` partitions in this process. Called at start-up with the
    installation's value (:func:`quota_engine.store.schema.ensure_schema` checks it
    against ``ocs:meta``); changing it under existing data would lose every account."""
    global _partitions
    _partitions = check_partitions(count)
    _tag.cache_clear()


def _check(account_id: str) -> str:
    if not account_id or not _FORBIDDEN.isdisjoint(account_id):
        raise ValueError(f"invalid account id {account_id!r}")
    return account_id


def partition_of(account_id: str) -> int:
    """The partition of an account: CRC-32 (zlib) of its UTF-8 id, mod :func:`partitions`."""
    return zlib.crc32(_check(account_id).encode()) % _partitions


def partition_tag(partition: int) -> str:
    """The hash tag of a partition's keys: ``{p:42}``."""
    return f"{{p:{partition}}}"


@functools.lru_cache(maxsize=1 << 16)
def _tag(account_id: str) -> str:
    """The start of every key of an account. Memoised: a CCR builds seven keys of one
    account, and the CRC-32 and the id check would otherwise run for each (a bounded
    cache, emptied when the partition count is set)."""
    return f"{PREFIX}:acct:{partition_tag(partition_of(account_id))}:{account_id}"


def legacy_prefix(account_id: str) -> str:
    """``ocs:acct:{<account>}``: how every key of an account began in schema 1."""
    return f"{PREFIX}:acct:{{{_check(account_id)}}}"


def account(account_id: str) -> str:
    return _tag(account_id)


def buckets(account_id: str) -> str:
    return f"{_tag(account_id)}:buckets"


def subscriptions(account_id: str) -> str:
    return f"{_tag(account_id)}:subs"


def session(account_id: str, session_id: str) -> str:
    return f"{_tag(account_id)}:sess:{session_id}"


def sessions(account_id: str) -> str:
    return f"{_tag(account_id)}:sessions"


def idempotency(account_id: str, session_id: str, request_number: int) -> str:
    return f"{_tag(account_id)}:idem:{session_id}:{request_number}"


def period_usage(account_id: str, period: str) -> str:
    return f"{_tag(account_id)}:usage:{period}"


def partition_records(partition: int) -> str:
    """The stream of a partition's rated records: ``ocs:records:{p:42}``."""
    return f"{PREFIX}:records:{partition_tag(partition)}"


def records(account_id: str) -> str:
    """The stream the account's rated records go to: its partition's, shared."""
    return partition_records(partition_of(account_id))


def partition_open_counts(partition: int) -> str:
    """``ocs:open:{p:42}``: the partition's open-session counters (lua/open_counts.lua)."""
    return f"{PREFIX}:open:{partition_tag(partition)}"


def open_counts(account_id: str) -> str:
    """The open-session counters the account's sessions count in: its partition's."""
    return partition_open_counts(partition_of(account_id))


def export_lease(partition: int) -> str:
    """``ocs:export:lease:{p:42}``: which exporter owns the partition (in the stream's slot)."""
    return f"{PREFIX}:export:lease:{partition_tag(partition)}"


def migration_progress(partition: int) -> str:
    """``ocs:migration:{p:42}``: account -> last schema-1 record copied (in the stream's slot)."""
    return f"{PREFIX}:migration:{partition_tag(partition)}"


def history(account_id: str) -> str:
    return f"{_tag(account_id)}:history"


def topup(account_id: str, key: str) -> str:
    """The idempotency key of a top-up or adjustment made under ``key``."""
    return f"{_tag(account_id)}:topup:{key}"


def subscriber(identity_string: str) -> str:
    return f"{PREFIX}:sub:{identity_string}"


ACCOUNTS = f"{PREFIX}:accounts"
DEADLINES = f"{PREFIX}:deadlines"
CATALOG_ACTIVE = f"{PREFIX}:catalog:active"
CATALOG_CHANNEL = f"{PREFIX}:catalog"
EVENTS_CHANNEL = f"{PREFIX}:events"
META = f"{PREFIX}:meta"
EXPORTERS = f"{PREFIX}:exporters"


def catalog(version: str) -> str:
    return f"{PREFIX}:catalog:{version}"
