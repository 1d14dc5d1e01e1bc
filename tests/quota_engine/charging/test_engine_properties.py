"""Property: on random valid catalogs and balances, random sequences of session
requests (INITIAL/UPDATE/TERMINATE, retransmissions, expiries swept) conserve money and units, and
never grant more than the account can pay.

Clients here never use more than they were granted, so a prepaid balance must never
go below zero and a postpaid one never below -credit_limit; at the end every
reservation is released and initial = final + sum of the records' charges (money)
and allowances (units)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import msgpack
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quota_engine.catalog import load_catalog
from quota_engine.charging.engine import ChargingEngine, EngineSettings
from quota_engine.charging.rating import Rater
from quota_engine.model import ChargingRequest, Outcome, ServiceUsage
from quota_engine.store import keys
from quota_engine.store.records import read_records
from tests.quota_engine.conftest import (
    DATA_CTX,
    INITIAL,
    NOW,
    TERMINATE,
    UPDATE,
    Clock,
    bucket,
    create_account,
)

RGS = (10, 20)


def rate_strategy():
    return st.fixed_dictionaries(
        {
            "rate": st.integers(0, 10**6),
            "rate_per": st.integers(1, 10**6),
            "first_increment": st.integers(1, 10**4),
            "next_increment": st.integers(1, 10**4),
        }
    )


@st.composite
def catalogs(draw):
    tariffs = []
    for service in ("data", "video"):
        if draw(st.integers(0, 5)) == 0:
            tariffs.append({"service": service, "zero_rated": True})
        else:
            tariffs.append({"service": service, "rates": [draw(rate_strategy())]})
    return {
        "version": "prop",
        "currency": "EUR",
        "timezone": "UTC",
        "services": [
            {"id": "data", "context": DATA_CTX, "rating_groups": [10], "unit": "octets"},
            {"id": "video", "context": DATA_CTX, "rating_groups": [20], "unit": "octets"},
        ],
        "plans": [{"id": "p", "tariffs": tariffs}],
    }


@st.composite
def accounts(draw):
    postpaid = draw(st.booleans())
    extra = []
    for i in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["units", "money"]))
        services = draw(st.sampled_from([["data"], ["video"], ["data", "video"], []]))
        if kind == "units" and not services:
            services = ["data"]
        extra.append(
            bucket(
                f"b{i}",
                kind,
                draw(st.integers(0, 10**5 if kind == "units" else 10**7)),
                unit="octets" if kind == "units" else None,
                priority=draw(st.integers(0, 3)),
                valid_to=draw(st.sampled_from([None, NOW - 1, NOW + 3000, NOW + 10**6])),
                services=services,
            )
        )
    return {
        "kind": "postpaid" if postpaid else "prepaid",
        "balance": draw(st.integers(0, 10**7)),
        "credit_limit": draw(st.integers(0, 10**7)) if postpaid else 0,
        "buckets": extra,
    }


steps = st.lists(
    st.tuples(
        st.integers(0, 2),  # session
        st.sampled_from(["next", "next", "next", "retransmit", "terminate", "sweep"]),
        st.lists(st.integers(0, 10**5), min_size=2, max_size=2),  # requested per RG
        st.floats(0, 1),  # share of the grant used
        st.integers(0, 2500),  # seconds that pass first
    ),
    min_size=1,
    max_size=25,
)


@dataclass
class Sess:
    n: int = -1
    open: bool = False
    granted: dict[int, int] = field(default_factory=dict)
    last: ChargingRequest | None = None


async def money_and_units(client, account):
    raw = await client.hgetall(keys.buckets(account))
    buckets = {k.decode(): msgpack.unpackb(v, raw=False) for k, v in raw.items()}
    return buckets


def check_buckets(buckets, credit_limit):
    for b in buckets.values():
        assert b["reserved"] >= 0, b
        floor = -credit_limit if b["id"] == "main" else 0
        assert b["amount"] - b["reserved"] >= floor, (b, credit_limit)


async def scenario(url, catalog_data, account, plan_steps):
    catalog = load_catalog(catalog_data)
    pair = (catalog, Rater(catalog))
    client = aioredis.Redis.from_url(url)
    await client.flushall()
    clock = Clock(NOW)
    engine = ChargingEngine(client, lambda: pair, EngineSettings(validity_time=1800), clock=clock)
    await create_account(
        client,
        "acc",
        balance=account["balance"],
        kind=account["kind"],
        plan="p",
        credit_limit=account["credit_limit"],
        identities=("msisdn:4917000000001",),
        buckets=account["buckets"],
    )
    limit = account["credit_limit"]
    initial = await money_and_units(client, "acc")
    sessions = [Sess() for _ in range(3)]

    def request(index, kind, n, requested, share):
        s = sessions[index]
        services = []
        for rg, want in zip(RGS, requested, strict=True):
            used = int(s.granted.get(rg, 0) * share) if kind is not INITIAL else 0
            services.append(
                ServiceUsage(
                    rating_group=rg, requested=want if kind is not TERMINATE else None, used=used
                )
            )
        return ChargingRequest(
            session_id=f"s{index}",
            request_type=kind,
            request_number=n,
            identities=["msisdn:4917000000001"],
            service_context=DATA_CTX,
            services=services,
            timestamp=clock.now,
        )

    for index, action, requested, share, elapsed in plan_steps:
        clock.now += elapsed
        s = sessions[index]
        if action == "sweep":
            await engine.sweep(clock.now)
            continue
        if action == "retransmit":
            if s.last is None:
                continue
            req = s.last
        else:
            kind = (
                TERMINATE if action == "terminate" and s.open else (UPDATE if s.open else INITIAL)
            )
            s.n += 1
            req = request(index, kind, s.n, requested, share)
        [res] = await engine.charge([req])
        s.last = req
        if res.outcome is Outcome.UNKNOWN_SESSION:  # settled by the sweeper meanwhile
            s.open, s.granted = False, {}
        elif action == "retransmit":
            pass  # the stored answer of the original: nothing changed
        elif req.request_type is TERMINATE:
            s.open, s.granted = False, {}
        else:
            assert res.outcome is Outcome.OK
            s.open = True
            for usage, grant in zip(req.services, res.services, strict=True):
                s.granted[usage.rating_group] = grant.granted
                if grant.granted:
                    price = pair[1].price("p", grant_service(grant.rating_group), req.timestamp)
                    bound = usage.requested or EngineSettings().default_octets
                    assert grant.granted <= bound + price.first_increment + price.next_increment
        check_buckets(await money_and_units(client, "acc"), limit)

    # close everything: terminate what is open, then let the sweeper take the rest
    for index, s in enumerate(sessions):
        if s.open:
            s.n += 1
            await engine.charge([request(index, TERMINATE, s.n, [None, None], 1.0)])
    await engine.sweep(clock.now + 10**6)
    final = await money_and_units(client, "acc")
    records = await read_records(client, "acc", count=None)
    await client.aclose()

    check_buckets(final, limit)
    assert all(b["reserved"] == 0 for b in final.values())
    money_before = sum(b["amount"] for b in initial.values() if b["kind"] == "money")
    money_after = sum(b["amount"] for b in final.values() if b["kind"] == "money")
    assert money_before == money_after + sum(rec["charged"] for rec in records)
    for bid, b in initial.items():
        taken = sum(rec["allowances"].get(bid, 0) for rec in records)
        spent = sum(rec["money"].get(bid, 0) for rec in records)
        assert b["amount"] == final[bid]["amount"] + (taken if b["kind"] == "units" else spent)
    assert len({rec["id"] for rec in records}) == len(records)


def grant_service(rating_group):
    return "data" if rating_group == 10 else "video"


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(catalog=catalogs(), account=accounts(), plan_steps=steps)
def test_random_sessions_conserve_money_and_never_overgrant(
    redis_server, catalog, account, plan_steps
):
    asyncio.run(scenario(redis_server.url, catalog, account, plan_steps))
