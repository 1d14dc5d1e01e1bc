"""`ocs bill-run` end to end: accounts and the catalog from a real Redis (provisioned with
`ocs provision`), records in segment files, invoices in a real SQLite database."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, select

from ocs.billing.schema import bill_runs, invoices
from ocs.cli import main
from quota_engine.catalog import DEMO_CATALOG_PATH
from quota_engine.store import keys
from quota_engine.store.records import partition_of_account
from tests.ocs.billing.factory import account, at, record, write_records

DOC = textwrap.dedent(
    f"""
    catalog = "{DEMO_CATALOG_PATH}"

    [[accounts]]
    id = "bob"
    kind = "postpaid"
    plan = "postpaid-standard"
    credit_limit = 100_000_000
    subscriptions = ["msisdn:491701111111"]

    [[accounts]]
    id = "carol"
    kind = "prepaid"
    plan = "prepaid-basic"
    subscriptions = ["msisdn:491702222222"]
    """
)


@pytest.fixture
def setup(tmp_path: Path, redis_url: str, capsys):
    doc = tmp_path / "accounts.toml"
    doc.write_text(DOC)
    assert main(["provision", str(doc), "--redis-url", redis_url], env={}) == 0
    capsys.readouterr()
    # provisioned today; as a customer since before the period it pays the whole month
    client = redis.Redis.from_url(redis_url)
    client.hset(keys.account("bob"), "created", at("2026-01-05 12:00"))
    client.close()
    records = tmp_path / "records"
    bob = account("bob", partition=partition_of_account("bob"))
    carol = account("carol", kind="prepaid", partition=partition_of_account("carol"))
    write_records(
        records,
        [
            record("b1;1;10", "bob", at("2026-10-03 10:00"), used=2_097_152, charged=1_000_000),
            record("c1;1;10", "carol", at("2026-10-03 10:00"), plan="prepaid-basic"),
        ],
        [bob, carol],
    )
    database = tmp_path / "billing.db"
    argv = [
        "--redis-url", redis_url, "--records-directory", str(records),
        "--billing-database-url", f"sqlite:///{database}",
    ]  # fmt: skip
    return argv, database


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), env={})
    out, err = capsys.readouterr()
    return code, out, err


def test_bill_run_makes_the_invoices_of_a_period_once(setup, capsys, tmp_path: Path) -> None:
    argv, database = setup
    metrics = tmp_path / "bill-run.prom"
    code, out, err = run(
        capsys, "bill-run", "--period", "2026-10", *argv, "--metrics-file", str(metrics)
    )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("bill run run-2026-10-0of1-") and lines[0].endswith(
        "period 2026-10, shard 0/1"
    )
    # one invoice: bob (postpaid); carol is prepaid. 20.00 + 1.00, 19 % VAT = 3.99
    assert lines[1] == (
        "  invoice accounts 1: 1 invoices created, 0 drafts refreshed, 1 finalised, 0 final already"
    )
    assert lines[2:4] == ["  records 1 (late 0)", "  total 24.99 EUR"]
    engine = create_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        rows = connection.execute(select(invoices.c.account, invoices.c.number)).all()
        assert [tuple(r) for r in rows] == [("bob", "INV-000001")]
        assert connection.execute(select(bill_runs.c.state)).scalars().all() == ["completed"]
    text = metrics.read_text()
    assert 'ocs_bill_run_invoices_total{outcome="created"} 1.0' in text
    assert 'ocs_invoices{state="final"} 1.0' in text
    # again: nothing new, the final invoice untouched
    code, out, err = run(capsys, "bill-run", "--period", "2026-10", *argv)
    assert code == 0
    assert "0 invoices created, 0 drafts refreshed, 0 finalised, 1 final already" in out
    with engine.connect() as connection:
        again = connection.execute(select(invoices.c.account, invoices.c.number)).all()
        assert [tuple(r) for r in again] == [("bob", "INV-000001")]
        assert connection.execute(select(bill_runs.c.state)).scalars().all() == ["completed"] * 2
    engine.dispose()


def test_bill_run_off_cycle_for_one_account(setup, capsys) -> None:
    argv, _ = setup
    code, out, err = run(capsys, "bill-run", "--account", "bob", "--until", "2026-10-16", *argv)
    assert (code, err) == (0, "")
    # 15 of 31 days of 20.00 = 9.677.. -> 9.68, + 1.00 usage, 19 % of 10.68 = 2.0292 -> 2.03
    assert out.endswith("up to 2026-10-16T00:00+02:00: 3 lines, total 12.71 EUR\n")
    code, out, err = run(capsys, "bill-run", "--account", "carol", "--until", "2026-10-16", *argv)
    assert (code, out) == (1, "")
    assert err == "ocs bill-run: account 'carol' is prepaid: it gets no invoice\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--period", "2026-13"], "period must be a month YYYY-MM"),
        (["--date", "tomorrow"], "--date: give YYYY-MM-DD"),
        (["--period", "2026-10", "--shard", "4/4"], "shard must be K/N"),
        (["--period", "2026-10", "--until", "2026-10-16"], "--until goes with --account"),
    ],
)
def test_bill_run_usage_errors_exit_2(setup, capsys, extra, message) -> None:
    argv, database = setup
    code, out, err = run(capsys, "bill-run", *extra, *argv)
    assert code == 2 and out == ""
    assert err.startswith("ocs bill-run: ") and message in err
    assert not database.exists()


def test_bill_run_without_an_active_catalog_exits_2(capsys, redis_url, tmp_path) -> None:
    code, out, err = run(
        capsys, "bill-run", "--period", "2026-10", "--redis-url", redis_url,
        "--billing-database-url", f"sqlite:///{tmp_path / 'b.db'}",
    )  # fmt: skip
    assert (code, out) == (2, "")
    assert "no active catalog" in err


def test_an_unwritable_metrics_file_exits_2_after_billing(setup, capsys, tmp_path) -> None:
    argv, database = setup
    missing = tmp_path / "no-such-dir" / "bill-run.prom"
    code, out, err = run(
        capsys, "bill-run", "--period", "2026-10", *argv, "--metrics-file", str(missing)
    )
    assert code == 2 and err.startswith("ocs bill-run: ")
    assert "1 invoices created" in out  # billed first; only the metrics are missing
    assert not missing.exists()
