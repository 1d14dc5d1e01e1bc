"""Rated records: decoding, reading, and docs/records.md naming every field."""

from __future__ import annotations

import dataclasses
import re

import msgpack

from quota_engine.model import ChargingRequest, EventAction, Outcome, RequestType, ServiceUsage
from quota_engine.store import keys
from quota_engine.store.records import (
    CAUSES,
    FIELDS,
    decode_record,
    read_records,
    record_id,
    rg_key,
)
from tests.helpers import ROOT
from tests.quota_engine.conftest import (
    EUR,
    MIB,
    MSISDN,
    NOW,
    SMS_CTX,
    create_account,
    data_request,
    voice_request,
)

DOC = ROOT / "docs" / "records.md"


def test_decode_fills_every_field_and_normalises_empty_maps():
    raw = msgpack.packb({"id": "s;1;10", "used": [], "allowances": [], "money": {"main": 5}})
    record = decode_record(raw)
    assert set(FIELDS) <= set(record)
    assert record["used"] == {} and record["allowances"] == {} and record["money"] == {"main": 5}
    assert record["identities"] == [] and record["zero_rated"] is False
    assert record["cause"] is None and record["tariff"] is None
    extra = decode_record(msgpack.packb({"id": "x", "future_field": 1}))
    assert extra["future_field"] == 1


def test_ids_and_keys():
    assert rg_key(10, 7) == "10"
    assert rg_key(None, 7) == "si7"
    assert rg_key(None, None) == "-"
    assert record_id("pgw;1;2", 3, "10") == "pgw;1;2;3;10"


def test_docs_name_every_field_and_cause():
    text = DOC.read_text()
    fields_section = text.split("## Fields", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \| ", fields_section, re.M)
    assert documented == list(FIELDS)
    for cause in CAUSES:
        assert f"| `{cause}` |" in text


async def test_script_records_have_exactly_the_documented_fields(engine, r):
    await create_account(r, "a1", balance=25 * EUR, identities=("msisdn:491700000001",))
    await engine.charge([data_request("s1", RequestType.INITIAL, 0)])
    await engine.charge([data_request("s1", RequestType.TERMINATE, 1, used=MIB, requested=None)])
    [(stream_id, fields)] = await r.xrange(keys.records("a1"))
    raw = msgpack.unpackb(fields[b"r"], raw=False)
    assert set(raw) == set(FIELDS)
    [record] = await read_records(r, "a1")
    assert record["stream_id"] == stream_id.decode()
    assert await read_records(r, "a1", start=f"({record['stream_id']}") == []


def test_records_written_before_called_and_apn_decode_with_none():
    old = {name: None for name in FIELDS if name not in ("called", "apn")}
    old.update(id="s;1;10", account="a1", used={"octets": 5}, charged=7, cause="normal")
    record = decode_record(msgpack.packb(old))
    assert (record["called"], record["apn"]) == (None, None)
    assert (record["charged"], record["used"]) == (7, {"octets": 5})


async def test_session_records_carry_the_called_party_and_the_apn(engine, r, clock):
    await create_account(r, "a1", balance=25 * EUR, identities=("msisdn:491700000001",))
    # the APN comes in the CCR-I only; the session keeps it for its records
    initial = dataclasses.replace(data_request("s1", RequestType.INITIAL, 0), apn="ims.test")
    await engine.charge([initial])
    await engine.charge([data_request("s1", RequestType.TERMINATE, 1, used=MIB, requested=None)])
    call = voice_request("v1", RequestType.INITIAL, 0, destination="+4930123456")
    await engine.charge([call])
    [ended] = await engine.charge(
        [voice_request("v1", RequestType.TERMINATE, 1, destination="+4930123456", used=60)]
    )
    assert ended.outcome is Outcome.OK
    # a session the sweeper settles keeps them too
    clock.now = NOW
    await engine.charge([voice_request("v2", RequestType.INITIAL, 0, destination="33612345678")])
    assert await engine.sweep(NOW + 10**6) == 1
    data, voice, expired = await read_records(r, "a1")
    assert (data["id"], data["called"], data["apn"]) == ("s1;1;10", None, "ims.test")
    assert (voice["id"], voice["called"], voice["apn"]) == ("v1;1;100", "+4930123456", None)
    assert (expired["cause"], expired["called"]) == ("expired", "33612345678")


async def test_event_and_refund_records_carry_the_recipient(engine, r):
    await create_account(r, "a1", balance=EUR, identities=(MSISDN,))

    def sms(number: int, action: EventAction) -> ChargingRequest:
        return ChargingRequest(
            session_id="m1",
            request_type=RequestType.EVENT,
            request_number=number,
            identities=[MSISDN],
            service_context=SMS_CTX,
            services=[ServiceUsage(rating_group=200, requested=1)],
            timestamp=NOW,
            destination="4915112345678",
            action=action,
        )

    results = await engine.charge([sms(0, EventAction.DIRECT_DEBITING)])
    results += await engine.charge([sms(1, EventAction.REFUND_ACCOUNT)])
    assert [result.cost for result in results] == [90_000, -90_000]
    event, refund = await read_records(r, "a1")
    assert (event["cause"], event["called"], event["apn"]) == ("event", "4915112345678", None)
    assert (refund["cause"], refund["called"], refund["apn"]) == ("refund", "4915112345678", None)
