"""Our own client side (used by the load generator) against our server, over TCP."""

from __future__ import annotations

import asyncio

import pytest

from protocol.client import client_node, connect
from protocol.connection import Timers
from protocol.dictionary import constants as c
from protocol.peer_state import PeerState


async def test_client_opens_sends_ccr_and_correlates_the_answer(start_server):
    server = await start_server()
    peer = await connect(client_node("pgw.client.net", "client.net"), "127.0.0.1", server.port)
    assert peer.state is PeerState.OPEN
    assert peer.peer.origin_host == "ocs.test.net"
    assert peer.peer.application_ids == {4}
    answers = await asyncio.gather(
        *(
            peer.request(
                c.CMD_CREDIT_CONTROL,
                4,
                [
                    (c.AVP_SESSION_ID, f"pgw.client.net;c;{i}"),
                    (c.AVP_ORIGIN_HOST, "pgw.client.net"),
                    (c.AVP_ORIGIN_REALM, "client.net"),
                    (c.AVP_DESTINATION_REALM, "test.net"),
                    (c.AVP_AUTH_APPLICATION_ID, 4),
                    (c.AVP_SERVICE_CONTEXT_ID, "32251@3gpp.org"),
                    (c.AVP_CC_REQUEST_TYPE, 1),
                    (c.AVP_CC_REQUEST_NUMBER, 0),
                ],
            )
            for i in range(50)
        )
    )
    assert [a.get(c.AVP_SESSION_ID) for a in answers] == [
        f"pgw.client.net;c;{i}" for i in range(50)
    ]
    await peer.disconnect()
    assert peer.state is PeerState.CLOSED


async def test_client_answers_the_servers_watchdog(start_server):
    server = await start_server(diameter_watchdog_interval=6.0)
    peer = await connect(client_node("pgw.client.net", "client.net"), "127.0.0.1", server.port)
    (connection,) = server.connections
    await asyncio.sleep(9)  # at least one DWR from each side (Tw 6 s, jitter up to 2 s)
    assert connection.state is PeerState.OPEN
    assert peer.state is PeerState.OPEN
    metrics, _ = server.metrics.render()
    assert b'ocs_diameter_peers{state="OPEN"} 1.0' in metrics
    await peer.disconnect()


async def test_client_refused_by_an_unknown_peer_check(start_server):
    server = await start_server(diameter_allowed_peers=("pgw.only.net",))
    with pytest.raises(ConnectionRefusedError, match="3010"):
        await connect(client_node("pgw.other.net", "client.net"), "127.0.0.1", server.port)


async def test_requests_fail_cleanly_when_the_connection_is_gone(start_server):
    server = await start_server()
    peer = await connect(
        client_node("pgw.client.net", "client.net", timers=Timers(request_timeout=2)),
        "127.0.0.1",
        server.port,
    )
    await server.stop()
    await asyncio.wait_for(peer.closed, 5)
    with pytest.raises(ConnectionError):
        await peer.request(c.CMD_CREDIT_CONTROL, 4, [(c.AVP_SESSION_ID, "x")])
