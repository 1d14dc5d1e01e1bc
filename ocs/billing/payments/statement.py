"""The statement of an invoice: the summary box of its document (previous balance,
payments received since the previous invoice, new charges, amount due).

An account's **balance** at an instant ``t`` is what it owes then: the totals of its
invoices finalised by ``t`` (and not voided by then) less the credit notes finalised
by ``t``, less the payments received by ``t``, plus the refunds paid out by ``t``
(negative: credit in the customer's favour). For an invoice finalised at ``T`` whose
account's previous invoice was finalised at ``P``::

    amount_due = previous_balance - payments + refunds + adjustments + new_charges

* ``previous_balance``: the balance at ``P`` (0 without a previous invoice);
* ``payments``, ``refunds``: received or paid out in ``(P, T]``;
* ``adjustments``: credit notes and voids of earlier invoices in ``(P, T]``
  (negative: in the customer's favour);
* ``new_charges``: this invoice's total less its own final credit notes (0 void).

so ``amount_due`` is the balance at ``T`` with this invoice's own corrections. A draft
has no ``T``: the caller says when (``at``), as the documents print a draft's date.
All amounts are micro-units (whole minor units), read in the caller's connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, or_, select, tuple_

from ocs.billing.schema import credit_notes, invoices, payments, refunds

__all__ = ["Statement", "statement"]


@dataclass(frozen=True, slots=True)
class Statement:
    """The summary of one invoice of ``account`` (see the module doc)."""

    account: str
    invoice_id: str
    currency: str
    minor_digits: int
    previous_invoice_id: str | None
    previous_balance: int
    payments: int
    refunds: int
    adjustments: int
    new_charges: int

    @property
    def amount_due(self) -> int:
        """What the account owes with this invoice (negative: its credit)."""
        return (
            self.previous_balance
            - self.payments
            + self.refunds
            + self.adjustments
            + self.new_charges
        )


def _sum(connection: Connection, query: Any) -> int:
    return int(connection.execute(query).scalar_one() or 0)


def _charges(connection: Connection, account: str, invoice_id: str, t: int | None) -> int:
    """Invoices less credit notes of ``account`` but ``invoice_id``, as they stood at
    ``t`` (None: before anything)."""
    if t is None:
        return 0
    c = invoices.c
    billed = _sum(
        connection,
        select(func.sum(c.total_minor)).where(
            c.account == account,
            c.id != invoice_id,
            c.state != "draft",
            c.finalized_at <= t,
            or_(c.voided_at.is_(None), c.voided_at > t),
        ),
    )
    n = credit_notes.c
    credited = _sum(
        connection,
        select(func.sum(n.total_minor)).where(
            n.account == account,
            n.invoice_id != invoice_id,
            n.state == "final",
            n.finalized_at <= t,
        ),
    )
    return billed - credited


def _money_moved(connection: Connection, account: str, t: int | None) -> tuple[int, int]:
    """Payments received and refunds paid out by ``t`` (None: 0, 0)."""
    if t is None:
        return 0, 0
    paid = _sum(
        connection,
        select(func.sum(payments.c.amount_minor)).where(
            payments.c.account == account, payments.c.received_at <= t
        ),
    )
    returned = _sum(
        connection,
        select(func.sum(refunds.c.amount_minor)).where(
            refunds.c.account == account, refunds.c.refunded_at <= t
        ),
    )
    return paid, returned


def statement(
    connection: Connection, account: str, invoice_id: str, *, at: int | None = None
) -> Statement:
    """The statement of ``invoice_id`` of ``account``, as of its finalisation (a draft:
    as of ``at``, required then). LookupError for an invoice that is not the account's."""
    c = invoices.c
    row = connection.execute(
        select(invoices).where(c.id == invoice_id, c.account == account)
    ).one_or_none()
    if row is None:
        raise LookupError(f"account {account!r} has no invoice {invoice_id!r}")
    t = row.finalized_at if row.finalized_at is not None else at
    if t is None:
        raise ValueError(f"invoice {invoice_id!r} is a draft: say when its statement is (at)")
    previous = connection.execute(
        select(c.id, c.finalized_at)
        .where(
            c.account == account,
            c.id != invoice_id,
            c.state != "draft",
            tuple_(c.finalized_at, c.id) < tuple_(t, invoice_id),
        )
        .order_by(c.finalized_at.desc(), c.id.desc())
        .limit(1)
    ).one_or_none()
    p = None if previous is None else int(previous.finalized_at)
    paid_before, returned_before = _money_moved(connection, account, p)
    paid_now, returned_now = _money_moved(connection, account, t)
    charges_before = _charges(connection, account, invoice_id, p)
    n = credit_notes.c
    own_credits = _sum(
        connection,
        select(func.sum(n.total_minor)).where(n.invoice_id == invoice_id, n.state == "final"),
    )
    return Statement(
        account=account,
        invoice_id=invoice_id,
        currency=row.currency,
        minor_digits=row.minor_digits,
        previous_invoice_id=None if previous is None else previous.id,
        previous_balance=charges_before - paid_before + returned_before,
        payments=paid_now - paid_before,
        refunds=returned_now - returned_before,
        adjustments=_charges(connection, account, invoice_id, t) - charges_before,
        new_charges=0 if row.state == "void" else int(row.total_minor) - own_credits,
    )
