"""Bill documents over real TCP: GET /v1/customerBill/{id}/pdf and /html of an invoice
made by a real bill run from real segment files, for an account created through the
API with its contact; the PDF's text read back with pypdf."""

from __future__ import annotations

import io

import pypdf
import pytest

from ocs.billing.bill_run import BillRunOptions, run_bill_run
from ocs.billing.invoices import invoice_id
from quota_engine.store import keys
from tests.ocs.api.conftest import VIEWER_TOKEN, bearer
from tests.ocs.api.test_customer_bill_api import api, billing_engine  # noqa: F401
from tests.ocs.billing.conftest import sqlite_url  # noqa: F401
from tests.ocs.billing.factory import account, at, catalog, record, write_records

NOVEMBER = at("2026-11-01 00:00")
ERIKA = invoice_id("erika", NOVEMBER)
CONTACT = {
    "name": "Erika Mustermann",
    "address": "Musterstraße 12\n10115 Berlin",
    "locale": "de_DE",
}


@pytest.fixture
def database_url(sqlite_url):  # noqa: F811
    return sqlite_url


@pytest.fixture
async def http(redis_client, engine, catalog_active, database_url, billing_engine, tmp_path):  # noqa: F811
    records = tmp_path / "records"
    async with api(redis_client, engine, database_url, records) as client:
        created = await client.post(
            "/v1/accounts",
            {"id": "erika", "kind": "postpaid", "plan": "postpaid-standard", **CONTACT},
        )
        assert created.status == 201, created.body
        erika = account(
            "erika", created=at("2026-01-10 12:00"), partition=keys.partition_of("erika")
        )
        write_records(
            records,
            [
                record("s1;1;10", "erika", at("2026-11-02 10:00"), charged=1_500_000),
                record("s3;1;100", "erika", at("2026-11-04 09:00"), service="voice",
                       used=125, charged=300_000, destination="national"),
            ],
            [erika],
        )  # fmt: skip
        summary = run_bill_run(
            billing_engine, catalog(), [erika], records, period="2026-11",
            now=at("2026-12-10 00:00"), options=BillRunOptions(finalize=True),
        )  # fmt: skip
        assert summary.errors == []
        yield client


async def download(http, path: str, token=None):
    async with http.client.get(path, headers=bearer(token or http.token)) as response:
        return response.status, response.headers, await response.read()


def pdf_text(body: bytes) -> str:
    """The text of every page; Babel's no-break spaces (``25,94\\xa0€``) as spaces."""
    pages = pypdf.PdfReader(io.BytesIO(body)).pages
    return "\n".join(page.extract_text() for page in pages).replace("\xa0", " ")


async def test_pdf_download(http):
    status, headers, body = await download(http, f"/v1/customerBill/{ERIKA}/pdf", VIEWER_TOKEN)
    assert status == 200
    assert headers["Content-Type"] == "application/pdf"
    assert body.startswith(b"%PDF-")
    text = pdf_text(body)
    # 20.00 fee + 1.50 data + 0.30 voice = 21.80; 19 % tax 4.142 -> 4.14; total 25.94
    assert "Erika Mustermann" in text and "Musterstraße 12" in text
    assert "INV-000001" in text
    assert "25,94 €" in text and "4,14 €" in text  # de_DE, the account's locale
    assert "Page 1 of 2" in text  # the itemised records on a page of their own


async def test_html_download(http):
    status, headers, body = await download(http, f"/v1/customerBill/{ERIKA}/html")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    page = body.decode().replace("\xa0", " ")
    assert page.startswith("<!DOCTYPE html>") and "Erika Mustermann" in page
    assert "25,94 €" in page and "INV-000001" in page


@pytest.mark.parametrize("kind", ["pdf", "html"])
async def test_unknown_bill_is_404_json(http, kind):
    status, headers, body = await download(http, f"/v1/customerBill/in_nope/{kind}")
    assert status == 404
    assert headers["Content-Type"].startswith("application/json")
    assert b"no customer bill" in body


async def test_documents_need_a_token(http):
    status, _, _ = await download(
        http, f"/v1/customerBill/{ERIKA}/pdf", token="wrong-token-0123456789"
    )
    assert status == 401


def test_openapi_names_the_media_types():
    from ocs.api.openapi import document
    from ocs.api.routes import ROUTES

    paths = document(ROUTES)["paths"]
    for kind, media in (("pdf", "application/pdf"), ("html", "text/html")):
        ok = paths[f"/v1/customerBill/{{bill_id}}/{kind}"]["get"]["responses"]["200"]
        assert list(ok["content"]) == [media]
