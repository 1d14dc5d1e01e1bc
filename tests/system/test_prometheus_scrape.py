"""A real Prometheus scrapes a real `ocs serve`: every dashboard panel and every rule works.

`ocs serve` (embedded Redis) runs on free ports; a reference P-GW and SMSC drive
Diameter traffic through it, error cases included (an unknown subscriber: 5030, an
unknown session: 5002, a rating group no tariff covers), and the management API is
called (200, 401, 404). Debian's `prometheus` (installed by .ci/run) scrapes the node
every second with the repository's rule files loaded (evaluated every second). Then,
through Prometheus's HTTP API:

* every rule is loaded and healthy, and its expression evaluates without error;
* every query of every panel of deploy/grafana/dashboards/*.json returns data, with the
  template variables as Grafana would substitute them ($instance: the node,
  $peer: all, $__rate_interval: 1m);
* the dashboards' template-variable queries find the node and its peer;
* every metric a dashboard or a rule names is one the node's /metrics declares.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
import yaml
from diameter.message.constants import E_REQUESTED_ACTION_DIRECT_DEBITING

from tests.charging import messages as m
from tests.deploy.test_prometheus_rules import _NAME, rule_files
from tests.helpers import ROOT, get_free_port, start_ocs_serve, stop_process
from tests.protocol.reference_peer import ReferencePeer

PROMETHEUS_BINARY = shutil.which("prometheus")
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
PGW = "pgw.test.net"
SMSC = "smsc.test.net"
POSTPAID = "491700000002"  # demo-postpaid (the prepaid one's 10 EUR go to data)
TOKEN = "scrape-test-token-0123456789abcdef"
RATE_INTERVAL = "1m"

pytestmark = pytest.mark.skipif(
    PROMETHEUS_BINARY is None,
    reason="prometheus not installed (apt-get install prometheus; .ci/run does)",
)


def http(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class PrometheusAPI:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        status, body = http(f"{self.base}{path}?{urllib.parse.urlencode(params)}")
        document = json.loads(body)
        assert document["status"] == "success", (path, params, document)
        return document["data"]

    def query(self, expr: str) -> list[dict]:
        return self.get("/api/v1/query", query=expr)["result"]


@pytest.fixture
def ocs_node(tmp_path):
    log = (tmp_path / "ocs.log").open("w")
    try:
        node = start_ocs_serve(
            tmp_path,
            f"--redis-data-dir={tmp_path / 'redis'}",
            origin="ocs.scrape.test",
            stderr=log,
            env={
                "OCS_HTTP_TOKENS": f"admin:{hashlib.sha256(TOKEN.encode()).hexdigest()}",
                "OCS_DIAMETER_ALLOWED_PEERS": f"{PGW},{SMSC}",
                "OCS_METRICS_SAMPLE_INTERVAL": "1",
            },
        )
    except AssertionError as error:
        log.close()
        raise AssertionError(f"{error} {(tmp_path / 'ocs.log').read_text()}") from None
    yield node.diameter_port, node.http_port
    stop_process(node.process)
    assert node.process.stdout is not None
    node.process.stdout.close()
    log.close()


@pytest.fixture
def prometheus(tmp_path, ocs_node):
    """A real prometheus scraping the node every second, the repository's rules loaded."""
    assert PROMETHEUS_BINARY is not None
    _, http_port = ocs_node
    port = get_free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files()],
        "scrape_configs": [
            {"job_name": "ocs", "static_configs": [{"targets": [f"127.0.0.1:{http_port}"]}]}
        ],
    }
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            PROMETHEUS_BINARY,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = PrometheusAPI(port)
    deadline = time.monotonic() + 20
    while True:
        assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
        try:
            if http(f"{api.base}/-/ready")[0] == 200:
                break
        except OSError:
            pass  # not listening yet
        assert time.monotonic() < deadline, "prometheus did not become ready"
        time.sleep(0.1)
    # service discovery hands the target to the scrape loop after about 5 s: traffic
    # sent before the first scrape would be the series' first value, never a rise
    while not api.query('up{job="ocs"} == 1'):
        assert time.monotonic() < deadline, "prometheus did not scrape the node"
        time.sleep(0.2)
    yield api, f"127.0.0.1:{http_port}"
    stop_process(process)  # type: ignore[arg-type]
    log.close()


async def drive_traffic(diameter_port: int, http_port: int, round_: int) -> int:
    """One round of traffic; returns the number of CCRs sent."""
    sent = 0
    pgw = await ReferencePeer.connect("127.0.0.1", diameter_port)
    await pgw.open(PGW)
    smsc = await ReferencePeer.connect("127.0.0.1", diameter_port)
    await smsc.open(SMSC)

    async def ccr(peer: ReferencePeer, message) -> Any:
        nonlocal sent
        sent += 1
        return await peer.request(message)

    info = m.ps_information(apn="internet")
    session = f"{PGW};scrape;{round_}"
    answer = await ccr(
        pgw,
        m.ccr(
            session,
            m.INITIAL,
            0,
            services=[m.mscc(10, requested=m.rsu())],
            service_information=info,
        ),
    )
    assert answer.result_code == 2001
    answer = await ccr(
        pgw,
        m.ccr(
            session,
            m.UPDATE,
            1,
            services=[m.mscc(10, requested=m.rsu(), used=[m.usu(octets=m.MIB)])],
            service_information=info,
        ),
    )
    assert answer.result_code == 2001
    answer = await ccr(
        pgw,
        m.ccr(
            session,
            m.TERMINATE,
            2,
            services=[m.mscc(10, used=[m.usu(octets=m.MIB)])],
            service_information=info,
        ),
    )
    assert answer.result_code == 2001
    # a voice call left open: a session and a reservation for the sampler to see
    answer = await ccr(
        pgw,
        m.ccr(
            f"{PGW};scrape-voice;{round_}",
            m.INITIAL,
            0,
            context=m.VOICE,
            subscriptions=(("msisdn", POSTPAID),),
            services=[m.mscc(100, requested=m.rsu())],
            service_information=m.ims_information("tel:+4930123456"),
        ),
    )
    assert answer.result_code == 2001
    # a rating group no tariff of the plan covers, beside one that is: 5031 in its MSCC
    await ccr(
        pgw,
        m.ccr(
            f"{PGW};scrape-rg;{round_}",
            m.INITIAL,
            0,
            services=[m.mscc(10, requested=m.rsu()), m.mscc(9999, requested=m.rsu())],
            service_information=info,
        ),
    )
    answer = await ccr(
        smsc,
        m.ccr(
            f"{SMSC};scrape-sms;{round_}",
            m.EVENT,
            0,
            origin_host=SMSC,
            context=m.SMS,
            subscriptions=(("msisdn", POSTPAID),),
            action=E_REQUESTED_ACTION_DIRECT_DEBITING,
            services=[m.mscc(200, requested=m.rsu(events=1))],
            service_information=m.sms_information("491701234567"),
        ),
    )
    assert answer.result_code == 2001
    unknown = await ccr(
        pgw, m.ccr(f"{PGW};scrape-unknown;{round_}", subscriptions=(("msisdn", "499999999999"),))
    )
    assert unknown.result_code == 5030
    no_session = await ccr(pgw, m.ccr(f"{PGW};never-opened;{round_}", m.UPDATE, 1))
    assert no_session.result_code == 5002
    await pgw.close()
    await smsc.close()

    base = f"http://127.0.0.1:{http_port}"
    assert (await asyncio.to_thread(http, f"{base}/healthz"))[0] == 200
    status, _ = await asyncio.to_thread(http, f"{base}/v1/accounts/demo-prepaid/balances", TOKEN)
    assert status == 200
    assert (await asyncio.to_thread(http, f"{base}/v1/accounts/demo-prepaid/balances"))[0] == 401
    assert (await asyncio.to_thread(http, f"{base}/no/such/route", TOKEN))[0] == 404
    return sent


def dashboard_queries() -> list[tuple[str, str, str, str]]:
    """(dashboard, panel, expr, legend) of every query of every panel."""
    queries = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                queries.append(
                    (board["title"], panel["title"], target["expr"], target["legendFormat"])
                )
    return queries


def substitute(expr: str, instance: str) -> str:
    return (
        expr.replace("$instance", re.escape(instance).replace("\\", "\\\\"))
        .replace("$peer", ".*")
        .replace("$__rate_interval", RATE_INTERVAL)
    )


def declared_names(exposition: str) -> set[str]:
    """Metric names /metrics declares (# TYPE lines, with a histogram's series) or has."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "counter" and not name.endswith("_total"):
                names.add(name + "_total")
            if kind == "histogram":
                names.update(name + s for s in ("_bucket", "_sum", "_count"))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def rule_definitions() -> list[dict]:
    return [
        rule
        for path in rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


async def test_every_panel_and_rule_works_on_a_real_prometheus(ocs_node, prometheus):
    api, instance = prometheus
    diameter_port, http_port = ocs_node
    sent = 0
    for round_ in range(2):  # two rounds a few scrapes apart: series that appear late rise too
        sent += await drive_traffic(diameter_port, http_port, round_)
        await asyncio.sleep(2.5)

    # Prometheus has the traffic and has evaluated the rules on it
    deadline = time.monotonic() + 15
    while True:
        result = await asyncio.to_thread(
            api.query, 'sum(ocs_diameter_requests_total{job="ocs", command="CCR"})'
        )
        if result and float(result[0]["value"][1]) >= sent:
            break
        assert time.monotonic() < deadline, f"Prometheus has {result}, {sent} CCRs were sent"
        await asyncio.sleep(0.5)
    await asyncio.sleep(3)  # a few more scrapes and rule evaluations

    # every rule loaded and healthy
    groups = (await asyncio.to_thread(api.get, "/api/v1/rules"))["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    defined = rule_definitions()
    assert sorted(loaded) == sorted(r.get("alert") or r["record"] for r in defined)
    unhealthy = {n: r.get("lastError") for n, r in loaded.items() if r["health"] != "ok"}
    assert unhealthy == {}
    for rule in defined:  # and its expression evaluates
        await asyncio.to_thread(api.query, rule["expr"])
    # a healthy node fires nothing (alerts without a `for` would fire at once)
    alerts = (await asyncio.to_thread(api.get, "/api/v1/alerts"))["alerts"]
    assert [a["labels"]["alertname"] for a in alerts if a["state"] == "firing"] == []
    # the peers have gone: the no-peer alert's selectors match the node's real series
    pending = {(a["labels"]["alertname"], a["labels"].get("instance")) for a in alerts}
    assert ("OCSDiameterNoPeerOpen", instance) in pending

    # every panel's every query returns data
    # and every recording rule has recorded series
    records = [r["record"] for r in defined if "record" in r]
    unrecorded = [r for r in records if not await asyncio.to_thread(api.query, r)]
    assert unrecorded == []

    # every panel's every query returns data, with the labels its legend names
    empty, unlabelled = [], []
    for dashboard, panel, expr, legend in dashboard_queries():
        result = await asyncio.to_thread(api.query, substitute(expr, instance))
        if not result:
            empty.append(f"{dashboard} / {panel}: {expr}")
        for label in re.findall(r"\{\{(\w+)\}\}", legend):
            if label != "le" and any(label not in series["metric"] for series in result):
                unlabelled.append(f"{dashboard} / {panel}: {legend} on {expr}")
    assert empty == [], "panels without data:\n" + "\n".join(empty)
    assert unlabelled == [], "legends naming labels the query does not keep"

    # the template variables' queries find the node and its peers
    series = await asyncio.to_thread(api.get, "/api/v1/series", **{"match[]": "ocs_build_info"})
    assert [s["instance"] for s in series] == [instance]
    peers = await asyncio.to_thread(
        api.get,
        "/api/v1/label/peer/values",
        **{"match[]": f'ocs_diameter_requests_total{{instance="{instance}"}}'},
    )
    assert {PGW, SMSC} <= set(peers)

    # every metric a dashboard or a rule names is one the node declares
    status, body = await asyncio.to_thread(http, f"http://127.0.0.1:{http_port}/metrics")
    assert status == 200
    declared = declared_names(body.decode()) | {"up"}
    named = {
        (where, name)
        for where, exprs in [
            ("dashboards", [e for _, _, e, _ in dashboard_queries()]),
            ("rules", [r["expr"] for r in rule_definitions()]),
        ]
        for expr in exprs
        for name in _NAME.findall(expr)
    }
    assert len(named) > 40
    unknown = sorted(f"{where}: {name}" for where, name in named if name not in declared)
    assert unknown == []


def test_the_substitution_is_what_grafana_does():
    assert substitute('x{instance=~"$instance"}[$__rate_interval]', "127.0.0.1:80") == (
        'x{instance=~"127\\\\.0\\\\.0\\\\.1:80"}[1m]'
    )
    assert substitute('peer=~"$peer"', "a") == 'peer=~".*"'


def test_the_name_check_reads_declared_families():
    text = (
        "# HELP ocs_x_total help\n# TYPE ocs_x_total counter\n"
        "# HELP ocs_h help\n# TYPE ocs_h histogram\n"
        'ocs_h_bucket{le="1.0"} 0.0\n'
    )
    names = declared_names(text)
    assert {"ocs_x_total", "ocs_h_bucket", "ocs_h_count", "ocs_h_sum"} <= names
    assert "ocs_y_total" not in names
