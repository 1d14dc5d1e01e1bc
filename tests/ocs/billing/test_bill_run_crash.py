"""Crash test of the bill run: a real process killed with SIGKILL halfway through a
run, then run again. The invoices must be those of a run that never crashed (in a
clean database of its own): one per account, the same lines and totals, and the
numbers INV-000001..INV-0000NN with no gap and no duplicate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from ocs.billing.bill_run import run_bill_run
from ocs.billing.database import migrate, open_database, reading
from ocs.billing.schema import bill_runs, invoice_item_records, invoice_items, invoices
from tests.ocs.billing import bill_run_crash_script as script
from tests.ocs.billing.factory import write_records

ACCOUNTS = 60
ROOT = Path(__file__).resolve().parents[3]


def start(url: str, records_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.ocs.billing.bill_run_crash_script", url, str(records_dir),
         str(ACCOUNTS)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def progress(engine: Engine) -> tuple[int, int] | None:
    """(accounts done, accounts in all) of the one bill run, once it has started."""
    with reading(engine).connect() as connection:  # not the write lock the run needs
        row = connection.execute(
            select(bill_runs.c.accounts_done, bill_runs.c.accounts_total)
        ).first()
    return None if row is None else (row.accounts_done, row.accounts_total)


def kill_halfway(process: subprocess.Popen[str], engine: Engine) -> int:
    """SIGKILL ``process`` once its run has done half its accounts (and not all); the
    accounts done by then."""
    while True:
        seen = progress(engine)
        if seen is not None and seen[1] // 2 <= seen[0] < seen[1]:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            return seen[0]
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(
                f"the bill run ended before it could be killed halfway: {seen}\n{out}\n{err}"
            )
        time.sleep(0.001)


def invoices_by_account(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(select(invoices)).all()
        items = connection.execute(select(invoice_items).order_by(invoice_items.c.position)).all()
        links = connection.execute(select(invoice_item_records)).all()
    records: dict[int, list[str]] = {}
    for link in links:
        assert not link.released
        records.setdefault(link.item_id, []).append(link.record_id)
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        assert row.account not in found, f"two invoices for {row.account}"
        lines = []
        for item in items:
            if item.invoice_id == row.id:
                line = item._asdict()
                line["records"] = sorted(records.get(line.pop("id"), []))
                line.pop("parent_item_id")
                lines.append(line)
        found[row.account] = {
            "id": row.id,
            "state": row.state,
            "number": row.number,
            "period": (row.period_start, row.period_end),
            "totals": (row.subtotal_micro, row.tax_micro, row.total_micro,
                       row.subtotal_minor, row.tax_minor, row.total_minor),
            "lines": lines,
        }  # fmt: skip
    return found


def test_bill_run_killed_halfway_then_run_again(database_url: str, tmp_path: Path) -> None:
    records_dir = tmp_path / "records"
    people = script.accounts(ACCOUNTS)
    write_records(records_dir, script.records(ACCOUNTS), people)

    # the reference: the same run in a clean database, never interrupted
    reference_url = f"sqlite:///{tmp_path / 'reference.db'}"
    migrate(reference_url)
    reference_engine = open_database(reference_url)
    summary = run_bill_run(
        reference_engine,
        script.bill_catalog(),
        people,
        records_dir,
        period="2026-11",
        now=script.NOW,
        options=script.OPTIONS,
    )
    assert summary.errors == [] and summary.finalized == ACCOUNTS
    reference = invoices_by_account(reference_engine)
    reference_engine.dispose()

    migrate(database_url)
    engine = open_database(database_url)
    try:
        done = kill_halfway(start(database_url, records_dir), engine)
        assert ACCOUNTS // 2 <= done < ACCOUNTS
        with engine.connect() as connection:
            (killed,) = connection.execute(select(bill_runs)).all()
            # what the killed run left: whole invoices, final and numbered, and no more
            left = connection.execute(
                select(func.count(), func.max(invoices.c.number)).select_from(invoices)
            ).one()
        assert killed.state == "running"  # it never got to say it was done
        assert done <= left[0] <= ACCOUNTS
        assert left[1] == f"INV-{left[0]:06d}"

        again = start(database_url, records_dir)
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, err
        second = json.loads(out)
        assert (second["already_final"], second["invoices_created"]) == (
            left[0],
            ACCOUNTS - left[0],
        )
        assert second["finalized"] == ACCOUNTS - left[0]

        after = invoices_by_account(engine)
    finally:
        engine.dispose()
    assert sorted(after) == [a.id for a in people]  # one invoice per account, no more
    assert {i["state"] for i in after.values()} == {"final"}
    assert sorted(i["number"] for i in after.values()) == [
        f"INV-{n:06d}" for n in range(1, ACCOUNTS + 1)
    ]
    assert after == reference  # lines, record links, totals, ids and numbers
