"""Resellers in the catalog (docs/catalog.md, Resellers): what the parser builds, the
wholesale price looked up by service and category, every problem it reports, and the
demo reseller."""

from __future__ import annotations

import pytest

from quota_engine.catalog import (
    CatalogError,
    Reseller,
    WholesalePrice,
    load_catalog,
    load_demo_catalog,
)
from tests.quota_engine.catalogs import base_catalog

MIB = 1_048_576


def reseller(**changes: object) -> dict:
    entry: dict[str, object] = {
        "id": "acme",
        "name": "Acme Mobile Ltd",
        "address": ["1 Main Street", "Dublin"],
        "vat_id": "IE1234567X",
        "support": "care@acme.example",
        "logo": "/srv/ocs/acme.svg",
        "invoice_number_format": "RES-{seq:06d}",
        "wholesale_account": "acme-wholesale",
        "wholesale": [
            {"service": "data", "price": 1_000, "per": MIB},
            {"service": "data", "category": "roaming-eu", "price": 2_500, "per": MIB},
            {"service": "voice", "price": 6_000, "per": 60},
            {"service": "sms", "price": 2_000},
        ],
    }
    entry.update(changes)
    return entry


def catalog_with(*entries: dict) -> dict:
    data = base_catalog()
    data["resellers"] = list(entries)
    return data


def problems_of(data: dict) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        load_catalog(data)
    return caught.value.problems


def test_a_reseller_lands_in_the_model():
    catalog = load_catalog(catalog_with(reseller()))
    assert catalog.resellers == (
        Reseller(
            id="acme",
            name="Acme Mobile Ltd",
            entity="acme",  # the id when not given
            invoice_number_format="RES-{seq:06d}",
            wholesale_account="acme-wholesale",
            tax_category="standard",
            wholesale=(
                WholesalePrice("data", "", 1_000, MIB),
                WholesalePrice("data", "roaming-eu", 2_500, MIB),
                WholesalePrice("voice", "", 6_000, 60),
                WholesalePrice("sms", "", 2_000, 1),
            ),
            address=("1 Main Street", "Dublin"),
            vat_id="IE1234567X",
            support="care@acme.example",
            logo="/srv/ocs/acme.svg",
            bill_cycle_day=1,
        ),
    )
    assert catalog.reseller("acme") is catalog.resellers[0]
    assert catalog.reseller_of_entity("acme") is catalog.resellers[0]
    assert catalog.reseller("nobody") is None and catalog.reseller_of_entity("default") is None
    assert load_catalog(base_catalog()).resellers == ()


def test_the_wholesale_price_of_the_longest_leading_category_part():
    acme = load_catalog(catalog_with(reseller())).resellers[0]
    roaming = WholesalePrice("data", "roaming-eu", 2_500, MIB)
    assert acme.price_for("data", "roaming-eu/weekday") == roaming
    assert acme.price_for("data", "roaming-eu") == roaming
    assert acme.price_for("data", "") == WholesalePrice("data", "", 1_000, MIB)
    assert acme.price_for("data", "roaming-world") == WholesalePrice("data", "", 1_000, MIB)
    assert acme.price_for("voice", "national/peak").price == 6_000
    # a service the list does not price: None (the bill run reports it)
    only_data = load_catalog(
        catalog_with(reseller(wholesale=[{"service": "data", "category": "national", "price": 1}]))
    ).resellers[0]
    assert only_data.price_for("voice", "") is None
    assert only_data.price_for("data", "international") is None


def test_every_problem_of_a_reseller_is_named():
    problems = problems_of(
        catalog_with(
            reseller(
                name="",
                entity="bad entity",
                invoice_number_format="RES-{n}",
                wholesale_account="",
                bill_cycle_day=29,
                tax_category="reduced",
                address=["x"] * 7,
                wholesale=[
                    {"service": "fax", "price": 1},
                    {"service": "data", "price": -1},
                    {"service": "data", "price": 1, "per": 0},
                    {"service": "sms", "category": 3, "price": 1},
                    {"service": "voice", "price": 1},
                    {"service": "voice", "price": 2},
                ],
            ),
            reseller(id="acme"),
        )
    )
    assert problems == [
        "resellers[0].name: must be a non-empty string",
        "resellers[0].address: must be at most 6 lines",
        "resellers[0].entity: must be 1 to 64 letters, digits, '.', '_' or '-', starting "
        "with a letter or digit",
        'resellers[0].invoice_number_format: must be a number format such as "RES-{seq:06d}": '
        "unknown field {n}",
        "resellers[0].wholesale_account: must be a non-empty string",
        "resellers[0].bill_cycle_day: must be an integer from 1 to 28",
        'resellers[0].wholesale[0].service: unknown service "fax"',
        "resellers[0].wholesale[1].price: must be a non-negative integer (at most 1000000000000)",
        "resellers[0].wholesale[2].per: must be a positive integer (at most 4294967295)",
        'resellers[0].wholesale[3].category: must be a string ("": every category)',
        'resellers[0].wholesale[5]: duplicate price of service "voice" category "" (also '
        "resellers[0].wholesale[4])",
        'resellers[1].id: duplicate id "acme" (also resellers[0])',
    ]


@pytest.mark.parametrize("form", ["RES-{seq!r}", "{entity:>8}-{seq}"])
def test_a_number_format_the_billing_numbering_refuses_is_refused_here(form):
    """The catalog checks a reseller's formats with the numbering's own check, so a
    catalog that loads never fails when its first invoice is numbered."""
    [problem] = problems_of(catalog_with(reseller(invoice_number_format=form)))
    assert problem.startswith(
        'resellers[0].invoice_number_format: must be a number format such as "RES-{seq:06d}": '
    )


def test_entities_accounts_and_formats_are_checked_across_resellers():
    problems = problems_of(
        catalog_with(
            reseller(),
            reseller(id="beta", entity="acme", wholesale_account="acme-wholesale"),
            reseller(
                id="gamma",
                wholesale_account="g",
                invoice_number_format="G-{entity}-" + "x" * 60 + "{seq}",
            ),
            reseller(id="delta", wholesale_account="d", invoice_number_format="no sequence"),
            reseller(id="eps", wholesale_account="e", wholesale=None),
        )
    )
    assert problems == [
        'resellers[1].entity: billing entity "acme" is also resellers[0]\'s',
        'resellers[1].wholesale_account: account "acme-wholesale" receives resellers[0]\'s '
        "wholesale invoices already",
        'resellers[2].invoice_number_format: must be a number format such as "RES-{seq:06d}": '
        "numbers longer than 64 characters",
        'resellers[3].invoice_number_format: must be a number format such as "RES-{seq:06d}": '
        "needs {seq}",
        "resellers[4].wholesale: is required (the wholesale price list)",
    ]


def test_the_tax_category_needs_a_rate_when_the_catalog_has_taxes():
    data = catalog_with(reseller(tax_category="reduced"))
    data["taxes"] = [{"category": "standard", "rate_ppm": 190_000}]
    assert problems_of(data) == [
        'resellers[0].tax_category: tax category "reduced" has no rate in taxes'
    ]
    data["resellers"][0]["tax_category"] = "standard"
    assert load_catalog(data).resellers[0].tax_category == "standard"


def test_unknown_keys_of_a_reseller_are_refused():
    problems = problems_of(catalog_with(reseller(colour="red")))
    assert len(problems) == 1 and problems[0].startswith("resellers[0]") and "colour" in problems[0]


def test_the_demo_reseller():
    (nordic,) = load_demo_catalog().resellers
    assert (nordic.id, nordic.entity, nordic.invoice_number_format) == (
        "nordic-mobile",
        "nordic-mobile",
        "NM-{seq:06d}",
    )
    assert nordic.wholesale_account == "nordic-mobile-wholesale"
    assert nordic.price_for("data", "roaming-eu/weekday") == WholesalePrice(
        "data", "roaming-eu", 2_500, MIB
    )
    assert nordic.price_for("sms", "international") == WholesalePrice("sms", "", 2_000, 1)


def test_a_resellers_own_credit_note_format():
    data = catalog_with(reseller(credit_note_number_format="ACME-CN-{seq:05d}"))
    assert load_catalog(data).resellers[0].credit_note_number_format == "ACME-CN-{seq:05d}"
    assert load_catalog(catalog_with(reseller())).resellers[0].credit_note_number_format is None
    assert problems_of(catalog_with(reseller(credit_note_number_format="CN"))) == [
        "resellers[0].credit_note_number_format: must be a number format such as "
        '"RES-{seq:06d}": needs {seq}'
    ]
