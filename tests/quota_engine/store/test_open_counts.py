"""The partitions' open-session counters (lua/open_counts.lua, read by
quota_engine/store/open_counts.py) agree with the sessions actually open in Redis after
mixed traffic: sessions opened, updated, retransmitted, terminated, settled by the
sweeper, refused, of several services, and sessions from before the counters existed.

The oracle reads every session key and adds up what its rating groups hold, and the
money is checked once more against the buckets' own ``reserved`` (a bucket's reserved is
the sum of the open reservations on it)."""

from __future__ import annotations

import re

import msgpack
import pytest

from quota_engine.model import ChargingRequest, EventAction, Outcome, ServiceUsage
from quota_engine.store import keys
from quota_engine.store.open_counts import (
    SERVICE_OF_CONTEXT,
    SERVICES,
    UNITS,
    OpenCounts,
    read_open_counts,
    service_of_context,
)
from quota_engine.store.scripts import load_source
from tests.quota_engine.conftest import (
    EUR,
    EVENT,
    INITIAL,
    MIB,
    NOW,
    SMS_CTX,
    TERMINATE,
    UPDATE,
    create_account,
    data_request,
    get_buckets,
    voice_request,
)

MMS_CTX = "32270@3gpp.org"  # no service of the demo catalog: "other", no tariff


async def actual_open(r) -> OpenCounts:
    """What the session keys hold, added up the way the counters should be."""
    out = OpenCounts()
    async for key in r.scan_iter(match=f"{keys.PREFIX}:acct:*:sess:*", count=1000):
        state = msgpack.unpackb(await r.get(key), raw=False, unicode_errors="surrogateescape")
        service = service_of_context(state.get("ctx") or "")
        out.sessions[service] += 1
        for group in (state.get("rgs") or {}).values():
            out.money[service] += sum(amount for _, amount in group.get("rm") or [])
            if group.get("g", 0) > 0:
                out.units[service, group["unit"]] += group["g"]
    return out


async def reserved_money(r, accounts) -> int:
    total = 0
    for account in accounts:
        total += sum(b["reserved"] for b in (await get_buckets(r, account)).values()
                     if b["kind"] == "money")  # fmt: skip
    return total


async def check(r, accounts) -> OpenCounts:
    sampled = await read_open_counts(r)
    assert sampled == await actual_open(r)
    assert sum(sampled.money.values()) == await reserved_money(r, accounts)
    return sampled


def sms_event(session: str, identity: str) -> ChargingRequest:
    return ChargingRequest(
        session_id=session,
        request_type=EVENT,
        request_number=0,
        identities=[identity],
        service_context=SMS_CTX,
        services=[ServiceUsage(rating_group=200, requested=1)],
        timestamp=NOW,
        destination="491709999999",
        action=EventAction.DIRECT_DEBITING,
    )


async def unmark(r, key: str) -> None:
    """Drop the session's "counted" mark, as a session written before the counters."""
    state = msgpack.unpackb(await r.get(key), raw=False, unicode_errors="surrogateescape")
    del state["cm"]
    await r.set(key, msgpack.packb(state, unicode_errors="surrogateescape"))


def identity(n: int) -> str:
    return f"msisdn:4917000000{n:02d}"


async def test_counters_follow_mixed_traffic(engine, r, clock):
    accounts = [f"a{n}" for n in range(8)]
    for n, account in enumerate(accounts):
        await create_account(r, account, balance=(25 if n else 0) * EUR, identities=(identity(n),))
    assert len({keys.partition_of(a) for a in accounts}) > 1  # spread over partitions
    assert await check(r, accounts) == OpenCounts()
    clock.now = NOW

    opened = await engine.charge(
        [data_request(f"d{n}", INITIAL, 0, identity=identity(n)) for n in range(1, 5)]
        + [voice_request("v1", INITIAL, 0)]  # a1's MSISDN (identity(1) is msisdn:491700000001)
        + [data_request("broke", INITIAL, 0, identity=identity(0))]  # a0 has no money
    )
    assert [o.outcome for o in opened[:5]] == [Outcome.OK] * 5
    sampled = await check(r, accounts)
    assert sampled.sessions["data"] == 5 and sampled.sessions["voice"] == 1
    assert sampled.money["data"] == 4 * 10 * EUR  # 10 MiB at 1 EUR/MiB each
    assert sampled.units["data", "octets"] == 4 * 10 * MIB
    assert sampled.units["voice", "seconds"] > 0

    # retransmissions (the same request numbers) change nothing
    update = data_request("d1", UPDATE, 1, identity=identity(1), used=3 * MIB)
    await engine.charge([update])
    after_update = await check(r, accounts)
    await engine.charge([update, data_request("d3", INITIAL, 0, identity=identity(3))])
    assert await check(r, accounts) == after_update

    # a rating group reported final without a new grant, a CCR-T, its retransmission
    await engine.charge(
        [
            data_request("d2", UPDATE, 1, identity=identity(2), used=MIB, requested=None),
            data_request("d4", TERMINATE, 1, identity=identity(4), used=2 * MIB),
            voice_request("v1", UPDATE, 1, used=30),
        ]
    )
    await check(r, accounts)
    [again] = await engine.charge([data_request("d4", TERMINATE, 1, identity=identity(4))])
    assert again.outcome is Outcome.OK
    sampled = await check(r, accounts)
    assert sampled.sessions["data"] == 4

    # an SMS event opens no session; a context without a service opens an "other" one
    await engine.charge(
        [
            sms_event("sms1", identity(5)),
            ChargingRequest(
                "m1",
                INITIAL,
                0,
                [identity(6)],
                MMS_CTX,
                [ServiceUsage(rating_group=1, requested=1)],
                NOW,
            ),
        ]  # fmt: skip
    )
    sampled = await check(r, accounts)
    assert (sampled.sessions["sms"], sampled.sessions["other"]) == (0, 1)

    # the sweeper settles every session once its deadline passed
    assert await engine.sweep(NOW + 24 * 3600, limit=1000) == 6
    assert await check(r, accounts) == OpenCounts()


async def test_terminate_and_sweep_bring_the_counters_back_to_zero(engine, r, clock):
    await create_account(r, "a1", balance=100 * EUR, identities=(identity(1),))
    clock.now = NOW
    for n in range(10):
        await engine.charge([data_request(f"s{n}", INITIAL, 0, identity=identity(1))])
    for n in range(0, 10, 2):
        await engine.charge([data_request(f"s{n}", TERMINATE, 1, identity=identity(1), used=MIB)])
    sampled = await check(r, ["a1"])
    assert sampled.sessions["data"] == 5
    await engine.sweep(NOW + 24 * 3600)
    raw = await r.hgetall(keys.open_counts("a1"))
    assert raw and all(int(value) == 0 for value in raw.values())  # exact, never negative


async def test_a_session_from_before_the_counters_is_counted_from_its_next_request(
    engine, r, clock
):
    await create_account(r, "a1", balance=100 * EUR, identities=(identity(1),))
    clock.now = NOW
    await engine.charge([data_request("old", INITIAL, 0, identity=identity(1))])
    # as the previous version left it: no counters, no mark
    await unmark(r, keys.session("a1", "old"))
    await r.delete(keys.open_counts("a1"))
    assert await read_open_counts(r) == OpenCounts()  # not counted yet, nor negative later
    await engine.charge([data_request("old", UPDATE, 1, identity=identity(1), used=MIB)])
    assert await check(r, ["a1"]) == await actual_open(r)
    assert (await read_open_counts(r)).sessions["data"] == 1
    await engine.charge([data_request("old", TERMINATE, 2, identity=identity(1))])
    assert await check(r, ["a1"]) == OpenCounts()

    # a marked-less session the sweeper settles is not subtracted either
    await engine.charge([data_request("old2", INITIAL, 0, identity=identity(1))])
    await unmark(r, keys.session("a1", "old2"))
    await r.delete(keys.open_counts("a1"))
    assert await engine.sweep(NOW + 24 * 3600) == 1
    assert await read_open_counts(r) == OpenCounts()


async def test_the_reader_sums_partitions_in_batches(r):
    for partition, (sessions, money) in enumerate([(1, 10), (2, 20), (3, 30)]):
        await r.hset(
            keys.partition_open_counts(partition),
            mapping={"voice:sessions": sessions, "voice:money": money, "voice:seconds": 60,
                     "bogus": 5, "nope:sessions": 7, "voice:weird": 1},
        )  # fmt: skip
    counts = await read_open_counts(r, partitions=3, batch=2)
    assert counts.sessions == {"data": 0, "voice": 6, "sms": 0, "other": 0}
    assert counts.money["voice"] == 60 and counts.units["voice", "seconds"] == 180
    assert set(counts.units) == {(s, u) for s in SERVICES for u in UNITS}
    with pytest.raises(ValueError):
        await read_open_counts(r, batch=0)


def test_lua_and_python_classify_contexts_alike():
    source = load_source("open_counts.lua")
    table = dict(re.findall(r"if ctx == '([^']+)' then return '(\w+)' end", source))
    assert table == SERVICE_OF_CONTEXT
    assert set(SERVICE_OF_CONTEXT.values()) <= set(SERVICES)


async def test_contexts_are_classified_in_any_case(r):
    """Upper-case spellings count in their class; unknown contexts as "other"."""
    from quota_engine.store.contract import SessionService
    from quota_engine.store.scripts import CCR
    from tests.quota_engine.store.test_scripts import PRICE, ccr_call

    await create_account(r, "a1", balance=10**9)
    data = SessionService("10", 10, None, service="data", unit="octets", price=PRICE,
                          requested=50, validity_time=60)  # fmt: skip
    for n, context in enumerate(["32274@3GPP.ORG", "32275@3gpp.org", "x@example", ""]):
        call = ccr_call(services=[data])
        call.session_id, call.context = f"s{n}", context
        await CCR(r, call.keys(), call.argv())
    counts = await read_open_counts(r)
    assert counts.sessions == {"data": 0, "voice": 1, "sms": 1, "other": 2}
    assert counts == await actual_open(r)


async def test_the_scripts_keep_the_counters_on_redis_6_2_and_7(any_r):
    """ccr.lua and settle.lua on both Redis versions, with amounts past 2^32 (HINCRBY of
    exact integers, never a float's text)."""
    from quota_engine.store.contract import SessionService
    from quota_engine.store.scripts import CCR, SETTLE
    from tests.quota_engine.store.test_scripts import PRICE, ccr_call, settle_call

    big = 3 * 10**12  # octets, past 2**32; 3e13 micro-units at PRICE (100 per 10 units)
    await create_account(any_r, "a1", balance=10**14)
    data = SessionService("10", 10, None, service="data", unit="octets", price=PRICE,
                          requested=big, validity_time=60)  # fmt: skip
    call = ccr_call(services=[data])
    call.context = "32251@3gpp.org"
    await CCR(any_r, call.keys(), call.argv())
    counts = await read_open_counts(any_r)
    assert counts.sessions["data"] == 1
    assert counts.units["data", "octets"] == big
    assert counts.money["data"] == big // 10 * 100
    assert counts == await actual_open(any_r)
    await SETTLE(any_r, *settle_call(NOW + 100))
    assert await read_open_counts(any_r) == OpenCounts()
