"""The API's writes reach the network: a top-up over HTTP makes the node send a
Re-Auth-Request to the session holding its final units; barring or closing over HTTP
makes it send an Abort-Session-Request. Real Diameter peer, real Redis, real HTTP."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer
from diameter.message.commands import AbortSessionRequest, ReAuthRequest

from ocs.api.app import create_app
from ocs.metrics import Metrics
from tests.charging.conftest import EUR, ocs, ocs_catalog, ocs_settings  # noqa: F401 - the node fixture and what it takes
from tests.charging.test_notifications import MSISDN, nothing_arrives, open_session
from tests.ocs.api.conftest import SETTINGS, Http, healthy


@pytest.fixture
async def api(ocs):  # noqa: F811 - the fixture imported above
    app = create_app(SETTINGS, Metrics(), healthy, store=ocs.redis, sessions=ocs.engine)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield Http(client)
    await client.close()


async def test_topup_over_http_sends_rar_for_the_final_unit_session(ocs, api):  # noqa: F811
    account = await ocs.account("alice", MSISDN, money=2 * EUR)
    pgw = await ocs.connect("pgw.test.net")
    mscc = await open_session(pgw, "pgw.test.net;api;1")
    assert mscc.final_unit_indication is not None

    sessions = await api.get(f"/v1/accounts/{account}/sessions")
    [session] = sessions.body
    assert session["session_id"] == "pgw.test.net;api;1"
    assert session["services"][0]["final_unit"] is True

    reply = await api.topup(account, 10 * EUR, "voucher-1")
    assert reply.status == 201
    rar = await pgw.answer_next(2001)
    assert isinstance(rar, ReAuthRequest)
    assert rar.session_id == "pgw.test.net;api;1"
    # a replay credits nothing, so nothing is sent
    assert (await api.topup(account, 10 * EUR, "voucher-1")).headers[
        "Idempotent-Replayed"
    ] == "true"
    await nothing_arrives(pgw)


async def test_barring_over_http_sends_asr(ocs, api):  # noqa: F811
    account = await ocs.account("alice", MSISDN, money=50 * EUR)
    pgw = await ocs.connect("pgw.test.net")
    await open_session(pgw, "pgw.test.net;api;2")
    assert (await api.patch(f"/v1/accounts/{account}", {"status": "barred"})).status == 200
    asr = await pgw.answer_next()
    assert isinstance(asr, AbortSessionRequest)
    assert asr.session_id == "pgw.test.net;api;2"


async def test_closing_over_http_sends_asr(ocs, api):  # noqa: F811
    account = await ocs.account("alice", MSISDN, money=50 * EUR)
    pgw = await ocs.connect("pgw.test.net")
    await open_session(pgw, "pgw.test.net;api;3")
    assert (await api.delete(f"/v1/accounts/{account}")).status == 200
    asr = await pgw.answer_next()
    assert isinstance(asr, AbortSessionRequest)
