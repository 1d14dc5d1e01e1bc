"""Payments, their allocation to final invoices oldest first, credit carried to the next
invoice, refunds, voids and credit notes giving money back to credit, the statement;
on SQLite and PostgreSQL (ocs.billing.payments)."""

from __future__ import annotations

import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ocs.billing.compose import ComposedInvoice, InvoiceLine
from ocs.billing.database import migrate, open_database
from ocs.billing.invoices import write_invoice
from ocs.billing.lifecycle import CreditLine, create_credit_note, finalize, void
from ocs.billing.numbering import ensure_sequence
from ocs.billing.payments.allocation import (
    MAX_CLOCK_SKEW,
    AccountMoney,
    CreditSpent,
    IdempotencyConflict,
    PaymentRefused,
    PaymentRequest,
    RefundRequest,
    UnknownAccount,
    account_credit,
    invoice_balances,
    parse_amount,
    record_payment,
    refund_credit,
)
from ocs.billing.payments.dunning import DunningTerms, overdue_invoices
from ocs.billing.payments.statement import statement
from ocs.billing.representation import customer_bill
from ocs.billing.schema import payment_allocations, payments, refunds
from tests.ocs.billing.factory import at

DAY = 86_400
START = at("2026-01-01 00:00")
EUR = AccountMoney("EUR", 2)


@pytest.fixture
def engine(database_url: str):
    migrate(database_url)
    engine = open_database(database_url)
    yield engine
    engine.dispose()


def bill(
    connection, document: str, amount: int, *, account: str = "alice", month: int = 0,
    final_at: int | None = None,
) -> None:  # fmt: skip
    """A draft of one usage line of ``amount`` micro-units (no tax) for the ``month``-th
    30-day period, finalised at ``final_at`` (None: left a draft)."""
    start = START + month * 30 * DAY
    line = InvoiceLine("usage", "Data", amount, amount, service="data", records=(document,))
    composed = ComposedInvoice(account, "EUR", 2, start, start + 30 * DAY, (line,))
    write_invoice(
        connection, composed, document=document, entity="acme", bill_run_id=None, now=start
    )
    ensure_sequence(connection, "acme", "invoice", "INV-{seq:04d}")
    if final_at is not None:
        finalize(connection, document, now=final_at, actor="test")


def goodwill(connection, document: str, amount: int, *, account: str = "alice", month: int = 0,
             final_at: int | None = None) -> None:  # fmt: skip
    """:func:`bill` of one goodwill adjustment of ``-amount`` micro-units: an invoice of a
    negative total."""
    start = START + month * 30 * DAY
    line = InvoiceLine("one_off", "Goodwill credit", -amount, -amount, records=(document,))
    composed = ComposedInvoice(account, "EUR", 2, start, start + 30 * DAY, (line,))
    write_invoice(
        connection, composed, document=document, entity="acme", bill_run_id=None, now=start
    )
    ensure_sequence(connection, "acme", "invoice", "INV-{seq:04d}")
    if final_at is not None:
        finalize(connection, document, now=final_at, actor="test")


def pay(connection, amount: int, *, account: str = "alice", key: str | None = None, **fields):
    request = PaymentRequest(account, amount, fields.pop("currency", "EUR"), **fields)
    return record_payment(connection, request, now=fields.get("received_at") or START + 40 * DAY,
                          key=key, known=EUR)  # fmt: skip


def state(connection, document: str) -> tuple[str, str, str]:
    shown = customer_bill(connection, document)
    return shown["state"], shown["amountDue"]["value"], shown["remainingAmount"]["value"]


def test_parse_amount_is_exact_and_refuses_what_the_currency_cannot_hold():
    assert parse_amount("12.5", 2) == 12_500_000
    assert parse_amount(" 0.01 ", 2) == 10_000
    assert parse_amount("1000", 0) == 1_000_000_000
    assert parse_amount("123456789012.34", 2) == 123_456_789_012_340_000
    assert parse_amount("9223372036854.775807", 6) == 2**63 - 1  # the largest
    for text, digits, why in [
        ("12.345", 2, "3 decimals, the currency has 2"),
        ("5.0", 0, "1 decimals, the currency has 0"),
        ("0", 2, "more than 0"),
        ("0.00", 2, "more than 0"),
        ("-5", 2, "not an amount"),
        ("1e3", 2, "not an amount"),
        ("12,50", 2, "not an amount"),
        ("", 2, "not an amount"),
        ("NaN", 2, "not an amount"),
        ("99999999999999.00", 2, "more than the largest amount"),  # BIGINT: 2**63 - 1
        ("9223372036854.775808", 6, "more than the largest amount"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_amount(text, digits)


def test_partial_then_full_payment(engine):
    with engine.begin() as c:
        bill(c, "in_1", 37_180_000, final_at=START + 31 * DAY)
        assert state(c, "in_1") == ("validated", "37.18", "37.18")
        made = pay(c, 10_000_000, key="k1")
        assert made.settlement.allocated == (("in_1", 10_000_000),)
        assert state(c, "in_1") == ("partiallyPaid", "37.18", "27.18")
        pay(c, 27_180_000, key="k2")
        assert state(c, "in_1") == ("settled", "37.18", "0.00")
        assert account_credit(c, "alice") == 0


def test_a_payment_goes_to_the_oldest_invoice_first_and_drafts_get_nothing(engine):
    with engine.begin() as c:
        bill(c, "in_new", 5_000_000, month=1, final_at=START + 62 * DAY)
        bill(c, "in_old", 3_000_000, month=0, final_at=START + 31 * DAY)
        bill(c, "in_draft", 9_000_000, month=2)
        made = pay(c, 4_000_000)
        assert made.settlement.allocated == (("in_old", 3_000_000), ("in_new", 1_000_000))
        assert state(c, "in_old")[0] == "settled"
        assert state(c, "in_new") == ("partiallyPaid", "5.00", "4.00")
        assert state(c, "in_draft")[0] == "new"
        assert made.settlement.credit == 0


def test_over_payment_is_credit_carried_to_the_next_invoice_when_it_is_finalised(engine):
    with engine.begin() as c:
        bill(c, "in_1", 20_000_000, final_at=START + 31 * DAY)
        made = pay(c, 50_000_000)
        assert made.settlement.allocated == (("in_1", 20_000_000),)
        assert made.settlement.credit == account_credit(c, "alice") == 30_000_000
        bill(c, "in_2", 25_000_000, month=1, final_at=START + 62 * DAY)
        assert state(c, "in_2") == ("settled", "25.00", "0.00")
        assert account_credit(c, "alice") == 5_000_000
        carried = c.execute(
            select(payment_allocations.c.payment_id).where(
                payment_allocations.c.invoice_id == "in_2"
            )
        ).scalar_one()
        assert carried is None  # credit carried, not the payment being recorded
        bill(c, "in_3", 7_500_000, month=2, final_at=START + 93 * DAY)
        assert state(c, "in_3") == ("partiallyPaid", "7.50", "2.50")
        assert account_credit(c, "alice") == 0


def test_an_account_without_credit_is_not_touched_by_finalisation(engine):
    with engine.begin() as c:
        bill(c, "in_1", 20_000_000, final_at=START + 31 * DAY)
        pay(c, 20_000_000)
        bill(c, "in_2", 25_000_000, month=1, final_at=START + 62 * DAY)
        assert state(c, "in_2") == ("validated", "25.00", "25.00")
        bill(c, "in_bob", 1_000_000, account="bob", final_at=START + 31 * DAY)
        assert state(c, "in_bob") == ("validated", "1.00", "1.00")


def test_a_negative_invoice_is_credit_the_next_invoice_takes(engine):
    """A goodwill credit above the month's charges: the final invoice owes -5.00, which
    is the account's credit (the account never paid: its payment row is made). The next
    invoice takes it when finalised, so paying the statement's amount due settles it and
    nothing is overdue."""
    with engine.begin() as c:
        goodwill(c, "in_neg", 5_000_000, final_at=START + 31 * DAY)
        assert account_credit(c, "alice") == 5_000_000
        bill(c, "in_2", 20_000_000, month=1, final_at=START + 61 * DAY)
        assert account_credit(c, "alice") == 0
        due = statement(c, "alice", "in_2").amount_due
        assert due == 15_000_000
        pay(c, due, key="as-asked", received_at=START + 65 * DAY)
        balances = {b.invoice_id: b for b in invoice_balances(c, "alice")}
        assert (balances["in_2"].paid, balances["in_2"].remaining) == (20_000_000, 0)
        assert (balances["in_neg"].due, balances["in_neg"].remaining) == (-5_000_000, 0)
        assert overdue_invoices(c, START + 200 * DAY, DunningTerms()) == {}
        assert account_credit(c, "alice") == 0


def test_voiding_a_negative_invoice_takes_its_credit_back(engine):
    """Its credit paid a later invoice: the void releases that much of the newest
    invoice's allocations (it is open again), and the sums still add up."""
    with engine.begin() as c:
        goodwill(c, "in_neg", 5_000_000, final_at=START + 31 * DAY)
        bill(c, "in_2", 20_000_000, month=1, final_at=START + 61 * DAY)
        pay(c, 15_000_000, key="rest", received_at=START + 65 * DAY)
        void(c, "in_neg", reason="wrong", now=START + 70 * DAY, actor="test")
        balances = {b.invoice_id: b for b in invoice_balances(c, "alice")}
        assert (balances["in_2"].paid, balances["in_2"].remaining) == (15_000_000, 5_000_000)
        assert account_credit(c, "alice") == 0
        assert state(c, "in_2") == ("partiallyPaid", "20.00", "5.00")


def test_voiding_a_negative_invoice_whose_credit_was_refunded_is_refused(engine):
    """The credit was paid out: voiding would leave the account owing money no invoice
    bills. Refused (409), and the invoice stays final."""
    with engine.begin() as c:
        goodwill(c, "in_neg", 5_000_000, final_at=START + 31 * DAY)
        refund_credit(c, RefundRequest("alice", 5_000_000, "EUR"), now=START + 40 * DAY)
    with pytest.raises(CreditSpent) as refused, engine.begin() as c:
        void(c, "in_neg", reason="wrong", now=START + 70 * DAY, actor="test")
    assert refused.value.status == 409
    with engine.connect() as c:
        assert customer_bill(c, "in_neg")["state"] != "cancelled"  # still final
        assert account_credit(c, "alice") == 0


def test_a_voided_invoice_releases_its_allocations_to_credit(engine):
    with engine.begin() as c:
        bill(c, "in_1", 20_000_000, final_at=START + 31 * DAY)
        pay(c, 15_000_000)
        void(c, "in_1", reason="wrong plan", now=START + 45 * DAY, actor="test")
        assert account_credit(c, "alice") == 15_000_000
        shown = customer_bill(c, "in_1")
        assert (shown["state"], shown["remainingAmount"]["value"]) == ("cancelled", "0.00")
        # the replacement gets the credit when it is finalised
        bill(c, "in_1b", 18_000_000, final_at=START + 46 * DAY)
        assert state(c, "in_1b") == ("partiallyPaid", "18.00", "3.00")
        assert account_credit(c, "alice") == 0


def test_a_credit_note_on_a_paid_invoice_gives_the_excess_back_to_credit(engine):
    with engine.begin() as c:
        bill(c, "in_1", 20_000_000, final_at=START + 31 * DAY)
        pay(c, 20_000_000)
        create_credit_note(
            c, "in_1", [CreditLine(1, 5_000_000)], reason="outage", now=START + 50 * DAY,
            actor="test",
        )  # fmt: skip
        assert state(c, "in_1") == ("settled", "15.00", "0.00")
        assert account_credit(c, "alice") == 5_000_000
        live = c.execute(
            select(func.sum(payment_allocations.c.amount_minor)).where(
                payment_allocations.c.invoice_id == "in_1",
                payment_allocations.c.released_at.is_(None),
            )
        ).scalar_one()
        assert live == 15_000_000


def test_a_payment_or_refund_dated_in_the_future_is_refused(engine):
    """Up to MAX_CLOCK_SKEW (300 s) ahead of the recording clock is a clock's skew and
    accepted; more is refused, 422 naming the date field, and records nothing."""
    now = START + 40 * DAY
    with engine.begin() as c:
        bill(c, "in_1", 20_000_000, final_at=START + 31 * DAY)
        ahead = PaymentRequest("alice", 5_000_000, "EUR", received_at=now + MAX_CLOCK_SKEW + 1)
        with pytest.raises(PaymentRefused, match="in the future") as refused:
            record_payment(c, ahead, now=now, key="ahead", known=EUR)
        assert (refused.value.status, refused.value.field) == (422, "paymentDate")
        skewed = PaymentRequest("alice", 25_000_000, "EUR", received_at=now + MAX_CLOCK_SKEW)
        record_payment(c, skewed, now=now, key="skewed", known=EUR)
        assert c.execute(select(func.count()).select_from(payments)).scalar_one() == 1
        later = RefundRequest("alice", 1_000_000, "EUR", refunded_at=now + 3600)
        with pytest.raises(PaymentRefused, match="in the future") as refused:
            refund_credit(c, later, now=now, key="later")
        assert refused.value.field == "refundDate"
        assert account_credit(c, "alice") == 5_000_000


def test_refunds_give_back_credit_and_never_more(engine):
    with engine.begin() as c:
        bill(c, "in_1", 20_000_000, final_at=START + 31 * DAY)
        pay(c, 30_000_000)
        request = RefundRequest("alice", 4_000_000, "EUR", reason="customer asked")
        done = refund_credit(c, request, now=START + 50 * DAY, key="r1")
        assert done.settlement.credit == account_credit(c, "alice") == 6_000_000
        again = refund_credit(c, request, now=START + 51 * DAY, key="r1")
        assert (again.id, again.replayed) == (done.id, True)
        with pytest.raises(
            PaymentRefused,
            match="refund of 6.01 EUR is more than the credit of account 'alice': 6.00 EUR",
        ):
            refund_credit(c, RefundRequest("alice", 6_010_000, "EUR"), now=START + 52 * DAY)
        with pytest.raises(IdempotencyConflict):
            refund_credit(c, RefundRequest("alice", 1_000_000, "EUR"), now=START, key="r1")
        with pytest.raises(UnknownAccount):
            refund_credit(c, RefundRequest("nobody", 1_000_000, "EUR"), now=START)
        with pytest.raises(PaymentRefused, match="billed in EUR, not USD"):
            refund_credit(c, RefundRequest("alice", 1_000_000, "USD"), now=START)
        assert c.execute(select(func.count()).select_from(refunds)).scalar_one() == 1


def test_idempotency_same_key_same_payment_different_body_refused(engine):
    with engine.begin() as c:
        bill(c, "in_1", 20_000_000, final_at=START + 31 * DAY)
        first = pay(c, 5_000_000, key="order-1", reference="INV-0001")
        again = pay(c, 5_000_000, key="order-1", reference="INV-0001")
        assert (again.id, again.replayed, first.replayed) == (first.id, True, False)
        with pytest.raises(IdempotencyConflict) as refused:
            pay(c, 6_000_000, key="order-1", reference="INV-0001")
        assert (refused.value.status, refused.value.field) == (409, "Idempotency-Key")
        # the same key of another account is another payment
        other = pay(c, 5_000_000, account="bob", key="order-1")
        assert other.id != first.id
        # an external id is recorded once, whatever the key
        pay(c, 1_000_000, key="order-2", external_id="bank-77")
        with pytest.raises(IdempotencyConflict, match="bank-77"):
            pay(c, 1_000_000, key="order-3", external_id="bank-77")
        assert c.execute(select(func.count()).select_from(payments)).scalar_one() == 3
        assert state(c, "in_1") == ("partiallyPaid", "20.00", "14.00")


def test_refused_payments(engine):
    with engine.begin() as c:
        bill(c, "in_1", 20_000_000, final_at=START + 31 * DAY)
        with pytest.raises(PaymentRefused, match="billed in EUR, not USD") as refused:
            pay(c, 5_000_000, currency="USD")
        assert (refused.value.status, refused.value.field) == (422, "amount.unit")
        with pytest.raises(PaymentRefused, match="more decimals than EUR's 2"):
            pay(c, 5_001_000)
        with pytest.raises(PaymentRefused, match="more than 0"):
            pay(c, 0)
        with pytest.raises(PaymentRefused, match="unknown payment method 'barter'"):
            pay(c, 5_000_000, method="barter")
        with pytest.raises(UnknownAccount) as unknown:
            record_payment(c, PaymentRequest("nobody", 5_000_000, "EUR"), now=START)
        assert unknown.value.status == 404
        assert c.execute(select(func.count()).select_from(payments)).scalar_one() == 0


def test_a_first_payment_before_any_invoice_is_credit_in_the_known_currency(engine):
    with engine.begin() as c:
        made = pay(c, 9_990_000, account="carol")
        assert made.settlement == made.settlement.__class__((), 0, 9_990_000)
        bill(c, "in_c", 4_000_000, account="carol", final_at=START + 31 * DAY)
        assert state(c, "in_c")[0] == "settled"
        assert account_credit(c, "carol") == 5_990_000


def test_statement_of_consecutive_invoices(engine):
    with engine.begin() as c:
        bill(c, "in_1", 20_000_000, final_at=START + 31 * DAY)
        pay(c, 15_000_000, received_at=START + 40 * DAY)
        bill(c, "in_2", 30_000_000, month=1, final_at=START + 61 * DAY)
        pay(c, 35_000_000, received_at=START + 70 * DAY)
        pay(c, 1_000_000, received_at=START + 95 * DAY)  # after in_3: on the next one
        bill(c, "in_3", 10_000_000, month=2, final_at=START + 91 * DAY)
        bill(c, "in_4", 5_000_000, month=3)
        first = statement(c, "alice", "in_1")
        assert (first.previous_invoice_id, first.previous_balance, first.payments) == (None, 0, 0)
        assert (first.new_charges, first.amount_due) == (20_000_000, 20_000_000)
        second = statement(c, "alice", "in_2")
        assert (second.previous_invoice_id, second.previous_balance) == ("in_1", 20_000_000)
        assert (second.payments, second.new_charges, second.amount_due) == (
            15_000_000, 30_000_000, 35_000_000,
        )  # fmt: skip
        third = statement(c, "alice", "in_3")
        assert (third.previous_balance, third.payments, third.amount_due) == (
            35_000_000, 35_000_000, 10_000_000,
        )  # fmt: skip
        draft = statement(c, "alice", "in_4", at=START + 121 * DAY)
        assert (draft.previous_balance, draft.payments, draft.amount_due) == (
            10_000_000, 1_000_000, 14_000_000,
        )  # fmt: skip
        # what the invoices still owe now, with the payment received after in_3
        owed = sum(b.remaining for b in invoice_balances(c, "alice"))
        assert third.amount_due == owed + 1_000_000
        with pytest.raises(ValueError, match="draft"):
            statement(c, "alice", "in_4")
        with pytest.raises(LookupError):
            statement(c, "bob", "in_1")


def test_statement_adjustments_and_refunds_keep_the_box_adding_up(engine):
    with engine.begin() as c:
        bill(c, "in_1", 20_000_000, final_at=START + 31 * DAY)
        pay(c, 50_000_000, received_at=START + 40 * DAY)  # 30 credit
        refund_credit(c, RefundRequest("alice", 10_000_000, "EUR"), now=START + 45 * DAY)
        create_credit_note(
            c, "in_1", [CreditLine(1, 2_000_000)], reason="goodwill", now=START + 50 * DAY,
            actor="test",
        )  # fmt: skip
        bill(c, "in_2", 8_000_000, month=1, final_at=START + 61 * DAY)
        s = statement(c, "alice", "in_2")
        assert (s.previous_balance, s.payments, s.refunds, s.adjustments, s.new_charges) == (
            20_000_000, 50_000_000, 10_000_000, -2_000_000, 8_000_000,
        )  # fmt: skip
        assert s.amount_due == -14_000_000 == -account_credit(c, "alice")


def test_concurrent_payments_and_a_void_of_one_account_queue_and_add_up(engine):
    """Eight payments and a void of one account at once, each its own transaction: on
    PostgreSQL they queue on the account's row (no credit allocated twice, no deadlock
    between the void's invoice lock and a payment's allocation to it)."""
    with engine.begin() as c:
        bill(c, "in_1", 50_000_000, final_at=START + 31 * DAY)
        bill(c, "in_2", 15_000_000, month=1, final_at=START + 61 * DAY)
    start = threading.Barrier(9)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            start.wait()
            with engine.begin() as c:
                if n == 8:
                    void(c, "in_1", reason="wrong", now=START + 70 * DAY, actor="test")
                else:
                    pay(c, 10_000_000, key=f"t{n}")
        except BaseException as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engine.connect() as c:
        balances = {b.invoice_id: b for b in invoice_balances(c, "alice")}
        assert balances["in_1"].paid == 0  # void: all it had is credit again
        assert balances["in_2"].paid == 15_000_000
        assert account_credit(c, "alice") == 80_000_000 - 15_000_000


def _payment_and_finalisation_at_once(engine, *, paying_first: bool) -> None:
    """One transaction holds its lock (the payment of in_2's amount, or the finalisation
    of in_2) while the other runs in a thread: on PostgreSQL the second waits on the
    account's payment row, then sees what the first committed."""
    with engine.begin() as c:
        bill(c, "in_1", 10_000_000, final_at=START + 31 * DAY)
        pay(c, 10_000_000, key="first")  # in_1 settled, credit 0: the row exists
        bill(c, "in_2", 25_000_000, month=1)  # a draft

    def paying(c):
        pay(c, 25_000_000, key="during", received_at=START + 62 * DAY)

    def finalising(c):
        finalize(c, "in_2", now=START + 62 * DAY, actor="bill run")

    first, second = (paying, finalising) if paying_first else (finalising, paying)
    errors: list[BaseException] = []
    done = threading.Event()

    def other() -> None:
        try:
            with engine.begin() as c:
                second(c)
        except BaseException as error:  # noqa: BLE001 (reported below)
            errors.append(error)
        done.set()

    with engine.connect() as holder:
        transaction = holder.begin()
        first(holder)
        thread = threading.Thread(target=other)
        thread.start()
        assert not done.wait(0.5), "the second transaction did not wait for the first"
        transaction.commit()
    thread.join(10)
    assert done.is_set() and errors == []
    with engine.connect() as c:
        balances = {b.invoice_id: b for b in invoice_balances(c, "alice")}
        assert (balances["in_2"].paid, balances["in_2"].remaining) == (25_000_000, 0)
        assert account_credit(c, "alice") == 0


@pytest.mark.parametrize("paying_first", [False, True], ids=["finalising", "paying"])
def test_a_payment_committed_while_an_invoice_is_finalised_pays_it(engine, paying_first):
    """The finalisation locks the account's payment row before the invoice: a payment
    during it waits and pays the invoice (final by then); a finalisation during a
    payment waits and takes the payment's credit. Neither leaves credit beside an open
    invoice (which dunning would bar). SQLite serialises at BEGIN IMMEDIATE."""
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite's write transactions never overlap")
    _payment_and_finalisation_at_once(engine, paying_first=paying_first)


def test_payments_refunds_and_allocations_are_never_changed_or_deleted(engine):
    """The database refuses it (triggers of 0004): a payment or refund is never updated
    or deleted; an allocation only released (released_at NULL -> a time), once."""
    with engine.begin() as c:
        bill(c, "in_1", 10_000_000, final_at=START + 31 * DAY)
        pay(c, 15_000_000, key="k1")
        refund_credit(c, RefundRequest("alice", 1_000_000, "EUR"), now=START + 41 * DAY)
    a = payment_allocations.c
    live = a.released_at.is_(None)
    refused = [
        payments.update().values(amount_micro=1_000_000, amount_minor=1_000_000),
        payments.update().values(description="changed"),
        payments.delete(),
        refunds.update().values(reason="changed"),
        refunds.delete(),
        payment_allocations.update().values(amount_minor=1),
        payment_allocations.update().values(released_at=START + 50 * DAY, amount_minor=1),
        payment_allocations.delete(),
    ]
    for change in refused:
        with pytest.raises(IntegrityError, match="ocs_billing_immutable"), engine.begin() as c:
            c.execute(change)
    with engine.begin() as c:  # the release: allowed, once
        c.execute(payment_allocations.update().where(live).values(released_at=START + 50 * DAY))
    with pytest.raises(IntegrityError, match="ocs_billing_immutable"), engine.begin() as c:
        c.execute(payment_allocations.update().values(released_at=None))
    with pytest.raises(IntegrityError, match="ocs_billing_immutable"), engine.begin() as c:
        c.execute(payment_allocations.update().values(released_at=START + 60 * DAY))
    with engine.connect() as c:
        assert c.execute(select(payments.c.amount_minor)).scalar_one() == 15_000_000
        assert c.execute(select(refunds.c.reason)).scalar_one() == ""
        assert c.execute(select(a.amount_minor, a.released_at)).one() == (
            10_000_000, START + 50 * DAY,
        )  # fmt: skip


# --------------------------------------------------------------------------- property


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("invoice"), st.integers(0, 5_000)),
        st.tuples(st.just("negative"), st.integers(1, 3_000)),
        st.tuples(st.just("pay"), st.integers(1, 6_000)),
        st.tuples(st.just("refund"), st.integers(1, 3_000)),
        st.tuples(st.just("void"), st.integers(0, 10)),
        st.tuples(st.just("credit"), st.integers(0, 10)),
    ),
    min_size=1,
    max_size=14,
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared(request, tmp_path_factory):
    """One database for all the examples (each its own account), on both databases."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('payments') / 'billing.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_schema()
    migrate(url)
    engine = open_database(url)
    yield engine
    engine.dispose()


_accounts = iter(range(10**9))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=OPERATIONS)
def test_allocations_and_credit_always_add_up_to_payments_less_refunds(shared, operations):
    """Σ live allocations + credit = Σ payments - Σ refunds + Σ |negative final
    invoices| (an invoice owing less than 0 is credit, and voiding it takes the credit
    back), every invoice's allocations within what it owes (remaining never negative),
    and no credit is left while a final invoice is still open."""
    account = f"acct-{next(_accounts)}"
    paid = refunded = 0
    finals: list[str] = []
    now = START
    with shared.begin() as c:
        for n, (kind, value) in enumerate(operations):
            now += DAY
            if kind in ("invoice", "negative"):
                document = f"{account}-{n}"
                make = bill if kind == "invoice" else goodwill
                make(c, document, value * 10_000, account=account, month=n, final_at=now)
                finals.append(document)
            elif kind == "pay":
                record_payment(
                    c, PaymentRequest(account, value * 10_000, "EUR"), now=now, known=EUR
                )
                paid += value * 10_000
            elif kind == "refund":
                try:
                    with c.begin_nested():
                        refund_credit(c, RefundRequest(account, value * 10_000, "EUR"), now=now)
                    refunded += value * 10_000
                except (PaymentRefused, UnknownAccount):
                    pass
            elif finals:
                document = finals[value % len(finals)]
                try:
                    with c.begin_nested():  # a refused void leaves nothing behind
                        if kind == "void":
                            void(c, document, reason="test", now=now, actor="t")
                        else:
                            create_credit_note(c, document, [CreditLine(1, None)], reason="t",
                                               now=now, actor="t")  # fmt: skip
                except Exception as error:  # a state the lifecycle refuses, credit refunded
                    assert error.__class__.__name__ in (
                        "InvalidState", "InvalidCorrection", "CreditSpent"
                    )  # fmt: skip
        balances = invoice_balances(c, account)
        live = sum(b.paid for b in balances)
        negative = sum(-b.due for b in balances if b.state == "final" and b.due < 0)
        assert live + account_credit(c, account) == paid - refunded + negative
        for balance in balances:
            assert 0 <= balance.paid <= max(balance.due, 0)
            assert balance.remaining >= 0
        if account_credit(c, account) > 0:
            assert all(b.remaining == 0 for b in balances if b.state == "final")
