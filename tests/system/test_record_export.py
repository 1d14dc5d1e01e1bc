"""The record export as users run it: the embedded default ``ocs serve`` exports its
records where ``ocs records read`` run in the same directory finds them, and ``ocs
export`` is a service that serves its metrics and stops cleanly.

The crash tests (kill -9 of each process under traffic) are in
test_record_export_crash.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ocs.embedded_redis import EmbeddedRedis
from tests.charging import messages as m
from tests.helpers import ROOT, get_free_port, stop_process
from tests.protocol.reference_peer import ReferencePeer

FAST_EXPORT = ("--records-segment-max-age=0.2", "--records-export-poll-interval=0.05")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OCS_")} | {
        "PYTHONPATH": str(ROOT)
    }


def _ocs(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocs", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _start(args: list[str], cwd: Path, ready: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "ocs", *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    while True:
        line = process.stdout.readline()
        if not line:
            assert process.stderr is not None
            raise AssertionError(f"ocs {args[0]} exited early: {process.stderr.read()}")
        if line.startswith(ready):
            return process


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.read().decode()


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the metrics")


def _read_records(cwd: Path) -> list[dict]:
    """``ocs records read --format json`` run in ``cwd``, with no directory given."""
    result = _ocs("records", "read", "--format", "json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


async def _one_session_and_one_sms(port: int, tag: str) -> None:
    peer = await ReferencePeer.connect("127.0.0.1", port)
    await peer.open()
    session = f"pgw.test.net;{tag};1"
    initial = await peer.request(
        m.ccr(session, services=[m.mscc(10, requested=m.rsu(octets=m.MIB))])
    )
    assert initial.result_code == 2001
    final = await peer.request(
        m.ccr(session, m.TERMINATE, 1, services=[m.mscc(10, used=[m.usu(octets=300_000)])])
    )
    assert final.result_code == 2001
    sms = await peer.request(
        m.ccr(
            f"smsc.test.net;{tag};2",
            m.EVENT,
            0,
            origin_host="smsc.test.net",
            context=m.SMS,
            services=[m.mscc(200, requested=m.rsu(events=1))],
            service_information=m.sms_information("491700000002"),
        )
    )
    assert sms.result_code == 2001
    await peer.close()


async def test_embedded_serve_exports_where_ocs_records_read_finds_the_records(tmp_path):
    diameter_port, http_port = get_free_port(), get_free_port()
    process = _start(
        [
            "serve",
            "--diameter-host=127.0.0.1",
            f"--diameter-port={diameter_port}",
            "--http-host=127.0.0.1",
            f"--http-port={http_port}",
            *FAST_EXPORT,
        ],
        tmp_path,
        "HTTP listening",
    )
    try:
        await _one_session_and_one_sms(diameter_port, "export")
        deadline = time.monotonic() + 30
        records: list[dict] = []
        while time.monotonic() < deadline:
            records = await asyncio.to_thread(_read_records, tmp_path)
            if len(records) >= 2:
                break
            await asyncio.sleep(0.1)
        assert sorted(r["id"] for r in records) == [
            "pgw.test.net;export;1;1;10",
            "smsc.test.net;export;2;0;200",
        ]
        data = next(r for r in records if r["session"] == "pgw.test.net;export;1")
        assert data["used"] == {"octets": 300_000} and data["cause"] == "normal"
        assert data["charged"] > 0  # the demo prepaid plan charges data out of bundle
        metrics = await asyncio.to_thread(_get, http_port, "/metrics")
        assert _metric(metrics, "ocs_records_exported_total") >= 2
        assert _metric(metrics, "ocs_records_export_partitions") == 1024
        assert _metric(metrics, "ocs_records_segments_total") >= 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    directory = tmp_path / "data" / "records"
    assert not list(directory.glob("*.tmp")), "ocs serve stopped with a segment unsealed"
    verify = _ocs("records", "verify", cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr


async def test_records_written_during_a_stop_are_exported_by_the_next_start(tmp_path):
    """SIGTERM seals what the exporter holds; nothing the node charged is left behind."""
    diameter_port, http_port = get_free_port(), get_free_port()
    args = [
        "serve",
        "--diameter-host=127.0.0.1",
        f"--diameter-port={diameter_port}",
        "--http-host=127.0.0.1",
        f"--http-port={http_port}",
        # sealed only on stop: the records are in Redis and in an open segment
        "--records-segment-max-age=3600",
        "--records-export-poll-interval=0.05",
    ]
    process = _start(args, tmp_path, "HTTP listening")
    try:
        await _one_session_and_one_sms(diameter_port, "stop")
        await asyncio.sleep(0.3)  # read by the exporter, not sealed
        assert await asyncio.to_thread(_read_records, tmp_path) == []
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    records = _read_records(tmp_path)
    assert len(records) == 2
    assert not list((tmp_path / "data" / "records").glob("*.tmp"))


@pytest.fixture
def private_redis(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    yield url
    server.stop()


def _start_export(tmp_path: Path, redis_url: str, port: int, *flags: str) -> subprocess.Popen[str]:
    """``ocs export`` of 64 partitions into ``tmp_path/records``, metrics on ``port``."""
    return _start(
        [
            "export",
            f"--redis-url={redis_url}",
            f"--records-directory={tmp_path / 'records'}",
            "--http-host=127.0.0.1",
            f"--records-export-metrics-port={port}",
            "--redis-partitions=64",
            *flags,
        ],
        tmp_path,
        "exporting rated records to",
    )


def _wait_for_partitions(port: int, count: int, seconds: float, failure: str) -> None:
    deadline = time.monotonic() + seconds
    while _metric(_get(port, "/metrics"), "ocs_records_export_partitions") < count:
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)


def test_ocs_export_serves_metrics_and_health_and_stops_on_sigterm(tmp_path, private_redis):
    port = get_free_port()
    process = _start_export(tmp_path, private_redis, port, *FAST_EXPORT)
    try:
        assert json.loads(_get(port, "/health")) == {"status": "ok"}
        _wait_for_partitions(port, 64, 15, "the exporter took no partitions")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    # a second exporter, started after, takes every partition at once (within 10 s,
    # less than the first one's 15 s leases): the first gave its leases back and left
    # ocs:exporters on stop instead of leaving them to expire
    again = _start_export(tmp_path, private_redis, port, "--records-export-lease=600")
    try:
        _wait_for_partitions(port, 64, 10, "the leases of the stopped exporter were kept")
    finally:
        stop_process(again)


def test_ocs_export_refuses_bad_settings_and_an_unreachable_redis(tmp_path):
    bad = _ocs("export", "--records-export-batch=0", cwd=tmp_path)
    assert bad.returncode == 2
    assert "--records-export-batch: must be an integer from 1" in bad.stderr
    closed_port = get_free_port()
    unreachable = _ocs(
        "export",
        f"--redis-url=redis://127.0.0.1:{closed_port}/0",
        f"--records-export-metrics-port={get_free_port()}",
        cwd=tmp_path,
    )
    assert unreachable.returncode == 2
    assert "ocs export: cannot reach Redis" in unreachable.stderr
