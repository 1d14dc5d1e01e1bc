"""What happens to an invoice after the bill run: finalise, void, credit notes.

draft -> final -> void. A draft changes (a bill run refreshes it) until it is finalised;
finalising assigns its gap-free number (:mod:`ocs.billing.numbering`). A final invoice
never changes (triggers refuse it); it can only be voided, which releases its records
so that the next bill run of the period bills them on a replacement invoice, or corrected
by a **credit note**: a document of its own, with its own gap-free number series, whose
lines each credit (part of) one line of the invoice, with the tax of that line's rate.

Every function runs in the caller's transaction and appends to the billing history.
Errors carry their meaning: :class:`DocumentNotFound` (HTTP 404), :class:`InvalidState`
(409: not a draft, not final, voided), :class:`InvalidCorrection` (422: a credit beyond
the line, an unknown line).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update

from ocs.billing.invoices import links_of, record_event
from ocs.billing.numbering import NotDraft, ensure_sequence, finalize_credit_note, finalize_invoice
from ocs.billing.payments.allocation import lock_account, settle
from ocs.billing.schema import (
    credit_note_items,
    credit_notes,
    invoice_item_records,
    invoice_items,
    invoices,
)
from quota_engine.money import round_ratio_to_minor_unit, round_to_minor_unit

__all__ = [
    "CreditLine",
    "DocumentNotFound",
    "InvalidCorrection",
    "InvalidState",
    "LifecycleError",
    "create_credit_note",
    "finalize",
    "void",
]

_PPM = 1_000_000


class LifecycleError(Exception):
    """A lifecycle action that cannot be done; ``status`` is its HTTP status, ``field``
    the part of the request it is about (None: the document itself or its state)."""

    status = 409

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DocumentNotFound(LifecycleError):
    status = 404


class InvalidState(LifecycleError):
    status = 409


class InvalidCorrection(LifecycleError):
    status = 422


def _invoice(connection: Connection, invoice_id: str, *, lock: bool = False) -> Row[Any]:
    query = select(invoices).where(invoices.c.id == invoice_id)
    row = connection.execute(query.with_for_update() if lock else query).one_or_none()
    if row is None:
        raise DocumentNotFound(f"no invoice {invoice_id!r}")
    return row


def _invoice_of_paying_account(connection: Connection, invoice_id: str, now: int) -> Row[Any]:
    """The invoice, locked after its account's payments (``payment_accounts``): the
    order a payment takes them in (account, then the invoices it pays), so that a void
    or credit note and a payment of one account queue instead of deadlocking."""
    account = _invoice(connection, invoice_id).account
    lock_account(connection, account, None, now)
    return _invoice(connection, invoice_id, lock=True)


def _tax_group(item: Row[Any]) -> tuple[str | None, int]:
    return item.tax_category, item.tax_rate_ppm or 0


def finalize(
    connection: Connection,
    invoice_id: str,
    *,
    now: int,
    actor: str | None,
    number_format: str | None = None,
) -> str:
    """Finalise the draft ``invoice_id``: its number. ``number_format``: create the
    entity's invoice series in that format if it has none yet."""
    row = _invoice(connection, invoice_id)
    if number_format is not None:
        ensure_sequence(connection, row.entity, "invoice", number_format)
    try:
        number = finalize_invoice(connection, invoice_id, now)
    except NotDraft as error:
        raise InvalidState(str(error)) from None
    record_event(
        connection,
        "invoice_finalized",
        now,
        actor=actor,
        invoice=invoice_id,
        details={"number": number},
    )
    return number


def void(
    connection: Connection, invoice_id: str, *, reason: str, now: int, actor: str | None
) -> None:
    """Void the final invoice ``invoice_id``: it keeps its number (numbers are never
    reused), and its records are released for the replacement the next bill run of the
    period makes. A draft is not voided (it has no number; a bill run remakes it), nor
    an invoice a credit note corrects (credit the rest instead)."""
    row = _invoice_of_paying_account(connection, invoice_id, now)
    state = row.state
    if state != "final":
        raise InvalidState(f"invoice {invoice_id!r} is {state}: only a final invoice is voided")
    if not reason.strip():
        raise InvalidCorrection("a reason is required to void an invoice", field="reason")
    notes = connection.execute(
        select(func.count())
        .select_from(credit_notes)
        .where(credit_notes.c.invoice_id == invoice_id)
    ).scalar_one()
    if notes:
        raise InvalidState(
            f"invoice {invoice_id!r} has {notes} credit note(s): correct it with another "
            "credit note rather than voiding it"
        )
    if row.off_cycle:
        # an off-cycle invoice's span is billed by nothing else once the period's cycle
        # invoice or a later off-cycle invoice exists: voiding it would lose that span
        c = invoices.c
        later = connection.execute(
            select(c.id).where(
                c.account == row.account,
                c.state != "void",
                c.id != invoice_id,
                c.period_end > row.period_start,
                c.period_start >= row.period_start,
            )
        ).first()
        if later is not None:
            raise InvalidState(
                f"invoice {invoice_id!r} is off-cycle and invoice {later.id!r} bills on from "
                "its end: credit it instead of voiding it"
            )
    connection.execute(
        update(invoices)
        .where(invoices.c.id == invoice_id)
        .values(state="void", voided_at=now, void_reason=reason)
    )
    connection.execute(
        update(invoice_item_records).where(links_of(invoice_id)).values(released=True)
    )
    settle(connection, row.account, now)  # its payments go back to the account's credit
    record_event(
        connection,
        "invoice_voided",
        now,
        actor=actor,
        invoice=invoice_id,
        details={"reason": reason},
    )


@dataclass(frozen=True, slots=True)
class CreditLine:
    """Credit ``amount_micro`` (before tax; None: what is left of the line) of the invoice
    line at ``position``."""

    position: int
    amount_micro: int | None = None
    description: str = ""


def create_credit_note(
    connection: Connection,
    invoice_id: str,
    lines: Sequence[CreditLine],
    *,
    reason: str,
    now: int,
    actor: str | None,
    number_format: str = "CN-{seq:06d}",
    key: str | None = None,
) -> tuple[str, str]:
    """A final credit note correcting the final invoice ``invoice_id``: ``(id, number)``.

    Each line credits part or all of one charge line of the invoice (never more than
    what earlier credit notes left of it). Tax is credited as the invoice charged it,
    per tax category and rate: the rate of everything credited so far at that rate,
    rounded once, less the tax earlier credits of that rate took (never more than the
    invoice's tax line); each credited line carries the part its amount adds. All the
    credits of an invoice at one tax rate never exceed what it charged at that rate
    after its discounts (a discounted line is credited at most its discounted part). ``key`` makes it idempotent: the
    same key gives back the credit note it made."""
    invoice = _invoice_of_paying_account(connection, invoice_id, now)
    state = invoice.state
    if state != "final":
        raise InvalidState(f"invoice {invoice_id!r} is {state}: only a final invoice is credited")
    if not lines:
        raise InvalidCorrection("a credit note needs at least one line", field="lines")
    if not reason.strip():
        raise InvalidCorrection("a reason is required for a credit note", field="reason")
    # under a key the id is the key's (a replay finds it); without one, every call is a
    # credit note of its own
    note_id = "cn_" + (
        hashlib.blake2b(f"{invoice_id}\0{key}".encode(), digest_size=10).hexdigest()
        if key
        else secrets.token_hex(10)
    )
    done = connection.execute(
        select(credit_notes.c.id, credit_notes.c.number).where(credit_notes.c.id == note_id)
    ).one_or_none()
    if done is not None:
        return done.id, done.number
    minor = invoice.minor_digits
    items = {
        row.position: row
        for row in connection.execute(
            select(invoice_items).where(invoice_items.c.invoice_id == invoice_id)
        )
    }
    earlier = connection.execute(
        select(
            credit_note_items.c.invoice_item_id,
            func.sum(credit_note_items.c.amount_minor),
            func.sum(credit_note_items.c.tax_minor),
        )
        .join(credit_notes, credit_notes.c.id == credit_note_items.c.credit_note_id)
        .where(credit_notes.c.invoice_id == invoice_id)
        .group_by(credit_note_items.c.invoice_item_id)
    ).all()
    credited = {item: int(amount or 0) for item, amount, _ in earlier}
    by_id = {row.id: row for row in items.values()}
    # per tax group (category, rate): what earlier credit notes credited, and the tax
    # the invoice charged; a credit's tax is the group's cumulative tax minus what was
    # credited before, so all credit notes together never credit more tax than charged
    group_base: dict[tuple[str | None, int], int] = {}
    group_tax: dict[tuple[str | None, int], int] = {}
    for item_id, amount, tax in earlier:
        group = _tax_group(by_id[item_id])
        group_base[group] = group_base.get(group, 0) + int(amount or 0)
        group_tax[group] = group_tax.get(group, 0) + int(tax or 0)
    # what the invoice charged per group, discounts included: the most all its credit
    # notes together may give back
    net_base: dict[tuple[str | None, int], int] = {}
    for row in items.values():
        if row.kind != "tax":
            group = _tax_group(row)
            net_base[group] = net_base.get(group, 0) + row.amount_minor
    charged_tax = {
        (row.tax_category, row.tax_rate_ppm or 0): row.amount_minor
        for row in items.values()
        if row.kind == "tax"
    }
    rows = []
    seen: set[int] = set()
    for n, line in enumerate(lines, start=1):
        item = items.get(line.position)
        if item is None:
            raise InvalidCorrection(
                f"line {line.position}: invoice {invoice_id!r} has no such line",
                field=f"lines[{n - 1}]",
            )
        if item.kind in ("tax", "allowance") or item.amount_minor <= 0:
            raise InvalidCorrection(
                f"line {line.position}: a {item.kind} line of {item.amount_minor} cannot be "
                "credited (credit the charge lines; their tax is credited with them)",
                field=f"lines[{n - 1}]",
            )
        if line.position in seen:
            raise InvalidCorrection(
                f"line {line.position}: credited twice in one credit note",
                field=f"lines[{n - 1}]",
            )
        seen.add(line.position)
        step = 10 ** (6 - minor)
        if line.amount_micro is not None and line.amount_micro % step:
            raise InvalidCorrection(
                f"line {line.position}: {line.amount_micro} micro-units has more decimals "
                f"than the currency's {minor}",
                field=f"lines[{n - 1}].amount",
            )
        left = item.amount_minor - int(credited.get(item.id, 0) or 0)
        amount = (
            left if line.amount_micro is None else round_to_minor_unit(line.amount_micro, minor)
        )
        if amount <= 0 or amount > left:
            raise InvalidCorrection(
                f"line {line.position}: can credit more than 0 and at most {left} micro-units "
                f"(what is left of the line), not {amount}",
                field=f"lines[{n - 1}].amount",
            )
        group = _tax_group(item)
        base = group_base[group] = group_base.get(group, 0) + amount
        if base > net_base.get(group, 0):
            raise InvalidCorrection(
                f"line {line.position}: the credit notes of this invoice would credit "
                f"{base} micro-units at its tax rate, more than the {net_base.get(group, 0)} "
                "the invoice charged at that rate after its discounts",
                field=f"lines[{n - 1}].amount",
            )
        tax = 0
        if group[1]:
            due = round_ratio_to_minor_unit(base * group[1], _PPM, minor)
            due = min(due, charged_tax.get(group, 0))
            tax = max(due - group_tax.get(group, 0), 0)
            group_tax[group] = group_tax.get(group, 0) + tax
        rows.append(
            {
                "credit_note_id": note_id,
                "position": n,
                "invoice_item_id": item.id,
                "description": line.description or item.description,
                "quantity": None,
                "amount_micro": amount,
                "amount_minor": amount,
                "tax_micro": tax,
                "tax_minor": tax,
            }
        )
    subtotal = sum(r["amount_minor"] for r in rows)
    tax_total = sum(r["tax_minor"] for r in rows)
    entity = invoice.entity
    connection.execute(
        insert(credit_notes).values(
            id=note_id,
            invoice_id=invoice_id,
            account=invoice.account,
            entity=entity,
            currency=invoice.currency,
            minor_digits=minor,
            state="draft",
            reason=reason,
            subtotal_micro=subtotal,
            tax_micro=tax_total,
            total_micro=subtotal + tax_total,
            subtotal_minor=subtotal,
            tax_minor=tax_total,
            total_minor=subtotal + tax_total,
            created_at=now,
        )
    )
    connection.execute(insert(credit_note_items), rows)
    ensure_sequence(connection, entity, "credit_note", number_format)
    number = finalize_credit_note(connection, note_id, now)
    settle(connection, invoice.account, now)  # what it now over-pays goes back to credit
    record_event(
        connection,
        "credit_note_issued",
        now,
        actor=actor,
        invoice=invoice_id,
        credit_note=note_id,
        details={"number": number, "reason": reason},
    )
    return note_id, number
