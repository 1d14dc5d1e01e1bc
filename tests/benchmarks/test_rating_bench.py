"""Rating benchmark: the per-MSCC work of quota_engine.charging.rating on the demo catalog.

Run with ``pytest tests/benchmarks/test_rating_bench.py --benchmark-only
--benchmark-enable`` (or ``make bench``). Skipped in the default run
(``--benchmark-skip``); the plain test at the end always runs and checks that the
benchmarked calls answer what they should.
"""

from __future__ import annotations

import pytest

from quota_engine.catalog import load_demo_catalog
from quota_engine.catalog.timebands import BandClock
from quota_engine.charging.rating import Rater

NOW = 1741338000  # Friday 2025-03-07 10:00 CET
PLAN = "prepaid-basic"


@pytest.fixture(scope="module")
def catalog():
    return load_demo_catalog()


@pytest.fixture(scope="module")
def rater(catalog):
    return Rater(catalog)


def test_bench_price_voice_with_prefix(benchmark, rater):
    benchmark(rater.price, PLAN, "voice", NOW, "4915112345678")


def test_bench_price_data_roaming(benchmark, rater):
    benchmark(rater.price, PLAN, "data", NOW, None, "20801")


def test_bench_price_sms(benchmark, rater):
    benchmark(rater.price, PLAN, "sms", NOW, "447700900123")


def test_bench_find_service_and_price_and_charge(benchmark, catalog, rater):
    """What the handler does per voice MSCC: service lookup, price, charge the usage."""

    def one_mscc():
        service = catalog.find_service("32260@3gpp.org", 100)
        price = rater.price(PLAN, service.id, NOW, "4930123456")
        return price.charge(125), price.units_for_money(5_000_000)

    benchmark(one_mscc)


def test_bench_charge(benchmark, rater):
    price = rater.price(PLAN, "voice", NOW, "33123")
    benchmark(price.charge, 95)


def test_bench_band_cache_miss(benchmark, catalog):
    """The cost of a time-band lookup the two-segment cache cannot answer."""
    clock = BandClock(catalog.time_bands, catalog.holidays, catalog.timezone)
    benchmark(clock.segment, NOW)


def test_bench_split_by_band(benchmark, rater):
    sat = 1741388400  # Saturday 00:00 CET
    benchmark(rater.split_by_band, PLAN, "voice", sat - 1800, sat + 1800, "4930123456")


def test_benchmarked_calls_answer_correctly(catalog, rater):
    assert rater.price(PLAN, "voice", NOW, "4915112345678").destination == "mobile"
    assert rater.price(PLAN, "data", NOW, None, "20801").zone == "eu"
    assert rater.price(PLAN, "sms", NOW, "447700900123").first_cost == 290_000
    assert rater.price(PLAN, "voice", NOW, "33123").charge(95) == (96, 800_000)
    assert (
        BandClock(catalog.time_bands, catalog.holidays, catalog.timezone).band_at(NOW) == "weekday"
    )
    parts = rater.split_by_band(PLAN, "voice", 1741388400 - 1800, 1741388400 + 1800, "4930")
    assert [(p.band, s) for p, s in parts] == [("weekday", 1800), ("weekend", 1800)]
