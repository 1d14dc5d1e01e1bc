"""`ocs records read` and `ocs records verify`, through ocs.cli.main and as a process."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import msgpack
import pytest

from ocs.cli import main
from ocs.records import SegmentSettings, SegmentWriter
from ocs.records.commands import parse_time
from ocs.records.output import CSV_COLUMNS, csv_row, micro_decimal
from ocs.records.segment_format import read_segment, segment_name
from tests.helpers import ROOT
from tests.ocs.records.record_factory import entry_id, record_bytes, record_id, record_map

BIG = SegmentSettings(max_bytes=1 << 30, max_age=3600)


def _write(directory, numbers, partition=0):
    with SegmentWriter(directory, partition, BIG) as writer:
        for i in numbers:
            writer.append(entry_id(i), record_bytes(i))
            if i % 5 == 4:
                writer.flush(force=True)


def test_read_json_lines_each_record_once(tmp_path, capsys):
    _write(tmp_path, range(12))
    _write(tmp_path, range(8, 12))  # exported twice
    assert main(["records", "read", str(tmp_path)], env={}) == 0
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in records] == [record_id(i) for i in range(12)]
    assert records[3]["charged"] == 1_250_003 and isinstance(records[3]["charged"], int)
    assert "4 duplicates dropped" in err


def test_read_filters(tmp_path, capsys):
    _write(tmp_path, range(20))
    argv = ["records", "read", str(tmp_path), "--from", str(1_764_547_205), "--to",
            "2025-12-01T00:00:10Z", "--account", "acct-1"]  # fmt: skip
    assert main(argv, env={}) == 0
    ids = [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert ids == [record_id(8)]


def test_read_csv_has_the_documented_columns_and_exact_money(tmp_path, capsys):
    _write(tmp_path, range(3))
    assert main(["records", "read", str(tmp_path), "--format", "csv"], env={}) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 3
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[2]["charged"] == "1250002" and rows[2]["charged_decimal"] == "1.250002"
    assert rows[2]["used"] == "1002" and rows[2]["unit"] == "octets"
    assert rows[2]["money"] == '{"main":1250002}' and rows[2]["allowances"] == "{}"
    assert rows[0]["end_utc"] == "2025-12-01T00:00:00Z" and rows[0]["zero_rated"] == "false"
    assert rows[0]["identities"] == "msisdn:491700000000" and rows[0]["capped_from"] == ""


def test_every_csv_column_is_documented():
    doc = (ROOT / "docs" / "records.md").read_text()
    section = doc.split("### CSV columns", 1)[1].split("\n## ", 1)[0]
    for number, column in enumerate(CSV_COLUMNS, 1):
        assert f"\n| {number} | `{column}` |" in section, column


def test_money_as_decimal_strings_is_exact():
    assert micro_decimal(6_000_000) == "6.000000"
    assert micro_decimal(-1_250_000) == "-1.250000"
    assert micro_decimal(1) == "0.000001"
    assert micro_decimal(2**53 + 1) == "9007199254.740993"
    refund = record_map(0) | {"charged": -500, "unit": None, "used": {}}
    row = dict(zip(CSV_COLUMNS, csv_row(refund), strict=True))
    assert (row["charged"], row["charged_decimal"], row["used"]) == ("-500", "-0.000500", "")


def test_read_msgpack_gives_the_records_as_maps(tmp_path, capfdbinary):
    _write(tmp_path, range(4))
    assert main(["records", "read", str(tmp_path), "--format", "msgpack"], env={}) == 0
    maps = list(msgpack.Unpacker(io.BytesIO(capfdbinary.readouterr().out), raw=False))
    assert [m["id"] for m in maps] == [record_id(i) for i in range(4)]


def test_times_are_unix_seconds_or_iso_8601():
    assert parse_time("1764547200") == 1_764_547_200
    assert parse_time("2025-12-01") == 1_764_547_200
    assert parse_time("2025-12-01T01:00:00+01:00") == 1_764_547_200
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_read_reports_bad_input_with_exit_2(tmp_path, capsys):
    assert main(["records", "read", str(tmp_path / "none")], env={}) == 2
    assert main(["records", "read", str(tmp_path), "--from", "soon"], env={}) == 2
    assert "not a time" in capsys.readouterr().err
    assert main(["records"], env={}) == 2


def test_read_skips_a_torn_tail_with_a_warning_on_stderr(tmp_path, capsys):
    _write(tmp_path, range(10))
    path = tmp_path / segment_name(0, 1)
    os.truncate(path, read_segment(path).entries[3].offset + 2)
    assert main(["records", "read", str(tmp_path)], env={}) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 3 + 5
    assert "warning" in err and "torn tail at offset" in err


def test_verify_exit_status(tmp_path, capsys):
    _write(tmp_path, range(10))
    assert main(["records", "verify", str(tmp_path)], env={}) == 0
    assert (
        capsys.readouterr().out.splitlines()[-1] == "OK: 2 segments, 10 entries in sealed segments"
    )
    path = tmp_path / segment_name(0, 2)
    offset = read_segment(path).entries[1].offset
    os.truncate(path, offset + 5)
    assert main(["records", "verify", str(tmp_path)], env={}) == 1
    out = capsys.readouterr().out
    assert f"torn tail at offset {offset}" in out and out.splitlines()[-1].startswith("DAMAGED")
    assert main(["records", "verify", str(tmp_path / "none")], env={}) == 2


def test_the_default_directory_is_records_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "data" / "records", range(2))  # ./data/records: the default
    assert main(["records", "read"], env={}) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    _write(tmp_path / "elsewhere", range(3))
    assert main(["records", "read"], env={"OCS_RECORDS_DIRECTORY": "elsewhere"}) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    config = tmp_path / "ocs.toml"
    config.write_text('[records]\ndirectory = "elsewhere"\n')
    assert main(["records", "verify", "--config", str(config)], env={}) == 0


def test_as_a_process_with_a_closed_pipe(tmp_path):
    _write(tmp_path, range(50))
    command = [sys.executable, "-m", "ocs", "records", "read", str(tmp_path), "--format", "csv"]
    reading = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert reading.stdout is not None
    header = reading.stdout.readline()
    reading.stdout.close()  # as `| head -1` does
    assert reading.wait(30) == 0, reading.stderr.read() if reading.stderr else b""
    assert header.decode().rstrip().split(",") == list(CSV_COLUMNS)
