"""Taxes and discounts in the catalog (docs/catalog.md, Taxes and Discounts): what the
parser builds, every problem it reports (the exact text), overlapping tax rates, the
lookup of a category's rate by day, the demo catalog's rates and discounts, and the
round trip through the catalog store in Redis."""

from __future__ import annotations

import re
import tomllib
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from quota_engine.catalog import (
    DEMO_CATALOG_PATH,
    CatalogError,
    catalog_from_file,
    load_catalog,
    load_demo_catalog,
)
from quota_engine.catalog.model import Discount, TaxRate
from quota_engine.store.catalogs import CatalogStore, demo_catalog_document
from tests.quota_engine.catalogs import base_catalog

VAT = {"category": "standard", "rate_ppm": 190_000}
MULTI_LINE = {
    "id": "multi",
    "name": "Multi-line 10 %",
    "kind": "percent",
    "rate_ppm": 100_000,
    "scope": "invoice",
    "min_lines": 3,
}


def with_(**top) -> dict:
    """The base catalog (one plan, "basic", default tax category) with these top-level keys."""
    data = base_catalog()
    data.update(top)
    return data


def problems_of(data: dict) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        load_catalog(data)
    return caught.value.problems


# ---------------------------------------------------------------- what lands in the model


def test_taxes_and_discounts_land_in_the_model():
    data = with_(
        taxes=[
            {
                "category": "standard",
                "name": "VAT 16 %",
                "rate_ppm": 160_000,
                "valid_from": "2020-07-01",
                "valid_to": date(2021, 1, 1),  # a TOML date
            },
            {
                "category": "standard",
                "name": "VAT 19 %",
                "rate_ppm": 190_000,
                "valid_from": date(2021, 1, 1),
            },
            {"category": "exempt", "rate_ppm": 0},
            {"category": "everything", "rate_ppm": 1_000_000, "valid_to": "2030-01-01"},
        ],
        discounts=[
            {
                **MULTI_LINE,
                "plans": ["basic"],
                "valid_from": "2026-01-01",
                "valid_to": "2027-01-01",
            },
            {
                "id": "sms-promo",
                "name": "1 EUR off SMS",
                "kind": "fixed",
                "amount": 1_000_000,
                "scope": "service",
                "service": "sms",
            },
            {"id": "fee", "kind": "fixed", "amount": 1, "scope": "plan", "plans": []},
        ],
    )
    catalog = load_catalog(data)
    assert catalog.taxes == (
        TaxRate("standard", 160_000, date(2020, 7, 1), date(2021, 1, 1), "VAT 16 %"),
        TaxRate("standard", 190_000, date(2021, 1, 1), None, "VAT 19 %"),
        TaxRate("exempt", 0, None, None, ""),
        TaxRate("everything", 1_000_000, None, date(2030, 1, 1), ""),
    )
    assert catalog.discounts == (
        Discount(
            id="multi",
            name="Multi-line 10 %",
            kind="percent",
            scope="invoice",
            rate_ppm=100_000,
            amount=0,
            service=None,
            plans=("basic",),
            min_lines=3,
            valid_from=date(2026, 1, 1),
            valid_to=date(2027, 1, 1),
        ),
        Discount(
            id="sms-promo",
            name="1 EUR off SMS",
            kind="fixed",
            scope="service",
            rate_ppm=0,
            amount=1_000_000,
            service="sms",
        ),
        # name defaults to the id, min_lines to 0, plans to any plan
        Discount(id="fee", name="fee", kind="fixed", scope="plan", amount=1),
    )


def test_a_catalog_without_taxes_or_discounts_stays_valid():
    data = base_catalog()
    data["plans"][0]["tax_category"] = "nowhere"  # no [[taxes]] at all: not checked
    catalog = load_catalog(data)
    assert (catalog.taxes, catalog.discounts) == ((), ())
    assert catalog.tax_rate("nowhere", date(2026, 1, 1)) is None
    assert load_catalog(with_(taxes=[], discounts=[])).taxes == ()


def test_null_optional_values_count_as_not_given():
    catalog = load_catalog(
        with_(
            taxes=[{**VAT, "name": None, "valid_from": None, "valid_to": None}],
            discounts=[{**MULTI_LINE, "service": None, "plans": None, "amount": None}],
        )
    )
    assert catalog.taxes == (TaxRate("standard", 190_000),)
    assert catalog.discounts[0].plans == () and catalog.discounts[0].service is None


def test_rates_that_meet_do_not_overlap_and_categories_are_independent():
    data = with_(
        taxes=[
            {**VAT, "rate_ppm": 1, "valid_to": "2021-01-01"},
            {**VAT, "rate_ppm": 2, "valid_from": "2021-01-01", "valid_to": "2021-01-02"},
            {**VAT, "rate_ppm": 3, "valid_from": "2021-01-02"},
            {"category": "reduced", "rate_ppm": 70_000},  # same days, another category
        ]
    )
    assert [t.rate_ppm for t in load_catalog(data).taxes] == [1, 2, 3, 70_000]


def test_toml_dates_from_a_file(tmp_path: Path):
    path = tmp_path / "catalog.toml"
    path.write_text(
        DEMO_CATALOG_PATH.read_text()
        + """
[[taxes]]
category = "reduced"
rate_ppm = 70_000
valid_from = 2026-01-01
valid_to = 2026-07-01
"""
    )
    catalog = catalog_from_file(path)
    assert catalog.tax_rate("reduced", date(2026, 6, 30)) == TaxRate(
        "reduced", 70_000, date(2026, 1, 1), date(2026, 7, 1)
    )


# ---------------------------------------------------------------- the lookup by day


def test_tax_rate_by_day_valid_from_inclusive_valid_to_exclusive():
    catalog = load_catalog(
        with_(
            taxes=[
                {**VAT, "rate_ppm": 160_000, "valid_from": "2020-07-01", "valid_to": "2021-01-01"},
                {**VAT, "valid_from": "2021-01-01"},
                {"category": "reduced", "rate_ppm": 70_000, "valid_to": "2020-07-01"},
            ]
        )
    )
    rate = catalog.tax_rate
    assert rate("standard", date(2020, 6, 30)) is None  # before the first rate
    assert rate("standard", date(2020, 7, 1)).rate_ppm == 160_000  # valid_from inclusive
    assert rate("standard", date(2020, 12, 31)).rate_ppm == 160_000
    assert rate("standard", date(2021, 1, 1)).rate_ppm == 190_000  # valid_to exclusive
    assert rate("standard", date(9999, 12, 31)).rate_ppm == 190_000  # open end
    assert rate("reduced", date(1, 1, 1)).rate_ppm == 70_000  # open start
    assert rate("reduced", date(2020, 6, 30)).rate_ppm == 70_000
    assert rate("reduced", date(2020, 7, 1)) is None
    assert rate("other", date(2021, 1, 1)) is None


def test_discount_covers_valid_from_inclusive_valid_to_exclusive():
    [discount] = load_catalog(
        with_(discounts=[{**MULTI_LINE, "valid_from": "2026-01-01", "valid_to": "2026-02-01"}])
    ).discounts
    assert not discount.covers(date(2025, 12, 31))
    assert discount.covers(date(2026, 1, 1)) and discount.covers(date(2026, 1, 31))
    assert not discount.covers(date(2026, 2, 1))


# ---------------------------------------------------------------- every problem

T = "taxes[0]"
D = "discounts[0]"
PPM_TAX = "must be an integer from 0 to 1000000 (parts per million: 19 % is 190000)"
PPM_DISCOUNT = "must be an integer from 1 to 1000000 (parts per million: 10 % is 100000)"
AMOUNT = "must be a positive integer (at most 1000000000000)"
DATE = 'must be a date "YYYY-MM-DD"'
KINDS = 'must be one of "percent", "fixed"'
SCOPES = 'must be one of "invoice", "plan", "service"'


MISSING_ = object()
"""A field value that means: leave the key out."""


def tax(**fields) -> list[dict]:
    """A catalog's taxes: the standard rate with ``fields`` changed."""
    entry = {**VAT, **fields}
    return [{k: v for k, v in entry.items() if v is not MISSING_}]


def discount(**fields) -> list[dict]:
    """A catalog's discounts: the multi-line discount with ``fields`` changed."""
    entry = {**MULTI_LINE, **fields}
    return [{k: v for k, v in entry.items() if v is not MISSING_}]


FIXED = {"kind": "fixed", "rate_ppm": MISSING_, "amount": 5_000_000}
SERVICE = {"scope": "service", "service": "data"}


def standard(rate_ppm: int, valid_from: str | None = None, valid_to: str | None = None) -> dict:
    entry: dict = {"category": "standard", "rate_ppm": rate_ppm}
    if valid_from is not None:
        entry["valid_from"] = valid_from
    if valid_to is not None:
        entry["valid_to"] = valid_to
    return entry


OVERLAP = 'overlaps taxes[0]: two rates of tax category "standard"'

CASES: list[tuple[str, dict, list[str]]] = [
    # ---- taxes: shape
    ("taxes-not-list", {"taxes": {"category": "standard"}}, ["taxes: must be a list"]),
    ("tax-not-table", {"taxes": ["standard"]}, [f"{T}: must be a table"]),
    ("tax-unknown-key", {"taxes": tax(percent=19)}, [f"{T}.percent: unknown key"]),
    ("tax-category-missing", {"taxes": tax(category=MISSING_)}, [f"{T}.category: is required"]),
    (
        "tax-category-empty",
        {"taxes": tax(category=" ")},
        [f"{T}.category: must be a non-empty string"],
    ),
    (
        "tax-category-not-string",
        {"taxes": tax(category=19)},
        [f"{T}.category: must be a non-empty string"],
    ),
    ("tax-rate-missing", {"taxes": tax(rate_ppm=MISSING_)}, [f"{T}.rate_ppm: is required"]),
    ("tax-rate-negative", {"taxes": tax(rate_ppm=-1)}, [f"{T}.rate_ppm: {PPM_TAX}"]),
    ("tax-rate-over-100-percent", {"taxes": tax(rate_ppm=1_000_001)}, [f"{T}.rate_ppm: {PPM_TAX}"]),
    ("tax-rate-float", {"taxes": tax(rate_ppm=0.19)}, [f"{T}.rate_ppm: {PPM_TAX}"]),
    ("tax-rate-string", {"taxes": tax(rate_ppm="190000")}, [f"{T}.rate_ppm: {PPM_TAX}"]),
    ("tax-rate-bool", {"taxes": tax(rate_ppm=True)}, [f"{T}.rate_ppm: {PPM_TAX}"]),
    ("tax-name-empty", {"taxes": tax(name="")}, [f"{T}.name: must be a non-empty string"]),
    ("tax-name-not-string", {"taxes": tax(name=19)}, [f"{T}.name: must be a non-empty string"]),
    ("tax-from-bad-month", {"taxes": tax(valid_from="2021-13-01")}, [f"{T}.valid_from: {DATE}"]),
    ("tax-from-bad-day", {"taxes": tax(valid_from="2021-02-30")}, [f"{T}.valid_from: {DATE}"]),
    ("tax-from-short", {"taxes": tax(valid_from="2021-1-1")}, [f"{T}.valid_from: {DATE}"]),
    ("tax-from-int", {"taxes": tax(valid_from=20210101)}, [f"{T}.valid_from: {DATE}"]),
    (
        "tax-from-datetime",  # a TOML date-time is not a day
        {"taxes": tax(valid_from=datetime(2021, 1, 1, 0, 0))},
        [f"{T}.valid_from: {DATE}"],
    ),
    ("tax-to-bad", {"taxes": tax(valid_to="tomorrow")}, [f"{T}.valid_to: {DATE}"]),
    (
        "tax-to-before-from",
        {"taxes": tax(valid_from="2021-01-02", valid_to="2021-01-01")},
        [f"{T}.valid_to: must be after valid_from (2021-01-02; valid_to is exclusive)"],
    ),
    (
        "tax-to-equals-from",
        {"taxes": tax(valid_from="2021-01-01", valid_to=date(2021, 1, 1))},
        [f"{T}.valid_to: must be after valid_from (2021-01-01; valid_to is exclusive)"],
    ),
    # ---- taxes: overlaps
    (
        "overlap-both-open",
        {"taxes": [standard(1), standard(2)]},
        [f"taxes[1]: {OVERLAP} apply on every day"],
    ),
    (
        "overlap-from-on",
        {"taxes": [standard(1, "2021-01-01"), standard(2, "2022-01-01")]},
        [f"taxes[1]: {OVERLAP} apply from 2022-01-01 on"],
    ),
    (
        "overlap-up-to",
        {"taxes": [standard(1, None, "2021-01-01"), standard(2, None, "2020-06-01")]},
        [f"taxes[1]: {OVERLAP} apply up to 2020-05-31"],
    ),
    (
        "overlap-span",
        {"taxes": [standard(1, "2021-01-01"), standard(2, "2020-01-01", "2021-03-01")]},
        [f"taxes[1]: {OVERLAP} apply on the days 2021-01-01 to 2021-02-28"],
    ),
    (
        "overlap-one-day",
        {"taxes": [standard(1, "2020-07-01", "2021-01-02"), standard(2, "2021-01-01")]},
        [f"taxes[1]: {OVERLAP} apply on 2021-01-01"],
    ),
    (
        "overlap-every-pair-named",  # a rate that clashes still counts for the next ones
        {
            "taxes": [
                standard(1, "2021-01-01"),
                standard(2, "2020-01-01", "2021-01-02"),
                standard(3, None, "2020-01-02"),
            ]
        },
        [
            f"taxes[1]: {OVERLAP} apply on 2021-01-01",
            'taxes[2]: overlaps taxes[1]: two rates of tax category "standard" apply on 2020-01-01',
        ],
    ),
    (
        "overlap-after-another-category",
        {"taxes": [{"category": "reduced", "rate_ppm": 7}, standard(1), standard(2, "2030-01-01")]},
        [
            'taxes[2]: overlaps taxes[1]: two rates of tax category "standard" apply from 2030-01-01 on'
        ],
    ),
    # ---- taxes: every plan's category has a rate
    (
        "plan-default-category-without-rate",
        {"taxes": [{"category": "reduced", "rate_ppm": 70_000}]},
        [
            'plans[0].tax_category: the default tax category "standard" has no rate in taxes '
            "(add one or set tax_category)"
        ],
    ),
    (
        "plan-category-without-rate",
        {"taxes": [VAT], "plans[0].tax_category": "reduced"},
        ['plans[0].tax_category: tax category "reduced" has no rate in taxes'],
    ),
    (
        "a-bad-rate-of-the-category-is-reported-once",  # not again on the plan
        {"taxes": tax(rate_ppm=-5)},
        [f"{T}.rate_ppm: {PPM_TAX}"],
    ),
    # ---- discounts: shape
    ("discounts-not-list", {"discounts": MULTI_LINE}, ["discounts: must be a list"]),
    ("discount-not-table", {"discounts": ["multi"]}, [f"{D}: must be a table"]),
    ("discount-unknown-key", {"discounts": discount(percent=10)}, [f"{D}.percent: unknown key"]),
    ("discount-id-missing", {"discounts": discount(id=MISSING_)}, [f"{D}.id: is required"]),
    ("discount-id-empty", {"discounts": discount(id="")}, [f"{D}.id: must be a non-empty string"]),
    (
        "discount-id-duplicate",
        {"discounts": discount() + discount(name="again")},
        ['discounts[1].id: duplicate id "multi" (also discounts[0])'],
    ),
    (
        "discount-name-empty",
        {"discounts": discount(name="")},
        [f"{D}.name: must be a non-empty string"],
    ),
    ("discount-kind-missing", {"discounts": discount(kind=MISSING_)}, [f"{D}.kind: is required"]),
    ("discount-kind-unknown", {"discounts": discount(kind="percentage")}, [f"{D}.kind: {KINDS}"]),
    (
        "discount-kind-unknown-and-rate-bad",  # the value given is still checked
        {"discounts": discount(kind="x", rate_ppm=0)},
        [f"{D}.kind: {KINDS}", f"{D}.rate_ppm: {PPM_DISCOUNT}"],
    ),
    (
        "discount-kind-unknown-and-amount-bad",
        {"discounts": discount(kind=7, rate_ppm=MISSING_, amount=-1)},
        [f"{D}.kind: {KINDS}", f"{D}.amount: {AMOUNT}"],
    ),
    # ---- discounts: percent
    (
        "percent-rate-missing",
        {"discounts": discount(rate_ppm=MISSING_)},
        [f"{D}.rate_ppm: is required"],
    ),
    ("percent-rate-zero", {"discounts": discount(rate_ppm=0)}, [f"{D}.rate_ppm: {PPM_DISCOUNT}"]),
    (
        "percent-rate-over-100-percent",
        {"discounts": discount(rate_ppm=1_000_001)},
        [f"{D}.rate_ppm: {PPM_DISCOUNT}"],
    ),
    (
        "percent-rate-float",
        {"discounts": discount(rate_ppm=0.1)},
        [f"{D}.rate_ppm: {PPM_DISCOUNT}"],
    ),
    (
        "percent-with-amount",
        {"discounts": discount(amount=1_000_000)},
        [f'{D}.amount: only allowed when kind is "fixed"'],
    ),
    # ---- discounts: fixed
    (
        "fixed-amount-missing",
        {"discounts": discount(**{**FIXED, "amount": MISSING_})},
        [f"{D}.amount: is required"],
    ),
    (
        "fixed-amount-zero",
        {"discounts": discount(**{**FIXED, "amount": 0})},
        [f"{D}.amount: {AMOUNT}"],
    ),
    (
        "fixed-amount-too-big",
        {"discounts": discount(**{**FIXED, "amount": 10**12 + 1})},
        [f"{D}.amount: {AMOUNT}"],
    ),
    (
        "fixed-amount-string",
        {"discounts": discount(**{**FIXED, "amount": "5 EUR"})},
        [f"{D}.amount: {AMOUNT}"],
    ),
    (
        "fixed-with-rate",
        {"discounts": discount(**{**FIXED, "rate_ppm": 100_000})},
        [f'{D}.rate_ppm: only allowed when kind is "percent"'],
    ),
    # ---- discounts: scope and service
    ("scope-missing", {"discounts": discount(scope=MISSING_)}, [f"{D}.scope: is required"]),
    ("scope-unknown", {"discounts": discount(scope="account")}, [f"{D}.scope: {SCOPES}"]),
    (
        "service-scope-without-service",
        {"discounts": discount(scope="service")},
        [f'{D}.service: is required when scope is "service"'],
    ),
    (
        "invoice-scope-with-service",
        {"discounts": discount(service="data")},
        [f'{D}.service: only allowed when scope is "service"'],
    ),
    (
        "plan-scope-with-service",
        {"discounts": discount(scope="plan", service="data")},
        [f'{D}.service: only allowed when scope is "service"'],
    ),
    (
        "service-unknown",
        {"discounts": discount(**{**SERVICE, "service": "mms"})},
        [f'{D}.service: unknown service "mms"'],
    ),
    (
        "service-not-string",
        {"discounts": discount(**{**SERVICE, "service": ["data"]})},
        [f"{D}.service: must be a non-empty string"],
    ),
    # ---- discounts: plans, min_lines, validity
    ("plans-not-list", {"discounts": discount(plans="basic")}, [f"{D}.plans: must be a list"]),
    (
        "plans-item-not-string",
        {"discounts": discount(plans=["basic", 1])},
        [f"{D}.plans[1]: must be a non-empty string"],
    ),
    (
        "plans-unknown",
        {"discounts": discount(plans=["gold"])},
        [f'{D}.plans[0]: unknown plan "gold"'],
    ),
    (
        "plans-duplicate",
        {"discounts": discount(plans=["basic", "basic"])},
        [f'{D}.plans[1]: duplicate plan "basic"'],
    ),
    (
        "min-lines-negative",
        {"discounts": discount(min_lines=-1)},
        [f"{D}.min_lines: must be a non-negative integer (at most 4294967295)"],
    ),
    (
        "min-lines-bool",
        {"discounts": discount(min_lines=True)},
        [f"{D}.min_lines: must be a non-negative integer (at most 4294967295)"],
    ),
    (
        "discount-from-bad",
        {"discounts": discount(valid_from="2026-02-29")},
        [f"{D}.valid_from: {DATE}"],
    ),
    ("discount-to-bad", {"discounts": discount(valid_to=2027)}, [f"{D}.valid_to: {DATE}"]),
    (
        "discount-to-before-from",
        {"discounts": discount(valid_from="2026-03-01", valid_to="2026-02-01")},
        [f"{D}.valid_to: must be after valid_from (2026-03-01; valid_to is exclusive)"],
    ),
    (
        "every-discount-problem-at-once",
        {
            "discounts": [
                {
                    "id": "",
                    "name": 3,
                    "kind": "fixed",
                    "rate_ppm": 1,
                    "scope": "service",
                    "plans": ["x"],
                    "min_lines": "3",
                    "valid_to": "soon",
                }
            ]
        },
        [
            f"{D}.id: must be a non-empty string",
            f"{D}.name: must be a non-empty string",
            f'{D}.rate_ppm: only allowed when kind is "percent"',
            f"{D}.amount: is required",
            f'{D}.service: is required when scope is "service"',
            f'{D}.plans[0]: unknown plan "x"',
            f"{D}.min_lines: must be a non-negative integer (at most 4294967295)",
            f"{D}.valid_to: {DATE}",
        ],
    ),
]


def _apply(changes: dict) -> dict:
    data = base_catalog()
    for key, value in changes.items():
        if key == "plans[0].tax_category":
            data["plans"][0]["tax_category"] = value
        else:
            data[key] = value
    return data


@pytest.mark.parametrize(("changes", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_problem_names_its_path(changes, expected):
    assert problems_of(_apply(changes)) == expected


def test_case_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


def test_the_unchanged_entries_of_the_cases_are_valid():
    catalog = load_catalog(with_(taxes=tax(), discounts=discount()))
    assert catalog.taxes == (TaxRate("standard", 190_000),)
    assert catalog.discounts[0].rate_ppm == 100_000
    for fields in (FIXED, SERVICE, {**FIXED, **SERVICE}):
        assert load_catalog(with_(discounts=discount(**fields))).discounts


def test_unknown_top_level_keys_are_still_refused_next_to_taxes():
    assert problems_of(with_(taxes=[VAT], tax=[VAT])) == ["tax: unknown key"]


def test_tax_and_discount_problems_come_with_the_others():
    data = with_(taxes=tax(rate_ppm=-1), discounts=discount(kind="x"))
    data["currency"] = "euro"
    assert problems_of(data) == [
        "currency: must be an ISO 4217 code (three capital letters)",
        f"{T}.rate_ppm: {PPM_TAX}",
        f"{D}.kind: {KINDS}",
    ]


# ---------------------------------------------------------------- the demo catalog


def test_the_demo_catalog_has_a_rate_for_each_plans_category_on_every_day_since_mid_2020():
    catalog = load_demo_catalog()
    assert {p.tax_category for p in catalog.plans} == {"standard"}
    for plan in catalog.plans:
        day = date(2020, 7, 1)
        while day < date(2031, 1, 1):
            assert catalog.tax_rate(plan.tax_category, day) is not None, (plan.id, day)
            day += timedelta(days=30)
    assert catalog.tax_rate("standard", date(2020, 12, 31)).rate_ppm == 160_000
    assert catalog.tax_rate("standard", date(2021, 1, 1)) == TaxRate(
        "standard", 190_000, date(2021, 1, 1), None, "VAT 19 %"
    )


def test_the_demo_catalog_discounts():
    multi, promo = load_demo_catalog().discounts
    assert (multi.id, multi.kind, multi.rate_ppm, multi.scope, multi.plans, multi.min_lines) == (
        "multi-line",
        "percent",
        100_000,
        "invoice",
        ("postpaid-standard",),
        3,
    )
    assert (promo.kind, promo.amount, promo.scope, promo.service) == (
        "fixed",
        2_000_000,
        "service",
        "data",
    )
    assert not promo.covers(date(2026, 12, 31))
    assert promo.covers(date(2027, 1, 1)) and not promo.covers(date(2027, 4, 1))


def test_the_examples_of_docs_catalog_md_are_valid_and_are_the_demos():
    text = (Path(__file__).parents[3] / "docs" / "catalog.md").read_text()
    sections = text[text.index("## Taxes") : text.index("## Rating API")]
    document = demo_catalog_document()
    del document["taxes"], document["discounts"]
    for block in re.findall(r"```toml\n(.*?)```", sections, re.S):
        document.update(tomllib.loads(block))
    catalog = load_catalog(document)
    demo = load_demo_catalog()
    assert catalog.taxes == (*demo.taxes, TaxRate("exempt", 0))
    assert catalog.discounts == demo.discounts


# ---------------------------------------------------------------- the catalog store (Redis)


async def test_taxes_and_discounts_survive_the_catalog_store(r):
    document = demo_catalog_document()
    document["version"] = "tax-1"
    # TOML dates (as tomllib gives them) are stored as ISO strings and read back as days
    document["taxes"].append(
        {"category": "reduced", "rate_ppm": 70_000, "valid_from": date(2026, 1, 1)}
    )
    document["plans"][0]["tax_category"] = "reduced"
    store = CatalogStore(r)
    version = await store.save(document)
    assert (await store.document(version))["taxes"][-1]["valid_from"] == "2026-01-01"
    loaded = await store.load(version)
    demo = load_demo_catalog()
    assert loaded.taxes == (*demo.taxes, TaxRate("reduced", 70_000, date(2026, 1, 1)))
    assert loaded.discounts == demo.discounts and len(loaded.discounts) == 2
    assert loaded.tax_rate("reduced", date(2026, 1, 1)).rate_ppm == 70_000
