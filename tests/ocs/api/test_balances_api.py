"""Buckets, balances, top-ups, adjustments and the balance action history over real HTTP."""

from __future__ import annotations

import asyncio

from tests.ocs.api.conftest import EUR, events_of, next_events

GIB = 2**30


# --------------------------------------------------------------------------- buckets and balances


async def test_buckets_list_and_one(http, alice):
    reply = await http.get("/v1/accounts/alice/buckets")
    assert reply.status == 200 and reply.headers["X-Total-Count"] == "1"
    [main] = reply.body
    assert main == {
        "id": "main",
        "kind": "money",
        "unit": None,
        "amount": 10 * EUR,
        "reserved": 0,
        "available": 10 * EUR,
        "priority": 0,
        "valid_from": None,
        "valid_to": None,
        "services": [],
    }
    assert (await http.get("/v1/accounts/alice/buckets/main")).body == main


async def test_bucket_errors(http, alice):
    missing = await http.get("/v1/accounts/alice/buckets/nope")
    assert (missing.status, missing.fields()) == (404, {"bucket_id": "no such bucket"})
    assert (await http.get("/v1/accounts/alice/buckets/no%20pe")).status == 400
    assert (await http.get("/v1/accounts/nobody/buckets/main")).status == 404
    assert (await http.get("/v1/accounts/nobody/buckets")).status == 404
    assert (await http.get("/v1/accounts/alice/buckets", params={"limit": "x"})).status == 400


async def test_balances_sum_per_unit(http):
    body = {
        "id": "corp",
        "kind": "postpaid",
        "plan": "postpaid-standard",
        "credit_limit": 100 * EUR,
        "buckets": [
            {"id": "main", "amount": 0},
            {"id": "bonus", "amount": 2 * EUR, "priority": 1},
            {"id": "d1", "kind": "units", "unit": "octets", "amount": GIB, "services": ["data"]},
        ],
    }
    assert (await http.post("/v1/accounts", body)).status == 201
    reply = await http.get("/v1/accounts/corp/balances")
    assert reply.status == 200
    money, data = reply.body["balances"]
    assert money == {
        "kind": "money",
        "unit": "EUR",
        "amount": 2 * EUR,
        "reserved": 0,
        "available": 2 * EUR,
        "buckets": ["main", "bonus"],
        "credit_limit": 100 * EUR,
    }
    assert (data["unit"], data["amount"], data["buckets"]) == ("octets", GIB, ["d1"])
    assert (await http.get("/v1/accounts/nobody/balances")).status == 404
    assert (await http.get("/v1/accounts/a%20b/balances")).status == 400


# --------------------------------------------------------------------------- top-up


async def test_topup_credits_once_per_key_and_replays_the_first_result(http, alice, redis_client):
    pubsub = await events_of(redis_client)
    first = await http.topup("alice", 5 * EUR, "k-1", reason="voucher 42")
    assert first.status == 201
    assert first.headers["Idempotent-Replayed"] == "false"
    entry = first.body
    assert entry["type"] == "topup"
    assert (entry["amount"], entry["bucket"], entry["unit"]) == (5 * EUR, "main", "EUR")
    assert (entry["reason"], entry["key"], entry["resulting_amount"]) == (
        "voucher 42",
        "k-1",
        15 * EUR,
    )
    assert entry["created_bucket"] is False and entry["id"]
    assert await next_events(pubsub, 1) == [{"event": "credit_added", "account": "alice"}]

    replay = await http.topup("alice", 5 * EUR, "k-1", reason="voucher 42")
    assert (replay.status, replay.body) == (201, entry)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert await next_events(pubsub, 1, timeout=0.2) == []  # nothing credited, nothing sent
    await pubsub.aclose()
    main = await http.get("/v1/accounts/alice/buckets/main")
    assert main.body["amount"] == 15 * EUR


async def test_topup_key_reused_for_another_request_is_409(http, alice):
    assert (await http.topup("alice", EUR, "k-1")).status == 201
    reply = await http.topup("alice", 2 * EUR, "k-1")
    assert reply.status == 409
    assert "different request" in reply.fields()["key"]


async def test_topup_of_units_creates_the_bucket_with_validity(http, alice):
    create = {"unit": "octets", "services": ["data"], "valid_days": 30, "priority": 5}
    reply = await http.topup("alice", GIB, "pack-1", bucket="pack", create=create)
    assert reply.status == 201
    assert (reply.body["created_bucket"], reply.body["unit"], reply.body["resulting_amount"]) == (
        True,
        "octets",
        GIB,
    )
    bucket = (await http.get("/v1/accounts/alice/buckets/pack")).body
    assert (bucket["kind"], bucket["unit"], bucket["services"], bucket["priority"]) == (
        "units",
        "octets",
        ["data"],
        5,
    )
    assert bucket["valid_to"] - bucket["valid_from"] == 30 * 86_400
    # a second pack into the same bucket only adds its amount
    again = await http.topup("alice", GIB, "pack-2", bucket="pack", create=create)
    assert (again.body["created_bucket"], again.body["resulting_amount"]) == (False, 2 * GIB)


async def test_topup_main_is_created_when_missing(http):
    body = {"id": "empty", "kind": "prepaid", "plan": "prepaid-basic"}
    assert (await http.post("/v1/accounts", body)).status == 201
    reply = await http.topup("empty", EUR, "first")
    assert (reply.status, reply.body["created_bucket"], reply.body["resulting_amount"]) == (
        201,
        True,
        EUR,
    )


async def test_topup_validation_names_every_field(http, alice):
    reply = await http.post(
        "/v1/accounts/alice/topupBalance", {"amount": 0, "bucket": "x y", "extra": 1}
    )
    assert reply.status == 400
    assert set(reply.fields()) == {"Idempotency-Key", "amount", "bucket", "extra"}
    reply = await http.topup("alice", 1.5, "k")
    assert reply.fields() == {"amount": "must be an integer"}
    reply = await http.topup("alice", EUR, "bad key!")
    assert set(reply.fields()) == {"Idempotency-Key"}
    create = {"unit": "litres", "services": []}
    reply = await http.topup("alice", 1, "k", bucket="b", create=create)
    assert set(reply.fields()) == {"create.unit"}
    create = {"unit": "octets", "services": ["voice"]}
    reply = await http.topup("alice", 1, "k", bucket="b", create=create)
    assert reply.status == 422
    assert reply.fields() == {"create.services[0]": "service 'voice' is counted in seconds"}
    create = {"unit": "octets", "services": ["data"], "valid_days": 1, "valid_to": 5}
    reply = await http.topup("alice", 1, "k", bucket="b", create=create)
    assert set(reply.fields()) == {"create.valid_days"}


async def test_topup_refusals_are_422(http, alice):
    no_bucket = await http.topup("alice", 1, "k1", bucket="nope")
    assert no_bucket.status == 422 and "no bucket 'nope'" in no_bucket.fields()["bucket"]
    wrong_unit = await http.topup("alice", 1, "k2", unit="octets")
    assert wrong_unit.status == 422 and wrong_unit.fields()["unit"] == "bucket 'main' is money EUR"
    assert (await http.topup("alice", 1, "k3", unit="EUR")).status == 201
    overflow = await http.topup("alice", 2**53 - 1, "k4")
    assert overflow.status == 422 and "would exceed" in overflow.fields()["amount"]
    assert (await http.topup("nobody", 1, "k5")).status == 404
    assert (await http.topup("-x", 1, "k5")).status == 400


async def test_topup_of_a_closed_account_is_422_but_replays_still_answer(http, alice):
    assert (await http.topup("alice", EUR, "before")).status == 201
    await http.delete("/v1/accounts/alice")
    reply = await http.topup("alice", EUR, "after")
    assert (reply.status, reply.fields()) == (422, {"account": "account 'alice' is closed"})
    replay = await http.topup("alice", EUR, "before")
    assert (replay.status, replay.headers["Idempotent-Replayed"]) == (201, "true")


async def test_100_concurrent_topups_and_100_replays_credit_exactly_once(http, alice):
    amounts = [(i + 1) * 1_000 for i in range(100)]
    calls = [http.topup("alice", a, f"burst-{i}") for i, a in enumerate(amounts)]
    calls += [http.topup("alice", a, f"burst-{i}") for i, a in enumerate(amounts)]
    replies = await asyncio.gather(*calls)
    assert {r.status for r in replies} == {201}
    firsts = {r.body["id"] for r in replies}
    assert len(firsts) == 100  # each replay answered its key's first result
    assert sum(r.headers["Idempotent-Replayed"] == "true" for r in replies) == 100
    main = await http.get("/v1/accounts/alice/buckets/main")
    assert main.body["amount"] == 10 * EUR + sum(amounts)
    history = await http.get("/v1/accounts/alice/balanceActionHistory", params={"limit": 1000})
    assert history.headers["X-Total-Count"] == "100"
    assert sorted(e["amount"] for e in history.body) == amounts
    # every resulting amount is distinct: the credits were serialised
    assert len({e["resulting_amount"] for e in history.body}) == 100


# --------------------------------------------------------------------------- adjust and history


async def test_adjust_up_and_down_with_reason(http, alice):
    path = "/v1/accounts/alice/adjustBalance"
    down = await http.post(
        path, {"amount": -3 * EUR, "reason": "goodwill reversal"}, headers={"Idempotency-Key": "a1"}
    )
    assert down.status == 201
    assert (down.body["type"], down.body["resulting_amount"]) == ("adjustment", 7 * EUR)
    up = await http.post(path, {"amount": EUR, "reason": "fix"}, headers={"Idempotency-Key": "a2"})
    assert up.body["resulting_amount"] == 8 * EUR
    history = await http.get("/v1/accounts/alice/balanceActionHistory")
    assert [(e["type"], e["amount"], e["reason"]) for e in history.body] == [
        ("adjustment", EUR, "fix"),
        ("adjustment", -3 * EUR, "goodwill reversal"),
    ]


async def test_adjust_errors(http, alice):
    path = "/v1/accounts/alice/adjustBalance"
    key = {"Idempotency-Key": "a1"}
    missing = await http.post(path, {"amount": 5}, headers=key)
    assert missing.fields() == {"reason": "is required"}
    zero = await http.post(path, {"amount": 0, "reason": "x"}, headers=key)
    assert zero.status == 400 and "non-zero" in zero.fields()["amount"]
    below = await http.post(path, {"amount": -11 * EUR, "reason": "x"}, headers=key)
    assert below.status == 422
    assert "at most 10000000 is free" in below.fields()["amount"]
    no_bucket = await http.post(path, {"amount": 1, "reason": "x", "bucket": "b"}, headers=key)
    assert no_bucket.status == 422
    assert (await http.post(path, {"amount": 1, "reason": "x"})).status == 400  # no key
    nobody = await http.post(
        "/v1/accounts/nobody/adjustBalance", {"amount": 1, "reason": "x"}, headers=key
    )
    assert nobody.status == 404


async def test_history_pages_newest_first(http, alice):
    for i in range(5):
        await http.topup("alice", i + 1, f"h{i}")
    page = await http.get(
        "/v1/accounts/alice/balanceActionHistory", params={"offset": 1, "limit": 2}
    )
    assert page.headers["X-Total-Count"] == "5"
    assert [e["amount"] for e in page.body] == [4, 3]
    empty = await http.get("/v1/accounts/alice/balanceActionHistory", params={"offset": 9})
    assert empty.body == []
    assert (await http.get("/v1/accounts/nobody/balanceActionHistory")).status == 404
    bad = await http.get("/v1/accounts/alice/balanceActionHistory", params={"offset": "1.5"})
    assert bad.status == 400
