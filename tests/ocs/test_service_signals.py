"""``ocs serve`` stops gracefully on SIGTERM, SIGINT and SIGHUP (issue 13): it logs the
signal, stops, exits 0, and takes its embedded redis-server with it, so the same data
directory starts again at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, stop_process


def _start(
    tmp_path: Path, free_port, *, own_group: bool = False
) -> tuple[subprocess.Popen[str], Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCS_")}
    env["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-m", "ocs", "serve", "--diameter-host=127.0.0.1"]
    command += [f"--diameter-port={free_port()}", "--http-host=127.0.0.1"]
    command += [f"--http-port={free_port()}", f"--redis-data-dir={tmp_path / 'redis'}"]
    log = tmp_path / "serve.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=own_group,
        )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("HTTP listening"):
            return process, log
    raise AssertionError(f"ocs serve exited early: {log.read_text()}")


def _events(log: Path) -> list[dict[str, object]]:
    events = []
    for line in log.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM], ids=lambda s: s.name)
def test_a_stop_signal_stops_the_node_and_its_embedded_redis(signum, tmp_path, free_port):
    process, log = _start(tmp_path, free_port)
    try:
        redis_pids = [e["pid"] for e in _events(log) if e.get("event") == "embedded_redis_started"]
        assert redis_pids  # the embedded Redis this node started
        process.send_signal(signum)
        assert process.wait(20) == 0
    finally:
        stop_process(process)
        assert process.stdout is not None
        process.stdout.close()
    names = [e.get("event") for e in _events(log)]
    assert {"event": "signal_received", "signal": signum.name}.items() <= next(
        e for e in _events(log) if e.get("event") == "signal_received"
    ).items()
    assert names.index("signal_received") < names.index("ocs_stopping") < names.index("ocs_stopped")
    assert "embedded_redis_stopped" in names
    for pid in redis_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
    # the data directory's lock was released: it starts again
    again, _ = _start(tmp_path, free_port)
    stop_process(again)
    assert again.returncode == 0
    assert again.stdout is not None
    again.stdout.close()


def test_ctrl_c_to_the_process_group_stops_the_node_before_its_redis(tmp_path, free_port):
    """A terminal's Ctrl-C (SIGINT to the whole foreground process group) reaches the
    node, not its private redis-server: Redis is stopped by the node, last, and is never
    taken for dead and restarted while the node drains."""
    process, log = _start(tmp_path, free_port, own_group=True)
    try:
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(20) == 0
    finally:
        stop_process(process)
        assert process.stdout is not None
        process.stdout.close()
    names = [e.get("event") for e in _events(log)]
    assert "embedded_redis_died" not in names
    assert names.index("ocs_stopping") < names.index("embedded_redis_stopped")
