"""Dunning: what to do about final invoices left unpaid past their due date.

An invoice is **due** ``payment_terms`` days after it was finalised (its issue date:
``documents.payment_terms``, the date the documents print) and **overdue** after that
while anything of it remains unpaid. Per account, by its oldest overdue invoice:

==============================  =========================================================
days overdue                    dunning state (``payment_accounts.dunning``)
==============================  =========================================================
under ``reminder_days``         ``none``
``reminder_days`` or more       ``reminder``: a ``payment_reminder`` event in the billing
                                history (what the notification channels send)
``barring_days`` or more        ``barred``: the account is barred (its status in Redis,
                                which aborts its open sessions with an ASR)
==============================  =========================================================

An account whose overdue invoices are all paid goes back to ``none``; one that dunning
barred is lifted back to ``active``. Only accounts dunning barred are lifted: a bar an
operator set is the operator's.

This module decides and records, in the billing database; it knows nothing of Redis.
The status change itself is composed at the ocs root (:mod:`ocs.payment_dunning`):
it bars (or lifts) the account first, then records it here with :func:`mark_barred`
(or :func:`mark_lifted`), so a crash in between only repeats the status change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, func, select, update

from ocs.billing.invoices import record_event
from ocs.billing.payments.allocation import AccountMoney, lock_account
from ocs.billing.schema import credit_notes, invoices, payment_accounts, payment_allocations

__all__ = [
    "DunningPlan",
    "DunningTerms",
    "Overdue",
    "mark_barred",
    "mark_lifted",
    "overdue_invoices",
    "plan_dunning",
    "settled_barred",
]

DAY = 86_400


@dataclass(frozen=True, slots=True)
class DunningTerms:
    """Days from issue to due date, and days overdue before a reminder and a bar."""

    payment_terms: int = 14
    reminder_days: int = 7
    barring_days: int = 30

    def state_after(self, days_overdue: int) -> str:
        if days_overdue >= self.barring_days:
            return "barred"
        if days_overdue >= self.reminder_days:
            return "reminder"
        return "none"


@dataclass(frozen=True, slots=True)
class Overdue:
    """An account's oldest overdue invoice: what remains of it and since when it is due."""

    account: str
    invoice_id: str
    number: str
    due_at: int
    remaining: int
    currency: str
    minor_digits: int

    def days(self, now: int) -> int:
        return (now - self.due_at) // DAY


@dataclass
class DunningPlan:
    """What one dunning step found at ``now``."""

    now: int
    reminded: list[Overdue] = field(default_factory=list)
    to_bar: list[Overdue] = field(default_factory=list)
    to_lift: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)


def overdue_invoices(
    connection: Connection, now: int, terms: DunningTerms, accounts: Iterable[str] | None = None
) -> dict[str, Overdue]:
    """Each account's oldest final invoice due before ``now`` with something unpaid
    (of ``accounts``; None: every account)."""
    notes = credit_notes.c
    credited = (
        select(notes.invoice_id, func.sum(notes.total_minor).label("credited"))
        .where(notes.state == "final")
        .group_by(notes.invoice_id)
        .subquery()
    )
    a = payment_allocations.c
    allocated = (
        select(a.invoice_id, func.sum(a.amount_minor).label("paid"))
        .where(a.released_at.is_(None))
        .group_by(a.invoice_id)
        .subquery()
    )
    c = invoices.c
    remaining = (
        c.total_minor - func.coalesce(credited.c.credited, 0) - func.coalesce(allocated.c.paid, 0)
    )
    query = (
        select(c.id, c.account, c.number, c.finalized_at, c.currency, c.minor_digits, remaining)
        .outerjoin(credited, credited.c.invoice_id == c.id)
        .outerjoin(allocated, allocated.c.invoice_id == c.id)
        .where(
            c.state == "final",
            c.finalized_at + terms.payment_terms * DAY < now,
            remaining > 0,
        )
        .order_by(c.account, c.finalized_at, c.period_start, c.id)
    )
    if accounts is not None:
        query = query.where(c.account.in_(list(accounts)))
    found: dict[str, Overdue] = {}
    for row in connection.execute(query):
        if row.account not in found:
            found[row.account] = Overdue(
                row.account, row.id, row.number, row.finalized_at + terms.payment_terms * DAY,
                int(row[6]), row.currency, row.minor_digits,
            )  # fmt: skip
    return found


def _set(connection: Connection, account: str, state: str, now: int) -> None:
    connection.execute(
        update(payment_accounts)
        .where(payment_accounts.c.account == account)
        .values(dunning=state, dunning_since=None if state == "none" else now, updated_at=now)
    )


def plan_dunning(connection: Connection, now: int, terms: DunningTerms) -> DunningPlan:
    """One dunning step at ``now``: record the reminders (and the accounts back to
    ``none`` that were only reminded), and say which accounts to bar and to lift (the
    caller changes their status, then calls :func:`mark_barred` / :func:`mark_lifted`)."""
    plan = DunningPlan(now)
    overdue = overdue_invoices(connection, now, terms)
    c = payment_accounts.c
    states = {
        row.account: row.dunning
        for row in connection.execute(select(c.account, c.dunning).where(c.dunning != "none"))
    }
    for account, found in sorted(overdue.items()):
        wanted, current = terms.state_after(found.days(now)), states.get(account, "none")
        if wanted == "barred" and current != "barred":
            plan.to_bar.append(found)
        elif wanted == "reminder" and current == "none":
            lock_account(connection, account, AccountMoney(found.currency, found.minor_digits), now)
            _set(connection, account, "reminder", now)
            record_event(
                connection, "payment_reminder", now, actor="dunning", invoice=found.invoice_id,
                details={"account": account, "days_overdue": found.days(now),
                         "remaining_minor": found.remaining, "due_at": found.due_at},
            )  # fmt: skip
            plan.reminded.append(found)
    for account, current in sorted(states.items()):
        if account in overdue:
            continue
        if current == "barred":
            plan.to_lift.append(account)
        else:
            _set(connection, account, "none", now)
            plan.cleared.append(account)
    return plan


def settled_barred(
    connection: Connection, accounts: Iterable[str], now: int, terms: DunningTerms
) -> list[str]:
    """Which of ``accounts`` dunning barred and have nothing overdue any more."""
    wanted = list(accounts)
    c = payment_accounts.c
    barred = list(
        connection.execute(
            select(c.account).where(c.account.in_(wanted), c.dunning == "barred")
        ).scalars()
    )
    if not barred:
        return []
    still = overdue_invoices(connection, now, terms, barred)
    return [account for account in barred if account not in still]


def mark_barred(connection: Connection, found: Overdue, now: int) -> None:
    """Record that dunning barred ``found.account`` for ``found.invoice_id``."""
    lock_account(connection, found.account, AccountMoney(found.currency, found.minor_digits), now)
    _set(connection, found.account, "barred", now)
    record_event(
        connection, "account_barred_dunning", now, actor="dunning", invoice=found.invoice_id,
        details={"account": found.account, "days_overdue": found.days(now),
                 "remaining_minor": found.remaining},
    )  # fmt: skip


def mark_lifted(connection: Connection, account: str, now: int, *, status: str | None) -> None:
    """Record that the dunning bar of ``account`` is lifted (``status``: what the
    account's status is now, None when it was no longer barred)."""
    _set(connection, account, "none", now)
    record_event(
        connection, "account_bar_lifted", now, actor="dunning",
        details={"account": account, "status": status},
    )  # fmt: skip
