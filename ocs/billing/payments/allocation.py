"""Payments, refunds and their allocation to final invoices (docs/invoicing.md, "Payments").

Money an account pays is allocated to its open final invoices, **oldest first** (by
``finalized_at``, then period and id). What is left is the account's **credit**, kept
in ``payment_accounts.credit_minor`` and put on the next invoice when it is finalised
(:func:`settle`, called by :func:`ocs.billing.numbering.finalize_invoice`). Voiding an
invoice, or a credit note that leaves it owing less than was allocated to it, releases
the allocations (newest first) back to credit. A final invoice that owes less than 0
(a goodwill adjustment above the month's charges) is credit too, as the statement counts
it; voiding it takes that credit back. For every account, always::

    Σ live allocations + credit = Σ payments - Σ refunds + Σ |negative final invoices|

(a negative invoice's amount owed is its total less its final credit notes) and no invoice is allocated more than it owes (``total - final credit notes``), so its
remaining amount is never negative. All amounts are integers: micro-units that are
whole minor units of the account's currency.

Every function runs in the caller's transaction. The account's ``payment_accounts`` row
is locked first (``SELECT ... FOR UPDATE``; SQLite's write lock is taken at ``BEGIN
IMMEDIATE``), so concurrent payments of one account queue and never allocate the same
credit twice. Errors carry their HTTP meaning (``status``) and the field they are about,
and are mapped in :mod:`ocs.api.errors`.

This module imports only the schema: the numbering and lifecycle modules call it.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ocs.billing.schema import (
    PAYMENT_METHODS,
    credit_notes,
    invoices,
    payment_accounts,
    payment_allocations,
    payments,
    refunds,
)
from quota_engine.money import format_money

__all__ = [
    "AccountMoney",
    "CreditSpent",
    "MAX_CLOCK_SKEW",
    "MAX_MICRO",
    "IdempotencyConflict",
    "InvoiceBalance",
    "PaymentError",
    "PaymentRefused",
    "PaymentRequest",
    "Recorded",
    "RefundRequest",
    "Settlement",
    "UnknownAccount",
    "account_credit",
    "account_money",
    "money_in",
    "check_not_future",
    "invoice_balances",
    "lock_account",
    "paid_of",
    "parse_amount",
    "record_payment",
    "refund_credit",
    "settle",
]

_MICRO_DIGITS = 6
#: The largest amount in micro-units: the BIGINT columns' (2**63 - 1, 9,223,372,036,854
#: in a currency of 2 decimals). Fifteen integer digits would not fit: refused as a
#: malformed amount (an import line, 422 on the API) rather than failing the database.
MAX_MICRO = 2**63 - 1
_AMOUNT = re.compile(r"([0-9]{1,15})(?:\.([0-9]+))?")


class PaymentError(Exception):
    """A payment, refund or import line refused; ``status`` is its HTTP status and
    ``field`` the part of the request it is about."""

    status = 422

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownAccount(PaymentError):
    """The billing database knows nothing of the account (404)."""

    status = 404


class PaymentRefused(PaymentError):
    """The request means something refused: another currency, a refund above the
    credit, an amount with more decimals than the currency has (422)."""

    status = 422


class IdempotencyConflict(PaymentError):
    """The Idempotency-Key (or external id) was used for a different request (409)."""

    status = 409


@dataclass(frozen=True, slots=True)
class AccountMoney:
    """The currency an account is billed in and its minor digits (2 for EUR)."""

    currency: str
    minor_digits: int


def parse_amount(text: str, minor_digits: int) -> int:
    """The micro-units of a positive decimal amount written with at most ``minor_digits``
    decimals (``"12.5"`` -> ``12_500_000``), parsed with :class:`~decimal.Decimal`,
    never a float; ValueError saying why otherwise (not a number, zero or negative, more
    decimals than the currency has, more than :data:`MAX_MICRO`)."""
    match = _AMOUNT.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an amount such as 12.50: {text.strip()[:40]!r}")
    fraction = match.group(2) or ""
    if len(fraction) > minor_digits:
        raise ValueError(
            f"{text.strip()!r} has {len(fraction)} decimals, the currency has {minor_digits}"
        )
    value = Decimal(text.strip()).scaleb(_MICRO_DIGITS)
    micro = int(value)
    if micro != value:  # cannot happen with at most 6 decimals; kept as the proof
        raise ValueError(f"{text!r} is not a whole number of micro-units")
    if micro <= 0:
        raise ValueError("must be more than 0")
    if micro > MAX_MICRO:
        raise ValueError(f"{text.strip()!r} is more than the largest amount a payment holds")
    return micro


def _check_whole(amount_micro: int, money: AccountMoney, field: str) -> None:
    if type(amount_micro) is not int or amount_micro <= 0:
        raise PaymentRefused(f"the amount must be more than 0, not {amount_micro}", field=field)
    if amount_micro > MAX_MICRO:
        raise PaymentRefused(f"the amount must be at most {MAX_MICRO} micro-units", field=field)
    if amount_micro % 10 ** (_MICRO_DIGITS - money.minor_digits):
        raise PaymentRefused(
            f"{format_money(amount_micro, money.currency, _MICRO_DIGITS)} has more decimals "
            f"than {money.currency}'s {money.minor_digits}",
            field=field,
        )


#: How far ahead of the recording clock a payment's or refund's date may be: the payer's
#: or the bank's clock may run a little ahead. More is refused (422): money received in
#: the future would count on statements and dunning before it arrived.
MAX_CLOCK_SKEW = 300


def check_not_future(at: int | None, now: int, field: str) -> None:
    """Refuse (:class:`PaymentRefused`) a date ``at`` more than :data:`MAX_CLOCK_SKEW`
    seconds after ``now``; None (recorded now) is fine."""
    if at is not None and at > now + MAX_CLOCK_SKEW:
        raise PaymentRefused(
            f"the date is {at - now} seconds in the future: money is recorded once it has "
            f"moved (at most {MAX_CLOCK_SKEW} seconds ahead of this clock)",
            field=field,
        )


def _fingerprint(request: Any) -> str:
    text = json.dumps(asdict(request), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _derived_id(prefix: str, *parts: str) -> str:
    return prefix + hashlib.blake2b("\0".join(parts).encode(), digest_size=10).hexdigest()


# --------------------------------------------------------------------------- accounts


def money_in(
    connection: Connection, account: str, currency: str, known: AccountMoney | None = None
) -> AccountMoney:
    """:func:`account_money`, refused (422 naming ``amount.unit``) unless it is
    ``currency``: a payment or refund is in the currency the account is billed in."""
    money = account_money(connection, account, known)
    if currency != money.currency:
        raise PaymentRefused(
            f"account {account!r} is billed in {money.currency}, not {currency}",
            field="amount.unit",
        )
    return money


def account_money(
    connection: Connection, account: str, known: AccountMoney | None = None
) -> AccountMoney:
    """The account's currency: as its payments have it, else as its latest invoice, else
    ``known`` (the caller read the account elsewhere: Redis, the catalog); else
    :class:`UnknownAccount`."""
    row = connection.execute(
        select(payment_accounts.c.currency, payment_accounts.c.minor_digits).where(
            payment_accounts.c.account == account
        )
    ).one_or_none()
    if row is None:
        row = connection.execute(
            select(invoices.c.currency, invoices.c.minor_digits)
            .where(invoices.c.account == account)
            .order_by(invoices.c.created_at.desc(), invoices.c.id)
            .limit(1)
        ).one_or_none()
    if row is not None:
        return AccountMoney(row.currency, row.minor_digits)
    if known is not None:
        return known
    raise UnknownAccount(
        f"no account {account!r} in the billing database (no invoice, no payment)",
        field="account.id",
    )


def lock_account(
    connection: Connection, account: str, money: AccountMoney | None, now: int
) -> Row[Any] | None:
    """The account's ``payment_accounts`` row, locked (created first from ``money``)."""
    if money is not None:
        values = {
            "account": account,
            "currency": money.currency,
            "minor_digits": money.minor_digits,
            "updated_at": now,
        }
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        connection.execute(dialect.insert(payment_accounts).values(values).on_conflict_do_nothing())
    query = select(payment_accounts).where(payment_accounts.c.account == account)
    return connection.execute(query.with_for_update()).one_or_none()


def account_credit(connection: Connection, account: str) -> int:
    """The account's open credit in micro-units (0 for an account that never paid)."""
    credit = connection.execute(
        select(payment_accounts.c.credit_minor).where(payment_accounts.c.account == account)
    ).scalar_one_or_none()
    return int(credit or 0)


# --------------------------------------------------------------------------- balances


@dataclass(frozen=True, slots=True)
class InvoiceBalance:
    """What an invoice owes: ``due`` (its total less its final credit notes; 0 void),
    ``paid`` (its live allocations) and ``remaining`` (``due - paid``, never negative)."""

    invoice_id: str
    state: str
    due: int
    paid: int

    @property
    def remaining(self) -> int:
        return max(self.due - self.paid, 0)


def paid_of(connection: Connection, invoice_ids: Sequence[str]) -> dict[str, int]:
    """The live allocations of each invoice (absent: nothing paid)."""
    if not invoice_ids:
        return {}
    a = payment_allocations.c
    return {
        invoice: int(total)
        for invoice, total in connection.execute(
            select(a.invoice_id, func.sum(a.amount_minor))
            .where(a.invoice_id.in_(list(invoice_ids)), a.released_at.is_(None))
            .group_by(a.invoice_id)
        )
    }


def invoice_balances(connection: Connection, account: str) -> list[InvoiceBalance]:
    """The account's final and void invoices, oldest first (the allocation order)."""
    notes = credit_notes.c
    credited = (
        select(notes.invoice_id, func.sum(notes.total_minor).label("credited"))
        .where(notes.account == account, notes.state == "final")
        .group_by(notes.invoice_id)
        .subquery()
    )
    a = payment_allocations.c
    allocated = (
        select(a.invoice_id, func.sum(a.amount_minor).label("paid"))
        .where(a.account == account, a.released_at.is_(None))
        .group_by(a.invoice_id)
        .subquery()
    )
    c = invoices.c
    rows = connection.execute(
        select(
            c.id,
            c.state,
            c.total_minor,
            func.coalesce(credited.c.credited, 0).label("credited"),
            func.coalesce(allocated.c.paid, 0).label("paid"),
        )
        .outerjoin(credited, credited.c.invoice_id == c.id)
        .outerjoin(allocated, allocated.c.invoice_id == c.id)
        .where(c.account == account, c.state != "draft")
        .order_by(c.finalized_at, c.period_start, c.id)
    )
    return [
        InvoiceBalance(
            row.id,
            row.state,
            0 if row.state == "void" else int(row.total_minor) - int(row.credited),
            int(row.paid),
        )
        for row in rows
    ]


# --------------------------------------------------------------------------- settling


@dataclass(frozen=True, slots=True)
class Settlement:
    """What :func:`settle` did: the allocations it made (invoice id, amount), the money
    it released back to credit, and the credit left."""

    allocated: tuple[tuple[str, int], ...] = ()
    released: int = 0
    credit: int = 0


class CreditSpent(PaymentError):
    """Voiding (or crediting) an invoice would take back credit that is gone: the
    credit a negative invoice gave was refunded already (409)."""

    status = 409


def _negative(balances: Sequence[InvoiceBalance]) -> int:
    """The credit the account's negative final invoices give (their owed amount below
    0: a goodwill adjustment or refunds above the month's charges; a void one gives
    nothing, so voiding it takes its credit back)."""
    return sum(-balance.due for balance in balances if balance.state == "final" and balance.due < 0)


def settle(
    connection: Connection, account: str, now: int, *, payment_id: str | None = None
) -> Settlement:
    """Bring the account's allocations in line with its invoices: release what void
    invoices (or credit notes) no longer owe, then allocate the credit to the open final
    invoices oldest first. ``payment_id`` names the payment being allocated (None:
    carried credit). Nothing to do for an account that never paid and has no negative
    final invoice.

    The credit is ``Σ payments - Σ refunds + Σ |negative final invoices| - Σ live
    allocations``. When a void takes a negative invoice's credit back after it was
    allocated, the newest invoices' allocations are released to make it up (they are
    open again); when it was refunded, :class:`CreditSpent`, and the caller's
    transaction (the void) is rolled back."""
    row = lock_account(connection, account, None, now)
    balances = invoice_balances(connection, account)
    if row is None:
        if not _negative(balances):
            return Settlement()
        lock_account(connection, account, account_money(connection, account), now)
    a = payment_allocations.c
    released = 0
    for balance in balances:
        keep = max(balance.due, 0)
        if balance.paid > keep:
            released += _release(connection, balance.invoice_id, balance.paid - keep, now)
    received = select(func.coalesce(func.sum(payments.c.amount_minor), 0)).where(
        payments.c.account == account
    )
    returned = select(func.coalesce(func.sum(refunds.c.amount_minor), 0)).where(
        refunds.c.account == account
    )
    live = select(func.coalesce(func.sum(a.amount_minor), 0)).where(
        a.account == account, a.released_at.is_(None)
    )
    credit = _negative(balances) + int(
        connection.execute(
            select(received.scalar_subquery() - returned.scalar_subquery() - live.scalar_subquery())
        ).scalar_one()
    )
    if credit < 0:  # a negative invoice voided: its credit back from the newest invoices
        if released:
            balances = invoice_balances(connection, account)
        for balance in reversed(balances):
            if credit >= 0:
                break
            if balance.paid > 0:
                amount = min(balance.paid, -credit)
                released += _release(connection, balance.invoice_id, amount, now)
                credit += amount
        if credit < 0:
            raise CreditSpent(
                f"account {account!r} would owe {-credit} micro-units of credit it was "
                "refunded: the credit of the negative invoice was paid out already",
                field="account.id",
            )
    made = []
    if released:
        balances = invoice_balances(connection, account)
    for balance in balances:
        if credit <= 0:
            break
        if balance.state != "final" or balance.remaining <= 0:
            continue
        amount = min(credit, balance.remaining)
        connection.execute(
            insert(payment_allocations).values(
                account=account,
                invoice_id=balance.invoice_id,
                payment_id=payment_id,
                amount_minor=amount,
                allocated_at=now,
            )
        )
        made.append((balance.invoice_id, amount))
        credit -= amount
    connection.execute(
        update(payment_accounts)
        .where(payment_accounts.c.account == account)
        .values(credit_minor=credit, updated_at=now)
    )
    return Settlement(tuple(made), released, credit)


def _release(connection: Connection, invoice_id: str, excess: int, now: int) -> int:
    """Release ``excess`` of the invoice's live allocations, newest first; an allocation
    released in part is replaced by one of the part that stays. Returns ``excess``."""
    a = payment_allocations.c
    rows = connection.execute(
        select(payment_allocations)
        .where(a.invoice_id == invoice_id, a.released_at.is_(None))
        .order_by(a.allocated_at.desc(), a.id.desc())
    ).all()
    left = excess
    for row in rows:
        if left <= 0:
            break
        connection.execute(
            update(payment_allocations).where(a.id == row.id).values(released_at=now)
        )
        if row.amount_minor > left:
            connection.execute(
                insert(payment_allocations).values(
                    account=row.account,
                    invoice_id=invoice_id,
                    payment_id=row.payment_id,
                    amount_minor=row.amount_minor - left,
                    allocated_at=row.allocated_at,
                )
            )
            left = 0
        else:
            left -= row.amount_minor
    return excess - left


# --------------------------------------------------------------------------- payments


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """A payment as the client gave it: ``amount_micro`` whole minor units of
    ``currency``; ``received_at`` None: when it is recorded."""

    account: str
    amount_micro: int
    currency: str
    method: str = "bank_transfer"
    received_at: int | None = None
    reference: str | None = None
    external_id: str | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class Recorded:
    """A payment or refund recorded (or found: ``replayed``), and what it settled."""

    id: str
    replayed: bool
    settlement: Settlement


def _replay(
    connection: Connection, table: Any, document: str, fingerprint: str, field: str, what: str
) -> bool:
    stored = connection.execute(
        select(table.c.fingerprint).where(table.c.id == document)
    ).scalar_one_or_none()
    if stored is None:
        return False
    if stored != fingerprint:
        raise IdempotencyConflict(f"{field} was used for another {what}", field=field)
    return True


def _check_method(method: str) -> None:
    if method not in PAYMENT_METHODS:
        raise PaymentRefused(
            f"unknown payment method {method!r} (one of {', '.join(PAYMENT_METHODS)})",
            field="paymentMethod",
        )


def record_payment(
    connection: Connection,
    request: PaymentRequest,
    *,
    now: int,
    key: str | None = None,
    source: str = "api",
    actor: str | None = None,
    known: AccountMoney | None = None,
) -> Recorded:
    """Record ``request`` and allocate it (:func:`settle`). Idempotent under ``key``
    (the Idempotency-Key) or, without one, under ``request.external_id``: the same
    request again records nothing and returns the first payment (``replayed``); another
    request under the same key or external id is :class:`IdempotencyConflict`.
    ``known``: the account's currency when the billing database may not know it yet (a
    first payment before the first invoice)."""
    _check_method(request.method)
    money = money_in(connection, request.account, request.currency, known)
    _check_whole(request.amount_micro, money, "amount.value")
    check_not_future(request.received_at, now, "paymentDate")
    lock_account(connection, request.account, money, now)
    fingerprint = _fingerprint(request)
    if key is not None:
        payment_id = _derived_id("pay_", request.account, key)
        field = "Idempotency-Key"
    elif request.external_id is not None:
        payment_id = _derived_id("pay_", "external", request.external_id)
        field = "externalId"
    else:
        payment_id, field = "pay_" + secrets.token_hex(10), ""
    if field and _replay(connection, payments, payment_id, fingerprint, field, "payment"):
        return Recorded(
            payment_id, True, Settlement(credit=account_credit(connection, request.account))
        )
    if request.external_id is not None:
        other = connection.execute(
            select(payments.c.id).where(payments.c.external_id == request.external_id)
        ).scalar_one_or_none()
        if other is not None:
            raise IdempotencyConflict(
                f"external id {request.external_id!r} is payment {other!r} already",
                field="externalId",
            )
    connection.execute(
        insert(payments).values(
            id=payment_id,
            account=request.account,
            currency=money.currency,
            minor_digits=money.minor_digits,
            amount_micro=request.amount_micro,
            amount_minor=request.amount_micro,
            method=request.method,
            reference=request.reference,
            external_id=request.external_id,
            idempotency_key=key,
            fingerprint=fingerprint,
            source=source,
            actor=actor,
            description=request.description,
            received_at=now if request.received_at is None else request.received_at,
            created_at=now,
        )
    )
    return Recorded(
        payment_id, False, settle(connection, request.account, now, payment_id=payment_id)
    )


# --------------------------------------------------------------------------- refunds


@dataclass(frozen=True, slots=True)
class RefundRequest:
    """Credit to give back: at most the account's open credit."""

    account: str
    amount_micro: int
    currency: str
    method: str = "bank_transfer"
    reference: str | None = None
    reason: str = ""
    refunded_at: int | None = None


def refund_credit(
    connection: Connection,
    request: RefundRequest,
    *,
    now: int,
    key: str | None = None,
    actor: str | None = None,
) -> Recorded:
    """Give back ``request.amount_micro`` of the account's credit; refused
    (:class:`PaymentRefused`) above the credit, :class:`UnknownAccount` for an account
    that never paid. Idempotent under ``key`` as :func:`record_payment`."""
    _check_method(request.method)
    if lock_account(connection, request.account, None, now) is None:
        raise UnknownAccount(
            f"account {request.account!r} has no payments: there is no credit to refund",
            field="account.id",
        )
    money = money_in(connection, request.account, request.currency)
    _check_whole(request.amount_micro, money, "amount.value")
    check_not_future(request.refunded_at, now, "refundDate")
    fingerprint = _fingerprint(request)
    refund_id = _derived_id("ref_", request.account, key) if key else "ref_" + secrets.token_hex(10)
    if key and _replay(connection, refunds, refund_id, fingerprint, "Idempotency-Key", "refund"):
        return Recorded(
            refund_id, True, Settlement(credit=account_credit(connection, request.account))
        )
    credit = settle(connection, request.account, now).credit
    if request.amount_micro > credit:
        asked = format_money(request.amount_micro, money.currency, money.minor_digits)
        raise PaymentRefused(
            f"a refund of {asked} is more than the credit of account {request.account!r}: "
            f"{format_money(credit, money.currency, money.minor_digits)}",
            field="amount.value",
        )
    connection.execute(
        insert(refunds).values(
            id=refund_id,
            account=request.account,
            currency=money.currency,
            minor_digits=money.minor_digits,
            amount_micro=request.amount_micro,
            amount_minor=request.amount_micro,
            method=request.method,
            reference=request.reference,
            idempotency_key=key,
            fingerprint=fingerprint,
            actor=actor,
            reason=request.reason,
            refunded_at=now if request.refunded_at is None else request.refunded_at,
            created_at=now,
        )
    )
    left = credit - request.amount_micro
    connection.execute(
        update(payment_accounts)
        .where(payment_accounts.c.account == request.account)
        .values(credit_minor=left, updated_at=now)
    )
    return Recorded(refund_id, False, Settlement(credit=left))
