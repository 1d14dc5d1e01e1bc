"""The engine's account cache against a real Redis: requests are rated from a cached
copy of the account (plan, bill cycle day, currency, period usage), and the scripts
make sure a request is never charged from an outdated copy."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from quota_engine.catalog import load_catalog
from quota_engine.charging.engine import (
    AccountChanged,
    ChargingBatchError,
    ChargingEngine,
    EngineSettings,
)
from quota_engine.charging.periods import bill_period
from quota_engine.charging.rating import Rater
from quota_engine.model import ChargingRequest, Outcome, RequestType
from quota_engine.store import keys
from tests.quota_engine.catalogs import MIB, base_catalog, per_mib
from tests.quota_engine.conftest import (
    EUR,
    INITIAL,
    NOW,
    TERMINATE,
    create_account,
    data_request,
    money,
)

MSISDN = "msisdn:491700000009"
CHEAP = 100_000  # 0.10 EUR per MiB


def catalog_pair():
    """``basic``: 1 EUR/MiB for data, 0.10 EUR/MiB from 5 MiB used in the bill period;
    ``cheap``: 0.10 EUR/MiB."""
    document = base_catalog()
    basic = document["plans"][0]
    basic["tariffs"][0]["rates"][0]["tiers"] = [
        {"from_units": 5 * MIB, "rate": CHEAP, "rate_per": MIB}
    ]
    cheap = copy.deepcopy(basic)
    cheap["id"] = "cheap"
    cheap["tariffs"][0]["rates"][0] = per_mib(CHEAP)
    document["plans"].append(cheap)
    catalog = load_catalog(document)
    return catalog, Rater(catalog)


@pytest.fixture
async def account(r):
    await create_account(r, "A1", plan="basic", identities=(MSISDN,), balance=100 * EUR)
    return "A1"


@pytest.fixture
def pair():
    return catalog_pair()


def node(r, pair, clock) -> ChargingEngine:
    """One OCS node's engine (each has its own caches)."""
    return ChargingEngine(r, lambda: pair, clock=clock)


def request(session: str, kind: RequestType, number: int, used: int = 0) -> ChargingRequest:
    """A data CCR of the test subscriber: 1 MiB asked on CCR-I, ``used`` reported."""
    return data_request(
        session, kind, number, identity=MSISDN, used=used, requested=MIB if kind is INITIAL else 0
    )


async def session(engine: ChargingEngine, name: str, used: int) -> None:
    """CCR-I then CCR-T reporting ``used`` octets; both answered OK."""
    for result in await engine.charge([request(name, INITIAL, 0)]) + await engine.charge(
        [request(name, TERMINATE, 1, used)]
    ):
        assert result.outcome is Outcome.OK, result


class RoundTrips:
    """The real client, counting the pipelines it executes (one round trip each)."""

    def __init__(self, client) -> None:
        self._client = client
        self.count = 0

    def pipeline(self, transaction: bool = True):
        pipe = self._client.pipeline(transaction=transaction)
        execute = pipe.execute

        async def counted(*args, **kwargs):
            self.count += 1
            return await execute(*args, **kwargs)

        pipe.execute = counted
        return pipe

    def __getattr__(self, name):
        return getattr(self._client, name)


async def test_a_cached_account_costs_no_read(r, account, pair, clock):
    client = RoundTrips(r)
    engine = ChargingEngine(client, lambda: pair, clock=clock)
    await engine.charge([request("s1", INITIAL, 0)])  # reads identity and account
    before = client.count
    await engine.charge([request("s1", TERMINATE, 1, MIB)])
    assert client.count - before == 1  # the script call with its deadline index update
    assert await money(r, account) == 99 * EUR


async def test_a_plan_change_applies_to_the_next_request(r, account, pair, clock):
    engine = node(r, pair, clock)
    await session(engine, "s1", MIB)  # basic: 1 EUR, and the account is now cached
    assert await money(r, account) == 99 * EUR
    await r.hset(keys.account(account), "plan", "cheap")  # e.g. by another node's API
    await session(engine, "s2", MIB)
    assert await money(r, account) == 99 * EUR - CHEAP


async def test_a_tier_crossed_on_another_node_prices_the_next_request(r, account, pair, clock):
    node_a, node_b = node(r, pair, clock), node(r, pair, clock)
    await session(node_a, "s1", MIB)  # node A caches 1 MiB used: tier 0 (1 EUR/MiB)
    # 5 MiB: 4 MiB at tier 0 up to the threshold, the 5th at tier 1; 6 MiB used now
    await session(node_b, "s2", 5 * MIB)
    assert await money(r, account) == 95 * EUR - CHEAP
    await session(node_a, "s3", MIB)  # node A must price it at tier 1
    assert await money(r, account) == 95 * EUR - 2 * CHEAP


async def test_a_currency_change_is_reported_at_once(r, account, pair, clock):
    engine = node(r, pair, clock)
    await session(engine, "s1", MIB)
    await r.hset(keys.account(account), "currency", "CHF")
    [result] = await engine.charge([request("s2", INITIAL, 0)])
    assert result.outcome is Outcome.OK and result.currency == "CHF"


async def test_a_bill_cycle_day_change_moves_the_usage_to_the_new_period(r, account, pair, clock):
    engine = node(r, pair, clock)
    await session(engine, "s1", MIB)
    old, new = bill_period(NOW, 1), bill_period(NOW, 28)
    assert old != new
    await r.hset(keys.account(account), "bill_cycle_day", "28")
    await session(engine, "s2", 2 * MIB)
    assert int(await r.hget(keys.period_usage(account, old), "data")) == MIB
    assert int(await r.hget(keys.period_usage(account, new), "data")) == 2 * MIB


async def test_an_account_that_never_matches_fails_alone_and_writes_nothing(
    r, account, pair, clock
):
    await create_account(r, "A2", plan="basic", identities=("msisdn:491700000010",))
    # a usage value Python cannot read as an integer but Lua can: every rating from
    # Redis' own copy is outdated by the script's check (corrupt data, not a race)
    await r.hset(keys.period_usage(account, bill_period(NOW, 1)), "data", "6e6")
    engine = node(r, pair, clock)
    other = replace(request("s2", INITIAL, 0), identities=["msisdn:491700000010"])
    with pytest.raises(ChargingBatchError) as caught:
        await engine.charge([request("s1", INITIAL, 0), other])
    first, second = caught.value.results
    assert isinstance(first, AccountChanged) and "A1" in str(first)
    assert second.outcome is Outcome.OK
    assert await money(r, account) == 100 * EUR
    assert await r.exists(keys.session(account, "s1")) == 0


async def test_a_terminate_that_fails_leaves_its_session_indexed(r, account, pair, clock):
    engine = node(r, pair, clock)
    await engine.charge([request("s1", INITIAL, 0)])
    await r.hset(keys.period_usage(account, bill_period(NOW, 1)), "data", "6e6")  # as above
    with pytest.raises(ChargingBatchError) as caught:
        await engine.charge([request("s1", TERMINATE, 1, MIB)])
    assert isinstance(caught.value.results[0], AccountChanged)
    # the CCR-T went with a ZREM of the session's index entry; the session lives on,
    # so it is indexed again and the sweeper will settle it
    assert await r.exists(keys.session(account, "s1")) == 1
    assert await r.zscore(keys.DEADLINES, f"{account}|s1") is not None


@pytest.mark.parametrize("ttl", [30.0, 0.0])
async def test_what_the_engine_keeps_per_account_is_bounded(r, pair, clock, ttl):
    settings = EngineSettings(account_cache_size=2, account_cache_ttl=ttl)
    engine = ChargingEngine(r, lambda: pair, settings, clock=clock)
    for n in range(5):
        identity = f"msisdn:49170000010{n}"
        await create_account(r, f"B{n}", plan="basic", identities=(identity,))
        [result] = await engine.charge(
            [replace(request(f"s{n}", INITIAL, 0), identities=[identity])]
        )
        assert result.outcome is Outcome.OK
        assert len(engine._accounts) <= 2 and len(engine._periods.cycle_days) <= 2
