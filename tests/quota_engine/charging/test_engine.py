"""The charging engine against a real Redis, with the demo catalog.

Every expectation is computed by hand from quota_engine/catalog/demo_catalog.toml (the
numbers are in the comments) and checked to the micro-unit: grants, balances,
reservations and the rated records.
"""

from __future__ import annotations

import asyncio

import msgpack
import pytest

from quota_engine.charging.engine import ChargingEngine, EngineSettings
from quota_engine.charging.periods import bill_period
from quota_engine.model import (
    ChargingRequest,
    EventAction,
    Outcome,
    ServiceUsage,
    Unit,
)
from quota_engine.store import keys
from quota_engine.store.records import read_records
from tests.quota_engine.conftest import (
    DATA_CTX,
    EUR,
    EVENT,
    INITIAL,
    MIB,
    MSISDN,
    NOW,
    SMS_CTX,
    TERMINATE,
    UPDATE,
    bucket,
    create_account,
    data_request,
    get_buckets,
    money,
    voice_request,
)


async def one(engine: ChargingEngine, request: ChargingRequest):
    [result] = await engine.charge([request])
    return result


def sms_request(session, number=0, *, destination, units=1, action=EventAction.DIRECT_DEBITING):
    return ChargingRequest(
        session_id=session,
        request_type=EVENT,
        request_number=number,
        identities=[MSISDN],
        service_context=SMS_CTX,
        services=[ServiceUsage(rating_group=200, requested=units)],
        timestamp=NOW,
        destination=destination,
        action=action,
    )


async def reserved(r, account="a1", bucket_id="main") -> int:
    return (await get_buckets(r, account))[bucket_id]["reserved"]


# ------------------------------------------------------------------ data session


async def test_data_session_initial_updates_terminate(engine, r):
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))

    # INITIAL: empty RSU -> default 10 MiB; 1 EUR/MiB in MiB blocks: 10 EUR reserved
    res = await one(engine, data_request("s1", INITIAL, 0))
    assert res.outcome is Outcome.OK and res.account_id == "a1" and res.currency == "EUR"
    [g] = res.services
    assert (g.outcome, g.unit, g.granted, g.validity_time) == (
        Outcome.OK,
        Unit.OCTETS,
        10 * MIB,
        1800,
    )
    assert g.quota_threshold == 2 * MIB  # 20 % of the grant
    assert not g.final_unit and g.final_action is None
    assert (await money(r, "a1"), await reserved(r)) == (25 * EUR, 10 * EUR)

    # Cumulative rating (docs/catalog.md): each report costs charge(total so far) less
    # what was already charged, each grant completes the block the total is in.
    # U1: 3.5 MiB used: charge(3.5 MiB) = 4 blocks = 4 EUR; the new grant of 10 MiB
    # ends the total on a block: 14 MiB - 3.5 MiB = 10.5 MiB for 14 - 4 = 10 EUR
    [g] = (await one(engine, data_request("s1", UPDATE, 1, used=3_670_016))).services
    assert (g.granted, g.cost) == (10 * MIB + MIB // 2, 4 * EUR)
    assert (await money(r, "a1"), await reserved(r)) == (21 * EUR, 10 * EUR)

    # U2: 10 MiB used, total 13.5 MiB: 14 - 4 = 10 EUR; 11 EUR left, the grant is again
    # 10.5 MiB (to 24 MiB) for 10 EUR
    [g] = (await one(engine, data_request("s1", UPDATE, 2, used=10 * MIB))).services
    assert (g.granted, g.cost, g.final_unit) == (10 * MIB + MIB // 2, 10 * EUR, False)
    assert (await money(r, "a1"), await reserved(r)) == (11 * EUR, 10 * EUR)

    # U3: 0.5 MiB used completes the 14th block, already paid: 0 EUR; 10 MiB for 10 EUR
    [g] = (await one(engine, data_request("s1", UPDATE, 3, used=MIB // 2))).services
    assert (g.granted, g.cost, g.final_unit) == (10 * MIB, 0, False)
    assert (await money(r, "a1"), await reserved(r)) == (11 * EUR, 10 * EUR)

    # TERMINATE: 2 MiB + 1 octet, total 16 MiB + 1: 17 - 14 = 3 EUR; released
    res = await one(engine, data_request("s1", TERMINATE, 4, used=2 * MIB + 1, requested=None))
    [g] = res.services
    assert (g.outcome, g.granted, g.cost) == (Outcome.OK, 0, 3 * EUR)
    assert (await money(r, "a1"), await reserved(r)) == (8 * EUR, 0)
    assert await engine.sessions_of("a1") == []
    assert await r.exists(keys.session("a1", "s1")) == 0
    assert await r.zcard(keys.sessions("a1")) == 0
    assert await r.zscore(keys.DEADLINES, "a1|s1") is None

    [rec] = await read_records(r, "a1")
    assert rec["id"] == "s1;4;10"
    assert rec["used"] == {"octets": 3_670_016 + 10 * MIB + MIB // 2 + 2 * MIB + 1}
    # charge(16 MiB + 1 octet) = 17 blocks, whatever the reports were
    assert rec["charged"] == 17 * EUR == 4 * EUR + 10 * EUR + 0 + 3 * EUR
    assert rec["money"] == {"main": 17 * EUR} and rec["allowances"] == {}
    assert rec["cause"] == "normal" and rec["currency"] == "EUR"
    assert (rec["account"], rec["session"], rec["request"]) == ("a1", "s1", 4)
    assert rec["identities"] == [MSISDN] and rec["peer"] == "pgw.example"
    assert (rec["service"], rec["rating_group"], rec["context"]) == ("data", 10, DATA_CTX)
    assert (rec["zone"], rec["band"], rec["catalog"]) == ("home", "weekday", "demo-1")
    assert rec["price"] == "prepaid-basic:data:0:0:-1"
    assert rec["tariff"]["first_cost"] == rec["tariff"]["next_cost"] == 1 * EUR
    assert (rec["start"], rec["end"]) == (NOW, NOW)
    # the usage hash of the bill period counts the octets for tiers
    period = bill_period(NOW, 1, "Europe/Berlin")
    assert period == "2025-03-01"
    usage = await r.hget(keys.period_usage("a1", period), "data")
    assert int(usage) == rec["used"]["octets"]


async def test_session_state_is_visible_through_sessions_of(engine, r, clock):
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    await one(engine, data_request("s1", INITIAL, 0))
    [info] = await engine.sessions_of("a1")
    assert info["session_id"] == "s1" and info["peer"] == "pgw.example"
    assert info["deadline"] == NOW + 1800 + 60
    assert info["request_number"] == 0
    [svc] = info["services"]
    assert svc["rating_group"] == 10 and svc["granted"] == 10 * MIB
    assert svc["reserved_money"] == {"main": 10 * EUR} and svc["final_unit"] is False
    assert await r.zscore(keys.sessions("a1"), "s1") == NOW + 1860
    assert await r.zscore(keys.DEADLINES, "a1|s1") == NOW + 1860


async def test_requested_units_are_rounded_up_to_whole_increments(engine, r):
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    [g] = (await one(engine, data_request("s1", INITIAL, 0, requested=MIB + 1))).services
    assert g.granted == 2 * MIB
    assert await reserved(r) == 2 * EUR


async def test_update_without_rsu_reports_only(engine, r):
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    await one(engine, data_request("s1", INITIAL, 0))
    [g] = (await one(engine, data_request("s1", UPDATE, 1, used=MIB, requested=None))).services
    assert (g.outcome, g.granted, g.cost) == (Outcome.OK, 0, 1 * EUR)
    assert (await money(r, "a1"), await reserved(r)) == (24 * EUR, 0)


async def test_final_service_in_an_update_closes_only_that_rating_group(engine, r):
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    req = data_request("s1", INITIAL, 0, extra=[ServiceUsage(rating_group=999, requested=0)])
    await one(engine, req)
    res = await one(engine, data_request("s1", UPDATE, 1, used=MIB, final=True))
    assert res.services[0].granted == 0
    [rec] = await read_records(r, "a1")
    assert (rec["id"], rec["charged"], rec["cause"]) == ("s1;1;10", 1 * EUR, "normal")
    [info] = await engine.sessions_of("a1")
    assert [s["rating_group"] for s in info["services"]] == [999]
    assert (await money(r, "a1"), await reserved(r)) == (24 * EUR, 0)


# ------------------------------------------------------------------ voice


async def test_voice_national_60_60(engine, r):
    await create_account(r, "a1", balance=10 * EUR, identities=(MSISDN,))
    dest = "4930123456"  # national: 0.10 EUR/min, per minute
    [g] = (await one(engine, voice_request("v1", INITIAL, 0, destination=dest))).services
    assert (g.unit, g.granted, g.validity_time) == (Unit.SECONDS, 300, 1800)
    assert await reserved(r) == 500_000  # 5 minutes
    # 75 s -> 2 minutes = 0.20 EUR; the next grant of 300 s ends the call's total on a
    # minute: 420 - 75 = 345 s, for minutes 3 to 7 = 0.50 EUR
    [g] = (await one(engine, voice_request("v1", UPDATE, 1, destination=dest, used=75))).services
    assert (g.granted, g.cost) == (345, 200_000)
    assert await reserved(r) == 500_000
    # 30 s more: 105 s in all, still inside the second minute, already paid: 0
    res = await one(
        engine, voice_request("v1", TERMINATE, 2, destination=dest, used=30, requested=None)
    )
    assert res.services[0].cost == 0
    assert (await money(r, "a1"), await reserved(r)) == (10 * EUR - 200_000, 0)
    [rec] = await read_records(r, "a1")
    assert rec["used"] == {"seconds": 105} and rec["charged"] == 200_000  # charge(105 s)
    assert rec["destination"] == "national" and rec["service"] == "voice"


async def test_voice_international_30_6_down_to_the_last_second(engine, r):
    await create_account(r, "a1", balance=3 * EUR, identities=(MSISDN,))
    dest = "33123456789"  # international: 0.50 EUR/min, 30 s then 6 s; 0.25 + 0.05/6 s
    [g] = (await one(engine, voice_request("v1", INITIAL, 0, destination=dest))).services
    # 300 s = 30 + 45 * 6 -> 250_000 + 45 * 50_000 = 2.50 EUR
    assert (g.granted, g.final_unit) == (300, False)
    assert await reserved(r) == 2_500_000
    # 95 s billed 96 s: 250_000 + 11 * 50_000 = 0.80 EUR; 2.20 EUR left
    # next grant: 300 s (to a total of 396 s) would cost 2.50; 3.00 EUR in all buys a total
    # of 30 + 55 * 6 = 360 s, so the grant is 360 - 95 = 265 s for 2.20 EUR (its first
    # second is the rest of the 96th, already paid)
    [g] = (await one(engine, voice_request("v1", UPDATE, 1, destination=dest, used=95))).services
    assert (g.cost, g.granted, g.final_unit) == (800_000, 265, True)
    assert (g.final_action, g.redirect_address) == ("terminate", None)
    assert g.quota_threshold == 53  # 20 % of 265
    assert (await money(r, "a1"), await reserved(r)) == (2_200_000, 2_200_000)
    res = await one(
        engine, voice_request("v1", TERMINATE, 2, destination=dest, used=265, requested=None)
    )
    assert res.services[0].cost == 2_200_000
    assert (await money(r, "a1"), await reserved(r)) == (0, 0)
    [rec] = await read_records(r, "a1")
    assert rec["used"] == {"seconds": 360} and rec["charged"] == 3 * EUR
    assert rec["destination"] == "international"
    # nothing left: a new call is refused
    [g] = (await one(engine, voice_request("v2", INITIAL, 0, destination=dest))).services
    assert (g.outcome, g.granted, g.final_unit) == (Outcome.CREDIT_LIMIT_REACHED, 0, False)


async def test_first_increment_is_paid_once_per_session_and_rating_group(engine, r):
    await create_account(r, "a1", balance=10 * EUR, identities=(MSISDN,))
    dest = "33123456789"  # 30 s for 0.25 EUR, then 6 s for 0.05 EUR
    await one(engine, voice_request("v1", INITIAL, 0, destination=dest))
    # first report: 10 s bill the first increment, 30 s = 0.25 EUR
    res = await one(engine, voice_request("v1", UPDATE, 1, destination=dest, used=10))
    assert res.services[0].cost == 250_000
    # later reports are charged on the total: 35 s = 30 + 6 s costs one 6 s step more
    res = await one(engine, voice_request("v1", UPDATE, 2, destination=dest, used=25))
    assert res.services[0].cost == 50_000
    # 45 s = 30 + 3 * 6 s: two steps more = 0.10 EUR
    res = await one(
        engine, voice_request("v1", TERMINATE, 3, destination=dest, used=10, requested=None)
    )
    assert res.services[0].cost == 100_000
    # a new session pays the first increment again
    await one(engine, voice_request("v2", INITIAL, 0, destination=dest))
    res = await one(
        engine, voice_request("v2", TERMINATE, 1, destination=dest, used=10, requested=None)
    )
    assert res.services[0].cost == 250_000
    assert await money(r, "a1") == 10 * EUR - 650_000
    await one(engine, voice_request("v3", INITIAL, 0, destination=dest, requested=7))
    assert (await reserved(r)) == 250_000  # 30 s
    # after 6 s, a grant of 7 s completes the first increment: 24 s, already paid
    [g] = (
        await one(engine, voice_request("v3", UPDATE, 1, destination=dest, used=6, requested=7))
    ).services
    assert (g.granted, await reserved(r)) == (24, 0)
    # past the first increment, grants are whole 6 s steps: 7 s -> 12 s = 0.10 EUR
    [g] = (
        await one(engine, voice_request("v3", UPDATE, 2, destination=dest, used=24, requested=7))
    ).services
    assert (g.granted, g.cost, await reserved(r)) == (12, 0, 100_000)


async def test_voice_grant_stops_at_the_band_change_and_is_rerated(engine, r, clock):
    await create_account(r, "a1", balance=10 * EUR, identities=(MSISDN,))
    friday_2350 = NOW + 13 * 3600 + 50 * 60  # Friday 23:50 Berlin; weekend from 00:00
    clock.now = friday_2350
    dest = "4930123456"
    [g] = (
        await one(engine, voice_request("v1", INITIAL, 0, destination=dest, ts=friday_2350))
    ).services
    assert (g.granted, g.validity_time) == (300, 600)  # 10 min to midnight
    # data has no banded rate: its validity is not cut
    [d] = (await one(engine, data_request("d1", INITIAL, 0, timestamp=friday_2350))).services
    assert d.validity_time == 1800
    await one(engine, data_request("d1", TERMINATE, 1, requested=None, timestamp=friday_2350))
    # at midnight: 300 s at the weekday price (0.50 EUR), the next grant at the weekend
    # price (0.05 EUR/min): 300 s = 0.25 EUR
    midnight = friday_2350 + 600
    clock.now = midnight
    [g] = (
        await one(engine, voice_request("v1", UPDATE, 1, destination=dest, used=300, ts=midnight))
    ).services
    assert (g.cost, g.granted, g.validity_time) == (500_000, 300, 1800)
    assert await reserved(r) == 250_000
    res = await one(
        engine,
        voice_request(
            "v1", TERMINATE, 2, destination=dest, used=61, requested=None, ts=midnight + 61
        ),
    )
    assert res.services[0].cost == 100_000  # 2 weekend minutes (continuation)
    records = [rec for rec in await read_records(r, "a1") if rec["service"] == "voice"]
    interim, final = records
    assert (interim["id"], interim["cause"], interim["band"]) == ("v1;1;100", "interim", "weekday")
    assert (interim["used"], interim["charged"]) == ({"seconds": 300}, 500_000)
    assert (interim["start"], interim["end"]) == (friday_2350, midnight)
    assert (final["id"], final["cause"], final["band"]) == ("v1;2;100", "normal", "weekend")
    assert (final["used"], final["charged"]) == ({"seconds": 61}, 100_000)
    assert final["tariff"]["rate"] == 50_000 and interim["tariff"]["rate"] == 100_000
    assert await money(r, "a1") == 10 * EUR - 600_000


# ------------------------------------------------------------------ SMS events


async def test_sms_national_and_international(engine, r):
    await create_account(r, "a1", balance=1 * EUR, identities=(MSISDN,))
    res = await one(engine, sms_request("m1", destination="4915112345678"))
    assert res.outcome is Outcome.OK and res.cost == 90_000
    [g] = res.services
    assert (g.outcome, g.unit, g.granted, g.cost) == (Outcome.OK, Unit.EVENTS, 1, 90_000)
    res = await one(engine, sms_request("m2", destination="+33612345678", units=2))
    assert res.cost == 580_000
    assert (await money(r, "a1"), await reserved(r)) == (1 * EUR - 670_000, 0)
    national, international = await read_records(r, "a1")
    assert (national["id"], national["cause"], national["charged"]) == ("m1;0;200", "event", 90_000)
    assert national["destination"] == "national" and national["used"] == {"events": 1}
    assert international["destination"] == "international"
    assert (international["charged"], international["used"]) == (580_000, {"events": 2})


async def test_sms_not_affordable_is_refused_without_a_trace(engine, r):
    await create_account(r, "a1", balance=200_000, identities=(MSISDN,))
    res = await one(engine, sms_request("m1", destination="33612345678"))  # 0.29 EUR
    assert res.outcome is Outcome.OK  # the service carries the verdict
    [g] = res.services
    assert (g.outcome, g.granted, g.cost) == (Outcome.CREDIT_LIMIT_REACHED, 0, 0)
    assert await money(r, "a1") == 200_000
    assert await read_records(r, "a1") == []
    assert await r.exists(keys.idempotency("a1", "m1", 0)) == 0


async def test_sms_uses_an_sms_bundle_first(engine, r):
    sms_bundle = bucket("sms-100", "units", 1, unit="events", services=["sms"], priority=5)
    await create_account(r, "a1", balance=1 * EUR, identities=(MSISDN,), buckets=[sms_bundle])
    res = await one(engine, sms_request("m1", destination="4915112345678", units=3))
    # 1 from the bundle, 2 paid: 2 * 0.09 EUR
    assert res.cost == 180_000
    buckets = await get_buckets(r, "a1")
    assert buckets["sms-100"]["amount"] == 0 and buckets["main"]["amount"] == 820_000
    [rec] = await read_records(r, "a1")
    assert rec["allowances"] == {"sms-100": 1} and rec["money"] == {"main": 180_000}


async def test_sms_retransmission_debits_once(engine, r):
    await create_account(r, "a1", balance=1 * EUR, identities=(MSISDN,))
    first = await one(engine, sms_request("m1", destination="4915112345678"))
    again = await one(engine, sms_request("m1", destination="4915112345678"))
    assert first == again
    assert await money(r, "a1") == 910_000
    assert len(await read_records(r, "a1")) == 1


async def test_price_enquiry_check_balance_and_refund(engine, r):
    await create_account(r, "a1", balance=100_000, identities=(MSISDN,))
    res = await one(
        engine,
        sms_request("q1", destination="33612345678", units=2, action=EventAction.PRICE_ENQUIRY),
    )
    assert (res.outcome, res.cost, res.services[0].cost) == (Outcome.OK, 580_000, 580_000)
    ok = await one(
        engine,
        sms_request("b1", destination="4915112345678", action=EventAction.CHECK_BALANCE),
    )
    assert (ok.outcome, ok.balance, ok.services[0].outcome) == (Outcome.OK, 100_000, Outcome.OK)
    short = await one(
        engine,
        sms_request("b2", destination="4915112345678", units=2, action=EventAction.CHECK_BALANCE),
    )
    assert short.outcome is Outcome.INSUFFICIENT_BALANCE
    assert short.services[0].outcome is Outcome.INSUFFICIENT_BALANCE
    assert short.services[0].cost == 180_000
    refund = await one(
        engine,
        sms_request("f1", destination="4915112345678", action=EventAction.REFUND_ACCOUNT),
    )
    assert (refund.outcome, refund.cost) == (Outcome.OK, -90_000)
    again = await one(
        engine,
        sms_request("f1", destination="4915112345678", action=EventAction.REFUND_ACCOUNT),
    )
    assert again == refund
    assert await money(r, "a1") == 190_000  # credited once
    [rec] = await read_records(r, "a1")
    assert (rec["id"], rec["cause"], rec["charged"]) == ("f1;0;200", "refund", -90_000)
    assert rec["money"] == {"main": -90_000}
    [entry] = await r.lrange(keys.history("a1"), 0, -1)
    import json

    history = json.loads(entry)
    assert history["action"] == "refund" and history["amount"] == 90_000
    assert history["bucket"] == "main" and history["session"] == "f1"


# ------------------------------------------------------------------ roaming


@pytest.mark.parametrize(
    ("visited", "zone", "per_mib"),
    [(None, "home", 1 * EUR), ("00101", "home", 1 * EUR), ("20801", "eu", 2 * EUR),
     ("310260", "world", 10 * EUR)],
)  # fmt: skip
async def test_roaming_is_priced_by_zone(engine, r, visited, zone, per_mib):
    await create_account(r, "a1", balance=100 * EUR, identities=(MSISDN,))
    await one(engine, data_request("s1", INITIAL, 0, requested=MIB, visited=visited))
    assert await reserved(r) == per_mib
    await one(
        engine, data_request("s1", TERMINATE, 1, used=3 * MIB, requested=None, visited=visited)
    )
    assert await money(r, "a1") == 100 * EUR - 3 * per_mib
    [rec] = await read_records(r, "a1")
    assert rec["zone"] == zone and rec["charged"] == 3 * per_mib


# ------------------------------------------------------------------ allowances


async def test_allowance_is_used_before_money(engine, r):
    allowance = bucket("data-1gb", "units", 15 * MIB, unit="octets", services=["data"], priority=10)
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,), buckets=[allowance])
    [g] = (await one(engine, data_request("s1", INITIAL, 0))).services
    assert g.granted == 10 * MIB
    b = await get_buckets(r, "a1")
    assert (b["data-1gb"]["reserved"], b["main"]["reserved"]) == (10 * MIB, 0)
    # 10 MiB used, all from the allowance; next grant: 5 MiB allowance + 5 MiB money
    # (no money paid yet: first increment + 4 blocks = 5 EUR)
    [g] = (await one(engine, data_request("s1", UPDATE, 1, used=10 * MIB))).services
    assert (g.granted, g.cost) == (10 * MIB, 0)
    b = await get_buckets(r, "a1")
    assert (b["data-1gb"]["amount"], b["data-1gb"]["reserved"]) == (5 * MIB, 5 * MIB)
    assert (b["main"]["amount"], b["main"]["reserved"]) == (25 * EUR, 5 * EUR)
    # 7 MiB used: 5 MiB from the allowance, 2 MiB money = 2 EUR
    res = await one(engine, data_request("s1", TERMINATE, 2, used=7 * MIB, requested=None))
    assert res.services[0].cost == 2 * EUR
    b = await get_buckets(r, "a1")
    assert (b["data-1gb"]["amount"], b["data-1gb"]["reserved"]) == (0, 0)
    assert (b["main"]["amount"], b["main"]["reserved"]) == (23 * EUR, 0)
    [rec] = await read_records(r, "a1")
    assert rec["allowances"] == {"data-1gb": 15 * MIB}
    assert rec["money"] == {"main": 2 * EUR} and rec["charged"] == 2 * EUR
    assert rec["used"] == {"octets": 17 * MIB}
    # the contract's explicit nils survive the script's re-packing
    raw = msgpack.unpackb(await r.hget(keys.buckets("a1"), "data-1gb"), raw=False)
    assert raw["valid_from"] is None and raw["valid_to"] is None and raw["unit"] == "octets"


async def test_allowances_by_priority_then_soonest_expiry(engine, r):
    buckets = [
        bucket("late", "units", 4 * MIB, unit="octets", services=["data"], priority=10,
               valid_to=NOW + 10 * 86400),
        bucket("soon", "units", 3 * MIB, unit="octets", services=["data"], priority=10,
               valid_to=NOW + 86400),
        bucket("first", "units", 2 * MIB, unit="octets", services=["data"], priority=1),
        bucket("voice-only", "units", 100 * MIB, unit="octets", services=["voice"], priority=0),
    ]  # fmt: skip
    await create_account(r, "a1", balance=0, identities=(MSISDN,), buckets=buckets)
    [g] = (await one(engine, data_request("s1", INITIAL, 0, requested=6 * MIB))).services
    assert (g.granted, g.final_unit) == (6 * MIB, False)
    b = await get_buckets(r, "a1")
    reserved_units = {k: v["reserved"] for k, v in b.items()}
    assert reserved_units == {
        "main": 0, "late": 1 * MIB, "soon": 3 * MIB, "first": 2 * MIB, "voice-only": 0,
    }  # fmt: skip
    # only 9 MiB exist: asking 10 MiB more grants the remaining 3 MiB, the last ones
    res = await one(engine, data_request("s1", UPDATE, 1, used=6 * MIB, requested=10 * MIB))
    assert (res.services[0].granted, res.services[0].final_unit) == (3 * MIB, True)


async def test_expired_and_future_buckets_are_skipped(engine, r):
    buckets = [
        bucket("expired", "units", 50 * MIB, unit="octets", services=["data"], priority=1,
               valid_to=NOW),
        bucket("future", "units", 50 * MIB, unit="octets", services=["data"], priority=1,
               valid_from=NOW + 1),
        bucket("promo", "money", 3 * EUR, priority=1, valid_to=NOW - 60),
    ]  # fmt: skip
    await create_account(r, "a1", balance=5 * EUR, identities=(MSISDN,), buckets=buckets)
    [g] = (await one(engine, data_request("s1", INITIAL, 0))).services
    # only "main" counts: 5 EUR buy 5 MiB of the 10 asked
    assert (g.granted, g.final_unit) == (5 * MIB, True)
    b = await get_buckets(r, "a1")
    assert {k: v["reserved"] for k, v in b.items()} == {
        "main": 5 * EUR, "expired": 0, "future": 0, "promo": 0,
    }  # fmt: skip


async def test_money_bucket_for_one_service_is_used_first(engine, r):
    data_money = bucket("data-credit", "money", 2 * EUR, services=["data"], priority=1)
    await create_account(r, "a1", balance=5 * EUR, identities=(MSISDN,), buckets=[data_money])
    await one(engine, data_request("s1", INITIAL, 0, requested=3 * MIB))
    b = await get_buckets(r, "a1")
    assert (b["data-credit"]["reserved"], b["main"]["reserved"]) == (2 * EUR, 1 * EUR)
    await one(engine, data_request("s1", TERMINATE, 1, used=3 * MIB, requested=None))
    b = await get_buckets(r, "a1")
    assert (b["data-credit"]["amount"], b["main"]["amount"]) == (0, 4 * EUR)
    [rec] = await read_records(r, "a1")
    assert rec["money"] == {"data-credit": 2 * EUR, "main": 1 * EUR}


# ------------------------------------------------------------------ balance limits


async def test_two_identities_share_one_balance(engine, r):
    imsi = "imsi:001010000000001"
    await create_account(r, "a1", balance=15 * EUR, identities=(MSISDN, imsi))
    [g1] = (await one(engine, data_request("s1", INITIAL, 0, identity=MSISDN))).services
    [g2] = (await one(engine, data_request("s2", INITIAL, 0, identity=imsi))).services
    assert (g1.granted, g1.final_unit) == (10 * MIB, False)
    assert (g2.granted, g2.final_unit) == (5 * MIB, True)
    assert await reserved(r) == 15 * EUR
    [g3] = (await one(engine, data_request("s3", INITIAL, 0, identity=imsi))).services
    assert g3.outcome is Outcome.CREDIT_LIMIT_REACHED
    assert len(await engine.sessions_of("a1")) == 3


async def test_first_identity_with_an_account_wins(engine, r):
    await create_account(r, "a1", balance=1 * EUR, identities=("imsi:001010000000001",))
    await create_account(r, "a2", balance=1 * EUR, identities=(MSISDN,))
    req = data_request("s1", INITIAL, 0, requested=MIB)
    req.identities = ["sip:nobody@example.net", MSISDN, "imsi:001010000000001"]
    assert (await one(engine, req)).account_id == "a2"


async def test_an_identity_dropped_from_the_cache_mid_batch_still_resolves(engine, r):
    """Found 5030 answers under overload: a batch saw an identity in the cache, and
    while it waited for Redis another batch dropped that entry (expired); the batch
    then found no account for it."""
    await create_account(r, "a1", balance=5 * EUR, identities=(MSISDN,))
    await create_account(r, "a2", balance=5 * EUR, identities=("msisdn:2",))
    await one(engine, data_request("s1", INITIAL, 0))  # MSISDN is cached now
    batch = asyncio.create_task(
        engine.charge(
            [data_request("s2", INITIAL, 0), data_request("s3", INITIAL, 0, identity="msisdn:2")]
        )
    )
    await asyncio.sleep(0)  # the batch now waits for msisdn:2's lookup
    engine.forget(MSISDN)
    results = await batch
    assert [(r.outcome, r.account_id) for r in results] == [
        (Outcome.OK, "a1"),
        (Outcome.OK, "a2"),
    ]


async def test_low_balance_partial_grant_then_credit_limit_reached(engine, r):
    await create_account(r, "a1", balance=2_500_000, identities=(MSISDN,))
    [g] = (await one(engine, data_request("s1", INITIAL, 0))).services
    # 2.50 EUR: first MiB 1 EUR + 1 more block = 2 MiB, 2 EUR
    assert (g.outcome, g.granted, g.final_unit, g.final_action) == (
        Outcome.OK, 2 * MIB, True, "terminate",
    )  # fmt: skip
    assert await reserved(r) == 2 * EUR
    [g] = (await one(engine, data_request("s1", UPDATE, 1, used=2 * MIB))).services
    assert (g.outcome, g.granted, g.cost, g.final_unit) == (
        Outcome.CREDIT_LIMIT_REACHED, 0, 2 * EUR, False,
    )  # fmt: skip
    assert g.final_action is None and g.validity_time is None
    assert (await money(r, "a1"), await reserved(r)) == (500_000, 0)
    # the session stays until TERMINATE, which writes the record
    await one(engine, data_request("s1", TERMINATE, 2, used=0, requested=None))
    [rec] = await read_records(r, "a1")
    assert rec["charged"] == 2 * EUR


async def test_redirect_final_unit_action_comes_from_the_plan(r, clock):
    from quota_engine.catalog import load_catalog
    from quota_engine.charging.rating import Rater
    from tests.quota_engine.catalogs import base_catalog

    data = base_catalog()
    data["plans"][0]["final_unit_action"] = "redirect"
    data["plans"][0]["redirect_address"] = "http://topup.example/"
    catalog = load_catalog(data)
    pair = (catalog, Rater(catalog))
    engine = ChargingEngine(r, lambda: pair, clock=clock)
    await create_account(r, "a1", balance=1_500_000, plan="basic", identities=(MSISDN,))
    [g] = (await one(engine, data_request("s1", INITIAL, 0))).services
    assert (g.granted, g.final_unit) == (MIB, True)
    assert (g.final_action, g.redirect_address) == ("redirect", "http://topup.example/")


async def test_postpaid_stops_at_the_credit_limit(engine, r):
    await create_account(
        r, "p1", kind="postpaid", plan="postpaid-standard", balance=0, credit_limit=3 * EUR,
        identities=(MSISDN,),
    )  # fmt: skip
    # 0.50 EUR/MiB: 3 EUR of credit buy 6 MiB of the 10 asked
    [g] = (await one(engine, data_request("s1", INITIAL, 0))).services
    assert (g.granted, g.final_unit) == (6 * MIB, True)
    [g] = (await one(engine, data_request("s1", UPDATE, 1, used=6 * MIB))).services
    assert (g.outcome, g.cost) == (Outcome.CREDIT_LIMIT_REACHED, 3 * EUR)
    assert (await money(r, "p1"), await reserved(r, "p1")) == (-3 * EUR, 0)


# ------------------------------------------------------------------ idempotency and order


async def test_retransmissions_get_the_same_answer_and_debit_once(engine, r):
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    first_i = await one(engine, data_request("s1", INITIAL, 0))
    assert await one(engine, data_request("s1", INITIAL, 0)) == first_i
    assert await reserved(r) == 10 * EUR
    first_u = await one(engine, data_request("s1", UPDATE, 1, used=3 * MIB))
    # the retransmission may even carry other values: the stored answer wins
    assert await one(engine, data_request("s1", UPDATE, 1, used=9 * MIB)) == first_u
    assert (await money(r, "a1"), await reserved(r)) == (22 * EUR, 10 * EUR)
    first_t = await one(engine, data_request("s1", TERMINATE, 2, used=MIB, requested=None))
    assert await one(engine, data_request("s1", TERMINATE, 2, used=MIB, requested=None)) == first_t
    assert await money(r, "a1") == 21 * EUR
    assert len(await read_records(r, "a1")) == 1
    # a retransmission in the same batch as the original
    a, b = await engine.charge([data_request("s2", INITIAL, 0), data_request("s2", INITIAL, 0)])
    assert a == b and await reserved(r) == 10 * EUR


async def test_stored_result_is_kept_for_the_idempotency_ttl(r, demo_pair, clock):
    engine = ChargingEngine(r, lambda: demo_pair, EngineSettings(idempotency_ttl=120), clock=clock)
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    await one(engine, data_request("s1", INITIAL, 0))
    ttl = await r.ttl(keys.idempotency("a1", "s1", 0))
    assert 0 < ttl <= 120


async def test_older_request_number_is_out_of_order(engine, r):
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    await one(engine, data_request("s1", INITIAL, 0))
    await one(engine, data_request("s1", UPDATE, 2, used=MIB))
    res = await one(engine, data_request("s1", UPDATE, 1, used=5 * MIB))
    assert res.outcome is Outcome.OUT_OF_ORDER and res.services == []
    assert (await money(r, "a1"), await reserved(r)) == (24 * EUR, 10 * EUR)


@pytest.mark.parametrize("kind", [UPDATE, TERMINATE])
async def test_update_or_terminate_of_an_unknown_session(engine, r, kind):
    """Choice: a CCR-TERMINATE for an unknown session is answered UNKNOWN_SESSION and nothing is
    charged (there is no price, grant or reservation to commit against); the usage of a
    session the sweeper already settled is lost, which the deadline's grace prevents."""
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    res = await one(engine, data_request("nope", kind, 3, used=MIB, requested=None))
    assert res.outcome is Outcome.UNKNOWN_SESSION
    assert res.account_id == "a1"
    assert await money(r, "a1") == 25 * EUR
    assert await read_records(r, "a1") == []
    assert await r.exists(keys.session("a1", "nope")) == 0


async def test_unknown_subscriber(engine, r):
    res = await one(engine, data_request("s1", INITIAL, 0, identity="msisdn:499999999"))
    assert res.outcome is Outcome.UNKNOWN_SUBSCRIBER and res.account_id is None


# ------------------------------------------------------------------ account status


@pytest.mark.parametrize("status", ["barred", "suspended"])
async def test_inactive_account_is_denied_and_nothing_is_touched(engine, r, status):
    await create_account(r, "a1", balance=25 * EUR, status=status, identities=(MSISDN,))
    before = await r.hgetall(keys.buckets("a1"))
    res = await one(engine, data_request("s1", INITIAL, 0))
    assert res.outcome is Outcome.SERVICE_DENIED
    sms = await one(engine, sms_request("m1", destination="4915112345678"))
    assert sms.outcome is Outcome.SERVICE_DENIED
    assert await r.hgetall(keys.buckets("a1")) == before
    assert await r.exists(keys.session("a1", "s1"), keys.idempotency("a1", "s1", 0)) == 0
    assert await read_records(r, "a1") == []


async def test_account_barred_during_a_session(engine, r):
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    await one(engine, data_request("s1", INITIAL, 0))
    await r.hset(keys.account("a1"), "status", "barred")
    # UPDATE: the usage is committed and the reservation released, no new grant
    res = await one(engine, data_request("s1", UPDATE, 1, used=2 * MIB))
    assert res.outcome is Outcome.SERVICE_DENIED
    assert res.services[0].outcome is Outcome.SERVICE_DENIED and res.services[0].cost == 2 * EUR
    assert (await money(r, "a1"), await reserved(r)) == (23 * EUR, 0)
    # TERMINATE still closes the session and writes the record
    res = await one(engine, data_request("s1", TERMINATE, 2, used=0, requested=None))
    assert res.outcome is Outcome.OK
    [rec] = await read_records(r, "a1")
    assert rec["charged"] == 2 * EUR


# ------------------------------------------------------------------ zero rating and tariffs


async def test_zero_rated_is_not_applicable_and_recorded_for_free(engine, r):
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    res = await one(engine, data_request("z1", INITIAL, 0, rating_group=999))
    [g] = res.services
    assert (g.outcome, g.granted) == (Outcome.NOT_APPLICABLE, 0)
    assert await reserved(r) == 0
    await one(
        engine, data_request("z1", TERMINATE, 1, rating_group=999, used=50 * MIB, requested=None)
    )
    assert await money(r, "a1") == 25 * EUR
    [rec] = await read_records(r, "a1")
    assert (rec["service"], rec["charged"], rec["zero_rated"]) == ("portal", 0, True)
    assert rec["used"] == {"octets": 50 * MIB}


async def test_unknown_service_and_unknown_plan_have_no_tariff(engine, r):
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    req = data_request("s1", INITIAL, 0, extra=[ServiceUsage(rating_group=12345, requested=0)])
    res = await one(engine, req)
    assert [g.outcome for g in res.services] == [Outcome.OK, Outcome.NO_TARIFF]
    assert [g.rating_group for g in res.services] == [10, 12345]
    await create_account(r, "a2", plan="retired-plan", identities=("msisdn:491700000002",))
    res = await one(engine, data_request("s2", INITIAL, 0, identity="msisdn:491700000002"))
    assert res.outcome is Outcome.OK and res.services[0].outcome is Outcome.NO_TARIFF
    assert await reserved(r, "a2") == 0


async def test_several_services_in_one_request_share_the_balance(engine, r):
    await create_account(r, "a1", balance=12 * EUR, identities=(MSISDN,))
    req = data_request(
        "s1", INITIAL, 0,
        extra=[ServiceUsage(rating_group=999, requested=0), ServiceUsage(rating_group=10,
               service_identifier=None, requested=0)],
    )  # fmt: skip
    req.services[2] = ServiceUsage(rating_group=11, requested=0)  # unknown
    res = await one(engine, req)
    assert [(g.rating_group, g.outcome, g.granted) for g in res.services] == [
        (10, Outcome.OK, 10 * MIB), (999, Outcome.NOT_APPLICABLE, 0), (11, Outcome.NO_TARIFF, 0),
    ]  # fmt: skip
    assert await reserved(r) == 10 * EUR


# ------------------------------------------------------------------ redis 6.2


async def test_data_session_on_both_redis_versions(any_r, demo_pair, clock):
    engine = ChargingEngine(any_r, lambda: demo_pair, clock=clock)
    await create_account(any_r, "a1", balance=25 * EUR, identities=(MSISDN,))
    await one(engine, data_request("s1", INITIAL, 0))
    await one(engine, data_request("s1", UPDATE, 1, used=3_670_016))
    await one(engine, data_request("s1", TERMINATE, 2, used=MIB, requested=None))
    assert await money(any_r, "a1") == 20 * EUR
    [rec] = await read_records(any_r, "a1")
    assert rec["charged"] == 5 * EUR


def test_engine_refuses_decoded_responses(demo_pair):
    import redis.asyncio as aioredis

    client = aioredis.Redis(decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        ChargingEngine(client, lambda: demo_pair)


async def test_a_failing_request_does_not_hide_the_others(engine, r):
    from quota_engine.charging.engine import ChargingBatchError

    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    await one(engine, data_request("bad", INITIAL, 0))
    await r.set(keys.session("a1", "bad"), b"\xc1 not msgpack")
    with pytest.raises(ChargingBatchError) as caught:
        await engine.charge(
            [data_request("good", INITIAL, 0), data_request("bad", UPDATE, 1, used=MIB)]
        )
    good, bad = caught.value.results
    assert good.outcome is Outcome.OK and good.services[0].granted == 10 * MIB
    assert isinstance(bad, Exception)
    # the good one is done: its retransmission gets the same answer
    assert await one(engine, data_request("good", INITIAL, 0)) == good


# ------------------------------------------------------------------ review fixes


async def test_terminate_reusing_the_last_number_closes_the_session(engine, r, clock):
    """Issue 9: a CCR-T that reuses the CCR-U's number used to get the CCR-U's stored
    answer, and the session and its reservation stayed open until the sweeper. A
    CCR-T closes an open session whatever its number (docs/data-model.md)."""
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    await one(engine, data_request("s1", INITIAL, 0))
    await one(engine, data_request("s1", UPDATE, 1, used=MIB))
    res = await one(engine, data_request("s1", TERMINATE, 1, used=MIB, requested=None))
    assert res.outcome is Outcome.OK and res.services[0].granted == 0
    assert not await r.exists(keys.session("a1", "s1"))
    assert await r.zcard(keys.DEADLINES) == 0
    assert await reserved(r) == 0
    assert await money(r, "a1") == 25 * EUR - 2 * EUR  # both MiB at 1 EUR
    # its record carries the session's last number + 1: no id is used twice
    assert [rec["id"] for rec in await read_records(r, "a1")] == ["s1;2;10"]
    # a retransmission of the CCR-T gets its own answer, and changes nothing
    again = await one(engine, data_request("s1", TERMINATE, 1, used=MIB, requested=None))
    assert again == res and await money(r, "a1") == 23 * EUR


async def test_the_deadline_index_follows_the_session_whatever_the_request(engine, r):
    """The engine sends the likely index update with each script call (ZADD for
    CCR-I/U, ZREM for CCR-T) and puts it right from the answer: a live session is
    indexed at its own deadline, a session that does not exist is not indexed."""
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    await create_account(r, "a2", balance=25 * EUR, status="barred", identities=("msisdn:2",))
    assert (await one(engine, data_request("x", UPDATE, 1))).outcome is Outcome.UNKNOWN_SESSION
    assert (await one(engine, data_request("y", TERMINATE, 1))).outcome is Outcome.UNKNOWN_SESSION
    barred = await one(engine, data_request("z", INITIAL, 0, identity="msisdn:2"))
    assert barred.outcome is Outcome.SERVICE_DENIED
    assert await r.zcard(keys.DEADLINES) == 0
    await one(engine, data_request("s1", INITIAL, 0))
    await one(engine, data_request("s1", UPDATE, 1))
    deadline = NOW + 1800 + 60
    assert (await one(engine, data_request("s1", UPDATE, 1))).outcome is Outcome.OK  # replay
    assert await r.zrange(keys.DEADLINES, 0, -1, withscores=True) == [(b"a1|s1", deadline)]
    await r.zrem(keys.DEADLINES, "a1|s1")  # the index lost the entry
    await r.delete(keys.idempotency("a1", "s1", 0))
    assert (await one(engine, data_request("s1", UPDATE, 0))).outcome is Outcome.OUT_OF_ORDER
    # out of order: the session is alive, indexed again at its own deadline
    assert await r.zrange(keys.DEADLINES, 0, -1, withscores=True) == [(b"a1|s1", deadline)]
    # a CCR-T with an old number closes the session all the same (it is not out of
    # order: a client can always close its session), and the index follows
    await r.delete(keys.idempotency("a1", "s1", 1))
    end = await one(engine, data_request("s1", TERMINATE, 1, requested=None))
    assert end.outcome is Outcome.OK
    assert await r.zcard(keys.DEADLINES) == 0
    late = await one(engine, data_request("s1", TERMINATE, 2, requested=None))
    assert late.outcome is Outcome.UNKNOWN_SESSION
    assert await r.zcard(keys.DEADLINES) == 0


def expensive_sms_pair():
    from quota_engine.catalog import load_catalog
    from quota_engine.charging.rating import Rater
    from tests.quota_engine.catalogs import base_catalog

    data = base_catalog()
    sms = data["plans"][0]["tariffs"][2]
    sms["rates"][0]["rate"] = 10 * EUR  # 10 EUR per event
    catalog = load_catalog(data)
    return catalog, Rater(catalog)


def huge_sms(session, action, units=2**40):
    return ChargingRequest(
        session_id=session,
        request_type=EVENT,
        request_number=0,
        identities=[MSISDN],
        service_context=SMS_CTX,
        services=[ServiceUsage(rating_group=200, requested=units)],
        timestamp=NOW,
        action=action,
    )


async def test_units_beyond_any_balance_are_refused_not_crashed(r, clock):
    pair = expensive_sms_pair()
    engine = ChargingEngine(r, lambda: pair, clock=clock)
    await create_account(r, "a1", balance=25 * EUR, plan="basic", identities=(MSISDN,))
    enquiry, refund, small = await engine.charge(
        [
            huge_sms("q1", EventAction.PRICE_ENQUIRY),
            huge_sms("f1", EventAction.REFUND_ACCOUNT),
            huge_sms("q2", EventAction.PRICE_ENQUIRY, units=3),
        ]
    )
    assert enquiry.outcome is Outcome.OK and enquiry.cost == 0
    [g] = enquiry.services
    assert (g.outcome, g.granted, g.cost) == (Outcome.CREDIT_LIMIT_REACHED, 0, 0)
    assert refund.outcome is Outcome.OK and refund.cost == 0
    assert refund.services[0].outcome is Outcome.CREDIT_LIMIT_REACHED
    assert await money(r, "a1") == 25 * EUR  # nothing refunded
    assert await read_records(r, "a1") == []
    assert small.cost == 30 * EUR
    # the largest refund that fits is still paid in full
    cap = 2**50 // (10 * EUR)
    [ok] = await engine.charge([huge_sms("f2", EventAction.REFUND_ACCOUNT, units=cap)])
    assert ok.cost == -cap * 10 * EUR
    [over] = await engine.charge([huge_sms("f3", EventAction.REFUND_ACCOUNT, units=cap + 1)])
    assert over.services[0].outcome is Outcome.CREDIT_LIMIT_REACHED


async def test_a_request_failing_in_preparation_fails_alone(engine, r, monkeypatch):
    from quota_engine.charging.engine import ChargingBatchError

    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    prepare = engine._prepare_event

    def exploding(job, *args):
        if job.request.session_id == "boom":
            raise OverflowError("boom")
        return prepare(job, *args)

    monkeypatch.setattr(engine, "_prepare_event", exploding)
    with pytest.raises(ChargingBatchError) as caught:
        await engine.charge(
            [
                data_request("s1", INITIAL, 0),
                sms_request("boom", destination="4915112345678"),
                sms_request("e1", destination="4915112345678"),
            ]
        )
    session, boom, sms = caught.value.results
    assert session.outcome is Outcome.OK and session.services[0].granted == 10 * MIB
    assert isinstance(boom, OverflowError)
    assert sms.outcome is Outcome.OK and sms.cost == 90_000
    assert await r.zrange(keys.DEADLINES, 0, -1) == [b"a1|s1"]


async def test_price_metadata_cache_belongs_to_the_engine(r, demo_pair, clock):
    import quota_engine.charging.engine as engine_module

    assert not hasattr(engine_module, "_META_CACHE")
    first = ChargingEngine(r, lambda: demo_pair, clock=clock)
    second = ChargingEngine(r, lambda: demo_pair, clock=clock)
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    await first.charge([data_request("s1", INITIAL, 0)])
    assert first._meta_cache and not second._meta_cache
