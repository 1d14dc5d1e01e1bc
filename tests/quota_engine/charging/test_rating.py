"""Rating: hand-computed prices and charges in micro-units.

The demo catalog (quota_engine/catalog/demo_catalog.toml, time zone Europe/Berlin) gives the
examples; small catalogs built here cover prefix, zone, tier and band precedence.
"""

from __future__ import annotations

import pytest

from quota_engine.catalog import load_catalog, load_demo_catalog
from quota_engine.charging.rating import MAX_UNITS, Price, Rater
from tests.quota_engine.catalogs import MIB, base_catalog, per_minute

PRE, POST = "prepaid-basic", "postpaid-standard"
# Times (Europe/Berlin, CET = UTC+1 in March)
FRI_10 = 1741338000  # Friday 2025-03-07 10:00 CET
FRI_2359_59 = 1741388399  # Friday 2025-03-07 23:59:59 CET
SAT_0000 = 1741388400  # Saturday 2025-03-08 00:00:00 CET: the weekend band starts
XMAS_NOON = 1766660400  # Thursday 2025-12-25 12:00 CET, a holiday in the demo catalog
GIB = 1024 * MIB


@pytest.fixture(scope="module")
def rater() -> Rater:
    return Rater(load_demo_catalog())


def test_a_time_is_what_its_name_says(rater):
    assert rater.band_at(FRI_10) == "weekday"
    assert rater.band_at(FRI_2359_59) == "weekday"
    assert rater.band_at(SAT_0000) == "weekend"
    assert rater.band_at(XMAS_NOON) == "weekend"  # Thursday, but a holiday


# ------------------------------------------------------------------ voice


def test_voice_national_60_60(rater):
    price = rater.price(PRE, "voice", FRI_10, "4930123456")
    assert (price.destination, price.zone, price.band) == ("national", "home", "weekday")
    assert (price.rate, price.rate_per, price.first_increment, price.next_increment) == (
        100_000,
        60,
        60,
        60,
    )
    # one minute = 0.10 EUR = 100_000 micro-units
    assert (price.first_cost, price.next_cost) == (100_000, 100_000)
    assert price.charge(0) == (0, 0)
    assert price.charge(1) == (60, 100_000)
    assert price.charge(60) == (60, 100_000)
    assert price.charge(61) == (120, 200_000)
    assert price.charge(125) == (180, 300_000)
    assert price.charge(3600) == (3600, 6_000_000)


def test_voice_international_30_6(rater):
    price = rater.price(PRE, "voice", FRI_10, "33123456789")
    assert price.destination == "international"
    assert (price.first_increment, price.next_increment) == (30, 6)
    # 30 s of 0.50 EUR/min = 0.25 EUR; 6 s = 0.05 EUR
    assert (price.first_cost, price.next_cost) == (250_000, 50_000)
    assert price.charge(10) == (30, 250_000)
    assert price.charge(30) == (30, 250_000)
    assert price.charge(31) == (36, 300_000)
    # 95 s: 30 + ceil(65 / 6) = 11 increments of 6 s -> 96 s, 0.25 + 11 * 0.05 = 0.80 EUR
    assert price.charge(95) == (96, 800_000)
    assert price.charge(96) == (96, 800_000)


def test_voice_longest_prefix_wins(rater):
    mobile = rater.price(PRE, "voice", FRI_10, "4915112345678")
    assert (mobile.destination, mobile.first_cost) == ("mobile", 150_000)
    assert rater.price(PRE, "voice", FRI_10, "+4917012345").destination == "mobile"
    assert rater.price(PRE, "voice", FRI_10, "4918012345").destination == "national"
    assert rater.price(PRE, "voice", FRI_10, "491").destination == "national"
    assert rater.price(PRE, "voice", FRI_10, "4").destination == "international"


def test_voice_weekend_and_holiday_are_half_price_for_national_only(rater):
    for ts in (SAT_0000, XMAS_NOON):
        national = rater.price(PRE, "voice", ts, "4930123456")
        assert (national.band, national.rate, national.first_cost) == ("weekend", 50_000, 50_000)
        mobile = rater.price(PRE, "voice", ts, "4915112345678")
        assert (mobile.band, mobile.first_cost) == ("weekend", 150_000)
    before = rater.price(PRE, "voice", FRI_2359_59, "4930123456")
    assert (before.band, before.first_cost) == ("weekday", 100_000)


# ------------------------------------------------------------------ SMS


def test_sms_national_vs_international(rater):
    national = rater.price(PRE, "sms", FRI_10, "4915112345678")  # sms table: 49 -> national
    assert (national.destination, national.charge(1)) == ("national", (1, 90_000))
    assert national.charge(3) == (3, 270_000)
    international = rater.price(PRE, "sms", FRI_10, "447700900123")
    assert (international.destination, international.charge(1)) == ("international", (1, 290_000))
    assert international.unit == "events"


# ------------------------------------------------------------------ data and roaming


def test_data_per_mib_blocks(rater):
    price = rater.price(PRE, "data", FRI_10)
    assert (price.zone, price.unit) == ("home", "octets")
    assert (price.first_cost, price.next_cost) == (1_000_000, 1_000_000)
    assert price.charge(1) == (MIB, 1_000_000)
    assert price.charge(MIB) == (MIB, 1_000_000)
    assert price.charge(MIB + 1) == (2 * MIB, 2_000_000)
    assert price.charge(5 * MIB) == (5 * MIB, 5_000_000)
    assert price.charge(GIB) == (GIB, 1_024_000_000)
    postpaid = rater.price(POST, "data", FRI_10)
    assert postpaid.charge(3 * MIB - 5) == (3 * MIB, 1_500_000)


@pytest.mark.parametrize(
    ("visited", "zone", "cost_per_mib"),
    [
        (None, "home", 1_000_000),
        ("", "home", 1_000_000),
        ("00101", "home", 1_000_000),  # the home network itself
        ("20801", "eu", 2_000_000),
        ("262011", "eu", 2_000_000),
        ("31026", "world", 10_000_000),
        ("44010", "world", 10_000_000),
    ],
)
def test_data_roaming_zones(rater, visited, zone, cost_per_mib):
    price = rater.price(PRE, "data", FRI_10, None, visited)
    assert price.zone == zone
    assert price.charge(2 * MIB) == (2 * MIB, 2 * cost_per_mib)


def test_zone_precedence():
    data = base_catalog()
    data["zones"] = [
        {"id": "exact", "mcc_mnc": ["26201"]},
        {"id": "short", "mcc_mnc": ["262*"]},
        {"id": "long", "mcc_mnc": ["2620*"]},
    ]
    data["plans"][0]["tariffs"][0]["rates"][1]["zone"] = "long"
    rater = Rater(load_catalog(data))
    assert rater.zone_of("26201") == "exact"
    assert rater.zone_of("26202") == "long"
    assert rater.zone_of("26210") == "short"
    assert rater.zone_of("310260") is None  # no "*" zone: unknown network, no zone
    assert rater.zone_of("00101") == "home"
    # data: a zone-less rate (1 EUR) and a "long" zone rate (2 EUR)
    assert rater.price("basic", "data", 0, None, "26202").first_cost == 2_000_000
    unknown = rater.price("basic", "data", 0, None, "310260")
    assert (unknown.zone, unknown.first_cost) == (None, 1_000_000)


def test_prefix_table_longest_match_many_lengths():
    data = base_catalog()
    data["destinations"][0] = {
        "id": "de",
        "prefixes": {
            "1": "nanp",
            "1242": "bahamas",
            "44": "uk",
            "447": "uk-mobile",
            "4478": "uk-special",
            "49": "national",
            "4915": "mobile",
            "4915123456789": "premium",
        },
    }
    data["plans"][0]["tariffs"][1]["rates"] = [
        {"destination": cls, **per_minute(rate)}
        for cls, rate in [
            ("nanp", 1),
            ("bahamas", 2),
            ("uk", 3),
            ("uk-mobile", 4),
            ("uk-special", 5),
            ("national", 6),
            ("mobile", 7),
            ("premium", 8),
        ]
    ]
    rater = Rater(load_catalog(data))
    expected = {
        "12125550100": "nanp",
        "12425550100": "bahamas",
        "441632960000": "uk",
        "447912345678": "uk-mobile",
        "447812345678": "uk-special",
        "4930123": "national",
        "4915999": "mobile",
        "4915123456789": "premium",
        "49151234567890": "premium",
        "33123456": None,  # no prefix and no default
        "": None,
        "sip:alice@example.org": None,  # not digits
        "+": None,
    }
    for number, cls in expected.items():
        assert rater.destination_class("basic", "voice", number) == cls, number
    assert rater.price("basic", "voice", 0, "447812345678").rate == 5
    assert rater.price("basic", "voice", 0, "33123456") is None  # no class: no rate


# ------------------------------------------------------------------ tiers


def test_tiers_follow_period_usage():
    data = base_catalog()
    data["plans"][0]["tariffs"][0]["rates"][0]["tiers"] = [
        {"from_units": GIB, "rate": 500_000, "rate_per": MIB},
        {"from_units": 5 * GIB, "rate": 0, "rate_per": 1},
    ]
    rater = Rater(load_catalog(data))

    def price(usage):
        return rater.price("basic", "data", 0, period_usage=usage)

    assert (price(0).tier_index, price(0).first_cost) == (-1, 1_000_000)
    assert (price(GIB - 1).tier_index, price(GIB - 1).first_cost) == (-1, 1_000_000)
    assert (price(GIB).tier_index, price(GIB).first_cost) == (0, 500_000)
    assert price(GIB).charge(3 * MIB) == (3 * MIB, 1_500_000)
    assert (price(5 * GIB).tier_index, price(5 * GIB).charge(GIB)) == (1, (GIB, 0))
    # the increments are the rate's, whatever the tier
    assert price(5 * GIB).round_grant(1) == MIB
    # roaming has its own rate without tiers
    roaming = rater.price("basic", "data", 0, None, "20801", period_usage=5 * GIB)
    assert roaming.first_cost == 2_000_000
    # the usage range each price holds for (the scripts check it; -1: no upper bound)
    assert (price(GIB - 1).usage_from, price(GIB - 1).usage_until) == (0, GIB)
    assert (price(GIB).usage_from, price(GIB).usage_until) == (GIB, 5 * GIB)
    assert (price(9 * GIB).usage_from, price(9 * GIB).usage_until) == (5 * GIB, -1)
    assert (roaming.usage_from, roaming.usage_until) == (0, -1)


# ------------------------------------------------------------------ zero-rated, no tariff


def test_zero_rated(rater):
    price = rater.price(PRE, "portal", FRI_10, None, "31026")
    assert price.zero_rated
    assert (price.first_cost, price.next_cost, price.rate_index) == (0, 0, -1)
    assert price.charge(10 * GIB) == (10 * GIB, 0)
    assert price.units_for_money(0) == MAX_UNITS
    assert price.round_grant(12345) == 12345
    assert not rater.price(PRE, "data", FRI_10).zero_rated


def test_no_tariff_is_none(rater):
    assert rater.price("no-such-plan", "data", FRI_10) is None
    assert rater.price(PRE, "no-such-service", FRI_10) is None
    data = base_catalog()
    data["plans"][0]["tariffs"][1]["rates"].pop(2)  # no international voice rate
    del data["plans"][0]["tariffs"][2]  # no SMS tariff at all
    strict = Rater(load_catalog(data))
    assert strict.price("basic", "voice", 0, "33123456") is None
    assert strict.price("basic", "voice", 0) is None  # no number: no class
    assert strict.price("basic", "sms", 0, "4930123") is None
    assert strict.split_by_band("basic", "voice", 0, 600, "33123456") is None


def test_most_specific_rate_wins():
    data = base_catalog()  # UTC; peak Mon-Fri 08-20
    voice = data["plans"][0]["tariffs"][1]["rates"]
    voice.append({"destination": "national", "band": "peak", "zone": "eu", **per_minute(7)})
    rater = Rater(load_catalog(data))
    mon_9 = 1741593600 + 3600  # Monday 2025-03-10 09:00 UTC
    assert rater.price("basic", "voice", mon_9, "4930", "20801").rate == 7  # 3 conditions
    assert rater.price("basic", "voice", mon_9, "4930").rate == 100_000  # 2 conditions
    assert rater.price("basic", "voice", mon_9 - 2 * 3600, "4930").rate == 50_000  # 07:00
    record = rater.price("basic", "voice", mon_9, "4930", "20801")
    assert (record.plan_id, record.service_id, record.tariff_index, record.rate_index) == (
        "basic",
        "voice",
        1,
        3,
    )
    assert record.to_dict()["zone"] == "eu"


# ------------------------------------------------------------------ Price arithmetic


def test_price_rounds_each_increment_up_once():
    # 1 EUR per minute billed per second: 1_000_000 / 60 = 16666.67 -> 16667 per second
    price = Price(1_000_000, 60, 1, 1)
    assert (price.first_cost, price.next_cost) == (16_667, 16_667)
    assert price.charge(60) == (60, 1_000_020)  # documented: 60 * 16667, not 1_000_000
    # 1 EUR per MiB billed per KiB: 976.5625 -> 977 per KiB
    kib = Price(1_000_000, MIB, 1024, 1024)
    assert kib.charge(1025) == (2048, 1954)


def test_units_for_money(rater):
    data = rater.price(PRE, "data", FRI_10)
    assert data.units_for_money(999_999) == 0
    assert data.units_for_money(1_000_000) == MIB
    assert data.units_for_money(3_500_000) == 3 * MIB
    assert data.units_for_money(-5) == 0
    intl = rater.price(PRE, "voice", FRI_10, "33123")
    assert intl.units_for_money(249_999) == 0
    assert intl.units_for_money(250_000) == 30
    # (1_000_000 - 250_000) // 50_000 = 15 increments of 6 s after the first 30 s
    assert intl.units_for_money(1_000_000) == 120
    assert intl.units_for_money(1_049_999) == 120
    assert intl.charge(120) == (120, 1_000_000)
    # a continuation buys only next increments
    assert intl.units_for_money(149_999, continuation=True) == 12
    assert intl.units_for_money(49_999, continuation=True) == 0


def test_round_grant(rater):
    intl = rater.price(PRE, "voice", FRI_10, "33123")
    assert [intl.round_grant(u) for u in (-1, 0, 1, 30, 31, 36, 37)] == [0, 0, 30, 30, 36, 36, 42]
    assert intl.round_grant(7, continuation=True) == 12


def test_continuation_charges_next_increments_only():
    price = Price(500_000, 60, 30, 6)
    assert price.charge(0, continuation=True) == (0, 0)
    assert price.charge(1, continuation=True) == (6, 50_000)
    assert price.charge(13, continuation=True) == (18, 150_000)


def test_price_rejects_bad_input():
    with pytest.raises(ValueError):
        Price(1, 0, 1, 1)
    with pytest.raises(ValueError):
        Price(1, 1, 0, 1)
    with pytest.raises(ValueError):
        Price(-1, 1, 1, 1)
    with pytest.raises(TypeError):
        Price(0.5, 1, 1, 1)
    with pytest.raises(ValueError):
        Price(1, 1, 1, 1).charge(-1)
    with pytest.raises(OverflowError):
        Price(1, 1, 1, 1).charge(2**63)  # not an int64
    with pytest.raises(OverflowError):
        Price(1, 1, 1, 2**62).charge(2**62 + 2)  # billed would pass 2**63 - 1
    with pytest.raises(OverflowError):
        Price(4, 1, 1, 1).charge(2**62)  # cost would pass 2**63 - 1
    with pytest.raises(OverflowError):
        Price(10**12, 1, 10**12, 10**12)  # one increment costs more than 2**63 - 1


def test_price_is_read_only():
    price = Price(1, 1, 1, 1)
    with pytest.raises(AttributeError):
        price.first_cost = 0


# ------------------------------------------------------------------ split_by_band


def test_split_national_call_across_the_weekend_boundary(rater):
    # Friday 23:59:30 -> Saturday 00:01:00: 30 s weekday, 60 s weekend
    parts = rater.split_by_band(PRE, "voice", SAT_0000 - 30, SAT_0000 + 60, "4930123456")
    assert [(p.band, p.rate, seconds) for p, seconds in parts] == [
        ("weekday", 100_000, 30),
        ("weekend", 50_000, 60),
    ]
    (first, s0), (second, s1) = parts
    assert first.charge(s0) == (60, 100_000)  # first increment once
    assert second.charge(s1, continuation=True) == (60, 50_000)


def test_split_keeps_one_portion_when_the_rate_does_not_change(rater):
    # international has no band condition: one portion, one rounding
    parts = rater.split_by_band(PRE, "voice", SAT_0000 - 30, SAT_0000 + 60, "33123")
    assert [(p.band, seconds) for p, seconds in parts] == [("weekday", 90)]
    assert parts[0][0].charge(90) == (90, 750_000)  # 30 s + 10 * 6 s: 0.25 + 0.50 EUR


def test_split_over_several_bands():
    rater = Rater(load_catalog(base_catalog()))  # UTC; national: peak 100_000, else 50_000
    mon_0759 = 1741593600 - 60  # Monday 2025-03-10 07:59:00 UTC
    end = mon_0759 + 60 + 12 * 3600 + 30  # Monday 20:00:30
    parts = rater.split_by_band("basic", "voice", mon_0759, end, "4930")
    assert [(p.band, p.rate, s) for p, s in parts] == [
        ("offpeak", 50_000, 60),
        ("peak", 100_000, 12 * 3600),
        ("offpeak", 50_000, 30),
    ]
    assert sum(s for _, s in parts) == end - mon_0759


def test_split_merges_bands_with_the_same_rate_across_midnight():
    rater = Rater(load_catalog(base_catalog()))
    mon_2300 = 1741593600 + 15 * 3600  # Monday 23:00 UTC -> Tuesday 07:00 UTC: all offpeak
    parts = rater.split_by_band("basic", "voice", mon_2300, mon_2300 + 8 * 3600, "4930")
    assert [(p.band, s) for p, s in parts] == [("offpeak", 8 * 3600)]


def test_split_edge_cases(rater):
    [(price, seconds)] = rater.split_by_band(PRE, "voice", FRI_10, FRI_10, "4930")
    assert (price.band, seconds) == ("weekday", 0)
    with pytest.raises(ValueError):
        rater.split_by_band(PRE, "voice", FRI_10, FRI_10 - 1, "4930")
    assert rater.split_by_band("nope", "voice", FRI_10, FRI_10 + 5) is None
    # a catalog without time bands
    data = base_catalog()
    data["time_bands"] = []
    data["plans"][0]["tariffs"][1]["rates"].pop(0)
    plain = Rater(load_catalog(data))
    [(price, seconds)] = plain.split_by_band("basic", "voice", 0, 7 * 86400, "4930")
    assert (price.band, price.rate, seconds) == (None, 50_000, 7 * 86400)


def test_rating_cache_does_not_leak_between_times(rater):
    # alternate far-apart times: three segments, more than the two-segment cache holds
    for _ in range(3):
        assert rater.price(PRE, "voice", SAT_0000, "4930").band == "weekend"
        assert rater.price(PRE, "voice", FRI_2359_59, "4930").band == "weekday"
        assert rater.price(PRE, "voice", XMAS_NOON, "4930").band == "weekend"
