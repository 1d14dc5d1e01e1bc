"""Reseller (wholesale) billing (docs/invoicing.md, "Resellers"), on SQLite and
PostgreSQL: the retail invoices of a reseller's subscribers issued and numbered by the
reseller's billing entity, the wholesale invoice of the reseller priced at its
wholesale price list (amounts worked out by hand), reruns, and every error path.

The period is November 2026 in the demo catalog's Europe/Berlin (30 local days); EUR
has two decimals (10,000 micro-units a cent); VAT 19 %.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from ocs.billing.accounts import BillingAccount
from ocs.billing.audit import audit_period
from ocs.billing.bill_run import BillRunOptions, BillRunSummary, run_bill_run
from ocs.billing.database import migrate, open_database
from ocs.billing.lifecycle import CreditLine, create_credit_note, void
from ocs.billing.off_cycle import run_off_cycle
from ocs.billing.representation import customer_bill, list_bills
from ocs.billing.schema import (
    invoice_item_records,
    invoice_items,
    invoices,
    number_sequences,
    wholesale_items,
    wholesale_sources,
)
from ocs.billing.usage import BillingError
from ocs.billing_runner import summary_lines
from quota_engine.catalog.model import Catalog, Reseller, WholesalePrice
from tests.ocs.billing.factory import account, at, catalog, record, write_records

MIB = 1_048_576
NOVEMBER_DONE = at("2026-12-10 00:00")  # past the 3-day grace period of November

ACME = Reseller(
    id="acme",
    name="Acme Mobile Ltd",
    entity="acme",
    invoice_number_format="RES-{seq:06d}",
    wholesale_account="acme-wholesale",
    tax_category="standard",
    wholesale=(
        WholesalePrice("data", "", 1_500, MIB),  # 0.0015 EUR per MiB
        WholesalePrice("data", "roaming-eu", 4_000, MIB),  # 0.004 EUR per MiB
        WholesalePrice("voice", "", 7_000, 60),  # 0.007 EUR per minute
        WholesalePrice("sms", "", 2_500, 1),  # 0.0025 EUR per SMS
    ),
    address=("1 Main Street", "Dublin 2", "Ireland"),
    vat_id="IE1234567X",
    support="care@acme.example",
)


@pytest.fixture
def engine(database_url: str):
    migrate(database_url)
    engine = open_database(database_url)
    yield engine
    engine.dispose()


def reseller_catalog(*resellers: Reseller) -> Catalog:
    return dataclasses.replace(catalog(), resellers=resellers or (ACME,))


def bill(
    engine: Engine,
    cat: Catalog,
    accounts: list[BillingAccount],
    records_dir: Path,
    *,
    errors: bool = False,
    now: int = NOVEMBER_DONE,
    **options: Any,
) -> BillRunSummary:
    summary = run_bill_run(
        engine,
        cat,
        accounts,
        records_dir,
        period="2026-11",
        now=now,
        options=BillRunOptions(**options),
    )
    if not errors:
        assert summary.errors == []
    return summary


def invoice_of(engine: Engine, account_id: str) -> Any:
    with engine.connect() as connection:
        (row,) = connection.execute(
            select(invoices).where(invoices.c.account == account_id, invoices.c.state != "void")
        ).all()
    return row


def invoice_of_id(engine: Engine, account_id: str) -> str:
    return str(invoice_of(engine, account_id).id)


def items_of(engine: Engine, invoice_id: str) -> list[Any]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                select(invoice_items)
                .where(invoice_items.c.invoice_id == invoice_id)
                .order_by(invoice_items.c.position)
            )
        )


def count_invoices(engine: Engine) -> int:
    with engine.connect() as connection:
        return len(connection.execute(select(invoices.c.id)).all())


# ---------------------------------------------------------------- the issuer per invoice


def test_retail_invoices_are_numbered_in_the_resellers_sequence(engine, tmp_path):
    accounts = [
        account("r1", reseller="acme"),
        account("r2", reseller="acme"),
        account("own"),
    ]
    bill(engine, reseller_catalog(), accounts, tmp_path)
    r1, r2, own = (invoice_of(engine, a) for a in ("r1", "r2", "own"))
    # the reseller's subscribers in account order in its own sequence; the operator's
    # own customer in the operator's
    assert (r1.entity, r1.number) == ("acme", "RES-000001")
    assert (r2.entity, r2.number) == ("acme", "RES-000002")
    assert (own.entity, own.number) == ("default", "INV-000001")
    with engine.connect() as connection:
        sequences = {
            (row.entity, row.series): (row.format, row.next_value)
            for row in connection.execute(select(number_sequences))
        }
    assert sequences[("acme", "invoice")] == ("RES-{seq:06d}", 3)
    assert sequences[("default", "invoice")] == ("INV-{seq:06d}", 2)


def test_a_draft_moves_to_the_resellers_entity_when_its_account_joins_it(engine, tmp_path):
    cat = reseller_catalog()
    bill(engine, cat, [account("r1")], tmp_path, finalize=False)
    assert invoice_of(engine, "r1").entity == "default"
    bill(engine, cat, [account("r1", reseller="acme")], tmp_path)
    moved = invoice_of(engine, "r1")
    assert (moved.entity, moved.number) == ("acme", "RES-000001")


def test_an_unknown_reseller_is_an_error_of_its_account_only(engine, tmp_path):
    accounts = [account("ghosted", reseller="ghost"), account("r1", reseller="acme")]
    summary = bill(engine, reseller_catalog(), accounts, tmp_path, errors=True)
    assert summary.errors == [
        (
            "ghosted",
            "account ghosted: reseller 'ghost' is not in catalog demo-1 (resellers: acme)",
        )
    ]
    assert invoice_of(engine, "r1").number == "RES-000001"
    assert count_invoices(engine) == 1


def test_a_hierarchy_belongs_to_one_reseller(engine, tmp_path):
    accounts = [
        account("boss", reseller="acme"),
        account("kid", parent="boss", reseller="other"),
        account("solo"),
    ]
    summary = bill(engine, reseller_catalog(), accounts, tmp_path, errors=True)
    assert summary.errors == [
        (
            "boss",
            "account kid of reseller 'other' is on the invoice of boss, which is reseller "
            "'acme''s: a hierarchy belongs to one reseller",
        )
    ]
    assert invoice_of(engine, "solo").number == "INV-000001"
    # a child without a reseller of its own is the reseller's subscriber with its parent
    accounts[1] = account("kid", parent="boss")
    bill(engine, reseller_catalog(), accounts, tmp_path)
    boss = invoice_of(engine, "boss")
    assert boss.number == "RES-000001"
    assert {i.child_account for i in items_of(engine, boss.id)} == {None, "kid"}


def test_a_reseller_with_the_operators_entity_is_refused(engine, tmp_path):
    clash = dataclasses.replace(ACME, entity="default")
    accounts = [account("r1", reseller="acme"), account("own")]
    summary = bill(engine, reseller_catalog(clash), accounts, tmp_path, errors=True)
    assert summary.errors == [
        (
            "r1",
            "account r1: reseller 'acme' has the operator's billing entity 'default': its "
            "invoices would be numbered in the operator's sequence",
        )
    ]
    assert invoice_of(engine, "own").number == "INV-000001"
    # and its name never becomes the operator's invoices' issuer
    own = invoice_of_id(engine, "own")
    with engine.connect() as connection:
        assert customer_bill(connection, own)["relatedParty"] == [
            {"id": "default", "role": "issuer", "@referredType": "Organization"}
        ]


def test_an_off_cycle_invoice_of_a_subscriber_is_the_resellers(engine, tmp_path):
    subscriber = account("r1", reseller="acme")
    write_records(tmp_path, [record("s1;1;10", "r1", at("2026-11-05 10:00"))], [subscriber])
    made = run_off_cycle(
        engine, reseller_catalog(), [subscriber], tmp_path, "r1", until=at("2026-11-16 00:00"),
        now=at("2026-11-16 00:00"),
    )  # fmt: skip
    assert made.number == "RES-000001"
    assert invoice_of(engine, "r1").entity == "acme"
    # an unknown reseller: refused, saying why
    with pytest.raises(BillingError, match="reseller 'ghost' is not in catalog demo-1"):
        run_off_cycle(
            engine, reseller_catalog(), [account("g", reseller="ghost")], tmp_path, "g",
            until=at("2026-11-16 00:00"),
        )  # fmt: skip


# ---------------------------------------------------------------- the wholesale invoice


def acceptance_inputs(directory: Path) -> list[BillingAccount]:
    """Two retail customers of Acme and one of the operator's own, with their November
    usage (the retail ``charged`` is what the reseller's retail tariff charged)."""
    accounts = [
        account("alice", reseller="acme"),
        account("bob", reseller="acme"),
        account("own"),
    ]
    day = at("2026-11-10 10:00")
    records = [
        # alice: 300.5 MiB at home, 50 MiB roaming in the EU, a 10-minute national call
        record("a1;1;10", "alice", day, used=315_097_088, charged=1_500_000),
        record("a2;1;10", "alice", day, used=50 * MIB, charged=250_000, zone="eu"),
        record(
            "a3;1;100",
            "alice",
            day,
            service="voice",
            used=600,
            charged=900_000,
            destination="national",
        ),  # fmt: skip
        # bob: 1,000 MiB at home, three national SMS, a 125-second national call
        record("b1;1;10", "bob", day, used=1_000 * MIB, charged=2_000_000),
        *(
            record(
                f"b{i};1;200",
                "bob",
                day,
                service="sms",
                used=1,
                charged=90_000,
                destination="national",
            )  # fmt: skip
            for i in (2, 3, 4)
        ),
        record(
            "b5;1;100",
            "bob",
            day,
            service="voice",
            used=125,
            charged=190_000,
            destination="national",
        ),  # fmt: skip
        # the operator's own customer: not the reseller's
        record("o1;1;10", "own", day, used=100 * MIB, charged=1_000_000),
    ]
    write_records(directory, records, accounts)
    return accounts


def test_acceptance_wholesale_invoice_is_the_usage_at_wholesale_prices(engine, tmp_path):
    accounts = acceptance_inputs(tmp_path)
    summary = bill(engine, reseller_catalog(), accounts, tmp_path)
    assert (summary.invoices_created, summary.wholesale_created) == (3, 1)
    # 26.95 + 26.73 + 24.99 retail, 2.67 wholesale
    assert summary.totals_minor == {"EUR": 81_340_000}
    assert "  wholesale invoices: 1 created, 0 drafts refreshed" in summary_lines(
        summary, reseller_catalog()
    )

    # the retail invoices, numbered in Acme's sequence, issued by Acme
    alice, bob, own = (invoice_of(engine, a) for a in ("alice", "bob", "own"))
    assert (alice.entity, alice.number, bob.entity, bob.number) == (
        "acme", "RES-000001", "acme", "RES-000002",
    )  # fmt: skip
    # alice: fee 20.00 + data 1.50 + EU roaming 0.25 + voice 0.90 = 22.65; VAT 19 % of
    # 22.65 = 4.3035 -> 4.30; total 26.95
    assert (alice.subtotal_minor, alice.tax_minor, alice.total_minor) == (
        22_650_000, 4_300_000, 26_950_000,
    )  # fmt: skip
    # bob: fee 20.00 + data 2.00 + SMS 3 x 0.09 + voice 0.19 = 22.46; VAT 4.2674 -> 4.27
    assert (bob.subtotal_minor, bob.tax_minor, bob.total_minor) == (
        22_460_000, 4_270_000, 26_730_000,
    )  # fmt: skip
    # the operator's own customer keeps the operator's sequence
    assert (own.entity, own.number, own.total_minor) == ("default", "INV-000001", 24_990_000)

    # the wholesale invoice: to Acme's operator-side account, issued and numbered by the
    # operator (after its own customer's invoice)
    wholesale = invoice_of(engine, "acme-wholesale")
    assert (wholesale.entity, wholesale.number, wholesale.state) == (
        "default", "INV-000002", "final",
    )  # fmt: skip
    assert (wholesale.period_start, wholesale.period_end) == (
        at("2026-11-01 00:00"), at("2026-12-01 00:00"),
    )  # fmt: skip
    lines = [
        (i.kind, i.service, i.category, i.quantity, i.unit, i.amount_minor, i.tax_rate_ppm)
        for i in items_of(engine, wholesale.id)
    ]
    assert lines == [
        # EU roaming data: 50 MiB x 0.004 = 0.20
        ("usage", "data", "roaming-eu/weekday", 50 * MIB, "octets", 200_000, 190_000),
        # home data: 300.5 + 1,000 = 1,300.5 MiB (1,363,673,088 octets) x 0.0015
        # = 1.95075 -> 1.95 (the "" entry prices the category "weekday")
        ("usage", "data", "weekday", 1_363_673_088, "octets", 1_950_000, 190_000),
        # SMS: 3 x 0.0025 = 0.0075 -> 0.01 (half away from zero)
        ("usage", "sms", "national/weekday", 3, "events", 10_000, 190_000),
        # voice: 600 + 125 = 725 s x 0.007 / 60 s = 0.084583 -> 0.08
        ("usage", "voice", "national/weekday", 725, "seconds", 80_000, 190_000),
        # VAT 19 % of 0.20 + 1.95 + 0.01 + 0.08 = 2.24: 0.4256 -> 0.43
        ("tax", None, "standard", None, None, 430_000, 190_000),
    ]
    assert (wholesale.subtotal_minor, wholesale.tax_minor, wholesale.total_minor) == (
        2_240_000, 430_000, 2_670_000,
    )  # fmt: skip
    with engine.connect() as connection:
        # the subscribers' records stay on their retail lines only
        linked = connection.execute(
            select(invoice_item_records.c.record_id)
            .join(invoice_items, invoice_items.c.id == invoice_item_records.c.item_id)
            .where(invoice_items.c.invoice_id == wholesale.id)
        ).all()
        assert linked == []
        sources = set(
            connection.execute(
                select(wholesale_sources.c.retail_invoice_id).where(
                    wholesale_sources.c.wholesale_invoice_id == wholesale.id
                )
            ).scalars()
        )
        assert sources == {alice.id, bob.id}
        prices = sorted(
            (row.price_micro, row.per_units) for row in connection.execute(select(wholesale_items))
        )
        assert prices == [(1_500, MIB), (2_500, 1), (4_000, MIB), (7_000, 60)]

    # a rerun makes nothing twice
    before = count_invoices(engine)
    again = bill(engine, reseller_catalog(), accounts, tmp_path)
    assert (again.invoices_created, again.wholesale_created, again.wholesale_refreshed) == (
        0, 0, 0,
    )  # fmt: skip
    assert count_invoices(engine) == before == 4
    assert invoice_of(engine, "acme-wholesale").number == "INV-000002"


def test_a_wholesale_draft_takes_what_is_final_and_is_refreshed_until_due(engine, tmp_path):
    accounts = acceptance_inputs(tmp_path)
    cat = reseller_catalog(dataclasses.replace(ACME, bill_cycle_day=15))
    # retail drafts only: nothing final to sum, no wholesale invoice yet
    summary = bill(engine, cat, accounts, tmp_path, finalize=False)
    assert summary.wholesale_created == 0
    # the retail invoices final (grace over on 2026-12-04); Acme's wholesale period
    # 2026-11-15 to 2026-12-15 is not over: a draft of them
    summary = bill(engine, cat, accounts, tmp_path)
    draft = invoice_of(engine, "acme-wholesale")
    assert (summary.wholesale_created, draft.state, draft.total_minor) == (1, "draft", 2_670_000)
    # run again after its grace period: refreshed and finalised, the same amounts
    summary = bill(engine, cat, accounts, tmp_path, now=at("2026-12-20 00:00"))
    final = invoice_of(engine, "acme-wholesale")
    assert summary.wholesale_refreshed == 1
    assert (final.id, final.state, final.number, final.total_minor) == (
        draft.id, "final", "INV-000002", 2_670_000,
    )  # fmt: skip


def test_usage_without_a_wholesale_price_is_an_error_of_that_reseller_only(engine, tmp_path):
    accounts = acceptance_inputs(tmp_path)
    data_only = dataclasses.replace(
        ACME, wholesale=tuple(p for p in ACME.wholesale if p.service == "data")
    )
    summary = bill(engine, reseller_catalog(data_only), accounts, tmp_path, errors=True)
    assert summary.errors == [
        (
            "acme-wholesale",
            "reseller acme: its wholesale price list has no price for the usage of sms in "
            "category 'national/weekday', voice in category 'national/weekday': no "
            "wholesale invoice made",
        )
    ]
    # every retail invoice is made; no wholesale invoice, nothing half-written
    assert {invoice_of(engine, a).number for a in ("alice", "bob", "own")} == {
        "RES-000001", "RES-000002", "INV-000001",
    }  # fmt: skip
    assert count_invoices(engine) == 3
    with engine.connect() as connection:
        assert connection.execute(select(wholesale_sources)).all() == []
    # the price list completed: the next run makes it
    summary = bill(engine, reseller_catalog(), accounts, tmp_path)
    assert summary.wholesale_created == 1
    assert invoice_of(engine, "acme-wholesale").total_minor == 2_670_000


def test_the_wholesale_account_gets_its_wholesale_invoice_and_no_retail_one(engine, tmp_path):
    # the reseller as the operator's customer: an account of the store (its contact,
    # e-mail delivery and payments), postpaid, on the reseller's cycle day
    wholesale_account = account("acme-wholesale")
    accounts = [*acceptance_inputs(tmp_path), wholesale_account]
    summary = bill(engine, reseller_catalog(), accounts, tmp_path)
    assert (summary.accounts, summary.invoices_created, summary.wholesale_created) == (3, 3, 1)
    only = invoice_of(engine, "acme-wholesale")  # one invoice: the wholesale one
    assert (only.number, only.total_minor) == ("INV-000002", 2_670_000)
    assert audit(engine, tmp_path, accounts) == []
    # nor off-cycle
    with pytest.raises(BillingError, match="receives reseller 'acme'.s wholesale invoices"):
        run_off_cycle(
            engine, reseller_catalog(), accounts, tmp_path, "acme-wholesale",
            until=at("2026-12-05 00:00"),
        )  # fmt: skip


def test_a_retail_invoice_of_the_wholesale_account_is_an_error(engine, tmp_path):
    accounts = [*acceptance_inputs(tmp_path), account("acme-wholesale")]
    # billed before it was Acme's wholesale account: a retail invoice of the period
    bill(engine, catalog(), [account("acme-wholesale")], tmp_path)
    retail = invoice_of(engine, "acme-wholesale")
    summary = bill(engine, reseller_catalog(), accounts, tmp_path, errors=True)
    assert summary.errors == [
        (
            "acme-wholesale",
            f"reseller acme: its wholesale account acme-wholesale has a retail invoice "
            f"{retail.id} for the period from 2026-11-01: void it (the account gets no "
            "retail invoice while it receives the wholesale invoices)",
        )
    ]
    assert invoice_of(engine, "acme-wholesale").id == retail.id  # untouched


def test_a_voided_wholesale_invoice_is_replaced_from_the_same_retail_invoices(engine, tmp_path):
    accounts = acceptance_inputs(tmp_path)
    bill(engine, reseller_catalog(), accounts, tmp_path)
    first = invoice_of(engine, "acme-wholesale")
    with engine.begin() as connection:
        void(connection, first.id, reason="wrong price list", now=NOVEMBER_DONE, actor="test")
    summary = bill(engine, reseller_catalog(), accounts, tmp_path)
    assert summary.wholesale_created == 1
    replacement = invoice_of(engine, "acme-wholesale")
    assert replacement.id != first.id
    assert (replacement.number, replacement.total_minor) == ("INV-000003", 2_670_000)


def test_the_tmf678_bill_names_its_issuer(engine, tmp_path):
    accounts = acceptance_inputs(tmp_path)
    bill(engine, reseller_catalog(), accounts, tmp_path)
    ids = {a: invoice_of(engine, a).id for a in ("alice", "own", "acme-wholesale")}
    with engine.connect() as connection:
        retail = customer_bill(connection, ids["alice"])
        own = customer_bill(connection, ids["own"])
        wholesale = customer_bill(connection, ids["acme-wholesale"])
        _, listed = list_bills(connection, account="bob")
    acme_party = {
        "id": "acme",
        "role": "issuer",
        "@referredType": "Organization",
        "name": "Acme Mobile Ltd",
        "reseller": "acme",
    }
    assert (retail["billNo"], retail["relatedParty"]) == ("RES-000001", [acme_party])
    assert listed[0]["relatedParty"] == [acme_party]
    operator_party = {"id": "default", "role": "issuer", "@referredType": "Organization"}
    assert own["relatedParty"] == [operator_party] and "wholesaleOf" not in own
    assert wholesale["relatedParty"] == [operator_party]
    assert wholesale["wholesaleOf"] == {"reseller": "acme"}
    assert wholesale["billingAccount"]["id"] == "acme-wholesale"
    assert wholesale["taxIncludedAmount"] == {"unit": "EUR", "value": "2.67"}


# ---------------------------------------------------------------- the audit


def audit(engine: Engine, directory: Path, accounts: list[BillingAccount]) -> list[tuple]:
    report = audit_period(
        engine, directory, period="2026-11", timezone="Europe/Berlin",
        late_window=62 * 86_400, accounts=accounts,
    )  # fmt: skip
    return [(d.kind, d.line, d.message) for d in report.discrepancies]


def test_the_audit_of_a_period_with_a_reseller_is_clean(engine, tmp_path):
    accounts = acceptance_inputs(tmp_path)
    bill(engine, reseller_catalog(), accounts, tmp_path)
    assert audit(engine, tmp_path, accounts) == []


def test_the_audit_finds_a_wrong_wholesale_invoice(engine, tmp_path):
    accounts = acceptance_inputs(tmp_path)
    # Acme's wholesale period from 2026-11-15: a draft holding the final retail invoices
    cat = reseller_catalog(dataclasses.replace(ACME, bill_cycle_day=15))
    bill(engine, cat, accounts, tmp_path)
    wholesale = invoice_of(engine, "acme-wholesale")
    assert wholesale.state == "draft" and audit(engine, tmp_path, accounts) == []
    lines = {i.service + "/" + (i.category or ""): i for i in items_of(engine, wholesale.id)
             if i.kind == "usage"}  # fmt: skip
    voice, sms = lines["voice/national/weekday"], lines["sms/national/weekday"]
    with engine.begin() as connection:
        # a voice quantity that is not the retail usage (and so not its amount either)
        connection.execute(
            update(invoice_items).where(invoice_items.c.id == voice.id).values(quantity=726)
        )
        # an SMS price that does not give the amount
        connection.execute(
            update(wholesale_items)
            .where(wholesale_items.c.item_id == sms.id)
            .values(price_micro=5_000)
        )
    assert audit(engine, tmp_path, accounts) == [
        (
            "wholesale_amount",
            sms.position,
            "amount 10000 (micro 10000), its quantity 3 at 5000 per 1 units is 20000",
        ),
        # 726 s x 0.007 / 60 = 0.0847 is still 0.08: only the quantity is wrong
        (
            "wholesale_quantity",
            voice.position,
            "voice national/weekday: quantity 726 seconds, the retail invoices it holds bill 725",
        ),
    ]


def test_the_audit_finds_a_retail_invoice_on_no_wholesale_invoice(engine, tmp_path):
    accounts = acceptance_inputs(tmp_path)
    cat = reseller_catalog(dataclasses.replace(ACME, bill_cycle_day=15))
    bill(engine, cat, accounts, tmp_path)
    wholesale, bob = invoice_of(engine, "acme-wholesale"), invoice_of(engine, "bob")
    with engine.begin() as connection:
        connection.execute(
            update(wholesale_sources)
            .where(wholesale_sources.c.retail_invoice_id == bob.id)
            .values(released=True)
        )
    found = audit(engine, tmp_path, accounts)
    kinds = sorted(kind for kind, _, _ in found)
    # bob's units are no longer held: data, SMS and voice differ, and bob is unbilled
    assert kinds == ["wholesale_quantity"] * 3 + ["wholesale_unbilled"]
    assert (
        "wholesale_unbilled",
        None,
        "final invoice RES-000002 of reseller entity acme is on no live wholesale invoice: "
        "its usage is not billed to the reseller",
    ) in found
    assert wholesale.state == "draft"


def test_the_daily_run_makes_the_wholesale_invoice_of_the_period_ending_that_day(engine, tmp_path):
    accounts = acceptance_inputs(tmp_path)
    cat = reseller_catalog()

    def daily(day: date, now: int) -> BillRunSummary:
        summary = run_bill_run(engine, cat, accounts, tmp_path, day=day, now=now)
        assert summary.errors == []
        return summary

    # 2026-12-01, an hour after the period: retail drafts, nothing final to wholesale
    assert daily(date(2026, 12, 1), at("2026-12-01 01:00")).wholesale_created == 0
    # a day that ends no wholesale period of Acme's (cycle day 1): no wholesale step
    assert daily(date(2026, 12, 2), at("2026-12-02 01:00")).wholesale_created == 0
    # the schedule runs 2026-12-01 again on 2026-12-04, past the grace period: the
    # retail invoices are finalised, then the wholesale invoice made and finalised
    summary = daily(date(2026, 12, 1), at("2026-12-04 02:00"))
    assert (summary.finalized, summary.wholesale_created) == (4, 1)
    wholesale = invoice_of(engine, "acme-wholesale")
    assert (wholesale.state, wholesale.number, wholesale.total_minor) == (
        "final", "INV-000002", 2_670_000,
    )  # fmt: skip


def test_a_resellers_credit_notes_are_numbered_in_its_own_credit_note_sequence(engine, tmp_path):
    accounts = acceptance_inputs(tmp_path)
    cat = reseller_catalog(dataclasses.replace(ACME, credit_note_number_format="RES-CN-{seq:04d}"))
    bill(engine, cat, accounts, tmp_path)
    alice, own = invoice_of_id(engine, "alice"), invoice_of_id(engine, "own")
    with engine.begin() as connection:
        # the caller's format (the operator's setting) is only for a sequence not made yet
        _, retail_note = create_credit_note(
            connection, alice, [CreditLine(position=1, amount_micro=1_000_000)],
            reason="goodwill", now=NOVEMBER_DONE, actor="test",
        )  # fmt: skip
        _, own_note = create_credit_note(
            connection, own, [CreditLine(position=1, amount_micro=1_000_000)],
            reason="goodwill", now=NOVEMBER_DONE, actor="test",
        )  # fmt: skip
    assert (retail_note, own_note) == ("RES-CN-0001", "CN-000001")
