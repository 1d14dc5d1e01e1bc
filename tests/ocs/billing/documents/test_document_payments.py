"""The documents' summary box from the payments recorded in the billing database: the
previous balance, the payments since the previous invoice and the amount due are the
payments' statement of the invoice (ocs.billing.payments.statement), not zeros."""

from __future__ import annotations

import io

import pypdf
from sqlalchemy import select

from ocs.billing.accounts import Contact
from ocs.billing.bill_run import BillRunOptions, run_bill_run
from ocs.billing.database import migrate, open_database
from ocs.billing.documents import load_document, render
from ocs.billing.payments.allocation import (
    PaymentRequest,
    RefundRequest,
    record_payment,
    refund_credit,
)
from ocs.billing.payments.statement import statement
from ocs.billing.schema import invoices
from tests.ocs.billing.documents.builders import BERLIN, OPERATOR, usage
from tests.ocs.billing.factory import account, at, catalog, write_records

NBSP = "\xa0"


def _text(body: bytes) -> str:
    pages = pypdf.PdfReader(io.BytesIO(body)).pages
    return "\n".join(page.extract_text().replace(NBSP, " ") for page in pages)


def _euros(micro: int) -> str:
    """``12_340_000`` as ``€12.34`` (exact: no float)."""
    return f"€{micro // 1_000_000:,}.{micro % 1_000_000 // 10_000:02d}"


def _two_months(tmp_path):
    """Erika billed for October (final on 5 Nov) and November (final on 10 Dec)."""
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    migrate(url)
    engine = open_database(url)
    erika = account("erika", contact=Contact(name="Erika", locale="en_GB"), itemisation="summary")
    directory = tmp_path / "records"
    directory.mkdir()
    october = [
        {**r, "id": r["id"] + "-oct", "end": r["end"] - 31 * 86_400} for r in usage("erika", 3)
    ]
    write_records(directory, [*october, *usage("erika", 3)], [erika])
    for period, now in (("2026-10", at("2026-11-05 09:00")), ("2026-11", at("2026-12-10 09:00"))):
        summary = run_bill_run(
            engine, catalog(), [erika], directory, period=period, now=now,
            options=BillRunOptions(finalize=True),
        )  # fmt: skip
        assert summary.errors == []
    with engine.connect() as connection:
        rows = connection.execute(
            select(invoices.c.id, invoices.c.total_minor).order_by(invoices.c.period_start)
        ).all()
    return engine, [row.id for row in rows], [row.total_minor for row in rows]


def _document(engine, invoice_id):
    with engine.connect() as connection:
        return load_document(
            connection, invoice_id, operator=OPERATOR, contacts={}, partitions={},
            records_directory=None, now=at("2026-12-11 00:00"),
        )  # fmt: skip


def test_a_document_after_a_partial_payment_shows_it_and_the_amount_due(tmp_path):
    engine, (october, november), (october_total, november_total) = _two_months(tmp_path)
    assert october_total > 10_000_000 and november_total > 0
    with engine.begin() as connection:
        record_payment(
            connection, PaymentRequest("erika", 10_000_000, "EUR", received_at=at("2026-11-20")),
            now=at("2026-11-20"), key="partial",
        )  # fmt: skip
    first = _document(engine, october)
    # October's own document was issued before the payment: nothing carried, its total due
    assert first.carried.previous_balance == 0 and first.carried.payments == 0
    assert first.amount_due == october_total
    document = _document(engine, november)
    assert document.carried.previous_balance == october_total
    assert document.carried.payments == 10_000_000
    due = october_total - 10_000_000 + november_total
    assert document.amount_due == due
    with engine.connect() as connection:
        assert statement(connection, "erika", november).amount_due == due
    text = _text(render(document, "pdf", BERLIN))
    assert f"Previous balance {_euros(october_total)}" in text
    assert "Payments received, thank you -€10.00" in text
    assert f"Amount due by 24 Dec 2026 {_euros(due)}" in text


def test_an_over_payment_refunded_shows_on_the_next_document(tmp_path):
    engine, (october, november), (october_total, november_total) = _two_months(tmp_path)
    paid = october_total + november_total + 5_000_000  # 5.00 left as credit
    with engine.begin() as connection:
        record_payment(
            connection, PaymentRequest("erika", paid, "EUR", received_at=at("2026-11-20")),
            now=at("2026-11-20"), key="over",
        )  # fmt: skip
    with engine.begin() as connection:
        refund_credit(
            connection, RefundRequest("erika", 2_000_000, "EUR", refunded_at=at("2026-11-25")),
            now=at("2026-11-25"), key="back",
        )  # fmt: skip
    document = _document(engine, november)
    assert document.carried.refunds == 2_000_000
    assert document.amount_due == october_total - paid + 2_000_000 + november_total == -3_000_000
    text = _text(render(document, "pdf", BERLIN))
    assert "Credit paid back to you €2.00" in text
