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
``barring_days`` or more        ``barring`` (the intent, committed first), then
                                ``barred``: the account is barred (its status in Redis,
                                which aborts its open sessions with an ASR)
==============================  =========================================================

An account whose overdue invoices are all paid goes back to ``none``; one that dunning
barred is lifted back to ``active``. Only accounts dunning barred are lifted: a bar an
operator set is the operator's.

This module decides and records, in the billing database; it knows nothing of Redis.
The status change itself is composed at the ocs root (:mod:`ocs.payment_dunning`).
A bar is recorded in three steps, so that a crash anywhere leaves nothing dunning
forgets:

1. :func:`begin_bar`, one transaction with the account's payment row locked: the
   account is rechecked (a payment since the plan settled it: no bar) and the intent
   is committed, state ``barring``;
2. the account's status is set to ``barred`` (Redis);
3. :func:`complete_bar`: state ``barred`` if it is still ``barring`` and overdue;
   else (a payment lifted it in between) the caller lifts the bar it just set.

A crash after 1 leaves ``barring``: the next step completes it (status ``barred``
already: recorded; still ``active``: barred now) or, when the account was paid
meanwhile, lifts it. Lifting sets the status first and records after
(:func:`mark_lifted`): a crash in between repeats the lift.

A bar is dunning's while the account's status is the ``barred`` dunning set: an
account dunning recorded ``barred`` whose status is something else (an operator lifted,
suspended or closed it) is released (:func:`mark_lifted` with the status found, by
``operator``), so that a bar an operator sets afterwards is never lifted by dunning.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, func, select, update

from ocs.billing.invoices import record_event
from ocs.billing.payments.allocation import AccountMoney, lock_account
from ocs.billing.schema import credit_notes, invoices, payment_accounts, payment_allocations

__all__ = [
    "BARRED",
    "DunningPlan",
    "DunningTerms",
    "Overdue",
    "begin_bar",
    "complete_bar",
    "mark_lifted",
    "overdue_invoices",
    "plan_dunning",
    "settled_barred",
]

DAY = 86_400
#: The states in which dunning holds (or is setting) the account's bar.
BARRED = ("barring", "barred")


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
    #: of ``to_bar``, the accounts a step left ``barring`` (crashed before recording)
    resumed: list[str] = field(default_factory=list)
    #: accounts dunning barred that are still overdue (their bar is checked: still
    #: dunning's while their status is ``barred``)
    held: list[str] = field(default_factory=list)


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
        if current == "barring":  # a step crashed after recording the intent
            plan.to_bar.append(found)
            plan.resumed.append(account)
        elif current == "barred":
            plan.held.append(account)
        elif wanted == "barred":
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
        if current in BARRED:
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
            select(c.account).where(c.account.in_(wanted), c.dunning.in_(BARRED))
        ).scalars()
    )
    if not barred:
        return []
    still = overdue_invoices(connection, now, terms, barred)
    return [account for account in barred if account not in still]


def begin_bar(
    connection: Connection, found: Overdue, now: int, terms: DunningTerms
) -> Overdue | None:
    """Record the intent to bar ``found.account`` (state ``barring``), after checking
    again, with the account's payment row locked (a payment in flight commits first),
    that it is overdue for a bar: what it owes now (None: a payment since the plan
    settled it, or enough of it, and nothing is recorded). Commit before the status
    change."""
    lock_account(connection, found.account, AccountMoney(found.currency, found.minor_digits), now)
    again = overdue_invoices(connection, now, terms, [found.account]).get(found.account)
    if again is None or terms.state_after(again.days(now)) != "barred":
        return None
    current = connection.execute(
        select(payment_accounts.c.dunning).where(payment_accounts.c.account == found.account)
    ).scalar_one()
    if current != "barring":
        _set(connection, found.account, "barring", now)
    return again


def complete_bar(connection: Connection, found: Overdue, now: int, terms: DunningTerms) -> bool:
    """Record that dunning barred ``found.account`` (its status was set): True. False
    when it is no longer ``barring`` (a payment's lift came in between) or nothing of it
    is overdue any more: the caller lifts the bar it set."""
    lock_account(connection, found.account, AccountMoney(found.currency, found.minor_digits), now)
    current = connection.execute(
        select(payment_accounts.c.dunning).where(payment_accounts.c.account == found.account)
    ).scalar_one()
    if current != "barring" or not overdue_invoices(connection, now, terms, [found.account]):
        return False
    _set(connection, found.account, "barred", now)
    record_event(
        connection, "account_barred_dunning", now, actor="dunning", invoice=found.invoice_id,
        details={"account": found.account, "days_overdue": found.days(now),
                 "remaining_minor": found.remaining},
    )  # fmt: skip
    return True


def mark_lifted(
    connection: Connection, account: str, now: int, *, status: str | None, by: str = "dunning"
) -> None:
    """Record that the dunning bar of ``account`` is lifted (``status``: what the
    account's status is now, None for an unknown account). ``by``: ``dunning`` (paid),
    or ``operator`` when the status was no longer dunning's ``barred`` (an operator
    changed it): the bar is no longer dunning's, and dunning lifts nothing of it."""
    _set(connection, account, "none", now)
    record_event(
        connection, "account_bar_lifted", now, actor="dunning",
        details={"account": account, "status": status, "by": by},
    )  # fmt: skip
