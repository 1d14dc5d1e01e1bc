"""Invoices in the billing database: writing a composed invoice, refreshing a draft,
and the questions a bill run asks (which invoices exist, which records are billed).

Every function takes the caller's :class:`~sqlalchemy.Connection` and runs in its
transaction: a bill run writes a batch of invoices in one transaction, so a crash
leaves each invoice either whole or absent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    String,
    bindparam,
    column,
    delete,
    insert,
    select,
    update,
    values,
)
from sqlalchemy.exc import DBAPIError

from ocs.billing.compose import ComposedInvoice, InvoiceLine
from ocs.billing.schema import billing_events, invoice_item_records, invoice_items, invoices

__all__ = [
    "ExistingInvoice",
    "billed_records",
    "cycle_invoices",
    "free_invoice_id",
    "in_batches",
    "free_invoice_ids",
    "invoice_id",
    "links_of",
    "live_links_of",
    "off_cycle_invoices",
    "record_event",
    "replace_draft",
    "write_invoice",
    "write_invoices",
]

T = TypeVar("T")

_LOOKUP_BATCH = 500
"""Ids per ``IN (...)`` lookup: far below SQLite's and PostgreSQL's parameter limits."""


def invoice_id(
    account: str,
    period_start: int,
    *,
    off_cycle_end: int | None = None,
    revision: int = 0,
    key: str | None = None,
) -> str:
    """The id of an account's invoice for a period: the same on every run, so a bill
    run that runs again finds what an earlier one wrote (``in_`` and 20 hex digits).
    ``revision`` n > 0 is the id of the n-th replacement of a voided one; ``key`` the
    id of an on-demand invoice made under that idempotency key."""
    seed = f"{account}\0{period_start}\0{'' if off_cycle_end is None else off_cycle_end}"
    if revision:
        seed += f"\0{revision}"
    if key is not None:
        seed = f"{account}\0key\0{key}"
    return "in_" + hashlib.blake2b(seed.encode(), digest_size=10).hexdigest()


def free_invoice_id(
    connection: Connection, account: str, period_start: int, *, off_cycle_end: int | None = None
) -> str:
    """The id a new invoice of ``account`` for the period gets: :func:`invoice_id`, or
    its next revision when voided invoices hold the earlier ones."""
    revision = 0
    while True:
        document = invoice_id(account, period_start, off_cycle_end=off_cycle_end, revision=revision)
        taken = connection.execute(
            select(invoices.c.id).where(invoices.c.id == document)
        ).scalar_one_or_none()
        if taken is None:
            return document
        revision += 1


def free_invoice_ids(connection: Connection, wanted: Sequence[tuple[str, int]]) -> list[str]:
    """:func:`free_invoice_id` of each ``(account, period_start)`` (cycle invoices),
    with one lookup for all of them (a revision is looked for only where it is taken)."""
    first = [invoice_id(account, start) for account, start in wanted]
    taken: set[str] = set()
    for batch in in_batches(first):
        taken.update(
            connection.execute(select(invoices.c.id).where(invoices.c.id.in_(batch))).scalars()
        )
    return [
        free_invoice_id(connection, account, start) if document in taken else document
        for (account, start), document in zip(wanted, first, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class ExistingInvoice:
    id: str
    account: str
    state: str
    period_start: int
    period_end: int
    off_cycle: bool


def _existing(rows: Iterable[Any]) -> Iterator[ExistingInvoice]:
    for row in rows:
        yield ExistingInvoice(
            row.id, row.account, row.state, row.period_start, row.period_end, bool(row.off_cycle)
        )


def cycle_invoices(
    connection: Connection, accounts: Sequence[str], period_start: int
) -> dict[str, ExistingInvoice]:
    """The live (draft or final) cycle invoices of ``accounts`` for the period starting
    at ``period_start``."""
    c = invoices.c
    found: dict[str, ExistingInvoice] = {}
    for batch in in_batches(accounts):
        query = select(c.id, c.account, c.state, c.period_start, c.period_end, c.off_cycle).where(
            c.account.in_(batch), c.period_start == period_start, ~c.off_cycle, c.state != "void"
        )
        for invoice in _existing(connection.execute(query)):
            found[invoice.account] = invoice
    return found


def off_cycle_invoices(
    connection: Connection, accounts: Sequence[str], start: int, end: int
) -> dict[str, list[ExistingInvoice]]:
    """The live off-cycle invoices of ``accounts`` that overlap ``[start, end)``."""
    c = invoices.c
    found: dict[str, list[ExistingInvoice]] = {}
    for batch in in_batches(accounts):
        query = select(c.id, c.account, c.state, c.period_start, c.period_end, c.off_cycle).where(
            c.account.in_(batch),
            c.off_cycle,
            c.state != "void",
            c.period_start < end,
            c.period_end > start,
        )
        for invoice in _existing(connection.execute(query)):
            found.setdefault(invoice.account, []).append(invoice)
    return found


def billed_records(
    connection: Connection,
    records: Iterable[tuple[str, str]],
    *,
    ignoring: Collection[str] = (),
) -> set[str]:
    """The ids of those ``records`` (``(account, record id)`` pairs: the record's own
    account, the key of the one-live-link index) that are on a live invoice line
    already, other than the lines of the invoices ``ignoring`` (drafts about to be made
    again)."""
    links, items = invoice_item_records.c, invoice_items.c
    billed: set[str] = set()
    for batch in in_batches(list(records)):
        query = live_links_of(batch, links.record_id)
        if ignoring:
            query = query.join(invoice_items, items.id == links.item_id).where(
                items.invoice_id.not_in(list(ignoring))
            )
        billed.update(connection.execute(query).scalars())
    return billed


def live_links_of(records: Sequence[tuple[str, str]], *columns: ColumnElement[Any]) -> Select[Any]:
    """``columns`` of the live links of ``records`` (``(account, record id)``): a join
    with the pairs as a VALUES list, which looks each up in the unique index (SQLite
    scans the whole index for ``(account, record_id) IN (...)``)."""
    links = invoice_item_records.c
    wanted = (
        values(column("account", String), column("record_id", String), name="wanted")
        .data(list(records))
        .cte("wanted")
    )
    return (
        select(*columns)
        .select_from(wanted)
        .join(
            invoice_item_records,
            (links.account == wanted.c.account) & (links.record_id == wanted.c.record_id),
        )
        .where(~links.released)
    )


def links_of(invoice_id: str) -> ColumnElement[bool]:
    """The condition on ``invoice_item_records`` of the links of an invoice's lines."""
    lines = select(invoice_items.c.id).where(invoice_items.c.invoice_id == invoice_id)
    return invoice_item_records.c.item_id.in_(lines.scalar_subquery())


def in_batches(values: Sequence[T]) -> Iterator[Sequence[T]]:
    """``values`` in slices small enough for one ``IN (...)`` (:data:`_LOOKUP_BATCH`)."""
    for i in range(0, len(values), _LOOKUP_BATCH):
        yield values[i : i + _LOOKUP_BATCH]


def _totals(invoice: ComposedInvoice) -> dict[str, int]:
    """The invoice's totals (as its properties define them), in one pass over its lines."""
    subtotal_micro = subtotal_minor = tax_micro = tax_minor = 0
    for line in invoice.lines:
        if line.kind == "tax":
            tax_micro += line.amount_micro
            tax_minor += line.amount_minor
        else:
            subtotal_micro += line.amount_micro
            subtotal_minor += line.amount_minor
    return {
        "subtotal_micro": subtotal_micro,
        "tax_micro": tax_micro,
        "total_micro": subtotal_micro + tax_micro,
        "subtotal_minor": subtotal_minor,
        "tax_minor": tax_minor,
        "total_minor": subtotal_minor + tax_minor,
    }


_ITEM_COLUMNS = (
    "invoice_id",
    "position",
    "kind",
    "description",
    "child_account",
    "plan",
    "service",
    "category",
    "quantity",
    "unit",
    "period_start",
    "period_end",
    "amount_micro",
    "amount_minor",
    "tax_category",
    "tax_rate_ppm",
)
"""The columns of ``invoice_items`` a line sets (``parent_item_id`` is set after, by
id; ``subscription`` stays NULL)."""
_ITEMS_PER_INSERT = 500
"""Lines per multi-row insert: 8,000 parameters, within SQLite's 32,766 and
PostgreSQL's 65,535."""


def _item_values(document: str, position: int, line: InvoiceLine) -> tuple[Any, ...]:
    return (
        document,
        position,
        line.kind,
        line.description,
        line.child_account,
        line.plan,
        line.service,
        line.category,
        line.quantity,
        line.unit,
        line.period_start,
        line.period_end,
        line.amount_micro,
        line.amount_minor,
        line.tax_category,
        line.tax_rate_ppm,
    )


def _mark(connection: Connection) -> str:
    """The driver's parameter placeholder (SQLite ``?``, psycopg ``%s``)."""
    return "?" if connection.dialect.paramstyle == "qmark" else "%s"


def _insert_items(connection: Connection, rows: Sequence[tuple[Any, ...]]) -> dict[Any, int]:
    """Insert lines (:func:`_item_values`) with multi-row inserts through the driver;
    their ids by ``(invoice_id, position)`` (RETURNING does not promise the rows' order)."""
    mark = _mark(connection)
    one = "(" + ", ".join([mark] * len(_ITEM_COLUMNS)) + ")"
    head = f"INSERT INTO {invoice_items.name} ({', '.join(_ITEM_COLUMNS)}) VALUES "
    ids: dict[Any, int] = {}
    for start in range(0, len(rows), _ITEMS_PER_INSERT):
        chunk = rows[start : start + _ITEMS_PER_INSERT]
        statement = head + ", ".join([one] * len(chunk)) + " RETURNING id, invoice_id, position"
        parameters = tuple(chain.from_iterable(chunk))
        for item, document, position in connection.exec_driver_sql(statement, parameters):
            ids[document, position] = item
    return ids


def _write_lines(connection: Connection, written: Sequence[tuple[str, ComposedInvoice]]) -> None:
    """The lines and record links of the invoices ``written`` (``(document, invoice)``)
    in a few statements for all of them: multi-row inserts of the lines returning their
    ids, one update of the lines that point at another (a discount at the line it
    applies to), one executemany of the record links. The lines and links go through
    the driver (a bill run writes millions of them: no per-row SQL expression work)."""
    rows = [
        _item_values(document, i + 1, line)
        for document, invoice in written
        for i, line in enumerate(invoice.lines)
    ]
    if not rows:
        return
    ids = _insert_items(connection, rows)
    pointers = [
        {"item": ids[document, i + 1], "target": ids[document, line.applies_to + 1]}
        for document, invoice in written
        for i, line in enumerate(invoice.lines)
        if line.applies_to is not None
    ]
    if pointers:
        connection.execute(
            update(invoice_items)
            .where(invoice_items.c.id == bindparam("item"))
            .values(parent_item_id=bindparam("target")),
            pointers,
        )
    # each link carries the account whose records its line sums: a child's section on a
    # parent's invoice, else the invoice's account
    links: list[tuple[int, str, str]] = []
    for document, invoice in written:
        for i, line in enumerate(invoice.lines):
            if line.records:
                item = ids[document, i + 1]
                account = line.child_account or invoice.account
                links.extend([(item, account, record) for record in line.records])
    if links:
        _insert_links(connection, links)


def _insert_links(connection: Connection, links: Sequence[tuple[int, str, str]]) -> None:
    """Record links ``(item_id, account, record_id)``: PostgreSQL's COPY (one stream
    instead of a statement per row; the triggers and indexes check each row the same),
    elsewhere the driver's executemany. A driver error is raised as SQLAlchemy's (an
    :class:`~sqlalchemy.exc.IntegrityError` for a record already on a live line)."""
    if connection.dialect.name != "postgresql":
        connection.exec_driver_sql(_INSERT_LINKS.format(mark=_mark(connection)), links)
        return
    statement = f"COPY {invoice_item_records.name} (item_id, account, record_id) FROM STDIN"
    driver = connection.connection.driver_connection
    assert driver is not None
    dbapi = connection.dialect.loaded_dbapi
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for link in links:
                copy.write_row(link)
    except dbapi.Error as error:
        raise DBAPIError.instance(statement, None, error, dbapi.Error) from error


_INSERT_LINKS = (
    f"INSERT INTO {invoice_item_records.name} (item_id, account, record_id)"
    " VALUES ({mark}, {mark}, {mark})"
)


def _invoice_row(
    document: str, invoice: ComposedInvoice, entity: str, bill_run_id: str | None, now: int
) -> dict[str, Any]:
    return {
        "id": document,
        "account": invoice.account,
        "entity": entity,
        "bill_run_id": bill_run_id,
        "off_cycle": invoice.off_cycle,
        "period_start": invoice.period_start,
        "period_end": invoice.period_end,
        "currency": invoice.currency,
        "minor_digits": invoice.minor_digits,
        "state": "draft",
        "created_at": now,
        "itemisation": invoice.itemisation,
        "tax_exempt": invoice.tax_exempt,
        **_totals(invoice),
    }


def write_invoice(
    connection: Connection,
    invoice: ComposedInvoice,
    *,
    document: str,
    entity: str,
    bill_run_id: str | None,
    now: int,
) -> None:
    """Insert ``invoice`` as the draft ``document`` with its lines and record links."""
    write_invoices(
        connection, [(document, invoice)], entity=entity, bill_run_id=bill_run_id, now=now
    )


def write_invoices(
    connection: Connection,
    written: Sequence[tuple[str, ComposedInvoice]],
    *,
    entity: str,
    bill_run_id: str | None,
    now: int,
) -> None:
    """:func:`write_invoice` of each ``(document, invoice)``, in a few statements for
    all of them (a bill run writes its batch so)."""
    if not written:
        return
    connection.execute(
        insert(invoices), [_invoice_row(d, i, entity, bill_run_id, now) for d, i in written]
    )
    _write_lines(connection, written)


def replace_draft(
    connection: Connection, invoice: ComposedInvoice, *, document: str, bill_run_id: str | None
) -> bool:
    """Replace the lines of the draft ``document`` with ``invoice``'s (late records of
    the grace period, a changed adjustment). False when it is no longer a draft."""
    c = invoices.c
    state = connection.execute(
        select(c.state).where(c.id == document).with_for_update()
    ).scalar_one_or_none()
    if state != "draft":
        return False
    items = invoice_items.c
    connection.execute(delete(invoice_item_records).where(links_of(document)))
    # discount lines point at the lines they apply to: clear before deleting
    connection.execute(
        update(invoice_items).where(items.invoice_id == document).values(parent_item_id=None)
    )
    connection.execute(delete(invoice_items).where(items.invoice_id == document))
    connection.execute(
        update(invoices)
        .where(c.id == document)
        .values(
            bill_run_id=bill_run_id,
            period_end=invoice.period_end,
            itemisation=invoice.itemisation,
            tax_exempt=invoice.tax_exempt,
            **_totals(invoice),
        )
    )
    _write_lines(connection, [(document, invoice)])
    return True


def record_event(
    connection: Connection,
    kind: str,
    at: int,
    *,
    actor: str | None = None,
    bill_run_id: str | None = None,
    invoice: str | None = None,
    credit_note: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one entry to the billing history (``billing_events``)."""
    connection.execute(
        insert(billing_events).values(
            at=at,
            kind=kind,
            actor=actor,
            bill_run_id=bill_run_id,
            invoice_id=invoice,
            credit_note_id=credit_note,
            details=json.dumps(details or {}, sort_keys=True),
        )
    )
