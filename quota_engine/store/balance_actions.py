"""The Redis half of balance actions (quota_engine/accounts/balance_actions.py has the
semantics): the one script call of a top-up or adjustment, and the history list.

``ocs:acct:{P}:A:history`` is a LIST of JSON entries, oldest first, written by
balance_action.lua, credit.lua and the charging scripts' refunds;
``ocs:acct:{P}:A:topup:<key>`` keeps the result of the action made under an idempotency
key (lua/balance_action.lua; its arguments and answer are
:class:`~quota_engine.store.contract.BalanceActionArgs` and
:class:`~quota_engine.store.contract.BalanceActionAnswer`).
"""

from __future__ import annotations

from quota_engine.store import keys
from quota_engine.store.clients import StoreClient
from quota_engine.store.contract import (
    BalanceActionAnswer,
    BalanceActionArgs,
    decode_balance_action,
)
from quota_engine.store.scripts import BALANCE_ACTION

__all__ = ["apply_balance_action", "idempotency_key", "read_history"]


def idempotency_key(account_id: str, key: str) -> str:
    """``ocs:acct:{P}:A:topup:<key>``: in the account's slot, for top-ups and adjustments."""
    return keys.topup(account_id, key)


async def apply_balance_action(
    redis: StoreClient,
    account_id: str,
    *,
    key: str,
    bucket: str,
    amount: int,
    fingerprint: str,
    create: bytes,
    unit: str,
    entry_head: str,
    ttl: int,
) -> BalanceActionAnswer:
    """Run balance_action.lua once; its answer, ``(status, payload)``.

    ``create`` is the packed bucket to create when missing (``b""``: none), ``unit``
    the unit the caller expects (``""``: any), ``entry_head`` the history entry's JSON
    without its closing brace, ``ttl`` the seconds the result is kept under ``key``.
    """
    call = BalanceActionArgs(
        account_id,
        key,
        bucket_id=bucket,
        amount=amount,
        fingerprint=fingerprint,
        create=create or None,
        unit=unit or None,
        entry_head=entry_head,
        ttl=ttl,
    )
    return decode_balance_action(await BALANCE_ACTION(redis, call.keys(), call.argv()))


async def read_history(
    redis: StoreClient, account_id: str, offset: int = 0, limit: int = 100
) -> tuple[int, list[bytes]]:
    """``(total, raw entries)``: the account's history entries, newest first, skipping
    the ``offset`` newest."""
    key = keys.history(account_id)
    total = int(await redis.llen(key))
    if offset >= total or limit <= 0:
        return total, []
    end = total - 1 - offset
    start = max(0, end - limit + 1)
    raw = await redis.lrange(key, start, end)
    return total, list(reversed(raw))
