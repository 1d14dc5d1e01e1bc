"""The ``[documents]`` settings: read from every layer, each bad value named, and the
operator the documents show made from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocs.billing.documents import operator_of
from ocs.billing.documents.html import default_logo
from ocs.config import check_config, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ocs.toml"
    path.write_text(text)
    return path


def test_defaults_give_the_shipped_logo_and_14_days():
    settings = load_settings(None, {}, {})
    operator = operator_of(settings)
    assert operator.logo == default_logo() and operator.logo.is_file()
    assert (operator.name, operator.payment_terms, operator.locale) == ("OCS Telecom", 14, "en_GB")
    assert operator.address == () and operator.vat_id == ""


def test_every_layer(tmp_path):
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"\x89PNG\r\n\x1a\n")
    path = write(
        tmp_path,
        '[documents]\noperator_name = "Beispiel GmbH"\n'
        'operator_address = "Hauptstraße 1\\n\\n10115 Berlin"\n'
        f'logo = "{logo}"\npayment_terms = 30\n',
    )
    settings = load_settings(
        path, {"OCS_DOCUMENTS_VAT_ID": "DE123456789"}, {"documents_locale": "de_DE"}
    )
    operator = operator_of(settings)
    assert operator.name == "Beispiel GmbH"
    assert operator.address == ("Hauptstraße 1", "10115 Berlin")  # blank lines dropped
    assert (operator.logo, operator.payment_terms) == (logo, 30)
    assert (operator.vat_id, operator.locale) == ("DE123456789", "de_DE")


@pytest.mark.parametrize(
    ("toml", "starts"),
    [
        ('logo = "/nonexistent/logo.png"', "documents.logo: must be an existing .png, .jpg"),
        ('logo = "ocs.toml"', "documents.logo: must be an existing .png, .jpg"),
        ("payment_terms = 366", "documents.payment_terms: must be an integer from 0 to 365"),
        ('locale = "xx_QQ"', "documents.locale: must be a locale such as de_DE"),
        ('locale = "de"', "documents.locale: must be a locale such as de_DE"),
        ('operator_name = "two\\nlines"', "documents.operator_name: must be one line"),
        ('vat_id = "' + "x" * 201 + '"', "documents.vat_id: must be one line"),
        ('operator_name = ""', "documents.operator_name: must be one line of 1 to 200"),
        ('operator_name = "   "', "documents.operator_name: must be one line of 1 to 200"),
        ('support = "tab\tin it"', "documents.support: must be one line"),
    ],
)
def test_bad_values_are_named(tmp_path, toml, starts):
    problems = check_config(write(tmp_path, f"[documents]\n{toml}\n"))
    assert len(problems) == 1 and problems[0].startswith(starts), problems
