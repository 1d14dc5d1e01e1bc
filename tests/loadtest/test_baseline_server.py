"""The python-diameter baseline server answers CCRs trivially."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from protocol.client import client_node, connect
from protocol.dictionary import constants as c
from tests.helpers import ROOT, get_free_port


@pytest.mark.parametrize("stack", ["python-diameter", "protocol"])
async def test_answers_every_ccr_with_success_and_a_grant(stack):
    port = get_free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "loadtest.baseline_server", "--port", str(port), "--stack", stack],
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening" in process.stdout.readline()
        peer = await connect(client_node("pgw.base.test", "base.test"), "127.0.0.1", port)
        assert peer.peer.origin_realm == "ocs.example"
        avps = [
            (c.AVP_SESSION_ID, "pgw.base.test;1;1"),
            (c.AVP_ORIGIN_HOST, "pgw.base.test"),
            (c.AVP_ORIGIN_REALM, "base.test"),
            (c.AVP_DESTINATION_REALM, "ocs.example"),
            (c.AVP_AUTH_APPLICATION_ID, 4),
            (c.AVP_SERVICE_CONTEXT_ID, "32251@3gpp.org"),
            (c.AVP_CC_REQUEST_TYPE, 1),
            (c.AVP_CC_REQUEST_NUMBER, 0),
            (c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, [(c.AVP_RATING_GROUP, 10)]),
        ]
        answer = await peer.request(272, 4, avps, 5)
        assert answer.get(c.AVP_RESULT_CODE) == 2001
        assert answer.get(c.AVP_CC_REQUEST_TYPE) == 1
        mscc = answer.group(c.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL)
        assert mscc.get(c.AVP_RATING_GROUP) == 10
        assert mscc.group(c.AVP_GRANTED_SERVICE_UNIT).get(c.AVP_CC_TOTAL_OCTETS) > 0
        await peer.disconnect()
    finally:
        process.kill()  # SIGTERM works too, but python-diameter's Node.stop() takes 5 s
        process.wait(20)
