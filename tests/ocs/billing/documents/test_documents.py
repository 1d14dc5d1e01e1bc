"""Invoice documents from invoices made by real bill runs (SQLite, sealed segment files):
the PDF's text read back with pypdf, the HTML page, the content model and the locale
formatting. Expected amounts are worked out by hand beside each assertion."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import pypdf
import pytest
from sqlalchemy import select

from ocs.billing.accounts import Contact
from ocs.billing.bill_run import BillRunOptions, run_bill_run
from ocs.billing.documents import Carried, document_accounts, load_document, render
from ocs.billing.documents.formatting import Formatter, micro_decimal
from ocs.billing.documents.html import default_logo
from ocs.billing.documents.pdf import DocumentRenderError, render_pdf
from ocs.billing.documents.view import document_view
from ocs.billing.lifecycle import CreditLine, DocumentNotFound, create_credit_note, void
from ocs.billing.schema import invoice_items, invoices
from tests.ocs.billing.documents.builders import (
    BERLIN,
    NOVEMBER_DONE,
    OPERATOR,
    bill,
    business,
    single,
    usage,
)
from tests.ocs.billing.factory import account, at, catalog, record, write_records

NBSP = "\xa0"


def pdf_pages(body: bytes) -> list[str]:
    return [
        page.extract_text().replace(NBSP, " ") for page in pypdf.PdfReader(io.BytesIO(body)).pages
    ]


# --------------------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    ("locale", "money", "negative", "rate", "date"),
    [
        ("de_DE", "1.234,56 €", "-0,50 €", "19 %", "02.12.2026"),
        ("en_GB", "€1,234.56", "-€0.50", "19%", "2 Dec 2026"),
    ],
)
def test_money_dates_and_rates_per_locale(locale, money, negative, rate, date):
    f = Formatter.of(locale, "EUR", 2, BERLIN)
    assert f.money(1_234_560_000).replace(NBSP, " ") == money
    assert f.money(-500_000).replace(NBSP, " ") == negative
    assert f.rate(190_000).replace(NBSP, " ") == rate
    assert f.date(1_796_166_000) == date  # 2026-12-02 00:00 in Berlin


def test_amounts_are_exact_decimals_never_floats():
    assert str(micro_decimal(1_234_567)) == "1.234567"
    with pytest.raises(TypeError):
        micro_decimal(1.5)  # type: ignore[arg-type]
    f = Formatter.of("en_GB", "EUR", 2, BERLIN)
    # an invoice amount is whole cents; a record's exact charge keeps its digits
    with pytest.raises(ValueError, match="whole number of minor units"):
        f.money(12_345)
    assert f.exact_money(12_500) == "€0.0125"
    assert f.exact_money(500_000) == "€0.50"
    # 0 digits (JPY)
    assert Formatter.of("en_GB", "JPY", 0, BERLIN).money(7_000_000) == "JP¥7"


def test_quantities():
    f = Formatter.of("de_DE", "EUR", 2, BERLIN)
    assert f.quantity(125, "seconds") == "2:05"
    assert f.quantity(3_725, "seconds") == "1:02:05"
    assert f.quantity(1_572_864, "octets") == "1,50 MB"
    assert f.quantity(3 * 1024**3, "octets") == "3,00 GB"
    assert f.quantity(12, "events") == "12"


# --------------------------------------------------------------------------- one account


def test_single_invoice_pdf_has_the_bill_and_its_records(tmp_path):
    billed = single(tmp_path, records=12, finalize=True)
    document = billed.document("erika")
    # 12 records: data i=0,3,6,9 charged 10_000*(i%7+1): 10k+40k+70k+30k = 150_000 -> 0.15
    # voice i=1,4,7,10: 90_000+i each = 360_022 -> 0.36; sms i=2,5,8,11: 4*90_000 -> 0.36
    # fee 20.00; subtotal 20.87; tax 19 % 3.9653 -> 3.97; total 24.84
    assert (document.subtotal, document.tax, document.total) == (20_870_000, 3_970_000, 24_840_000)
    assert len(document.itemised) == 12 and document.records_missing == 0
    pages = pdf_pages(render(document, "pdf", BERLIN))
    text = "\n".join(pages)
    assert "Erika Mustermann" in text and "Musterstraße 12" in text and "10115 Berlin" in text
    assert "Invoice INV-000001" in text
    assert "Beispiel Telekom GmbH" in text and "VAT DE123456789" in text
    assert "24,84 €" in text and "3,97 €" in text and "20,87 €" in text
    assert "Abrechnungszeitraum" not in text  # the labels are English; the numbers German
    assert "01.11.2026 – 30.11.2026" in text or "1. Nov" in text or "01.11.2026" in text
    assert "Due date 24.12.2026" in text  # finalised 10 Dec + 14 days
    assert [f"Page {n} of {len(pages)}" in page for n, page in enumerate(pages, 1)] == [True] * len(
        pages
    )
    # itemised: each record once, with its time, line, quantity and exact charge
    assert text.count("+4917012345") == 12
    assert "0,090001 €" in text  # voice i=1: 90_001 micro-units, exact


def test_draft_is_marked_and_has_no_number(tmp_path):
    billed = single(tmp_path, records=3, finalize=False)
    document = billed.document("erika")
    assert document.draft and document.number is None
    text = "\n".join(pdf_pages(render(document, "pdf", BERLIN)))
    assert "DRAFT" in text and "INV-" not in text
    assert "not a request for payment" in text and "Please pay" not in text
    html = render(document, "html", BERLIN).decode()
    assert "DRAFT" in html and "INV-" not in html


def test_void_invoice_says_so_and_nothing_is_due(tmp_path):
    billed = single(tmp_path, records=2, finalize=True)
    invoice = billed.invoice_id("erika")
    with billed.engine.begin() as connection:
        void(connection, invoice, reason="wrong", now=1_796_000_000, actor="t")
    document = billed.document("erika")
    assert document.state == "void" and document.amount_due == 0
    text = "\n".join(pdf_pages(render(document, "pdf", BERLIN)))
    assert "This invoice is void" in text and "Amount due by 24.12.2026 0,00 €" in text
    assert "Please pay" not in text


def test_summary_only_account_has_no_itemised_pages(tmp_path):
    billed = single(tmp_path, records=30, itemisation="summary", finalize=True)
    document = billed.document("erika")
    assert document.itemisation == "summary" and document.itemised == ()
    pages = pdf_pages(render(document, "pdf", BERLIN))
    assert len(pages) == 1 and "Itemised usage" not in pages[0]


def test_carried_balance_and_credit_notes_make_the_amount_due(tmp_path):
    billed = single(tmp_path, records=3, contact=Contact(name="Bob", locale="en_GB"), finalize=True)
    invoice = billed.invoice_id("erika")
    with billed.engine.begin() as connection:
        create_credit_note(
            connection, invoice, [CreditLine(1, 5_000_000)], reason="goodwill", now=1_796_000_000,
            actor="test",
        )  # fmt: skip
    document = dataclasses.replace(
        billed.document("erika"), carried=Carried(previous_balance=10_000_000, payments=4_000_000)
    )
    # 3 records: data 10_000, voice 90_001, sms 90_000 -> 0.01 + 0.09 + 0.09 = 0.19; fee 20.00
    # subtotal 20.19; tax 3.8361 -> 3.84; total 24.03. Credit 5.00 + 19 % 0.95 = 5.95.
    # due: 10.00 - 4.00 + 24.03 - 5.95 = 24.08
    assert document.total == 24_030_000 and document.credited == 5_950_000
    assert document.amount_due == 24_080_000
    text = "\n".join(pdf_pages(render(document, "pdf", BERLIN)))
    assert "Previous balance €10.00" in text
    assert "Payments received, thank you -€4.00" in text
    assert "Credit notes -€5.95" in text
    assert "Amount due by 24 Dec 2026 €24.08" in text
    assert "CN-000001" in text


def test_the_operator_logo_from_the_settings(tmp_path):
    billed = single(tmp_path, records=1, finalize=True)
    logo = tmp_path / "mylogo.svg"
    logo.write_text(default_logo().read_text().replace("OCS", "ZZTOP"))
    document = billed.document("erika", operator=dataclasses.replace(OPERATOR, logo=logo))
    assert "ZZTOP" in "".join(pdf_pages(render(document, "pdf", BERLIN)))
    assert "data:image/svg+xml;base64," in render(document, "html", BERLIN).decode()


def test_a_logo_that_cannot_be_read_is_a_render_error(tmp_path):
    billed = single(tmp_path, records=1, finalize=True)
    document = billed.document("erika")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DocumentRenderError, match="could not be made"):
        render_pdf(document_view(document, BERLIN), broken)


def test_unknown_invoice_is_document_not_found(tmp_path):
    billed = single(tmp_path, records=1, finalize=True)
    with billed.engine.connect() as connection, pytest.raises(DocumentNotFound):
        document_accounts(connection, "in_nope")
    with billed.engine.connect() as connection, pytest.raises(DocumentNotFound):
        load_document(
            connection, "in_nope", operator=OPERATOR, contacts={}, partitions={},
            records_directory=billed.records, now=0,
        )  # fmt: skip


def test_records_gone_from_the_segments_are_counted(tmp_path):
    billed = single(tmp_path, records=4, finalize=True)
    for segment in Path(billed.records).iterdir():
        segment.unlink()
    document = billed.document("erika")
    assert document.itemised == () and document.records_missing == 4
    text = "\n".join(pdf_pages(render(document, "pdf", BERLIN)))
    assert "4 records of this invoice could not be read from the record files" in text


# --------------------------------------------------------------------------- business


def test_business_invoice_of_three_lines_spans_several_pages(tmp_path):
    billed = business(tmp_path, per_line=60, finalize=True)
    document = billed.document("acme")
    assert [s.account for s in document.sections] == ["acme", "acme-1", "acme-2", "acme-3"]
    with billed.engine.connect() as connection:
        children = set(
            connection.execute(
                select(invoice_items.c.child_account).where(
                    invoice_items.c.child_account.isnot(None)
                )
            ).scalars()
        )
    assert children == {"acme-1", "acme-2", "acme-3"}
    # every line's subtotal, and the invoice total, as the database has them
    assert sum(s.subtotal for s in document.sections) == document.subtotal
    assert len(document.itemised) == 180
    pages = pdf_pages(render(document, "pdf", BERLIN))
    assert len(pages) > 2
    for n, page in enumerate(pages, 1):
        assert f"Page {n} of {len(pages)}" in page
    text = "\n".join(pages)
    assert "ACME Industries Ltd" in text and "1 Long Lane" in text
    for n in (1, 2, 3):
        assert f"Line acme-{n} · Line user {n}" in text
        assert f"Itemised usage · acme-{n}" in text
    # the itemised table's header is repeated on every page it runs over
    itemised = [page for page in pages if "+4917012345" in page]
    assert len(itemised) >= 3
    assert all("VOLUME / TIME" in page for page in itemised)
    # en_GB, the company's locale: the total of the database, written the British way
    total = document.total
    assert f"€{total // 1_000_000}.{total // 10_000 % 100:02d}" in text
    assert len(re.findall(r"\d\d/11/2026 \d\d:\d\d:\d\d", text)) == 180


def test_business_html_has_the_same_content(tmp_path):
    billed = business(tmp_path, per_line=5, finalize=True)
    document = billed.document("acme")
    html = render(document, "html", BERLIN).decode().replace(NBSP, " ")
    assert html.count("<thead>") == 1 + 4 + 1 + 3  # services, 4 sections, taxes, 3 itemised
    for n in (1, 2, 3):
        assert f"Line acme-{n} · Line user {n}" in html
    assert "Page &#34; counter(page)" not in html and "counter(pages)" in html
    assert "ACME Industries Ltd" in html and "INV-000001" in html


def test_html_escapes_what_the_customer_typed(tmp_path):
    billed = single(
        tmp_path, records=1, contact=Contact(name='<script>x</script> "Q"'), finalize=True
    )
    html = render(billed.document("erika"), "html", BERLIN).decode()
    assert "<script>x</script>" not in html and "&lt;script&gt;" in html


def test_late_usage_is_itemised_from_the_late_window(tmp_path):
    """A record of October that reached the segments after October's invoice was final
    goes on November's as late usage: its document lists it, reading the segments from
    ``late_window`` before the period (and not when the window is shorter)."""
    erika = account("erika", contact=Contact(name="Erika", locale="de_DE"))
    made = bill(tmp_path, [erika], [], period="2026-10", now=at("2026-11-10 00:00"), finalize=True)
    write_records(made.records, usage("erika", 2), [erika])
    late = {**record("late;1;10", "erika", at("2026-10-20 12:00"), charged=700_000),
            "identities": ["msisdn:491701234599"]}  # fmt: skip
    write_records(made.records, [late], [erika])
    summary = run_bill_run(
        made.engine, catalog(), [erika], made.records, period="2026-11",
        now=NOVEMBER_DONE, options=BillRunOptions(finalize=True),
    )  # fmt: skip
    assert summary.errors == []
    with made.engine.connect() as connection:
        november = connection.execute(
            select(invoices.c.id).where(
                invoices.c.account == "erika", invoices.c.period_start == at("2026-11-01 00:00")
            )
        ).scalar_one()
        kinds = (
            connection.execute(
                select(invoice_items.c.kind).where(invoice_items.c.invoice_id == november)
            )
            .scalars()
            .all()
        )
        assert "late_usage" in kinds

        def load(window: int):
            return load_document(
                connection, november, operator=OPERATOR, contacts={"erika": erika.contact},
                partitions={"erika": erika.partition}, records_directory=made.records,
                now=NOVEMBER_DONE, late_window=window,
            )  # fmt: skip

        document = load(62 * 86_400)
        assert "+491701234599" in [
            r.identity and "+" + r.identity.split(":")[1] for r in document.itemised
        ]
        assert document.records_missing == 0
        assert load(0).records_missing == 1  # October is before the window


def test_an_unknown_format_is_refused(tmp_path):
    document = single(tmp_path, records=1, finalize=True).document("erika")
    with pytest.raises(ValueError, match="format must be one of pdf, html"):
        render(document, "docx", BERLIN)  # type: ignore[arg-type]


USAGE = ("data", "voice", "sms")


def test_itemised_rows_show_the_number_called_or_the_apn(tmp_path):
    """Voice and SMS rows show the number called / the recipient, data rows the APN; a
    record written before records carried them (no such fields) bills and shows an
    empty cell."""
    erika = account("erika", contact=Contact(name="Erika", locale="de_DE"))
    identity = {"identities": ["msisdn:491700000001"]}
    made = [
        {**record("v;1;100", "erika", at("2026-11-03 09:00"), service="voice", used=61,
                  charged=200_000, destination="national"),
         **identity, "called": "4930123456", "apn": None},
        {**record("m;0;200", "erika", at("2026-11-03 10:00"), service="sms", used=1,
                  charged=90_000, destination="international"),
         **identity, "called": "447700900123", "apn": None},
        {**record("d;1;10", "erika", at("2026-11-03 11:00"), charged=500_000),
         **identity, "called": None, "apn": "internet.test"},
        {**record("old;1;10", "erika", at("2026-11-03 12:00"), charged=300_000), **identity},
    ]  # fmt: skip
    assert "called" not in made[3] and "apn" not in made[3]
    billed = bill(tmp_path, [erika], made, finalize=True)
    document = billed.document("erika")
    assert [(r.called, r.apn) for r in document.itemised] == [
        ("4930123456", None),
        ("447700900123", None),
        (None, "internet.test"),
        (None, None),
    ]
    # the old record is billed like the others: data 0.50 + 0.30, calls 0.20, SMS 0.09
    assert document.records_missing == 0
    usage_totals = {t.service: t.amount for t in document.by_service if t.service in USAGE}
    assert usage_totals == {"data": 800_000, "voice": 200_000, "sms": 90_000}
    rows = document_view(document, BERLIN)["itemised"][0]["rows"]
    assert [row["number"] for row in rows] == ["4930123456", "447700900123", "internet.test", ""]
    text = "\n".join(pdf_pages(render(document, "pdf", BERLIN)))
    assert "NUMBER / APN" in text
    for shown in ("4930123456", "447700900123", "internet.test"):
        assert text.count(shown) == 1
    html = render(document, "html", BERLIN).decode()
    assert "<th>Number / APN</th>" in html
    assert "<td>Calls</td><td>4930123456</td>" in html
    assert "<td>Data</td><td>internet.test</td>" in html
    assert "<td>Data</td><td></td>" in html  # the old record
