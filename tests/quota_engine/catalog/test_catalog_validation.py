"""Every catalog validation error, with the exact path text it names.

Each case mutates a valid catalog (tests/quota_engine/catalogs.py) and lists the
problems ``load_catalog`` must report, all of them and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from quota_engine.catalog import CatalogError, load_catalog
from tests.quota_engine.catalogs import base_catalog, per_mib, per_minute

Mutation = Callable[[dict], object]

P = "plans[0]"
DATA = f"{P}.tariffs[0]"
VOICE = f"{P}.tariffs[1]"
SMS = f"{P}.tariffs[2]"
ALLOWANCE = f"{P}.allowances[0]"


def _walk(data: dict, path: tuple):
    for key in path:
        data = data[key]
    return data


def set_(*path_and_value) -> Mutation:
    *path, value = path_and_value
    return lambda data: _walk(data, tuple(path[:-1])).__setitem__(path[-1], value)


def delete(*path) -> Mutation:
    return lambda data: _walk(data, path[:-1]).pop(path[-1])


def append(*path_and_value) -> Mutation:
    *path, value = path_and_value
    return lambda data: _walk(data, tuple(path)).append(value)


def both(*mutations: Mutation) -> Mutation:
    return lambda data: [m(data) for m in mutations]


def service(**fields) -> dict:
    return {"id": "x", "context": "ctx", "unit": "events", **fields}


def band(**fields) -> dict:
    # the base catalog's bands cover the whole week but no holiday
    return {"id": "x", "days": ["holiday"], "start": "10:00", "end": "12:00", **fields}


def table(**fields) -> dict:
    return {"id": "t2", "prefixes": {"33": "france"}, **fields}


ONE_PER_EVENT = {"rate": 1, "rate_per": 1, "first_increment": 1, "next_increment": 1}

CASES: list[tuple[str, Mutation | None, list[str]]] = [
    # ---- top level
    ("not-a-table", None, ["catalog: must be a table"]),
    ("unknown-top-key", set_("colour", "red"), ["colour: unknown key"]),
    ("version-missing", delete("version"), ["version: is required"]),
    ("version-empty", set_("version", ""), ["version: must be a non-empty string"]),
    ("version-not-string", set_("version", 3), ["version: must be a non-empty string"]),
    ("currency-missing", delete("currency"), ["currency: is required"]),
    (
        "currency-lowercase",
        set_("currency", "eur"),
        ["currency: must be an ISO 4217 code (three capital letters)"],
    ),
    ("minor-digits-7", set_("minor_digits", 7), ["minor_digits: must be an integer from 0 to 6"]),
    (
        "minor-digits-str",
        set_("minor_digits", "2"),
        ["minor_digits: must be an integer from 0 to 6"],
    ),
    (
        "timezone-unknown",
        set_("timezone", "Mars/Olympus"),
        ['timezone: unknown time zone "Mars/Olympus"'],
    ),
    (
        "timezone-not-string",
        set_("timezone", 1),
        ['timezone: must be an IANA time zone name such as "Europe/Berlin"'],
    ),
    ("holidays-not-list", set_("holidays", "2025-12-25"), ["holidays: must be a list"]),
    (
        "holiday-bad-month",
        set_("holidays", ["2025-13-01"]),
        ['holidays[0]: must be a date "YYYY-MM-DD"'],
    ),
    (
        "holiday-week-date",
        set_("holidays", ["2025-W01-1"]),
        ['holidays[0]: must be a date "YYYY-MM-DD"'],
    ),
    (
        "holiday-duplicate",
        append("holidays", "2025-12-25"),
        ["holidays[1]: duplicate date 2025-12-25 (also holidays[0])"],
    ),
    (
        "home-short",
        set_("home_mcc_mnc", ["0010"]),
        ["home_mcc_mnc[0]: must be an MCC-MNC of 5 or 6 digits"],
    ),
    (
        "home-wildcard",
        set_("home_mcc_mnc", ["001*"]),
        ["home_mcc_mnc[0]: must be an MCC-MNC of 5 or 6 digits"],
    ),
    (
        "home-duplicate",
        append("home_mcc_mnc", "00101"),
        ['home_mcc_mnc[1]: duplicate MCC-MNC "00101"'],
    ),
    # ---- services
    (
        "services-not-list",
        set_("services", {}),
        [
            "services: must be a list",
            f'{DATA}.service: unknown service "data"',
            f'{VOICE}.service: unknown service "voice"',
            f'{SMS}.service: unknown service "sms"',
            f'{ALLOWANCE}.services[0]: unknown service "data"',
        ],
    ),
    ("service-not-table", append("services", "x"), ["services[3]: must be a table"]),
    (
        "service-unknown-key",
        append("services", service(colour=1)),
        ["services[3].colour: unknown key"],
    ),
    (
        "service-id-missing",
        append("services", {"context": "c", "unit": "events"}),
        ["services[3].id: is required"],
    ),
    (
        "service-id-duplicate",
        append("services", service(id="data")),
        ['services[3].id: duplicate id "data" (also services[0])'],
    ),
    (
        "service-context-missing",
        append("services", {"id": "x", "unit": "events"}),
        ["services[3].context: is required"],
    ),
    (
        "service-unit-missing",
        append("services", {"id": "x", "context": "c"}),
        ["services[3].unit: is required"],
    ),
    (
        "service-unit-unknown",
        append("services", service(unit="bytes")),
        ['services[3].unit: must be one of "octets", "seconds", "events"'],
    ),
    (
        "service-rg-not-list",
        append("services", service(rating_groups=7)),
        ["services[3].rating_groups: must be a list"],
    ),
    (
        "service-rg-negative",
        append("services", service(rating_groups=[-1])),
        ["services[3].rating_groups[0]: must be an integer from 0 to 4294967295"],
    ),
    (
        "service-rg-bool",
        append("services", service(rating_groups=[True])),
        ["services[3].rating_groups[0]: must be an integer from 0 to 4294967295"],
    ),
    (
        "service-rg-too-big",
        append("services", service(rating_groups=[2**32])),
        ["services[3].rating_groups[0]: must be an integer from 0 to 4294967295"],
    ),
    (
        "service-rg-duplicate",
        append("services", service(rating_groups=[11, 11])),
        ["services[3].rating_groups[1]: duplicate rating group 11"],
    ),
    (
        "service-si-duplicate",
        append("services", service(service_identifiers=[4, 4])),
        ["services[3].service_identifiers[1]: duplicate service identifier 4"],
    ),
    (
        "service-rg-taken",
        append("services", service(context="32251@3gpp.org", rating_groups=[10])),
        [
            'services[3].rating_groups[0]: rating group 10 of context "32251@3gpp.org" is already used by services[0]'
        ],
    ),
    (
        "service-si-taken",
        append("services", service(context="32274@3gpp.org", service_identifiers=[3])),
        [
            'services[3].service_identifiers[0]: service identifier 3 of context "32274@3gpp.org" is already used by services[2]'
        ],
    ),
    (
        "service-second-catch-all",
        both(append("services", service(id="a")), append("services", service(id="b"))),
        [
            'services[4]: a second catch-all service (no rating_groups or service_identifiers) for context "ctx" (also services[3])'
        ],
    ),
    # ---- time bands
    ("band-not-table", append("time_bands", 5), ["time_bands[3]: must be a table"]),
    (
        "band-unknown-key",
        append("time_bands", band(colour=1)),
        ["time_bands[3].colour: unknown key"],
    ),
    (
        "band-id-duplicate",
        append("time_bands", band(id="peak")),
        ['time_bands[3].id: duplicate id "peak" (also time_bands[0])'],
    ),
    (
        "band-days-missing",
        append("time_bands", {"id": "x", "start": "10:00", "end": "12:00"}),
        ["time_bands[3].days: is required"],
    ),
    (
        "band-days-empty",
        append("time_bands", band(days=[])),
        ["time_bands[3].days: must not be empty"],
    ),
    (
        "band-day-unknown",
        append("time_bands", band(days=["saturday"])),
        ["time_bands[3].days[0]: must be one of mon, tue, wed, thu, fri, sat, sun, holiday"],
    ),
    (
        "band-day-duplicate",
        append("time_bands", band(days=["holiday", "holiday"])),
        ['time_bands[3].days[1]: duplicate day "holiday"'],
    ),
    (
        "band-start-missing",
        append("time_bands", {"id": "x", "days": ["sat"], "end": "12:00"}),
        ["time_bands[3].start: is required"],
    ),
    (
        "band-end-missing",
        append("time_bands", {"id": "x", "days": ["sat"], "start": "10:00"}),
        ["time_bands[3].end: is required"],
    ),
    (
        "band-start-one-digit-hour",
        append("time_bands", band(start="8:00")),
        ['time_bands[3].start: must be a time "HH:MM" (00:00 to 23:59)'],
    ),
    (
        "band-start-24",
        append("time_bands", band(start="24:00")),
        ['time_bands[3].start: must be a time "HH:MM" (00:00 to 23:59)'],
    ),
    (
        "band-start-minute-60",
        append("time_bands", band(start="10:60")),
        ['time_bands[3].start: must be a time "HH:MM" (00:00 to 23:59)'],
    ),
    (
        "band-end-24-01",
        append("time_bands", band(end="24:01")),
        ['time_bands[3].end: must be a time "HH:MM" (00:01 to 24:00)'],
    ),
    (
        "band-end-midnight",
        append("time_bands", band(end="00:00")),
        ['time_bands[3].end: must be a time "HH:MM" (00:01 to 24:00)'],
    ),
    (
        "band-end-before-start",
        append("time_bands", band(start="12:00", end="10:00")),
        ["time_bands[3].end: must be after start (12:00)"],
    ),
    (
        "band-overlap",
        append("time_bands", band(days=["sat"])),
        ["time_bands[3]: overlaps time_bands[2] on sat 10:00-12:00"],
    ),
    (
        "band-overlap-holiday",
        both(
            append("time_bands", band()),
            append("time_bands", band(id="y", days=["holiday"], start="11:00", end="13:00")),
        ),
        ["time_bands[4]: overlaps time_bands[3] on holiday 11:00-12:00"],
    ),
    (
        "band-window-overlap",
        append(
            "time_bands",
            {"id": "x", "windows": [{"days": ["mon"], "start": "07:00", "end": "09:00"}]},
        ),
        ["time_bands[3].windows[0]: overlaps time_bands[0] on mon 08:00-09:00"],
    ),
    (
        "band-windows-overlap-each-other",
        append(
            "time_bands",
            {
                "id": "x",
                "windows": [
                    {"days": ["holiday"], "start": "07:00", "end": "09:00"},
                    {"days": ["holiday"], "start": "08:30", "end": "10:00"},
                ],
            },
        ),
        ["time_bands[3].windows[1]: overlaps time_bands[3].windows[0] on holiday 08:30-09:00"],
    ),
    (
        "band-overlap-with-offpeak-window",
        append("time_bands", band(days=["fri"], start="19:00", end="21:00")),
        ["time_bands[3]: overlaps time_bands[0] on fri 19:00-20:00"],
    ),
    (
        "band-both-forms",
        append("time_bands", band(windows=[])),
        ["time_bands[3]: give either windows or days/start/end, not both"],
    ),
    (
        "band-windows-empty",
        append("time_bands", {"id": "x", "windows": []}),
        ["time_bands[3].windows: must not be empty"],
    ),
    (
        "band-window-unknown-key",
        append("time_bands", {"id": "x", "windows": [band(id=None)]}),
        ["time_bands[3].windows[0].id: unknown key"],
    ),
    (
        "band-week-not-covered",
        both(delete("time_bands", 1), delete("plans", 0, "tariffs", 1, "rates", 1)),
        [
            f"{VOICE}.rates[0].band: the time bands leave mon 00:00-08:00 uncovered and no rate "
            "without band matches this rate's destination and zone"
        ],
    ),
    (
        "band-week-not-covered-fallback-for-other-destination",
        both(
            delete("time_bands", 1),
            set_("plans", 0, "tariffs", 1, "rates", 1, "destination", "mobile"),
        ),
        [
            f"{VOICE}.rates[0].band: the time bands leave mon 00:00-08:00 uncovered and no rate "
            "without band matches this rate's destination and zone"
        ],
    ),
    # ---- zones
    ("zone-not-table", append("zones", []), ["zones[2]: must be a table"]),
    (
        "zone-unknown-key",
        append("zones", {"id": "x", "mcc_mnc": ["310*"], "name": "x"}),
        ["zones[2].name: unknown key"],
    ),
    (
        "zone-id-duplicate",
        append("zones", {"id": "eu", "mcc_mnc": ["310*"]}),
        ['zones[2].id: duplicate id "eu" (also zones[0])'],
    ),
    (
        "zone-id-home",
        append("zones", {"id": "home", "mcc_mnc": ["310*"]}),
        ['zones[2].id: "home" is reserved (list home networks in home_mcc_mnc)'],
    ),
    ("zone-mcc-mnc-missing", append("zones", {"id": "x"}), ["zones[2].mcc_mnc: is required"]),
    (
        "zone-mcc-mnc-empty",
        append("zones", {"id": "x", "mcc_mnc": []}),
        ["zones[2].mcc_mnc: must not be empty"],
    ),
    *[
        (
            f"zone-pattern-{pattern}",
            append("zones", {"id": "x", "mcc_mnc": [pattern]}),
            [
                'zones[2].mcc_mnc[0]: must be 5 or 6 digits, or digits followed by "*" '
                '(e.g. "208*"; "*" alone matches every network)'
            ],
        )
        for pattern in ("20*8", "2080", "2080123", "abcde", "208**", "")
    ],
    (
        "zone-pattern-taken",
        append("zones", {"id": "x", "mcc_mnc": ["208*"]}),
        ['zones[2].mcc_mnc[0]: "208*" is already in zones[0]'],
    ),
    (
        "zone-pattern-home",
        append("zones", {"id": "x", "mcc_mnc": ["00101"]}),
        ['zones[2].mcc_mnc[0]: "00101" is a home network (home_mcc_mnc)'],
    ),
    # ---- destinations
    ("table-not-table", append("destinations", 1), ["destinations[1]: must be a table"]),
    (
        "table-unknown-key",
        append("destinations", table(name="x")),
        ["destinations[1].name: unknown key"],
    ),
    (
        "table-id-duplicate",
        append("destinations", table(id="de")),
        ['destinations[1].id: duplicate id "de" (also destinations[0])'],
    ),
    (
        "table-prefixes-missing",
        append("destinations", {"id": "t2"}),
        ["destinations[1].prefixes: is required"],
    ),
    (
        "table-prefixes-list",
        append("destinations", table(prefixes=["33"])),
        ['destinations[1].prefixes: must be a table of "prefix" = "class"'],
    ),
    (
        "table-prefixes-empty",
        append("destinations", table(prefixes={})),
        ["destinations[1].prefixes: must not be empty (or set a default)"],
    ),
    (
        "table-prefix-letters",
        append("destinations", table(prefixes={"33a": "france"})),
        ['destinations[1].prefixes["33a"]: prefix must be 1 to 15 digits'],
    ),
    (
        "table-prefix-plus",
        append("destinations", table(prefixes={"+33": "france"})),
        ['destinations[1].prefixes["+33"]: prefix must be 1 to 15 digits'],
    ),
    (
        "table-prefix-too-long",
        append("destinations", table(prefixes={"1" * 16: "long"})),
        [f'destinations[1].prefixes["{"1" * 16}"]: prefix must be 1 to 15 digits'],
    ),
    (
        "table-class-empty",
        append("destinations", table(prefixes={"33": ""})),
        ['destinations[1].prefixes["33"]: class must be a non-empty string'],
    ),
    (
        "table-default-empty",
        append("destinations", table(default="")),
        ["destinations[1].default: must be a non-empty string"],
    ),
    (
        "table-missing-unknown",
        append("destinations", table(missing="free")),
        ['destinations[1].missing: must be one of "default", "reject"'],
    ),
    (
        "table-missing-default-without-class",
        append("destinations", table(missing="default")),
        ['destinations[1].missing: "default" needs a default class (set default)'],
    ),
    # ---- plans
    ("plans-not-list", set_("plans", {"id": "basic"}), ["plans: must be a list"]),
    ("plan-not-table", append("plans", "basic"), ["plans[1]: must be a table"]),
    ("plan-unknown-key", set_("plans", 0, "price", 5), [f"{P}.price: unknown key"]),
    ("plan-id-missing", delete("plans", 0, "id"), [f"{P}.id: is required"]),
    (
        "plan-id-duplicate",
        append("plans", {"id": "basic"}),
        ['plans[1].id: duplicate id "basic" (also plans[0])'],
    ),
    ("plan-name-empty", set_("plans", 0, "name", " "), [f"{P}.name: must be a non-empty string"]),
    (
        "plan-type",
        set_("plans", 0, "type", "hybrid"),
        [f'{P}.type: must be one of "prepaid", "postpaid"'],
    ),
    (
        "plan-fee-negative",
        set_("plans", 0, "recurring_fee", -1),
        [f"{P}.recurring_fee: must be a non-negative integer (at most 1000000000000)"],
    ),
    (
        "plan-fee-float",
        set_("plans", 0, "recurring_fee", 20.5),
        [f"{P}.recurring_fee: must be a non-negative integer (at most 1000000000000)"],
    ),
    (
        "plan-tax-empty",
        set_("plans", 0, "tax_category", ""),
        [f"{P}.tax_category: must be a non-empty string"],
    ),
    (
        "plan-fua-unknown",
        set_("plans", 0, "final_unit_action", "block"),
        [f'{P}.final_unit_action: must be one of "terminate", "redirect"'],
    ),
    (
        "plan-redirect-without-address",
        set_("plans", 0, "final_unit_action", "redirect"),
        [f'{P}.redirect_address: is required when final_unit_action is "redirect"'],
    ),
    (
        "plan-address-without-redirect",
        set_("plans", 0, "redirect_address", "http://top.up/"),
        [f'{P}.redirect_address: only allowed when final_unit_action is "redirect"'],
    ),
    ("plan-tariffs-not-list", set_("plans", 0, "tariffs", {}), [f"{P}.tariffs: must be a list"]),
    # ---- tariffs
    (
        "tariff-not-table",
        append("plans", 0, "tariffs", "data"),
        [f"{P}.tariffs[3]: must be a table"],
    ),
    (
        "tariff-unknown-key",
        set_("plans", 0, "tariffs", 2, "band", "peak"),
        [f"{SMS}.band: unknown key"],
    ),
    (
        "tariff-service-missing",
        append("plans", 0, "tariffs", {"zero_rated": True}),
        [f"{P}.tariffs[3].service: is required"],
    ),
    (
        "tariff-service-unknown",
        append("plans", 0, "tariffs", {"service": "video", "zero_rated": True}),
        [f'{P}.tariffs[3].service: unknown service "video"'],
    ),
    (
        "tariff-service-twice",
        append("plans", 0, "tariffs", {"service": "data", "zero_rated": True}),
        [f'{P}.tariffs[3].service: a second tariff for service "data" (also {DATA})'],
    ),
    (
        "tariff-zero-rated-not-bool",
        set_("plans", 0, "tariffs", 0, "zero_rated", "yes"),
        [f"{DATA}.zero_rated: must be true or false"],
    ),
    (
        "tariff-zero-rated-with-rates",
        set_("plans", 0, "tariffs", 0, "zero_rated", True),
        [f"{DATA}.rates: must be empty for a zero-rated tariff"],
    ),
    (
        "tariff-no-rates",
        set_("plans", 0, "tariffs", 2, "rates", []),
        [f"{SMS}.rates: must not be empty (or set zero_rated = true)"],
    ),
    (
        "tariff-rates-missing",
        delete("plans", 0, "tariffs", 2, "rates"),
        [f"{SMS}.rates: must not be empty (or set zero_rated = true)"],
    ),
    (
        "tariff-table-unknown",
        set_("plans", 0, "tariffs", 1, "destinations", "fr"),
        [f'{VOICE}.destinations: unknown destination table "fr"'],
    ),
    (
        "tariff-table-needed",
        both(append("destinations", table()), delete("plans", 0, "tariffs", 1, "destinations")),
        [
            f"{VOICE}.destinations: is required when a rate sets destination (the catalog has 2 destination tables)"
        ],
    ),
    (
        "tariff-no-tables-at-all",
        both(delete("destinations"), delete("plans", 0, "tariffs", 1, "destinations")),
        [
            f"{VOICE}.rates[{i}].destination: the catalog has no destination tables"
            for i in range(3)
        ],
    ),
    # ---- rates
    (
        "rate-not-table",
        append("plans", 0, "tariffs", 2, "rates", 7),
        [f"{SMS}.rates[1]: must be a table"],
    ),
    (
        "rate-unknown-key",
        set_("plans", 0, "tariffs", 2, "rates", 0, "per", 1),
        [f"{SMS}.rates[0].per: unknown key"],
    ),
    (
        "rate-destination-unknown",
        set_("plans", 0, "tariffs", 1, "rates", 2, "destination", "mars"),
        [f'{VOICE}.rates[2].destination: unknown destination class "mars" in table "de"'],
    ),
    (
        "rate-zone-unknown",
        set_("plans", 0, "tariffs", 0, "rates", 1, "zone", "asia"),
        [f'{DATA}.rates[1].zone: unknown zone "asia"'],
    ),
    (
        "rate-band-unknown",
        set_("plans", 0, "tariffs", 1, "rates", 0, "band", "night"),
        [f'{VOICE}.rates[0].band: unknown time band "night"'],
    ),
    (
        "rate-rate-missing",
        delete("plans", 0, "tariffs", 2, "rates", 0, "rate"),
        [f"{SMS}.rates[0].rate: is required"],
    ),
    (
        "rate-rate-negative",
        set_("plans", 0, "tariffs", 2, "rates", 0, "rate", -1),
        [f"{SMS}.rates[0].rate: must be a non-negative integer (at most 1000000000000)"],
    ),
    (
        "rate-rate-float",
        set_("plans", 0, "tariffs", 2, "rates", 0, "rate", 0.09),
        [f"{SMS}.rates[0].rate: must be a non-negative integer (at most 1000000000000)"],
    ),
    (
        "rate-rate-too-big",
        set_("plans", 0, "tariffs", 2, "rates", 0, "rate", 10**12 + 1),
        [f"{SMS}.rates[0].rate: must be a non-negative integer (at most 1000000000000)"],
    ),
    (
        "rate-per-zero",
        set_("plans", 0, "tariffs", 2, "rates", 0, "rate_per", 0),
        [f"{SMS}.rates[0].rate_per: must be a positive integer (at most 1000000000000)"],
    ),
    (
        "rate-first-zero",
        set_("plans", 0, "tariffs", 2, "rates", 0, "first_increment", 0),
        [f"{SMS}.rates[0].first_increment: must be a positive integer (at most 1000000000000)"],
    ),
    (
        "rate-next-string",
        set_("plans", 0, "tariffs", 2, "rates", 0, "next_increment", "1"),
        [f"{SMS}.rates[0].next_increment: must be a positive integer (at most 1000000000000)"],
    ),
    (
        "rate-next-missing",
        delete("plans", 0, "tariffs", 2, "rates", 0, "next_increment"),
        [f"{SMS}.rates[0].next_increment: is required"],
    ),
    (
        "rate-increment-cost-too-big",
        set_("plans", 0, "tariffs", 0, "rates", 0, {**per_mib(10**12), "rate_per": 1}),
        [
            f"{DATA}.rates[0]: one increment of 1048576 units costs 1048576000000000000 micro-units, more than 1000000000000000"
        ],
    ),
    (
        "rate-ambiguous-duplicate",
        append(
            "plans",
            0,
            "tariffs",
            1,
            "rates",
            {"destination": "national", "band": "peak", **per_minute(1)},
        ),
        [
            f"{VOICE}.rates[3]: ambiguous rates: rates[0] can match the same request with the same specificity"
        ],
    ),
    (
        "rate-ambiguous-zone-vs-destination",
        append("plans", 0, "tariffs", 1, "rates", {"zone": "eu", **per_minute(1)}),
        [
            f"{VOICE}.rates[3]: ambiguous rates: rates[1] can match the same request with the same specificity"
        ],
    ),
    (
        "rate-ambiguous-two-defaults",
        append("plans", 0, "tariffs", 0, "rates", per_mib(5)),
        [
            f"{DATA}.rates[2]: ambiguous rates: rates[0] can match the same request with the same specificity"
        ],
    ),
    # ---- tiers
    (
        "tiers-not-list",
        set_("plans", 0, "tariffs", 2, "rates", 0, "tiers", {}),
        [f"{SMS}.rates[0].tiers: must be a list"],
    ),
    (
        "tier-not-table",
        set_("plans", 0, "tariffs", 2, "rates", 0, "tiers", [100]),
        [f"{SMS}.rates[0].tiers[0]: must be a table"],
    ),
    (
        "tier-unknown-key",
        set_("plans", 0, "tariffs", 2, "rates", 0, "tiers", [{"from_units": 100, **ONE_PER_EVENT}]),
        [
            f"{SMS}.rates[0].tiers[0].first_increment: unknown key",
            f"{SMS}.rates[0].tiers[0].next_increment: unknown key",
        ],
    ),
    (
        "tier-from-zero",
        set_(
            "plans",
            0,
            "tariffs",
            2,
            "rates",
            0,
            "tiers",
            [{"from_units": 0, "rate": 1, "rate_per": 1}],
        ),
        [
            f"{SMS}.rates[0].tiers[0].from_units: must be a positive integer (the rate itself applies from 0)"
        ],
    ),
    (
        "tier-not-ascending",
        set_(
            "plans",
            0,
            "tariffs",
            2,
            "rates",
            0,
            "tiers",
            [
                {"from_units": 2000, "rate": 2, "rate_per": 1},
                {"from_units": 2000, "rate": 1, "rate_per": 1},
            ],
        ),
        [f"{SMS}.rates[0].tiers[1].from_units: must be greater than the previous tier's (2000)"],
    ),
    (
        "tier-rate-per-zero",
        set_(
            "plans",
            0,
            "tariffs",
            2,
            "rates",
            0,
            "tiers",
            [{"from_units": 10, "rate": 1, "rate_per": 0}],
        ),
        [f"{SMS}.rates[0].tiers[0].rate_per: must be a positive integer (at most 1000000000000)"],
    ),
    (
        "tier-rate-missing",
        set_("plans", 0, "tariffs", 2, "rates", 0, "tiers", [{"from_units": 10, "rate_per": 1}]),
        [f"{SMS}.rates[0].tiers[0].rate: is required"],
    ),
    (
        "tier-increment-cost-too-big",
        set_(
            "plans",
            0,
            "tariffs",
            0,
            "rates",
            0,
            "tiers",
            [{"from_units": 10, "rate": 10**12, "rate_per": 1}],
        ),
        [
            f"{DATA}.rates[0].tiers[0]: one increment of 1048576 units costs 1048576000000000000 micro-units, more than 1000000000000000"
        ],
    ),
    # ---- allowances
    (
        "allowances-not-list",
        set_("plans", 0, "allowances", "d1"),
        [f"{P}.allowances: must be a list"],
    ),
    (
        "allowance-not-table",
        append("plans", 0, "allowances", "d2"),
        [f"{P}.allowances[1]: must be a table"],
    ),
    (
        "allowance-unknown-key",
        set_("plans", 0, "allowances", 0, "price", 1),
        [f"{ALLOWANCE}.price: unknown key"],
    ),
    (
        "allowance-id-duplicate",
        append(
            "plans",
            0,
            "allowances",
            {"id": "d1", "services": ["sms"], "units": 1, "validity_days": 1},
        ),
        [f'{P}.allowances[1].id: duplicate id "d1" (also {ALLOWANCE})'],
    ),
    (
        "allowance-services-missing",
        delete("plans", 0, "allowances", 0, "services"),
        [f"{ALLOWANCE}.services: is required"],
    ),
    (
        "allowance-services-empty",
        set_("plans", 0, "allowances", 0, "services", []),
        [f"{ALLOWANCE}.services: must not be empty"],
    ),
    (
        "allowance-service-unknown",
        set_("plans", 0, "allowances", 0, "services", ["video"]),
        [f'{ALLOWANCE}.services[0]: unknown service "video"'],
    ),
    (
        "allowance-service-not-string",
        set_("plans", 0, "allowances", 0, "services", [10]),
        [f"{ALLOWANCE}.services[0]: must be a non-empty string"],
    ),
    (
        "allowance-service-duplicate",
        set_("plans", 0, "allowances", 0, "services", ["data", "data"]),
        [f'{ALLOWANCE}.services[1]: duplicate service "data"'],
    ),
    (
        "allowance-mixed-units",
        set_("plans", 0, "allowances", 0, "services", ["data", "voice"]),
        [f"{ALLOWANCE}.services: services of different units (octets, seconds)"],
    ),
    (
        "allowance-units-zero",
        set_("plans", 0, "allowances", 0, "units", 0),
        [f"{ALLOWANCE}.units: must be a positive integer (at most 4611686018427387904)"],
    ),
    (
        "allowance-units-missing",
        delete("plans", 0, "allowances", 0, "units"),
        [f"{ALLOWANCE}.units: is required"],
    ),
    (
        "allowance-validity-zero",
        set_("plans", 0, "allowances", 0, "validity_days", 0),
        [f"{ALLOWANCE}.validity_days: must be a positive integer (at most 36600)"],
    ),
]


@pytest.mark.parametrize(
    ("mutation", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_validation_error_names_the_path(mutation, expected):
    if mutation is None:
        data = ["not", "a", "table"]
    else:
        data = base_catalog()
        mutation(data)
    with pytest.raises(CatalogError) as caught:
        load_catalog(data)
    assert caught.value.problems == expected


def test_case_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


def test_the_base_catalog_is_valid():
    catalog = load_catalog(base_catalog())
    assert catalog.version == "t1"


def test_a_gap_in_the_week_is_fine_when_every_banded_rate_has_a_fallback():
    data = base_catalog()
    del data["time_bands"][1]  # offpeak gone: weekday nights are in no band
    catalog = load_catalog(data)  # rates[1] (national, no band) covers the nights
    assert [b.id for b in catalog.time_bands] == ["peak", "weekend"]


def test_every_problem_is_collected_at_once():
    data = base_catalog()
    data["currency"] = "euro"
    data["services"][1]["unit"] = "minutes"
    data["zones"][0]["mcc_mnc"].append("2x")
    data["plans"][0]["tariffs"][0]["rates"][0]["next_increment"] = 0
    data["plans"][0]["allowances"][0]["validity_days"] = -30
    with pytest.raises(CatalogError) as caught:
        load_catalog(data)
    problems = caught.value.problems
    assert problems == [
        "currency: must be an ISO 4217 code (three capital letters)",
        'services[1].unit: must be one of "octets", "seconds", "events"',
        'zones[0].mcc_mnc[2]: must be 5 or 6 digits, or digits followed by "*" '
        '(e.g. "208*"; "*" alone matches every network)',
        f"{DATA}.rates[0].next_increment: must be a positive integer (at most 1000000000000)",
        f"{ALLOWANCE}.validity_days: must be a positive integer (at most 36600)",
    ]
    message = str(caught.value)
    assert message.startswith("invalid catalog (5 problems):")
    assert all(p in message for p in problems)


def test_a_catalog_error_is_a_value_error():
    assert issubclass(CatalogError, ValueError)
