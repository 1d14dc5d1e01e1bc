"""`ocs serve` as a real process: embedded Redis, Diameter and HTTP ports, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from tests.helpers import ROOT, start_ocs_serve, stop_process
from tests.protocol import reference_peer as ref
from tests.protocol.reference_peer import ReferencePeer


@pytest.fixture
def ocs_process(tmp_path):
    """Start `python -m ocs serve` on free ports with the embedded Redis."""
    node = start_ocs_serve(tmp_path, f"--redis-data-dir={tmp_path / 'redis'}")
    yield node.process, node.diameter_port, node.http_port, node.started, tmp_path
    stop_process(node.process)


def http_get(port: int, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.status, response.read().decode()


async def test_serve_prints_where_it_listens_and_answers_on_both_ports(ocs_process):
    process, diameter_port, http_port, lines, _ = ocs_process
    assert f"Diameter listening on 127.0.0.1:{diameter_port}\n" in lines
    peer = await ReferencePeer.connect("127.0.0.1", diameter_port)
    cea = await peer.open()
    assert cea.origin_host == b"ocs.serve.test"
    dwa = await peer.request(ref.dwr())
    assert dwa.header.command_code == 280
    status, body = await asyncio.to_thread(http_get, http_port, "/healthz")
    assert status == 200 and '"redis": true' in body.replace('":true', '": true')
    status, metrics = await asyncio.to_thread(http_get, http_port, "/metrics")
    assert status == 200
    assert "ocs_build_info" in metrics
    assert (
        'ocs_diameter_requests_total{command="CER",peer="other",request_type="none",result_code="2001"} 1.0'
        in metrics
    )
    assert (
        'ocs_diameter_requests_total{command="DWR",peer="other",request_type="none",result_code="2001"} 1.0'
        in metrics
    )
    assert 'ocs_diameter_peers{state="OPEN"} 1.0' in metrics
    assert "ocs_diameter_request_duration_seconds_bucket" in metrics
    await peer.close()


async def test_sigterm_sends_dpr_waits_for_dpa_and_exits_zero(ocs_process):
    process, diameter_port, _, _, data_dir = ocs_process
    peer = await ReferencePeer.connect("127.0.0.1", diameter_port)
    await peer.open()
    process.send_signal(signal.SIGTERM)
    dpr = await peer.recv(timeout=10)
    assert dpr.header.command_code == 282 and dpr.header.is_request
    assert dpr.disconnect_cause == 0  # REBOOTING
    dpa = dpr.to_answer()
    dpa.result_code = 2001
    dpa.origin_host = b"pgw.test.net"
    dpa.origin_realm = b"test.net"
    await peer.send(dpa)
    assert await peer.wait_closed()
    assert await asyncio.to_thread(process.wait, 15) == 0
    # the embedded Redis kept its data in AOF form in the data directory
    assert any((data_dir / "redis").rglob("*.aof*"))


async def test_embedded_default_charges_the_demo_subscribers(ocs_process):
    """The README's promise: a fresh `ocs serve` charges 491700000001 and 491700000002
    and answers 5030 for 499999999999."""
    from tests.charging import messages as m

    _, diameter_port, _, _, _ = ocs_process
    peer = await ReferencePeer.connect("127.0.0.1", diameter_port)
    await peer.open()
    prepaid = await peer.request(
        m.ccr(
            "pgw.test.net;demo;1",
            subscriptions=(("msisdn", "491700000001"),),
            services=[m.mscc(10, requested=m.rsu(octets=m.MIB))],
        )
    )
    assert prepaid.result_code == 2001
    grant = m.mscc_by_group(prepaid)[10]
    assert grant.result_code == 2001
    assert grant.granted_service_unit.cc_total_octets == m.MIB
    postpaid = await peer.request(
        m.ccr(
            "pgw.test.net;demo;2",
            subscriptions=(("msisdn", "491700000002"),),
            services=[m.mscc(10, requested=m.rsu(octets=m.MIB))],
        )
    )
    assert postpaid.result_code == 2001
    unknown = await peer.request(
        m.ccr("pgw.test.net;demo;3", subscriptions=(("msisdn", "499999999999"),))
    )
    assert unknown.result_code == 5030
    await peer.close()


async def test_readme_python_example_runs_against_ocs_serve(ocs_process):
    """The README's Diameter example, run as written against the demo subscriber."""
    _, diameter_port, _, _, tmp_path = ocs_process
    readme = (ROOT / "README.md").read_text()
    example = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert '"127.0.0.1", 3868' in example
    script = tmp_path / "example.py"
    script.write_text(example.replace('"127.0.0.1", 3868', f'"127.0.0.1", {diameter_port}'))
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script)],
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Result-Code 2001 granted octets 10485760"


async def test_metrics_show_the_charging_engine(ocs_process):
    from tests.charging import messages as m

    _, diameter_port, http_port, _, _ = ocs_process
    peer = await ReferencePeer.connect("127.0.0.1", diameter_port)
    await peer.open()
    for n in range(2):  # the second finds the subscriber in the caches
        answer = await peer.request(
            m.ccr(
                f"pgw.test.net;metrics;{n}",
                subscriptions=(("msisdn", "491700000001"),),
                services=[m.mscc(10, requested=m.rsu(octets=m.MIB))],
            )
        )
        assert answer.result_code == 2001
    await peer.close()
    _, metrics = await asyncio.to_thread(http_get, http_port, "/metrics")
    assert "ocs_charging_batch_requests_count 2.0" in metrics
    assert 'ocs_charging_cache_lookups_total{cache="identity",result="miss"} 1.0' in metrics
    assert 'ocs_charging_cache_lookups_total{cache="identity",result="hit"} 1.0' in metrics
    assert 'ocs_charging_cache_lookups_total{cache="account",result="hit"} 1.0' in metrics
    assert "ocs_charging_failed_requests_total 0.0" in metrics
