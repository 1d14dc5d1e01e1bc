"""A reseller's subscriber's invoice document names the reseller as its issuer: its
legal name, address, VAT id, support contact and logo, from the billing database
(``billing_entities``, kept by the bill run from the catalog), never the operator's
``[documents]`` header; the operator's own customers' and the wholesale invoice's
documents keep the operator's. HTML checked as text, the PDF read back with pypdf."""

from __future__ import annotations

import base64
import dataclasses
import io
from zoneinfo import ZoneInfo

import pypdf
from sqlalchemy import select

from ocs.billing.bill_run import BillRunOptions, run_bill_run
from ocs.billing.database import migrate, open_database
from ocs.billing.documents import load_document, render
from ocs.billing.schema import invoices
from quota_engine.catalog.model import Reseller, WholesalePrice
from tests.ocs.billing.documents.builders import NOVEMBER_DONE, OPERATOR
from tests.ocs.billing.factory import account, at, catalog, record, write_records

BERLIN = ZoneInfo("Europe/Berlin")
MIB = 1_048_576
LOGO = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40">'
    '<rect width="120" height="40" fill="#c00"/><text x="8" y="26" fill="#fff">ACME</text></svg>'
)


def test_the_documents_show_the_resellers_name_and_logo(tmp_path):
    logo = tmp_path / "acme-logo.svg"
    logo.write_text(LOGO)
    acme = Reseller(
        id="acme",
        name="Acme Mobile Ltd",
        entity="acme",
        invoice_number_format="RES-{seq:06d}",
        wholesale_account="acme-wholesale",
        tax_category="standard",
        wholesale=(WholesalePrice("data", "", 1_500, MIB),),
        address=("1 Main Street", "Dublin 2"),
        vat_id="IE1234567X",
        support="care@acme.example",
        logo=str(logo),
    )
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    migrate(url)
    engine = open_database(url)
    accounts = [account("alice", reseller="acme"), account("own")]
    records = tmp_path / "records"
    records.mkdir()
    day = at("2026-11-10 10:00")
    write_records(
        records,
        [record("a1;1;10", "alice", day), record("o1;1;10", "own", day)],
        accounts,
    )
    summary = run_bill_run(
        engine, dataclasses.replace(catalog(), resellers=(acme,)), accounts, records,
        period="2026-11", now=NOVEMBER_DONE, options=BillRunOptions(),
    )  # fmt: skip
    assert summary.errors == [] and summary.wholesale_created == 1

    def document_of(account_id: str):  # type: ignore[no-untyped-def]
        with engine.connect() as connection:
            document = connection.execute(
                select(invoices.c.id).where(invoices.c.account == account_id)
            ).scalar_one()
            return load_document(
                connection, document, operator=OPERATOR,
                contacts={a.id: a.contact for a in accounts},
                partitions={a.id: a.partition for a in accounts},
                records_directory=records, now=NOVEMBER_DONE,
            )  # fmt: skip

    retail = document_of("alice")
    assert retail.number == "RES-000001"
    assert retail.operator.name == "Acme Mobile Ltd"
    assert retail.operator.logo == logo
    assert retail.operator.payment_terms == OPERATOR.payment_terms  # the operator's terms
    html = render(retail, "html", BERLIN).decode()
    assert "Acme Mobile Ltd" in html and "1 Main Street" in html and "IE1234567X" in html
    assert "care@acme.example" in html
    assert base64.b64encode(LOGO.encode()).decode() in html  # the reseller's logo embedded
    assert OPERATOR.name not in html and OPERATOR.vat_id not in html
    pdf = render(retail, "pdf", BERLIN)
    text = "".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    assert "Acme Mobile Ltd" in text and "RES-000001" in text
    assert OPERATOR.name not in text

    # the operator's own customer, and the wholesale invoice to the reseller: the operator
    for account_id in ("own", "acme-wholesale"):
        document = document_of(account_id)
        assert document.operator == OPERATOR
        assert document.number is not None and document.number.startswith("INV-")
        assert OPERATOR.name in render(document, "html", BERLIN).decode()
    engine.dispose()
