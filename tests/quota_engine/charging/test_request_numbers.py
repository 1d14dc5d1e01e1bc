"""CC-Request-Number edges (issue 9, item 6): a session can always be terminated, and
numbers compare as 32-bit serial numbers (RFC 1982), so they may wrap."""

from __future__ import annotations

from quota_engine.model import Outcome
from quota_engine.store import keys
from quota_engine.store.records import read_records
from tests.quota_engine.conftest import (
    EUR,
    INITIAL,
    MIB,
    MSISDN,
    TERMINATE,
    UPDATE,
    create_account,
    data_request,
    money,
)

LAST = 2**32 - 1


async def test_a_session_opened_at_the_last_number_can_be_terminated(engine, r):
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    res = (await engine.charge([data_request("s1", INITIAL, LAST)]))[0]
    assert res.outcome is Outcome.OK
    [res] = await engine.charge([data_request("s1", TERMINATE, LAST, used=MIB, requested=None)])
    assert res.outcome is Outcome.OK
    assert not await r.exists(keys.session("a1", "s1"))
    assert await money(r, "a1") == 24 * EUR
    [rec] = await read_records(r, "a1")
    assert rec["id"] == f"s1;{LAST + 1};10" and rec["request"] == LAST + 1


async def test_numbers_wrap_from_the_last_to_zero(engine, r):
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    await engine.charge([data_request("s1", INITIAL, LAST - 1)])
    [res] = await engine.charge([data_request("s1", UPDATE, LAST, used=MIB)])
    assert res.outcome is Outcome.OK
    [res] = await engine.charge([data_request("s1", UPDATE, 0, used=MIB)])
    assert res.outcome is Outcome.OK  # 0 follows 2^32 - 1
    [res] = await engine.charge([data_request("s1", UPDATE, LAST, used=MIB)])
    assert res.outcome is Outcome.OK  # a retransmission: the stored answer
    await r.delete(keys.idempotency("a1", "s1", LAST))
    [res] = await engine.charge([data_request("s1", UPDATE, LAST, used=MIB)])
    assert res.outcome is Outcome.OUT_OF_ORDER  # older than 0 now
    [res] = await engine.charge([data_request("s1", UPDATE, 2**31 + 1, used=MIB)])
    assert res.outcome is Outcome.OUT_OF_ORDER  # more than 2^31 - 1 ahead: behind
    [res] = await engine.charge([data_request("s1", TERMINATE, 1, used=0, requested=None)])
    assert res.outcome is Outcome.OK
    assert await money(r, "a1") == 23 * EUR
    ids = [rec["id"] for rec in await read_records(r, "a1")]
    assert ids == ["s1;1;10"]


async def test_a_terminate_with_an_older_number_closes_the_session(engine, r):
    await create_account(r, "a1", balance=25 * EUR, identities=(MSISDN,))
    await engine.charge([data_request("s1", INITIAL, 0)])
    for n in (1, 2, 3):
        await engine.charge([data_request("s1", UPDATE, n, used=MIB)])
    [res] = await engine.charge([data_request("s1", TERMINATE, 1, used=MIB, requested=None)])
    assert res.outcome is Outcome.OK
    assert not await r.exists(keys.session("a1", "s1"))
    assert await r.zcard(keys.DEADLINES) == 0
    assert await money(r, "a1") == 21 * EUR  # 4 MiB
    [rec] = await read_records(r, "a1")
    assert rec["id"] == "s1;4;10"
