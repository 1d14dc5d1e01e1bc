"""Invoices and credit notes of the billing database as TMF678 JSON (docs/api.md,
"API: /v1/customerBill").

The API and the CLI show a document through these functions, so both speak the same
names: an invoice is a TMF678 ``CustomerBill``, its lines are
``AppliedCustomerBillingRate`` resources, money is a TMF ``Money``
``{"unit": "EUR", "value": "32.88"}`` whose value is a decimal **string** written
exactly from the integer micro-units (:func:`decimal_text`: never a float, never
rounded here: the amounts are the minor-unit amounts the invoice holds).

States (TMF678's ``state`` is a recommended enumeration; ours is kept beside it as
``lifecycleState``):

=========  ==============  ======================================================
ours       TMF678 state    why
=========  ==============  ======================================================
draft      ``new``         made by a bill run, may still change; no number yet
final      ``validated``   numbered, never changes again
void       ``cancelled``   not one of TMF678's values (it has none for a bill
                           withdrawn): our extension; the number stays used
=========  ==============  ======================================================

A final bill's ``state`` follows its payments (:func:`bill_state`): ``validated``
(nothing paid), ``partiallyPaid`` (some of ``amountDue`` paid), ``settled`` (all of it);
``sent`` (delivered, nothing paid) is for the delivery work, which passes ``sent=True``.
``amountDue`` is the total less the final credit notes, ``remainingAmount`` what is
still unpaid of it (docs/invoicing.md, "Payments").

Names that are ours, not TMF678's: ``lifecycleState``, ``position`` (a line's place on
the invoice: what a credit note names), ``ratedRecords`` (the record ids a line sums),
``appliesTo`` (the position of the line a discount applies to), ``delivery`` (how
and whether the bill reached its customer: :func:`~ocs.billing.delivery.status.delivery_json`;
``sent`` or ``printed`` makes a final bill ``sent``), ``voidReason``,
``creditNoteItem``, ``itemisation`` (``detailed``: the documents list the records;
``summary``: the lines only) and ``taxExempt``, as the account wanted when billed. Every function reads in the caller's connection; an unknown id
raises :class:`~ocs.billing.lifecycle.DocumentNotFound`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, func, select

from ocs.billing.compose import percent
from ocs.billing.delivery.status import DeliveryStatus, delivery_json, delivery_status_of
from ocs.billing.invoices import links_of
from ocs.billing.lifecycle import DocumentNotFound
from ocs.billing.payments.allocation import paid_of
from ocs.billing.schema import (
    billing_entities,
    credit_note_items,
    credit_notes,
    invoice_item_records,
    invoice_items,
    invoices,
    wholesale_invoices,
)
from quota_engine.money import MICRO_DIGITS

__all__ = [
    "BILL_STATES",
    "TMF_BILL_STATES",
    "applied_rates",
    "bill_state",
    "credit_note",
    "credit_notes_of",
    "customer_bill",
    "decimal_text",
    "list_bills",
    "money",
    "parse_decimal",
    "percent",
    "timestamp",
]

#: Our lifecycle state -> TMF678 CustomerBill state.
BILL_STATES = {"draft": "new", "final": "validated", "void": "cancelled"}
_NOTE_STATES = {"draft": "new", "final": "validated"}
#: Every TMF678 state a bill can show (the payment states of a final bill included).
TMF_BILL_STATES = ("new", "validated", "sent", "partiallyPaid", "settled", "cancelled")


def bill_state(lifecycle: str, due: int, paid: int, *, sent: bool = False) -> str:
    """The TMF678 state of a bill in ``lifecycle`` state that owes ``due`` (its total
    less its credit notes) and has ``paid`` of it: a draft is ``new`` and a void bill
    ``cancelled`` whatever was paid; a final one ``settled`` once paid in full,
    ``partiallyPaid`` before, else ``validated``, or ``sent`` when the delivery work
    says it was delivered (``sent``: the hook for the e-mail and print delivery)."""
    if lifecycle != "final":
        return BILL_STATES[lifecycle]
    if paid > 0:
        return "settled" if paid >= due else "partiallyPaid"
    return "sent" if sent else "validated"


_BILL_PATH = "/v1/customerBill/"
_NOTE_PATH = "/v1/creditNote/"


# --------------------------------------------------------------------------- values


def decimal_text(micro: int, minor_digits: int) -> str:
    """``micro`` micro-units written with exactly ``minor_digits`` decimals, from integers:
    ``decimal_text(32_880_000, 2) == "32.88"``, ``decimal_text(-500_000, 2) == "-0.50"``,
    ``decimal_text(7_000_000, 0) == "7"``. The amount must be a whole number of minor
    units, as every amount of an invoice is (ValueError otherwise: 1_500_000 with 0
    digits is not shown as "2" or "1.5")."""
    if type(micro) is not int or type(minor_digits) is not int:
        raise TypeError("decimal_text takes int micro-units and int minor digits")
    if not 0 <= minor_digits <= MICRO_DIGITS:
        raise ValueError(f"minor_digits must be 0..{MICRO_DIGITS}, got {minor_digits}")
    step = 10 ** (MICRO_DIGITS - minor_digits)
    magnitude = -micro if micro < 0 else micro
    minor, rest = divmod(magnitude, step)
    if rest:
        raise ValueError(
            f"{micro} micro-units is not a whole number of minor units ({minor_digits} digits)"
        )
    sign = "-" if micro < 0 else ""
    if minor_digits == 0:
        return f"{sign}{minor}"
    units, fraction = divmod(minor, 10**minor_digits)
    return f"{sign}{units}.{fraction:0{minor_digits}d}"


def parse_decimal(text: str, minor_digits: int) -> int:
    """The micro-units of a non-negative decimal string with at most ``minor_digits``
    decimals (``"12.5"`` -> ``12_500_000``); ValueError saying why otherwise."""
    units, dot, fraction = text.partition(".")
    if (
        not units.isascii()
        or not units.isdigit()
        or (dot and (not fraction.isascii() or not fraction.isdigit()))
    ):
        raise ValueError(f"must be a decimal number such as 12.50, not {text!r}")
    if len(fraction) > minor_digits:
        raise ValueError(f"has more than the currency's {minor_digits} decimal(s)")
    return int(units + fraction.ljust(MICRO_DIGITS, "0"))  # the digits of the micro-units


def money(micro: int, currency: str, minor_digits: int) -> dict[str, str]:
    """TMF ``Money``: ``{"unit": "EUR", "value": "32.88"}``."""
    return {"unit": currency, "value": decimal_text(micro, minor_digits)}


def timestamp(seconds: int | None) -> str | None:
    """Unix seconds as ISO 8601 UTC (``2026-10-31T23:00:00Z``); None stays None."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _period(start: int | None, end: int | None) -> dict[str, str | None]:
    return {"startDateTime": timestamp(start), "endDateTime": timestamp(end)}


def _bill_ref(invoice_id: str) -> dict[str, str]:
    return {"id": invoice_id, "href": _BILL_PATH + invoice_id}


def _account_ref(account: str) -> dict[str, str]:
    return {"id": account, "href": f"/v1/accounts/{account}"}


# --------------------------------------------------------------------------- bills


def _invoice_row(connection: Connection, invoice_id: str) -> Row[Any]:
    row = connection.execute(select(invoices).where(invoices.c.id == invoice_id)).one_or_none()
    if row is None:
        raise DocumentNotFound(f"no customer bill {invoice_id!r}")
    return row


def _bills(connection: Connection, rows: Sequence[Row[Any]]) -> list[dict[str, Any]]:
    """The CustomerBill of each invoice row, with two queries for all of them (their
    tax lines and what credit notes took off them)."""
    ids = [row.id for row in rows]
    taxes: dict[str, list[Any]] = {}
    credited: dict[str, int] = {}
    if ids:
        items = invoice_items.c
        for item in connection.execute(
            select(items.invoice_id, items.tax_category, items.tax_rate_ppm, items.amount_minor)
            .where(items.invoice_id.in_(ids), items.kind == "tax")
            .order_by(items.invoice_id, items.position)
        ):
            taxes.setdefault(item.invoice_id, []).append(item)
        notes = credit_notes.c
        credited = {
            invoice: int(total)
            for invoice, total in connection.execute(
                select(notes.invoice_id, func.sum(notes.total_minor))
                .where(notes.invoice_id.in_(ids), notes.state == "final")
                .group_by(notes.invoice_id)
            )
        }
    paid = paid_of(connection, ids)
    delivered = delivery_status_of(connection, ids)
    return [
        _bill(
            row,
            taxes.get(row.id, []),
            credited.get(row.id, 0),
            paid.get(row.id, 0),
            delivered.get(row.id),
        )
        for row in rows
    ]


def _bill(
    row: Row[Any],
    taxes: Iterable[Row[Any]],
    credited: int,
    paid: int,
    delivery: DeliveryStatus | None = None,
) -> dict[str, Any]:
    currency, digits = row.currency, row.minor_digits
    due = 0 if row.state == "void" else row.total_minor - credited
    paid = 0 if row.state == "void" else paid
    bill: dict[str, Any] = {
        "id": row.id,
        "href": _BILL_PATH + row.id,
        "@type": "CustomerBill",
        "billNo": row.number,
        "state": bill_state(row.state, due, paid, sent=delivery is not None and delivery.delivered),
        "lifecycleState": row.state,
        "category": "offCycle" if row.off_cycle else "normal",
        "runType": "offCycle" if row.off_cycle else "onCycle",
        "itemisation": row.itemisation,
        "taxExempt": bool(row.tax_exempt),
        "billingAccount": _account_ref(row.account),
        "billingPeriod": _period(row.period_start, row.period_end),
        "billDate": timestamp(row.finalized_at),
        "lastUpdate": timestamp(max(row.created_at, row.finalized_at or 0, row.voided_at or 0)),
        "amountDue": money(due, currency, digits),
        "remainingAmount": money(max(due - paid, 0), currency, digits),
        "taxExcludedAmount": money(row.subtotal_minor, currency, digits),
        "taxIncludedAmount": money(row.total_minor, currency, digits),
        "taxItem": [
            {
                "taxCategory": tax.tax_category,
                "taxRate": percent(tax.tax_rate_ppm or 0),
                "taxAmount": money(tax.amount_minor, currency, digits),
            }
            for tax in taxes
        ],
        "appliedCustomerBillingRate": {"href": f"{_BILL_PATH}{row.id}/appliedCustomerBillingRate"},
        "delivery": delivery_json(delivery),
    }
    if row.state == "void":
        bill["voidReason"] = row.void_reason
        bill["cancellationDate"] = timestamp(row.voided_at)
    return bill


def customer_bill(connection: Connection, invoice_id: str) -> dict[str, Any]:
    """The TMF678 CustomerBill of ``invoice_id``.

    ``amountDue`` is what the customer owes on it: the total less the credit notes
    issued on it (0 when void); ``remainingAmount`` what is unpaid of that;
    ``taxIncludedAmount`` the total as invoiced."""
    row = _invoice_row(connection, invoice_id)
    return _with_issuers(connection, [row], _bills(connection, [row]))[0]


def list_bills(
    connection: Connection,
    *,
    account: str | None = None,
    state: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[dict[str, Any]]]:
    """``(how many match, one page of CustomerBills)``: the invoices of ``account`` (any
    when None) in lifecycle ``state`` (draft, final, void; any when None), newest period
    first (then by id: a stable order for paging)."""
    c = invoices.c
    conditions = []
    if account is not None:
        conditions.append(c.account == account)
    if state is not None:
        conditions.append(c.state == state)
    total = connection.execute(
        select(func.count()).select_from(invoices).where(*conditions)
    ).scalar_one()
    rows = connection.execute(
        select(invoices)
        .where(*conditions)
        .order_by(c.period_start.desc(), c.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return int(total), _with_issuers(connection, rows, _bills(connection, rows))


def _with_issuers(
    connection: Connection, rows: Sequence[Row[Any]], bills: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each bill's issuer as a TMF678 ``relatedParty`` of role ``issuer``: the billing
    entity that issued and numbered it (``id``), with the reseller's legal name and
    id when a reseller issued it (``billing_entities``, docs/invoicing.md, "Resellers");
    a wholesale invoice also names the reseller it bills (``wholesaleOf``, ours)."""
    entities = {row.entity for row in rows}
    ids = [row.id for row in rows]
    known = {
        entity.entity: entity
        for entity in connection.execute(
            select(billing_entities).where(billing_entities.c.entity.in_(entities))
        )
    }
    wholesale = dict(
        connection.execute(
            select(wholesale_invoices.c.invoice_id, wholesale_invoices.c.reseller).where(
                wholesale_invoices.c.invoice_id.in_(ids)
            )
        ).all()
    )
    for row, bill in zip(rows, bills, strict=True):
        party: dict[str, Any] = {
            "id": row.entity,
            "role": "issuer",
            "@referredType": "Organization",
        }
        entity = known.get(row.entity)
        if entity is not None:
            party["name"] = entity.name
            party["reseller"] = entity.reseller
        bill["relatedParty"] = [party]
        if row.id in wholesale:
            bill["wholesaleOf"] = {"reseller": wholesale[row.id]}
    return bills


# --------------------------------------------------------------------------- lines


def applied_rates(
    connection: Connection, invoice_id: str, *, detail: bool = False
) -> list[dict[str, Any]]:
    """The lines of ``invoice_id`` as TMF678 AppliedCustomerBillingRate, in invoice
    order; ``detail`` adds ``ratedRecords``, the ids of the records (and adjustments,
    ``adjustment:<id>``) each line sums, sorted."""
    invoice = _invoice_row(connection, invoice_id)
    items = connection.execute(
        select(invoice_items)
        .where(invoice_items.c.invoice_id == invoice_id)
        .order_by(invoice_items.c.position)
    ).all()
    positions = {item.id: item.position for item in items}
    records: dict[int, list[str]] = {}
    if detail:
        links = invoice_item_records.c
        for item_id, record_id in connection.execute(
            select(links.item_id, links.record_id)
            .where(links_of(invoice_id))
            .order_by(links.item_id, links.record_id)
        ):
            records.setdefault(item_id, []).append(record_id)
    currency, digits = invoice.currency, invoice.minor_digits
    lines = []
    for item in items:
        line: dict[str, Any] = {
            "id": str(item.id),
            "@type": "AppliedCustomerBillingRate",
            "position": item.position,
            "name": item.description,
            "type": item.kind,
            "isBilled": True,
            "date": timestamp(invoice.created_at),
            "bill": _bill_ref(invoice_id),
            "billingAccount": _account_ref(item.child_account or invoice.account),
            "taxExcludedAmount": money(item.amount_minor, currency, digits),
        }
        if item.period_start is not None or item.period_end is not None:
            line["periodCoverage"] = _period(item.period_start, item.period_end)
        if item.plan is not None:
            line["product"] = {"id": item.plan, "name": item.plan}
        characteristic = [
            {"name": name, "value": value}
            for name, value in (
                ("service", item.service),
                ("category", item.category),
                ("subscription", item.subscription),
                ("childAccount", item.child_account),
            )
            if value is not None
        ]
        if characteristic:
            line["characteristic"] = characteristic
        if item.quantity is not None:
            line["quantity"] = {"amount": item.quantity, "units": item.unit}
        if item.tax_rate_ppm is not None and item.kind != "tax":
            line["appliedTax"] = [
                {"taxCategory": item.tax_category, "taxRate": percent(item.tax_rate_ppm)}
            ]
        if item.parent_item_id is not None:
            line["appliesTo"] = positions.get(item.parent_item_id)
        if detail:
            line["ratedRecords"] = records.get(item.id, [])
        lines.append(line)
    return lines


# --------------------------------------------------------------------------- credit notes


def _notes(connection: Connection, rows: Sequence[Row[Any]]) -> list[dict[str, Any]]:
    if not rows:
        return []
    items = credit_note_items.c
    lines: dict[str, list[Any]] = {}
    for item in connection.execute(
        select(
            items.credit_note_id,
            items.position,
            items.invoice_item_id,
            items.description,
            items.amount_minor,
            items.tax_minor,
            invoice_items.c.position.label("invoice_position"),
            invoice_items.c.tax_category,
            invoice_items.c.tax_rate_ppm,
        )
        .join(invoice_items, invoice_items.c.id == items.invoice_item_id)
        .where(items.credit_note_id.in_([row.id for row in rows]))
        .order_by(items.credit_note_id, items.position)
    ):
        lines.setdefault(item.credit_note_id, []).append(item)
    return [_note(row, lines.get(row.id, [])) for row in rows]


def _note(row: Row[Any], lines: Sequence[Row[Any]]) -> dict[str, Any]:
    currency, digits = row.currency, row.minor_digits
    taxes: dict[tuple[str | None, int], int] = {}
    for line in lines:
        if line.tax_rate_ppm:
            key = (line.tax_category, line.tax_rate_ppm)
            taxes[key] = taxes.get(key, 0) + line.tax_minor
    return {
        "id": row.id,
        "href": _NOTE_PATH + row.id,
        "@type": "CreditNote",
        "billNo": row.number,
        "category": "creditNote",
        "state": _NOTE_STATES[row.state],
        "lifecycleState": row.state,
        "bill": _bill_ref(row.invoice_id),
        "billingAccount": _account_ref(row.account),
        "billDate": timestamp(row.finalized_at),
        "reason": row.reason,
        "taxExcludedAmount": money(row.subtotal_minor, currency, digits),
        "taxIncludedAmount": money(row.total_minor, currency, digits),
        "taxItem": [
            {
                "taxCategory": category,
                "taxRate": percent(rate),
                "taxAmount": money(amount, currency, digits),
            }
            for (category, rate), amount in sorted(
                taxes.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])
            )
        ],
        "creditNoteItem": [
            {
                "position": line.position,
                "name": line.description,
                "appliedCustomerBillingRate": {
                    "id": str(line.invoice_item_id),
                    "position": line.invoice_position,
                },
                "taxExcludedAmount": money(line.amount_minor, currency, digits),
                "taxAmount": money(line.tax_minor, currency, digits),
            }
            for line in lines
        ],
    }


def credit_note(connection: Connection, note_id: str) -> dict[str, Any]:
    """A credit note: what it credits (positive amounts), per line and per tax rate."""
    row = connection.execute(select(credit_notes).where(credit_notes.c.id == note_id)).one_or_none()
    if row is None:
        raise DocumentNotFound(f"no credit note {note_id!r}")
    return _notes(connection, [row])[0]


def credit_notes_of(connection: Connection, invoice_id: str) -> list[dict[str, Any]]:
    """The credit notes of ``invoice_id``, oldest first."""
    _invoice_row(connection, invoice_id)
    c = credit_notes.c
    rows = connection.execute(
        select(credit_notes)
        .where(c.invoice_id == invoice_id)
        .order_by(c.created_at, c.number, c.id)
    ).all()
    return _notes(connection, rows)
