"""verify_directory: sound, damaged (torn, corrupt, missing), unsealed leftovers."""

from __future__ import annotations

import os

from ocs.records import SegmentSettings, SegmentWriter, verify_directory
from ocs.records.segment_format import read_segment, segment_name
from tests.ocs.records.record_factory import entry_id, record_bytes

SMALL = SegmentSettings(max_bytes=4096, max_age=3600)


def _write(directory, numbers, partition=0):
    with SegmentWriter(directory, partition, SMALL) as writer:
        for i in numbers:
            writer.append(entry_id(i), record_bytes(i))


def test_sound_segments_verify_ok(tmp_path):
    _write(tmp_path, range(100))
    _write(tmp_path, range(10), partition=1)
    report = verify_directory(tmp_path)
    assert report.status == 0, report.lines()
    assert report.entries == 110
    assert all(line.endswith(": ok") for line in report.lines())


def test_a_torn_sealed_segment_is_damage_reported_with_its_offset(tmp_path):
    _write(tmp_path, range(100))
    path = tmp_path / segment_name(0, 3)
    offset = read_segment(path).entries[5].offset
    os.truncate(path, offset + 3)
    report = verify_directory(tmp_path)
    assert report.status == 1
    (line,) = [line for line in report.lines() if line.startswith(path.name)]
    assert f"torn tail at offset {offset}: 3 bytes of an incomplete frame" in line
    assert "5 entries" in line


def test_a_corrupt_byte_a_missing_segment_and_a_cut_at_a_frame_boundary_are_damage(tmp_path):
    _write(tmp_path, range(100))
    path = tmp_path / segment_name(0, 2)
    data = bytearray(path.read_bytes())
    data[-30] ^= 1
    path.write_bytes(bytes(data))
    assert verify_directory(tmp_path).status == 1
    path.unlink()
    report = verify_directory(tmp_path)
    assert report.status == 1
    assert report.problems == ["partition 0: missing segment sequence 2"]
    path = tmp_path / segment_name(0, 3)
    os.truncate(path, read_segment(path).entries[2].offset)
    lines = verify_directory(tmp_path).lines()
    assert any("no trailer: the segment ends at offset" in line for line in lines)


def test_an_unsealed_segment_of_a_stopped_writer_is_reported_with_status_3(tmp_path):
    _write(tmp_path, range(20))
    writer = SegmentWriter(tmp_path, 0, SMALL)
    for i in range(20, 30):
        writer.append(entry_id(i), record_bytes(i))
    extra = 30
    while writer.pending == 0:  # one more: a segment is open
        writer.append(entry_id(extra), record_bytes(extra))
        extra += 1
    assert verify_directory(tmp_path).status == 0  # being written: fine
    assert any("being written" in line for line in verify_directory(tmp_path).lines())
    writer._file.flush()  # noqa: SLF001
    path = writer._temporary  # noqa: SLF001
    size = path.stat().st_size
    writer._file.close()  # noqa: SLF001
    writer._unlock()  # noqa: SLF001 (as a kill -9 leaves it)
    os.truncate(path, size - 11)
    report = verify_directory(tmp_path)
    assert report.status == 3
    (line,) = [line for line in report.lines() if ".tmp" in line]
    offset = read_segment(path).torn_at
    assert offset is not None and f"torn tail at offset {offset}" in line
    assert "unsealed, writer stopped" in line
