"""Issue 11 acceptance: a consumer postpaid account's invoice after a load run, to the cent
(and issue 12's: its PDF and HTML documents).

Everything is a real process on real TCP: a private ``redis-server``, ``ocs serve``
with its record exporter on, ``ocs provision``, the load harness (``python -m
loadtest replay``, the ``ocs-loadtest replay`` command) sending a trace of CCRs over
Diameter, ``ocs records read`` and ``ocs bill-run``. The trace is written by this test
with python-diameter, the independent reference peer: a fixed set of data and voice
sessions (CCR-I/U/T) and SMS events of one subscriber with known usage per report, so
the money is known exactly and computed below by hand from the demo catalog's tariff.

The bill period: records are rated at their CCRs' Event-Timestamp (within the timestamp
tolerance of the server's clock, docs/data-model.md "One clock: the rating time"), and
every request of the trace carries the same stamp ``T``, taken when the trace is
written: every record falls in the month of ``T`` in the catalog's time zone
(Europe/Berlin), the current period. Its grace period is not over, so the bill run is
told to finalise now (``--finalize``). The account store sets ``created`` to the time of
provisioning, which would prorate the monthly fee from that day; the test sets the hash
field ``created`` directly in Redis to 30 days before the period starts, so the fee is
the full 20.00 EUR.

The demo catalog's winter promotion (2 EUR off data) covers the periods of 2027-01 to
2027-03; run then, the hand computation has its discount line (checked once in-process
against the bill run with these records dated 2027-01-15).

The pipeline runs once for the module (a module fixture); the tests read what it left:
the harness's report, the records of the segments, the billing database and the bill
runs' output.
"""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from diameter.message.constants import (
    E_3GPP_REPORTING_REASON_FINAL,
    E_REQUESTED_ACTION_DIRECT_DEBITING,
    E_TERMINATION_CAUSE_DIAMETER_LOGOUT,
)

from loadtest.trace import TO_SERVER, TraceWriter
from ocs.embedded_redis import EmbeddedRedis
from quota_engine.store import keys
from tests.charging import messages as m
from tests.helpers import ROOT, get_free_port, stop_process

pytestmark = pytest.mark.system

DEMO_CATALOG = ROOT / "quota_engine" / "catalog" / "demo_catalog.toml"
TIMEZONE = ZoneInfo("Europe/Berlin")  # the demo catalog's
ACCOUNT = "consumer-0001"
MSISDN = "491710000042"
CREDIT_LIMIT = 100_000_000  # 100 EUR may be owed; main starts at 0
MIB = 1_048_576
EUR = 1_000_000  # micro-units


# --- the scenario ----------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One session (or SMS event) of the trace: its service and the usage of each report."""

    origin: str
    name: str
    service: str  # data, voice, sms
    reports: tuple[int, ...] = ()  # usage of each CCR-U, then of the CCR-T
    party: str = ""  # voice: Called-Party-Address; sms: the recipient


# Data: rating group 10, 0.50 EUR per MiB in whole MiB blocks (first and next increment
# 1 MiB), rated on the session's total (cumulative), at home (no visited network).
# Voice: rating group 100; mobile (4917...) 0.15 EUR per minute in whole minutes,
# international 0.50 EUR per minute, first 30 s then per 6 s. Neither rate has a time
# band, so the invoice does not depend on the weekday. SMS: 0.09 EUR national (49...),
# 0.29 EUR international.
CALLS = (
    Call("pgw.invoice.test", "d1", "data", (1_000_000, 1_000_000)),
    Call("pgw.invoice.test", "d2", "data", (3 * MIB, 2 * MIB, 500_000)),
    Call("pgw.invoice.test", "d3", "data", (1,)),
    Call("as.invoice.test", "v1", "voice", (30, 45), "tel:+4917012345678"),
    Call("as.invoice.test", "v2", "voice", (60,), "tel:+4917012345678"),
    Call("as.invoice.test", "v3", "voice", (40,), "tel:+33612345678"),
    Call("smsc.invoice.test", "s1", "sms", party="491701234567"),
    Call("smsc.invoice.test", "s2", "sms", party="4930123456"),
    Call("smsc.invoice.test", "s3", "sms", party="491609876543"),
    Call("smsc.invoice.test", "s4", "sms", party="33612345678"),
)

# What each call costs, by hand (micro-units): data is rated on the session's total.
CHARGED = {
    "d1": 1 * EUR,  # 2,000,000 octets -> 2 MiB blocks x 0.50
    "d2": 3 * EUR,  # 3 MiB + 2 MiB + 500,000 = 5,742,880 octets -> 6 MiB blocks x 0.50
    "d3": EUR // 2,  # 1 octet -> one 1 MiB block
    "v1": 300_000,  # mobile 30 + 45 = 75 s -> 2 minutes x 0.15
    "v2": 150_000,  # mobile 60 s -> 1 minute
    "v3": 350_000,  # international 40 s -> 30 s + 2 x 6 s = 42 s x 0.50 / 60 s
    "s1": 90_000,  # national
    "s2": 90_000,  # national
    "s3": 90_000,  # national
    "s4": 290_000,  # international
}

VAT = 190_000  # ppm: German VAT 19 %, the demo catalog's standard rate from 2021

CENT = 10_000  # micro-units

# (kind, service, category, quantity, unit, amount in cents, tax category, tax rate): the
# invoice's lines in their order. The usage category is the destination and the time
# band of the rating time (ocs/billing/usage.py).
Line = tuple[str, str | None, str | None, int | None, str | None, int, str | None, int | None]


def expected_invoice(days: int, band: str, promotion: bool) -> tuple[list[Line], int, int, int]:
    """The invoice, by hand: its lines, subtotal, tax and total in cents.

    Without a promotion::

        recurring  Postpaid Standard, the whole month (``days`` of ``days``)    20.00
        usage      data: d1 + d2 + d3 = 1.00 + 3.00 + 0.50, 7,742,881 octets       4.50
        usage      sms, international: s4, 1 event                                0.29
        usage      sms, national: s1 + s2 + s3 = 3 x 0.09, 3 events               0.27
        usage      voice, international: v3, 40 s                                 0.35
        usage      voice, mobile: v1 + v2 = 0.30 + 0.15, 135 s                    0.45
        subtotal                                                                  25.86
        tax        VAT 19 % of 25.86 = 4.9134                                      4.91
        total                                                                     30.77

    In the demo catalog's winter promotion (periods ending 2027-01-01 to 2027-03-31):
    2.00 off data (4.50 is more), so the taxed base is 23.86, VAT 4.5334 -> 4.53, total
    28.39.
    """
    usage: list[Line] = [
        ("usage", "data", band, 7_742_881, "octets", 450, "standard", VAT),
        ("usage", "sms", f"international/{band}", 1, "events", 29, "standard", VAT),
        ("usage", "sms", f"national/{band}", 3, "events", 27, "standard", VAT),
        ("usage", "voice", f"international/{band}", 40, "seconds", 35, "standard", VAT),
        ("usage", "voice", f"mobile/{band}", 135, "seconds", 45, "standard", VAT),
    ]
    lines: list[Line] = [
        ("recurring", None, None, days, "days", 2000, "standard", VAT),
        *usage,
    ]
    if promotion:
        lines.append(("discount", "data", "winter-data-2027", None, None, -200, "standard", VAT))
        tax = 453
    else:
        tax = 491
    lines.append(("tax", None, "standard", None, None, tax, "standard", VAT))
    subtotal = sum(line[5] for line in lines if line[0] != "tax")
    assert subtotal == (2386 if promotion else 2586)
    return lines, subtotal, tax, subtotal + tax


def _ccrs(call: Call, stamp: datetime.datetime) -> Iterator[Any]:
    """The CCRs of one call, as a network element sends them (python-diameter)."""
    session = f"{call.origin};inv;{call.name}"
    subscriptions = (("msisdn", MSISDN),)
    if call.service == "sms":
        yield m.ccr(
            session, m.EVENT, 0, origin_host=call.origin, context=m.SMS,
            subscriptions=subscriptions, timestamp=stamp,
            action=E_REQUESTED_ACTION_DIRECT_DEBITING,
            services=[m.mscc(200, requested=m.rsu(events=1))],
            service_information=m.sms_information(call.party),
        )  # fmt: skip
        return
    if call.service == "data":
        context, group, info = m.DATA, 10, m.ps_information(apn="internet")
        unit = "octets"
    else:
        context, group, info = m.VOICE, 100, m.ims_information(call.party)
        unit = "seconds"
    common = dict(
        origin_host=call.origin, context=context, subscriptions=subscriptions,
        timestamp=stamp, service_information=info,
    )  # fmt: skip
    yield m.ccr(session, m.INITIAL, 0, services=[m.mscc(group, requested=m.rsu())], **common)
    *updates, last = call.reports
    for number, used in enumerate(updates, start=1):
        yield m.ccr(
            session, m.UPDATE, number,
            services=[m.mscc(group, requested=m.rsu(), used=[m.usu(**{unit: used})])],
            **common,
        )  # fmt: skip
    final = m.usu(**{unit: last}, reason=E_3GPP_REPORTING_REASON_FINAL)
    yield m.ccr(
        session, m.TERMINATE, len(call.reports),
        services=[m.mscc(group, used=[final])],
        termination_cause=E_TERMINATION_CAUSE_DIAMETER_LOGOUT, **common,
    )  # fmt: skip


def write_trace(path: Path, stamp: int) -> int:
    """The trace of every call, one connection per network element, 5 ms apart (a
    request of a session is sent once the previous one is answered); the requests."""
    when = datetime.datetime.fromtimestamp(stamp, datetime.UTC)
    connections = {origin: n for n, origin in enumerate(dict.fromkeys(c.origin for c in CALLS), 1)}
    writer = TraceWriter(path, {"test": "invoice after a load run"})
    at = time.time_ns()
    try:
        for call in CALLS:
            for request in _ccrs(call, when):
                writer.write(at, connections[call.origin], TO_SERVER, request.as_bytes())
                at += 5_000_000
    finally:
        writer.close()
    return writer.records


# --- the processes ---------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OCS_")} | {
        "PYTHONPATH": str(ROOT)
    }


def _run(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *command], cwd=cwd, env=_env(), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def ocs(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return _run("-m", "ocs", *args, cwd=cwd)


def start_serve(config: Path, cwd: Path) -> subprocess.Popen[str]:
    """``ocs serve`` once it listens; its log goes to ``cwd/serve.err``."""
    with (cwd / "serve.err").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ocs", "serve", f"--config={config}"],
            cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=log, text=True,
        )  # fmt: skip
    assert process.stdout is not None
    while True:
        line = process.stdout.readline()
        if not line:
            process.wait()
            raise AssertionError(f"ocs serve exited: {(cwd / 'serve.err').read_text()}")
        if line.startswith("HTTP listening"):
            return process


def read_records(directory: Path, cwd: Path) -> list[dict[str, Any]]:
    """Every record of the segments, as ``ocs records read --format json DIR`` prints them."""
    result = ocs("records", "read", "--format", "json", str(directory), cwd=cwd)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def wait_exported(redis_url: str, timeout: float = 20) -> None:
    """Until every partition's record stream is empty and the account's has nothing
    pending: the exporter deletes an entry only once its record is in a sealed,
    fsync'd segment (quota_engine/store/lua/ack_records.lua)."""
    client = redis.Redis.from_url(redis_url)
    stream = keys.partition_records(keys.partition_of(ACCOUNT))
    deadline = time.monotonic() + timeout
    try:
        while True:
            pipe = client.pipeline(transaction=False)
            for partition in range(keys.partitions()):
                pipe.xlen(keys.partition_records(partition))
            lengths = pipe.execute()
            groups = client.xinfo_groups(stream) if client.exists(stream) else []
            pending = sum(int(group["pending"]) for group in groups)
            if not any(lengths) and pending == 0 and client.exists(stream):
                return
            assert time.monotonic() < deadline, (
                f"not exported after {timeout} s: {sum(lengths)} entries, {pending} pending"
            )
            time.sleep(0.05)
    finally:
        client.close()


TABLES = ("invoices", "invoice_items", "invoice_item_records", "number_sequences")


@dataclass
class Pipeline:
    work: Path
    redis_url: str
    records_dir: Path
    database: Path
    stamp: int
    """The Event-Timestamp of every request of the trace: the rating time."""
    period: str
    period_start: int
    period_end: int
    replay: dict[str, Any]
    records: list[dict[str, Any]]
    first_run: subprocess.CompletedProcess[str] | None = None

    def bill_run(self) -> subprocess.CompletedProcess[str]:
        return ocs(
            "bill-run", f"--period={self.period}", "--finalize",
            f"--redis-url={self.redis_url}",
            f"--records-directory={self.records_dir}",
            f"--billing-database-url=sqlite:///{self.database}",
            cwd=self.work,
        )  # fmt: skip

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        connection = sqlite3.connect(self.database)
        try:
            return connection.execute(sql, params).fetchall()
        finally:
            connection.close()

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        return {table: sorted(self.query(f"SELECT * FROM {table}"), key=repr) for table in TABLES}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    work = tmp_path_factory.mktemp("invoice")
    server = EmbeddedRedis(work / "redis")
    redis_url = server.start()
    records_dir = work / "records"
    diameter_port, http_port = get_free_port(), get_free_port()
    config = work / "ocs.toml"
    config.write_text(
        f"""
[diameter]
host = "127.0.0.1"
port = {diameter_port}

[http]
host = "127.0.0.1"
port = {http_port}

[redis]
url = "{redis_url}"

[records]
directory = "{records_dir}"
export = "on"
segment_max_age = 0.2
export_poll_interval = 0.05
"""
    )
    serve: subprocess.Popen[str] | None = None
    try:
        # 1. the subscriber: postpaid on postpaid-standard, main at 0 against a credit
        # limit; no allowance bucket (provisioning makes one only for the allowance ids
        # the document lists), so all data is paid at the tariff
        document = work / "accounts.toml"
        document.write_text(
            f"""catalog = "{DEMO_CATALOG}"

[[accounts]]
id = "{ACCOUNT}"
kind = "postpaid"
plan = "postpaid-standard"
credit_limit = {CREDIT_LIMIT}
subscriptions = ["msisdn:{MSISDN}"]

  [[accounts.buckets]]
  id = "main"
  amount = 0
"""
        )
        provisioned = ocs("provision", str(document), f"--redis-url={redis_url}", cwd=work)
        assert provisioned.returncode == 0, provisioned.stdout + provisioned.stderr
        serve = start_serve(config, work)  # after provisioning: it needs an active catalog

        # 2. the bill period of the rating time, and the account created before it (the
        # store set `created` to now, which would prorate the fee from today)
        stamp = int(time.time())
        local = datetime.datetime.fromtimestamp(stamp, TIMEZONE)
        first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        after = (first + datetime.timedelta(days=32)).replace(day=1)
        period_start, period_end = int(first.timestamp()), int(after.timestamp())
        client = redis.Redis.from_url(redis_url)
        try:
            key = keys.account(ACCOUNT)
            created = client.hget(key, "created")
            assert created is not None and int(created) >= stamp - 120, created
            client.hset(key, "created", str(period_start - 30 * 86_400))
        finally:
            client.close()

        # 3. the load: the harness replays the trace over real Diameter TCP
        trace = work / "invoice.trace"
        requests = write_trace(trace, stamp)
        report = work / "replay.json"
        replayed = _run(
            "-m", "loadtest", "replay", str(trace),
            f"--target=127.0.0.1:{diameter_port}", "--quiet", f"--json={report}",
            cwd=work,
        )  # fmt: skip
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        replay = json.loads(report.read_text())

        # 4. every record exported to the segments
        wait_exported(redis_url)
        records = read_records(records_dir, work)

        # 5. the bill run of the current period, finalised now
        pipe = Pipeline(
            work, redis_url, records_dir, work / "billing.db", stamp, first.strftime("%Y-%m"),
            period_start, period_end, replay, records,
        )  # fmt: skip
        pipe.first_run = pipe.bill_run()
        assert requests == replay["requests"]
        yield pipe
    finally:
        if serve is not None:
            stop_process(serve)
            assert serve.stdout is not None
            serve.stdout.close()
        server.stop()


def _band(stamp: int) -> str:
    """The demo catalog's time band at ``stamp``: weekend on Saturdays, Sundays and the
    catalog's holidays (prices of the calls here do not depend on it, categories do)."""
    day = datetime.datetime.fromtimestamp(stamp, TIMEZONE).date()
    holidays = tomllib.loads(DEMO_CATALOG.read_text())["holidays"]
    return "weekend" if day.weekday() >= 5 or day.isoformat() in holidays else "weekday"


def _promotion(period_end: int) -> bool:
    """Whether the demo catalog's winter promotion covers the period (its last day)."""
    last = datetime.datetime.fromtimestamp(period_end - 1, TIMEZONE).date()
    return datetime.date(2027, 1, 1) <= last < datetime.date(2027, 4, 1)


def _call_of(record: dict[str, Any]) -> str:
    return record["session"].split(";")[2]


def test_the_load_run_is_answered_and_rated_as_computed_by_hand(pipeline):
    replay = pipeline.replay
    requests = sum(1 if c.service == "sms" else len(c.reports) + 1 for c in CALLS)
    assert replay["requests"] == replay["answers"] == requests == 20
    assert replay["result_codes"] == {"2001": requests}
    assert replay["timeouts"] == 0 and replay["errors"] == 0
    by_call = {_call_of(record): record for record in pipeline.records}
    assert len(pipeline.records) == len(by_call) == len(CALLS)
    # the harness gave every session a new Session-Id: ``<trace's>;<run tag>.<nonce>.0``
    suffix = pipeline.records[0]["session"].split(";", 3)[3]
    assert suffix.endswith(".0")
    band = _band(pipeline.stamp)
    for call in CALLS:
        record = by_call[call.name]
        session = f"{call.origin};inv;{call.name};{suffix}"
        group = {"data": 10, "voice": 100, "sms": 200}[call.service]
        unit = {"data": "octets", "voice": "seconds", "sms": "events"}[call.service]
        assert record["id"] == f"{session};{len(call.reports)};{group}", record["id"]
        assert record["account"] == ACCOUNT and record["service"] == call.service
        assert record["used"] == {unit: sum(call.reports) if call.reports else 1}
        assert record["charged"] == CHARGED[call.name], call
        assert record["money"] == {"main": CHARGED[call.name]} and record["allowances"] == {}
        assert record["cause"] == ("event" if call.service == "sms" else "normal")
        # rated at the CCRs' Event-Timestamp: in the period billed below
        assert record["start"] == record["end"] == pipeline.stamp
        assert record["zone"] == "home" and record["band"] == band


def test_the_invoice_is_the_hand_computed_one_to_the_cent(pipeline):
    run = pipeline.first_run
    assert run is not None and run.returncode == 0, run.stdout + run.stderr
    lines, subtotal, tax, total = expected_invoice(
        days=round((pipeline.period_end - pipeline.period_start) / 86_400),
        band=_band(pipeline.stamp),
        promotion=_promotion(pipeline.period_end),
    )
    assert f"period {pipeline.period}, shard 0/1" in run.stdout
    assert "invoice accounts 1: 1 invoices created, 0 drafts refreshed, 1 finalised" in run.stdout
    assert f"records {len(CALLS)} (late 0)" in run.stdout
    assert f"total {total // 100}.{total % 100:02d} EUR" in run.stdout
    invoices = pipeline.query(
        "SELECT account, state, number, period_start, period_end, currency, off_cycle, "
        "subtotal_micro, tax_micro, total_micro, subtotal_minor, tax_minor, total_minor "
        "FROM invoices"
    )
    # every line is whole cents: exact in micro-units, and so are the totals
    assert invoices == [
        (
            ACCOUNT, "final", "INV-000001", pipeline.period_start, pipeline.period_end, "EUR",
            0, *(cents * CENT for cents in (subtotal, tax, total) * 2),
        )
    ]  # fmt: skip
    stored = pipeline.query(
        "SELECT kind, service, category, quantity, unit, amount_micro, amount_minor, "
        "tax_category, tax_rate_ppm FROM invoice_items ORDER BY position"
    )
    assert stored == [(*line[:5], line[5] * CENT, line[5] * CENT, *line[6:]) for line in lines]
    recurring = pipeline.query(
        "SELECT plan, period_start, period_end FROM invoice_items WHERE kind = 'recurring'"
    )
    assert recurring == [("postpaid-standard", pipeline.period_start, pipeline.period_end)]


def test_the_pdf_and_html_documents_show_the_invoice(pipeline):
    """Issue 12's acceptance: the documents of the subscriber's invoice after the load
    run, made by ``ocs invoice pdf|html`` (the contact from Redis, the itemised
    records from the segments), show its number, the hand-computed total and every
    record of the load run."""
    import pypdf

    _, _, _, total = expected_invoice(
        days=round((pipeline.period_end - pipeline.period_start) / 86_400),
        band=_band(pipeline.stamp),
        promotion=_promotion(pipeline.period_end),
    )
    [(invoice_id,)] = pipeline.query("SELECT id FROM invoices")
    flags = (
        f"--redis-url={pipeline.redis_url}",
        f"--records-directory={pipeline.records_dir}",
        f"--billing-database-url=sqlite:///{pipeline.database}",
    )
    pdf, html = pipeline.work / "invoice.pdf", pipeline.work / "invoice.html"
    for kind, path in (("pdf", pdf), ("html", html)):
        made = ocs("invoice", kind, invoice_id, f"--output={path}", *flags, cwd=pipeline.work)
        assert made.returncode == 0, made.stdout + made.stderr
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(pdf).pages)
    page = html.read_text()
    # no locale on the account: the operator's default (en_GB)
    amount = f"€{total // 100}.{total % 100:02d}"
    for document in (text, page):
        assert "INV-000001" in document
        assert amount in document
        assert "Amount due by" in document
    # detailed itemisation (the account's default): a row per record of the load run
    assert text.count(f"+{MSISDN}") == page.count(f"+{MSISDN}") == len(CALLS)


def test_every_exported_record_is_on_the_invoice_exactly_once(pipeline):
    exported = [record["id"] for record in pipeline.records]
    assert len(set(exported)) == len(exported) == len(CALLS)
    links = pipeline.query(
        "SELECT r.record_id, i.service, i.category, r.released FROM invoice_item_records r "
        "JOIN invoice_items i ON i.id = r.item_id ORDER BY r.record_id"
    )
    assert sorted(link[0] for link in links) == sorted(exported)  # each once, none else
    band = _band(pipeline.stamp)
    by_id = {record["id"]: record for record in pipeline.records}
    for record_id, service, category, released in links:
        record = by_id[record_id]
        assert not released
        assert service == record["service"]
        expected = "/".join(p for p in (record["destination"], band) if p)
        assert category == expected, record_id


def test_a_second_bill_run_changes_nothing(pipeline):
    before = pipeline.snapshot()
    again = pipeline.bill_run()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 invoices created, 0 drafts refreshed, 0 finalised, 1 final already" in again.stdout
    assert pipeline.snapshot() == before
    assert pipeline.query("SELECT count(*), min(number) FROM invoices") == [(1, "INV-000001")]
