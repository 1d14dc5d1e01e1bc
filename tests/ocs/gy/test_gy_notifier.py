"""RAR after a top-up and ASR after barring, sent over real TCP to a python-diameter
peer; the sessions come from a stand-in for the engine's ``sessions_of``."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis
from diameter.message.commands import AbortSessionRequest, ReAuthRequest
from diameter.message.constants import (
    APP_DIAMETER_CREDIT_CONTROL_APPLICATION,
    E_RE_AUTH_REQUEST_TYPE_AUTHORIZE_ONLY,
)

from ocs.gy.notifier import ASR, RAR, Notifier, has_final_unit
from ocs.gy.peer_routes import Routes
from ocs.metrics import Metrics
from ocs.service import build_node
from protocol.server import DiameterServer
from quota_engine.store import keys
from tests.helpers import node_settings
from tests.protocol.reference_peer import ReferencePeer


class Sessions:
    """Stands in for ChargingEngine.sessions_of."""

    def __init__(self, sessions: dict[str, list[dict]]) -> None:
        self.sessions = sessions
        self.asked: list[str] = []

    async def sessions_of(self, account_id: str) -> list[dict]:
        self.asked.append(account_id)
        return self.sessions.get(account_id, [])


def session(session_id: str, peer: str = "pgw.test.net", final_unit: bool = False) -> dict:
    """A session as ChargingEngine.sessions_of describes it: final_unit per service."""
    return {
        "session_id": session_id,
        "peer": peer,
        "deadline": 0,
        "services": [
            {"rating_group": 999, "final_unit": False},
            {"rating_group": 10, "final_unit": final_unit},
        ],
    }


@pytest.fixture
async def server():
    settings = node_settings()
    server = DiameterServer(build_node(settings, Metrics()), "127.0.0.1", 0)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def peer(server):
    peer = await ReferencePeer.connect("127.0.0.1", server.port)
    cea = await peer.open("pgw.test.net")
    assert cea.result_code == 2001
    yield peer
    await peer.close()


async def answer(peer: ReferencePeer, result_code: int = 2001):
    """Read one server request and answer it; returns the request."""
    request = await peer.recv()
    reply = request.to_answer()
    reply.session_id = request.session_id
    reply.result_code = result_code
    reply.origin_host = b"pgw.test.net"
    reply.origin_realm = b"test.net"
    await peer.send(reply)
    return request


async def test_credit_added_sends_rar_for_final_unit_sessions_only(server, peer):
    engine = Sessions(
        {
            "acct-1": [
                session("pgw.test.net;s;1", final_unit=True),
                session("pgw.test.net;s;2", final_unit=False),
                session("other-pgw.test.net;s;3", peer="other-pgw.test.net", final_unit=True),
            ]
        }
    )
    notifier = Notifier(None, engine, Routes(server.connections))
    sent = asyncio.ensure_future(notifier.credit_added("acct-1"))
    rar = await answer(peer)
    assert await sent == 1
    assert isinstance(rar, ReAuthRequest)
    assert rar.header.is_request and rar.header.is_proxyable
    assert rar.header.application_id == APP_DIAMETER_CREDIT_CONTROL_APPLICATION
    assert rar.session_id == "pgw.test.net;s;1"
    assert rar.origin_host == b"ocs.test.net" and rar.origin_realm == b"test.net"
    assert rar.destination_host == b"pgw.test.net" and rar.destination_realm == b"test.net"
    assert rar.auth_application_id == APP_DIAMETER_CREDIT_CONTROL_APPLICATION
    assert rar.re_auth_request_type == E_RE_AUTH_REQUEST_TYPE_AUTHORIZE_ONLY
    with pytest.raises(asyncio.TimeoutError):
        await peer.recv(timeout=0.2)  # nothing else: no RAR for the other sessions


async def test_account_barred_sends_asr_for_every_session(server, peer):
    engine = Sessions(
        {"acct-1": [session("pgw.test.net;s;1"), session("pgw.test.net;s;2", final_unit=True)]}
    )
    notifier = Notifier(None, engine, Routes(server.connections))
    sent = asyncio.ensure_future(notifier.account_barred("acct-1"))
    first = await answer(peer)
    second = await answer(peer, 5002)  # already gone at the client: fine
    assert await sent == 2
    assert all(isinstance(r, AbortSessionRequest) for r in (first, second))
    assert {first.session_id, second.session_id} == {"pgw.test.net;s;1", "pgw.test.net;s;2"}
    assert first.destination_host == b"pgw.test.net"
    assert first.auth_application_id == APP_DIAMETER_CREDIT_CONTROL_APPLICATION


def test_final_unit_for_the_session_or_one_of_its_services():
    assert has_final_unit({"final_unit": True})
    assert has_final_unit(session("a", final_unit=True))
    assert not has_final_unit(session("a"))
    assert not has_final_unit({"session_id": "a"})


async def test_send_returns_the_answer_result_code(server, peer):
    notifier = Notifier(None, Sessions({}), Routes(server.connections), timeout=2)
    connection = Routes(server.connections).route("pgw.test.net")
    sent = asyncio.ensure_future(notifier.send(connection, RAR, "pgw.test.net;s;9"))
    await answer(peer, 5002)
    assert await sent == 5002


async def test_unanswered_request_times_out_quietly(server, peer):
    notifier = Notifier(None, Sessions({}), Routes(server.connections), timeout=0.2)
    connection = Routes(server.connections).route("pgw.test.net")
    assert await notifier.send(connection, ASR, "pgw.test.net;s;9") is None
    assert isinstance(await peer.recv(), AbortSessionRequest)


async def test_peer_not_connected_here_gets_nothing(server, peer):
    engine = Sessions({"acct-1": [session("x;1", peer="elsewhere.test.net", final_unit=True)]})
    notifier = Notifier(None, engine, Routes(server.connections))
    assert await notifier.credit_added("acct-1") == 0
    assert await notifier.account_barred("acct-1") == 0


async def test_route_finds_open_connections_by_origin_host(server, peer):
    routes = Routes(server.connections)
    route = routes.route("pgw.test.net")
    assert route is not None and route.connection.is_open
    assert (route.destination_host, route.destination_realm) == ("pgw.test.net", "test.net")
    assert routes.route("nobody.test.net") is None


async def test_route_learned_from_requests_reaches_an_element_behind_a_relay(server, peer):
    """A P-GW behind a routing agent: the RAR goes through the agent's connection,
    addressed to the P-GW's own Origin-Host and Origin-Realm."""
    routes = Routes(server.connections)
    (relay,) = server.connections  # the only connection: the "agent" pgw.test.net
    routes.learn("pgw7.core.example", "core.example", relay)
    route = routes.route("pgw7.core.example")
    assert route is not None and route.connection is relay
    assert (route.destination_host, route.destination_realm) == (
        "pgw7.core.example",
        "core.example",
    )


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"[]", b'{"event": "credit_added"}', b'{"event": 1, "account": "a"}'],
)
async def test_malformed_events_are_ignored(data):
    engine = Sessions({})
    notifier = Notifier(None, engine, Routes(set()))
    assert await notifier.on_message(data) == 0
    assert engine.asked == []


async def test_unknown_events_are_ignored():
    engine = Sessions({})
    notifier = Notifier(None, engine, Routes(set()))
    assert await notifier.on_message(b'{"event": "plan_changed", "account": "a"}') == 0
    assert engine.asked == []


async def test_engine_failure_is_logged_not_raised():
    class Broken:
        async def sessions_of(self, account_id):
            raise ConnectionError("redis down")

    notifier = Notifier(None, Broken(), Routes(set()))
    assert await notifier.on_message(b'{"event": "account_barred", "account": "a"}') == 0


async def test_every_event_taken_off_the_channel_is_counted_as_handled():
    engine = Sessions({})
    notifier = Notifier(None, engine, Routes(set()))
    for data in (b"not json", b'{"event": "plan_changed", "account": "a"}',
                 b'{"event": "credit_added", "account": "a"}'):  # fmt: skip
        await notifier.on_message(data)
    assert notifier.events_handled == 3


async def test_published_events_reach_the_notifier(redis_url, server, peer):
    client = aioredis.Redis.from_url(redis_url)
    engine = Sessions({"acct-1": [session("pgw.test.net;s;1", final_unit=True)]})
    notifier = Notifier(client, engine, Routes(server.connections))
    await notifier.start()
    try:
        event = {"event": "credit_added", "account": "acct-1"}
        assert await client.publish(keys.EVENTS_CHANNEL, json.dumps(event)) == 1
        rar = await answer(peer)
        assert rar.session_id == "pgw.test.net;s;1"
        await client.publish(
            keys.EVENTS_CHANNEL, json.dumps({"event": "account_barred", "account": "acct-1"})
        )
        assert isinstance(await answer(peer), AbortSessionRequest)
    finally:
        await notifier.stop()
        await client.aclose()
    assert engine.asked == ["acct-1", "acct-1"]


async def test_stop_unsubscribes(redis_url):
    client = aioredis.Redis.from_url(redis_url)
    notifier = Notifier(client, Sessions({}), Routes(set()))
    await notifier.start()
    assert (await client.pubsub_numsub(keys.EVENTS_CHANNEL))[0][1] == 1
    await notifier.stop()
    await asyncio.sleep(0.05)
    assert (await client.pubsub_numsub(keys.EVENTS_CHANNEL))[0][1] == 0
    await client.aclose()


async def test_start_returns_when_redis_is_unreachable_and_keeps_trying(free_port):
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    notifier = Notifier(client, Sessions({}), Routes(set()), retry_delay=0.05)
    await asyncio.wait_for(notifier.start(), 5)
    assert not notifier.subscribed
    await notifier.stop()
    await client.aclose()


async def test_subscribed_after_start(redis_url):
    client = aioredis.Redis.from_url(redis_url)
    notifier = Notifier(client, Sessions({}), Routes(set()))
    await notifier.start()
    assert notifier.subscribed
    await notifier.stop()
    await client.aclose()


async def test_rar_and_asr_sent_and_their_answers_are_counted(server, peer):
    metrics = Metrics(process=False)
    routes = Routes(server.connections)
    notifier = Notifier(None, Sessions({}), routes, timeout=0.3, observer=metrics.diameter)
    connection = routes.route("pgw.test.net")
    sent = asyncio.ensure_future(notifier.send(connection, RAR, "pgw.test.net;m;1"))
    await answer(peer, 2001)
    assert await sent == 2001
    assert await notifier.send(connection, ASR, "pgw.test.net;m;2") is None  # no answer
    assert isinstance(await peer.recv(), AbortSessionRequest)

    def value(name, **labels):
        return metrics.registry.get_sample_value(name, labels)

    assert value("ocs_diameter_outgoing_requests_total", command="RAR") == 1
    assert value("ocs_diameter_outgoing_requests_total", command="ASR") == 1
    assert value("ocs_diameter_outgoing_answers_total", command="RAR", result_code="2001") == 1
    assert value("ocs_diameter_outgoing_answers_total", command="ASR", result_code="timeout") == 1
    assert value("ocs_diameter_outgoing_answers_total", command="ASR", result_code="2001") == 0


async def test_account_ids_are_masked_in_the_notifier_log(server, peer, caplog):
    import logging

    engine = Sessions({"acct-491700001234": [session("pgw.test.net;l;1")]})
    notifier = Notifier(None, engine, Routes(server.connections), timeout=0.2)
    with caplog.at_level(logging.INFO, logger="ocs.gy.notifier"):
        assert await notifier.account_barred("acct-491700001234") == 0  # unanswered
    assert await peer.recv() is not None
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert lines and all("491700001234" not in str(r.__dict__) for r in lines)
