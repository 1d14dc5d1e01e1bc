"""The deliveries' rows on SQLite and on a real PostgreSQL: planned once, claimed by one
step only, finished, resent as the next sequence, voided invoices' deliveries failed,
interrupted ones found after the lease; and the database's own rules for them."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from ocs.billing.accounts import Contact
from ocs.billing.database import migrate, open_database
from ocs.billing.delivery import store
from ocs.billing.delivery.status import delivery_status_of
from ocs.billing.lifecycle import InvalidState
from ocs.billing.numbering import ensure_sequence, finalize_invoice
from ocs.billing.schema import invoice_deliveries, invoices
from tests.ocs.billing.test_database import PERIOD, add_invoice, add_item

EMAIL = Contact(name="Erika", email="erika@example.de")
PAPER = Contact(name="Hans", address="Weg 1", delivery="paper")
NOW = PERIOD + 40 * 86_400


@pytest.fixture
def engine(database_url):
    migrate(database_url)
    engine = open_database(database_url)
    with engine.begin() as connection:
        ensure_sequence(connection, "ocs-de", "invoice", "INV-{seq:06d}")
        for n, account in enumerate(("erika", "hans", "gone")):
            add_invoice(connection, f"inv-{n}", account)
            add_item(connection, f"inv-{n}", 1)
            finalize_invoice(connection, f"inv-{n}", NOW - 3600)
        add_invoice(connection, "inv-draft", "erika", start=PERIOD + 31 * 86_400)
    yield engine
    engine.dispose()


def _rows(engine) -> dict[str, object]:
    with engine.connect() as connection:
        return {
            row.invoice_id: row
            for row in connection.execute(
                select(invoice_deliveries).order_by(invoice_deliveries.c.id)
            )
        }


def _plan(engine, now=NOW) -> int:
    with engine.begin() as connection:
        candidates = store.plan_candidates(connection, now)
        return store.plan(connection, candidates, {"erika": EMAIL, "hans": PAPER}, now)


def test_plan_once_per_final_invoice_on_its_channel(engine):
    assert _plan(engine) == 3 and _plan(engine) == 0
    rows = _rows(engine)
    assert set(rows) == {"inv-0", "inv-1", "inv-2"}  # not the draft
    assert (rows["inv-0"].channel, rows["inv-0"].state, rows["inv-0"].recipient) == (
        "email", "pending", "erika@example.de",
    )  # fmt: skip
    assert (rows["inv-1"].channel, rows["inv-1"].recipient) == ("paper", "Hans")
    assert rows["inv-2"].state == "failed" and "no longer exists" in rows["inv-2"].last_error
    # invoices finalised before the plan window are left alone
    assert _plan(engine, now=NOW + store.PLAN_WINDOW + 1) == 0


def test_only_one_claimer_sends(engine):
    _plan(engine)
    with engine.connect() as connection:
        [row] = store.due(connection, "email", NOW)
    with engine.begin() as connection:
        assert store.claim(connection, row.id, row.attempts, NOW, message_id="<m1@x>")
    with engine.begin() as connection:  # a second step with the same view of the row
        assert not store.claim(connection, row.id, row.attempts, NOW, message_id="<m2@x>")
        assert store.due(connection, "email", NOW) == []
        store.finish(connection, row.id, "sent", NOW + 5)
    with engine.connect() as connection:
        [status] = delivery_status_of(connection, ["inv-0"]).values()
    assert (status.state, status.attempts, status.sent_at, status.message_id) == (
        "sent", 1, NOW + 5, "<m1@x>",
    )  # fmt: skip


def test_a_temporary_failure_waits_for_its_next_attempt(engine):
    _plan(engine)
    with engine.connect() as connection:
        [row] = store.due(connection, "email", NOW)
    with engine.begin() as connection:
        store.claim(connection, row.id, row.attempts, NOW, message_id="<m1@x>")
        store.finish(connection, row.id, "pending", NOW, error="451 later",
                     next_attempt_at=NOW + 300)  # fmt: skip
        assert store.due(connection, "email", NOW + 299) == []
        [again] = store.due(connection, "email", NOW + 300)
    assert again.attempts == 1
    with pytest.raises(ValueError, match="next attempt time"), engine.begin() as connection:
        store.claim(connection, again.id, again.attempts, NOW + 300)
        store.finish(connection, again.id, "pending", NOW + 300)


def test_resend_is_the_next_sequence_and_refused_while_one_is_under_way(engine):
    _plan(engine)
    with engine.begin() as connection:
        with pytest.raises(InvalidState, match="has a delivery pending already"):
            store.resend(connection, "inv-0", EMAIL, NOW)
        with pytest.raises(InvalidState, match="is draft"):
            store.resend(connection, "inv-draft", EMAIL, NOW)
        assert store.resend(connection, "inv-2", EMAIL, NOW) == 1  # the failed one, again
    with engine.connect() as connection:
        status = delivery_status_of(connection, ["inv-2"])["inv-2"]
    assert (status.sequence, status.state, status.recipient) == (1, "pending", "erika@example.de")


def test_pending_deliveries_of_voided_invoices_fail(engine):
    _plan(engine)
    with engine.begin() as connection:
        connection.execute(
            invoices.update().where(invoices.c.id == "inv-0")
            .values(state="void", voided_at=NOW, void_reason="x")
        )  # fmt: skip
        assert store.cancel_void(connection, NOW) == 1
    assert _rows(engine)["inv-0"].state == "failed"


def test_interrupted_after_the_lease(engine):
    _plan(engine)
    with engine.connect() as connection:
        [row] = store.due(connection, "email", NOW)
    with engine.begin() as connection:
        store.claim(connection, row.id, row.attempts, NOW, message_id="<m1@x>")
    with engine.connect() as connection:
        assert store.interrupted(connection, "email", NOW + store.LEASE) == []
        [late] = store.interrupted(connection, "email", NOW + store.LEASE + 1)
    assert late.message_id == "<m1@x>"


@pytest.mark.parametrize(
    ("values", "rule"),
    [
        ({"state": "sent", "sent_at": None}, "sent_at"),
        ({"state": "pending", "sent_at": NOW}, "sent_at"),
        ({"state": "printed", "sent_at": NOW}, "state_channel"),  # an e-mail is never printed
        ({"state": "lost"}, "state"),
        ({"channel": "fax"}, "channel"),
        ({"attempts": -1}, "attempts"),
    ],
)
def test_the_database_refuses_impossible_rows(engine, values, rule):
    _plan(engine)
    refused = pytest.raises(IntegrityError, match=f"ck_invoice_deliveries_{rule}")
    with refused, engine.begin() as connection:
        connection.execute(
            invoice_deliveries.update()
            .where(invoice_deliveries.c.invoice_id == "inv-0")
            .values(**values)
        )


def test_one_delivery_per_invoice_and_sequence(engine):
    _plan(engine)
    with pytest.raises(IntegrityError, match="invoice_id"), engine.begin() as connection:
        connection.execute(
            invoice_deliveries.insert().values(
                invoice_id="inv-0", sequence=0, channel="email", next_attempt_at=NOW,
                created_at=NOW, updated_at=NOW,
            )
        )  # fmt: skip


def _blocked(engine, thread: threading.Thread) -> None:
    """Return once ``thread`` waits for the other transaction's lock (PostgreSQL: a
    backend waiting on a lock; SQLite: its BEGIN IMMEDIATE waits for the write lock)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and thread.is_alive():
        if engine.dialect.name != "postgresql":
            time.sleep(0.5)
            return
        with engine.connect() as connection:
            waiting = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError("the second transaction never waited for the first")


def _while_planned(engine, second) -> tuple[int, object]:
    """Plan in one transaction and, before it commits, run ``second(engine)`` in a
    thread (it reads its candidates now, then writes): what the first planned and what
    ``second`` returned or raised."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(second(engine))
        except Exception as error:  # the test looks at it
            outcome.append(error)

    with engine.begin() as connection:
        first = store.plan(
            connection, store.plan_candidates(connection, NOW), {"erika": EMAIL, "hans": PAPER},
            NOW,
        )  # fmt: skip
        thread = threading.Thread(target=run)
        thread.start()
        _blocked(engine, thread)
    thread.join(30)
    assert not thread.is_alive()
    return first, outcome[0]


def _stale_planner(engine) -> int:
    with engine.connect() as connection:  # as deliver(): candidates read first
        candidates = store.plan_candidates(connection, NOW)
    with engine.begin() as connection:
        return store.plan(connection, candidates, {"erika": EMAIL, "hans": PAPER}, NOW)


def test_two_planners_at_once_both_succeed_and_plan_once(engine):
    first, second = _while_planned(engine, _stale_planner)
    assert (first, second) == (3, 0)  # no IntegrityError: the second found them planned
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(invoice_deliveries))
        assert count.scalar_one() == 3
    assert {row.sequence for row in _rows(engine).values()} == {0}


def test_a_resend_while_the_invoice_is_being_planned_is_refused_not_an_error(engine):
    def resend(engine) -> int:
        with engine.begin() as connection:
            return store.resend(connection, "inv-0", EMAIL, NOW)

    first, second = _while_planned(engine, resend)
    assert first == 3
    assert isinstance(second, InvalidState), second
    assert "has a delivery pending already (sequence 0)" in str(second)
    assert _rows(engine)["inv-0"].sequence == 0
