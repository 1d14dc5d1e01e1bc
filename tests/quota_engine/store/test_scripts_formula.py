"""The Lua price formula (lib.lua charge / units_for_money) is Price.charge /
Price.units_for_money, on random prices and amounts, on redis-server 7 and 6.2.

A test-only script (lib.lua plus a few lines) evaluates many cases per call."""

from __future__ import annotations

import msgpack
import pytest
import redis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from quota_engine.catalog import MAX_INCREMENT_COST
from quota_engine.charging.rating import Price
from quota_engine.money import round_up
from quota_engine.store.scripts import LuaScript, load_source

LIMIT = 2**53

FORMULA = LuaScript(
    load_source("lib.lua")
    + """
local out = {}
for _, c in ipairs(cmsgpack.unpack(ARGV[1])) do
  local p = { fi = c[1], fc = c[2], ni = c[3], nc = c[4] }
  local cont = c[6] == 1
  local billed, cost = charge(p, c[5], cont)
  local units = units_for_money(p, c[7], cont)
  if units == math.huge then units = -1 end
  out[#out + 1] = { billed, cost, units }
end
return cmsgpack.pack(out)
""",
    "formula-test",
)


@pytest.fixture(scope="module", params=["7", "6.2"])
def sync_client(request):
    server = request.getfixturevalue("redis_server" if request.param == "7" else "redis62_server")
    client = redis.Redis.from_url(server.url)
    yield client
    client.close()


def run_cases(client: redis.Redis, script: LuaScript, cases: list[list[int]]) -> list[list[int]]:
    """The test ``script``'s answers to ``cases`` (msgpack both ways; loaded if absent)."""
    packed = msgpack.packb(cases)
    try:
        raw = client.evalsha(script.sha, 0, packed)
    except redis.exceptions.NoScriptError:
        client.script_load(script.source)
        raw = client.evalsha(script.sha, 0, packed)
    return msgpack.unpackb(raw)


def evaluate(client: redis.Redis, cases: list[list[int]]) -> list[list[int]]:
    return run_cases(client, FORMULA, cases)


@st.composite
def prices(draw):
    """Prices the catalog accepts: one increment costs at most MAX_INCREMENT_COST."""
    rate = draw(st.one_of(st.just(0), st.integers(0, 10**6), st.integers(0, 10**12)))
    rate_per = draw(st.one_of(st.integers(1, 100), st.integers(1, 10**12)))
    first = draw(st.one_of(st.integers(1, 100), st.integers(1, 10**9)))
    nxt = draw(st.one_of(st.integers(1, 100), st.integers(1, 10**9)))
    assume(round_up(max(first, nxt) * rate, rate_per) <= MAX_INCREMENT_COST)
    return Price(rate, rate_per, first, nxt)


@st.composite
def cases(draw):
    price = draw(prices())
    cont = draw(st.booleans())
    units = draw(
        st.one_of(
            st.integers(0, 1000),
            st.integers(0, 2**40),
            # exactly on and next to increment boundaries
            st.integers(0, 1000).map(
                lambda n: max(0, price.first_increment + n * price.next_increment)
            ),
            st.integers(0, 1000).map(
                lambda n: max(0, price.first_increment + n * price.next_increment + 1)
            ),
        )
    )
    base_cost = 0 if cont else price.first_cost
    budget = draw(
        st.one_of(
            st.integers(0, 10**7),
            st.integers(0, LIMIT - 1),
            # exactly on, just below and just above the price of n increments
            st.tuples(st.integers(0, 10**6), st.integers(-1, 1)).map(
                lambda t: max(0, base_cost + t[0] * price.next_cost + t[1])
            ),
        )
    )
    try:
        billed, cost = price.charge(units, cont)
    except OverflowError:  # beyond int64: far outside what the scripts are given
        assume(False)
    assume(billed < LIMIT and cost < LIMIT and budget < LIMIT)
    expected_units = price.units_for_money(budget, cont)
    if price.next_cost:
        assume(expected_units < LIMIT)
    return price, cont, units, budget, (billed, cost, expected_units)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cases(), min_size=1, max_size=25))
def test_lua_formula_matches_price(sync_client, batch):
    sent = [
        [p.first_increment, p.first_cost, p.next_increment, p.next_cost, units, int(cont), budget]
        for p, cont, units, budget, _ in batch
    ]
    for (price, cont, units, budget, expected), got in zip(
        batch, evaluate(sync_client, sent), strict=True
    ):
        billed, cost, expected_units = expected
        assert got[:2] == [billed, cost], (price, cont, units)
        if price.next_cost == 0 and expected_units > 0:
            assert got[2] == -1  # unlimited; Python answers the int64 ceiling
            assert expected_units > 2**62
        else:
            assert got[2] == expected_units, (price, cont, budget)


def test_known_values(sync_client):
    intl = Price(500_000, 60, 30, 6)  # docs/catalog.md worked example
    got = evaluate(
        sync_client,
        [
            [30, 250_000, 6, 50_000, 95, 0, 1_000_000],
            [30, 250_000, 6, 50_000, 10, 0, 249_999],
            [30, 250_000, 6, 50_000, 10, 1, 50_000],
            [30, 250_000, 6, 50_000, 0, 0, 0],
        ],
    )
    assert got == [[96, 800_000, 120], [30, 250_000, 0], [12, 100_000, 6], [0, 0, 0]]
    assert intl.charge(95) == (96, 800_000) and intl.units_for_money(1_000_000) == 120


CUMULATIVE = LuaScript(
    load_source("lib.lua")
    + """
local out = {}
for _, c in ipairs(cmsgpack.unpack(ARGV[1])) do
  local p = { fi = c[1], fc = c[2], ni = c[3], nc = c[4] }
  local q, units, cont, budget = c[5], c[6], c[7] == 1, c[8]
  local billed, cost = charge_after(p, q, units, cont)
  local grant = grant_after(p, q, units, cont)
  local afford = units_for_money_after(p, q, budget, cont)
  if afford == math.huge then afford = -1 end
  out[#out + 1] = { billed, cost, grant, afford }
end
return cmsgpack.pack(out)
""",
    "cumulative-formula-test",
)


def evaluate_cumulative(client: redis.Redis, cases: list[list[int]]) -> list[list[int]]:
    return run_cases(client, CUMULATIVE, cases)


@st.composite
def cumulative_cases(draw):
    price = draw(prices())
    cont = draw(st.booleans())
    amounts = st.one_of(
        st.integers(0, 1000),
        st.integers(0, 2**40),
        st.integers(0, 1000).map(lambda n: price.first_increment + n * price.next_increment),
        st.integers(0, 1000).map(lambda n: price.first_increment + n * price.next_increment + 1),
    )
    counted, units = draw(amounts), draw(amounts)
    budget = draw(st.one_of(st.integers(0, 10**7), st.integers(0, 2**50)))
    try:
        expected = (
            *price.charge_after(counted, units, cont),
            price.round_grant_after(counted, units, cont),
            price.units_for_money_after(counted, budget, cont),
        )
        _, spent = price.charge(counted + units, cont)
    except OverflowError:
        assume(False)
    assume(counted + units < LIMIT and spent + budget < LIMIT)
    if price.next_cost:
        assume(expected[3] + counted < LIMIT)
    return price, counted, units, cont, budget, expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cumulative_cases(), min_size=1, max_size=25))
def test_lua_cumulative_formula_matches_price(sync_client, batch):
    """lib.lua charge_after / grant_after / units_for_money_after are Price.charge_after
    / round_grant_after / units_for_money_after."""
    sent = [
        [p.first_increment, p.first_cost, p.next_increment, p.next_cost, q, u, int(c), b]
        for p, q, u, c, b, _ in batch
    ]
    for (price, counted, units, cont, budget, expected), got in zip(
        batch, evaluate_cumulative(sync_client, sent), strict=True
    ):
        assert got[:3] == list(expected[:3]), (price, counted, units, cont)
        if price.next_cost == 0 and expected[3] > 2**62:
            assert got[3] == -1  # unlimited; Python answers near the int64 ceiling
        else:
            assert got[3] == expected[3], (price, counted, budget, cont)


def test_cumulative_known_values(sync_client):
    # 60/60 at 0.10 EUR/min: 30 s then 20 s; a grant of 60 s after 30 s; nothing left
    # to pay but the rest of the first minute
    got = evaluate_cumulative(
        sync_client,
        [
            [60, 100_000, 60, 100_000, 0, 30, 0, 0],
            [60, 100_000, 60, 100_000, 30, 20, 0, 0],
            [60, 100_000, 60, 100_000, 30, 60, 0, 100_000],
            [1_048_576, 1_000_000, 1_048_576, 1_000_000, 500_000, 300_000, 0, 0],
        ],
    )
    assert got == [
        [60, 100_000, 60, 0],
        [0, 0, 30, 30],
        [60, 100_000, 90, 90],
        [0, 0, 548_576, 548_576],
    ]
