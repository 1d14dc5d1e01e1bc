"""quota_engine.store.charging_reads against a real Redis, on redis-py and on RedisLink."""

from __future__ import annotations

import msgpack
import pytest

from quota_engine.store import keys
from quota_engine.store.charging_reads import (
    open_session_states,
    read_owners,
    read_period_usage,
    read_rating_inputs,
)
from quota_engine.store.redis_link import RedisLink
from tests.quota_engine.conftest import create_account


@pytest.fixture(params=["redis-py", "link"])
async def client(request, r, redis_url):
    if request.param == "redis-py":
        yield r
        return
    async with await RedisLink.connect(redis_url) as link:
        yield link


async def test_owners_of_known_and_unknown_identities(r, client):
    await create_account(r, "A1", identities=("msisdn:1", "imsi:2"))
    assert await read_owners(client, ["msisdn:1", "msisdn:9", "imsi:2"]) == ["A1", None, "A1"]


async def test_rating_inputs_are_text_fields_and_integer_usage(r, client):
    await create_account(r, "A1", plan="basic", bill_cycle_day=15)
    await r.hset(keys.period_usage("A1", "2025-03-15"), mapping={"data": 7, "bad": "x"})
    [(info, usage), (missing, none)] = await read_rating_inputs(
        client, [("A1", "2025-03-15"), ("nobody", "2025-03-01")]
    )
    assert info == {
        "status": "active",
        "kind": "prepaid",
        "currency": "EUR",
        "plan": "basic",
        "bill_cycle_day": "15",
    }
    assert usage == {"data": 7}  # a value that is not an integer is left out
    assert (missing, none) == (None, {})
    assert await read_period_usage(client, [("A1", "2025-03-15"), ("A1", "2025-02-15")]) == [
        {"data": 7},
        {},
    ]


async def test_open_session_states_soonest_deadline_first(r):
    for sid, deadline in (("late", 200), ("soon", 100), ("gone", 150)):
        await r.zadd(keys.sessions("A1"), {sid: deadline})
        if sid != "gone":
            state = {"id": sid, "dl": deadline, "m": b"\xff\x00"}  # not UTF-8 inside
            await r.set(keys.session("A1", sid), msgpack.packb(state, use_bin_type=False))
    states = await open_session_states(r, "A1")
    assert [sid for sid, _ in states] == ["soon", "late"]
    assert states[0][1]["dl"] == 100 and isinstance(states[0][1]["m"], str)
    assert await open_session_states(r, "nobody") == []
