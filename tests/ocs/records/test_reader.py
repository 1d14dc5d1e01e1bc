"""iter_records / RecordReader: order, filters, duplicates dropped, damage skipped with a warning."""

from __future__ import annotations

import warnings

import pytest

from ocs.records import RecordReader, SegmentSettings, SegmentWarning, SegmentWriter, iter_records
from ocs.records.segment_format import read_segment, segment_name
from tests.ocs.records.record_factory import entry_id, record_bytes, record_id

BIG = SegmentSettings(max_bytes=1 << 30, max_age=3600)


def _write(directory, partition, numbers, *, settings=BIG, **fields):
    with SegmentWriter(directory, partition, settings) as writer:
        for i in numbers:
            writer.append(entry_id(i), record_bytes(i, **fields))
            if i % 10 == 9:
                writer.flush(force=True)


def test_records_come_decoded_in_partition_then_sequence_order(tmp_path):
    _write(tmp_path, 2, range(20, 35))
    _write(tmp_path, 1, range(0, 15))
    records = list(iter_records(tmp_path))
    assert [r["id"] for r in records] == [record_id(i) for i in [*range(15), *range(20, 35)]]
    first = records[0]
    assert first["stream_id"] == entry_id(0)
    assert first["charged"] == 1_250_000 and first["money"] == {"main": 1_250_000}
    assert first["capped_from"] is None and first["service_identifier"] is None  # decode_record
    one = tmp_path / segment_name(2, 1)
    assert [r["id"] for r in iter_records(one)] == [record_id(i) for i in range(20, 30)]


def test_records_exported_twice_across_segments_are_read_once(tmp_path):
    # the exporter crashed between fsync and XACK: the entries came again, into later
    # segments (and, after a restart, into a new writer's segments)
    _write(tmp_path, 3, range(0, 25))
    _write(tmp_path, 3, range(15, 40))
    _write(tmp_path, 3, range(0, 40))
    reader = RecordReader(tmp_path)
    ids = [r["id"] for r in reader]
    assert ids == [record_id(i) for i in range(40)]
    assert reader.duplicates == 10 + 40
    assert reader.records == 40 and reader.warnings == []


def test_filters_by_end_time_and_account(tmp_path):
    _write(tmp_path, 0, range(30))
    base = 1_764_547_200
    ids = [r["id"] for r in iter_records(tmp_path, start=base + 10, end=base + 20)]
    assert ids == [record_id(i) for i in range(10, 20)]  # [start, end) by the record's end
    ids = [r["id"] for r in iter_records(tmp_path, account="acct-3")]
    assert ids == [record_id(i) for i in range(30) if i % 7 == 3]
    ids = [r["id"] for r in iter_records(tmp_path, start=base + 25, account="acct-4")]
    assert ids == [record_id(25)]


def test_a_torn_sealed_segment_gives_its_whole_entries_and_a_warning(tmp_path):
    _write(tmp_path, 0, range(30))
    damaged = tmp_path / segment_name(0, 2)
    scan = read_segment(damaged)
    cut = scan.entries[4].offset + 7
    damaged.write_bytes(damaged.read_bytes()[:cut])
    reader = RecordReader(tmp_path)
    with pytest.warns(SegmentWarning, match=f"torn tail at offset {scan.entries[4].offset}"):
        ids = [r["id"] for r in reader]
    assert ids == [record_id(i) for i in [*range(14), *range(20, 30)]]
    assert len(reader.warnings) == 1


def test_an_unsealed_segment_of_a_stopped_writer_is_skipped_with_a_warning(tmp_path):
    _write(tmp_path, 0, range(10))
    writer = SegmentWriter(tmp_path, 0, SegmentSettings(max_bytes=4096, max_age=3600))
    for i in range(10, 40):
        writer.append(entry_id(i), record_bytes(i))
    extra = 40
    while writer.pending == 0:  # one more: a segment is open
        writer.append(entry_id(extra), record_bytes(extra))
        extra += 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a running writer's open segment: no warning
        assert len(list(iter_records(tmp_path))) >= 10
    sealed_ids = [
        e.entry_id for p in sorted(tmp_path.glob("*.seg")) for e in read_segment(p).entries
    ]
    assert (tmp_path / segment_name(0, writer.next_sequence, sealed=False)).exists()
    writer._file.close()  # noqa: SLF001 (as a kill would leave it)
    writer._unlock()  # noqa: SLF001
    reader = RecordReader(tmp_path)
    with pytest.warns(SegmentWarning, match="unsealed segment of a stopped writer"):
        ids = [r["stream_id"] for r in reader]
    assert ids == sealed_ids  # its entries were never durable: not read


def test_an_unreadable_record_is_skipped_with_a_warning(tmp_path):
    with SegmentWriter(tmp_path, 0, BIG) as writer:
        writer.append(entry_id(0), record_bytes(0))
        writer.append(entry_id(1), b"\x93\x01\x02\x03")  # a msgpack array, not a map
        writer.append(entry_id(2), record_bytes(2))
    reader = RecordReader(tmp_path)
    with pytest.warns(SegmentWarning, match="unreadable"):
        assert [r["id"] for r in reader] == [record_id(0), record_id(2)]


def test_a_missing_directory_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(iter_records(tmp_path / "nope"))


def test_a_partition_filter_reads_only_that_partitions_files(tmp_path):
    _write(tmp_path, 1, range(0, 12))
    _write(tmp_path, 2, range(20, 32))
    (tmp_path / segment_name(3, 1)).write_bytes(b"damage in a partition not asked for")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # partition 3's damage is never read
        ids = [r["id"] for r in iter_records(tmp_path, partition=2)]
        assert ids == [record_id(i) for i in range(20, 32)]
        reader = RecordReader(tmp_path, partition=1, account="acct-3")
        assert [r["id"] for r in reader] == [record_id(3), record_id(10)]
    assert [r["id"] for r in iter_records(tmp_path / segment_name(2, 1), partition=2)] == [
        record_id(i) for i in range(20, 30)
    ]
    assert list(iter_records(tmp_path / segment_name(2, 1), partition=1)) == []


def test_warn_false_keeps_the_warnings_without_sending_them(tmp_path):
    (tmp_path / segment_name(0, 1)).write_bytes(b"not a segment")
    reader = RecordReader(tmp_path, warn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(reader) == []
    assert len(reader.warnings) == 1 and "bad magic" in reader.warnings[0]
