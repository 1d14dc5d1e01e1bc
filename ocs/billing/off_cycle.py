"""Off-cycle invoices: one account billed now, outside its cycle (on demand, at close).

:func:`run_off_cycle` invoices an invoice account (and the accounts on its invoice) from
the start of its current period, or the end of its last off-cycle invoice in it, up to
``until``: the recurring fee prorated by days, the records that ended in that span and
no invoice holds, the adjustments not billed yet. The cycle invoice of the period later
covers only the rest (docs/invoicing.md, "Off-cycle invoices"). An off-cycle invoice is
refused once the period has a cycle invoice (draft or final): that invoice bills the
whole period already.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, select, text

from ocs.billing.accounts import BillingAccount, invoice_accounts
from ocs.billing.bill_run import BillRunOptions
from ocs.billing.compose import (
    ADJUSTMENT_PREFIX,
    ComposedInvoice,
    compose_invoice,
    postpaid_since,
)
from ocs.billing.invoices import (
    billed_records,
    cycle_invoices,
    free_invoice_id,
    invoice_id,
    off_cycle_invoices,
    record_event,
    write_invoice,
)
from ocs.billing.numbering import finalize_invoice
from ocs.billing.periods import BillPeriod, period_holding
from ocs.billing.resellers import Issuer, ensure_issuer_sequences, issuer_of
from ocs.billing.schema import invoices
from ocs.billing.usage import BillingError, UsageLedger
from ocs.records.reader import RecordReader
from quota_engine.catalog.model import Catalog

__all__ = ["OffCycleInvoice", "run_off_cycle"]


@dataclass(frozen=True, slots=True)
class OffCycleInvoice:
    id: str
    number: str | None
    invoice: ComposedInvoice | None
    """None when ``key`` found the invoice made before."""


def run_off_cycle(
    engine: Engine,
    catalog: Catalog,
    accounts: Sequence[BillingAccount],
    records_dir: str | Path,
    account_id: str,
    *,
    until: int,
    options: BillRunOptions | None = None,
    now: int | None = None,
    actor: str | None = None,
    key: str | None = None,
) -> OffCycleInvoice:
    """The off-cycle invoice of ``account_id`` up to ``until`` (Unix s), written and, unless
    ``options.finalize`` is False, finalised. Raises :class:`BillingError` saying why not
    (nothing left to bill included). ``key`` (an idempotency key): the same key again
    answers the invoice it made (``invoice`` None), billing nothing more."""
    options = options or BillRunOptions()
    at = int(time.time()) if now is None else now
    groups = invoice_accounts(accounts)
    members = groups.get(account_id)
    if members is None:
        known = {a.id: a for a in accounts}
        if account_id not in known:
            raise BillingError(f"no account {account_id!r}")
        if not known[account_id].postpaid:
            raise BillingError(f"account {account_id!r} is prepaid: it gets no invoice")
        holder = next(o for o, m in groups.items() if any(a.id == account_id for a in m))
        raise BillingError(f"account {account_id!r} is billed on the invoice of {holder!r}")
    owner = members[0]
    issuer = issuer_of(members, catalog, Issuer(options.entity, options.number_format))
    period = period_holding(until - 1, owner.bill_cycle_day, catalog.timezone)
    # one transaction from the checks to the write: two requests for one account queue
    # (SQLite's write lock at BEGIN, PostgreSQL's advisory lock on the account), so the
    # second sees the first's invoice and bills from its end
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:account))"), {"account": owner.id}
            )
        if key is not None:
            document = invoice_id(owner.id, period.start, key=key)
            done = connection.execute(
                select(invoices.c.id, invoices.c.number).where(invoices.c.id == document)
            ).one_or_none()
            if done is not None:
                return OffCycleInvoice(done.id, done.number, None)
        invoice = _compose(connection, catalog, members, period, records_dir, until, options)
        if key is None:
            document = free_invoice_id(connection, owner.id, period.start, off_cycle_end=until)
        number = None
        # the issuer's sequence in its format before the draft exists: finalised later
        # (ocs invoice finalize, the API), it finds it
        ensure_issuer_sequences(connection, issuer)
        write_invoice(
            connection, invoice, document=document, entity=issuer.entity,
            bill_run_id=None, now=at,
        )  # fmt: skip
        record_event(
            connection, "off_cycle_invoice_created", at, actor=actor, invoice=document,
            details={"account": owner.id, "until": until, "key": key},
        )  # fmt: skip
        if options.finalize is not False:
            number = finalize_invoice(connection, document, at)
            record_event(
                connection, "invoice_finalized", at, actor=actor, invoice=document,
                details={"number": number},
            )  # fmt: skip
    return OffCycleInvoice(document, number, invoice)


def _compose(
    connection: Connection,
    catalog: Catalog,
    members: Sequence[BillingAccount],
    period: BillPeriod,
    records_dir: str | Path,
    until: int,
    options: BillRunOptions,
) -> ComposedInvoice:
    owner = members[0]
    if cycle_invoices(connection, [owner.id], period.start):
        raise BillingError(
            f"account {owner.id!r}: the period from {period.name} has its invoice already"
        )
    earlier = off_cycle_invoices(connection, [owner.id], period.start, period.end)
    start = max([period.start] + [i.period_end for i in earlier.get(owner.id, [])])
    if until <= start:
        raise BillingError(
            f"account {owner.id!r} is billed up to {start} already (until must be later)"
        )
    ledger = UsageLedger(
        catalog, catalog.timezone, [m.id for m in members] if owner.tax_exempt else ()
    )
    wanted = {m.id: m for m in members}
    records = []
    if Path(records_dir).exists():
        reader = RecordReader(
            records_dir,
            start=period.start - options.late_window,
            end=until,
            partition={m.partition for m in members},
            warn=False,
        )
        records = [r for r in reader if r["account"] in wanted]
    billed = billed_records(connection, [(r["account"], r["id"]) for r in records])
    adjustments = {
        m.id: [a for a in m.adjustments if period.start - options.late_window <= a.at < until]
        for m in members
    }
    billed_adjustments = billed_records(
        connection,
        [(m, ADJUSTMENT_PREFIX + a.id) for m, chosen in adjustments.items() for a in chosen],
    )
    for record in records:
        account = wanted[record["account"]]
        if record["id"] not in billed and record["end"] >= postpaid_since(account, catalog):
            ledger.add(record, account.plan_at(record["end"]), late=record["end"] < period.start)
    chosen = {
        account: [a for a in items if ADJUSTMENT_PREFIX + a.id not in billed_adjustments]
        for account, items in adjustments.items()
    }
    invoice = compose_invoice(
        owner, list(members), period, ledger, catalog,
        adjustments=chosen, covered=(start, until), off_cycle=True,
    )  # fmt: skip
    if not invoice.lines:
        raise BillingError(
            f"account {owner.id!r}: nothing to bill from {start} to {until} (no fee, no usage)"
        )
    return invoice
