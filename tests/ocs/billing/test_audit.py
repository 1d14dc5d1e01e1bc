"""``ocs bill-audit``: a real bill run audits clean; each thing broken afterwards, in the
database or the segments, is reported as exactly the discrepancy it is; given the
accounts, an account the bill run skipped is found too. The command reads the accounts
from a real Redis provisioned with ``ocs provision``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy import Engine, delete, insert, select, update

from ocs.bill_audit_command import add_audit_command, audit_command
from ocs.billing.accounts import BillingAccount, PlanChange
from ocs.billing.audit import KINDS, AuditError, AuditReport, audit_period, number_pattern
from ocs.billing.bill_run import BillRunOptions, run_bill_run
from ocs.billing.compose import ComposedInvoice, InvoiceLine
from ocs.billing.database import migrate, open_database
from ocs.billing.invoices import write_invoice
from ocs.billing.lifecycle import CreditLine, create_credit_note
from ocs.billing.off_cycle import run_off_cycle
from ocs.billing.periods import PeriodError
from ocs.billing.schema import (
    credit_notes,
    invoice_item_records,
    invoice_items,
    invoices,
    number_sequences,
)
from ocs.records.segment_format import parse_segment_name
from tests.helpers import ROOT
from tests.ocs.billing.factory import account, at, catalog, record, write_records

MIB = 1_048_576
DAY = 86_400
BERLIN = "Europe/Berlin"

ALICE = account("alice", created=at("2026-01-10 12:00"))
CORP = account("corp", kind="postpaid")
LINE1 = account("line1", parent="corp")
EXEMPT = account("exempt", tax_exempt=True)
PREPAID = account("pre", kind="prepaid")
ACCOUNTS = [ALICE, CORP, LINE1, EXEMPT, PREPAID]


def records() -> list[dict[str, Any]]:
    return [
        record("a1;1;10", "alice", at("2026-11-02 10:00"), used=MIB, charged=1_234_567),
        record("a2;1;10", "alice", at("2026-11-03 10:00"), used=2 * MIB, charged=1_000_000),
        record(
            "a3;1;100",
            "alice",
            at("2026-11-04 09:00"),
            service="voice",
            used=125,
            charged=300_004,
            destination="national",
        ),
        # October's, never billed: late usage on November's invoice
        record("a0;1;10", "alice", at("2026-10-20 10:00"), used=MIB, charged=500_000),
        record(
            "l1;0;200",
            "line1",
            at("2026-11-05 09:00"),
            service="sms",
            used=1,
            charged=90_000,
            destination="national",
        ),
        record("e1;1;10", "exempt", at("2026-11-06 09:00"), used=3 * MIB, charged=2_000_000),
        record("p1;1;10", "pre", at("2026-11-07 09:00"), used=MIB, charged=100_000),
    ]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrate(database_url)
    engine = open_database(database_url)
    yield engine
    engine.dispose()


def bill(engine: Engine, directory: Path, *, finalize: bool | None = None) -> None:
    write_records(directory, records(), ACCOUNTS)
    summary = run_bill_run(
        engine,
        catalog(),
        ACCOUNTS,
        directory,
        period="2026-11",
        now=at("2026-12-10 00:00"),
        options=BillRunOptions(entity="acme", finalize=finalize),
    )
    assert summary.errors == []
    assert summary.invoices_created == 3


def audit(
    engine: Engine,
    directory: Path,
    period: str = "2026-11",
    accounts: Sequence[BillingAccount] | None = None,
) -> AuditReport:
    return audit_period(
        engine,
        directory,
        period=period,
        timezone=BERLIN,
        late_window=62 * DAY,
        accounts=accounts,
    )


def found(report: AuditReport) -> list[tuple[str, str | None, int | None, str | None]]:
    return [(d.kind, d.invoice, d.line, d.record) for d in report.discrepancies]


def of_accounts(report: AuditReport) -> list[tuple[str, str | None, str | None]]:
    return [(d.kind, d.account, d.record) for d in report.discrepancies]


def invoice_of(engine: Engine, account_id: str) -> Any:
    with engine.connect() as connection:
        return connection.execute(
            select(invoices).where(invoices.c.account == account_id, invoices.c.state != "void")
        ).one()


def line(engine: Engine, account_id: str, description: str) -> Any:
    document = invoice_of(engine, account_id).id
    with engine.connect() as connection:
        return connection.execute(
            select(invoice_items).where(
                invoice_items.c.invoice_id == document,
                invoice_items.c.description == description,
            )
        ).one()


def test_a_bill_run_audits_clean(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path)
    report = audit(engine, tmp_path)
    assert found(report) == []
    assert report.clean
    # alice, corp (with line1's section), exempt; the prepaid account has none
    assert report.invoices == 3
    # a0 (late, linked), a1, a2, a3, l1, e1; p1 is a prepaid account's
    assert report.records == 6
    # data 2.234567 -> 2.23, voice 0.300004 -> 0.30; the others are whole cents
    assert report.rounding_micro == {"EUR": -4567 - 4}
    # INV-000001..3 of acme
    assert report.numbered_documents == 3
    assert set(report.by_kind()) == set(KINDS) and not any(report.by_kind().values())
    assert report.as_json()["discrepancies_by_kind"]["unbilled"] == 0


def test_drafts_audit_clean_too(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path, finalize=False)
    report = audit(engine, tmp_path)
    assert found(report) == []
    assert (report.invoices, report.records, report.numbered_documents) == (3, 6, 0)


def test_another_month_has_nothing_to_audit(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path)
    report = audit(engine, tmp_path, "2026-12")
    # numbers are global to their sequence: still checked
    assert (report.invoices, report.records, report.numbered_documents) == (0, 0, 3)
    assert report.clean


def test_a_record_exported_after_the_run_is_unbilled(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path)
    write_records(tmp_path, [record("a9;1;10", "alice", at("2026-11-15 10:00"))], ACCOUNTS)
    # a record of the prepaid account is no billed account's
    write_records(tmp_path, [record("p9;1;10", "pre", at("2026-11-15 10:00"))], ACCOUNTS)
    # one of the next period is the next invoice's
    write_records(tmp_path, [record("a8;1;10", "alice", at("2026-12-01 00:00"))], ACCOUNTS)
    report = audit(engine, tmp_path)
    assert found(report) == [("unbilled", None, None, "a9;1;10")]
    assert report.discrepancies[0].text() == (
        "unbilled: record a9;1;10: record of account alice that ended 2026-11-15T09:00:00Z, "
        "in the period of its invoice, is on no live invoice line"
    )


def test_a_deleted_link_leaves_its_record_unbilled_and_its_line_wrong(
    engine, tmp_path: Path
) -> None:
    bill(engine, tmp_path, finalize=False)
    data = line(engine, "alice", "Data, weekday")
    with engine.begin() as connection:
        connection.execute(
            delete(invoice_item_records).where(invoice_item_records.c.record_id == "a2;1;10")
        )
    report = audit(engine, tmp_path)
    document = invoice_of(engine, "alice").id
    assert found(report) == [
        ("unbilled", None, None, "a2;1;10"),
        ("line_amount", document, data.position, None),
        ("line_quantity", document, data.position, None),
    ]
    assert report.discrepancies[1].message == "amount_micro 2234567, its 1 records charged 1234567"
    assert report.discrepancies[2].message == f"quantity {3 * MIB}, its 1 records used {MIB}"


def test_a_deleted_link_of_a_final_invoice(engine, tmp_path: Path) -> None:
    # a final invoice is protected by triggers: the test takes them away to break it
    bill(engine, tmp_path)
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.execute(sa.text("DROP TRIGGER invoice_item_records_immutable_delete"))
        else:
            connection.execute(
                sa.text("DROP TRIGGER invoice_item_records_immutable ON invoice_item_records")
            )
        connection.execute(
            delete(invoice_item_records).where(invoice_item_records.c.record_id == "l1;0;200")
        )
    sms = line(engine, "corp", "Sms, national, weekday")
    document = invoice_of(engine, "corp").id
    assert found(audit(engine, tmp_path)) == [
        ("unbilled", None, None, "l1;0;200"),
        ("line_amount", document, sms.position, None),
        ("line_quantity", document, sms.position, None),
    ]


def test_a_line_amount_changed_on_a_draft(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path, finalize=False)
    voice = line(engine, "alice", "Voice, national, weekday")
    document = invoice_of(engine, "alice")
    with engine.begin() as connection:
        connection.execute(
            update(invoice_items)
            .where(invoice_items.c.id == voice.id)
            .values(amount_micro=1_300_004, amount_minor=1_300_000)
        )
        # the invoice's totals follow, so that only the line and its tax are wrong
        connection.execute(
            update(invoices)
            .where(invoices.c.id == document.id)
            .values(
                subtotal_micro=document.subtotal_micro + 1_000_000,
                total_micro=document.total_micro + 1_000_000,
                subtotal_minor=document.subtotal_minor + 1_000_000,
                total_minor=document.total_minor + 1_000_000,
            )
        )
    report = audit(engine, tmp_path)
    tax = line(engine, "alice", "VAT 19 %")
    assert found(report) == [
        ("line_amount", document.id, voice.position, None),
        ("tax_mismatch", document.id, tax.position, None),
    ]
    assert report.discrepancies[0].message == "amount_micro 1300004, its 1 records charged 300004"
    # 20.00 + 2.23 + 1.30 + 0.50 = 24.03: 19 % is 4.5657 -> 4.57 (the run had 4.38)
    assert report.discrepancies[1].message == (
        "tax of standard at 190000 ppm is 4380000 (micro 4380000), recomputed 4570000 "
        "on a base of 24030000"
    )
    assert report.rounding_micro == {"EUR": -4567 - 4}


def test_a_line_rounded_wrong(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path, finalize=False)
    data = line(engine, "alice", "Data, weekday")
    document = invoice_of(engine, "alice")
    with engine.begin() as connection:
        connection.execute(
            update(invoice_items)
            .where(invoice_items.c.id == data.id)
            .values(amount_micro=2_235_000)
        )
        connection.execute(
            update(invoices)
            .where(invoices.c.id == document.id)
            .values(
                subtotal_micro=document.subtotal_micro + 433,
                total_micro=document.total_micro + 433,
            )
        )
    report = audit(engine, tmp_path)
    assert found(report) == [
        ("line_rounding", document.id, data.position, None),
        ("line_amount", document.id, data.position, None),
    ]
    assert report.discrepancies[0].message == (
        "amount_minor 2230000 is not amount_micro 2235000 rounded to 2 minor digits (2240000)"
    )
    assert report.rounding_micro == {"EUR": -5000 - 4}


def test_invoice_totals_that_are_not_the_sum_of_the_lines(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path, finalize=False)
    document = invoice_of(engine, "exempt")
    with engine.begin() as connection:
        connection.execute(
            update(invoices)
            .where(invoices.c.id == document.id)
            .values(
                subtotal_minor=document.subtotal_minor + 10_000,
                total_minor=document.total_minor + 10_000,
            )
        )
    report = audit(engine, tmp_path)
    assert found(report) == [
        ("invoice_total", document.id, None, None),
        ("invoice_total", document.id, None, None),
    ]
    # 20.00 fee + 2.00 data, no tax
    assert [d.message for d in report.discrepancies] == [
        "subtotal_minor is 22010000, its lines sum to 22000000",
        "total_minor is 22010000, its lines sum to 22000000",
    ]


def test_a_tax_line_changed_on_a_draft(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path, finalize=False)
    tax = line(engine, "corp", "VAT 19 %")
    document = invoice_of(engine, "corp")
    with engine.begin() as connection:
        connection.execute(
            update(invoice_items)
            .where(invoice_items.c.id == tax.id)
            .values(amount_micro=tax.amount_micro + 10_000, amount_minor=tax.amount_minor + 10_000)
        )
    report = audit(engine, tmp_path)
    assert found(report) == [
        ("invoice_total", document.id, None, None),
        ("invoice_total", document.id, None, None),
        ("invoice_total", document.id, None, None),
        ("invoice_total", document.id, None, None),
        ("tax_mismatch", document.id, tax.position, None),
    ]
    # corp: 20.00 + line1's 20.00 + 0.09 = 40.09; 19 % = 7.6171 -> 7.62
    assert tax.amount_minor == 7_620_000
    assert report.discrepancies[-1].message == (
        "tax of standard at 190000 ppm is 7630000 (micro 7630000), recomputed 7620000 "
        "on a base of 40090000"
    )
    assert [d.message.split(" is ")[0] for d in report.discrepancies[:4]] == [
        "tax_minor",
        "total_minor",
        "tax_micro",
        "total_micro",
    ]


def _move_tax(engine: Engine, document: Any, delta: int) -> None:
    """Shift an invoice's tax and total by ``delta`` so that its totals stay the sums."""
    with engine.begin() as connection:
        connection.execute(
            update(invoices)
            .where(invoices.c.id == document.id)
            .values(
                tax_micro=document.tax_micro + delta,
                total_micro=document.total_micro + delta,
                tax_minor=document.tax_minor + delta,
                total_minor=document.total_minor + delta,
            )
        )


def test_a_tax_line_missing(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path, finalize=False)
    tax = line(engine, "alice", "VAT 19 %")
    document = invoice_of(engine, "alice")
    with engine.begin() as connection:
        connection.execute(delete(invoice_items).where(invoice_items.c.id == tax.id))
    _move_tax(engine, document, -tax.amount_minor)
    report = audit(engine, tmp_path)
    assert found(report) == [("tax_missing", document.id, None, None)]
    # 20.00 + 2.23 + 0.30 + 0.50 = 23.03: 19 % = 4.3757 -> 4.38
    assert report.discrepancies[0].message == (
        "no tax line for standard at 190000 ppm: 4380000 on a base of 23030000"
    )


def test_a_tax_line_on_a_tax_exempt_invoice(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path, finalize=False)
    document = invoice_of(engine, "exempt")
    with engine.begin() as connection:
        connection.execute(
            insert(invoice_items).values(
                invoice_id=document.id,
                position=99,
                kind="tax",
                description="VAT 19 %",
                category="standard",
                amount_micro=4_180_000,
                amount_minor=4_180_000,
                tax_category="standard",
                tax_rate_ppm=190_000,
            )
        )
    _move_tax(engine, document, 4_180_000)
    report = audit(engine, tmp_path)
    assert found(report) == [("tax_unexpected", document.id, 99, None)]
    assert report.discrepancies[0].message == (
        "tax line of standard at 190000 ppm (4180000): no taxed line of that category and rate"
    )


def test_a_second_tax_line_of_one_rate(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path, finalize=False)
    tax = line(engine, "alice", "VAT 19 %")
    document = invoice_of(engine, "alice")
    with engine.begin() as connection:
        connection.execute(
            insert(invoice_items).values(
                invoice_id=document.id,
                position=98,
                kind="tax",
                description="VAT 19 % again",
                amount_micro=tax.amount_micro,
                amount_minor=tax.amount_minor,
                tax_category="standard",
                tax_rate_ppm=190_000,
            )
        )
    _move_tax(engine, document, tax.amount_minor)
    report = audit(engine, tmp_path)
    assert found(report) == [("tax_unexpected", document.id, 98, None)]
    assert "a second tax line of that category and rate" in report.discrepancies[0].message


def test_a_number_gap(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path)
    with engine.begin() as connection:
        connection.execute(
            update(number_sequences)
            .where(number_sequences.c.entity == "acme", number_sequences.c.series == "invoice")
            .values(next_value=number_sequences.c.next_value + 1)
        )
    report = audit(engine, tmp_path)
    assert found(report) == [("number_gap", None, None, None)]
    assert report.discrepancies[0].message == (
        "invoice number 'INV-000004' of entity 'acme' assigned by the sequence "
        "(next value 5) but on no invoice"
    )
    with engine.begin() as connection:
        connection.execute(update(number_sequences).values(next_value=8))
    report = audit(engine, tmp_path)
    assert [d.message for d in report.discrepancies] == [
        "invoice number 'INV-000004' to 'INV-000007' (4) of entity 'acme' assigned by the "
        "sequence (next value 8) but on no invoice"
    ]


def _numbered_invoice(engine: Engine, document: str, number: str, entity: str = "acme") -> None:
    """A final invoice of September (outside the audited month) holding ``number``."""
    with engine.begin() as connection:
        connection.execute(
            insert(invoices).values(
                id=document,
                account=document,
                entity=entity,
                period_start=at("2026-09-01 00:00"),
                period_end=at("2026-10-01 00:00"),
                currency="EUR",
                minor_digits=2,
                state="final",
                number=number,
                created_at=at("2026-10-02 00:00"),
                finalized_at=at("2026-10-02 00:00"),
            )
        )


def test_numbers_outside_the_sequence_unparsable_or_of_no_sequence(engine, tmp_path) -> None:
    bill(engine, tmp_path)
    _numbered_invoice(engine, "in_beyond", "INV-000009")
    _numbered_invoice(engine, "in_zero", "INV-000000")
    _numbered_invoice(engine, "in_odd", "INV-12")
    _numbered_invoice(engine, "in_other", "X-1", entity="other")
    report = audit(engine, tmp_path)
    assert found(report) == [
        ("number_beyond_sequence", "in_beyond", None, None),
        ("number_unparsable", "in_odd", None, None),
        ("number_beyond_sequence", "in_zero", None, None),
        ("number_no_sequence", "in_other", None, None),
    ]
    assert report.discrepancies[0].message == (
        "invoice in_beyond: number 'INV-000009' (9) is outside the values the sequence of "
        "entity 'acme' assigned (1 to 3)"
    )
    assert report.discrepancies[1].message == (
        "invoice in_odd: number 'INV-12' is not written in the format 'INV-{seq:06d}' of "
        "entity 'acme'"
    )
    assert report.numbered_documents == 7


def test_a_duplicate_number(postgres_url: str, tmp_path: Path) -> None:
    # the unique constraint makes it impossible: taken away (PostgreSQL can drop it)
    migrate(postgres_url)
    engine = open_database(postgres_url)
    try:
        bill(engine, tmp_path)
        with engine.begin() as connection:
            connection.execute(
                sa.text("ALTER TABLE invoices DROP CONSTRAINT uq_invoices_entity_number")
            )
        _numbered_invoice(engine, "in_copy", "INV-000002")
        report = audit(engine, tmp_path)
    finally:
        engine.dispose()
    owner = invoice_of_number(postgres_url, "INV-000002")
    assert found(report) == [("number_duplicate", min(owner, "in_copy"), None, None)]
    assert report.discrepancies[0].message == (
        "invoice number 'INV-000002' of entity 'acme' is on 2 documents: "
        + ", ".join(sorted([owner, "in_copy"]))
    )


def invoice_of_number(url: str, number: str) -> str:
    engine = open_database(url)
    try:
        with engine.connect() as connection:
            return str(
                connection.execute(
                    select(invoices.c.id).where(
                        invoices.c.number == number, invoices.c.id != "in_copy"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_credit_notes_have_their_own_gap_free_series(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path)
    alice = invoice_of(engine, "alice")
    with engine.begin() as connection:
        create_credit_note(
            connection,
            alice.id,
            [CreditLine(1, 1_000_000)],
            reason="goodwill",
            now=at("2026-12-11 00:00"),
            actor="t",
        )
    report = audit(engine, tmp_path)
    assert found(report) == [] and report.numbered_documents == 4
    with engine.begin() as connection:
        connection.execute(
            update(number_sequences)
            .where(number_sequences.c.series == "credit_note")
            .values(next_value=3)
        )
        number = connection.execute(select(credit_notes.c.number)).scalar_one()
    assert number == "CN-000001"
    report = audit(engine, tmp_path)
    assert [d.message for d in report.discrepancies] == [
        "credit note number 'CN-000002' of entity 'acme' assigned by the sequence "
        "(next value 3) but on no credit note"
    ]


def test_a_phantom_link(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path, finalize=False)
    data = line(engine, "alice", "Data, weekday")
    document = invoice_of(engine, "alice").id
    with engine.begin() as connection:
        connection.execute(
            insert(invoice_item_records).values(
                item_id=data.id, account="alice", record_id="ghost;1;10"
            )
        )
    report = audit(engine, tmp_path)
    # the line's sums cannot be checked without the record: the phantom is the finding
    assert found(report) == [("phantom_link", document, data.position, "ghost;1;10")]


def test_a_record_on_two_invoices(engine, tmp_path: Path) -> None:
    # the partial unique index makes it impossible: dropped to break it
    bill(engine, tmp_path, finalize=False)
    data = line(engine, "exempt", "Data, weekday")
    alice = invoice_of(engine, "alice").id
    exempt = invoice_of(engine, "exempt").id
    with engine.begin() as connection:
        connection.execute(sa.text("DROP INDEX uq_invoice_item_records_account_record_id"))
        connection.execute(
            insert(invoice_item_records).values(
                item_id=data.id, account="alice", record_id="a1;1;10"
            )
        )
    report = audit(engine, tmp_path)
    alice_data = line(engine, "alice", "Data, weekday")
    first, second = sorted([(alice, alice_data.position), (exempt, data.position)])
    assert found(report) == [
        ("billed_twice", first[0], first[1], "a1;1;10"),
        ("line_amount", exempt, data.position, None),
        ("line_quantity", exempt, data.position, None),
    ]
    assert report.discrepancies[0].message == (
        f"on 2 live invoice lines: invoice {first[0]} line {first[1]}, "
        f"invoice {second[0]} line {second[1]}"
    )


def test_a_record_linked_under_another_account(engine, tmp_path: Path) -> None:
    # the unique index holds per (account, record id): a link of alice's record under
    # the account of exempt's line passes it, and only the audit can see it
    bill(engine, tmp_path, finalize=False)
    data = line(engine, "exempt", "Data, weekday")
    alice = invoice_of(engine, "alice").id
    exempt = invoice_of(engine, "exempt").id
    with engine.begin() as connection:
        connection.execute(
            insert(invoice_item_records).values(
                item_id=data.id, account="exempt", record_id="a1;1;10"
            )
        )
    report = audit(engine, tmp_path)
    alice_data = line(engine, "alice", "Data, weekday")
    first, second = sorted([(alice, alice_data.position), (exempt, data.position)])
    assert found(report) == [
        ("link_account", exempt, data.position, "a1;1;10"),
        ("billed_twice", first[0], first[1], "a1;1;10"),
        ("line_amount", exempt, data.position, None),
        ("line_quantity", exempt, data.position, None),
    ]
    assert report.discrepancies[0].account == "alice"
    assert report.discrepancies[0].message.startswith(
        "linked under account exempt, but the record charged account alice"
    )


def test_a_voided_invoice_and_its_replacement_audit_clean(engine, tmp_path: Path) -> None:
    from ocs.billing.lifecycle import void

    bill(engine, tmp_path)
    alice = invoice_of(engine, "alice")
    with engine.begin() as connection:
        void(connection, alice.id, reason="wrong address", now=at("2026-12-11 00:00"), actor="t")
    # voided, alice has no live invoice: her records are no billed account's for now
    report = audit(engine, tmp_path)
    assert found(report) == [] and report.invoices == 3
    summary = run_bill_run(
        engine,
        catalog(),
        ACCOUNTS,
        tmp_path,
        period="2026-11",
        now=at("2026-12-12 00:00"),
        options=BillRunOptions(entity="acme"),
    )
    assert summary.invoices_created == 1
    report = audit(engine, tmp_path)
    assert found(report) == []
    assert (report.invoices, report.numbered_documents) == (4, 4)


def _segments_of(directory: Path, partition: int) -> list[Path]:
    return [
        p
        for p in directory.iterdir()
        if (name := parse_segment_name(p.name)) is not None and name.partition == partition
    ]


def test_a_damaged_segment_is_reported(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path)
    assert PREPAID.partition not in {a.partition for a in ACCOUNTS if a is not PREPAID}
    (segment,) = _segments_of(tmp_path, PREPAID.partition)
    segment.write_bytes(segment.read_bytes()[:-7])
    report = audit(engine, tmp_path)
    assert [d.kind for d in report.discrepancies] == ["segment_unreadable"]
    assert str(segment) in report.discrepancies[0].message


def test_what_the_audit_cannot_run_on(engine, tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="no such records directory"):
        audit(engine, tmp_path / "absent")
    with pytest.raises(PeriodError):
        audit(engine, tmp_path, "2026-13")


def test_a_failing_database_is_an_audit_error(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE number_sequences"))
    with pytest.raises(AuditError, match="billing database"):
        audit(engine, tmp_path)


def test_number_patterns_read_numbers_back() -> None:
    pattern = number_pattern("{entity}/{seq:05d}-{seq}", "a.b")
    match = pattern.fullmatch("a.b/00042-42")
    assert match is not None and match.group("seq") == "00042"
    assert pattern.fullmatch("axb/00042-42") is None
    assert pattern.fullmatch("a.b/42") is None


# --- given the accounts ------------------------------------------------------------------


def test_given_the_accounts_a_bill_run_audits_clean(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path)
    report = audit(engine, tmp_path, accounts=ACCOUNTS)
    assert found(report) == []
    # alice, corp (line1 on its invoice), exempt; the prepaid account is none
    assert report.accounts == 3
    assert (report.invoices, report.records) == (3, 6)
    assert report.as_json()["invoice_accounts_checked"] == 3
    # without the accounts the report says they were not checked
    assert audit(engine, tmp_path).as_json()["invoice_accounts_checked"] is None


def test_a_postpaid_account_without_an_invoice(engine, tmp_path: Path) -> None:
    # the bill run did not see dave, nor the business biz with its line biz1 (skipped for
    # an error, or the run never reached them): the invoices alone cannot tell
    dave = account("dave")
    biz = account("biz")
    biz1 = account("biz1", parent="biz")
    bill(engine, tmp_path)
    write_records(
        tmp_path,
        [
            record("d1;1;10", "dave", at("2026-11-08 10:00")),
            record("d2;1;10", "dave", at("2026-11-30 23:59")),
            # December's: the next period's, not this one's
            record("d3;1;10", "dave", at("2026-12-01 00:00")),
            record("b1;1;10", "biz1", at("2026-11-09 10:00")),
        ],
        [dave, biz1],
    )
    assert found(audit(engine, tmp_path)) == []
    report = audit(engine, tmp_path, accounts=[*ACCOUNTS, dave, biz, biz1])
    assert of_accounts(report) == [
        ("missing_invoice", "biz", None),
        ("missing_invoice", "dave", None),
        ("unbilled", None, "b1;1;10"),
        ("unbilled", None, "d1;1;10"),
        ("unbilled", None, "d2;1;10"),
    ]
    texts = [d.text() for d in report.discrepancies]
    assert texts[0] == (
        "missing_invoice: account biz: postpaid invoice account (2 accounts on its invoice) "
        "has no live invoice for its period 2026-11-01 to 2026-11-30"
    )
    assert texts[1] == (
        "missing_invoice: account dave: postpaid invoice account has no live invoice for its "
        "period 2026-11-01 to 2026-11-30"
    )
    assert texts[2] == (
        "unbilled: record b1;1;10: record of account biz1 that ended 2026-11-09T09:00:00Z, "
        "in the period 2026-11-01 to 2026-11-30 of invoice account biz, is on no live "
        "invoice line"
    )
    assert report.accounts == 5
    assert report.by_kind()["missing_invoice"] == 2


def test_an_account_of_another_cycle_day_is_audited_in_its_own_period(
    engine, tmp_path: Path
) -> None:
    bill(engine, tmp_path)
    # cycle day 15: November's period is 2026-11-15 to 2026-12-14
    fifteenth = account("fifteenth", bill_cycle_day=15)
    write_records(
        tmp_path,
        [
            record("f1;1;10", "fifteenth", at("2026-11-14 23:00")),  # October's period
            record("f2;1;10", "fifteenth", at("2026-12-14 10:00")),
        ],
        [fifteenth],
    )
    report = audit(engine, tmp_path, accounts=[*ACCOUNTS, fifteenth])
    assert of_accounts(report) == [
        ("missing_invoice", "fifteenth", None),
        ("unbilled", None, "f2;1;10"),
    ]
    assert "period 2026-11-15 to 2026-12-14" in report.discrepancies[0].message
    # the bill run bills it: clean (f1 is October's, that audit's business)
    summary = run_bill_run(
        engine,
        catalog(),
        [*ACCOUNTS, fifteenth],
        tmp_path,
        period="2026-11",
        now=at("2026-12-20 00:00"),
        options=BillRunOptions(entity="acme"),
    )
    assert summary.invoices_created == 1
    assert found(audit(engine, tmp_path, accounts=[*ACCOUNTS, fifteenth])) == []


def test_an_account_opened_after_the_period_owes_no_invoice(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path)
    late = account("late", created=at("2026-12-05 10:00"))
    # with a record in the period all the same (a migration, a clock): it is owed one
    odd = account("odd", created=at("2026-12-05 10:00"))
    write_records(tmp_path, [record("o1;1;10", "odd", at("2026-11-20 10:00"))], [odd])
    report = audit(engine, tmp_path, accounts=[*ACCOUNTS, late, odd])
    assert of_accounts(report) == [
        ("missing_invoice", "odd", None),
        ("unbilled", None, "o1;1;10"),
    ]


def test_a_voided_invoice_without_its_replacement_is_missing(engine, tmp_path: Path) -> None:
    from ocs.billing.lifecycle import void

    bill(engine, tmp_path)
    alice = invoice_of(engine, "alice").id
    with engine.begin() as connection:
        void(
            connection,
            alice,
            reason="wrong address",
            now=at("2026-12-11 00:00"),
            actor="t",
        )
    # the invoices alone: alice is no billed account until the replacement is made
    assert found(audit(engine, tmp_path)) == []
    report = audit(engine, tmp_path, accounts=ACCOUNTS)
    # a0 ended in October: the late record is that period's (and free again)
    assert of_accounts(report) == [
        ("missing_invoice", "alice", None),
        ("unbilled", None, "a1;1;10"),
        ("unbilled", None, "a2;1;10"),
        ("unbilled", None, "a3;1;100"),
    ]


def test_an_off_cycle_invoice_counts_and_the_rest_of_the_period_is_unbilled(
    engine, tmp_path: Path
) -> None:
    write_records(tmp_path, records(), ACCOUNTS)
    run_off_cycle(
        engine,
        catalog(),
        ACCOUNTS,
        tmp_path,
        "alice",
        until=at("2026-11-04 00:00"),
        options=BillRunOptions(entity="acme"),
        now=at("2026-11-04 00:00"),
    )
    report = audit(engine, tmp_path, accounts=[ALICE])
    # the off-cycle invoice overlaps the period: no missing_invoice; a3 came after it
    assert of_accounts(report) == [("unbilled", None, "a3;1;100")]
    assert "of invoice account alice" in report.discrepancies[0].message


def test_a_prepaid_record_on_an_invoice(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path, finalize=False)
    data = line(engine, "alice", "Data, weekday")
    document = invoice_of(engine, "alice").id
    with engine.begin() as connection:
        connection.execute(
            insert(invoice_item_records).values(item_id=data.id, account="pre", record_id="p1;1;10")
        )
    # the line's sums are wrong either way; only the accounts tell whose record it is
    without = audit(engine, tmp_path)
    assert found(without) == [
        ("line_amount", document, data.position, None),
        ("line_quantity", document, data.position, None),
    ]
    report = audit(engine, tmp_path, accounts=ACCOUNTS)
    assert found(report) == [
        ("prepaid_billed", document, data.position, "p1;1;10"),
        ("line_amount", document, data.position, None),
        ("line_quantity", document, data.position, None),
    ]
    assert report.discrepancies[0].account == "pre"
    assert report.discrepancies[0].text() == (
        f"prepaid_billed: account pre invoice {document} line {data.position} record "
        "p1;1;10: record of prepaid account pre is on a line of this live invoice: a "
        "prepaid account is billed by its balance, never invoiced"
    )
    assert report.as_json()["discrepancies"][0]["account"] == "pre"


def test_a_loop_of_parents(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path)
    ying = account("ying", parent="yang")
    yang = account("yang", parent="ying")
    report = audit(engine, tmp_path, accounts=[*ACCOUNTS, ying, yang])
    assert of_accounts(report) == [
        ("hierarchy_loop", "yang", None),
        ("hierarchy_loop", "ying", None),
    ]
    assert report.discrepancies[0].text() == (
        "hierarchy_loop: account yang: parent chain loops at yang: the account is on no "
        "invoice account's invoice, so the bill run never bills it"
    )


def test_a_cycle_day_no_period_is_made_of(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path)
    broken = account("broken", bill_cycle_day=0)
    report = audit(engine, tmp_path, accounts=[*ACCOUNTS, broken])
    assert of_accounts(report) == [("missing_invoice", "broken", None)]
    assert report.discrepancies[0].message == (
        "no bill period can be made of it (bill cycle day must be 1 to 31, got 0): the bill "
        "run cannot invoice it"
    )


def test_accounts_and_no_invoices_at_all(engine, tmp_path: Path) -> None:
    # an empty database: every postpaid invoice account is missing its invoice
    write_records(tmp_path, records(), ACCOUNTS)
    report = audit(engine, tmp_path, accounts=ACCOUNTS)
    assert [d.account for d in report.discrepancies if d.kind == "missing_invoice"] == [
        "alice",
        "corp",
        "exempt",
    ]
    # a1 a2 a3 (alice), e1 (exempt), l1 (line1 on corp's); a0 and p1 are not
    assert sorted(d.record for d in report.discrepancies if d.kind == "unbilled") == [
        "a1;1;10",
        "a2;1;10",
        "a3;1;100",
        "e1;1;10",
        "l1;0;200",
    ]
    assert (report.invoices, report.records) == (0, 5)


# --- recurring fees charged twice ---------------------------------------------------------


def overlaps(report: AuditReport) -> list[tuple[str | None, str | None, int | None]]:
    return [(d.account, d.invoice, d.line) for d in report.discrepancies if d.kind == "fee_overlap"]


def recurring_spans(engine: Engine) -> list[tuple[str, str | None, int, int]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                invoices.c.account,
                invoice_items.c.child_account,
                invoice_items.c.plan,
                invoice_items.c.period_start,
                invoice_items.c.period_end,
            )
            .join(invoices, invoices.c.id == invoice_items.c.invoice_id)
            .where(invoice_items.c.kind == "recurring")
            .order_by(invoice_items.c.period_start, invoices.c.account)
        ).all()
    return [(r.child_account or r.account, r.plan, r.period_start, r.period_end) for r in rows]


def fee_line(account_id: str | None, start: str, end: str) -> InvoiceLine:
    return InvoiceLine(
        kind="recurring",
        description="Postpaid Standard: recurring fee, again",
        amount_micro=5_000_000,
        amount_minor=5_000_000,
        child_account=account_id,
        plan="postpaid-standard",
        quantity=10,
        unit="days",
        period_start=at(start),
        period_end=at(end),
    )


def second_invoice(
    engine: Engine, document: str, owner: str, start: str, end: str, *lines: InvoiceLine
) -> None:
    composed = ComposedInvoice(
        account=owner,
        currency="EUR",
        minor_digits=2,
        period_start=at(start),
        period_end=at(end),
        lines=lines,
        off_cycle=True,
    )
    with engine.begin() as connection:
        write_invoice(
            connection, composed, document=document, entity="acme", bill_run_id=None,
            now=at("2026-12-11 00:00"),
        )  # fmt: skip


def test_a_bill_run_charges_no_fee_twice(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path)
    # the check had fees to compare: alice's, corp's, line1's section, exempt's
    month = (at("2026-11-01 00:00"), at("2026-12-01 00:00"))
    assert sorted(recurring_spans(engine)) == [
        (a, "postpaid-standard", *month) for a in ("alice", "corp", "exempt", "line1")
    ]
    report = audit(engine, tmp_path, accounts=ACCOUNTS)
    assert overlaps(report) == [] and report.clean
    assert report.by_kind()["fee_overlap"] == 0


def test_an_off_cycle_invoice_and_the_cycle_invoice_meet(engine, tmp_path: Path) -> None:
    write_records(tmp_path, records(), ACCOUNTS)
    off = run_off_cycle(
        engine,
        catalog(),
        ACCOUNTS,
        tmp_path,
        "alice",
        until=at("2026-11-11 00:00"),
        options=BillRunOptions(entity="acme"),
        now=at("2026-11-11 00:00"),
    )
    summary = run_bill_run(
        engine,
        catalog(),
        ACCOUNTS,
        tmp_path,
        period="2026-11",
        now=at("2026-12-10 00:00"),
        options=BillRunOptions(entity="acme"),
    )
    assert summary.errors == []
    ten = at("2026-11-11 00:00")
    alice = [(s, e) for a, _, s, e in recurring_spans(engine) if a == "alice"]
    # Nov 1..10 on the off-cycle invoice, Nov 11..30 on the cycle invoice: they meet
    assert alice == [(at("2026-11-01 00:00"), ten), (ten, at("2026-12-01 00:00"))]
    report = audit(engine, tmp_path, accounts=ACCOUNTS)
    assert overlaps(report) == [] and report.clean
    assert report.invoices == 4  # the off-cycle invoice is audited too
    assert off.number is not None  # final, so live


def test_a_plan_change_mid_period_charges_no_fee_twice(engine, tmp_path: Path) -> None:
    base = catalog()
    standard = base.plan("postpaid-standard")
    assert standard is not None
    plus = dataclasses.replace(standard, id="postpaid-plus", name="Postpaid Plus")
    cat = dataclasses.replace(base, plans=(*base.plans, plus))
    changed = account(
        "alice",
        created=at("2026-01-10 12:00"),
        plan="postpaid-plus",
        plan_changes=(PlanChange(at("2026-11-11 08:00"), "postpaid-standard", "postpaid-plus"),),
    )
    write_records(tmp_path, records()[:3], [changed])
    summary = run_bill_run(
        engine,
        cat,
        [changed],
        tmp_path,
        period="2026-11",
        now=at("2026-12-10 00:00"),
        options=BillRunOptions(entity="acme"),
    )
    assert summary.errors == []
    ten = at("2026-11-11 00:00")
    # two plans in sequence on one invoice: they meet
    assert recurring_spans(engine) == [
        ("alice", "postpaid-standard", at("2026-11-01 00:00"), ten),
        ("alice", "postpaid-plus", ten, at("2026-12-01 00:00")),
    ]
    report = audit(engine, tmp_path, accounts=[changed])
    assert overlaps(report) == [] and report.clean


def test_a_second_invoice_charging_a_fee_again(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path, finalize=False)
    alice = invoice_of(engine, "alice").id
    corp = invoice_of(engine, "corp").id
    # alice's Nov 10..19 again; line1 (a child on corp's invoice) billed on its own for
    # Nov 25 .. Dec 4; and a fee that meets alice's (from Dec 1): no overlap
    second_invoice(
        engine,
        "twice-alice",
        "alice",
        "2026-11-10 00:00",
        "2026-11-20 00:00",
        fee_line(None, "2026-11-10 00:00", "2026-11-20 00:00"),
    )
    second_invoice(
        engine,
        "twice-line1",
        "line1",
        "2026-11-25 00:00",
        "2026-12-05 00:00",
        fee_line(None, "2026-11-25 00:00", "2026-12-05 00:00"),
    )
    second_invoice(
        engine,
        "next-alice",
        "alice",
        "2026-12-01 00:00",
        "2026-12-11 00:00",
        fee_line(None, "2026-12-01 00:00", "2026-12-11 00:00"),
    )
    report = audit(engine, tmp_path)
    assert overlaps(report) == [
        ("alice", alice, 1),
        ("line1", corp, _position(engine, corp, "line1")),
    ]
    shown = [d.text() for d in report.discrepancies if d.kind == "fee_overlap"]
    assert shown[0] == (
        f"fee_overlap: account alice invoice {alice} line 1: recurring fee charged twice for "
        f"2026-11-10 to 2026-11-19 (10 days): invoice {alice} line 1 (plan postpaid-standard, "
        "2026-11-01 to 2026-11-30) and invoice twice-alice line 1 (plan "
        "postpaid-standard, 2026-11-10 to 2026-11-19)"
    )
    assert "for 2026-11-25 to 2026-11-30 (6 days)" in shown[1]
    assert "and invoice twice-line1 line 1 " in shown[1]
    # once each, though both invoices of a pair are audited
    assert report.by_kind()["fee_overlap"] == 2
    # December's audit: next-alice only meets November's; twice-line1 overlaps its
    # period but both its line and corp's are November's invoices, that audit's business
    december = audit(engine, tmp_path, "2026-12")
    assert december.invoices == 1 and overlaps(december) == []
    # a void invoice charges nothing
    _void(engine, "twice-alice")
    assert overlaps(audit(engine, tmp_path)) == [
        ("line1", corp, _position(engine, corp, "line1")),
    ]


def test_an_earlier_months_invoice_overlapping_the_period(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path)
    alice = invoice_of(engine, "alice").id
    # an off-cycle invoice that starts in October and charges Nov 1..5 again
    second_invoice(
        engine,
        "october-alice",
        "alice",
        "2026-10-20 00:00",
        "2026-11-06 00:00",
        fee_line(None, "2026-10-20 00:00", "2026-11-06 00:00"),
    )
    # November's audit reads it as an overlapping invoice of another month
    report = audit(engine, tmp_path)
    assert overlaps(report) == [("alice", alice, 1)]
    assert "charged twice for 2026-11-01 to 2026-11-05 (5 days)" in report.discrepancies[0].message
    # October's audits it and reads November's as the overlapping one
    october = audit(engine, tmp_path, "2026-10")
    assert overlaps(october) == [("alice", "october-alice", 1)]


def test_two_overlapping_fees_on_one_draft(engine, tmp_path: Path) -> None:
    bill(engine, tmp_path, finalize=False)
    document = invoice_of(engine, "exempt")
    with engine.begin() as connection:
        connection.execute(
            insert(invoice_items).values(
                invoice_id=document.id,
                position=99,
                kind="recurring",
                description="again",
                plan="postpaid-standard",
                period_start=at("2026-11-30 00:00"),
                period_end=at("2026-12-01 00:00"),
                amount_micro=0,
                amount_minor=0,
            )
        )
        # a recurring line without a span is not compared
        connection.execute(
            insert(invoice_items).values(
                invoice_id=document.id,
                position=100,
                kind="recurring",
                description="no span",
                amount_micro=0,
                amount_minor=0,
            )
        )
    report = audit(engine, tmp_path)
    assert found(report) == [("fee_overlap", document.id, 1, None)]
    assert report.discrepancies[0].account == "exempt"
    assert "2026-11-30 to 2026-11-30 (1 day)" in report.discrepancies[0].message
    assert f"and invoice {document.id} line 99 " in report.discrepancies[0].message


def _position(engine: Engine, document: str, child: str) -> int:
    with engine.connect() as connection:
        return connection.execute(
            select(invoice_items.c.position).where(
                invoice_items.c.invoice_id == document,
                invoice_items.c.child_account == child,
                invoice_items.c.kind == "recurring",
            )
        ).scalar_one()


def _void(engine: Engine, document: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(invoices)
            .where(invoices.c.id == document)
            .values(
                state="void",
                number=f"VOID-{document}",
                finalized_at=at("2026-12-11 00:00"),
                voided_at=at("2026-12-11 00:00"),
            )
        )


# --- the command -------------------------------------------------------------------------


def cli(argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """``ocs bill-audit ...`` as ocs.cli runs it (the lead wires the two functions)."""
    parser = argparse.ArgumentParser(prog="ocs")
    commands = parser.add_subparsers(dest="command")
    add_audit_command(commands)
    args = parser.parse_args(["bill-audit", *argv])
    return audit_command(args, env or {})


@pytest.fixture
def billed(tmp_path: Path) -> tuple[str, Path]:
    """A SQLite file billed for November, and its records directory."""
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    directory = tmp_path / "records"
    directory.mkdir()
    migrate(url)
    engine = open_database(url)
    try:
        bill(engine, directory)
    finally:
        engine.dispose()
    return url, directory


def test_the_command_exits_0_when_clean(billed, capsys) -> None:
    url, directory = billed
    code = cli(
        [
            "--period",
            "2026-11",
            "--no-accounts",
            f"--billing-database-url={url}",
            f"--records-dir={directory}",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines() == [
        "period 2026-11 (Europe/Berlin): 3 invoices, 11 lines, 6 records, "
        "3 numbered documents checked",
        "rounding difference of the usage lines: -4571 micro-units EUR",
        "accounts: not read (--no-accounts): a postpaid account with no invoice goes unseen",
        "discrepancies: 0",
    ]


def test_the_command_lists_discrepancies_and_exits_1(billed, tmp_path, capsys) -> None:
    url, directory = billed
    write_records(directory, [record("a9;1;10", "alice", at("2026-11-15 10:00"))], ACCOUNTS)
    engine = open_database(url)
    with engine.begin() as connection:
        connection.execute(update(number_sequences).values(next_value=5))
    engine.dispose()
    metrics = tmp_path / "textfile" / "ocs_bill_audit.prom"
    metrics.parent.mkdir()
    metrics.write_text('ocs_bill_audit_discrepancies{kind="unbilled"} 99\n')  # an older run's
    # the settings come from the environment and the config file as for every command
    config = tmp_path / "ocs.toml"
    config.write_text(f'[records]\ndirectory = "{directory}"\n')
    code = cli(
        [
            "--period",
            "2026-11",
            "--no-accounts",
            "--config",
            str(config),
            f"--metrics-file={metrics}",
        ],
        {"OCS_BILLING_DATABASE_URL": url},
    )
    out = capsys.readouterr().out
    assert code == 1
    assert out.splitlines() == [
        "unbilled: record a9;1;10: record of account alice that ended 2026-11-15T09:00:00Z, "
        "in the period of its invoice, is on no live invoice line",
        "number_gap: invoice number 'INV-000004' of entity 'acme' assigned by the sequence "
        "(next value 5) but on no invoice",
        "period 2026-11 (Europe/Berlin): 3 invoices, 11 lines, 7 records, "
        "3 numbered documents checked",
        "rounding difference of the usage lines: -4571 micro-units EUR",
        "accounts: not read (--no-accounts): a postpaid account with no invoice goes unseen",
        "discrepancies: 2 (unbilled 1, number_gap 1)",
    ]
    text = metrics.read_text()
    assert 'ocs_bill_audit_discrepancies{kind="unbilled"} 1.0' in text
    assert 'ocs_bill_audit_discrepancies{kind="number_gap"} 1.0' in text
    assert 'ocs_bill_audit_discrepancies{kind="phantom_link"} 0.0' in text
    assert sum(
        1 for row in text.splitlines() if row.startswith("ocs_bill_audit_discrepancies{")
    ) == len(KINDS)
    (stamp,) = [
        r for r in text.splitlines() if r.startswith("ocs_bill_audit_last_run_timestamp_seconds ")
    ]
    assert float(stamp.split()[1]) > at("2026-01-01 00:00")
    assert os.listdir(metrics.parent) == [metrics.name]  # no temporary file left


def test_the_command_prints_json(billed, capsys) -> None:
    url, directory = billed
    code = cli(
        [
            "--period",
            "2026-11",
            "--json",
            "--no-accounts",
            f"--billing-database-url={url}",
            f"--records-dir={directory}",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clean"] is True
    assert (report["invoices_checked"], report["records_checked"]) == (3, 6)
    assert report["rounding_difference_micro"] == {"EUR": -4571}
    assert report["from"] == "2026-10-31T23:00:00Z" and report["to"] == "2026-11-30T23:00:00Z"
    assert report["discrepancies"] == [] and set(report["discrepancies_by_kind"]) == set(KINDS)
    assert report["invoice_accounts_checked"] is None


def test_the_time_zone_comes_from_a_catalog_file_or_the_option(billed, tmp_path, capsys) -> None:
    url, directory = billed
    base = [
        "--period",
        "2026-11",
        "--json",
        "--no-accounts",
        f"--billing-database-url={url}",
        f"--records-dir={directory}",
    ]
    assert cli([*base, "--timezone", "UTC"]) == 0
    report = json.loads(capsys.readouterr().out)
    # the periods start at Berlin midnight: 2026-10-31T23:00Z is not in November UTC
    assert (report["timezone"], report["invoices_checked"]) == ("UTC", 0)
    demo = Path(__file__).parents[3] / "quota_engine" / "catalog" / "demo_catalog.toml"
    tokyo = tmp_path / "tokyo.toml"
    tokyo.write_text(demo.read_text().replace('"Europe/Berlin"', '"Asia/Tokyo"', 1))
    assert cli([*base, "--catalog", str(tokyo)]) == 0
    assert json.loads(capsys.readouterr().out)["timezone"] == "Asia/Tokyo"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--period", "2026-13"], "--period: period must be a month YYYY-MM"),
        (["--period", "2026-11", "--timezone", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
        (["--period", "2026-11", "--catalog", "{tmp}/absent/catalog.toml"], "--catalog: "),
        (
            ["--period", "2026-11", "--records-dir", "{tmp}/absent/records"],
            "no such records directory",
        ),
        (
            ["--period", "2026-11", "--metrics-file", "{tmp}/absent/x.prom"],
            "--metrics-file: cannot write",
        ),
    ],
)
def test_the_command_exits_2_on_bad_input(billed, tmp_path, extra, message, capsys) -> None:
    url, directory = billed
    extra = [part.format(tmp=tmp_path) for part in extra]
    argv = [f"--billing-database-url={url}", f"--records-dir={directory}", "--no-accounts", *extra]
    assert cli(argv) == 2
    assert message in capsys.readouterr().err


def test_the_command_exits_2_on_a_database_it_cannot_use(tmp_path, capsys) -> None:
    records_dir = tmp_path / "records"
    records_dir.mkdir()
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    assert (
        cli(
            [
                "--period",
                "2026-11",
                "--no-accounts",
                f"--billing-database-url={empty}",
                f"--records-dir={records_dir}",
            ]
        )
        == 2
    )
    assert "run `ocs billing migrate`" in capsys.readouterr().err
    assert cli(["--period", "2026-11", "--billing-database-url=mysql://x/y"]) == 2
    assert "invalid configuration" in capsys.readouterr().err


def test_importing_the_command_loads_no_database_library() -> None:
    code = (
        "import sys, ocs.bill_audit_command; "
        "print(sorted(m for m in ('sqlalchemy', 'alembic', 'prometheus_client', 'redis') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "[]"


def test_the_period_is_required() -> None:
    with pytest.raises(SystemExit) as exit_:
        cli([])
    assert exit_.value.code == 2


def test_ocs_bill_audit_through_the_ocs_command(billed, capsys) -> None:
    from ocs.cli import main

    url, directory = billed
    argv = [
        "bill-audit",
        "--period",
        "2026-11",
        "--no-accounts",
        f"--billing-database-url={url}",
        f"--records-dir={directory}",
    ]
    assert main(argv, env={}) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "discrepancies: 0"


# --- the command with the accounts from Redis ------------------------------------------

PROVISIONED = """
catalog = "{catalog}"

[[accounts]]
id = "bob"
kind = "postpaid"
plan = "postpaid-standard"
credit_limit = 100_000_000
subscriptions = ["msisdn:491701111111"]

[[accounts]]
id = "carol"
kind = "prepaid"
plan = "prepaid-basic"
subscriptions = ["msisdn:491702222222"]
"""


@pytest.fixture
def provisioned(tmp_path: Path, redis_url: str, capsys) -> list[str]:
    """bob (postpaid) and carol (prepaid) provisioned with ``ocs provision`` in a real
    Redis, with a catalog in Asia/Tokyo; a record each in October; a migrated SQLite
    database with no invoice: the ``ocs`` arguments for them."""
    from ocs.cli import main
    from quota_engine.catalog import DEMO_CATALOG_PATH
    from quota_engine.store import keys
    from quota_engine.store.records import partition_of_account

    tokyo = tmp_path / "tokyo.toml"
    tokyo.write_text(
        Path(DEMO_CATALOG_PATH).read_text().replace('"Europe/Berlin"', '"Asia/Tokyo"', 1)
    )
    doc = tmp_path / "accounts.toml"
    doc.write_text(PROVISIONED.format(catalog=tokyo))
    assert main(["provision", str(doc), "--redis-url", redis_url], env={}) == 0
    capsys.readouterr()
    # provisioned today; a customer since January, it owes October's invoice
    client = redis.Redis.from_url(redis_url)
    client.hset(keys.account("bob"), "created", at("2026-01-05 12:00"))
    client.close()
    records_dir = tmp_path / "records"
    write_records(
        records_dir,
        [
            record("b1;1;10", "bob", at("2026-10-03 10:00"), charged=1_000_000),
            record("c1;1;10", "carol", at("2026-10-03 10:00"), plan="prepaid-basic"),
        ],
        [
            account("bob", partition=partition_of_account("bob")),
            account("carol", kind="prepaid", partition=partition_of_account("carol")),
        ],
    )
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    migrate(url)
    return [
        "--redis-url", redis_url, "--records-dir", str(records_dir),
        "--billing-database-url", url,
    ]  # fmt: skip


def ocs(capsys, *argv: str) -> tuple[int, str, str]:
    from ocs.cli import main

    code = main(list(argv), env={})
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_finds_an_account_the_bill_run_has_not_billed(provisioned, capsys) -> None:
    code, out, err = ocs(capsys, "bill-audit", "--period", "2026-10", *provisioned)
    assert (code, err) == (1, "")
    # the periods are the active catalog's (Tokyo), not the demo catalog's
    assert out.splitlines() == [
        "missing_invoice: account bob: postpaid invoice account has no live invoice for its "
        "period 2026-10-01 to 2026-10-31",
        "unbilled: record b1;1;10: record of account bob that ended 2026-10-03T08:00:00Z, in "
        "the period 2026-10-01 to 2026-10-31 of invoice account bob, is on no live invoice "
        "line",
        "period 2026-10 (Asia/Tokyo): 0 invoices, 0 lines, 1 records, 0 numbered documents checked",
        "rounding difference of the usage lines: none",
        "accounts: 1 postpaid invoice accounts checked",
        "discrepancies: 2 (unbilled 1, missing_invoice 1)",
    ]
    # from the database and the segments alone nothing is wrong: the weaker proof
    code, out, _ = ocs(capsys, "bill-audit", "--period", "2026-10", "--no-accounts", *provisioned)
    assert code == 0 and out.splitlines()[-1] == "discrepancies: 0"
    # the bill run bills bob (carol is prepaid): clean
    bill_run = [a.replace("--records-dir", "--records-directory") for a in provisioned]
    code, out, err = ocs(capsys, "bill-run", "--period", "2026-10", *bill_run)
    assert (code, err) == (0, ""), out
    code, out, err = ocs(capsys, "bill-audit", "--period", "2026-10", "--json", *provisioned)
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["clean"] is True and report["timezone"] == "Asia/Tokyo"
    assert (report["invoice_accounts_checked"], report["invoices_checked"]) == (1, 1)
    assert report["records_checked"] == 1


def test_the_command_exits_2_when_redis_cannot_be_reached(provisioned, free_port, capsys) -> None:
    argv = [*provisioned, "--redis-url", f"redis://127.0.0.1:{free_port()}/0"]
    code, out, err = ocs(capsys, "bill-audit", "--period", "2026-10", *argv)
    assert (code, out) == (2, "")
    assert err.startswith("ocs bill-audit: cannot read the accounts: cannot reach Redis at ")
    assert "--no-accounts" in err
    # without the accounts it runs: the database and the segments are there
    code, out, _ = ocs(capsys, "bill-audit", "--period", "2026-10", "--no-accounts", *argv)
    assert code == 0


def test_the_command_without_an_active_catalog(redis_url, tmp_path, capsys) -> None:
    # an empty Redis: no catalog to take the time zone from, and no account
    records_dir = tmp_path / "records"
    records_dir.mkdir()
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    migrate(url)
    argv = ["--redis-url", redis_url, "--records-dir", str(records_dir)]
    argv += ["--billing-database-url", url]
    code, out, err = ocs(capsys, "bill-audit", "--period", "2026-10", *argv)
    assert (code, out) == (2, "")
    assert "no active catalog in Redis" in err and "--timezone" in err
    code, out, err = ocs(capsys, "bill-audit", "--period", "2026-10", "--timezone", "UTC", *argv)
    assert (code, err) == (0, "")
    assert "accounts: 0 postpaid invoice accounts checked" in out.splitlines()
