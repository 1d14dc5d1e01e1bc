"""How rated records are encoded (issue 9): their maps (used, allowances, money) are
msgpack maps also when empty, never arrays (Lua's cmsgpack packs an empty table as an
array), and a zero-rated record's tariff is null. Checked on the raw stream entries with
python msgpack, not through decode_record (which would hide an array)."""

from __future__ import annotations

from typing import Any

import msgpack
import redis.asyncio as aioredis

from quota_engine.charging.engine import ChargingEngine
from quota_engine.model import ChargingRequest
from quota_engine.store import keys
from tests.quota_engine.conftest import (
    EUR,
    INITIAL,
    MIB,
    MSISDN,
    NOW,
    TERMINATE,
    create_account,
    data_request,
)


async def raw_records(r: aioredis.Redis, account: str = "a1") -> list[dict[str, Any]]:
    entries = await r.xrange(keys.records(account))
    return [msgpack.unpackb(fields[b"r"], raw=False) for _, fields in entries]


async def charge(engine: ChargingEngine, request: ChargingRequest) -> None:
    [result] = await engine.charge([request])
    assert result.outcome.value == "ok", result


async def test_empty_maps_are_maps_and_zero_rated_tariff_is_null(engine, r):
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    # a zero-rated portal session (rating group 999): no allowance, no money
    await charge(engine, data_request("z", INITIAL, 0, rating_group=999))
    await charge(engine, data_request("z", TERMINATE, 1, rating_group=999, used=MIB))
    # a paid data session: money, no allowance
    await charge(engine, data_request("p", INITIAL, 0))
    await charge(engine, data_request("p", TERMINATE, 1, used=MIB, requested=None))
    # a session the sweeper settles with nothing used: empty money and allowances
    await charge(engine, data_request("e", INITIAL, 0))
    assert await engine.sweep(NOW + 10_000) == 1
    zero, paid, expired = await raw_records(r)
    for record in (zero, paid, expired):
        for name in ("used", "allowances", "money"):
            assert isinstance(record[name], dict), (record["id"], name, record[name])
    assert zero["zero_rated"] is True and zero["tariff"] is None
    assert (zero["used"], zero["allowances"], zero["money"]) == ({"octets": MIB}, {}, {})
    assert zero["price"].endswith(":-1:-1")  # no rate, no tier
    assert paid["zero_rated"] is False and isinstance(paid["tariff"], dict)
    assert (paid["allowances"], paid["money"]) == ({}, {"main": 1 * EUR})
    assert (expired["cause"], expired["allowances"], expired["money"]) == ("expired", {}, {})
    assert expired["used"] == {"octets": 0}


def test_decode_record_takes_text_keys_and_mends_foreign_ones():
    """The scripts write text keys (decoded as they are); a foreign writer's binary or
    non-UTF-8 keys go through the lossy decoding, in the record and in its maps."""
    from quota_engine.store.records import FIELDS, decode_record

    plain = decode_record(msgpack.packb({"id": "s;1;10", "used": {"octets": 5}, "x": 1}))
    assert set(plain) == set(FIELDS) | {"x"}
    assert (plain["id"], plain["used"], plain["x"], plain["money"]) == (
        "s;1;10", {"octets": 5}, 1, {},
    )  # fmt: skip
    foreign = msgpack.packb(
        {b"id": "s;2;10", b"used": {b"octets": 7}, "money": {b"m\xff": 3}, "allowances": []},
        use_bin_type=True,
    )
    decoded = decode_record(foreign)
    assert (decoded["id"], decoded["used"], decoded["money"], decoded["allowances"]) == (
        "s;2;10", {"octets": 7}, {"m\ufffd": 3}, {},
    )  # fmt: skip
