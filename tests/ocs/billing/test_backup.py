"""The backup and restore procedures of docs/invoicing.md, run as written: SQLite's
online backup (VACUUM INTO, the backup API behind sqlite3's .backup) of a live database
whose last transactions are still in the WAL, and pg_dump / pg_restore."""

from __future__ import annotations

import sqlite3
import subprocess

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ocs.billing.database import migrate, open_database
from ocs.billing.numbering import ensure_sequence, finalize_invoice
from ocs.billing.schema import invoices

START = 1_793_491_200


def fill(engine, count=3):
    with engine.begin() as connection:
        ensure_sequence(connection, "ocs-de", "invoice", "INV-{seq:06d}")
        for n in range(count):
            connection.execute(
                invoices.insert().values(
                    id=f"inv-{n}", account=f"acct-{n}", entity="ocs-de", period_start=START,
                    period_end=START + 86400, currency="EUR", minor_digits=2, created_at=START,
                )
            )  # fmt: skip
            finalize_invoice(connection, f"inv-{n}", START + n)


def content(url):
    engine = open_database(url)  # at the head revision, or it raises
    try:
        with engine.connect() as connection:
            return connection.execute(
                sa.select(invoices.c.id, invoices.c.number).order_by(invoices.c.id)
            ).all()
    finally:
        engine.dispose()


def test_sqlite_online_backups_hold_what_the_wal_holds(tmp_path):
    url = f"sqlite:///{tmp_path}/billing.db"
    migrate(url)
    engine = open_database(url)
    fill(engine)
    # the engine's pooled connection keeps the WAL from being checkpointed into the file
    assert (tmp_path / "billing.db-wal").stat().st_size > 0
    # what `sqlite3 data/billing.db "VACUUM INTO 'backup.db'"` does
    source = sqlite3.connect(tmp_path / "billing.db")
    source.execute(f"VACUUM INTO '{tmp_path}/vacuumed.db'")
    # what `sqlite3 data/billing.db ".backup backup.db"` does: the online backup API
    target = sqlite3.connect(tmp_path / "backup.db")
    source.backup(target)
    source.close()
    target.close()
    expected = content(url)
    engine.dispose()
    assert [number for _id, number in expected] == ["INV-000001", "INV-000002", "INV-000003"]
    for name in ("vacuumed.db", "backup.db"):
        assert content(f"sqlite:///{tmp_path}/{name}") == expected
        check = sqlite3.connect(tmp_path / name)
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        check.close()


def test_pg_dump_and_pg_restore_give_the_same_database(postgres_server):
    url = postgres_server.create_database()
    migrate(url)
    engine = open_database(url)
    fill(engine)
    engine.dispose()
    dump = postgres_server.base / "billing.dump"
    bindir = postgres_server.bindir
    subprocess.run(
        [bindir / "pg_dump", "--format=custom", f"--file={dump}", url], check=True, timeout=60
    )
    restored = postgres_server.create_database()
    subprocess.run(
        [bindir / "pg_restore", "--no-owner", "--exit-on-error", f"--dbname={restored}", dump],
        check=True,
        timeout=60,
    )
    assert content(restored) == content(url)
    # the restored triggers still keep final invoices final
    engine = open_database(restored)
    try:
        with pytest.raises(IntegrityError, match="ocs_billing_immutable"), engine.begin() as c:
            c.execute(invoices.update().values(subtotal_micro=1, total_micro=1))
    finally:
        engine.dispose()
