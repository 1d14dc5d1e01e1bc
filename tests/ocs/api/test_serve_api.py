"""`ocs serve` as a real process serves the API next to /metrics, with tokens from the
environment; the client commands work against it; no token reaches its logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from ocs.cli import main
from tests.helpers import ROOT, get_free_port, stop_process
from tests.ocs.api.conftest import ADMIN_TOKEN, VIEWER_TOKEN, digest

pytestmark = pytest.mark.system


@pytest.fixture
def serve(tmp_path):
    diameter_port, http_port = get_free_port(), get_free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCS_")} | {
        "PYTHONPATH": str(ROOT),
        "OCS_HTTP_TOKENS": f"admin:{digest(ADMIN_TOKEN)},viewer:{digest(VIEWER_TOKEN)}",
        "OCS_LOG_LEVEL": "DEBUG",
    }
    process = subprocess.Popen(
        [
            sys.executable, "-m", "ocs", "serve",
            "--diameter-host=127.0.0.1", f"--diameter-port={diameter_port}",
            "--http-host=127.0.0.1", f"--http-port={http_port}",
            f"--redis-data-dir={tmp_path / 'redis'}",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    while True:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"ocs serve exited early: {process.stderr.read()}")
        if line.startswith("HTTP listening"):
            break
    yield process, f"http://127.0.0.1:{http_port}"
    stop_process(process)


def get(url: str, token: str | None) -> tuple[int, object]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_serve_answers_the_api(serve, capsys):
    process, url = serve
    assert get(f"{url}/v1/accounts", None)[0] == 401
    status, account = get(f"{url}/v1/accounts/demo-prepaid", VIEWER_TOKEN)
    assert (status, account["plan"]) == (200, "prepaid-basic")
    assert get(f"{url}/v1/accounts/demo-prepaid/sessions", VIEWER_TOKEN) == (200, [])
    env = {"OCS_API_URL": url, "OCS_API_TOKEN": ADMIN_TOKEN}
    assert main(["topup", "demo-prepaid", "1.00EUR", "--key", "serve-1"], env=env) == 0
    assert "now 11.00 EUR" in capsys.readouterr().out
    status, bucket = get(f"{url}/v1/accounts/demo-prepaid/buckets/main", VIEWER_TOKEN)
    assert bucket["amount"] == 11_000_000
    assert get(f"{url}/healthz", None)[0] == 200
    process.terminate()
    _, logs = process.communicate(timeout=15)
    assert process.returncode == 0
    for secret in (ADMIN_TOKEN, VIEWER_TOKEN, digest(ADMIN_TOKEN), digest(VIEWER_TOKEN)):
        assert secret not in logs
