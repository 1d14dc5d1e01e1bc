"""Balance history entries: every writer (top-up, adjustment, credit, refund, plan change)
run against the real scripts and stores, and every field it writes documented, in docs/api.md (the API's
entry) and docs/data-model.md (the stored entry); nothing documented that no writer
writes."""

from __future__ import annotations

import json
import re
from typing import Any

from quota_engine.model import ChargingRequest, EventAction, Outcome, RequestType, ServiceUsage
from quota_engine.store import keys
from quota_engine.store.accounts import AccountStore
from quota_engine.store.catalogs import CatalogStore, demo_catalog_document
from tests.helpers import ROOT
from tests.ocs.api.conftest import EUR, MSISDN

API_DOC = ROOT / "docs" / "api.md"
MODEL_DOC = ROOT / "docs" / "data-model.md"
_ROW = re.compile(r"^\| `([a-z_]+)` \| ", re.M)


def documented(path, heading: str) -> list[str]:
    """The field names of the table under ``heading`` (up to the next heading)."""
    text = path.read_text()
    section = text.split(heading, 1)[1]
    section = re.split(r"^#+ ", section, maxsplit=1, flags=re.M)[0]
    return _ROW.findall(section)


def sms_refund(session: str) -> ChargingRequest:
    return ChargingRequest(
        session_id=session,
        request_type=RequestType.EVENT,
        request_number=0,
        identities=[MSISDN],
        service_context="32274@3gpp.org",
        services=[ServiceUsage(rating_group=200, requested=1)],
        timestamp=1741338000,
        destination="4915112345678",
        action=EventAction.REFUND_ACCOUNT,
    )


async def run_every_writer(http, redis_client, engine) -> None:
    create = {"unit": "octets", "services": ["data"], "valid_days": 30}
    assert (await http.topup("alice", 5 * EUR, "h-1", reason="voucher")).status == 201
    reply = await http.topup("alice", 1024, "h-2", bucket="pack", create=create)
    assert reply.status == 201 and reply.body["created_bucket"] is True
    adjust = await http.post(
        "/v1/accounts/alice/adjustBalance",
        {"amount": -EUR, "reason": "goodwill reversed"},
        headers={"Idempotency-Key": "h-3"},
    )
    assert adjust.status == 201
    await AccountStore(redis_client).credit("alice", "main", 2 * EUR, reason="compensation")
    [refund] = await engine.charge([sms_refund("refund-1")])
    assert refund.outcome is Outcome.OK
    # last: the engine rates with the demo catalog, which has no second prepaid plan
    document = demo_catalog_document()
    document["version"] = "demo-plans"
    document["plans"].append({**document["plans"][0], "id": "prepaid-plus"})
    catalogs = CatalogStore(redis_client)
    await catalogs.activate(await catalogs.save(document))
    change = await http.patch("/v1/accounts/alice", {"plan": "prepaid-plus"})
    assert change.status == 200 and change.body["plan"] == "prepaid-plus"


async def test_every_field_of_every_history_entry_is_documented(http, alice, redis_client, engine):
    await run_every_writer(http, redis_client, engine)
    reply = await http.get("/v1/accounts/alice/balanceActionHistory")
    entries: list[dict[str, Any]] = reply.body
    assert {e["type"] for e in entries} == {
        "topup",
        "adjustment",
        "credit",
        "refund",
        "plan_change",
    }
    api_fields = documented(API_DOC, "#### History entry fields")
    written = {name for entry in entries for name in entry}
    assert written == set(api_fields), written ^ set(api_fields)
    assert len(api_fields) == len(set(api_fields))

    stored = [json.loads(raw) for raw in await redis_client.lrange(keys.history("alice"), 0, -1)]
    model_fields = documented(MODEL_DOC, "## Balance history")
    stored_fields = {name for entry in stored for name in entry}
    assert stored_fields == set(model_fields), stored_fields ^ set(model_fields)


def test_the_docs_tables_parse():
    assert documented(API_DOC, "#### History entry fields")[:2] == ["id", "type"]
    assert "action" in documented(MODEL_DOC, "## Balance history")
