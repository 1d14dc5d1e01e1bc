"""A reseller's bills over real HTTP: its subscriber's bill numbered in its sequence and
naming it as the issuer (TMF678 relatedParty), its HTML document with its name, and the
wholesale bill to the reseller naming what it bills; the operator's own bill unchanged.
The demo catalog's reseller "nordic-mobile" (NM-{seq:06d})."""

from __future__ import annotations

import pytest

from ocs.billing.bill_run import BillRunOptions, run_bill_run
from ocs.billing.database import migrate, open_database
from ocs.billing.invoices import invoice_id
from tests.ocs.api.test_customer_bill_api import api
from tests.ocs.billing.conftest import (  # noqa: F401 (fixtures of the billing tests)
    database_url,
    postgres_server,
    postgres_url,
    sqlite_url,
)
from tests.ocs.billing.factory import account, at, catalog, record, write_records

NOVEMBER = at("2026-11-01 00:00")


@pytest.fixture
def billing_engine(database_url: str):  # noqa: F811
    migrate(database_url)
    engine = open_database(database_url)
    yield engine
    engine.dispose()


async def test_a_resellers_bills_name_their_issuer(
    redis_client,
    engine,
    catalog_active,
    database_url,  # noqa: F811
    billing_engine,
    tmp_path,
):
    records = tmp_path / "records"
    accounts = [account("carol", reseller="nordic-mobile"), account("dave")]
    day = at("2026-11-05 10:00")
    write_records(
        records,
        [record("c1;1;10", "carol", day, used=200 * 1_048_576), record("d1;1;10", "dave", day)],
        accounts,
    )
    summary = run_bill_run(
        billing_engine, catalog(), accounts, records, period="2026-11",
        now=at("2026-12-10 00:00"), options=BillRunOptions(),
    )  # fmt: skip
    assert (summary.errors, summary.wholesale_created) == ([], 1)
    async with api(redis_client, engine, database_url, records) as http:
        carol = (await http.get(f"/v1/customerBill/{invoice_id('carol', NOVEMBER)}")).body
        assert carol["billNo"] == "NM-000001"
        assert carol["relatedParty"] == [
            {
                "id": "nordic-mobile",
                "role": "issuer",
                "@referredType": "Organization",
                "name": "Nordic Mobile GmbH",
                "reseller": "nordic-mobile",
            }
        ]
        dave = (await http.get(f"/v1/customerBill/{invoice_id('dave', NOVEMBER)}")).body
        assert dave["billNo"] == "INV-000001"
        assert dave["relatedParty"] == [
            {"id": "default", "role": "issuer", "@referredType": "Organization"}
        ]
        wholesale_id = invoice_id("nordic-mobile-wholesale", NOVEMBER)
        wholesale = (await http.get(f"/v1/customerBill/{wholesale_id}")).body
        assert wholesale["wholesaleOf"] == {"reseller": "nordic-mobile"}
        # 200 MiB at 0.001 EUR per MiB = 0.20; VAT 19 % = 0.038 -> 0.04
        assert (wholesale["billNo"], wholesale["taxIncludedAmount"]["value"]) == (
            "INV-000002", "0.24",
        )  # fmt: skip
        listed = (await http.get("/v1/customerBill", params={"billingAccount.id": "carol"})).body
        assert listed[0]["relatedParty"] == carol["relatedParty"]
        page = await http.get(f"/v1/customerBill/{invoice_id('carol', NOVEMBER)}/html")
        assert page.status == 200
        html = page.body.decode() if isinstance(page.body, bytes) else str(page.body)
        assert "Nordic Mobile GmbH" in html and "Hafenstrasse 7" in html
