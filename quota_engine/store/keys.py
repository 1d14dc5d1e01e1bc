"""The Redis key schema: every key the quota engine reads or writes is named here.

Every key that belongs to one account carries the account id as its hash tag
(``{<account-id>}``), so one Lua script call touches a single hash slot and runs
unchanged on Redis Cluster. Only the identity index, the account list, the catalog
and the global deadline index live outside an account's slot; no script touches
them together with account keys.

| key | type | holds |
| --- | --- | --- |
| ``ocs:acct:{A}`` | HASH | account fields: kind, status, currency, credit_limit, plan, bill_cycle_day, parent, created |
| ``ocs:acct:{A}:buckets`` | HASH | bucket id -> msgpack bucket (kind, unit, amount, reserved, priority, valid_from, valid_to, services) |
| ``ocs:acct:{A}:subs`` | SET | the account's identities (``msisdn:491700000001``, ``imsi:...``, ``sip:...``, ``nai:...``) |
| ``ocs:acct:{A}:sess:<session-id>`` | STRING | msgpack session state (request number, deadline, peer, per-rating-group reservations and prices) |
| ``ocs:acct:{A}:sessions`` | ZSET | open session ids scored by deadline (Unix seconds) |
| ``ocs:acct:{A}:idem:<session-id>:<n>`` | STRING | msgpack result of CC-Request-Number n, kept for retransmissions (TTL) |
| ``ocs:acct:{A}:usage:<period>`` | HASH | service id -> units used in the bill period (for tiers); ``<period>`` is the period's first local day, ``2025-03-01`` (``quota_engine.charging.periods.bill_period``) |
| ``ocs:acct:{A}:records`` | STREAM | rated records, field ``r`` = msgpack map |
| ``ocs:acct:{A}:history`` | LIST | balance actions (top-ups, adjustments, refunds), JSON, oldest first |
| ``ocs:acct:{A}:topup:<key>`` | STRING | ``<fingerprint>\\n<history entry>`` of the top-up or adjustment made under an idempotency key (TTL) |
| ``ocs:sub:<identity>`` | STRING | account id of an identity (canonical form: ``quota_engine.accounts.model.identity``) |
| ``ocs:accounts`` | SET | every account id |
| ``ocs:deadlines`` | ZSET | ``<account>|<session>`` scored by deadline, for the sweeper |
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

from quota_engine.store.limits import MAX_AMOUNT

__all__ = [
    "ACCOUNTS",
    "CATALOG_ACTIVE",
    "CATALOG_CHANNEL",
    "DEADLINES",
    "EVENTS_CHANNEL",
    "MAX_AMOUNT",
    "PREFIX",
    "account",
    "buckets",
    "catalog",
    "history",
    "idempotency",
    "period_usage",
    "records",
    "session",
    "sessions",
    "subscriber",
    "subscriptions",
    "topup",
]

PREFIX = "ocs"


def _tag(account_id: str) -> str:
    if not account_id or "{" in account_id or "}" in account_id:
        raise ValueError(f"invalid account id {account_id!r}")
    return f"{PREFIX}:acct:{{{account_id}}}"


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


def records(account_id: str) -> str:
    return f"{_tag(account_id)}:records"


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


def catalog(version: str) -> str:
    return f"{PREFIX}:catalog:{version}"
