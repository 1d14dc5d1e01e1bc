"""Gap-free numbering on SQLite and PostgreSQL: many concurrent finalisations give
1..n, no gap, no duplicate; a rolled-back finalisation consumes no number."""

from __future__ import annotations

import multiprocessing
import random
import threading

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from ocs.billing.database import migrate, open_database
from ocs.billing.numbering import (
    NotDraft,
    NumberingError,
    assign_number,
    check_format,
    ensure_sequence,
    finalize_credit_note,
    finalize_invoice,
    format_number,
)
from ocs.billing.schema import credit_notes, invoices, number_sequences

START = 1_793_491_200


class Rollback(Exception):
    """Raised inside a finalising transaction to roll it back."""


@pytest.fixture
def engine(database_url):
    migrate(database_url)
    engine = open_database(database_url)
    with engine.begin() as connection:
        ensure_sequence(connection, "ocs-de", "invoice", "INV-{seq:06d}")
    yield engine
    engine.dispose()


def drafts(connection, count, *, entity="ocs-de", prefix="inv"):
    connection.execute(
        invoices.insert(),
        [
            {
                "id": f"{prefix}-{n}", "account": f"acct-{prefix}-{n}", "entity": entity,
                "period_start": START, "period_end": START + 86400, "currency": "EUR",
                "minor_digits": 2, "created_at": START,
            }
            for n in range(count)
        ],
    )  # fmt: skip


def numbers(engine, entity="ocs-de"):
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(invoices.c.number, invoices.c.state).where(
                invoices.c.entity == entity, invoices.c.state != "draft"
            )
        ).all()
    assert {state for _number, state in rows} <= {"final"}
    return sorted(int(number.removeprefix("INV-")) for number, _state in rows)


def test_numbers_follow_the_format_and_count_up_per_entity_and_series(engine):
    with engine.begin() as connection:
        ensure_sequence(connection, "ocs-at", "invoice", "{entity}/{seq:04d}", start=100)
        ensure_sequence(connection, "ocs-de", "credit_note", "CN-{seq}")
        # an existing sequence is left as it is
        ensure_sequence(connection, "ocs-de", "invoice", "OTHER-{seq}", start=50)
        assert assign_number(connection, "ocs-de") == "INV-000001"
        assert assign_number(connection, "ocs-de") == "INV-000002"
        assert assign_number(connection, "ocs-at") == "ocs-at/0100"
        assert assign_number(connection, "ocs-de", "credit_note") == "CN-1"
        assert assign_number(connection, "ocs-de") == "INV-000003"


def test_a_rolled_back_transaction_consumes_no_number(engine):
    with pytest.raises(Rollback), engine.begin() as connection:
        assert assign_number(connection, "ocs-de") == "INV-000001"
        raise Rollback
    with engine.begin() as connection:
        assert assign_number(connection, "ocs-de") == "INV-000001"


def test_an_unknown_entity_or_series_is_refused(engine):
    with engine.begin() as connection:
        with pytest.raises(NumberingError, match="'ocs-fr' has no invoice number sequence"):
            assign_number(connection, "ocs-fr")
        with pytest.raises(NumberingError, match="unknown number series"):
            ensure_sequence(connection, "ocs-de", "receipt", "R-{seq}")


def test_assign_number_refuses_autocommit(engine):
    autocommit = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    with autocommit as connection, pytest.raises(NumberingError, match="AUTOCOMMIT"):
        assign_number(connection, "ocs-de")
    with engine.begin() as connection:
        assert assign_number(connection, "ocs-de") == "INV-000001"


def test_finalize_numbers_a_draft_once(engine):
    with engine.begin() as connection:
        drafts(connection, 2)
        assert finalize_invoice(connection, "inv-1", START + 5) == "INV-000001"
        with pytest.raises(NotDraft, match="is final"):
            finalize_invoice(connection, "inv-1", START + 6)
        with pytest.raises(LookupError):
            finalize_invoice(connection, "inv-9", START + 6)
        assert finalize_invoice(connection, "inv-0", START + 7) == "INV-000002"
        row = connection.execute(sa.select(invoices).where(invoices.c.id == "inv-1")).one()
    assert (row.state, row.number, row.finalized_at) == ("final", "INV-000001", START + 5)


def test_credit_notes_have_their_own_sequence(engine):
    with engine.begin() as connection:
        ensure_sequence(connection, "ocs-de", "credit_note", "CN-{seq:04d}")
        drafts(connection, 1)
        finalize_invoice(connection, "inv-0", START + 1)
        connection.execute(
            credit_notes.insert(),
            [
                {
                    "id": f"cn-{n}", "invoice_id": "inv-0", "account": "acct-inv-0",
                    "entity": "ocs-de", "currency": "EUR", "minor_digits": 2,
                    "created_at": START + 2,
                }
                for n in range(2)
            ],
        )  # fmt: skip
        assert finalize_credit_note(connection, "cn-1", START + 3) == "CN-0001"
        assert finalize_credit_note(connection, "cn-0", START + 3) == "CN-0002"
        assert assign_number(connection, "ocs-de") == "INV-000002"


def finalize_concurrently(engine, ids, *, workers, rollback_every):
    """Finalise ``ids`` from ``workers`` threads at once, each finalisation in its own
    transaction; every ``rollback_every``-th rolls back after taking its number (and
    is retried). Returns the numbers the committed transactions were given."""
    todo = list(ids)
    random.Random(7).shuffle(todo)
    lock = threading.Lock()
    committed: list[str] = []
    errors: list[BaseException] = []
    attempts = iter(range(10**9))
    barrier = threading.Barrier(workers)

    def work() -> None:
        barrier.wait()
        while True:
            with lock:
                if not todo:
                    return
                invoice_id = todo.pop()
                attempt = next(attempts)
            try:
                with engine.begin() as connection:
                    number = finalize_invoice(connection, invoice_id, START + 10)
                    if attempt % rollback_every == 0:
                        raise Rollback
            except Rollback:
                with lock:
                    todo.append(invoice_id)
                continue
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return
            with lock:
                committed.append(number)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return committed


def test_concurrent_finalisations_give_1_to_n_without_gap_or_duplicate(engine):
    count = 120
    with engine.begin() as connection:
        drafts(connection, count)
    committed = finalize_concurrently(
        engine, [f"inv-{n}" for n in range(count)], workers=8, rollback_every=5
    )
    expected = list(range(1, count + 1))
    assert sorted(int(number.removeprefix("INV-")) for number in committed) == expected
    assert numbers(engine) == expected
    with engine.connect() as connection:
        next_value = connection.execute(sa.select(number_sequences.c.next_value)).scalar()
    assert next_value == count + 1


def test_two_finalisations_of_one_draft_give_it_one_number(engine):
    with engine.begin() as connection:
        drafts(connection, 1)
    outcomes: list[object] = []
    barrier = threading.Barrier(4)

    def work() -> None:
        barrier.wait()
        try:
            with engine.begin() as connection:
                outcomes.append(finalize_invoice(connection, "inv-0", START))
        except NotDraft as exc:
            outcomes.append(type(exc))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(str, outcomes)) == sorted(["INV-000001", *[str(NotDraft)] * 3])
    with engine.begin() as connection:
        assert assign_number(connection, "ocs-de") == "INV-000002"


def _finalize_in_a_process(url: str, ids: list[str], queue: multiprocessing.Queue) -> None:
    engine = open_database(url)
    got = []
    for n, invoice_id in enumerate(ids):
        try:
            with engine.begin() as connection:
                number = finalize_invoice(connection, invoice_id, START)
                if n % 4 == 0:
                    raise Rollback
        except Rollback:
            with engine.begin() as connection:
                number = finalize_invoice(connection, invoice_id, START)
        got.append(number)
    engine.dispose()
    queue.put(got)


def test_finalisations_from_several_processes_give_1_to_n(database_url):
    """Processes, not threads: separate file locks on SQLite, separate sessions."""
    migrate(database_url)
    engine = open_database(database_url)
    count, processes = 80, 4
    with engine.begin() as connection:
        ensure_sequence(connection, "ocs-de", "invoice", "INV-{seq:06d}")
        drafts(connection, count)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    ids = [f"inv-{n}" for n in range(count)]
    engine.dispose()  # no connection crosses the fork
    workers = [
        context.Process(
            target=_finalize_in_a_process, args=(database_url, ids[p::processes], queue)
        )
        for p in range(processes)
    ]
    for worker in workers:
        worker.start()
    got = [number for _ in workers for number in queue.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    expected = list(range(1, count + 1))
    assert sorted(int(number.removeprefix("INV-")) for number in got) == expected
    assert numbers(engine) == expected


@given(st.text(max_size=20))
def test_a_format_is_accepted_only_with_seq_and_known_fields(form):
    try:
        check_format(form)
    except ValueError:
        return
    assert "{seq" in form
    assert format_number(form, "E", 7) != format_number(form, "E", 8)


@pytest.mark.parametrize(
    ("form", "problem"),
    [
        ("INV-", "needs {seq}"),
        ("{year}-{seq}", "unknown field"),
        ("{seq:q}", "Unknown format code"),
        ("{entity:>10}-{seq}", "takes no format spec"),
        ("{seq", "expected .}. before end"),
        ("{seq!r}", "unknown field"),
        ("X" * 60 + "{seq}", "longer than 64"),
    ],
)
def test_bad_formats_are_refused(form, problem):
    with pytest.raises(ValueError, match=problem):
        check_format(form)
