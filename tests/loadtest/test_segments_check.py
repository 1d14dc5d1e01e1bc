"""The segments check: the run's rated records read back from the exporter's segment
files, each once, against the money that left the balances.

The first tests work on parsed records and a real HTTP server serving metrics text;
the last two start `ocs serve` with its embedded Redis and the exporter on (segments
sealed 0.2 s after their first record) and run `ocs-loadtest run` against it as an
operator would, with the management API for the balances (and its /metrics for the
export lag): once on the real segment directory (it must pass), once through a
segments command that reads a copy with one segment of the run removed and prints one
record twice (it must fail, and say why).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from loadtest.money_check import (
    AccountState,
    ExportMetrics,
    SegmentRecords,
    SegmentsCommand,
    balances_of,
    check_segments,
    parse_records,
    wait_for_export,
)
from ocs.records.output import write_records
from tests.helpers import ROOT, get_free_port, stop_process


def state(amount: int, last_record: str | None = None, units: int | None = None) -> AccountState:
    items = [{"id": "main", "kind": "money", "amount": amount, "reserved": 0}]
    if units is not None:
        items.append({"id": "data-1gb", "kind": "units", "amount": units, "reserved": 0})
    return AccountState(balances_of({"buckets": items}), None, last_record)


def rec(n: int, session: str, charged: int, account: str = "a", stream: str | None = None):
    return {
        "id": f"{session};{n};10",
        "account": account,
        "session": session,
        "charged": charged,
        "money": {"main": charged} if charged else {},
        "allowances": {},
        "stream_id": stream or f"{1000 + n}-0",
    }


def as_csv(records: list[dict]) -> str:
    import io

    text = io.StringIO()
    write_records(records, "csv", text, io.BytesIO())
    return text.getvalue()


def test_parse_records_reads_the_csv_and_the_json_lines_of_ocs_records_read():
    records = [rec(1, "h;tag;1", 1_500_000), rec(2, "h;tag;2", 0)]
    parsed = parse_records(as_csv(records))
    assert [(r["id"], r["charged"], r["money"], r["stream_id"]) for r in parsed] == [
        ("h;tag;1;1;10", 1_500_000, {"main": 1_500_000}, "1001-0"),
        ("h;tag;2;2;10", 0, {}, "1002-0"),
    ]
    lines = "".join(json.dumps(r) + "\n" for r in records)
    assert parse_records(lines) == records
    assert parse_records("") == []
    with pytest.raises(ValueError, match="no column"):
        parse_records("id,account\nx,y\n")


def test_segments_command_runs_and_fails_loudly(tmp_path):
    script = tmp_path / "read.py"
    script.write_text(
        "import sys\nsys.stdout.write(open(sys.argv[1]).read())\n"
        "print('ocs records read: 1 duplicates dropped', file=sys.stderr)\n"
    )
    data = tmp_path / "records.csv"
    data.write_text(as_csv([rec(1, "h;tag;1", 5)]))
    command = SegmentsCommand([sys.executable, str(script), str(data)])
    assert [r["id"] for r in command()] == ["h;tag;1;1;10"]
    assert command.messages == ["ocs records read: 1 duplicates dropped"]
    with pytest.raises(RuntimeError, match="exited 3"):
        SegmentsCommand([sys.executable, "-c", "import sys; sys.exit(3)"])()
    with pytest.raises(RuntimeError, match="no column"):
        SegmentsCommand([sys.executable, "-c", "print('a,b')"])()


def test_the_runs_records_add_up_each_once():
    records = [
        rec(1, "h;tag;1", 300_000),
        rec(2, "h;tag;2", 200_000),
        rec(3, "h;other;1", 7, stream="900-0"),  # an earlier run's: not counted
        rec(4, "h;tag;4", 100, account="b"),
    ]
    before = {"a": state(1_000_000), "b": state(1000)}
    after = {"a": state(500_000), "b": state(900)}
    result = check_segments(SegmentRecords(records, "tag"), before, after, "tag", ["a", "b"])
    assert result.ok, result.problems
    assert result.records == 3 and result.charged == result.debited == 500_100


def test_a_missing_or_repeated_record_fails_it():
    before, after = {"a": state(1_000_000)}, {"a": state(500_000)}
    missing = [rec(1, "h;tag;1", 300_000)]
    result = check_segments(SegmentRecords(missing, "tag"), before, after, "tag", ["a"])
    assert not result.ok
    assert (
        "moved by 500000 but the 1 records written during the run charge it 300000"
        in (result.problems[0])
    )
    # a record printed twice: its money counts twice, and the id is reported
    twice = [rec(1, "h;tag;1", 250_000), rec(1, "h;tag;1", 250_000)]
    result = check_segments(SegmentRecords(twice, "tag"), before, after, "tag", ["a"])
    assert any("appears 2 times" in p for p in result.problems), result.problems
    # a zero-charged record printed twice leaves the money right: the id check catches it
    zero = [rec(1, "h;tag;1", 500_000), rec(2, "h;tag;2", 0), rec(2, "h;tag;2", 0)]
    result = check_segments(SegmentRecords(zero, "tag"), before, after, "tag", ["a"])
    assert result.problems == [
        "record h;tag;2;2;10 appears 2 times in the records read from the segments "
        "(each id must be there once)"
    ]
    # a record the API lists for the run that the segments lack
    ok = [rec(1, "h;tag;1", 500_000)]
    listed = {"a": ["h;tag;1;1;10", "h;tag;9;9;10"]}
    result = check_segments(SegmentRecords(ok, "tag"), before, after, "tag", ["a"], listed)
    assert result.problems == [
        "a: record h;tag;9;9;10 of the run is listed by the API but not in the segments "
        "(not exported, or lost)"
    ]


def test_with_the_apis_readings_records_are_taken_by_stream_id():
    records = [
        rec(1, "h;old;1", 40, stream="1000-0"),  # before the first reading
        rec(2, "h;old;2", 25, stream="1500-0"),  # an earlier session settled during the run
        rec(3, "h;tag;1", 100, stream="1600-0"),
        rec(4, "h;tag;2", 3, stream="2500-0"),  # after the second reading
    ]
    before = {"a": state(1000, last_record="1000-0")}
    after = {"a": state(875, last_record="2000-0")}
    result = check_segments(SegmentRecords(records, "tag"), before, after, "tag", ["a"])
    assert result.ok, result.problems
    assert result.records == 2 and result.settled_earlier == 1


class MetricsServer:
    """A real HTTP server answering /metrics with ``self.text``."""

    def __init__(self) -> None:
        self.text = ""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = outer.text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def metrics_text(lag: int, partitions: int = 1024) -> str:
    return (
        "# HELP ocs_records_export_lag_entries Rated records in Redis not exported yet.\n"
        "# TYPE ocs_records_export_lag_entries gauge\n"
        f"ocs_records_export_lag_entries {lag}.0\n"
        f"ocs_records_export_partitions {partitions}.0\n"
        'ocs_answers_total{result="2001"} 5.0\n'
    )


def test_wait_for_export_needs_the_lag_at_zero_for_the_whole_settle_time():
    server = MetricsServer()
    try:
        metrics = ExportMetrics(server.url)
        server.text = metrics_text(12)
        assert metrics.read()["ocs_records_export_lag_entries"] == 12
        drained = wait_for_export(metrics, timeout=0.3, settle=0.1, poll=0.02)
        assert not drained.drained
        assert "did not drain within 0.3 s: 12 records not exported yet" in drained.detail

        # the lag falls to 0 after a while: drained once it stayed 0 for the settle time
        def later():
            time.sleep(0.3)
            server.text = metrics_text(0)

        threading.Thread(target=later).start()
        started = time.monotonic()
        drained = wait_for_export(metrics, timeout=10, settle=0.5, poll=0.02)
        assert drained.drained and drained.lag_entries == 0
        assert time.monotonic() - started >= 0.8
        # no partitions owned: nothing is measured, not drained
        server.text = metrics_text(0, partitions=0)
        assert not wait_for_export(metrics, timeout=0.2, settle=0.05, poll=0.02).drained
        server.text = 'ocs_answers_total{result="2001"} 5.0\n'
        drained = wait_for_export(metrics, timeout=10, settle=0.05)
        assert not drained.drained and "is the exporter running" in drained.detail
        assert drained.waited < 1
    finally:
        server.server.shutdown()
    unreachable = ExportMetrics(f"http://127.0.0.1:{get_free_port()}/metrics", timeout=1)
    drained = wait_for_export(unreachable, timeout=0.2, settle=0.05, poll=0.05)
    assert not drained.drained and "did not drain" in drained.detail


# --- against a real ocs serve ------------------------------------------------------------


@pytest.fixture(scope="module")
def exporting_ocs(tmp_path_factory):
    """`ocs serve` (embedded Redis, demo catalog) with the exporter on, segments sealed
    0.2 s after their first record."""
    tmp_path = tmp_path_factory.mktemp("segments-check")
    diameter_port, http_port = get_free_port(), get_free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCS_")}
    env["PYTHONPATH"] = str(ROOT)
    token = secrets.token_hex(32)
    serve_env = env | {"OCS_HTTP_TOKENS": "viewer:" + hashlib.sha256(token.encode()).hexdigest()}
    data_dir, records = tmp_path / "redis", tmp_path / "records"
    command = [sys.executable, "-m", "ocs", "serve", "--diameter-host=127.0.0.1"]
    command += [f"--diameter-port={diameter_port}", "--http-host=127.0.0.1"]
    command += [f"--http-port={http_port}", f"--redis-data-dir={data_dir}"]
    command += [f"--records-directory={records}", "--records-export=on"]
    command += ["--records-segment-max-age=0.2"]
    log = tmp_path / "ocs.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=serve_env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    try:
        assert process.stdout is not None
        while True:
            line = process.stdout.readline()
            if not line:
                raise AssertionError(f"ocs serve exited early: {log.read_text()}")
            if line.startswith("HTTP listening"):
                break
        yield {
            "diameter": diameter_port,
            "api": f"http://127.0.0.1:{http_port}",
            "data_dir": data_dir,
            "records": records,
            "env": env | {"OCS_API_TOKEN": token},
        }
    finally:
        stop_process(process)


def loadtest(ocs: dict, tmp_path: Path, *options: str) -> tuple[subprocess.CompletedProcess, dict]:
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "loadtest", "run", "--target", f"127.0.0.1:{ocs['diameter']}"]
    command += ["--rate", "40", "--duration", "1", "--connections", "2", "--seed", "3"]
    command += ["--subscribers", "4", "--money-check", "all"]
    command += ["--redis-data-dir", str(ocs["data_dir"]), "--json", str(report)]
    command += ["--api", ocs["api"], *options]  # balances, sessions, records; its /metrics
    done = subprocess.run(
        command, cwd=tmp_path, env=ocs["env"], capture_output=True, text=True, timeout=240
    )
    return done, json.loads(report.read_text()) if report.exists() else {}


@pytest.mark.system
def test_a_load_run_finds_its_records_in_the_segments_once_and_they_add_up(exporting_ocs, tmp_path):
    done, report = loadtest(exporting_ocs, tmp_path, "--segments", str(exporting_ocs["records"]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: PASS" in done.stdout
    assert report["timeouts"] == 0 and report["errors"] == 0
    money = report["money_check"]  # through the API, which reads the segments too
    assert money["ok"] and money["complete"], money
    check = report["segments_check"]
    assert check["ok"] and check["export"]["drained"], check
    assert check["accounts"] == 4 and check["duplicates"] == 0 and not check["problems"]
    assert check["records"] > 0 and check["segment_records"] >= check["records"]
    # the money the balances lost is in the segments, in the records the API lists
    assert check["debited_micro"] == money["debited_micro"] > 0
    assert check["charged_micro"] == check["debited_micro"]
    assert check["records"] == money["records"]
    assert "segments check: OK: 4 accounts" in done.stdout


LOSSY_READER = """
import csv, json, shutil, subprocess, sys
from pathlib import Path
from ocs.records import iter_records

source, copy, note = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
shutil.rmtree(copy, ignore_errors=True)
shutil.copytree(source, copy)
# the newest sealed segment with money in it: the test's run wrote it (the one before
# this one drained its export before it ended); it is lost
segments = sorted(copy.glob("*.seg"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
lost = next(p for p in segments if any(r["charged"] for r in iter_records(p)))
lost_records = list(iter_records(lost))
lost.unlink()
done = subprocess.run(
    [sys.executable, "-m", "ocs", "records", "read", "--format", "csv", str(copy)],
    capture_output=True, text=True, check=True,
)
rows = done.stdout.splitlines(keepends=True)
# and a reader that failed to drop a duplicate: a record with money, of another account
# than the lost one, printed twice
lost_accounts = {r["account"] for r in lost_records}
parsed = list(csv.DictReader(rows))
twice = next(
    i for i, r in enumerate(parsed)
    if r["account"].startswith("loadtest-") and r["account"] not in lost_accounts
    and r["charged"] not in ("", "0")
)
sys.stdout.write("".join(rows) + rows[twice + 1])
note.write_text(json.dumps({
    "lost": [r["id"] for r in lost_records],
    "lost_accounts": sorted(lost_accounts),
    "twice": parsed[twice]["id"],
}))
"""


@pytest.mark.system
def test_a_lost_segment_and_a_record_printed_twice_fail_the_check(exporting_ocs, tmp_path):
    script = tmp_path / "lossy_reader.py"
    script.write_text(LOSSY_READER)
    note = tmp_path / "note.json"
    command = f"{sys.executable} {script} {exporting_ocs['records']} {tmp_path / 'copy'} {note}"
    done, report = loadtest(exporting_ocs, tmp_path, "--segments-command", command)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "verdict: FAIL" in done.stdout and "segments check: FAILED" in done.stdout
    assert report["money_check"]["ok"]  # the balances themselves are fine
    problems = report["segments_check"]["problems"]
    damage = json.loads(note.read_text())
    assert damage["lost"]
    assert any(f"record {damage['twice']} appears 2 times" in p for p in problems), problems
    # the lost records' money is missing from their account's sum, and the API (which
    # reads the real directory) lists each of them
    for account in damage["lost_accounts"]:
        assert any(p.startswith(f"{account}: bucket main moved by") for p in problems), problems
    for record_id in damage["lost"]:
        assert any(f"record {record_id} of the run is listed by the API" in p for p in problems)
