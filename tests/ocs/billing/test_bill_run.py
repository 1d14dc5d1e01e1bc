"""Bill runs end to end on a real database: records in segment files in, invoices out,
hand-computed to the cent."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import select

from ocs.billing.accounts import KindChange, PlanChange
from ocs.billing.bill_run import BillRunOptions, run_bill_run
from ocs.billing.database import migrate, open_database
from ocs.billing.schema import (
    bill_runs,
    credit_notes,
    invoice_item_records,
    invoice_items,
    invoices,
)
from tests.ocs.billing.factory import account, at, catalog, record, write_records

MIB = 1_048_576


@pytest.fixture
def engine(database_url: str):
    migrate(database_url)
    engine = open_database(database_url)
    yield engine
    engine.dispose()


def lines_of(engine, account_id: str):
    with engine.connect() as connection:
        invoice = connection.execute(select(invoices).where(invoices.c.account == account_id)).one()
        items = connection.execute(
            select(invoice_items)
            .where(invoice_items.c.invoice_id == invoice.id)
            .order_by(invoice_items.c.position)
        ).all()
    return invoice, items


def test_consumer_invoice_by_hand(engine, tmp_path: Path) -> None:
    alice = account("alice", created=at("2026-01-10 12:00"))
    records = [
        record("s1;1;10", "alice", at("2026-11-02 10:00"), used=3 * MIB, charged=1_500_000),
        record("s2;1;10", "alice", at("2026-11-03 10:00"), used=MIB + 5000, charged=1_000_000),
        record(
            "s3;1;100",
            "alice",
            at("2026-11-04 09:00"),
            service="voice",
            used=125,
            charged=300_000,
            destination="national",
        ),
        record(
            "s4;1;100",
            "alice",
            at("2026-11-07 09:00"),
            service="voice",
            used=60,
            charged=50_000,
            destination="national",
            band="weekend",
        ),
        record(
            "s5;1;100",
            "alice",
            at("2026-11-10 09:00"),
            service="voice",
            used=45,
            charged=400_000,
            destination="international",
        ),
        record(
            "s6;0;200",
            "alice",
            at("2026-11-11 09:00"),
            service="sms",
            used=1,
            charged=90_000,
            destination="national",
        ),
        record(
            "s7;0;200",
            "alice",
            at("2026-11-12 09:00"),
            service="sms",
            used=1,
            charged=290_000,
            destination="international",
        ),
        record(
            "s8;2;10", "alice", at("2026-11-20 09:00"), used=2 * MIB, charged=4_000_000, zone="eu"
        ),
        record(
            "s9;2;999",
            "alice",
            at("2026-11-21 09:00"),
            service="portal",
            used=10 * MIB,
            charged=0,
            zero_rated=True,
        ),
        # next period: not on this invoice
        record("s10;1;10", "alice", at("2026-12-01 00:00") + 30, charged=500_000),
    ]
    write_records(tmp_path, records, [alice])
    summary = run_bill_run(
        engine,
        catalog(),
        [alice],
        tmp_path,
        period="2026-11",
        now=at("2026-12-10 00:00"),
        options=BillRunOptions(entity="acme"),
    )
    assert summary.errors == []
    assert (summary.invoices_created, summary.finalized, summary.records) == (1, 1, 9)
    invoice, items = lines_of(engine, "alice")
    assert [(i.kind, i.description, i.amount_minor) for i in items] == [
        ("recurring", "Postpaid Standard: recurring fee", 20_000_000),
        ("usage", "Data, roaming eu, weekday", 4_000_000),
        ("usage", "Data, weekday", 2_500_000),
        ("usage", "Portal, weekday (zero-rated)", 0),
        ("usage", "Sms, international, weekday", 290_000),
        ("usage", "Sms, national, weekday", 90_000),
        ("usage", "Voice, international, weekday", 400_000),
        ("usage", "Voice, national, weekday", 300_000),
        ("usage", "Voice, national, weekend", 50_000),
        ("tax", "VAT 19 %", 5_250_000),  # 19 % of 27.63 = 5.2497
    ]
    assert items[2].quantity == 4 * MIB + 5000
    assert (invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor) == (
        27_630_000,
        5_250_000,
        32_880_000,
    )
    assert invoice.state == "final" and invoice.number == "INV-000001"
    with engine.connect() as connection:
        linked = set(connection.execute(select(invoice_item_records.c.record_id)).scalars())
    assert linked == {r["id"] for r in records[:9]}


def test_off_cycle_invoice_then_the_cycle_invoice_bills_the_rest(engine, tmp_path: Path) -> None:
    from ocs.billing.off_cycle import run_off_cycle
    from ocs.billing.usage import BillingError

    alice = account("alice", created=at("2026-01-10 12:00"))
    records = [
        record("s1;1;10", "alice", at("2026-11-05 10:00"), used=3 * MIB, charged=1_500_000),
        record("s2;1;10", "alice", at("2026-11-20 10:00"), used=MIB, charged=500_000),
    ]
    write_records(tmp_path, records, [alice])
    options = BillRunOptions(entity="acme")
    off = run_off_cycle(
        engine,
        catalog(),
        [alice],
        tmp_path,
        "alice",
        until=at("2026-11-11 00:00"),
        now=at("2026-11-11 09:00"),
        options=options,
    )
    # 10 of 30 days of 20.00 = 6.666.. -> 6.67; + 1.50 = 8.17; 19 % = 1.5523 -> 1.55
    assert [(i.kind, i.amount_minor) for i in off.invoice.lines] == [
        ("recurring", 6_670_000),
        ("usage", 1_500_000),
        ("tax", 1_550_000),
    ]
    assert off.number == "INV-000001" and off.invoice.total_minor == 9_720_000
    with pytest.raises(BillingError, match="billed up to"):
        run_off_cycle(
            engine,
            catalog(),
            [alice],
            tmp_path,
            "alice",
            until=at("2026-11-10 00:00"),
            options=options,
        )
    summary = run_bill_run(
        engine,
        catalog(),
        [alice],
        tmp_path,
        period="2026-11",
        now=at("2026-12-10 00:00"),
        options=options,
    )
    assert summary.errors == [] and summary.invoices_created == 1
    with engine.connect() as connection:
        cycle = connection.execute(
            select(invoices).where(invoices.c.account == "alice", ~invoices.c.off_cycle)
        ).one()
        items = connection.execute(
            select(invoice_items)
            .where(invoice_items.c.invoice_id == cycle.id)
            .order_by(invoice_items.c.position)
        ).all()
    # 20 of 30 days = 13.333.. -> 13.33; + 0.50 = 13.83; 19 % = 2.6277 -> 2.63
    assert [(i.kind, i.quantity, i.amount_minor) for i in items] == [
        ("recurring", 20, 13_330_000),
        ("usage", MIB, 500_000),
        ("tax", None, 2_630_000),
    ]
    assert (cycle.total_minor, cycle.number) == (16_460_000, "INV-000002")
    with pytest.raises(BillingError, match="has its invoice already"):
        run_off_cycle(
            engine,
            catalog(),
            [alice],
            tmp_path,
            "alice",
            until=at("2026-11-25 00:00"),
            options=options,
        )


def test_off_cycle_refuses_accounts_without_their_own_invoice(engine, tmp_path: Path) -> None:
    from ocs.billing.off_cycle import run_off_cycle
    from ocs.billing.usage import BillingError

    parent = account("corp")
    child = account("line-1", parent="corp")
    prepaid = account("pp", kind="prepaid", plan="prepaid-basic")
    accounts = [parent, child, prepaid]
    until = at("2026-11-11 00:00")
    for target, message in [
        ("line-1", "billed on the invoice of 'corp'"),
        ("pp", "is prepaid"),
        ("nobody", "no account"),
    ]:
        with pytest.raises(BillingError, match=message):
            run_off_cycle(engine, catalog(), accounts, tmp_path, target, until=until)


def test_the_invoice_keeps_the_accounts_presentation(engine, tmp_path: Path) -> None:
    from ocs.billing.representation import customer_bill

    quiet = account("quiet", itemisation="summary", tax_exempt=True)
    loud = account("loud")
    write_records(tmp_path, [record("q;1;10", "quiet", at("2026-11-02 10:00"))], [quiet, loud])
    run_bill_run(engine, catalog(), [quiet, loud], tmp_path, period="2026-11",
                 now=at("2026-11-20 00:00"))  # fmt: skip
    with engine.connect() as connection:
        rows = {
            r.account: (r.itemisation, r.tax_exempt, r.tax_minor, r.id)
            for r in connection.execute(select(invoices))
        }
        assert rows["quiet"][:3] == ("summary", True, 0)
        assert rows["loud"][:2] == ("detailed", False) and rows["loud"][2] > 0
        bill = customer_bill(connection, rows["quiet"][3])
    assert (bill["itemisation"], bill["taxExempt"]) == ("summary", True)


def test_a_loop_of_parents_is_listed_and_the_others_are_billed(engine, tmp_path: Path) -> None:
    accounts = [account("a", parent="b"), account("b", parent="a"), account("c")]
    summary = run_bill_run(engine, catalog(), accounts, tmp_path, period="2026-11",
                           now=at("2026-12-20 00:00"))  # fmt: skip
    assert sorted(who for who, _ in summary.errors) == ["a", "b"]
    assert all("loops" in why for _, why in summary.errors)
    assert summary.invoices_created == 1 and not summary.ok
    with engine.connect() as connection:
        assert connection.execute(select(invoices.c.account)).scalars().all() == ["c"]


def test_credit_notes_give_back_at_most_what_the_invoice_charged(engine, tmp_path: Path) -> None:
    from ocs.billing.lifecycle import CreditLine, InvalidCorrection, create_credit_note
    from quota_engine.catalog.model import Discount

    ten = Discount("ten", "10 % off", "percent", "invoice", rate_ppm=100_000)
    alice = account("alice", created=at("2026-01-10 12:00"))
    run_bill_run(engine, catalog(discounts=[ten]), [alice], tmp_path, period="2026-11",
                 now=at("2026-12-20 00:00"))  # fmt: skip
    invoice, items = lines_of(engine, "alice")
    # 20.00, -2.00, 19 % of 18.00 = 3.42: 21.42
    assert [(i.kind, i.amount_minor) for i in items] == [
        ("recurring", 20_000_000), ("discount", -2_000_000), ("tax", 3_420_000),
    ]  # fmt: skip
    with engine.begin() as connection, pytest.raises(InvalidCorrection) as refused:
        create_credit_note(connection, invoice.id, [CreditLine(1)], reason="r", now=1, actor=None)
    assert refused.value.field == "lines[0].amount" and "after its discounts" in str(refused.value)
    notes = []
    with engine.begin() as connection:
        for part, key in ((10_000_000, "a"), (8_000_000, "b")):
            notes.append(
                create_credit_note(
                    connection,
                    invoice.id,
                    [CreditLine(1, part)],
                    reason="r",
                    now=1,
                    actor=None,
                    key=key,
                )  # fmt: skip
            )
    with engine.connect() as connection:
        rows = connection.execute(
            select(credit_notes.c.subtotal_minor, credit_notes.c.tax_minor)
            .order_by(credit_notes.c.number)
        ).all()  # fmt: skip
    # 10.00 -> 1.90 of tax; then 18.00 in all -> 3.42, less 1.90: 1.52; together 21.42
    assert [tuple(r) for r in rows] == [(10_000_000, 1_900_000), (8_000_000, 1_520_000)]
    # 2.00 of the line is left, but nothing of what the invoice charged
    with engine.begin() as connection, pytest.raises(InvalidCorrection, match="discounts"):
        create_credit_note(
            connection, invoice.id, [CreditLine(1, 10_000)], reason="r", now=1, actor=None
        )


def test_a_child_moved_after_its_period_was_billed_is_not_billed_again(
    engine, tmp_path: Path
) -> None:
    """C's November was on P's final invoice; then C became an invoice of its own."""
    p = account("P", created=at("2026-01-01 00:00"))
    c = account("C", parent="P", created=at("2026-01-01 00:00"))
    write_records(tmp_path, [record("c;1;10", "C", at("2026-11-05 10:00"))], [p, c])
    done = at("2026-12-20 00:00")
    run_bill_run(engine, catalog(), [p, c], tmp_path, period="2026-11", now=done)
    moved = dataclasses.replace(c, bill_separately=True)
    summary = run_bill_run(engine, catalog(), [p, moved], tmp_path, period="2026-11", now=done)
    assert summary.errors == [] and summary.invoices_created == 1
    invoice, items = lines_of(engine, "C")
    # its fee and its record are on P's invoice already: nothing to bill twice
    assert (items, invoice.total_minor) == ([], 0)
    with engine.connect() as connection:
        linked = connection.execute(select(invoice_item_records.c.record_id)).scalars().all()
    assert linked == ["c;1;10"]


def test_a_new_cycle_day_charges_only_the_days_not_billed(engine, tmp_path: Path) -> None:
    a = account("A", created=at("2026-01-01 00:00"))
    done = at("2026-12-20 00:00")
    run_bill_run(engine, catalog(), [a], tmp_path, period="2026-11", now=done)
    moved = dataclasses.replace(a, bill_cycle_day=15)
    run_bill_run(engine, catalog(), [moved], tmp_path, period="2026-11", now=at("2026-12-30 00:00"))
    with engine.connect() as connection:
        rows = connection.execute(
            select(invoices.c.number, invoices.c.subtotal_minor).order_by(invoices.c.number)
        ).all()
    # 15 Nov - 15 Dec (30 days), 1 Dec - 15 Dec not billed yet: 20.00 - 16/30 of it
    # cumulatively: round(20.00 * 30/30) - round(20.00 * 16/30) = 20.00 - 10.67 = 9.33
    assert [tuple(r) for r in rows] == [("INV-000001", 20_000_000), ("INV-000002", 9_330_000)]


def test_usage_from_before_a_conversion_to_postpaid_is_not_billed(engine, tmp_path: Path) -> None:
    converted = at("2026-11-10 12:00")
    a = account(
        "A",
        created=at("2026-09-01 00:00"),
        plan_changes=(PlanChange(converted, "prepaid-basic", "postpaid-standard"),),
    )
    write_records(
        tmp_path,
        [
            record("old;1;10", "A", at("2026-10-10 10:00"), plan="prepaid-basic"),
            record("early;1;10", "A", at("2026-11-09 10:00"), plan="prepaid-basic"),
            record("new;1;10", "A", at("2026-11-12 10:00"), charged=500_000),
        ],
        [a],
    )
    run_bill_run(engine, catalog(), [a], tmp_path, period="2026-11", now=at("2026-12-20 00:00"))
    invoice, items = lines_of(engine, "A")
    # the fee from the day of the conversion: 21 of 30 days, cumulatively
    # round(20.00 * 30/30) - round(20.00 * 9/30) = 20.00 - 6.00 = 14.00; + 0.50 of usage
    assert [(i.kind, i.quantity, i.amount_minor) for i in items[:2]] == [
        ("recurring", 21, 14_000_000), ("usage", MIB, 500_000),
    ]  # fmt: skip
    with engine.connect() as connection:
        linked = connection.execute(select(invoice_item_records.c.record_id)).scalars().all()
    assert linked == ["new;1;10"]


def test_usage_from_before_a_change_of_kind_to_postpaid_is_not_billed(
    engine, tmp_path: Path
) -> None:
    # the same plan before and after (a plan for both kinds): only the kind changed
    converted = at("2026-11-10 12:00")
    a = account(
        "A",
        created=at("2026-09-01 00:00"),
        kind_changes=(KindChange(converted, "prepaid", "postpaid"),),
    )
    write_records(
        tmp_path,
        [
            record("old;1;10", "A", at("2026-10-10 10:00")),
            record("early;1;10", "A", at("2026-11-09 10:00")),
            record("new;1;10", "A", at("2026-11-12 10:00"), charged=500_000),
        ],
        [a],
    )
    run_bill_run(engine, catalog(), [a], tmp_path, period="2026-11", now=at("2026-12-20 00:00"))
    invoice, items = lines_of(engine, "A")
    # as a conversion by plan change: the fee from the day of the change, 21 of 30 days
    assert [(i.kind, i.quantity, i.amount_minor) for i in items[:2]] == [
        ("recurring", 21, 14_000_000), ("usage", MIB, 500_000),
    ]  # fmt: skip
    with engine.connect() as connection:
        linked = connection.execute(select(invoice_item_records.c.record_id)).scalars().all()
    assert linked == ["new;1;10"]


def test_off_cycle_with_a_key_is_made_once_and_an_empty_one_is_refused(
    engine, tmp_path: Path
) -> None:
    from ocs.billing.off_cycle import run_off_cycle
    from ocs.billing.usage import BillingError

    alice = account("alice", created=at("2026-01-10 12:00"))
    until = at("2026-11-11 00:00")
    first = run_off_cycle(engine, catalog(), [alice], tmp_path, "alice", until=until, key="k1")
    again = run_off_cycle(
        engine, catalog(), [alice], tmp_path, "alice", until=until + 3600, key="k1"
    )
    assert first.invoice is not None and again.invoice is None
    assert (again.id, again.number) == (first.id, first.number)
    # an hour later, same day: no fee day, no usage
    with pytest.raises(BillingError, match="nothing to bill"):
        run_off_cycle(engine, catalog(), [alice], tmp_path, "alice", until=until + 3600)
    with engine.connect() as connection:
        assert len(connection.execute(select(invoices.c.id)).all()) == 1


def test_an_off_cycle_invoice_with_a_later_invoice_is_not_voided(engine, tmp_path: Path) -> None:
    from ocs.billing.lifecycle import InvalidState, void
    from ocs.billing.off_cycle import run_off_cycle

    alice = account("alice", created=at("2026-01-10 12:00"))
    off = run_off_cycle(engine, catalog(), [alice], tmp_path, "alice", until=at("2026-11-16 00:00"))
    run_bill_run(engine, catalog(), [alice], tmp_path, period="2026-11",
                 now=at("2026-12-20 00:00"))  # fmt: skip
    with engine.begin() as connection, pytest.raises(InvalidState, match="credit it instead"):
        void(connection, off.id, reason="wrong", now=1, actor=None)


def test_a_record_with_an_overlong_id_is_reported_and_the_rest_billed(
    engine, tmp_path: Path
) -> None:
    alice = account("alice", created=at("2026-01-10 12:00"))
    long_id = "pgw;" + "x" * 600 + ";1;10"
    write_records(
        tmp_path,
        [
            record(long_id, "alice", at("2026-11-02 10:00")),
            record("s;1;10", "alice", at("2026-11-03 10:00")),
        ],  # fmt: skip
        [alice],
    )
    summary = run_bill_run(engine, catalog(), [alice], tmp_path, period="2026-11",
                           now=at("2026-12-20 00:00"))  # fmt: skip
    assert [who for who, _ in summary.errors] == ["records"]
    assert "longer than 512" in summary.errors[0][1]
    assert summary.invoices_created == 1 and summary.records == 1


def test_a_database_failing_mid_run_marks_the_run_failed_and_a_rerun_finishes(
    postgres_url: str, tmp_path: Path
) -> None:
    """PostgreSQL refuses a write as a full disk would (SQLSTATE 53100) for one account:
    the batches before it stay, the run is 'failed', and once the disk is back a second
    run writes the rest."""
    import sqlalchemy as sa

    from ocs.billing.database import BillingDatabaseError

    migrate(postgres_url)
    engine = open_database(postgres_url)
    accounts = [account(f"a{i:02d}", created=at("2026-01-01 00:00")) for i in range(6)]
    with engine.begin() as connection:
        connection.execute(sa.text(
            "CREATE FUNCTION full_disk() RETURNS trigger AS $$ BEGIN IF NEW.account = 'a04' "
            "THEN RAISE EXCEPTION 'no space left' USING ERRCODE = '53100'; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql"
        ))  # fmt: skip
        connection.execute(sa.text(
            "CREATE TRIGGER full_disk BEFORE INSERT ON invoices FOR EACH ROW "
            "EXECUTE FUNCTION full_disk()"
        ))  # fmt: skip
    options = BillRunOptions(batch=2)
    done = at("2026-12-20 00:00")
    with pytest.raises(BillingDatabaseError, match="no space left"):
        run_bill_run(engine, catalog(), accounts, tmp_path, period="2026-11", now=done,
                     options=options)  # fmt: skip
    with engine.connect() as connection:
        assert connection.execute(sa.select(bill_runs.c.state)).scalars().all() == ["failed"]
        written = connection.execute(select(invoices.c.account)).scalars().all()
    assert sorted(written) == ["a00", "a01", "a02", "a03"]
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TRIGGER full_disk ON invoices"))
    summary = run_bill_run(engine, catalog(), accounts, tmp_path, period="2026-11", now=done,
                           options=options)  # fmt: skip
    assert (summary.invoices_created, summary.already_final) == (2, 4)
    engine.dispose()
