"""TMF678 JSON of invoices and credit notes (ocs.billing.representation): exact money
strings from integers, one taxItem per tax line, lines as appliedCustomerBillingRate,
on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses

import pytest

from ocs.billing.compose import ComposedInvoice, InvoiceLine
from ocs.billing.database import migrate, open_database
from ocs.billing.invoices import write_invoice
from ocs.billing.lifecycle import CreditLine, DocumentNotFound, create_credit_note, finalize, void
from ocs.billing.numbering import ensure_sequence
from ocs.billing.representation import (
    applied_rates,
    credit_note,
    credit_notes_of,
    customer_bill,
    decimal_text,
    list_bills,
    money,
    parse_decimal,
    percent,
    timestamp,
)
from tests.ocs.billing.factory import at

NOV = (at("2026-11-01 00:00"), at("2026-12-01 00:00"))


@pytest.mark.parametrize(
    ("micro", "digits", "text"),
    [
        (32_880_000, 2, "32.88"),
        (0, 2, "0.00"),
        (10_000, 2, "0.01"),
        (-500_000, 2, "-0.50"),
        (-10_000, 2, "-0.01"),
        (7_000_000, 0, "7"),
        (-3_000_000, 0, "-3"),
        (1_234_000, 3, "1.234"),
        (1_234_567, 6, "1.234567"),
        (123_456_789_000_000_000, 2, "123456789000.00"),
    ],
)
def test_decimal_text_is_exact_with_the_currency_digits(micro, digits, text):
    assert decimal_text(micro, digits) == text
    if micro >= 0:
        assert parse_decimal(text, digits) == micro  # and back


@pytest.mark.parametrize(("micro", "digits"), [(1_500_000, 0), (12_345, 2), (1, 5)])
def test_decimal_text_refuses_an_amount_finer_than_the_minor_unit(micro, digits):
    with pytest.raises(ValueError, match="not a whole number of minor units"):
        decimal_text(micro, digits)


def test_decimal_text_refuses_floats_and_bad_digits():
    with pytest.raises(TypeError):
        decimal_text(1.5, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="minor_digits"):
        decimal_text(0, 7)


@pytest.mark.parametrize(
    ("text", "digits", "micro"),
    [("5", 2, 5_000_000), ("5.5", 2, 5_500_000), ("0.01", 2, 10_000), ("12", 0, 12_000_000)],
)
def test_parse_decimal(text, digits, micro):
    assert parse_decimal(text, digits) == micro


@pytest.mark.parametrize(
    ("text", "digits", "why"),
    [
        ("1.001", 2, "more than the currency's 2"),
        ("1.5", 0, "more than the currency's 0"),
        ("1,5", 2, "decimal number"),
        ("-1", 2, "decimal number"),
        ("", 2, "decimal number"),
        ("1.", 2, "decimal number"),
        ("١", 2, "decimal number"),  # an Arabic-Indic digit: isdigit, not ASCII
    ],
)
def test_parse_decimal_refuses(text, digits, why):
    with pytest.raises(ValueError, match=why):
        parse_decimal(text, digits)


def test_money_percent_and_timestamps():
    assert money(5_250_000, "EUR", 2) == {"unit": "EUR", "value": "5.25"}
    assert [percent(r) for r in (190_000, 70_000, 55_000, 0, 1_000_000, 12_345)] == [
        "19",
        "7",
        "5.5",
        "0",
        "100",
        "1.2345",
    ]
    assert timestamp(NOV[0]) == "2026-10-31T23:00:00Z"  # midnight in Berlin, in UTC
    assert timestamp(None) is None


# --------------------------------------------------------------------------- documents


@pytest.fixture
def engine(database_url: str):
    migrate(database_url)
    engine = open_database(database_url)
    yield engine
    engine.dispose()


def _line(kind: str, description: str, amount: int, **fields) -> InvoiceLine:
    return InvoiceLine(kind, description, amount, amount, **fields)


#: Two tax rates, a discount on the data line, an allowance, a child's line.
LINES = (
    _line("recurring", "Postpaid Standard: recurring fee", 20_000_000, plan="postpaid-standard",
          period_start=NOV[0], period_end=NOV[1], tax_category="standard", tax_rate_ppm=190_000),
    _line("usage", "Data, weekday", 2_500_000, plan="postpaid-standard", service="data",
          category="weekday", quantity=4 * 1_048_576, unit="octets", tax_category="standard",
          tax_rate_ppm=190_000, records=("s1;1;10", "s2;1;10")),
    _line("allowance", "Data allowance", 0, service="data", quantity=1_048_576, unit="octets"),
    _line("usage", "Books", 10_000_000, child_account="kid", service="books",
          tax_category="reduced", tax_rate_ppm=70_000, records=("b1;0;7",)),
    _line("discount", "10 % off data", -250_000, service="data", category="promo",
          tax_category="standard", tax_rate_ppm=190_000, applies_to=1),
    _line("tax", "VAT 19 %", 4_230_000, category="standard", tax_category="standard",
          tax_rate_ppm=190_000),  # 19 % of 22.25 = 4.2275 -> 4.23
    _line("tax", "VAT 7 %", 700_000, category="reduced", tax_category="reduced",
          tax_rate_ppm=70_000),
)  # fmt: skip


def _write(engine, document: str, account: str = "alice", lines=LINES, **invoice) -> None:
    if document != "in_a":  # a record is on one invoice only
        lines = tuple(
            dataclasses.replace(line, records=tuple(f"{document}/{r}" for r in line.records))
            for line in lines
        )
    composed = ComposedInvoice(
        account=account,
        currency=invoice.get("currency", "EUR"),
        minor_digits=invoice.get("minor_digits", 2),
        period_start=NOV[0],
        period_end=NOV[1],
        lines=lines,
        off_cycle=invoice.get("off_cycle", False),
    )
    with engine.begin() as connection:
        write_invoice(
            connection, composed, document=document, entity="acme", bill_run_id=None,
            now=at("2026-12-01 01:00"),
        )  # fmt: skip
        ensure_sequence(connection, "acme", "invoice", "INV-{seq:04d}")


def test_a_draft_customer_bill(engine):
    _write(engine, "in_a")
    with engine.connect() as connection:
        bill = customer_bill(connection, "in_a")
    assert bill == {
        "id": "in_a",
        "href": "/v1/customerBill/in_a",
        "@type": "CustomerBill",
        "billNo": None,
        "state": "new",
        "lifecycleState": "draft",
        "category": "normal",
        "runType": "onCycle",
        "itemisation": "detailed",
        "taxExempt": False,
        "billingAccount": {"id": "alice", "href": "/v1/accounts/alice"},
        "billingPeriod": {
            "startDateTime": "2026-10-31T23:00:00Z",
            "endDateTime": "2026-11-30T23:00:00Z",
        },
        "billDate": None,
        "lastUpdate": "2026-12-01T00:00:00Z",
        "delivery": None,  # a draft is never delivered
        # the billing entity that issues and numbers it (no reseller's: no name)
        "relatedParty": [{"id": "acme", "role": "issuer", "@referredType": "Organization"}],
        # 20.00 + 2.50 + 0 + 10.00 - 0.25 = 32.25; taxes 4.23 + 0.70 = 4.93
        "amountDue": {"unit": "EUR", "value": "37.18"},
        "remainingAmount": {"unit": "EUR", "value": "37.18"},
        "taxExcludedAmount": {"unit": "EUR", "value": "32.25"},
        "taxIncludedAmount": {"unit": "EUR", "value": "37.18"},
        "taxItem": [
            {
                "taxCategory": "standard",
                "taxRate": "19",
                "taxAmount": {"unit": "EUR", "value": "4.23"},
            },
            {
                "taxCategory": "reduced",
                "taxRate": "7",
                "taxAmount": {"unit": "EUR", "value": "0.70"},
            },
        ],
        "appliedCustomerBillingRate": {"href": "/v1/customerBill/in_a/appliedCustomerBillingRate"},
    }


def test_final_void_and_off_cycle_states(engine):
    _write(engine, "in_a")
    _write(engine, "in_b", account="bob", off_cycle=True)
    with engine.begin() as connection:
        finalize(connection, "in_a", now=at("2026-12-02 09:00"), actor="test")
        finalize(connection, "in_b", now=at("2026-12-02 09:00"), actor="test")
        void(connection, "in_b", reason="wrong plan", now=at("2026-12-03 09:00"), actor="test")
    with engine.connect() as connection:
        final, voided = customer_bill(connection, "in_a"), customer_bill(connection, "in_b")
    assert (final["state"], final["lifecycleState"], final["billNo"]) == (
        "validated",
        "final",
        "INV-0001",
    )
    assert final["billDate"] == "2026-12-02T08:00:00Z" == final["lastUpdate"]
    assert (voided["state"], voided["lifecycleState"], voided["billNo"]) == (
        "cancelled",
        "void",
        "INV-0002",
    )
    assert (voided["category"], voided["runType"]) == ("offCycle", "offCycle")
    assert voided["voidReason"] == "wrong plan"
    assert voided["cancellationDate"] == "2026-12-03T08:00:00Z" == voided["lastUpdate"]
    assert voided["amountDue"] == {"unit": "EUR", "value": "0.00"}  # nothing owed on it
    assert voided["taxIncludedAmount"] == {"unit": "EUR", "value": "37.18"}
    assert "voidReason" not in final


def test_applied_rates_name_the_tmf_fields(engine):
    _write(engine, "in_a")
    with engine.connect() as connection:
        lines = applied_rates(connection, "in_a")
        detailed = applied_rates(connection, "in_a", detail=True)
    assert [(x["position"], x["type"], x["taxExcludedAmount"]["value"]) for x in lines] == [
        (1, "recurring", "20.00"),
        (2, "usage", "2.50"),
        (3, "allowance", "0.00"),
        (4, "usage", "10.00"),
        (5, "discount", "-0.25"),
        (6, "tax", "4.23"),
        (7, "tax", "0.70"),
    ]
    fee, data, allowance, books, discount, tax, _ = lines
    assert fee["periodCoverage"] == {
        "startDateTime": "2026-10-31T23:00:00Z",
        "endDateTime": "2026-11-30T23:00:00Z",
    }
    assert fee["product"] == {"id": "postpaid-standard", "name": "postpaid-standard"}
    assert fee["appliedTax"] == [{"taxCategory": "standard", "taxRate": "19"}]
    assert data == {
        "id": data["id"],
        "@type": "AppliedCustomerBillingRate",
        "position": 2,
        "name": "Data, weekday",
        "type": "usage",
        "isBilled": True,
        "date": "2026-12-01T00:00:00Z",
        "bill": {"id": "in_a", "href": "/v1/customerBill/in_a"},
        "billingAccount": {"id": "alice", "href": "/v1/accounts/alice"},
        "taxExcludedAmount": {"unit": "EUR", "value": "2.50"},
        "product": {"id": "postpaid-standard", "name": "postpaid-standard"},
        "characteristic": [
            {"name": "service", "value": "data"},
            {"name": "category", "value": "weekday"},
        ],
        "quantity": {"amount": 4 * 1_048_576, "units": "octets"},
        "appliedTax": [{"taxCategory": "standard", "taxRate": "19"}],
    }
    assert "appliedTax" not in allowance and "periodCoverage" not in data
    assert books["billingAccount"]["id"] == "kid"  # the child's section
    assert {"name": "childAccount", "value": "kid"} in books["characteristic"]
    assert books["appliedTax"] == [{"taxCategory": "reduced", "taxRate": "7"}]
    assert discount["appliesTo"] == 2  # the data line's position
    assert "appliedTax" not in tax  # a tax line is the tax, not taxed
    assert all("ratedRecords" not in x for x in lines)
    assert [x["ratedRecords"] for x in detailed] == [
        [],
        ["s1;1;10", "s2;1;10"],
        [],
        ["b1;0;7"],
        [],
        [],
        [],
    ]


def test_credit_notes_with_their_tax(engine):
    _write(engine, "in_a")
    with engine.begin() as connection:
        finalize(connection, "in_a", now=at("2026-12-02 09:00"), actor="test")
        note_id, number = create_credit_note(
            connection,
            "in_a",
            [CreditLine(2, 1_000_000), CreditLine(4, None, "books returned")],
            reason="goodwill",
            now=at("2026-12-05 09:00"),
            actor="test",
        )
    with engine.connect() as connection:
        note = credit_note(connection, note_id)
        bill = customer_bill(connection, "in_a")
        assert credit_notes_of(connection, "in_a") == [note]
    assert note["billNo"] == number == "CN-000001"
    assert (note["state"], note["lifecycleState"], note["category"]) == (
        "validated",
        "final",
        "creditNote",
    )
    assert note["bill"] == {"id": "in_a", "href": "/v1/customerBill/in_a"}
    # 1.00 at 19 % (0.19) and the whole 10.00 at 7 % (0.70)
    assert note["taxExcludedAmount"] == {"unit": "EUR", "value": "11.00"}
    assert note["taxIncludedAmount"] == {"unit": "EUR", "value": "11.89"}
    assert note["taxItem"] == [
        {"taxCategory": "reduced", "taxRate": "7", "taxAmount": {"unit": "EUR", "value": "0.70"}},
        {"taxCategory": "standard", "taxRate": "19", "taxAmount": {"unit": "EUR", "value": "0.19"}},
    ]
    first, second = note["creditNoteItem"]
    assert first["appliedCustomerBillingRate"]["position"] == 2
    assert (first["taxExcludedAmount"]["value"], first["taxAmount"]["value"]) == ("1.00", "0.19")
    assert (second["name"], second["taxExcludedAmount"]["value"]) == ("books returned", "10.00")
    assert bill["amountDue"] == {"unit": "EUR", "value": "25.29"}  # 37.18 - 11.89
    assert bill["taxIncludedAmount"] == {"unit": "EUR", "value": "37.18"}


def test_a_currency_without_decimals(engine):
    lines = (
        _line("recurring", "Fee", 3_000_000_000, tax_category="standard", tax_rate_ppm=100_000),
        _line("tax", "Tax 10 %", 300_000_000, tax_category="standard", tax_rate_ppm=100_000),
    )
    _write(engine, "in_jpy", lines=lines, currency="JPY", minor_digits=0)
    with engine.connect() as connection:
        bill = customer_bill(connection, "in_jpy")
    assert bill["taxIncludedAmount"] == {"unit": "JPY", "value": "3300"}
    assert bill["taxItem"][0]["taxAmount"] == {"unit": "JPY", "value": "300"}


def test_list_bills_filters_and_pages(engine):
    _write(engine, "in_a")
    _write(engine, "in_b", account="bob")
    _write(engine, "in_c", account="carol")
    with engine.begin() as connection:
        finalize(connection, "in_b", now=at("2026-12-02 09:00"), actor="test")
    with engine.connect() as connection:
        total, page = list_bills(connection, limit=2, offset=0)
        assert (total, [b["id"] for b in page]) == (3, ["in_a", "in_b"])
        total, page = list_bills(connection, limit=2, offset=2)
        assert (total, [b["id"] for b in page]) == (3, ["in_c"])
        total, page = list_bills(connection, state="draft")
        assert (total, [b["id"] for b in page]) == (2, ["in_a", "in_c"])
        total, page = list_bills(connection, account="bob", state="final")
        assert (total, [b["billNo"] for b in page]) == (1, ["INV-0001"])
        assert list_bills(connection, account="nobody") == (0, [])


def test_unknown_documents(engine):
    with engine.connect() as connection:
        for read in (customer_bill, applied_rates, credit_notes_of):
            with pytest.raises(DocumentNotFound, match="no customer bill 'in_x'"):
                read(connection, "in_x")
        with pytest.raises(DocumentNotFound, match="no credit note 'cn_x'"):
            credit_note(connection, "cn_x")
