"""Capture through the proxy, then replay the trace twice with new Session-Ids."""

from __future__ import annotations

import asyncio

from loadtest.capture import CaptureProxy
from loadtest.runner import RunConfig, run_load
from loadtest.trace import TO_SERVER, TraceWriter, read_trace
from protocol.client import client_node, connect
from protocol.dictionary import constants as c
from tests.loadtest.echo_server import EchoApplication, ThreadedServer


def ccr_avps(session: str, request_type: int, number: int, context: str = "32251@3gpp.org"):
    return [
        (c.AVP_SESSION_ID, session),
        (c.AVP_ORIGIN_HOST, "pgw.capture.test"),
        (c.AVP_ORIGIN_REALM, "capture.test"),
        (c.AVP_DESTINATION_REALM, "echo.test"),
        (c.AVP_AUTH_APPLICATION_ID, 4),
        (c.AVP_SERVICE_CONTEXT_ID, context),
        (c.AVP_CC_REQUEST_TYPE, request_type),
        (c.AVP_CC_REQUEST_NUMBER, number),
    ]


async def test_capture_records_client_requests_and_replay_sends_them_again(tmp_path):
    app = EchoApplication()
    path = tmp_path / "capture.trace"
    with ThreadedServer(app) as server:
        writer = TraceWriter(path, {"test": True})
        proxy = CaptureProxy("127.0.0.1", 0, "127.0.0.1", server.port, writer)
        await proxy.start()
        peer = await connect(
            client_node("pgw.capture.test", "capture.test"), "127.0.0.1", proxy.port
        )
        assert peer.peer.origin_host == "echo.test.net"  # CER/CEA went through untouched
        for request_type, number in ((1, 0), (2, 1), (3, 2)):
            answer = await peer.request(272, 4, ccr_avps("pgw;1;1", request_type, number), 5)
            assert answer.get(c.AVP_RESULT_CODE) == 2001
            await asyncio.sleep(0.02)
        sms = ccr_avps("smsc;1;9", 4, 0, "32274@3gpp.org")
        await peer.request(272, 4, sms, 5)
        await peer.disconnect()
        await proxy.close()
        writer.close()
        meta, records = read_trace(path)
        assert meta["test"] is True
        assert len(records) == 4  # CER and DPR are not application requests
        assert {r.direction for r in records} == {TO_SERVER}
        assert records[0].timestamp_ns < records[1].timestamp_ns < records[2].timestamp_ns
        before = dict(app.sessions)

        result = await asyncio.to_thread(
            run_load,
            RunConfig(
                host="127.0.0.1",
                port=server.port,
                rate=1,
                duration=0,
                connections=1,
                trace=str(path),
                speed=5.0,
                loops=2,
                run_tag="rp",
            ),
            None,
        )
    assert result["requests"] == 8 and result["answers"] == 8
    assert result["errors"] == 0 and result["timeouts"] == 0
    assert result["by_kind"]["data_initial"]["sent"] == 2
    assert result["by_kind"]["sms_event"]["sent"] == 2
    replayed = {k: v for k, v in app.sessions.items() if k not in before}
    # <original>;<run tag>.<nonce of this replay>.<pass>
    nonce = next(iter(replayed)).split(";")[3].split(".")[1]
    assert replayed == {
        f"pgw;1;1;rp.{nonce}.0": [1, 2, 3],
        f"pgw;1;1;rp.{nonce}.1": [1, 2, 3],
        f"smsc;1;9;rp.{nonce}.0": [4],
        f"smsc;1;9;rp.{nonce}.1": [4],
    }
