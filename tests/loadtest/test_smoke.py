"""CI smoke test: ocs-loadtest against a real `ocs serve` for about three seconds.

Starts `python -m ocs serve` on free ports with its embedded Redis and demo catalog,
then `python -m loadtest run` as an operator would: it provisions a handful of test
subscribers with `ocs provision`, drives the default mix at a low rate, drains the
sessions and checks the money: balances before and after against the run's rated
records, both read from the management API with a viewer token. No speed is asserted.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys

import pytest

from tests.helpers import ROOT, get_free_port

pytestmark = pytest.mark.system


@pytest.fixture
def ocs_serve(tmp_path):
    diameter_port, http_port = get_free_port(), get_free_port()
    token = secrets.token_hex(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCS_")} | {
        "PYTHONPATH": str(ROOT)
    }
    serve_env = env | {"OCS_HTTP_TOKENS": "viewer:" + hashlib.sha256(token.encode()).hexdigest()}
    data_dir = tmp_path / "redis"
    command = [sys.executable, "-m", "ocs", "serve", "--diameter-host=127.0.0.1"]
    command += [f"--diameter-port={diameter_port}", "--http-host=127.0.0.1"]
    command += [f"--http-port={http_port}", f"--redis-data-dir={data_dir}"]
    log = tmp_path / "ocs.log"  # a file, not a pipe nobody reads while the run goes on
    with log.open("w") as stderr:
        process = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=serve_env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    while True:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"ocs serve exited early: {log.read_text()}")
        if line.startswith("HTTP listening"):
            break
    yield diameter_port, http_port, data_dir, env | {"OCS_API_TOKEN": token}
    process.terminate()  # SIGTERM: the OCS stops its embedded Redis too
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_three_seconds_of_mixed_traffic_without_errors_and_the_money_adds_up(ocs_serve, tmp_path):
    diameter_port, http_port, data_dir, env = ocs_serve
    report_path = tmp_path / "report.json"
    command = [sys.executable, "-m", "loadtest", "run", "--target", f"127.0.0.1:{diameter_port}"]
    command += ["--rate", "40", "--duration", "3", "--connections", "2", "--seed", "1"]
    command += ["--subscribers", "4", "--money-check", "all", "--redis-data-dir", str(data_dir)]
    command += ["--api", f"http://127.0.0.1:{http_port}", "--json", str(report_path)]
    done = subprocess.run(
        command,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: PASS" in done.stdout
    report = json.loads(report_path.read_text())
    assert report["requests"] == 120
    assert report["timeouts"] == 0 and report["errors"] == 0
    assert report["result_codes"] == {"2001": report["answers"]}
    assert report["answers"] == 120
    assert report["drain"]["timeouts"] == 0 and not report["drain"]["errors"]
    assert set(report["drain"]["result_codes"]) <= {"2001"}
    kinds = set(report["by_kind"])
    assert {"data_initial", "data_update", "voice_initial", "sms_event"} <= kinds
    money = report["money_check"]
    assert money["ok"] and money["complete"], money
    assert money["accounts"] == 4
    assert money["debited_micro"] > 0  # the demo tariffs charged something
    assert money["charged_micro"] == money["debited_micro"]
    assert money["records"] > 0
