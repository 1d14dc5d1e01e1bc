"""A writer process for the crash test: ``python crash_writer.py DIR START [COUNT]``.

Appends records START, START + 1, ... of ``record_factory`` to partition 7 of DIR, calls
``flush()`` after every few, and appends each flush's durable ids as one line to
``DIR/../durable.log`` (a plain write: it survives a kill of this process); touches
``DIR/../ready`` once its writer is open. Without
COUNT it runs until killed; with COUNT it appends that many and closes the writer.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from ocs.records import SegmentSettings, SegmentWriter  # noqa: E402
from tests.ocs.records.record_factory import entry_id, record_bytes  # noqa: E402

PARTITION = 7
SETTINGS = SegmentSettings(max_bytes=256 * 1024, max_age=0.05)


def main() -> None:
    directory = Path(sys.argv[1])
    start = int(sys.argv[2])
    count = int(sys.argv[3]) if len(sys.argv) > 3 else None
    log = os.open(directory.parent / "durable.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    writer = SegmentWriter(directory, PARTITION, SETTINGS)
    (directory.parent / "ready").touch()
    i = start
    end = None if count is None else start + count
    while end is None or i < end:
        for _ in range(17 if end is None else min(17, end - i)):
            writer.append(entry_id(i), record_bytes(i))
            i += 1
        durable = writer.flush()
        if durable:
            os.write(log, (" ".join(durable) + "\n").encode())
    durable = writer.close()
    if durable:
        os.write(log, (" ".join(durable) + "\n").encode())


if __name__ == "__main__":
    main()
