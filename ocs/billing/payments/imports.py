"""Payment files from a bank or a payment gateway: CSV in, payments and a report out.

The file is CSV (UTF-8, a byte-order mark allowed, ``,`` or another delimiter) with a
header row naming at least these columns, in any order and case (others are ignored):

===============  =====================================================================
column           what it holds
===============  =====================================================================
``date``         when the money arrived: ``2026-12-05`` (midnight UTC) or an ISO 8601
                 date-time with its offset (``2026-12-05T10:00:00+01:00``)
``amount``       the amount received, a decimal with a dot and at most the currency's
                 decimals (``37.18``; no thousands separators, no sign)
``currency``     ISO 4217 (``EUR``): must be the account's
``reference``    what the payer wrote: an invoice number (``INV-000042``) or an account id
``payer``        the payer's account id, when the bank or gateway knows it (may be empty)
``external_id``  the bank's or gateway's unique id of the transfer
===============  =====================================================================

**Reconciliation.** A line is matched to an account by its reference: an invoice number
(that invoice's account; the amount is compared with what remains due on it, and a
difference is noted, the payment is recorded all the same and allocated oldest first
like any other), else an account the billing database knows (it has an invoice or a
payment), else its ``payer``. A matched line becomes a payment
(:func:`~ocs.billing.payments.allocation.record_payment`, channel ``import``).

**Idempotent.** A line whose external id is a payment already (imported before, or
recorded by hand or over the API with that id), of the same account and amount, is
counted as ``already imported`` and records nothing, so importing the same file twice
records nothing new; with another account or amount it is a ``duplicate``.

**The report** lists every line that became no payment, with its line number and why:
``malformed`` (a missing or unreadable field, a bad date), ``malformed amount`` (not a
decimal, zero or negative, more decimals than the currency has), ``unknown reference``,
``ambiguous reference`` (an invoice number of several billing entities), ``currency
mismatch``, ``duplicate`` (the external id twice in the file, or a payment of another
account or amount already). Each line is recorded in a savepoint of its own: a refused line leaves
nothing behind, the others are recorded.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, select

from ocs.billing.payments.allocation import (
    IdempotencyConflict,
    PaymentRefused,
    PaymentRequest,
    account_money,
    check_not_future,
    invoice_balances,
    parse_amount,
    record_payment,
)
from ocs.billing.payments.tmf import parse_instant
from ocs.billing.schema import invoices, payment_accounts, payments
from quota_engine.money import format_money

__all__ = ["COLUMNS", "ImportReport", "Matched", "Unmatched", "import_payments", "read_csv"]

COLUMNS = ("date", "amount", "currency", "reference", "payer", "external_id")


@dataclass(frozen=True, slots=True)
class Matched:
    """A line that became payment ``payment_id`` of ``account`` (or was one already)."""

    line: int
    external_id: str
    account: str
    payment_id: str
    amount_micro: int
    currency: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Unmatched:
    """A line that became no payment: ``kind`` and ``reason`` say why."""

    line: int
    external_id: str
    kind: str
    reason: str


@dataclass
class ImportReport:
    recorded: list[Matched] = field(default_factory=list)
    already: list[Matched] = field(default_factory=list)
    unmatched: list[Unmatched] = field(default_factory=list)

    @property
    def lines(self) -> int:
        return len(self.recorded) + len(self.already) + len(self.unmatched)


class _Refused(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def read_csv(text: str, delimiter: str = ",") -> list[tuple[int, dict[str, str]]]:
    """The rows of a payment file as ``(line number, {column: value})``, columns by
    their lower-case names; ValueError when the header lacks a column of
    :data:`COLUMNS`. A row with too few or too many fields is ``{"": ...}`` (malformed)."""
    reader = csv.reader(text.lstrip("\ufeff").splitlines(), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise ValueError("the file is empty: it needs a header row (" + ",".join(COLUMNS) + ")")
    names = [name.strip().lower() for name in header]
    missing = [column for column in COLUMNS if column not in names]
    if missing:
        raise ValueError(
            f"the header has no column {', '.join(missing)} (it needs {','.join(COLUMNS)})"
        )
    rows = []
    for fields in reader:
        if not any(part.strip() for part in fields):
            continue  # blank line
        if len(fields) != len(names):
            rows.append(
                (reader.line_num, {"": f"{len(fields)} fields, the header has {len(names)}"})
            )
            continue
        rows.append((reader.line_num, {n: v.strip() for n, v in zip(names, fields, strict=True)}))
    return rows


def _known_account(connection: Connection, account: str) -> bool:
    if not account:
        return False
    paid = connection.execute(
        select(payment_accounts.c.account).where(payment_accounts.c.account == account)
    ).first()
    if paid is not None:
        return True
    return (
        connection.execute(select(invoices.c.id).where(invoices.c.account == account)).first()
        is not None
    )


def _match(connection: Connection, reference: str, payer: str) -> tuple[str, str | None]:
    """``(account, invoice id or None)`` of a line's reference (or payer)."""
    if reference:
        c = invoices.c
        named = connection.execute(
            select(c.id, c.account).where(c.number == reference, c.state != "draft")
        ).all()
        if len(named) > 1:
            raise _Refused(
                "ambiguous reference",
                f"reference {reference!r} is the number of {len(named)} invoices (of several "
                "billing entities)",
            )
        if named:
            return named[0].account, named[0].id
        if _known_account(connection, reference):
            return reference, None
    if _known_account(connection, payer):
        return payer, None
    raise _Refused(
        "unknown reference",
        f"reference {reference!r} is no invoice number or account"
        + (f", payer {payer!r} no account" if payer else ", and there is no payer")
        + " the billing database knows",
    )


def _line(
    connection: Connection, row: dict[str, str], *, method: str, now: int, actor: str | None
) -> tuple[Matched, bool]:
    if "" in row:
        raise _Refused("malformed", row[""])
    external_id = row["external_id"]
    if not external_id:
        raise _Refused("malformed", "no external_id: a line cannot be imported without one")
    if len(external_id) > 200 or len(row["reference"]) > 200:
        raise _Refused("malformed", "external_id and reference hold at most 200 characters")
    try:
        received = parse_instant(row["date"])
        check_not_future(received, now, "date")
    except (ValueError, PaymentRefused) as exc:
        raise _Refused("malformed", f"date: {exc}") from None
    account, invoice_id = _match(connection, row["reference"], row["payer"])
    money = account_money(connection, account)
    currency = row["currency"].upper()
    if currency != money.currency:
        raise _Refused(
            "currency mismatch",
            f"{currency or 'no currency'}: account {account!r} is billed in {money.currency}",
        )
    try:
        amount = parse_amount(row["amount"], money.minor_digits)
    except ValueError as exc:
        raise _Refused("malformed amount", str(exc)) from None
    p = payments.c
    earlier = connection.execute(
        select(p.id, p.account, p.amount_minor, p.currency).where(p.external_id == external_id)
    ).one_or_none()
    if earlier is not None:  # imported before, or recorded by hand or over the API
        if (earlier.account, earlier.amount_minor, earlier.currency) == (account, amount, currency):
            return Matched(0, external_id, account, earlier.id, amount, currency), True
        raise _Refused(
            "duplicate",
            f"external id {external_id!r} is payment {earlier.id} of {earlier.account!r} "
            "already, with another amount or account",
        )
    note = ""
    if invoice_id is not None:
        due = next(
            (
                b.remaining
                for b in invoice_balances(connection, account)
                if b.invoice_id == invoice_id
            ),
            0,
        )
        if due != amount:
            note = (
                f"{format_money(amount, currency, money.minor_digits)} differs from the "
                f"{format_money(due, currency, money.minor_digits)} due on {row['reference']}"
            )
    request = PaymentRequest(
        account=account,
        amount_micro=amount,
        currency=currency,
        method=method,
        received_at=received,
        reference=row["reference"] or None,
        external_id=external_id,
    )
    try:
        recorded = record_payment(connection, request, now=now, source="import", actor=actor)
    except IdempotencyConflict:
        raise _Refused(
            "duplicate", f"external id {external_id!r} was recorded before with other values"
        ) from None
    return Matched(0, external_id, account, recorded.id, amount, currency, note), recorded.replayed


def import_payments(
    connection: Connection,
    rows: Iterable[tuple[int, dict[str, str]]],
    *,
    method: str = "bank_transfer",
    now: int,
    actor: str | None = None,
) -> ImportReport:
    """Reconcile and record the rows of a payment file (:func:`read_csv`) in the
    caller's transaction, each in a savepoint; the report of every line."""
    report = ImportReport()
    seen: dict[str, int] = {}
    for number, row in rows:
        external_id = row.get("external_id", "")
        if external_id and external_id in seen:
            report.unmatched.append(
                Unmatched(number, external_id, "duplicate",
                          f"external id {external_id!r} is on line {seen[external_id]} too")
            )  # fmt: skip
            continue
        if external_id:
            seen[external_id] = number
        savepoint = connection.begin_nested()
        try:
            matched, replayed = _line(connection, row, method=method, now=now, actor=actor)
        except _Refused as refused:
            savepoint.rollback()
            report.unmatched.append(Unmatched(number, external_id, refused.kind, str(refused)))
            continue
        savepoint.commit()
        matched = dataclasses.replace(matched, line=number)
        (report.already if replayed else report.recorded).append(matched)
    return report
