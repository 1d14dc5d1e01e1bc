"""SegmentWriter on real files: rotation, durability as flush() reports it, recovery."""

from __future__ import annotations

import json
import os
import time

import pytest

from ocs.records import SegmentSettings, SegmentWriter, WriterBusy, read_checkpoint
from ocs.records.segment_format import read_segment, segment_name
from tests.ocs.records.record_factory import entry_id, record_bytes

BIG = SegmentSettings(max_bytes=1 << 30, max_age=3600)


def _names(directory):
    return sorted(p.name for p in directory.iterdir() if ".seg" in p.name)


def _fill(writer, numbers):
    for i in numbers:
        writer.append(entry_id(i), record_bytes(i))


def test_nothing_is_durable_before_its_segment_is_sealed(tmp_path):
    writer = SegmentWriter(tmp_path, 42, BIG)
    _fill(writer, range(10))
    assert writer.flush() == []  # neither full nor old
    assert writer.pending == 10
    assert _names(tmp_path) == [segment_name(42, 1, sealed=False)]
    assert writer.flush(force=True) == [entry_id(i) for i in range(10)]
    assert _names(tmp_path) == [segment_name(42, 1)]
    assert writer.flush() == []  # each id is returned once
    assert writer.close() == []
    assert _names(tmp_path) == [segment_name(42, 1)]  # nothing open: no empty segment


def test_segments_rotate_by_size(tmp_path):
    writer = SegmentWriter(tmp_path, 3, SegmentSettings(max_bytes=4096, max_age=3600))
    _fill(writer, range(100))
    durable = writer.flush()
    sealed = [n for n in _names(tmp_path) if n.endswith(".seg")]
    assert len(sealed) >= 5
    for name in sealed:
        scan = read_segment(tmp_path / name)
        assert scan.sealed and 4096 <= scan.size < 4096 + 400  # over by at most one record
    assert durable == [entry_id(i) for i in range(len(durable))]
    assert writer.close() == [entry_id(i) for i in range(len(durable), 100)]
    checkpoint = read_checkpoint(tmp_path, 3)
    assert checkpoint is not None
    assert (checkpoint.sequence, checkpoint.last_entry_id) == (len(_names(tmp_path)), entry_id(99))


def test_segments_rotate_by_age_at_append_and_at_flush(tmp_path):
    writer = SegmentWriter(tmp_path, 1, SegmentSettings(max_bytes=1 << 30, max_age=0.2))
    _fill(writer, range(3))
    assert writer.flush() == []
    time.sleep(0.25)
    assert writer.flush() == [entry_id(i) for i in range(3)]  # old enough: sealed at flush
    _fill(writer, range(3, 5))
    time.sleep(0.25)
    _fill(writer, [5])  # sealed at the append that finds it old
    assert writer.pending == 0
    assert writer.flush() == [entry_id(i) for i in range(3, 6)]
    writer.close()


def test_a_segment_is_written_under_a_temporary_name_then_renamed(tmp_path):
    writer = SegmentWriter(tmp_path, 0, BIG)
    _fill(writer, range(2))
    temporary = tmp_path / segment_name(0, 1, sealed=False)
    assert temporary.exists() and not (tmp_path / segment_name(0, 1)).exists()
    writer.close()
    assert not temporary.exists()
    assert read_segment(tmp_path / segment_name(0, 1)).sealed


def test_one_writer_per_partition_and_directory(tmp_path):
    writer = SegmentWriter(tmp_path, 5, BIG)
    with pytest.raises(WriterBusy):
        SegmentWriter(tmp_path, 5, BIG)
    other = SegmentWriter(tmp_path, 6, BIG)  # another partition is free
    other.close()
    writer.close()
    SegmentWriter(tmp_path, 5, BIG).close()  # released by close


def test_a_restarted_writer_continues_the_sequence_and_never_rewrites(tmp_path):
    writer = SegmentWriter(tmp_path, 9, BIG)
    _fill(writer, range(4))
    writer.flush(force=True)
    _fill(writer, range(4, 6))
    writer.close()
    first = {n: (tmp_path / n).read_bytes() for n in _names(tmp_path)}
    assert list(first) == [segment_name(9, 1), segment_name(9, 2)]
    again = SegmentWriter(tmp_path, 9, BIG)
    assert again.next_sequence == 3
    assert again.checkpoint.last_entry_id == entry_id(5)
    _fill(again, range(6, 8))
    assert again.close() == [entry_id(6), entry_id(7)]
    assert {n: (tmp_path / n).read_bytes() for n in first} == first
    assert _names(tmp_path)[-1] == segment_name(9, 3)


def test_a_crashed_writers_temporary_segment_is_removed_and_its_sequence_reused(tmp_path):
    writer = SegmentWriter(tmp_path, 2, SegmentSettings(max_bytes=4096, max_age=3600))
    _fill(writer, range(60))
    durable = writer.flush()
    _fill(writer, [60])  # one record opens a segment and does not fill it
    assert writer.pending >= 1
    sequence = writer.next_sequence
    # an exception leaves the open segment as a crash would
    with pytest.raises(RuntimeError), writer:
        raise RuntimeError
    leftover = tmp_path / segment_name(2, sequence, sealed=False)
    assert leftover.exists()
    again = SegmentWriter(tmp_path, 2, BIG)
    assert again.discarded == [leftover] and not leftover.exists()
    assert again.next_sequence == sequence
    assert again.checkpoint.last_entry_id == durable[-1]
    again.close()


def test_a_checkpoint_one_segment_behind_is_repaired_from_the_segment(tmp_path):
    writer = SegmentWriter(tmp_path, 4, BIG)
    _fill(writer, range(3))
    writer.flush(force=True)
    stale = (tmp_path / "p0004.checkpoint.json").read_text()
    _fill(writer, range(3, 5))
    writer.close()
    # as if the process died between the second segment's rename and its checkpoint
    (tmp_path / "p0004.checkpoint.json").write_text(stale)
    assert json.loads(stale)["sequence"] == 1
    again = SegmentWriter(tmp_path, 4, BIG)
    assert (again.checkpoint.sequence, again.checkpoint.last_entry_id) == (2, entry_id(4))
    assert again.next_sequence == 3
    again.close()
    checkpoint = read_checkpoint(tmp_path, 4)
    assert checkpoint is not None and checkpoint.sequence == 2


def test_no_checkpoint_at_all_is_rebuilt_from_the_segments(tmp_path):
    writer = SegmentWriter(tmp_path, 8, BIG)
    _fill(writer, range(2))
    writer.close()
    os.unlink(tmp_path / "p0008.checkpoint.json")
    again = SegmentWriter(tmp_path, 8, BIG)
    assert again.next_sequence == 2 and again.checkpoint.last_entry_id == entry_id(1)
    again.close()


def test_settings_are_checked():
    with pytest.raises(ValueError):
        SegmentSettings(max_bytes=0)
    with pytest.raises(ValueError):
        SegmentSettings(max_age=0)


def test_open_many_recovers_each_partition_as_one_writer_would_and_reports_the_busy(tmp_path):
    """An exporter taking many partitions opens them together (one directory listing):
    each recovers as if opened alone, and a partition another writer holds is busy."""
    # partition 1: a crashed writer's temporary segment; 2: a checkpoint one behind;
    # 3: two sealed segments; 4: held by a running writer; 5: nothing yet
    crashed = SegmentWriter(tmp_path, 1, BIG)
    _fill(crashed, range(2))
    with pytest.raises(RuntimeError), crashed:
        raise RuntimeError
    behind = SegmentWriter(tmp_path, 2, BIG)
    _fill(behind, range(3))
    behind.flush(force=True)
    stale = (tmp_path / "p0002.checkpoint.json").read_text()
    _fill(behind, range(3, 5))
    behind.close()
    (tmp_path / "p0002.checkpoint.json").write_text(stale)
    sealed = SegmentWriter(tmp_path, 3, BIG)
    _fill(sealed, range(2))
    sealed.flush(force=True)
    _fill(sealed, range(2, 4))
    sealed.close()
    running = SegmentWriter(tmp_path, 4, BIG)

    writers, busy = SegmentWriter.open_many(tmp_path, [1, 2, 3, 4, 5], BIG)
    try:
        assert busy == [4] and sorted(writers) == [1, 2, 3, 5]
        assert [p.name for p in writers[1].discarded] == [segment_name(1, 1, sealed=False)]
        assert writers[1].next_sequence == 1
        assert (writers[2].checkpoint.sequence, writers[2].checkpoint.last_entry_id) == (
            2,
            entry_id(4),
        )
        assert [p.name for p in writers[3].sealed_at_open] == [
            segment_name(3, 2),
            segment_name(3, 1),
        ]
        assert writers[5].next_sequence == 1 and writers[5].sealed_at_open == ()
        with pytest.raises(WriterBusy):  # open_many holds the locks it took
            SegmentWriter(tmp_path, 5, BIG)
    finally:
        for writer in writers.values():
            writer.close()
        running.close()
    SegmentWriter(tmp_path, 5, BIG).close()  # released on close


def test_flush_together_seals_the_due_segments_of_many_writers_at_once(tmp_path):
    """The exporter's round: the writers whose segment is due are sealed together (one
    directory fsync for their renames, one for their checkpoints), the others kept."""
    from ocs.records.writer import flush_together, seal_together

    writers, _ = SegmentWriter.open_many(tmp_path, [1, 2, 3], BIG)
    _fill(writers[1], range(3))
    _fill(writers[2], range(3, 5))
    # 3 has nothing open: nothing to seal
    assert flush_together(list(writers.values())) == [[], [], []]  # none due yet
    assert flush_together(list(writers.values()), force=True) == [
        [entry_id(i) for i in range(3)],
        [entry_id(i) for i in range(3, 5)],
        [],
    ]
    assert _names(tmp_path) == [segment_name(1, 1), segment_name(2, 1)]
    for partition, last in ((1, 2), (2, 4)):
        checkpoint = read_checkpoint(tmp_path, partition)
        assert checkpoint is not None
        assert (checkpoint.sequence, checkpoint.last_entry_id) == (1, entry_id(last))
        assert [e.entry_id for e in read_segment(tmp_path / segment_name(partition, 1)).entries]
    assert writers[1].next_sequence == 2 and writers[3].next_sequence == 1
    other = SegmentWriter(tmp_path / "elsewhere", 1, BIG)
    _fill(other, [9])
    _fill(writers[2], [10])
    with pytest.raises(ValueError, match="one directory"):
        seal_together([writers[2], other])
    for writer in (*writers.values(), other):
        writer.close()
