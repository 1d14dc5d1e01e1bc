"""A request without a destination number: the destination table's ``missing`` rule.

``missing = "default"`` (the default) prices it at the table's ``default`` class;
``missing = "reject"`` gives it no class, so that a tariff whose rates all name a
destination class has no rate for it (the engine answers 5031). Prices are the demo
catalog's (quota_engine/catalog/demo_catalog.toml).
"""

from __future__ import annotations

import pytest

from quota_engine.catalog import DEMO_CATALOG_PATH, load_catalog
from quota_engine.charging.rating import Rater
from quota_engine.documents import read_document
from tests.quota_engine.catalogs import base_catalog, per_minute

PRE = "prepaid-basic"
FRI_10 = 1741338000  # Friday 2025-03-07 10:00 CET (weekday band)


def demo(missing: str | None = None, default: str | None = "international") -> Rater:
    """The demo catalog, its SMS table with ``missing`` (unset: the default) and
    ``default`` (None: no default class, and no SMS rate for it)."""
    data = read_document(DEMO_CATALOG_PATH)
    table = next(t for t in data["destinations"] if t["id"] == "sms-de")
    if missing is not None:
        table["missing"] = missing
    if default is None:
        del table["default"]
        for plan in data["plans"]:
            sms = next(t for t in plan["tariffs"] if t["service"] == "sms")
            sms["rates"] = [r for r in sms["rates"] if r["destination"] != "international"]
    return Rater(load_catalog(data))


@pytest.mark.parametrize("destination", [None, "", "+", "sip:alice@example.org", "49x"])
def test_sms_without_a_number_is_priced_at_the_default_class(destination):
    price = demo().price(PRE, "sms", FRI_10, destination)
    assert price is not None
    assert (price.destination, price.first_cost) == ("international", 290_000)  # 0.29 EUR


@pytest.mark.parametrize("destination", [None, "", "sip:alice@example.org"])
def test_sms_without_a_number_has_no_rate_when_the_table_rejects_it(destination):
    assert demo("reject").price(PRE, "sms", FRI_10, destination) is None


def test_reject_changes_nothing_for_a_number():
    rater = demo("reject")
    assert rater.price(PRE, "sms", FRI_10, "491701234567").first_cost == 90_000
    assert rater.price(PRE, "sms", FRI_10, "447700900123").first_cost == 290_000
    assert rater.destination_class(PRE, "sms", "33123") == "international"  # by default
    assert rater.destination_class(PRE, "sms", "") is None


def test_a_table_without_default_gives_no_class_to_a_missing_number():
    rater = demo(default=None)
    assert rater.price(PRE, "sms", FRI_10, None) is None
    assert rater.price(PRE, "sms", FRI_10, "491701234567").first_cost == 90_000


def test_voice_without_a_number_is_priced_at_the_default_class():
    rater = demo()
    price = rater.price(PRE, "voice", FRI_10, None)
    assert (price.destination, price.first_cost, price.next_cost) == (
        "international",
        250_000,  # 30 s at 0.50 EUR/min
        50_000,  # 6 s
    )
    [(portion, seconds)] = rater.split_by_band(PRE, "voice", FRI_10, FRI_10 + 600, None)
    assert (portion.destination, seconds) == ("international", 600)


def test_a_rate_without_destination_still_prices_a_rejected_number():
    data = base_catalog()
    data["destinations"][0]["missing"] = "reject"
    voice = data["plans"][0]["tariffs"][1]
    voice["rates"].append(per_minute(10_000))  # any destination
    rater = Rater(load_catalog(data))
    price = rater.price("basic", "voice", FRI_10, None)
    assert (price.destination, price.rate) == (None, 10_000)
    assert rater.price("basic", "voice", FRI_10, "33123").rate == 500_000  # international


def test_a_tariff_that_does_not_price_by_destination_records_no_class():
    # data has no destination rates: its one-table default must not label its records
    data = base_catalog()
    rater = Rater(load_catalog(data))
    assert rater.price("basic", "data", FRI_10, None).destination is None
    assert rater.price("basic", "sms", FRI_10, None).destination is None
    assert rater.price("basic", "voice", FRI_10, None).destination == "international"
