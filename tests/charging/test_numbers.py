"""Called-party and recipient numbers end to end (python-diameter over TCP): numbers in
national format rated with the [numbering] settings, and an SMS without recipient under
the destination table's ``missing`` rule. Prices are the demo catalog's
(quota_engine/catalog/demo_catalog.toml): voice national 0.10 EUR/min and mobile 0.15
EUR/min per minute, international 0.50 EUR/min 30 s then per 6 s; SMS national 0.09 EUR,
international 0.29 EUR.
"""

from __future__ import annotations

import datetime

import pytest
from diameter.message.avp.grouped import ServiceInformation, SmsInformation
from diameter.message.constants import E_REQUESTED_ACTION_DIRECT_DEBITING

from ocs.config import Settings
from quota_engine.catalog import Catalog, load_catalog
from quota_engine.store.catalogs import demo_catalog_document
from tests.charging import messages as m
from tests.charging.conftest import EUR, charging_catalog
from tests.helpers import node_settings

WEDNESDAY = datetime.datetime(2025, 3, 5, 10, 0, tzinfo=datetime.UTC)
MSISDN = "msisdn:491700000001"
GERMANY = {
    "numbering_country_code": "49",
    "numbering_national_prefix": "0",
    "numbering_international_prefix": "00",
}


@pytest.fixture
def ocs_settings(request) -> Settings:
    """The German numbering plan, unless a test asks for other settings (indirect)."""
    fields = getattr(request, "param", GERMANY)
    return node_settings(**fields)


def rejecting_catalog() -> Catalog:
    """The demo catalog with ``missing = "reject"`` on its SMS destination table."""
    document = demo_catalog_document()
    next(t for t in document["destinations"] if t["id"] == "sms-de")["missing"] = "reject"
    return load_catalog(document)


@pytest.fixture
def ocs_catalog(request) -> Catalog:
    return (
        rejecting_catalog() if getattr(request, "param", None) == "reject" else charging_catalog()
    )


async def call(ocs, called: str, seconds: int, subscriber: str = "491700000001") -> int:
    """One call of ``seconds`` to ``called`` (I + T); what it cost in micro-units."""
    account = await ocs.account("caller", MSISDN)
    ims = await ocs.connect("scscf.test.net")
    sid = f"scscf.test.net;call;{called}"
    subscriptions = (("msisdn", subscriber),)
    cca = await ims.ccr(
        sid,
        m.INITIAL,
        0,
        context=m.VOICE,
        subscriptions=subscriptions,
        services=[m.mscc(100, requested=m.rsu())],
        service_information=m.ims_information(called),
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    cca = await ims.ccr(
        sid,
        m.TERMINATE,
        1,
        context=m.VOICE,
        subscriptions=subscriptions,
        services=[m.mscc(100, used=[m.usu(seconds=seconds)])],
        service_information=m.ims_information(called),
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    bucket = await ocs.main_bucket(account)
    assert bucket.reserved == 0
    return 10 * EUR - bucket.amount


@pytest.mark.parametrize(
    ("called", "cost"),
    [
        # the example: 61 s national is 2 min at 0.10 = 0.20 EUR, not 0.55
        ("tel:030123456", 200_000),
        ("tel:030-123-456;phone-context=ims.mnc001.mcc001.3gppnetwork.org", 200_000),
        ("tel:030123456;phone-context=+49", 200_000),
        ("sip:030123456@ims.test.net;user=phone", 200_000),
        ("030123456", 200_000),
        ("004930123456", 200_000),
        ("+49 30 123456", 200_000),
        # mobile: 2 min at 0.15
        ("01701234567", 300_000),
        ("tel:0170-1234567", 300_000),
        ("sip:01701234567;phone-context=+49@ims.test.net;user=phone", 300_000),
        # international stays international: 30 s + 6 * 6 s at 0.50 EUR/min
        ("0033612345678", 550_000),
        ("tel:+33612345678", 550_000),
    ],
)
async def test_national_numbers_are_rated_as_national(ocs, called, cost):
    assert await call(ocs, called, 61) == cost


@pytest.mark.parametrize("ocs_settings", [{}], indirect=True)  # no country code
@pytest.mark.parametrize(
    ("called", "cost"),
    [
        # 030... matches no international prefix: the table's default, international
        ("tel:030123456", 550_000),
        ("004930123456", 200_000),  # the international prefix needs no country code
        ("tel:+4930123456", 200_000),
    ],
)
async def test_without_a_country_code_national_numbers_are_taken_as_they_are(ocs, called, cost):
    assert await call(ocs, called, 61) == cost


async def test_requested_party_address_stands_in_for_a_missing_called_party(ocs):
    account = await ocs.account("caller", MSISDN)
    ims = await ocs.connect("scscf.test.net")
    info = m.ims_information("tel:030123456")
    info.ims_information.called_party_address = None
    info.ims_information.requested_party_address = "tel:030123456"
    cca = await ims.ccr(
        "scscf.test.net;call;rpa",
        m.EVENT,
        0,
        context=m.VOICE,
        action=E_REQUESTED_ACTION_DIRECT_DEBITING,
        services=[m.mscc(100, requested=m.rsu(seconds=61))],
        service_information=info,
        timestamp=WEDNESDAY,
    )
    assert cca.result_code == 2001
    assert (await ocs.main_bucket(account)).amount == 10 * EUR - 200_000  # national, 2 min


async def test_a_national_subscriber_number_finds_its_account(ocs):
    # Subscription-Id END_USER_E164 in national format: the account of +49 170 0000001
    assert await call(ocs, "tel:+4930123456", 60, subscriber="01700000001") == 100_000


# ------------------------------------------------------------------ SMS


async def sms(ocs, info: ServiceInformation | None):
    """One SMS direct-debit event (32274, rating group 200) with ``info``."""
    smsc = await ocs.connect("smsc.test.net")
    return await smsc.ccr(
        "smsc.test.net;sms;1",
        m.EVENT,
        0,
        context=m.SMS,
        action=E_REQUESTED_ACTION_DIRECT_DEBITING,
        services=[m.mscc(200, requested=m.rsu(events=1))],
        service_information=info,
        timestamp=WEDNESDAY,
    )


@pytest.mark.parametrize(
    ("recipient", "cost"),
    [
        ("01701234567", 90_000),  # national, was 0.29 EUR as "international"
        ("tel:01701234567", 90_000),
        ("00491701234567", 90_000),
        ("491701234567", 90_000),  # E.164 without "+": as it is
        ("+447700900123", 290_000),
    ],
)
async def test_sms_recipient_in_national_format(ocs, recipient, cost):
    account = await ocs.account("texter", MSISDN)
    cca = await sms(ocs, m.sms_information(recipient))
    assert cca.result_code == 2001
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (10 * EUR - cost, 0)


NO_RECIPIENT = {
    "no Service-Information": None,
    "SMS-Information without Recipient-Info": ServiceInformation(sms_information=SmsInformation()),
    "a recipient that is no number": m.sms_information("alice@example.net"),
}


@pytest.mark.parametrize("info", NO_RECIPIENT.values(), ids=NO_RECIPIENT.keys())
async def test_sms_without_recipient_is_charged_at_the_default_class(ocs, info):
    account = await ocs.account("texter", MSISDN)
    cca = await sms(ocs, info)
    assert cca.result_code == 2001
    [mscc] = cca.multiple_services_credit_control
    assert (mscc.result_code, mscc.granted_service_unit.cc_service_specific_units) == (2001, 1)
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (10 * EUR - 290_000, 0)  # international


@pytest.mark.parametrize("ocs_catalog", ["reject"], indirect=True)
@pytest.mark.parametrize("info", NO_RECIPIENT.values(), ids=NO_RECIPIENT.keys())
async def test_sms_without_recipient_is_5031_when_the_table_rejects_it(ocs, info):
    account = await ocs.account("texter", MSISDN)
    cca = await sms(ocs, info)
    assert cca.result_code == 5031  # DIAMETER_RATING_FAILED
    assert cca.multiple_services_credit_control[0].result_code == 5031
    bucket = await ocs.main_bucket(account)
    assert (bucket.amount, bucket.reserved) == (10 * EUR, 0)


@pytest.mark.parametrize("ocs_catalog", ["reject"], indirect=True)
async def test_an_sms_with_a_recipient_is_charged_when_the_table_rejects_missing_ones(ocs):
    account = await ocs.account("texter", MSISDN)
    cca = await sms(ocs, m.sms_information("01701234567"))
    assert cca.result_code == 2001
    assert (await ocs.main_bucket(account)).amount == 10 * EUR - 90_000
