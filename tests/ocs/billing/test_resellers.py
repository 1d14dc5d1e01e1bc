"""Reseller (wholesale) billing (docs/invoicing.md, "Resellers"), on SQLite and
PostgreSQL: the retail invoices of a reseller's subscribers issued and numbered by the
reseller's billing entity, the wholesale invoice of the reseller priced at its
wholesale price list (amounts worked out by hand), reruns, and every error path.

The period is November 2026 in the demo catalog's Europe/Berlin (30 local days); EUR
has two decimals (10,000 micro-units a cent); VAT 19 %.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from ocs.billing.accounts import BillingAccount
from ocs.billing.bill_run import BillRunOptions, BillRunSummary, run_bill_run
from ocs.billing.database import migrate, open_database
from ocs.billing.off_cycle import run_off_cycle
from ocs.billing.schema import invoice_items, invoices, number_sequences
from ocs.billing.usage import BillingError
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
