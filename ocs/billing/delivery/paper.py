"""Print batches for the print house: one directory per run of the delivery step,
``<print directory>/<batch>/``, holding each invoice's PDF (``<number>.pdf``) and
``manifest.json``:

.. code-block:: json

    {"batch": "print-20261210T020000Z-3fa2c1", "created": "2026-12-10T02:00:00Z",
     "count": 2, "pages": 5,
     "documents": [{"file": "INV-000042.pdf", "invoice": "INV-000042",
                    "invoice_id": "in_...", "account": "erika", "name": "Erika Mustermann",
                    "address": ["Musterstraße 12", "10115 Berlin"], "pages": 3}, ...]}

A batch is written under a hidden temporary name (``.<batch>.tmp``), every file
fsync'd, then renamed to its name in one step: a batch directory that exists is
complete (its manifest is the last file written), and the print house may take every
directory whose name does not start with a dot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MANIFEST", "BatchWriter", "PrintedDocument", "batch_invoices", "page_count"]

MANIFEST = "manifest.json"
_PAGES = re.compile(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class PrintedDocument:
    invoice_id: str
    number: str
    account: str
    name: str
    address: tuple[str, ...]
    pdf: bytes

    @property
    def file(self) -> str:
        return _SAFE.sub("_", self.number) + ".pdf"


def page_count(pdf: bytes) -> int:
    """Pages of a PDF: the ``/Count`` of its root page tree (the largest one), which
    Typst writes uncompressed. ValueError when there is none."""
    counts = [int(count) for count in _PAGES.findall(pdf)]
    if not counts:
        raise ValueError("no page tree found in the PDF")
    return max(counts)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class BatchWriter:
    """One print batch being written (module doc): :meth:`add` each document as it is
    made (none is kept in memory), then :meth:`complete`; :meth:`abandon` removes what
    was written. OSError when the directory cannot be written."""

    def __init__(self, directory: Path, batch: str) -> None:
        self.directory = directory
        self.batch = batch
        self.path = directory / batch
        self._temporary = directory / f".{batch}.tmp"
        self._entries: list[dict[str, object]] = []
        self._pages = 0
        directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self._temporary, ignore_errors=True)
        self._temporary.mkdir()

    def add(self, document: PrintedDocument) -> None:
        pages = page_count(document.pdf)
        _write(self._temporary / document.file, document.pdf)
        self._pages += pages
        self._entries.append(
            {
                "file": document.file,
                "invoice": document.number,
                "invoice_id": document.invoice_id,
                "account": document.account,
                "name": document.name,
                "address": list(document.address),
                "pages": pages,
            }
        )

    def complete(self, created: str) -> Path:
        """The manifest written last, then the directory renamed to the batch's name."""
        manifest = {
            "batch": self.batch,
            "created": created,
            "count": len(self._entries),
            "pages": self._pages,
            "documents": self._entries,
        }
        text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
        _write(self._temporary / MANIFEST, text.encode("utf-8"))
        _fsync_directory(self._temporary)
        os.rename(self._temporary, self.path)
        _fsync_directory(self.directory)
        return self.path

    def abandon(self) -> None:
        shutil.rmtree(self._temporary, ignore_errors=True)


def batch_invoices(directory: Path, batch: str) -> set[str] | None:
    """The invoice ids in a completed batch's manifest; None when the batch was never
    completed (no such directory, or no readable manifest)."""
    try:
        manifest = json.loads((directory / batch / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {str(entry["invoice_id"]) for entry in manifest.get("documents", [])}
