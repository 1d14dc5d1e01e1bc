"""Rated records: decoding, reading, and docs/records.md naming every field."""

from __future__ import annotations

import re

import msgpack

from quota_engine.model import RequestType
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
from tests.quota_engine.conftest import EUR, MIB, create_account, data_request

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
