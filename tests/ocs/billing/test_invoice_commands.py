"""`ocs invoice list|show|finalize|void|credit-note` on a real SQLite billing database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from ocs.billing.bill_run import BillRunOptions, run_bill_run
from ocs.billing.database import migrate, open_database
from ocs.billing.invoice_commands import parse_amount
from ocs.billing.schema import credit_notes, invoices
from ocs.cli import main
from tests.ocs.billing.factory import account, at, catalog, record, write_records


@pytest.fixture
def billed(tmp_path: Path):
    """A draft invoice of alice for 2026-11: 20.00 fee + 2.50 data, 19 % VAT."""
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    migrate(url)
    engine = open_database(url)
    alice = account("alice", created=at("2026-01-10 12:00"))
    write_records(
        tmp_path / "records",
        [record("s1;1;10", "alice", at("2026-11-02 10:00"), used=5 * 2**20, charged=2_500_000)],
        [alice],
    )
    run_bill_run(engine, catalog(), [alice], tmp_path / "records", period="2026-11",
                 now=at("2026-12-01 09:00"), options=BillRunOptions(finalize=False))  # fmt: skip
    with engine.connect() as connection:
        document = connection.execute(select(invoices.c.id)).scalar_one()
    yield url, engine, document
    engine.dispose()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), env={})
    out, err = capsys.readouterr()
    return code, out, err


def test_show_finalize_credit_note_and_void(billed, capsys) -> None:
    url, engine, document = billed
    db = ["--billing-database-url", url]
    code, out, err = run(capsys, "invoice", "show", document, *db, "--timezone", "Europe/Berlin")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"invoice (draft, no number yet)  id {document}  draft"
    assert lines[2] == "  period 2026-11-01T00:00+01:00 to 2026-12-01T00:00+01:00"
    body = [line.split() for line in lines[4:]]
    assert body[0][:2] == ["1", "recurring"] and body[0][-3:] == ["30", "days", "20.00"]
    assert body[1][:2] == ["2", "usage"] and body[1][-1] == "2.50"
    assert body[2][:2] == ["3", "tax"] and body[2][-1] == "4.28"  # 19 % of 22.50 = 4.275
    assert body[-1] == ["total", "EUR", "26.78"]

    code, out, err = run(capsys, "invoice", "finalize", document, *db)
    assert (code, out) == (0, f"invoice {document}: final, number INV-000001\n")
    code, out, err = run(capsys, "invoice", "finalize", "INV-000001", *db)
    assert code == 1 and "is final, not a draft" in err

    # credit 1.00 of the data line and the whole fee: tax 0.19 and 3.80
    code, out, err = run(
        capsys, "invoice", "credit-note", "INV-000001", "--line", "2:1.00", "--line", "1",
        "--reason", "outage 2026-11-12", "--key", "ticket-77", *db,
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert out.startswith("credit note CN-000001 (id cn_")
    again = run(
        capsys, "invoice", "credit-note", "INV-000001", "--line", "2:1.00", "--line", "1",
        "--reason", "outage 2026-11-12", "--key", "ticket-77", *db,
    )  # fmt: skip
    assert again == (0, out, "")
    with engine.connect() as connection:
        note = connection.execute(select(credit_notes)).one()
    assert (note.subtotal_minor, note.tax_minor, note.total_minor) == (
        21_000_000,
        3_990_000,
        24_990_000,
    )
    code, out, err = run(
        capsys, "invoice", "credit-note", "INV-000001", "--line", "2:1.60", "--reason", "x", *db
    )
    assert code == 1 and "at most 1500000 micro-units" in err
    code, out, err = run(capsys, "invoice", "void", "INV-000001", "--reason", "wrong", *db)
    assert code == 1 and "credit note" in err

    code, out, err = run(capsys, "invoice", "list", *db)
    assert code == 0 and out.split()[:3] == [document, "INV-000001", "final"]


def test_void_releases_the_invoice(billed, capsys) -> None:
    url, engine, document = billed
    db = ["--billing-database-url", url]
    assert run(capsys, "invoice", "void", document, "--reason", "x", *db)[0] == 1  # a draft
    assert run(capsys, "invoice", "finalize", document, *db)[0] == 0
    code, out, err = run(capsys, "invoice", "void", document, "--reason", "duplicate", *db)
    assert (code, err) == (0, "")
    with engine.connect() as connection:
        assert connection.execute(select(invoices.c.state)).scalar_one() == "void"


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["show", "INV-999999"], 1, "no invoice 'INV-999999'"),
        (["credit-note", "INV-1", "--line", "x", "--reason", "r"], 2, "--line: give POSITION"),
        (["credit-note", "INV-1", "--line", "1:1,5", "--reason", "r"], 2, "a decimal such as"),
        (["show", "INV-1", "--timezone", "Mars/Base"], 2, "unknown time zone"),
        (["credit-note", "DRAFT", "--line", "2:0.005", "--reason", "r"], 1, "more decimals"),
        (["list", "--billing-database-url", "EMPTY"], 2, "run `ocs billing migrate`"),
    ],
)
def test_errors(billed, capsys, tmp_path, argv, code, message) -> None:
    url, _, _ = billed
    # EMPTY: a database never migrated: refused (ocs invoice never migrates)
    argv = [f"sqlite:///{tmp_path / 'empty.db'}" if a == "EMPTY" else a for a in argv]
    if "DRAFT" in argv:  # a final invoice to credit
        assert run(capsys, "invoice", "finalize", billed[2], "--billing-database-url", url)[0] == 0
        argv = [billed[2] if a == "DRAFT" else a for a in argv]
    extra = [] if "--billing-database-url" in argv else ["--billing-database-url", url]
    got, out, err = run(capsys, "invoice", *argv, *extra)
    assert (got, out) == (code, "")
    assert message in err


def test_parse_amount_is_exact() -> None:
    assert parse_amount("1.50") == 1_500_000
    assert parse_amount("0.000001") == 1
    assert parse_amount("12") == 12_000_000
    for bad in ("1.5e2", "-1", "1.0000001", ""):
        with pytest.raises(ValueError):
            parse_amount(bad)
