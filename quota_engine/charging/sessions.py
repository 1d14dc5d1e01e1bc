"""The sessions view: an account's open sessions as plain data, for the management API
and the RAR/ASR notifier (both want ``await view.sessions_of(account_id)``)."""

from __future__ import annotations

from typing import Any

from quota_engine.store.charging_reads import open_session_states
from quota_engine.store.clients import RedisClient
from quota_engine.store.contract import RatingContext

__all__ = ["SessionsView", "describe_session", "sessions_of"]


class SessionsView:
    """:func:`sessions_of` on one Redis client."""

    __slots__ = ("redis",)

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis

    async def sessions_of(self, account_id: str) -> list[dict[str, Any]]:
        return await sessions_of(self.redis, account_id)


async def sessions_of(redis: RedisClient, account_id: str) -> list[dict[str, Any]]:
    """The open sessions of an account, soonest deadline first: ``session_id``,
    ``peer``, ``deadline``, ``request_number``, ``started``, ``updated``,
    ``context``, ``identities``, ``rating_context`` (``destination``,
    ``visited_mcc_mnc``, ``apn``: what requests that omit them are rated with) and
    ``services`` (per rating group:
    ``rating_group``, ``service_identifier``, ``service``, ``unit``, ``granted``,
    ``reserved_units`` {bucket: units}, ``reserved_money`` {bucket: micro-units},
    ``final_unit``, ``used`` and ``charged`` since the last record)."""
    return [
        describe_session(state, sid) for sid, state in await open_session_states(redis, account_id)
    ]


def describe_session(state: dict[str, Any], session_id: str | None = None) -> dict[str, Any]:
    """A stored session (msgpack map) as plain data for the management API."""
    groups = state.get("rgs") or {}
    services = []
    for key in sorted(groups) if isinstance(groups, dict) else []:
        group = groups[key]
        services.append(
            {
                "key": key,
                "rating_group": group.get("rg"),
                "service_identifier": group.get("si"),
                "service": group.get("sv"),
                "unit": group.get("unit"),
                "granted": group.get("g", 0),
                "reserved_units": {b: n for b, n in group.get("ru") or []},
                "reserved_money": {b: n for b, n in group.get("rm") or []},
                "final_unit": bool(group.get("fu")),
                "zero_rated": bool(group.get("zr")),
                "used": group.get("used", 0),
                "charged": group.get("chg", 0),
            }
        )
    return {
        "session_id": state.get("id", session_id),
        "account": state.get("acct"),
        "peer": state.get("peer"),
        "context": state.get("ctx"),
        "identities": list(state.get("ids") or []),
        "request_number": state.get("n"),
        "deadline": state.get("dl"),
        "started": state.get("t0"),
        "updated": state.get("t"),
        "rating_context": _rating_context(state.get("rc")),
        "services": services,
    }


def _rating_context(stored: object) -> dict[str, str | None]:
    """The rating inputs the session keeps for requests that omit them."""
    context = RatingContext.from_wire(stored)
    return {
        "destination": context.destination,
        "visited_mcc_mnc": context.visited_mcc_mnc,
        "apn": context.apn,
    }
