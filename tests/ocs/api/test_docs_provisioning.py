"""docs/provisioning.md agrees with the code: its full example, provisioned, pays an SMS
from `sms-promo` before `main` as it says (and with both buckets at priority 0, `main`
would pay first, as it also says); `bill_cycle_day` is 1 to 28 in both docs and in
validation."""

from __future__ import annotations

import copy
import re
import time
import tomllib
from typing import Any

import pytest

from ocs.api import schema
from quota_engine.accounts.model import Account, validate_account
from quota_engine.accounts.provisioning import ProvisioningError, provision
from quota_engine.model import ChargingRequest, EventAction, Outcome, RequestType, ServiceUsage
from quota_engine.store.accounts import AccountStore
from tests.helpers import ROOT

PROVISIONING = ROOT / "docs" / "provisioning.md"
DATA_MODEL = ROOT / "docs" / "data-model.md"


def full_example() -> dict[str, Any]:
    text = PROVISIONING.read_text()
    [block] = re.findall(r"```toml\n(# accounts\.toml\n.*?)```", text, re.S)
    document = tomllib.loads(block)
    del document["catalog"]  # a file next to the example; the demo catalog is active here
    return document


def sms(session: str) -> ChargingRequest:
    return ChargingRequest(
        session_id=session,
        request_type=RequestType.EVENT,
        request_number=0,
        identities=["msisdn:491701234567"],  # alice's, in the example
        service_context="32274@3gpp.org",
        services=[ServiceUsage(rating_group=200, requested=1)],
        timestamp=int(time.time()),
        destination="4915112345678",
        action=EventAction.DIRECT_DEBITING,
    )


async def amounts(redis_client) -> dict[str, int]:
    store = AccountStore(redis_client)
    return {b.id: b.amount for b in await store.buckets("alice")}


async def test_the_example_pays_sms_from_the_promo_before_main(
    redis_client, catalog_active, engine
):
    await provision(redis_client, full_example())
    before = await amounts(redis_client)
    assert (before["main"], before["sms-promo"]) == (15_000_000, 2_000_000)
    [result] = await engine.charge([sms("sms-1")])
    assert result.outcome is Outcome.OK and result.services[0].cost > 0
    after = await amounts(redis_client)
    assert after["main"] == before["main"]
    assert after["sms-promo"] == before["sms-promo"] - result.services[0].cost


async def test_with_main_at_the_default_priority_main_pays_first(
    redis_client, catalog_active, engine
):
    document = copy.deepcopy(full_example())
    [alice] = [a for a in document["accounts"] if a["id"] == "alice"]
    for bucket in alice["buckets"]:
        bucket.pop("priority", None)
    await provision(redis_client, document)
    [result] = await engine.charge([sms("sms-2")])
    assert result.outcome is Outcome.OK
    after = await amounts(redis_client)
    assert after["sms-promo"] == 2_000_000
    assert after["main"] == 15_000_000 - result.services[0].cost


def test_bill_cycle_day_is_1_to_28_in_the_docs_and_the_validation():
    assert "| `bill_cycle_day` | | `1` | 1 to 28" in PROVISIONING.read_text()
    assert "`bill_cycle_day` (1 to 28)" in DATA_MODEL.read_text()
    spec = schema.ACCOUNT_IN["properties"]["bill_cycle_day"]
    assert (spec["minimum"], spec["maximum"]) == (1, 28)
    base = dict(id="a", kind="prepaid", currency="EUR", plan="p")
    for day, valid in ((0, False), (1, True), (28, True), (29, False), (31, False)):
        fields = {f for f, _ in validate_account(Account(**base, bill_cycle_day=day))}
        assert ("bill_cycle_day" not in fields) == valid, day


async def test_provisioning_refuses_day_29(redis_client, catalog_active):
    document = {"accounts": [{"id": "x", "kind": "prepaid", "plan": "prepaid-basic",
                              "bill_cycle_day": 29}]}  # fmt: skip
    with pytest.raises(ProvisioningError, match="bill_cycle_day"):
        await provision(redis_client, document)
