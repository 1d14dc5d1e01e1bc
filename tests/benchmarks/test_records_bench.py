"""Record export benchmark: how many rated records per second one process writes to
segment files (``SegmentWriter``: frame, CRC-32, chunked write, fsync'd seal), and reads
back (``iter_records``: CRC check, decode, duplicates dropped).

The records are the size the scripts write (a data record with its tariff, about 640
bytes of msgpack); the stream ids and record ids are distinct. One round writes
``RECORDS`` records to a fresh directory and closes the writer (one segment sealed:
fsync of the file, the directory and the checkpoint, so the fsyncs are in the figure).
Target (issue 10): at least 50,000 records/s for one exporter process.

Run with ``pytest tests/benchmarks/test_records_bench.py --benchmark-only``.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from ocs.records import SegmentSettings, SegmentWriter, iter_records
from tests.benchmarks.sample_records import sample_record

RECORDS = 20_000


ENTRIES = [(f"{1_764_547_200_000 + i}-0", sample_record(i)) for i in range(RECORDS)]


def _write(directory: Path) -> None:
    with SegmentWriter(directory, 42, SegmentSettings()) as writer:
        for entry_id, data in ENTRIES:
            writer.append(entry_id, data)


@pytest.mark.benchmark(group="records")
def test_write_throughput(benchmark, tmp_path):
    rounds = itertools.count()

    def setup():
        directory = tmp_path / f"round-{next(rounds)}"
        return (directory,), {}

    def write_round(directory: Path) -> None:
        _write(directory)

    benchmark.pedantic(write_round, setup=setup, rounds=15, warmup_rounds=1)
    benchmark.extra_info["records_per_round"] = RECORDS
    benchmark.extra_info["bytes_per_record"] = sum(len(d) for _, d in ENTRIES) // RECORDS
    benchmark.extra_info["records_per_second"] = round(RECORDS / benchmark.stats["median"])
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.benchmark(group="records")
def test_read_throughput(benchmark, tmp_path):
    _write(tmp_path)
    count = benchmark(lambda: sum(1 for _ in iter_records(tmp_path)))
    assert count == RECORDS
    benchmark.extra_info["records_per_second"] = round(RECORDS / benchmark.stats["median"])
