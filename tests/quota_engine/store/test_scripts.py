"""The Lua scripts on their own, on redis-server 7 and 6.2: loading (EVALSHA, NOSCRIPT
reload, pipelines), the contract of each script, exact integers up to 2**53."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace

import msgpack
import pytest

from quota_engine.store import keys
from quota_engine.store.contract import (
    BalanceArgs,
    CcrArgs,
    EventService,
    RefundArgs,
    ScriptPrice,
    SessionService,
    SettleArgs,
    pack,
)
from quota_engine.store.scripts import (
    BALANCE,
    CCR,
    EVENT,
    LUA_DIR,
    REFUND,
    SETTLE,
    LuaScript,
    ScriptPipeline,
    load_source,
)
from tests.quota_engine.conftest import NOW, bucket, create_account, get_buckets

ALL = [CCR, EVENT, REFUND, BALANCE, SETTLE]
PRICE = ScriptPrice(10, 100, 10, 100, "p1", pack({"price": "p1"}))


def ccr_call(account="a1", kind="initial", n=0, services=None):
    data = SessionService("10", 10, None, service="data", unit="octets", price=PRICE,
                          requested=50, validity_time=60, threshold_percent=20)  # fmt: skip
    return CcrArgs(
        account=account, session_id="s1", request_number=n, request_type=kind, timestamp=NOW,
        now=NOW, deadline=NOW + 100, idempotency_ttl=600, usage_ttl=3600, peer="pgw",
        context="ctx", identities=["msisdn:1"], services=[data] if services is None else services,
        rated_with=None, period="2025-03-01",
    )  # fmt: skip


def ccr_keys(account="a1", n=0):
    return ccr_call(account, n=n).keys()


def ccr_args(kind="initial", n=0, services=None):
    return ccr_call(kind=kind, n=n, services=services).argv()


def test_sources_expand_the_library_and_hash_locally():
    for script in ALL:
        assert not re.search(r"^-- @include", script.source, re.M)
        assert "local function charge(" in script.source
        assert script.sha == hashlib.sha1(script.source.encode()).hexdigest()
        header = (LUA_DIR / script.name).read_text().splitlines()[0]
        assert header.startswith(f"-- {script.name}:")
    with pytest.raises(FileNotFoundError):
        load_source("missing.lua")


async def test_every_script_loads_on_the_server(any_r):
    for script in ALL:
        await script.load(any_r)
    assert await any_r.script_exists(*[s.sha for s in ALL]) == [True] * len(ALL)


async def test_evalsha_reloads_after_script_flush(any_r):
    echo = LuaScript("return {KEYS[1], ARGV[1]}", "echo")
    await any_r.script_flush()
    assert await echo(any_r, ["k"], ["v"]) == [b"k", b"v"]
    await any_r.script_flush()
    assert await echo(any_r, ["k2"], ["v2"]) == [b"k2", b"v2"]


async def test_script_pipeline_reloads_noscript_calls_in_place(any_r):
    one = LuaScript("return 'one:' .. ARGV[1]", "one")
    two = LuaScript("return 'two:' .. ARGV[1]", "two")
    await any_r.script_flush()
    await one.load(any_r)
    pipe = ScriptPipeline(any_r)
    a = pipe.script(two, [], ["a"])
    b = pipe.command("SET", "x", "1")
    c = pipe.script(one, [], ["c"])
    d = pipe.script(two, [], ["d"])
    assert len(pipe) == 4
    results = await pipe.execute()
    assert [results[i] for i in (a, b, c, d)] == [b"two:a", True, b"one:c", b"two:d"]
    assert await pipe.execute() == []  # emptied


class _ClusterLikeClient:
    """A client whose pipelines refuse ``evalsha()`` as redis-py's ClusterPipeline does."""

    def __init__(self, client):
        self._client = client

    def pipeline(self, transaction=None):
        from redis.cluster import block_pipeline_command

        pipe = self._client.pipeline(transaction=transaction)
        pipe.evalsha = block_pipeline_command("evalsha")
        return pipe

    def __getattr__(self, name):
        return getattr(self._client, name)


async def test_script_pipeline_avoids_the_evalsha_method_and_reloads(any_r):
    one = LuaScript("return 'one:' .. KEYS[1] .. ARGV[1]", "one")
    client = _ClusterLikeClient(any_r)
    with pytest.raises(Exception, match="(?i)evalsha"):
        client.pipeline(transaction=False).evalsha(one.sha, 0)
    for _ in range(2):
        await any_r.script_flush()  # NOSCRIPT inside the pipeline: loaded, run again
        pipe = ScriptPipeline(client)
        a = pipe.script(one, ["k"], ["a"])
        b = pipe.command("GET", "nothing")
        results = await pipe.execute()
        assert (results[a], results[b]) == (b"one:ka", None)


async def test_script_on_a_redis_py_pipeline(any_r):
    echo = LuaScript("return ARGV[1] .. '!'", "bang")
    await any_r.script_flush()
    pipe = any_r.pipeline(transaction=False)
    echo(pipe, [], ["hi"])
    pipe.get("nothing")
    assert await pipe.execute() == [b"hi!", None]


async def test_script_errors_are_raised_not_retried(any_r):
    bad = LuaScript("return redis.call('NOSUCHCOMMAND')", "bad")
    with pytest.raises(Exception, match="(?i)unknown"):
        await bad(any_r, [], [])


# ------------------------------------------------------------------ ccr.lua


async def test_ccr_reserves_and_stores_the_result_verbatim(any_r):
    await create_account(any_r, "a1", balance=1000)
    raw = await CCR(any_r, ccr_keys(), ccr_args())
    result = msgpack.unpackb(raw, raw=False)
    [svc] = result["s"]
    # 50 units, first increment 10 then 10: 100 + 4 * 100 = 500
    assert (result["o"], svc["o"], svc["g"], svc["thr"], svc["vt"]) == ("ok", "ok", 50, 10, 60)
    assert (await get_buckets(any_r, "a1"))["main"]["reserved"] == 500
    assert await any_r.get(keys.idempotency("a1", "s1", 0)) == raw
    assert 0 < await any_r.ttl(keys.idempotency("a1", "s1", 0)) <= 600
    # replay: the stored bytes, nothing more reserved
    assert await CCR(any_r, ccr_keys(), ccr_args()) == raw
    assert (await get_buckets(any_r, "a1"))["main"]["reserved"] == 500
    assert await any_r.zscore(keys.sessions("a1"), "s1") == NOW + 100


async def test_ccr_checks_order_then_account(any_r):
    await create_account(any_r, "a1", balance=1000)
    answer = msgpack.unpackb(await CCR(any_r, ccr_keys(n=3), ccr_args("update", 3)), raw=False)
    assert answer["o"] == "unknown_session"
    await CCR(any_r, ccr_keys(n=2), ccr_args("initial", 2))
    for n in (1, 2):  # older, and equal once the stored result is gone
        await any_r.delete(keys.idempotency("a1", "s1", n))
        answer = msgpack.unpackb(await CCR(any_r, ccr_keys(n=n), ccr_args("update", n)), raw=False)
        assert answer["o"] == "out_of_order"
    await any_r.delete(keys.account("a1"))
    answer = msgpack.unpackb(await CCR(any_r, ccr_keys(n=5), ccr_args("update", 5)), raw=False)
    assert answer["o"] == "unknown_subscriber"


async def test_amounts_up_to_2_pow_53_stay_exact(any_r):
    big = 2**53 - 1
    await create_account(any_r, "a1", balance=big)
    price = ScriptPrice(1, 2**52, 1, 1, "big", b"")
    services = [SessionService("1", 1, None, service="data", unit="octets", price=price,
                               requested=3)]  # fmt: skip
    await CCR(any_r, ccr_keys(), ccr_args(services=services))
    b = (await get_buckets(any_r, "a1"))["main"]
    assert (b["amount"], b["reserved"]) == (big, 2**52 + 2)
    services[0].used, services[0].requested = 3, None
    await CCR(any_r, ccr_keys(n=1), ccr_args("terminate", 1, services=services))
    b = (await get_buckets(any_r, "a1"))["main"]
    assert (b["amount"], b["reserved"]) == (big - 2**52 - 2, 0)
    rec = msgpack.unpackb((await any_r.xrange(keys.records("a1")))[0][1][b"r"], raw=False)
    assert rec["charged"] == 2**52 + 2


async def test_bucket_repacking_keeps_nils_and_unknown_fields(any_r):
    extra = bucket("u1", "units", 100, unit="octets", services=["data"], priority=1)
    extra["label"] = "promo"
    extra["meta"] = {"source": "crm", "n": 7}
    await create_account(any_r, "a1", balance=1000, buckets=[extra])
    await CCR(any_r, ccr_keys(), ccr_args())
    raw = msgpack.unpackb(await any_r.hget(keys.buckets("a1"), "u1"), raw=False)
    assert raw == {**extra, "reserved": 50}
    main = msgpack.unpackb(await any_r.hget(keys.buckets("a1"), "main"), raw=False)
    assert main["unit"] is None and main["valid_to"] is None and main["services"] == []


# ------------------------------------------------------------------ settle.lua


def settle_call(now):
    args = SettleArgs("a1", "s1", now)
    return args.keys(), args.argv()


async def test_settle_gone_alive_settled(any_r):
    await create_account(any_r, "a1", balance=1000)
    gone = await SETTLE(any_r, *settle_call(NOW))
    assert msgpack.unpackb(gone, raw=False) == {"o": "gone"}
    await CCR(any_r, ccr_keys(), ccr_args())
    alive = await SETTLE(any_r, *settle_call(NOW + 99))
    assert msgpack.unpackb(alive, raw=False) == {"o": "alive", "dl": NOW + 100}
    assert (await get_buckets(any_r, "a1"))["main"]["reserved"] == 500
    done = await SETTLE(any_r, *settle_call(NOW + 100))
    assert msgpack.unpackb(done, raw=False) == {"o": "settled", "records": 1}
    assert (await get_buckets(any_r, "a1"))["main"] == {
        **bucket("main", "money", 1000, priority=1000),
    }
    assert await any_r.exists(keys.session("a1", "s1")) == 0
    assert await any_r.zcard(keys.sessions("a1")) == 0
    [(_, fields)] = await any_r.xrange(keys.records("a1"))
    rec = msgpack.unpackb(fields[b"r"], raw=False)
    assert (rec["id"], rec["cause"], rec["charged"]) == ("s1;1;10", "expired", 0)
    again = await SETTLE(any_r, *settle_call(NOW + 100))
    assert msgpack.unpackb(again, raw=False) == {"o": "gone"}
    assert await any_r.xlen(keys.records("a1")) == 1


# ------------------------------------------------------------------ refund.lua, balance.lua


async def test_refund_credits_main_once(any_r):
    await create_account(any_r, "a1", balance=1000)
    args = RefundArgs(
        account="a1", session_id="e1", request_number=0, timestamp=NOW, now=NOW,
        idempotency_ttl=60, peer="", context="", identities=[],
        services=[EventService("200", 200, None, service="sms", unit="events", units=2,
                               amount=180, price=PRICE),
                  EventService("201", 201, None, service="x", unit="events", units=1,
                               amount=5, preset="credit_limit_reached")],
    )  # fmt: skip
    raw = await REFUND(any_r, args.keys(), args.argv())
    result = msgpack.unpackb(raw, raw=False)
    assert (result["o"], result["c"]) == ("ok", -180)
    assert [(s["o"], s["g"], s["c"]) for s in result["s"]] == [
        ("ok", 2, -180), ("credit_limit_reached", 0, 0),
    ]  # fmt: skip
    assert await REFUND(any_r, args.keys(), args.argv()) == raw
    assert (await get_buckets(any_r, "a1"))["main"]["amount"] == 1180
    [(_, fields)] = await any_r.xrange(keys.records("a1"))
    rec = msgpack.unpackb(fields[b"r"], raw=False)
    assert rec["money"] == {"main": -180} and rec["charged"] == -180
    [entry] = await any_r.lrange(keys.history("a1"), 0, -1)
    history = json.loads(entry)
    assert (history["bucket"], history["amount"], history["units"]) == ("main", 180, 0)


async def test_balance_is_read_only_and_counts_services_together(any_r):
    await create_account(any_r, "a1", balance=250)
    svc = EventService("1", 1, None, service="sms", unit="events", units=10, price=PRICE)
    args = BalanceArgs("a1", NOW, [svc, replace(svc, key="2", rating_group=2)])
    before = await any_r.hgetall(keys.buckets("a1"))
    raw = await BALANCE(any_r, args.keys(), args.argv())
    result = msgpack.unpackb(raw, raw=False)
    # 10 units cost 100 (one first increment): 250 pays both (200)
    assert [s["o"] for s in result["s"]] == ["ok", "ok"] and result["bal"] == 250
    # 20 units cost 200: the first is affordable, the second is not (50 left)
    args.services = [replace(svc, units=20), replace(svc, key="2", rating_group=2, units=20)]
    raw = await BALANCE(any_r, args.keys(), args.argv())
    result = msgpack.unpackb(raw, raw=False)
    assert result["o"] == "insufficient_balance"
    assert [s["o"] for s in result["s"]] == ["ok", "insufficient_balance"]
    assert await any_r.hgetall(keys.buckets("a1")) == before
