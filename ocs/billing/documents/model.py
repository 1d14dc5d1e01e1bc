"""The content of an invoice document, read from the billing database and the segments.

:func:`load_document` reads one invoice (its row, its lines in ``invoice_items`` order,
its final credit notes) in the caller's connection and, when the invoice is itemised
(``invoices.itemisation = 'detailed'``), the rated records its lines sum, read back
from the segment files of the accounts' partitions (``RecordReader``): the records are
the ones the invoice holds (their ids, as :func:`~ocs.billing.representation.applied_rates`
lists them), never a second computation of what it should hold. What the database does
not know comes from the caller: the customer contact of each account (Redis, through
``ocs.billing_source``) and the operator (settings); the balance carried from before
(:class:`Carried`) is the payments' statement of the invoice.

Everything here is plain data in integer micro-units; :mod:`.view` writes it for the
renderers. An unknown invoice raises :class:`~ocs.billing.lifecycle.DocumentNotFound`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from ocs.billing.accounts import Contact
from ocs.billing.lifecycle import DocumentNotFound
from ocs.billing.payments.statement import statement
from ocs.billing.representation import applied_rates
from ocs.billing.schema import billing_entities, credit_notes, invoice_items, invoices
from ocs.records.reader import RecordReader

__all__ = [
    "DAY",
    "Carried",
    "CreditNoteRef",
    "InvoiceDocument",
    "ItemisedRecord",
    "Line",
    "Operator",
    "Section",
    "ServiceTotal",
    "TaxLine",
    "carried_of",
    "document_accounts",
    "load_document",
]

DAY = 86_400
ADJUSTMENT_PREFIX = "adjustment:"
"""Record links of one-off adjustments (``adjustment:<history id>``): not in the segments."""


@dataclass(frozen=True, slots=True)
class Operator:
    """The issuer as the settings describe it (``[documents]``)."""

    name: str
    address: tuple[str, ...] = ()
    vat_id: str = ""
    support: str = ""
    logo: Path | None = None
    payment_terms: int = 14
    locale: str = "en_GB"


@dataclass(frozen=True, slots=True)
class Carried:
    """What the account owed before this invoice (``previous_balance``: the balance when
    its previous invoice was issued), what it paid since (``payments``), the credit paid
    back to it since (``refunds``) and the corrections of earlier invoices since
    (``adjustments``: their credit notes and voids, negative), in micro-units: the
    payments' :func:`~ocs.billing.payments.statement.statement` of the invoice
    (:func:`carried_of`)."""

    previous_balance: int = 0
    payments: int = 0
    refunds: int = 0
    adjustments: int = 0


def carried_of(connection: Connection, account: str, invoice_id: str, now: int) -> Carried:
    """The :class:`Carried` of ``invoice_id`` from the payments recorded in the database,
    as of its finalisation (a draft's: ``now``, the day it is shown)."""
    found = statement(connection, account, invoice_id, at=now)
    return Carried(
        previous_balance=found.previous_balance,
        payments=found.payments,
        refunds=found.refunds,
        adjustments=found.adjustments,
    )


@dataclass(frozen=True, slots=True)
class Line:
    """One invoice line (``invoice_items``), amounts in micro-units rounded to the minor unit."""

    position: int
    kind: str
    description: str
    amount: int
    service: str | None = None
    category: str | None = None
    quantity: int | None = None
    unit: str | None = None
    subscription: str | None = None
    tax_category: str | None = None
    tax_rate_ppm: int | None = None
    period_start: int | None = None
    period_end: int | None = None


@dataclass(frozen=True, slots=True)
class Section:
    """The lines of one account on the invoice: the invoice account's own, or a child
    line's (a business hierarchy, ``invoice_items.child_account``) with its subtotal."""

    account: str
    child: bool
    lines: tuple[Line, ...]
    contact: Contact = Contact()

    @property
    def subtotal(self) -> int:
        return sum(line.amount for line in self.lines)


@dataclass(frozen=True, slots=True)
class TaxLine:
    """One tax rate of the invoice: the lines taxed at it (``base``) and the tax."""

    category: str | None
    rate_ppm: int
    base: int
    amount: int


@dataclass(frozen=True, slots=True)
class ServiceTotal:
    """The charges of one service and category across every section."""

    service: str
    category: str
    amount: int
    quantity: int | None
    unit: str | None


@dataclass(frozen=True, slots=True)
class CreditNoteRef:
    number: str
    issued_at: int
    total: int
    reason: str


@dataclass(frozen=True, slots=True)
class ItemisedRecord:
    """One rated record on the invoice, as the segment holds it."""

    account: str
    identity: str | None
    start: int | None
    end: int
    service: str
    unit: str | None
    used: int
    destination: str | None
    zone: str | None
    band: str | None
    charged: int  # exact micro-units, as rated
    called: str | None = None
    """The number called or the SMS recipient as recorded (None: not known, or a
    record written before records carried it)."""
    apn: str | None = None
    """The APN of a data record (None: not known)."""


@dataclass(frozen=True, slots=True)
class InvoiceDocument:
    id: str
    number: str | None  # None: a draft, which the documents mark DRAFT
    state: str
    account: str
    entity: str
    off_cycle: bool
    currency: str
    minor_digits: int
    period_start: int
    period_end: int  # excluded: the period's last day is the day before
    issued_at: int
    due_at: int
    subtotal: int
    tax: int
    total: int
    itemisation: str
    tax_exempt: bool
    operator: Operator
    customer: Contact
    sections: tuple[Section, ...]
    taxes: tuple[TaxLine, ...]
    by_service: tuple[ServiceTotal, ...]
    credit_notes: tuple[CreditNoteRef, ...] = ()
    itemised: tuple[ItemisedRecord, ...] = ()
    records_missing: int = 0
    """Records the invoice holds that the segment files no longer have (shown as a note)."""
    carried: Carried = field(default_factory=Carried)

    @property
    def draft(self) -> bool:
        return self.number is None

    @property
    def credited(self) -> int:
        return sum(note.total for note in self.credit_notes)

    @property
    def new_charges(self) -> int:
        return self.total - self.credited

    @property
    def amount_due(self) -> int:
        """Previous balance less payments, plus refunds and the corrections of earlier
        invoices, plus this invoice less its credit notes (0 void): the statement's
        ``amount_due``."""
        if self.state == "void":
            return 0
        carried = self.carried
        return (
            carried.previous_balance
            - carried.payments
            + carried.refunds
            + carried.adjustments
            + self.new_charges
        )


def issuer_of(connection: Connection, entity: str, operator: Operator) -> Operator:
    """Who issued an invoice of billing ``entity``: a reseller's entity as the bill run
    recorded it from the catalog (``billing_entities``: name, address, VAT id, support,
    logo; docs/invoicing.md, "Resellers"), else ``operator`` (the ``[documents]``
    settings). The payment terms and the default locale stay the operator's settings."""
    row = connection.execute(
        select(billing_entities).where(billing_entities.c.entity == entity)
    ).one_or_none()
    if row is None:
        return operator
    return Operator(
        name=row.name,
        address=tuple(line for line in row.address.split("\n") if line.strip()),
        vat_id=row.vat_id,
        support=row.support,
        logo=Path(row.logo) if row.logo else None,
        payment_terms=operator.payment_terms,
        locale=operator.locale,
    )


def document_accounts(connection: Connection, invoice_id: str) -> list[str]:
    """The accounts a document of ``invoice_id`` names: the invoice account, then its
    child lines (``invoice_items.child_account``) in invoice order; their contacts and
    partitions are what :func:`load_document` needs from the accounts."""
    account = connection.execute(
        select(invoices.c.account).where(invoices.c.id == invoice_id)
    ).scalar_one_or_none()
    if account is None:
        raise DocumentNotFound(f"no customer bill {invoice_id!r}")
    children = connection.execute(
        select(invoice_items.c.child_account)
        .where(invoice_items.c.invoice_id == invoice_id, invoice_items.c.child_account.isnot(None))
        .order_by(invoice_items.c.position)
    ).scalars()
    return list(dict.fromkeys([account, *children]))


def load_document(
    connection: Connection,
    invoice_id: str,
    *,
    operator: Operator,
    contacts: Mapping[str, Contact],
    partitions: Mapping[str, int],
    records_directory: str | Path | None,
    now: int,
    late_window: int = 62 * DAY,
    carried: Carried | None = None,
) -> InvoiceDocument:
    """The document of ``invoice_id``. ``contacts`` and ``partitions`` are by account
    (the invoice account and its child lines'; a missing one: no contact, records not
    read); ``records_directory`` None: no itemised pages. A draft's issue date is
    ``now``; a final invoice's its finalisation. ``late_window`` (``billing.late_window``)
    bounds the segments read: an invoice holds no record that ended longer than that
    before its period (late usage is looked for that far back, no further). ``carried``
    None: the previous balance and payments recorded in the database (:func:`carried_of`)."""
    invoice = connection.execute(select(invoices).where(invoices.c.id == invoice_id)).one_or_none()
    if invoice is None:
        raise DocumentNotFound(f"no customer bill {invoice_id!r}")
    rows = connection.execute(
        select(invoice_items)
        .where(invoice_items.c.invoice_id == invoice_id)
        .order_by(invoice_items.c.position)
    ).all()
    sections = _sections(invoice.account, rows, contacts)
    taxes = _taxes(rows)
    notes = tuple(
        CreditNoteRef(row.number, row.finalized_at, row.total_minor, row.reason)
        for row in connection.execute(
            select(credit_notes)
            .where(credit_notes.c.invoice_id == invoice_id, credit_notes.c.state == "final")
            .order_by(credit_notes.c.finalized_at, credit_notes.c.number)
        )
    )
    itemised: tuple[ItemisedRecord, ...] = ()
    missing = 0
    if invoice.itemisation == "detailed" and records_directory is not None:
        ids = {
            record_id
            for line in applied_rates(connection, invoice_id, detail=True)
            for record_id in line["ratedRecords"]
            if not record_id.startswith(ADJUSTMENT_PREFIX)
        }
        itemised, missing = _itemised(
            ids,
            records_directory,
            partitions,
            [s.account for s in sections],
            (invoice.period_start - late_window, invoice.period_end),
        )
    operator = issuer_of(connection, invoice.entity, operator)
    issued = invoice.finalized_at if invoice.finalized_at is not None else now
    return InvoiceDocument(
        id=invoice.id,
        number=invoice.number,
        state=invoice.state,
        account=invoice.account,
        entity=invoice.entity,
        off_cycle=bool(invoice.off_cycle),
        currency=invoice.currency,
        minor_digits=invoice.minor_digits,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        issued_at=issued,
        due_at=issued + operator.payment_terms * DAY,
        subtotal=invoice.subtotal_minor,
        tax=invoice.tax_minor,
        total=invoice.total_minor,
        itemisation=invoice.itemisation,
        tax_exempt=bool(invoice.tax_exempt),
        operator=operator,
        customer=contacts.get(invoice.account, Contact()),
        sections=sections,
        taxes=taxes,
        by_service=_by_service(rows),
        credit_notes=notes,
        itemised=itemised,
        records_missing=missing,
        carried=carried_of(connection, invoice.account, invoice_id, now)
        if carried is None
        else carried,
    )


def _line(row: Any) -> Line:
    return Line(
        position=row.position,
        kind=row.kind,
        description=row.description,
        amount=row.amount_minor,
        service=row.service,
        category=row.category,
        quantity=row.quantity,
        unit=row.unit,
        subscription=row.subscription,
        tax_category=row.tax_category,
        tax_rate_ppm=row.tax_rate_ppm,
        period_start=row.period_start,
        period_end=row.period_end,
    )


def _sections(
    account: str, rows: Sequence[Any], contacts: Mapping[str, Contact]
) -> tuple[Section, ...]:
    """The charge lines by account, the invoice account first, then each child line in
    the order of its first line; tax lines are the taxes summary, not a section's."""
    grouped: dict[str, list[Line]] = {account: []}
    for row in rows:
        if row.kind == "tax":
            continue
        grouped.setdefault(row.child_account or account, []).append(_line(row))
    return tuple(
        Section(owner, owner != account, tuple(lines), contacts.get(owner, Contact()))
        for owner, lines in grouped.items()
        if lines or owner == account
    )


def _taxes(rows: Sequence[Any]) -> tuple[TaxLine, ...]:
    """One row per tax line of the invoice, with the base taxed at its rate: the rounded
    lines of that category and rate (discounts included), as the tax was computed."""
    bases: dict[tuple[str | None, int], int] = {}
    for row in rows:
        if row.kind != "tax" and row.tax_rate_ppm is not None:
            key = (row.tax_category, row.tax_rate_ppm)
            bases[key] = bases.get(key, 0) + row.amount_minor
    return tuple(
        TaxLine(
            row.tax_category,
            row.tax_rate_ppm or 0,
            bases.get((row.tax_category, row.tax_rate_ppm or 0), 0),
            row.amount_minor,
        )
        for row in rows
        if row.kind == "tax"
    )


_SERVICE_KINDS = ("usage", "late_usage")


def _by_service(rows: Sequence[Any]) -> tuple[ServiceTotal, ...]:
    """Charges by service and category across the sections: usage by its service and
    category, fees, one-off charges and discounts by their kind."""
    totals: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        if row.kind in ("tax", "allowance"):
            continue
        if row.kind in _SERVICE_KINDS:
            key = (row.service or "usage", row.category or "")
        else:
            key = (row.kind, "")
        entry = totals.setdefault(key, [0, None, None])
        entry[0] += row.amount_minor
        if row.kind in _SERVICE_KINDS and row.quantity is not None:
            entry[1] = (entry[1] or 0) + row.quantity
            entry[2] = row.unit
    return tuple(
        ServiceTotal(service, category, amount, quantity, unit)
        for (service, category), (amount, quantity, unit) in totals.items()
    )


def _itemised(
    ids: set[str],
    directory: str | Path,
    partitions: Mapping[str, int],
    accounts: Sequence[str],
    ended: tuple[int, int],
) -> tuple[tuple[ItemisedRecord, ...], int]:
    """The records of ``ids`` from the segments of ``accounts``' partitions, of those
    that ``ended`` in ``[start, end)``, by account as the sections are, then by time;
    and how many of ``ids`` were not found."""
    wanted = {partitions[a] for a in accounts if a in partitions}
    if not ids or not wanted or not Path(directory).exists():
        return (), len(ids)
    found: list[ItemisedRecord] = []
    start, end = ended
    for record in RecordReader(directory, partition=wanted, start=start, end=end, warn=False):
        if record["id"] not in ids:
            continue
        unit = record.get("unit")
        used = record.get("used") or {}
        identities = record.get("identities") or []
        found.append(
            ItemisedRecord(
                account=record["account"],
                identity=identities[0] if identities else None,
                start=record.get("start"),
                end=record["end"],
                service=record.get("service") or "",
                unit=unit,
                used=int(used.get(unit, 0)) if unit else 0,
                destination=record.get("destination"),
                zone=record.get("zone"),
                band=record.get("band"),
                charged=int(record.get("charged") or 0),
                called=record.get("called"),
                apn=record.get("apn"),
            )
        )
    order = {account: index for index, account in enumerate(accounts)}
    found.sort(key=lambda r: (order.get(r.account, len(order)), r.start or r.end, r.end))
    return tuple(found), len(ids) - len(found)
