"""Payment files: a bank's CSV reconciled by reference and amount into payments, every
line that cannot be matched reported with its line number and why, the same file twice
recording nothing new; and ``ocs payment add|refund|import|list`` on a real database."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from ocs.billing.database import migrate, open_database
from ocs.billing.payments.allocation import account_credit
from ocs.billing.payments.imports import import_payments, read_csv
from ocs.billing.representation import customer_bill
from ocs.billing.schema import payments
from ocs.cli import main
from tests.ocs.billing.test_payments import DAY, START, bill, pay

FILE = textwrap.dedent(
    """\
    Date,Amount,Currency,Reference,Payer,External_ID
    2026-02-10,20.00,EUR,INV-0001,,bank-1
    2026-02-11T09:30:00+01:00,5.00,EUR,INV-0002,,bank-2
    2026-02-12,7.50,EUR,bob,,bank-3
    2026-02-12,3.00,EUR,please pay my bill,carol,bank-4
    2026-02-13,9.99,EUR,INV-9999,,bank-5
    2026-02-13,9.99,USD,INV-0002,,bank-6
    2026-02-13,9.999,EUR,INV-0002,,bank-7
    2026-02-13,"1,000.00",EUR,INV-0002,,bank-8
    2026-02-13,-4.00,EUR,INV-0002,,bank-9
    2026-02-30,4.00,EUR,INV-0002,,bank-10
    2026-02-13,4.00,EUR,INV-0002,,bank-2
    2026-02-13,4.00,EUR,INV-0002,,
    2026-02-13,4.00,EUR,INV-0002
    """
)


@pytest.fixture
def engine(database_url: str):
    migrate(database_url)
    engine = open_database(database_url)
    with engine.begin() as c:
        bill(c, "in_1", 20_000_000, final_at=START + 31 * DAY)  # INV-0001
        bill(c, "in_2", 30_000_000, month=1, final_at=START + 32 * DAY)  # INV-0002
        bill(c, "in_b", 10_000_000, account="bob", final_at=START + 33 * DAY)  # INV-0003
        pay(c, 1_000_000, account="carol")  # carol is known by a payment only
    yield engine
    engine.dispose()


def test_a_bank_file_is_reconciled_and_every_unmatched_line_reported(engine):
    rows = read_csv(FILE)
    with engine.begin() as c:
        report = import_payments(c, rows, now=START + 50 * DAY)
    recorded = [(m.line, m.external_id, m.account, m.amount_micro, m.note) for m in report.recorded]
    assert recorded == [
        (2, "bank-1", "alice", 20_000_000, ""),
        (3, "bank-2", "alice", 5_000_000, "5.00 EUR differs from the 30.00 EUR due on INV-0002"),
        (4, "bank-3", "bob", 7_500_000, ""),
        (5, "bank-4", "carol", 3_000_000, ""),
    ]
    unmatched = [(u.line, u.external_id, u.kind) for u in report.unmatched]
    assert unmatched == [
        (6, "bank-5", "unknown reference"),
        (7, "bank-6", "currency mismatch"),
        (8, "bank-7", "malformed amount"),
        (9, "bank-8", "malformed amount"),
        (10, "bank-9", "malformed amount"),
        (11, "bank-10", "malformed"),
        (12, "bank-2", "duplicate"),
        (13, "", "malformed"),
        (14, "", "malformed"),
    ]
    reasons = {u.line: u.reason for u in report.unmatched}
    assert "reference 'INV-9999' is no invoice number or account" in reasons[6]
    assert reasons[7] == "USD: account 'alice' is billed in EUR"
    assert "3 decimals, the currency has 2" in reasons[8]
    assert "on line 3 too" in reasons[12]
    assert reasons[14] == "4 fields, the header has 6"
    with engine.connect() as c:
        assert customer_bill(c, "in_1")["state"] == "settled"
        assert customer_bill(c, "in_2")["remainingAmount"]["value"] == "25.00"
        assert customer_bill(c, "in_b")["remainingAmount"]["value"] == "2.50"
        assert account_credit(c, "carol") == 4_000_000
        row = c.execute(select(payments).where(payments.c.external_id == "bank-2")).one()
        arrived = datetime(2026, 2, 11, 8, 30, tzinfo=UTC).timestamp()
        assert (row.source, row.reference, row.received_at) == ("import", "INV-0002", arrived)
    # the same file again: nothing new, the matched lines counted as already imported
    with engine.begin() as c:
        again = import_payments(c, rows, now=START + 51 * DAY)
        assert (len(again.recorded), len(again.already), len(again.unmatched)) == (0, 4, 9)
        assert c.execute(select(func.count()).select_from(payments)).scalar_one() == 5


def test_an_amount_beyond_the_database_is_a_refused_line_not_a_failed_file(engine):
    """Fifteen integer digits are more micro-units than a BIGINT holds: that line is a
    malformed amount, and the file's other lines are recorded."""
    text = (
        "date,amount,currency,reference,payer,external_id\n"
        "2026-02-05,10.00,EUR,INV-0001,,bank-1\n"
        "2026-02-05,99999999999999.00,EUR,INV-0001,,bank-2\n"
    )
    with engine.begin() as c:
        report = import_payments(c, read_csv(text), now=START + 40 * DAY)
    assert [m.external_id for m in report.recorded] == ["bank-1"]
    assert [(u.line, u.external_id, u.kind) for u in report.unmatched] == [
        (3, "bank-2", "malformed amount")
    ]
    assert "more than the largest amount" in report.unmatched[0].reason
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(payments)).scalar_one() == 2  # carol's


def test_a_line_dated_in_the_future_is_malformed(engine):
    text = (
        "date,amount,currency,reference,payer,external_id\n"
        "2026-02-05,10.00,EUR,INV-0001,,bank-1\n"
        "2099-02-05,10.00,EUR,INV-0001,,bank-2\n"
    )
    with engine.begin() as c:
        report = import_payments(c, read_csv(text), now=START + 40 * DAY)
    assert [m.external_id for m in report.recorded] == ["bank-1"]
    assert [(u.line, u.kind) for u in report.unmatched] == [(3, "malformed")]
    assert "in the future" in report.unmatched[0].reason


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("2026-02-05,10.00,EUR,INV-0001,,", "no external_id: a line cannot be imported"),
        (
            "2026-02-05,10.00,EUR,INV-0001,," + "x" * 201,
            "external_id and reference hold at most 200 characters",
        ),
        ("2026-02-05,10.00,EUR," + "R" * 201 + ",,bank-9", "at most 200 characters"),
        ("2026-02-05T10:00:00,10.00,EUR,INV-0001,,bank-9", "date: "),
        ("5 February,10.00,EUR,INV-0001,,bank-9", "date: "),
    ],
)
def test_each_malformed_line_is_reported_and_the_others_recorded(engine, line, reason):
    text = (
        "date,amount,currency,reference,payer,external_id\n"
        "2026-02-05,10.00,EUR,INV-0001,,bank-1\n" + line + "\n"
    )
    with engine.begin() as c:
        report = import_payments(c, read_csv(text), now=START + 40 * DAY)
    assert [m.external_id for m in report.recorded] == ["bank-1"]
    assert [(u.line, u.kind) for u in report.unmatched] == [(3, "malformed")]
    assert reason in report.unmatched[0].reason


def test_an_external_id_recorded_with_other_values_is_a_duplicate(engine):
    with engine.begin() as c:
        now = START + 50 * DAY  # after the money arrived (a date in the future is refused)
        import_payments(c, read_csv(FILE.splitlines()[0] + "\n2026-02-10,20.00,EUR,INV-0001,,x1"),
                        now=now)  # fmt: skip
        report = import_payments(
            c, read_csv(FILE.splitlines()[0] + "\n2026-02-10,21.00,EUR,INV-0001,,x1"), now=now
        )
    assert [u.kind for u in report.unmatched] == ["duplicate"]
    assert "external id 'x1' is payment pay_" in report.unmatched[0].reason
    assert report.unmatched[0].reason.endswith("of 'alice' already, with another amount or account")


def test_a_line_of_a_payment_recorded_before_by_hand_is_already_imported(engine):
    with engine.begin() as c:
        first = pay(c, 20_000_000, key="by-hand", external_id="x2")
        report = import_payments(
            c,
            read_csv(FILE.splitlines()[0] + "\n2026-02-10,20.00,EUR,INV-0001,,x2"),
            now=START + 50 * DAY,
        )
        assert [(m.line, m.payment_id) for m in report.already] == [(2, first.id)]
        assert (report.recorded, report.unmatched) == ([], [])
        assert c.execute(select(func.count()).select_from(payments)).scalar_one() == 2


def test_a_file_without_the_columns_is_refused():
    with pytest.raises(ValueError, match="no column payer, external_id"):
        read_csv("date,amount,currency,reference\n2026-01-01,1.00,EUR,x\n")
    with pytest.raises(ValueError, match="empty"):
        read_csv("")
    # a byte-order mark, another delimiter and blank lines
    rows = read_csv("\ufeffdate;amount;currency;reference;payer;external_id\n\n"
                    "2026-01-01;1.00;EUR;x;;e1\n", ";")  # fmt: skip
    assert rows == [(3, {"date": "2026-01-01", "amount": "1.00", "currency": "EUR",
                         "reference": "x", "payer": "", "external_id": "e1"})]  # fmt: skip


# --------------------------------------------------------------------------- the command


def run(capsys, database_url, *argv):
    code = main(["payment", *argv], env={"OCS_BILLING_DATABASE_URL": database_url})
    out, err = capsys.readouterr()
    return code, out, err


def test_ocs_payment_add_refund_list_and_import(engine, database_url, capsys, tmp_path):
    code, out, err = run(capsys, database_url, "add", "alice", "25.00", "--key", "k1",
                         "--method", "card", "--reference", "INV-0001")  # fmt: skip
    assert code == 0, err
    assert "paid 20.00 EUR of invoice in_1" in out and "paid 5.00 EUR of invoice in_2" in out
    code, out, _ = run(capsys, database_url, "add", "alice", "25.00", "--key", "k1",
                       "--method", "card", "--reference", "INV-0001")  # fmt: skip
    assert code == 0 and "recorded before with this key: nothing new" in out
    code, _, err = run(capsys, database_url, "add", "alice", "26.00", "--key", "k1")
    assert code == 1 and "Idempotency-Key was used for another payment" in err
    code, _, err = run(capsys, database_url, "add", "nobody", "1.00", "--key", "k2")
    assert code == 1 and "no account 'nobody'" in err
    code, _, err = run(capsys, database_url, "add", "alice", "1.001", "--key", "k3")
    assert code == 2 and "3 decimals" in err
    code, _, err = run(
        capsys, database_url, "add", "alice", "1.00", "--key", "k4", "--currency", "USD"
    )
    assert code == 1 and "billed in EUR, not USD" in err
    code, _, err = run(
        capsys, database_url, "add", "alice", "1.00", "--key", "k5", "--method", "gold"
    )
    assert code == 1 and "unknown payment method 'gold'" in err
    code, _, err = run(
        capsys, database_url, "refund", "carol", "1.01", "--key", "r1", "--reason", "x"
    )
    assert code == 1 and "more than the credit of account 'carol': 1.00 EUR" in err
    code, out, err = run(
        capsys, database_url, "refund", "carol", "1.00", "--key", "r1", "--reason", "x"
    )
    assert code == 0 and "credit left 0.00 EUR" in out, err
    code, out, _ = run(capsys, database_url, "list", "--account", "alice")
    assert code == 0 and "1 of 1 payments; credit of alice: 0.00 EUR" in out
    assert "paid: in_1 20.00, in_2 5.00" in out
    code, out, _ = run(capsys, database_url, "list", "--json")
    assert code == 0 and len(json.loads(out)) == 2
    bank = tmp_path / "bank.csv"
    bank.write_text(FILE)
    code, out, _ = run(capsys, database_url, "import", str(bank))
    assert code == 1  # lines were not matched: each listed
    assert "line 6: bank-5: not matched: unknown reference:" in out
    assert "13 lines: 4 recorded, 0 already imported, 9 not matched" in out
    code, out, _ = run(capsys, database_url, "import", str(bank), "--json")
    report = json.loads(out)
    assert (code, len(report["recorded"]), len(report["already_imported"])) == (1, 0, 4)
    good = tmp_path / "good.csv"
    good.write_text("\n".join(FILE.splitlines()[:3]) + "\n")
    assert run(capsys, database_url, "import", str(good))[0] == 0
    code, _, err = run(capsys, database_url, "import", str(tmp_path / "missing.csv"))
    assert code == 2 and "missing.csv" in err
    assert run(capsys, database_url)[0] == 2  # no action
