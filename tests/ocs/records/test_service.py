"""The exporter as a service: ``ocs serve``'s supervised task replaces an exporter that
failed; ``ocs export`` exits 2 with a clear message when it cannot serve its metrics,
stops cleanly on SIGHUP, and bounds its metrics server's connections like the API's."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import socket
import subprocess
import sys
import time

import pytest
import redis.asyncio as aioredis

from ocs.config import Settings
from ocs.metrics import Metrics
from ocs.records import service
from quota_engine.store import keys
from tests.helpers import ROOT


@pytest.fixture
def few_partitions():
    keys.set_partitions(4)
    yield 4
    keys.set_partitions(keys.DEFAULT_PARTITIONS)


async def test_a_failed_exporter_is_replaced(
    redis_url, tmp_path, few_partitions, monkeypatch, caplog
):
    monkeypatch.setattr(service, "RESTART_DELAY", 0.05)
    directory = tmp_path / "records"
    directory.write_text("not a directory")  # every take fails: the disk is broken
    settings = dataclasses.replace(Settings(), records_directory=str(directory))
    metrics = Metrics(process=False)
    client = aioredis.Redis.from_url(redis_url)
    try:
        with caplog.at_level(logging.ERROR, logger="ocs.records.service"):
            async with service.exporting(client, settings, metrics):
                deadline = time.monotonic() + 10
                while caplog.text.count("export_failed") < 2:  # failed, replaced, failed
                    assert time.monotonic() < deadline, "the failed exporter was not replaced"
                    await asyncio.sleep(0.02)
                directory.unlink()  # the disk is mended: the next exporter works
                deadline = time.monotonic() + 10
                while metrics.registry.get_sample_value("ocs_records_export_partitions") != 4:
                    assert time.monotonic() < deadline, "no exporter took over after the failure"
                    await asyncio.sleep(0.02)
        assert directory.is_dir()
    finally:
        await client.aclose()


def test_ocs_export_exits_2_when_its_metrics_port_is_taken(redis_url, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable, "-m", "ocs", "export", f"--redis-url={redis_url}",
                f"--records-directory={tmp_path / 'records'}", "--http-host=127.0.0.1",
                f"--records-export-metrics-port={port}",
            ],
            cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 2
    [message] = [line for line in result.stderr.splitlines() if line.startswith("ocs export: ")]
    assert "address already in use" in message


def _start_export(redis_url: str, tmp_path, free_port, *flags: str):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "ocs", "export", f"--redis-url={redis_url}",
            f"--records-directory={tmp_path / 'records'}", "--http-host=127.0.0.1",
            f"--records-export-metrics-port={port}", "--redis-partitions=4", *flags,
        ],
        cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("exporting rated records"):
            return process, port
    process.kill()
    raise AssertionError(f"ocs export did not start: {process.communicate()[1]}")


def test_ocs_export_stops_cleanly_on_sighup(redis_url, tmp_path, free_port):
    process, _ = _start_export(redis_url, tmp_path, free_port)
    process.send_signal(signal.SIGHUP)
    assert process.wait(30) == 0  # stopped, not killed by the signal (-1)
    process.communicate()


def test_ocs_export_closes_an_idle_connection_to_its_metrics_port(redis_url, tmp_path, free_port):
    process, port = _start_export(redis_url, tmp_path, free_port, "--http-keepalive-timeout=0.3")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
            started = time.monotonic()
            assert idle.recv(1) == b""  # closed by the exporter, not by our timeout
            assert time.monotonic() - started < 9
    finally:
        process.terminate()
        process.communicate(timeout=30)
