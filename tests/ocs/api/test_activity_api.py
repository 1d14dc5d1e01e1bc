"""Open sessions with their reservations, and rated records (TMF635 usage)."""

from __future__ import annotations

import time

from aiohttp.test_utils import TestClient, TestServer

from ocs.api.app import create_app
from ocs.metrics import Metrics
from quota_engine.model import ChargingRequest, Outcome, RequestType, ServiceUsage
from tests.ocs.api.conftest import MSISDN, SETTINGS, Http, healthy

MIB = 2**20


def data(session: str, kind: RequestType, number: int, *, requested=None, used=0):
    return ChargingRequest(
        session_id=session,
        request_type=kind,
        request_number=number,
        identities=[MSISDN],
        service_context="32251@3gpp.org",
        services=[ServiceUsage(rating_group=10, requested=requested, used=used)],
        timestamp=int(time.time()),
        peer="pgw.test.net",
    )


async def test_sessions_show_reservations_and_usage_shows_records(http, alice, engine):
    [result] = await engine.charge([data("s1", RequestType.INITIAL, 0, requested=MIB)])
    assert result.outcome is Outcome.OK
    sessions = await http.get("/v1/accounts/alice/sessions")
    assert sessions.status == 200 and sessions.headers["X-Total-Count"] == "1"
    [session] = sessions.body
    assert (session["session_id"], session["peer"], session["account"]) == (
        "s1",
        "pgw.test.net",
        "alice",
    )
    [service] = session["services"]
    assert service["rating_group"] == 10 and service["granted"] >= MIB
    assert sum(service["reserved_money"].values()) > 0
    main = (await http.get("/v1/accounts/alice/buckets/main")).body
    assert main["reserved"] == sum(service["reserved_money"].values())

    assert (await http.get("/v1/accounts/alice/usage")).body == []
    for n in (1, 2):
        [done] = await engine.charge([data("s1", RequestType.UPDATE, n, requested=MIB, used=MIB)])
        assert done.outcome is Outcome.OK
    await engine.charge([data("s1", RequestType.TERMINATE, 3, used=MIB)])
    assert (await http.get("/v1/accounts/alice/sessions")).body == []
    usage = await http.get("/v1/accounts/alice/usage")
    assert usage.status == 200
    records = usage.body
    assert len(records) == int(usage.headers["X-Total-Count"]) >= 1
    assert records[-1]["session"] == "s1" and records[-1]["account"] == "alice"
    assert all("stream_id" in r for r in records)
    # paging: offset/limit, and `after` a stream id
    first = await http.get("/v1/accounts/alice/usage", params={"limit": 1})
    assert first.body == records[:1]
    after = await http.get("/v1/accounts/alice/usage", params={"after": records[0]["stream_id"]})
    assert after.body == records[1:]
    skipped = await http.get("/v1/accounts/alice/usage", params={"offset": len(records)})
    assert skipped.body == []


async def test_activity_errors(http, alice):
    for path in ("/v1/accounts/nobody/sessions", "/v1/accounts/nobody/usage"):
        assert (await http.get(path)).status == 404
    for path in ("/v1/accounts/a%20b/sessions", "/v1/accounts/a%20b/usage"):
        assert (await http.get(path)).status == 400
    bad = await http.get("/v1/accounts/alice/usage", params={"after": "yesterday"})
    assert (bad.status, set(bad.fields())) == (400, {"after"})
    bad = await http.get("/v1/accounts/alice/sessions", params={"limit": "-5"})
    assert (bad.status, set(bad.fields())) == (400, {"limit"})


async def test_sessions_without_an_engine_is_503(redis_client, alice):
    app = create_app(SETTINGS, Metrics(), healthy, store=redis_client)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        reply = await Http(client).get("/v1/accounts/alice/sessions")
        assert reply.status == 503
        assert "no charging engine" in reply.body["error"]["message"]
