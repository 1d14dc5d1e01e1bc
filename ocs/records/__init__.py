"""Rated records outside Redis: segment files, their writer, reader and checker.

The exporter (coming) reads each partition's record stream and hands the entries to a
:class:`SegmentWriter`; it acknowledges what :meth:`SegmentWriter.flush` returns. The
bill run and ``ocs records read`` read the segments with :func:`iter_records`, which
drops the duplicates a crash between a segment's fsync and the acknowledgement leaves.
``ocs records verify`` is :func:`verify_directory`. docs/records.md ("Export") holds
the file format and the guarantees.

This package never imports ``protocol``, ``cext`` or ``ocs.gy``: records are read
from files, not from the charging path.
"""

from ocs.records.checkpoint import Checkpoint, read_checkpoint
from ocs.records.reader import RecordReader, SegmentWarning, iter_records
from ocs.records.segment_format import parse_segment_name, segment_name
from ocs.records.verify import VerifyReport, verify_directory
from ocs.records.writer import SegmentSettings, SegmentWriter, WriterBusy

__all__ = [
    "Checkpoint",
    "RecordReader",
    "SegmentSettings",
    "SegmentWarning",
    "SegmentWriter",
    "VerifyReport",
    "WriterBusy",
    "iter_records",
    "parse_segment_name",
    "read_checkpoint",
    "segment_name",
    "verify_directory",
]
