"""Payments and refunds as TMF676 JSON (docs/api.md, "API: /v1/payment").

TMF676 names: ``id``, ``href``, ``account`` ``{id, href}``, ``amount`` (TMF ``Money``
with an exact decimal string, :func:`~ocs.billing.representation.money`),
``paymentMethod`` ``{id, name}`` (``bank_transfer``, ``card``, ...), ``channel``
``{name}`` (how it reached us: ``api``, ``cli``, ``import``), ``paymentDate`` (when it
was received), ``status`` (``succeeded``: a recorded payment is money received),
``statusDate`` (when it was recorded), ``correlatorId`` (the bank's or gateway's id:
the import's external id), ``description``, and ``paymentItem``: the bills it paid,
each ``{item: {id, href, @referredType: CustomerBill}, amount}`` (money of carried
credit is on the bill, not on a payment's items). Ours: ``reference`` (what the payer
wrote: an invoice number, an account id). A refund: ``refundDate``, ``reason``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, select

from ocs.billing.payments.allocation import (
    PaymentError,
    account_credit,
    account_money,
    invoice_balances,
)
from ocs.billing.representation import money, timestamp
from ocs.billing.schema import invoices, payment_accounts, payment_allocations, payments, refunds

__all__ = [
    "PaymentNotFound",
    "list_payments",
    "list_refunds",
    "parse_instant",
    "payment",
    "payment_balance",
    "refund",
]

DAY = 86_400
PAYMENT_PATH = "/v1/payment/"
REFUND_PATH = "/v1/refund/"


class PaymentNotFound(PaymentError):
    status = 404


def parse_instant(text: str) -> int:
    """Unix seconds of an ISO 8601 date-time with its offset (``2026-11-03T10:00:00Z``,
    ``...+01:00``) or a date (midnight UTC); ValueError otherwise."""
    try:
        if len(text) == 10:
            parsed = datetime.fromisoformat(text + "T00:00:00+00:00")
        else:
            parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or date-time: {text[:40]!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset (add Z or +01:00)")
    return int(parsed.timestamp())


def _account(account: str) -> dict[str, str]:
    return {"id": account, "href": f"/v1/accounts/{account}"}


def _payments(connection: Connection, rows: list[Row[Any]]) -> list[dict[str, Any]]:
    items: dict[str, list[Any]] = {}
    if rows:
        a = payment_allocations.c
        for item in connection.execute(
            select(a.payment_id, a.invoice_id, func.sum(a.amount_minor).label("amount"))
            .where(a.payment_id.in_([row.id for row in rows]), a.released_at.is_(None))
            .group_by(a.payment_id, a.invoice_id)
            .order_by(a.payment_id, func.min(a.id))
        ):
            items.setdefault(item.payment_id, []).append(item)
    return [_payment(row, items.get(row.id, [])) for row in rows]


def _payment(row: Row[Any], items: list[Any]) -> dict[str, Any]:
    currency, digits = row.currency, row.minor_digits
    return {
        "id": row.id,
        "href": PAYMENT_PATH + row.id,
        "@type": "Payment",
        "account": _account(row.account),
        "amount": money(row.amount_minor, currency, digits),
        "totalAmount": money(row.amount_minor, currency, digits),
        "paymentMethod": {"id": row.method, "name": row.method},
        "channel": {"name": row.source},
        "paymentDate": timestamp(row.received_at),
        "status": "succeeded",
        "statusDate": timestamp(row.created_at),
        "correlatorId": row.external_id,
        "reference": row.reference,
        "description": row.description,
        "paymentItem": [
            {
                "item": {
                    "id": item.invoice_id,
                    "href": f"/v1/customerBill/{item.invoice_id}",
                    "@referredType": "CustomerBill",
                },
                "amount": money(int(item.amount), currency, digits),
            }
            for item in items
        ],
    }


def payment(connection: Connection, payment_id: str) -> dict[str, Any]:
    row = connection.execute(select(payments).where(payments.c.id == payment_id)).one_or_none()
    if row is None:
        raise PaymentNotFound(f"no payment {payment_id!r}", field="id")
    return _payments(connection, [row])[0]


def list_payments(
    connection: Connection, *, account: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[int, list[dict[str, Any]]]:
    """``(how many, one page)`` of the payments (of ``account``), newest first."""
    c = payments.c
    where = [] if account is None else [c.account == account]
    total = connection.execute(select(func.count()).select_from(payments).where(*where))
    rows = connection.execute(
        select(payments)
        .where(*where)
        .order_by(c.received_at.desc(), c.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return int(total.scalar_one()), _payments(connection, list(rows))


def _refund(row: Row[Any]) -> dict[str, Any]:
    currency, digits = row.currency, row.minor_digits
    return {
        "id": row.id,
        "href": REFUND_PATH + row.id,
        "@type": "Refund",
        "account": _account(row.account),
        "amount": money(row.amount_minor, currency, digits),
        "totalAmount": money(row.amount_minor, currency, digits),
        "paymentMethod": {"id": row.method, "name": row.method},
        "refundDate": timestamp(row.refunded_at),
        "status": "succeeded",
        "statusDate": timestamp(row.created_at),
        "reference": row.reference,
        "reason": row.reason,
    }


def refund(connection: Connection, refund_id: str) -> dict[str, Any]:
    row = connection.execute(select(refunds).where(refunds.c.id == refund_id)).one_or_none()
    if row is None:
        raise PaymentNotFound(f"no refund {refund_id!r}", field="id")
    return _refund(row)


def list_refunds(
    connection: Connection, *, account: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[int, list[dict[str, Any]]]:
    """``(how many, one page)`` of the refunds (of ``account``), newest first."""
    c = refunds.c
    where = [] if account is None else [c.account == account]
    total = connection.execute(select(func.count()).select_from(refunds).where(*where))
    rows = connection.execute(
        select(refunds)
        .where(*where)
        .order_by(c.refunded_at.desc(), c.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return int(total.scalar_one()), [_refund(row) for row in rows]


def payment_balance(connection: Connection, account: str, *, payment_terms: int) -> dict[str, Any]:
    """What the account owes and holds: its open final bills (oldest first, with their
    due dates), their sum ``amountDue``, its ``credit`` and its dunning state; an account
    the billing database does not know is :class:`~.allocation.UnknownAccount`."""
    money_of = account_money(connection, account)
    currency, digits = money_of.currency, money_of.minor_digits
    open_bills = [b for b in invoice_balances(connection, account) if b.state == "final"]
    open_bills = [b for b in open_bills if b.remaining > 0]
    c = invoices.c
    rows = {
        row.id: row
        for row in connection.execute(
            select(c.id, c.number, c.finalized_at).where(
                c.id.in_([b.invoice_id for b in open_bills])
            )
        )
    }
    state = connection.execute(
        select(payment_accounts.c.dunning).where(payment_accounts.c.account == account)
    ).scalar_one_or_none()
    return {
        "account": _account(account),
        "amountDue": money(sum(b.remaining for b in open_bills), currency, digits),
        "credit": money(account_credit(connection, account), currency, digits),
        "dunningState": state or "none",
        "openBill": [
            {
                "id": b.invoice_id,
                "href": f"/v1/customerBill/{b.invoice_id}",
                "billNo": rows[b.invoice_id].number,
                "paymentDueDate": timestamp(rows[b.invoice_id].finalized_at + payment_terms * DAY),
                "amountDue": money(b.due, currency, digits),
                "remainingAmount": money(b.remaining, currency, digits),
            }
            for b in open_bills
        ],
    }
