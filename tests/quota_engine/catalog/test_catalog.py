"""Catalog model: parsing into frozen dataclasses, lookups, files, the demo catalog."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import date

import pytest

from quota_engine.catalog import (
    DEMO_CATALOG_PATH,
    Catalog,
    CatalogError,
    Rate,
    catalog_from_file,
    load_catalog,
    load_demo_catalog,
)
from quota_engine.catalog.timebands import BandWindow
from tests.quota_engine.catalogs import base_catalog


@pytest.fixture
def catalog() -> Catalog:
    return load_catalog(base_catalog())


def test_parsed_values(catalog):
    assert catalog.version == "t1"
    assert catalog.currency == "EUR"
    assert catalog.minor_digits == 2  # the default
    assert catalog.timezone == "UTC"
    assert catalog.holidays == frozenset({date(2025, 12, 25)})
    assert catalog.home_mcc_mnc == ("00101",)
    sms = catalog.service("sms")
    assert (sms.context, sms.rating_groups, sms.service_identifiers, sms.unit) == (
        "32274@3gpp.org",
        (200,),
        (3,),
        "events",
    )
    offpeak = catalog.time_bands[1]
    weekdays = frozenset({"mon", "tue", "wed", "thu", "fri"})
    assert offpeak.windows == (BandWindow(weekdays, 0, 480), BandWindow(weekdays, 1200, 1440))
    assert catalog.zones[0].mcc_mnc == ("208*", "26201")
    assert dict(catalog.destinations[0].prefixes) == {"49": "national", "4915": "mobile"}
    assert catalog.destinations[0].classes == {"national", "mobile", "international"}
    plan = catalog.plan("basic")
    assert (plan.name, plan.type, plan.recurring_fee, plan.tax_category) == (
        "basic",  # name defaults to the id
        None,
        0,
        "standard",
    )
    assert plan.final_unit_action == "terminate"
    assert plan.redirect_address is None
    voice = plan.tariff_for("voice")
    assert voice.destinations == "de"
    assert voice.rates[2] == Rate(500_000, 60, 30, 6, destination="international")
    assert voice.rates[0].specificity == 2
    assert plan.tariff_for("video") is None
    assert plan.allowances[0].units == 1_073_741_824
    assert catalog.plan("nope") is None
    assert catalog.service("nope") is None


def test_catalog_is_immutable(catalog):
    with pytest.raises(dataclasses.FrozenInstanceError):
        catalog.version = "t2"
    with pytest.raises(dataclasses.FrozenInstanceError):
        catalog.plans[0].tariffs[0].rates[0].rate = 1
    assert isinstance(catalog.plans, tuple)
    assert isinstance(catalog.plans[0].tariffs[0].rates, tuple)
    hash(catalog)  # hashable: usable as a cache key


def test_catalog_does_not_alias_the_input():
    data = base_catalog()
    catalog = load_catalog(data)
    data["services"][0]["rating_groups"].append(11)
    data["destinations"][0]["prefixes"]["33"] = "france"
    assert catalog.service("data").rating_groups == (10,)
    assert "33" not in dict(catalog.destinations[0].prefixes)


@pytest.mark.parametrize(
    ("missing", "expected", "missing_class"),
    [
        (None, "default", "international"),
        ("default", "default", "international"),
        ("reject", "reject", None),
    ],
)
def test_destination_table_missing_rule(missing, expected, missing_class):
    data = base_catalog()
    if missing is not None:
        data["destinations"][0]["missing"] = missing
    table = load_catalog(data).destinations[0]
    assert (table.missing, table.missing_class) == (expected, missing_class)


def test_redirect_plan():
    data = base_catalog()
    data["plans"][0].update(final_unit_action="redirect", redirect_address="http://top.up/")
    plan = load_catalog(data).plan("basic")
    assert (plan.final_unit_action, plan.redirect_address) == ("redirect", "http://top.up/")


def test_the_only_destination_table_is_the_default():
    data = base_catalog()
    del data["plans"][0]["tariffs"][1]["destinations"]
    catalog = load_catalog(data)
    tariff = catalog.plan("basic").tariff_for("voice")
    assert tariff.destinations is None
    assert catalog.table_for(tariff).id == "de"


# ---------------------------------------------------------------- find_service

V = "32260@3gpp.org"


@pytest.fixture
def services_catalog() -> Catalog:
    data = base_catalog()
    data["services"] = [
        {"id": "voice", "context": V, "rating_groups": [100], "unit": "seconds"},
        {"id": "voice-si", "context": V, "service_identifiers": [5], "unit": "seconds"},
        {"id": "voice-any", "context": V, "unit": "seconds"},
        {"id": "data", "context": "32251@3gpp.org", "rating_groups": [10], "unit": "octets"},
        {"id": "sms", "context": "32274@3gpp.org", "rating_groups": [200], "unit": "events"},
    ]
    return load_catalog(data)


@pytest.mark.parametrize(
    ("context", "rating_group", "service_identifier", "expected"),
    [
        (V, 100, None, "voice"),
        (V, 100, 5, "voice"),  # rating group first
        (V, 7, 5, "voice-si"),  # unknown rating group: service identifier next
        (V, None, 5, "voice-si"),
        (V, 7, None, "voice-any"),  # then the context's catch-all
        (V, None, None, "voice-any"),
        (V, 10, None, "voice-any"),  # RG 10 belongs to another context
        ("32251@3gpp.org", 10, None, "data"),
        ("32251@3gpp.org", 100, None, None),  # no catch-all for data
        ("32274@3gpp.org", 200, None, "sms"),
        ("other@example.org", 100, 5, None),
    ],
)
def test_find_service(services_catalog, context, rating_group, service_identifier, expected):
    found = services_catalog.find_service(context, rating_group, service_identifier)
    assert (found.id if found else None) == expected


# ---------------------------------------------------------------- files


def test_catalog_from_json(tmp_path):
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(base_catalog()))
    assert catalog_from_file(path) == load_catalog(base_catalog())


def test_catalog_from_toml_with_native_dates(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        'version = "x"\ncurrency = "EUR"\nholidays = [2025-12-25]\n'
        '[[services]]\nid = "sms"\ncontext = "32274@3gpp.org"\nunit = "events"\n'
    )
    catalog = catalog_from_file(str(path))
    assert catalog.holidays == frozenset({date(2025, 12, 25)})
    assert catalog.find_service("32274@3gpp.org", 1).id == "sms"


def test_catalog_from_toml_reports_problems_with_paths(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('version = "x"\ncurrency = "EURO"\n')
    with pytest.raises(CatalogError) as caught:
        catalog_from_file(path)
    assert caught.value.problems == ["currency: must be an ISO 4217 code (three capital letters)"]


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("c.toml", "version = ", "cannot parse"),
        ("c.json", "{", "cannot parse"),
        ("c.ini", "", "unknown format '.ini' (use .toml, .json, .yaml or .yml)"),
    ],
)
def test_unreadable_files(tmp_path, name, text, problem):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CatalogError) as caught:
        catalog_from_file(path)
    [message] = caught.value.problems
    assert message.startswith(f"{path}: {problem}")


def test_missing_file(tmp_path):
    with pytest.raises(CatalogError) as caught:
        catalog_from_file(tmp_path / "absent.toml")
    [message] = caught.value.problems
    assert message.startswith(f"{tmp_path / 'absent.toml'}: cannot read")


def test_yaml_without_pyyaml_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # makes `import yaml` fail
    path = tmp_path / "c.yaml"
    path.write_text("version: x\n")
    with pytest.raises(CatalogError) as caught:
        catalog_from_file(path)
    assert caught.value.problems == [
        f"{path}: reading YAML needs PyYAML (pip install pyyaml); or use TOML or JSON"
    ]


def test_yaml_with_pyyaml(tmp_path):
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump(base_catalog()))
    assert catalog_from_file(path) == load_catalog(base_catalog())


# ---------------------------------------------------------------- demo catalog


def test_demo_catalog_loads_and_has_what_ocs_serve_expects():
    assert DEMO_CATALOG_PATH.name == "demo_catalog.toml"
    catalog = load_demo_catalog()
    assert catalog.currency == "EUR"
    assert catalog.find_service("32251@3gpp.org", 10).id == "data"
    assert catalog.find_service("32251@3gpp.org", 999).id == "portal"
    assert catalog.find_service("32260@3gpp.org", 100).id == "voice"
    assert catalog.find_service("32274@3gpp.org", 200).id == "sms"
    prepaid, postpaid = catalog.plan("prepaid-basic"), catalog.plan("postpaid-standard")
    assert prepaid.final_unit_action == "terminate"
    assert prepaid.tariff_for("portal").zero_rated
    assert (postpaid.recurring_fee, postpaid.tax_category) == (20_000_000, "standard")
    [allowance] = prepaid.allowances
    assert (allowance.id, allowance.services, allowance.units, allowance.validity_days) == (
        "data-1gb",
        ("data",),
        1024**3,
        30,
    )
