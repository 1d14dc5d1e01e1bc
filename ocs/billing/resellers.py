"""Reseller (wholesale) billing: who issues an invoice, and the reseller's wholesale
invoice (docs/invoicing.md, "Resellers").

A reseller partner is catalog data (:class:`~quota_engine.catalog.model.Reseller`): its
billing entity and number format, its documents header, the operator-side account
that receives its wholesale invoice, and its wholesale price list. An invoice account
whose ``reseller`` is set is the reseller's subscriber: its retail invoices are issued
under the reseller's entity (:func:`issuer_of`), numbered in the reseller's own
gap-free sequence; the accounts on its invoice (a hierarchy's children) are the same
reseller's subscribers, or none's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, exists, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ocs.billing.accounts import BillingAccount
from ocs.billing.compose import ComposedInvoice, InvoiceLine, percent_text
from ocs.billing.invoices import (
    ExistingInvoice,
    cycle_invoices,
    free_invoice_id,
    in_batches,
    record_event,
    replace_draft,
    write_invoice,
)
from ocs.billing.numbering import ensure_sequence, finalize_invoice
from ocs.billing.periods import BillPeriod
from ocs.billing.schema import (
    billing_entities,
    invoice_items,
    invoices,
    wholesale_invoices,
    wholesale_items,
    wholesale_sources,
)
from ocs.billing.usage import BillingError
from quota_engine.catalog.model import Catalog, Reseller
from quota_engine.money import round_ratio_to_minor_unit

__all__ = [
    "WHOLESALE_KINDS",
    "Issuer",
    "WholesaleOutcome",
    "ensure_issuer_sequences",
    "issuer_of",
    "record_issuers",
    "wholesale_quantity",
    "write_wholesale",
]

WHOLESALE_KINDS = ("usage", "late_usage")
"""The retail lines a wholesale invoice sums: the subscribers' billed usage."""
_PPM = 1_000_000


@dataclass(frozen=True, slots=True)
class Issuer:
    """The billing entity that issues and numbers an invoice, its number format, and
    the reseller it is (None: the operator)."""

    entity: str
    number_format: str
    reseller: Reseller | None = None


def issuer_of(members: Sequence[BillingAccount], catalog: Catalog, operator: Issuer) -> Issuer:
    """Who issues the invoice of ``members`` (the invoice account first): the reseller
    of the invoice account, else ``operator``. Raises :class:`BillingError` for a
    reseller the catalog does not have, one whose entity is the operator's own, and an
    account on the invoice that belongs to another reseller (its invoice would carry
    another issuer's name)."""
    owner = members[0]
    wholesale = next((r for r in catalog.resellers if r.wholesale_account == owner.id), None)
    if wholesale is not None:
        raise BillingError(
            f"account {owner.id} receives reseller {wholesale.id!r}'s wholesale invoices: "
            "it gets no retail invoice"
        )
    for member in members[1:]:
        if member.reseller is not None and member.reseller != owner.reseller:
            whose = f"reseller {owner.reseller!r}" if owner.reseller else "the operator"
            raise BillingError(
                f"account {member.id} of reseller {member.reseller!r} is on the invoice of "
                f"{owner.id}, which is {whose}'s: a hierarchy belongs to one reseller"
            )
    if owner.reseller is None:
        return operator
    reseller = catalog.reseller(owner.reseller)
    if reseller is None:
        known = ", ".join(r.id for r in catalog.resellers) or "none"
        raise BillingError(
            f"account {owner.id}: reseller {owner.reseller!r} is not in catalog "
            f"{catalog.version} (resellers: {known})"
        )
    if reseller.entity == operator.entity:
        raise BillingError(
            f"account {owner.id}: reseller {reseller.id!r} has the operator's billing entity "
            f"{operator.entity!r}: its invoices would be numbered in the operator's sequence"
        )
    return Issuer(reseller.entity, reseller.invoice_number_format, reseller)


def ensure_issuer_sequences(connection: Connection, issuer: Issuer) -> None:
    """The issuer's invoice sequence in its format, and a reseller's credit-note
    sequence in its own format when it has one (else the first credit note makes it in
    the operator's ``billing.credit_note_number_format``): created once, before the
    first document needs them, so a later finalisation finds them."""
    ensure_sequence(connection, issuer.entity, "invoice", issuer.number_format)
    reseller = issuer.reseller
    if reseller is not None and reseller.credit_note_number_format is not None:
        ensure_sequence(
            connection, issuer.entity, "credit_note", reseller.credit_note_number_format
        )


def record_issuers(
    connection: Connection, catalog: Catalog, now: int, *, operator_entity: str
) -> None:
    """Keep ``billing_entities`` as the catalog's resellers describe their entities, so
    the documents and the TMF678 representation name an invoice's issuer from the
    database alone (an entity of no reseller any more keeps its last row). A reseller
    claiming ``operator_entity`` (refused by :func:`issuer_of`) never names the
    operator's invoices."""
    insert_ = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    for reseller in catalog.resellers:
        if reseller.entity == operator_entity:
            continue
        values = {
            "name": reseller.name,
            "address": "\n".join(reseller.address),
            "vat_id": reseller.vat_id,
            "support": reseller.support,
            "logo": reseller.logo,
            "reseller": reseller.id,
        }
        stored = connection.execute(
            select(*(billing_entities.c[k] for k in values)).where(
                billing_entities.c.entity == reseller.entity
            )
        ).one_or_none()
        if stored is not None and dict(stored._mapping) == values:
            continue  # unchanged: no write (every run of every shard passes here)
        statement = insert_(billing_entities).values(
            entity=reseller.entity, updated_at=now, **values
        )
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=[billing_entities.c.entity],
                set_={**values, "updated_at": now},
            )
        )


def wholesale_quantity(lines: Iterable[Any]) -> dict[tuple[str, str, str], int]:
    """The units of retail ``lines`` (rows of ``invoice_items``) a wholesale invoice
    prices, per (service, category, unit): the quantities of the usage and late-usage
    lines, zero-rated ones included (the network carried them); lines that credit money
    (refunds, the reseller's own corrections to its customers) are left out. The bill
    run and the audit count with this one function."""
    totals: dict[tuple[str, str, str], int] = {}
    for line in lines:
        if line.kind not in WHOLESALE_KINDS or line.amount_micro < 0 or not line.quantity:
            continue
        key = (line.service or "", line.category or "", line.unit or "")
        totals[key] = totals.get(key, 0) + line.quantity
    return totals


@dataclass(frozen=True, slots=True)
class WholesaleOutcome:
    """What :func:`write_wholesale` did for one reseller: ``created``, ``refreshed``,
    ``final`` (a final one exists: nothing to do) or ``nothing`` (no final retail
    invoice to sum yet); ``number`` when it was finalised now."""

    outcome: str
    invoice_id: str | None = None
    total_minor: int = 0
    number: str | None = None


def _release_voided(connection: Connection, reseller: str) -> None:
    """The retail invoices of the reseller's voided wholesale invoices go back to be
    taken by the replacement."""
    voided = (
        select(wholesale_invoices.c.invoice_id)
        .join(invoices, invoices.c.id == wholesale_invoices.c.invoice_id)
        .where(wholesale_invoices.c.reseller == reseller, invoices.c.state == "void")
    )
    connection.execute(
        update(wholesale_sources)
        .where(
            wholesale_sources.c.wholesale_invoice_id.in_(voided.scalar_subquery()),
            ~wholesale_sources.c.released,
        )
        .values(released=True)
    )


def _free_sources(connection: Connection, reseller: Reseller, period: BillPeriod) -> list[str]:
    """The final retail invoices the reseller issued for periods starting before the
    end of ``period`` that no live wholesale invoice holds yet (a subscriber's invoice
    finalised after its period's wholesale invoice goes on the next one, as late usage
    goes on the next retail invoice)."""
    held = exists().where(
        wholesale_sources.c.retail_invoice_id == invoices.c.id, ~wholesale_sources.c.released
    )
    query = (
        select(invoices.c.id)
        .where(
            invoices.c.entity == reseller.entity,
            invoices.c.state == "final",
            invoices.c.period_start < period.end,
            ~held,
        )
        .order_by(invoices.c.id)
    )
    return list(connection.execute(query).scalars())


def _retail_lines(connection: Connection, documents: Sequence[str]) -> list[Any]:
    items = invoice_items.c
    found: list[Any] = []
    for batch in in_batches(list(documents)):
        found.extend(
            connection.execute(
                select(
                    items.kind,
                    items.service,
                    items.category,
                    items.unit,
                    items.quantity,
                    items.amount_micro,
                ).where(items.invoice_id.in_(batch), items.kind.in_(WHOLESALE_KINDS))  # fmt: skip
            )
        )
    return found


def _describe(service: str, category: str) -> str:
    words = ["Wholesale", service or "usage"]
    if category:
        words.extend(part.replace("-", " ") for part in category.split("/"))
    return ", ".join(words)


def compose_wholesale(
    reseller: Reseller,
    period: BillPeriod,
    catalog: Catalog,
    quantities: dict[tuple[str, str, str], int],
) -> tuple[ComposedInvoice, list[tuple[int, int]]]:
    """The wholesale invoice of ``quantities`` (:func:`wholesale_quantity`) and the
    (price, per) of each of its usage lines. A line per service, category and unit:
    ``quantity * price / per`` rounded once to the minor unit; one tax line per rate as
    on the operator's invoices, the rate of the reseller's ``tax_category`` on the
    period's last local day. Raises :class:`BillingError` for usage the price list
    does not price, or no tax rate."""
    minor = catalog.minor_digits
    lines: list[InvoiceLine] = []
    prices: list[tuple[int, int]] = []
    unpriced: list[str] = []
    tax = catalog.tax_rate(reseller.tax_category, period.last_day) if catalog.taxes else None
    if catalog.taxes and tax is None:
        raise BillingError(
            f"reseller {reseller.id}: catalog {catalog.version} has no tax rate for category "
            f"{reseller.tax_category!r} on {period.last_day.isoformat()}"
        )
    rate = tax.rate_ppm if tax is not None else None
    for (service, category, unit), quantity in sorted(quantities.items()):
        price = reseller.price_for(service, category)
        if price is None:
            unpriced.append(f"{service or '(none)'} in category {category or '(none)'!r}")
            continue
        amount = round_ratio_to_minor_unit(quantity * price.price, price.per, minor)
        lines.append(
            InvoiceLine(
                kind="usage",
                description=_describe(service, category),
                amount_micro=amount,
                amount_minor=amount,
                service=service or None,
                category=category or None,
                quantity=quantity,
                unit=unit or None,
                period_start=period.start,
                period_end=period.end,
                tax_category=reseller.tax_category,
                tax_rate_ppm=rate,
            )
        )
        prices.append((price.price, price.per))
    if unpriced:
        raise BillingError(
            f"reseller {reseller.id}: its wholesale price list has no price for the usage "
            f"of {', '.join(unpriced)}: no wholesale invoice made"
        )
    base = sum(line.amount_minor for line in lines)
    if rate and base:
        amount = round_ratio_to_minor_unit(base * rate, _PPM, minor)
        lines.append(
            InvoiceLine(
                kind="tax",
                description=(tax.name if tax is not None and tax.name else "")
                or f"Tax {reseller.tax_category} {percent_text(rate)}",
                amount_micro=amount,
                amount_minor=amount,
                category=reseller.tax_category,
                tax_category=reseller.tax_category,
                tax_rate_ppm=rate,
            )
        )
    invoice = ComposedInvoice(
        account=reseller.wholesale_account,
        currency=catalog.currency,
        minor_digits=minor,
        period_start=period.start,
        period_end=period.end,
        lines=tuple(lines),
        itemisation="summary",
    )
    return invoice, prices


def write_wholesale(
    connection: Connection,
    reseller: Reseller,
    period: BillPeriod,
    catalog: Catalog,
    *,
    entity: str,
    bill_run_id: str | None,
    now: int,
    finalize: bool,
) -> WholesaleOutcome:
    """Make or refresh the reseller's wholesale invoice of ``period`` in
    ``connection``'s transaction, issued by the operator's ``entity``, and finalise it
    when ``finalize`` (its number then taken from the operator's sequence, in this
    transaction). Deterministic and repeatable: the invoice id is derived from the
    wholesale account and the period, one live cycle invoice per account and period
    (the invoices' unique index), each retail invoice on one live wholesale invoice
    (``wholesale_sources``' unique index); a final one is never touched. The wholesale
    account gets no retail invoice (:func:`issuer_of`): it may be an account of the
    accounts store, for its contact and payments. Raises :class:`BillingError` when it
    cannot be made (nothing is written then)."""
    account = reseller.wholesale_account
    existing: ExistingInvoice | None = cycle_invoices(connection, [account], period.start).get(
        account
    )
    if (
        existing is not None
        and not connection.execute(
            select(exists().where(wholesale_invoices.c.invoice_id == existing.id))
        ).scalar_one()
    ):
        raise BillingError(
            f"reseller {reseller.id}: its wholesale account {account} has a retail invoice "
            f"{existing.id} for the period from {period.name}: void it (the account gets "
            "no retail invoice while it receives the wholesale invoices)"
        )
    if existing is not None:
        # lock the draft before touching its lines and sources: two runs (shards, the
        # daily run and a manual one) refreshing it queue here, and the second sees
        # what the first made
        state = connection.execute(
            select(invoices.c.state).where(invoices.c.id == existing.id).with_for_update()
        ).scalar_one()
        if state != "draft":
            return WholesaleOutcome("final", existing.id)
    _release_voided(connection, reseller.id)
    if existing is not None:
        # a draft is made again from what is final now: its lines and sources first
        _clear_draft(connection, existing.id)
    sources = _free_sources(connection, reseller, period)
    if not sources and existing is None:
        return WholesaleOutcome("nothing")
    quantities = wholesale_quantity(_retail_lines(connection, sources))
    invoice, prices = compose_wholesale(reseller, period, catalog, quantities)
    if not invoice.lines and existing is None:
        # subscribers without usage: no invoice of nothing (their retail invoices wait
        # for the next one, which owes nothing for them either)
        return WholesaleOutcome("nothing")
    if existing is None:
        document = free_invoice_id(connection, account, period.start)
        write_invoice(
            connection, invoice, document=document, entity=entity, bill_run_id=bill_run_id,
            now=now,
        )  # fmt: skip
        connection.execute(
            insert(wholesale_invoices).values(invoice_id=document, reseller=reseller.id)
        )
        outcome = "created"
    else:
        document = existing.id
        replace_draft(connection, invoice, document=document, bill_run_id=bill_run_id)
        outcome = "refreshed"
    _write_prices(connection, document, prices)
    if sources:
        connection.execute(
            insert(wholesale_sources),
            [{"wholesale_invoice_id": document, "retail_invoice_id": s} for s in sources],
        )
    number = None
    if finalize:
        number = finalize_invoice(connection, document, now)
        record_event(
            connection, "invoice_finalized", now, bill_run_id=bill_run_id, invoice=document,
            details={"number": number, "wholesale": reseller.id},
        )  # fmt: skip
    return WholesaleOutcome(outcome, document, invoice.total_minor, number)


def _clear_draft(connection: Connection, document: str) -> None:
    lines = select(invoice_items.c.id).where(invoice_items.c.invoice_id == document)
    connection.execute(
        delete(wholesale_items).where(wholesale_items.c.item_id.in_(lines.scalar_subquery()))
    )
    connection.execute(
        delete(wholesale_sources).where(wholesale_sources.c.wholesale_invoice_id == document)
    )


def _write_prices(connection: Connection, document: str, prices: Sequence[tuple[int, int]]) -> None:
    """The (price, per) of the wholesale lines, in their order (positions 1, 2, ...)."""
    if not prices:
        return
    rows = connection.execute(
        select(invoice_items.c.position, invoice_items.c.id).where(
            invoice_items.c.invoice_id == document, invoice_items.c.kind == "usage"
        )
    )
    ids = {row.position: row.id for row in rows}
    connection.execute(
        insert(wholesale_items),
        [
            {"item_id": ids[position], "price_micro": price, "per_units": per}
            for position, (price, per) in enumerate(prices, start=1)
        ],
    )
