"""Acceptance of postpaid invoicing (issue 11): invoices computed by hand to the cent.

Every expected amount is worked out in the comment beside it from the inputs of the
test, never by calling the code under test. The period is November 2026 in the demo
catalog's Europe/Berlin: 2026-11-01 to 2026-12-01, 30 local days (December: 31). EUR
has two decimals: a line's micro-units are rounded half away from zero to the cent
(10,000 micro-units), once. Each test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from ocs.billing.accounts import Adjustment, BillingAccount, PlanChange
from ocs.billing.bill_run import BillRunOptions, BillRunSummary, run_bill_run
from ocs.billing.database import migrate, open_database
from ocs.billing.lifecycle import (
    CreditLine,
    DocumentNotFound,
    InvalidCorrection,
    InvalidState,
    create_credit_note,
    finalize,
    void,
)
from ocs.billing.schema import (
    credit_note_items,
    credit_notes,
    invoice_item_records,
    invoice_items,
    invoices,
)
from quota_engine.catalog.model import Catalog, Discount, Plan, TaxRate
from tests.ocs.billing.factory import account, at, catalog, record, write_records

MIB = 1_048_576
VAT = TaxRate("standard", 190_000, date(2021, 1, 1), None, "VAT 19 %")
NOVEMBER_DONE = at("2026-12-10 00:00")  # past the 3-day grace period of November
DECEMBER_DONE = at("2027-01-10 00:00")


@pytest.fixture
def engine(database_url: str):
    migrate(database_url)
    engine = open_database(database_url)
    yield engine
    engine.dispose()


def with_plans(base: Catalog, *plans: Plan) -> Catalog:
    return dataclasses.replace(base, plans=base.plans + plans)


def standard_plan(base: Catalog) -> Plan:
    plan = base.plan("postpaid-standard")
    assert plan is not None and plan.recurring_fee == 20_000_000
    return plan


def bill(
    engine: Engine,
    cat: Catalog,
    accounts: list[BillingAccount],
    records_dir: Path,
    *,
    period: str = "2026-11",
    now: int = NOVEMBER_DONE,
    **options: Any,
) -> BillRunSummary:
    summary = run_bill_run(
        engine,
        cat,
        accounts,
        records_dir,
        period=period,
        now=now,
        options=BillRunOptions(**options),
    )
    assert summary.errors == []
    return summary


def invoices_of(engine: Engine, account_id: str) -> list[Any]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(invoices)
                .where(invoices.c.account == account_id)
                .order_by(invoices.c.period_start, invoices.c.created_at, invoices.c.number)
            )
        )


def the_invoice(engine: Engine, account_id: str, state: str = "final") -> Any:
    found = [i for i in invoices_of(engine, account_id) if i.state == state]
    assert len(found) == 1, found
    return found[0]


def items_of(engine: Engine, invoice_id: str) -> list[Any]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(invoice_items)
                .where(invoice_items.c.invoice_id == invoice_id)
                .order_by(invoice_items.c.position)
            )
        )


def shown(items: list[Any]) -> list[tuple[Any, ...]]:
    """What the customer reads: kind, text, section, amount (minor, in micro-units)."""
    return [(i.kind, i.description, i.child_account, i.amount_minor) for i in items]


def taxed(items: list[Any]) -> list[tuple[Any, ...]]:
    return [(i.kind, i.tax_category, i.tax_rate_ppm, i.amount_minor) for i in items]


def links_of(engine: Engine, invoice_id: str) -> dict[str, str]:
    """{record id: kind of the line it is on} for the live links of an invoice."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(invoice_item_records.c.record_id, invoice_items.c.kind)
            .join(invoice_items, invoice_items.c.id == invoice_item_records.c.item_id)
            .where(invoice_items.c.invoice_id == invoice_id, ~invoice_item_records.c.released)
        ).all()
    return {row.record_id: row.kind for row in rows}


def totals(invoice: Any) -> tuple[int, int, int]:
    return invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor


# -- (a) proration: a plan change and an account created mid-period


def test_prorated_plan_change_and_account_created_mid_period(engine, tmp_path: Path) -> None:
    base = catalog(taxes=[VAT])
    # a second postpaid plan whose 20-day share lands exactly on a half cent:
    # 30.0075 EUR * 20 / 30 = 20.005 EUR
    plus = dataclasses.replace(
        standard_plan(base), id="postpaid-plus", name="Postpaid Plus", recurring_fee=30_007_500
    )
    cat = with_plans(base, plus)
    # on Standard for Nov 1..10 (10 days), on Plus from Nov 11 (its whole day) to Nov 30
    alice = account(
        "alice",
        created=at("2026-01-10 12:00"),
        plan="postpaid-plus",
        plan_changes=(PlanChange(at("2026-11-11 08:00"), "postpaid-standard", "postpaid-plus"),),
    )
    # created on Nov 21 at 10:00: pays Nov 21..30, 10 days
    bob = account("bob", created=at("2026-11-21 10:00"))
    records = [
        record("a1;1;10", "alice", at("2026-11-05 10:00"), charged=1_234_567),
        record("a2;1;10", "alice", at("2026-11-20 10:00"), charged=2_345_678, plan="postpaid-plus"),
        # a zero-rated record names no tariff: the plan of its day (Plus) is its line's
        record(
            "a3;1;999",
            "alice",
            at("2026-11-23 10:00"),
            service="portal",
            charged=0,
            zero_rated=True,
            plan="postpaid-plus",
        ),
        record(
            "b1;1;100",
            "bob",
            at("2026-11-25 10:00"),
            service="voice",
            used=182,
            charged=455_000,
            destination="national",
        ),
    ]
    write_records(tmp_path, records, [alice, bob])
    summary = bill(engine, cat, [alice, bob], tmp_path)
    assert (summary.invoices_created, summary.finalized, summary.records) == (2, 2, 4)

    invoice = the_invoice(engine, "alice")
    items = items_of(engine, invoice.id)
    assert shown(items) == [
        # 20.00 * 10 / 30 = 6.666.. -> 6.67
        ("recurring", "Postpaid Standard: recurring fee, 10 of 30 days", None, 6_670_000),
        # 30.0075 * 20 / 30 = 20.005 -> 20.01 (rounded once, half up, from the exact ratio)
        ("recurring", "Postpaid Plus: recurring fee, 20 of 30 days", None, 20_010_000),
        # usage lines sorted by plan: postpaid-plus before postpaid-standard
        ("usage", "Data, weekday", None, 2_350_000),  # 2.345678 -> 2.35
        ("usage", "Portal, weekday (zero-rated)", None, 0),
        ("usage", "Data, weekday", None, 1_230_000),  # 1.234567 -> 1.23
        # 19 % of (6.67 + 20.01 + 2.35 + 0 + 1.23 = 30.26) = 5.7494 -> 5.75
        ("tax", "VAT 19 %", None, 5_750_000),
    ]
    assert [(i.plan, i.quantity, i.unit) for i in items[:2]] == [
        ("postpaid-standard", 10, "days"),
        ("postpaid-plus", 20, "days"),
    ]
    assert (items[0].period_start, items[0].period_end) == (
        at("2026-11-01 00:00"),
        at("2026-11-11 00:00"),
    )
    assert (items[1].period_start, items[1].period_end) == (
        at("2026-11-11 00:00"),
        at("2026-12-01 00:00"),
    )
    assert [i.plan for i in items[2:5]] == ["postpaid-plus", "postpaid-plus", "postpaid-standard"]
    # usage lines keep their exact micro-units beside the rounded amount
    assert [i.amount_micro for i in items[2:5]] == [2_345_678, 0, 1_234_567]
    assert totals(invoice) == (30_260_000, 5_750_000, 36_010_000)  # 30.26 + 5.75 = 36.01
    assert links_of(engine, invoice.id) == {
        "a1;1;10": "usage",
        "a2;1;10": "usage",
        "a3;1;999": "usage",
    }

    invoice = the_invoice(engine, "bob")
    assert shown(items_of(engine, invoice.id)) == [
        # 20.00 * 10 / 30 = 6.666.. -> 6.67
        ("recurring", "Postpaid Standard: recurring fee, 10 of 30 days", None, 6_670_000),
        ("usage", "Voice, national, weekday", None, 460_000),  # 0.455 -> 0.46 (half up)
        # 19 % of (6.67 + 0.46 = 7.13) = 1.3547 -> 1.35
        ("tax", "VAT 19 %", None, 1_350_000),
    ]
    assert totals(invoice) == (7_130_000, 1_350_000, 8_480_000)


# -- (b) a business hierarchy with a multi-line discount


def test_business_parent_with_child_lines_and_multi_line_discount(engine, tmp_path: Path) -> None:
    multi_line = Discount(
        "multi-line", "10 % off from 3 lines", "percent", "invoice", rate_ppm=100_000, min_lines=3
    )
    base = catalog(taxes=[VAT], discounts=[multi_line])
    account_plan = dataclasses.replace(
        standard_plan(base), id="business-account", name="Business Account", recurring_fee=5_000_000
    )
    cat = with_plans(base, account_plan)
    # corp holds no line itself; c1, c2, c3 are its lines, g1 a line under c2 (it rolls
    # up to corp); c4 is invoiced on its own
    corp = account("corp", plan="business-account", subscriptions=())
    c1 = account("c1", parent="corp")
    c2 = account("c2", parent="corp")
    c3 = account("c3", parent="corp")
    g1 = account("g1", parent="c2")
    c4 = account("c4", parent="corp", bill_separately=True)
    everyone = [corp, c1, c2, c3, g1, c4]
    records = [
        record("c1;1;10", "c1", at("2026-11-03 10:00"), used=5 * MIB, charged=3_456_789),
        record(
            "c2;1;100",
            "c2",
            at("2026-11-04 10:00"),
            service="voice",
            used=201,
            charged=1_005_000,
            destination="national",
        ),
        record(
            "g1;0;200",
            "g1",
            at("2026-11-05 10:00"),
            service="sms",
            used=1,
            charged=90_000,
            destination="national",
        ),
        record("c3;1;10", "c3", at("2026-11-06 10:00"), charged=4_000_000, zone="eu"),
        record("c4;1;10", "c4", at("2026-11-09 10:00"), charged=1_500_000),
    ]
    write_records(tmp_path, records, everyone)
    summary = bill(engine, cat, everyone, tmp_path)
    assert (summary.accounts, summary.invoices_created) == (2, 2)
    for child in ("c1", "c2", "c3", "g1"):
        assert invoices_of(engine, child) == []

    invoice = the_invoice(engine, "corp")
    items = items_of(engine, invoice.id)
    assert shown(items) == [
        ("recurring", "Business Account: recurring fee", None, 5_000_000),
        # one section per line, depth first: c1, c2 and its g1, c3
        ("recurring", "Postpaid Standard: recurring fee", "c1", 20_000_000),
        ("usage", "Data, weekday", "c1", 3_460_000),  # 3.456789 -> 3.46
        ("recurring", "Postpaid Standard: recurring fee", "c2", 20_000_000),
        ("usage", "Voice, national, weekday", "c2", 1_010_000),  # 1.005 -> 1.01 (half up)
        ("recurring", "Postpaid Standard: recurring fee", "g1", 20_000_000),
        ("usage", "Sms, national, weekday", "g1", 90_000),
        ("recurring", "Postpaid Standard: recurring fee", "c3", 20_000_000),
        ("usage", "Data, roaming eu, weekday", "c3", 4_000_000),
        # 4 lines (c1, c2, g1, c3) >= 3; base 5.00 + 20.00 + 3.46 + 20.00 + 1.01 + 20.00
        # + 0.09 + 20.00 + 4.00 = 93.56; 10 % = 9.356 -> 9.36
        ("discount", "10 % off from 3 lines", None, -9_360_000),
        # 19 % of (93.56 - 9.36 = 84.20) = 15.998 -> 16.00
        ("tax", "VAT 19 %", None, 16_000_000),
    ]
    assert totals(invoice) == (84_200_000, 16_000_000, 100_200_000)  # 84.20 + 16.00
    # the per-line subtotals of the sections: c1 23.46, c2 21.01, g1 20.09, c3 24.00
    sections: dict[str | None, int] = {}
    for item in items:
        if item.kind not in ("discount", "tax"):
            sections[item.child_account] = sections.get(item.child_account, 0) + item.amount_minor
    assert sections == {
        None: 5_000_000,
        "c1": 23_460_000,
        "c2": 21_010_000,
        "g1": 20_090_000,
        "c3": 24_000_000,
    }
    assert links_of(engine, invoice.id) == {
        "c1;1;10": "usage",
        "c2;1;100": "usage",
        "g1;0;200": "usage",
        "c3;1;10": "usage",
    }

    invoice = the_invoice(engine, "c4")
    assert shown(items_of(engine, invoice.id)) == [
        ("recurring", "Postpaid Standard: recurring fee", None, 20_000_000),
        ("usage", "Data, weekday", None, 1_500_000),
        # one line only: no multi-line discount; 19 % of 21.50 = 4.085 -> 4.09
        ("tax", "VAT 19 %", None, 4_090_000),
    ]
    assert totals(invoice) == (21_500_000, 4_090_000, 25_590_000)
    assert links_of(engine, invoice.id) == {"c4;1;10": "usage"}


def test_multi_line_discount_needs_its_lines(engine, tmp_path: Path) -> None:
    """The same discount on a parent with two lines: not given."""
    multi_line = Discount(
        "multi-line", "10 % off from 3 lines", "percent", "invoice", rate_ppm=100_000, min_lines=3
    )
    cat = catalog(taxes=[VAT], discounts=[multi_line])
    corp = account("corp", subscriptions=())
    accounts = [corp, account("c1", parent="corp"), account("c2", parent="corp")]
    write_records(tmp_path, [], accounts)
    bill(engine, cat, accounts, tmp_path)
    invoice = the_invoice(engine, "corp")
    # 3 fees of 20.00 = 60.00, 19 % = 11.40, no discount line
    assert [i.kind for i in items_of(engine, invoice.id)] == ["recurring"] * 3 + ["tax"]
    assert totals(invoice) == (60_000_000, 11_400_000, 71_400_000)


# -- (c) roaming with two tax categories, a rate change, and a tax-exempt account


def test_roaming_account_with_taxes_and_a_tax_exempt_one(engine, tmp_path: Path) -> None:
    telecom_20 = TaxRate(
        "telecom", 200_000, date(2021, 1, 1), date(2026, 11, 21), "Telecom tax 20 %"
    )
    telecom_22 = TaxRate("telecom", 220_000, date(2026, 11, 21), None, "Telecom tax 22 %")
    base = catalog(taxes=[VAT, telecom_20, telecom_22])
    traveller = dataclasses.replace(
        standard_plan(base),
        id="traveller",
        name="Traveller",
        recurring_fee=45_000_000,
        tax_category="telecom",
    )
    cat = with_plans(base, traveller)
    change = (PlanChange(at("2026-11-11 08:00"), "postpaid-standard", "traveller"),)
    rita = account("rita", plan="traveller", plan_changes=change)
    ngo = account("ngo", plan="traveller", plan_changes=change, tax_exempt=True)

    def trip(owner: str) -> list[dict[str, Any]]:
        return [
            # on Standard (VAT 19 %)
            record(f"{owner}1;1;10", owner, at("2026-11-05 10:00"), charged=2_000_000, zone="eu"),
            # on Traveller, telecom 20 % until Nov 20, 22 % from Nov 21
            record(
                f"{owner}2;1;10",
                owner,
                at("2026-11-16 10:00"),
                charged=3_333_333,
                zone="eu",
                plan="traveller",
            ),
            record(
                f"{owner}3;1;10",
                owner,
                at("2026-11-25 10:00"),
                charged=4_444_444,
                zone="eu",
                plan="traveller",
            ),
            record(
                f"{owner}4;1;10",
                owner,
                at("2026-11-26 10:00"),
                charged=1_000_000,
                zone="eu",
                plan="traveller",
            ),
            record(
                f"{owner}5;1;100",
                owner,
                at("2026-11-18 10:00"),
                service="voice",
                used=1_500,
                charged=6_789_012,
                zone="world",
                destination="international",
                plan="traveller",
            ),
            record(
                f"{owner}6;1;100",
                owner,
                at("2026-11-28 10:00"),
                service="voice",
                used=600,
                charged=1_115_000,
                zone="eu",
                destination="national",
                band="weekend",
                plan="traveller",
            ),
        ]

    write_records(tmp_path, trip("rita") + trip("ngo"), [rita, ngo])
    bill(engine, cat, [rita, ngo], tmp_path)

    invoice = the_invoice(engine, "rita")
    items = items_of(engine, invoice.id)
    assert shown(items) == [
        # 20.00 * 10 / 30 = 6.666.. -> 6.67
        ("recurring", "Postpaid Standard: recurring fee, 10 of 30 days", None, 6_670_000),
        # 45.00 * 20 / 30 = 30.00
        ("recurring", "Traveller: recurring fee, 20 of 30 days", None, 30_000_000),
        ("usage", "Data, roaming eu, weekday", None, 2_000_000),
        # the rate change splits the Traveller data line: 3.333333 -> 3.33 at 20 %,
        # 4.444444 + 1.000000 = 5.444444 -> 5.44 at 22 %
        ("usage", "Data, roaming eu, weekday", None, 3_330_000),
        ("usage", "Data, roaming eu, weekday", None, 5_440_000),
        ("usage", "Voice, roaming eu, national, weekend", None, 1_120_000),  # 1.115 -> 1.12
        ("usage", "Voice, roaming world, international, weekday", None, 6_790_000),  # 6.789012
        # VAT 19 % of (6.67 + 2.00 = 8.67) = 1.6473 -> 1.65
        ("tax", "VAT 19 %", None, 1_650_000),
        # 20 % of (30.00 + 3.33 + 6.79 = 40.12) = 8.024 -> 8.02
        ("tax", "Telecom tax 20 %", None, 8_020_000),
        # 22 % of (5.44 + 1.12 = 6.56) = 1.4432 -> 1.44
        ("tax", "Telecom tax 22 %", None, 1_440_000),
    ]
    assert taxed(items) == [
        ("recurring", "standard", 190_000, 6_670_000),
        # a prorated fee takes the rate of its span's first day (Nov 11: 20 %)
        ("recurring", "telecom", 200_000, 30_000_000),
        ("usage", "standard", 190_000, 2_000_000),
        ("usage", "telecom", 200_000, 3_330_000),
        ("usage", "telecom", 220_000, 5_440_000),
        ("usage", "telecom", 220_000, 1_120_000),
        ("usage", "telecom", 200_000, 6_790_000),
        ("tax", "standard", 190_000, 1_650_000),
        ("tax", "telecom", 200_000, 8_020_000),
        ("tax", "telecom", 220_000, 1_440_000),
    ]
    # 8.67 + 40.12 + 6.56 = 55.35; 1.65 + 8.02 + 1.44 = 11.11; 55.35 + 11.11 = 66.46
    assert totals(invoice) == (55_350_000, 11_110_000, 66_460_000)
    assert set(links_of(engine, invoice.id)) == {f"rita{n};1;{rg}" for n, rg in (
        (1, 10), (2, 10), (3, 10), (4, 10), (5, 100), (6, 100))}  # fmt: skip

    invoice = the_invoice(engine, "ngo")
    items = items_of(engine, invoice.id)
    assert taxed(items) == [
        ("recurring", "standard", None, 6_670_000),
        ("recurring", "telecom", None, 30_000_000),
        ("usage", "standard", None, 2_000_000),
        # no rate, so no split: 3.333333 + 4.444444 + 1.000000 = 8.777777 -> 8.78
        ("usage", "telecom", None, 8_780_000),
        ("usage", "telecom", None, 1_120_000),
        ("usage", "telecom", None, 6_790_000),
    ]
    # no tax lines; 6.67 + 30.00 + 2.00 + 8.78 + 1.12 + 6.79 = 55.36
    assert totals(invoice) == (55_360_000, 0, 55_360_000)


def test_missing_tax_rate_skips_the_account_and_bills_the_others(engine, tmp_path: Path) -> None:
    """A record on a day no rate of its category covers: that account is reported, not
    billed; the other is."""
    short = TaxRate("standard", 190_000, date(2021, 1, 1), date(2026, 11, 15), "VAT 19 %")
    cat = catalog(taxes=[short])
    alice, bob = account("alice"), account("bob")
    write_records(
        tmp_path,
        [
            record("a;1;10", "alice", at("2026-11-20 10:00")),
            record("b;1;10", "bob", at("2026-11-02 10:00")),
        ],
        [alice, bob],
    )
    summary = run_bill_run(engine, cat, [alice, bob], tmp_path, period="2026-11", now=NOVEMBER_DONE)
    assert [account_id for account_id, _ in summary.errors] == ["alice"]
    assert "no tax rate for category 'standard' on 2026-11-20" in summary.errors[0][1]
    assert invoices_of(engine, "alice") == []
    assert totals(the_invoice(engine, "bob")) == (
        20_500_000,
        3_900_000,
        24_400_000,
    )  # 19 % of 20.50 = 3.895 -> 3.90


# -- (d) late records: after finalisation, and in the grace period


def test_late_record_after_finalisation_goes_on_the_next_invoice(engine, tmp_path: Path) -> None:
    cat = catalog(taxes=[VAT])
    alice = account("alice", created=at("2026-01-10 12:00"))
    write_records(
        tmp_path, [record("n1;1;10", "alice", at("2026-11-10 10:00"), charged=1_000_000)], [alice]
    )
    bill(engine, cat, [alice], tmp_path)
    november = the_invoice(engine, "alice")
    november_items = items_of(engine, november.id)
    november_links = links_of(engine, november.id)
    assert shown(november_items) == [
        ("recurring", "Postpaid Standard: recurring fee", None, 20_000_000),
        ("usage", "Data, weekday", None, 1_000_000),
        ("tax", "VAT 19 %", None, 3_990_000),  # 19 % of 21.00
    ]
    assert november.number == "INV-000001"

    # a November record reaches the segments after November was finalised, with one of December
    write_records(
        tmp_path,
        [
            record("late;1;10", "alice", at("2026-11-20 10:00"), charged=2_345_678),
            record("d1;1;10", "alice", at("2026-12-07 10:00"), charged=500_000),
        ],
        [alice],
    )
    summary = bill(engine, cat, [alice], tmp_path, period="2026-12", now=DECEMBER_DONE)
    assert (summary.records, summary.late_records) == (2, 1)
    december = [i for i in invoices_of(engine, "alice") if i.id != november.id]
    assert len(december) == 1
    december_items = items_of(engine, december[0].id)
    assert shown(december_items) == [
        ("recurring", "Postpaid Standard: recurring fee", None, 20_000_000),  # December, 31 days
        ("usage", "Data, weekday", None, 500_000),
        (
            "late_usage",
            "Data, weekday, late usage of an earlier period",
            None,
            2_350_000,
        ),  # 2.345678
        # 19 % of (20.00 + 0.50 + 2.35 = 22.85) = 4.3415 -> 4.34
        ("tax", "VAT 19 %", None, 4_340_000),
    ]
    assert december_items[2].tax_rate_ppm == 190_000
    assert totals(december[0]) == (22_850_000, 4_340_000, 27_190_000)
    assert december[0].number == "INV-000002"
    assert links_of(engine, december[0].id) == {"d1;1;10": "usage", "late;1;10": "late_usage"}
    # November is exactly as it was: every column of every line, its links, its totals
    assert items_of(engine, november.id) == november_items
    assert links_of(engine, november.id) == november_links
    assert invoices_of(engine, "alice")[0] == november

    # a third run of December changes nothing: the late record stays billed once
    bill(engine, cat, [alice], tmp_path, period="2026-12", now=DECEMBER_DONE + 60)
    assert items_of(engine, december[0].id) == december_items
    assert items_of(engine, november.id) == november_items


def test_record_in_the_grace_period_goes_into_the_draft(engine, tmp_path: Path) -> None:
    cat = catalog(taxes=[VAT])
    bob = account("bob")
    write_records(
        tmp_path, [record("g1;1;10", "bob", at("2026-11-10 10:00"), charged=1_000_000)], [bob]
    )
    # Dec 2 12:00 is within the grace period (3 days after Dec 1 00:00): a draft
    summary = bill(engine, cat, [bob], tmp_path, now=at("2026-12-02 12:00"))
    assert (summary.invoices_created, summary.finalized) == (1, 0)
    draft = the_invoice(engine, "bob", "draft")
    assert draft.number is None
    assert totals(draft) == (21_000_000, 3_990_000, 24_990_000)

    write_records(
        tmp_path, [record("g2;1;10", "bob", at("2026-11-29 22:00"), charged=2_500_000)], [bob]
    )
    summary = bill(engine, cat, [bob], tmp_path, now=at("2026-12-03 12:00"))
    assert (summary.invoices_created, summary.drafts_refreshed, summary.late_records) == (0, 1, 0)
    refreshed = the_invoice(engine, "bob", "draft")
    assert refreshed.id == draft.id
    assert shown(items_of(engine, draft.id)) == [
        ("recurring", "Postpaid Standard: recurring fee", None, 20_000_000),
        ("usage", "Data, weekday", None, 3_500_000),  # 1.00 + 2.50, one line, not late
        ("tax", "VAT 19 %", None, 4_470_000),  # 19 % of 23.50 = 4.465 -> 4.47 (half up)
    ]
    assert links_of(engine, draft.id) == {"g1;1;10": "usage", "g2;1;10": "usage"}

    # Dec 4 00:00 ends the grace period: the next run finalises it as it stands
    summary = bill(engine, cat, [bob], tmp_path, now=at("2026-12-04 00:00"))
    assert (summary.drafts_refreshed, summary.finalized) == (1, 1)
    final = the_invoice(engine, "bob", "final")
    assert (final.id, final.number) == (draft.id, "INV-000001")
    assert totals(final) == (23_500_000, 4_470_000, 27_970_000)


# -- (e) adjustments from the balance history


def test_adjustments_are_billed_exactly_once(engine, tmp_path: Path) -> None:
    cat = catalog(taxes=[VAT])
    carol = account(
        "carol",
        adjustments=(
            # + adds money to the balance: a credit on the invoice
            Adjustment("h1", at("2026-11-05 09:00"), 5_000_000, "main", "Goodwill credit"),
            # - takes money: a charge
            Adjustment("h2", at("2026-11-20 09:00"), -2_500_000, "main", "Replacement SIM"),
            Adjustment("h3", at("2026-12-03 09:00"), -1_234_567, "main", ""),
        ),
    )
    write_records(tmp_path, [], [carol])
    # a draft in the grace period, then refreshed, then finalised: the adjustments once
    bill(engine, cat, [carol], tmp_path, now=at("2026-12-02 00:00"))
    bill(engine, cat, [carol], tmp_path, now=at("2026-12-03 00:00"))
    summary = bill(engine, cat, [carol], tmp_path, now=NOVEMBER_DONE)
    assert summary.finalized == 1
    november = the_invoice(engine, "carol")
    assert shown(items_of(engine, november.id)) == [
        ("recurring", "Postpaid Standard: recurring fee", None, 20_000_000),
        ("one_off", "Goodwill credit", None, -5_000_000),
        ("one_off", "Replacement SIM", None, 2_500_000),
        # 19 % of (20.00 - 5.00 + 2.50 = 17.50) = 3.325 -> 3.33
        ("tax", "VAT 19 %", None, 3_330_000),
    ]
    assert totals(november) == (17_500_000, 3_330_000, 20_830_000)
    assert links_of(engine, november.id) == {"adjustment:h1": "one_off", "adjustment:h2": "one_off"}

    bill(engine, cat, [carol], tmp_path, period="2026-12", now=DECEMBER_DONE)
    december = [i for i in invoices_of(engine, "carol") if i.id != november.id][0]
    assert shown(items_of(engine, december.id)) == [
        ("recurring", "Postpaid Standard: recurring fee", None, 20_000_000),
        # a charge with no reason: named by its sign; 1.234567 -> 1.23
        ("one_off", "One-off charge", None, 1_230_000),
        # 19 % of 21.23 = 4.0337 -> 4.03
        ("tax", "VAT 19 %", None, 4_030_000),
    ]
    assert totals(december) == (21_230_000, 4_030_000, 25_260_000)
    assert links_of(engine, december.id) == {"adjustment:h3": "one_off"}


# -- (f) void and rerun; credit notes


def test_void_then_rerun_makes_a_replacement_with_a_new_number(engine, tmp_path: Path) -> None:
    cat = catalog(taxes=[VAT])
    credit = Adjustment("h1", at("2026-11-08 09:00"), 1_000_000, "main", "Goodwill credit")
    alice, bob = account("alice", adjustments=(credit,)), account("bob")
    records = [
        record("a1;1;10", "alice", at("2026-11-03 10:00"), charged=1_234_567),
        record("b1;1;10", "bob", at("2026-11-04 10:00"), charged=700_000),
    ]
    write_records(tmp_path, records, [alice, bob])
    bill(engine, cat, [alice, bob], tmp_path, entity="acme")
    first = the_invoice(engine, "alice")
    first_items = items_of(engine, first.id)
    assert (first.number, the_invoice(engine, "bob").number) == ("INV-000001", "INV-000002")
    # 20.00 + 1.23 - 1.00 = 20.23; 19 % = 3.8437 -> 3.84
    assert totals(first) == (20_230_000, 3_840_000, 24_070_000)
    assert links_of(engine, first.id) == {"a1;1;10": "usage", "adjustment:h1": "one_off"}

    with engine.begin() as connection, pytest.raises(InvalidCorrection):
        void(connection, first.id, reason="  ", now=NOVEMBER_DONE + 10, actor="ops")
    with engine.begin() as connection, pytest.raises(DocumentNotFound) as missing:
        void(connection, "in_nothing", reason="wrong", now=NOVEMBER_DONE + 10, actor="ops")
    assert missing.value.status == 404
    with engine.begin() as connection:
        void(connection, first.id, reason="wrong address", now=NOVEMBER_DONE + 10, actor="ops")
    with engine.begin() as connection, pytest.raises(InvalidState) as twice:
        void(connection, first.id, reason="again", now=NOVEMBER_DONE + 20, actor="ops")
    assert twice.value.status == 409
    assert links_of(engine, first.id) == {}  # its records are released
    with engine.begin() as connection, pytest.raises(InvalidState):
        create_credit_note(connection, first.id, [CreditLine(1)], reason="x", now=1, actor="ops")
    with engine.begin() as connection, pytest.raises(DocumentNotFound):
        create_credit_note(connection, "in_nothing", [CreditLine(1)], reason="x", now=1, actor="o")

    summary = bill(engine, cat, [alice, bob], tmp_path, now=NOVEMBER_DONE + 30, entity="acme")
    assert (summary.invoices_created, summary.finalized, summary.already_final) == (1, 1, 1)
    replacement = the_invoice(engine, "alice")
    assert replacement.id != first.id
    assert replacement.number == "INV-000003"  # numbers are never reused: no gap either
    fields = ("position", "kind", "description", "child_account", "plan", "service", "category",
              "quantity", "unit", "period_start", "period_end", "amount_micro", "amount_minor",
              "tax_category", "tax_rate_ppm")  # fmt: skip
    assert [tuple(getattr(i, f) for f in fields) for i in items_of(engine, replacement.id)] == [
        tuple(getattr(i, f) for f in fields) for i in first_items
    ]
    assert totals(replacement) == totals(first)
    # the records and the adjustment the void released are on the replacement, once
    assert links_of(engine, replacement.id) == {"a1;1;10": "usage", "adjustment:h1": "one_off"}
    voided = the_invoice(engine, "alice", "void")
    assert (voided.id, voided.number, voided.void_reason) == (
        first.id,
        "INV-000001",
        "wrong address",
    )
    assert items_of(engine, first.id) == first_items
    with engine.connect() as connection:
        numbers = sorted(connection.execute(select(invoices.c.number)).scalars())
    assert numbers == ["INV-000001", "INV-000002", "INV-000003"]


def test_credit_notes_per_line_with_their_own_numbers(engine, tmp_path: Path) -> None:
    cat = catalog(taxes=[VAT])
    bob = account("bob")
    write_records(
        tmp_path, [record("b1;1;10", "bob", at("2026-11-04 10:00"), charged=1_000_000)], [bob]
    )
    # a draft first: it cannot be credited
    bill(engine, cat, [bob], tmp_path, now=at("2026-12-02 00:00"), entity="acme")
    draft = the_invoice(engine, "bob", "draft")
    with engine.begin() as connection:
        with pytest.raises(InvalidState):
            create_credit_note(
                connection, draft.id, [CreditLine(1)], reason="x", now=1, actor="ops"
            )
        assert (
            finalize(connection, draft.id, now=at("2026-12-02 01:00"), actor="ops") == "INV-000001"
        )
    with engine.begin() as connection, pytest.raises(InvalidState):
        finalize(connection, draft.id, now=at("2026-12-02 02:00"), actor="ops")
    invoice = the_invoice(engine, "bob")
    items = items_of(engine, invoice.id)
    assert [(i.position, i.kind, i.amount_minor) for i in items] == [
        (1, "recurring", 20_000_000),
        (2, "usage", 1_000_000),
        (3, "tax", 3_990_000),
    ]
    now = at("2026-12-05 10:00")

    def credit(lines: list[CreditLine], **kwargs: Any) -> tuple[str, str]:
        with engine.begin() as connection:
            return create_credit_note(
                connection,
                invoice.id,
                lines,
                reason="billing error",
                now=now,
                actor="ops",
                **kwargs,
            )

    def note(note_id: str) -> tuple[Any, list[Any]]:
        with engine.connect() as connection:
            row = connection.execute(select(credit_notes).where(credit_notes.c.id == note_id)).one()
            lines = connection.execute(
                select(credit_note_items)
                .where(credit_note_items.c.credit_note_id == note_id)
                .order_by(credit_note_items.c.position)
            ).all()
        return row, list(lines)

    # the whole fee, and 0.33 of the usage line (an amount in whole cents: 0.333333 is refused)
    first_id, first_number = credit(
        [CreditLine(1), CreditLine(2, 330_000, "Part refund")], key="k1"
    )
    assert first_number == "CN-000001"
    row, lines = note(first_id)
    assert [
        (li.position, li.invoice_item_id, li.description, li.amount_minor, li.tax_minor)
        for li in lines
    ] == [
        # 19 % of 20.00 = 3.80
        (1, items[0].id, "Postpaid Standard: recurring fee", 20_000_000, 3_800_000),
        # 19 % of 0.33 = 0.0627 -> 0.06
        (2, items[1].id, "Part refund", 330_000, 60_000),
    ]
    assert (row.state, row.invoice_id, row.account, row.entity) == (
        "final",
        invoice.id,
        "bob",
        "acme",
    )
    # 20.33 + 3.86 = 24.19
    assert (row.subtotal_minor, row.tax_minor, row.total_minor) == (
        20_330_000,
        3_860_000,
        24_190_000,
    )
    assert credit([CreditLine(1), CreditLine(2, 330_000)], key="k1") == (first_id, "CN-000001")

    for wrong in ([CreditLine(1)], [CreditLine(2, 680_000)], [CreditLine(3)], [CreditLine(9)],
                  [CreditLine(2, 0)], [CreditLine(2, 100_000), CreditLine(2, 100_000)], []):  # fmt: skip
        with pytest.raises(InvalidCorrection) as refused:
            credit(wrong)
        assert refused.value.status == 422
    with engine.begin() as connection, pytest.raises(InvalidCorrection):
        create_credit_note(
            connection, invoice.id, [CreditLine(2)], reason=" ", now=now, actor="ops"
        )

    # the rest of the usage line: 1.00 - 0.33 = 0.67; 19 % = 0.1273 -> 0.13
    second_id, second_number = credit([CreditLine(2)], key="k2")
    assert second_number == "CN-000002"
    row, lines = note(second_id)
    assert [(li.amount_minor, li.tax_minor) for li in lines] == [(670_000, 130_000)]
    assert (row.subtotal_minor, row.tax_minor, row.total_minor) == (670_000, 130_000, 800_000)
    with pytest.raises(InvalidCorrection):
        credit([CreditLine(2, 10_000)])

    # the invoice is untouched, and cannot be voided now that credit notes correct it
    assert items_of(engine, invoice.id) == items
    with engine.begin() as connection, pytest.raises(InvalidState):
        void(connection, invoice.id, reason="wrong", now=now, actor="ops")
    # credit notes do not take invoice numbers: the next invoice is INV-000002
    bill(engine, cat, [bob], tmp_path, period="2026-12", now=DECEMBER_DONE, entity="acme")
    assert [i.number for i in invoices_of(engine, "bob")] == ["INV-000001", "INV-000002"]


def test_late_window_is_each_accounts_own(engine, tmp_path: Path) -> None:
    """How far back unbilled records are looked for is counted from each account's own
    period: bob (cycle day 15) bills the same records alone or beside alice (day 1),
    whose earlier period start must not widen bob's window."""
    cat = catalog(taxes=[VAT])
    alice, bob = account("alice"), account("bob", bill_cycle_day=15)
    # bob's period: Nov 15 to Dec 15; 62 days before Nov 15 is Sep 14 (alice's: Aug 31)
    write_records(
        tmp_path,
        [
            record("old;1;10", "bob", at("2026-09-05 10:00"), charged=1_000_000),
            record("late;1;10", "bob", at("2026-09-20 10:00"), charged=2_000_000),
        ],
        [alice, bob],
    )
    summary = bill(engine, cat, [alice, bob], tmp_path, now=at("2026-12-30 00:00"))
    assert (summary.records, summary.late_records) == (1, 1)
    invoice = the_invoice(engine, "bob")
    assert links_of(engine, invoice.id) == {"late;1;10": "late_usage"}
    # 20.00 + 2.00 = 22.00; 19 % = 4.18
    assert totals(invoice) == (22_000_000, 4_180_000, 26_180_000)


def test_draft_left_open_while_the_next_period_takes_its_late_record(engine, tmp_path) -> None:
    """A draft of November is still open when December is billed: December takes the
    November record no invoice holds as late usage, and November, run again, leaves it
    there (before the fix it tried to link it a second time and could never be
    written again)."""
    cat = catalog(taxes=[VAT])
    alice = account("alice")
    write_records(
        tmp_path, [record("n1;1;10", "alice", at("2026-11-05 10:00"), charged=1_000_000)], [alice]
    )
    bill(engine, cat, [alice], tmp_path, now=at("2026-12-02 00:00"))  # November: a draft
    # a November record arrives; December is billed before November is run again
    write_records(
        tmp_path, [record("n2;1;10", "alice", at("2026-11-25 10:00"), charged=2_000_000)], [alice]
    )
    bill(engine, cat, [alice], tmp_path, period="2026-12", now=DECEMBER_DONE)
    (december,) = [i for i in invoices_of(engine, "alice") if i.state == "final"]
    assert links_of(engine, december.id) == {"n2;1;10": "late_usage"}
    # 20.00 + 2.00 = 22.00; 19 % = 4.18
    assert totals(december) == (22_000_000, 4_180_000, 26_180_000)
    # November's run finalises its draft without the record December holds
    summary = bill(engine, cat, [alice], tmp_path, now=DECEMBER_DONE + 60)
    assert (summary.drafts_refreshed, summary.finalized, summary.records) == (1, 1, 1)
    (november,) = [i for i in invoices_of(engine, "alice") if i.id != december.id]
    assert (november.state, november.number) == ("final", "INV-000002")
    assert links_of(engine, november.id) == {"n1;1;10": "usage"}
    # 20.00 + 1.00 = 21.00; 19 % = 3.99
    assert totals(november) == (21_000_000, 3_990_000, 24_990_000)


def test_period_billed_after_the_next_one_keeps_its_fee_only(engine, tmp_path) -> None:
    """November never billed, December billed first: November's records are December's
    late usage; November's own run then bills its fee, not the records again."""
    cat = catalog(taxes=[VAT])
    bob = account("bob")
    write_records(
        tmp_path, [record("n1;1;10", "bob", at("2026-11-05 10:00"), charged=1_000_000)], [bob]
    )
    bill(engine, cat, [bob], tmp_path, period="2026-12", now=DECEMBER_DONE)
    (december,) = invoices_of(engine, "bob")
    assert links_of(engine, december.id) == {"n1;1;10": "late_usage"}
    summary = bill(engine, cat, [bob], tmp_path, now=DECEMBER_DONE + 60)
    assert (summary.invoices_created, summary.records) == (1, 0)
    (november,) = [i for i in invoices_of(engine, "bob") if i.id != december.id]
    assert shown(items_of(engine, november.id)) == [
        ("recurring", "Postpaid Standard: recurring fee", None, 20_000_000),
        ("tax", "VAT 19 %", None, 3_800_000),  # 19 % of 20.00
    ]
    assert links_of(engine, december.id) == {"n1;1;10": "late_usage"}


def test_crediting_every_line_credits_the_invoice_total(engine, tmp_path: Path) -> None:
    base = catalog(taxes=[VAT])
    free = dataclasses.replace(standard_plan(base), id="usage-only", name="Usage", recurring_fee=0)
    cat = with_plans(base, free)
    dora = account("dora", plan="usage-only")
    write_records(
        tmp_path,
        [
            record("d1;1;10", "dora", at("2026-11-05 10:00"), charged=30_000, plan="usage-only"),
            record(
                "d2;1;100",
                "dora",
                at("2026-11-06 10:00"),
                service="voice",
                charged=30_000,
                destination="national",
                plan="usage-only",
            ),
        ],
        [dora],
    )
    bill(engine, cat, [dora], tmp_path)
    invoice = the_invoice(engine, "dora")
    # 0.03 + 0.03 = 0.06; 19 % = 0.0114 -> 0.01; total 0.07
    assert totals(invoice) == (60_000, 10_000, 70_000)
    with engine.begin() as connection:
        note_id, _ = create_credit_note(
            connection,
            invoice.id,
            [CreditLine(1), CreditLine(2)],
            reason="goodwill: the whole invoice",
            now=NOVEMBER_DONE + 60,
            actor="ops",
        )
        note = connection.execute(select(credit_notes).where(credit_notes.c.id == note_id)).one()
    # the whole invoice credited: 0.06 and its 0.01 of tax, not 0.0057 -> 0.01 twice
    assert (note.subtotal_minor, note.tax_minor, note.total_minor) == (60_000, 10_000, 70_000)
