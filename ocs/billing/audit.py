"""Revenue assurance of a bill period: ``ocs bill-audit --period 2026-11``.

:func:`audit_period` reads the billing database and the record segments (never Redis)
and proves, for the invoices whose ``period_start`` falls in the local month ``period``
(in ``timezone``, the catalog's), what docs/invoicing.md ("Audit: ocs bill-audit")
lists:

1. **Records.** Every rated record of a billed account whose ``end`` is in the period of
   one of its live (draft or final) invoices is on exactly one line of a live invoice,
   any invoice of the database (an off-cycle one, the next period's as late usage):
   ``unbilled`` when on none, ``billed_twice`` when on more. The accounts of an invoice
   are its account and the child accounts its lines name (a hierarchy's sections).
   Every record id a line of an audited invoice links (adjustments,
   ``adjustment:<id>``, aside) is in the segments: ``phantom_link`` otherwise.
2. **Totals.** Each invoice's ``subtotal``, ``tax`` and ``total``, minor and micro, are
   the sums of its lines (tax lines: kind ``tax``): ``invoice_total``.
3. **Lines.** Each usage and late-usage line's ``amount_micro`` is the sum of the
   ``charged`` of its records (``line_amount``) and its ``quantity`` the sum of their
   used units (``line_quantity``); every line's ``amount_minor`` is its
   ``amount_micro`` rounded to the minor unit (``line_rounding``). The rounding
   difference of the usage lines (``amount_minor - amount_micro``) is summed per
   currency: information, not a discrepancy.
4. **Taxes.** The non-tax lines grouped by (tax category, rate): each group's tax is
   recomputed from the rates stored on the lines (no catalog needed), as the bill run
   computes it (:func:`round_ratio_to_minor_unit` of the group's rounded amounts times
   the rate, once), and must be the amount of that group's one tax line
   (``tax_mismatch``, ``tax_missing``); a tax line without a group, or a second one,
   is ``tax_unexpected``. Lines of a tax-exempt invoice carry no rate: no group, no tax.
5. **Numbers.** For each billing entity and series (invoices, credit notes), the
   numbers of the numbered documents, read back against the sequence's format, are
   exactly 1 .. ``next_value - 1``: ``number_gap`` (one per run of missing numbers),
   ``number_duplicate``, ``number_beyond_sequence``, ``number_unparsable``,
   ``number_no_sequence``. Numbers are global to a sequence, so this check covers every
   period's documents.

Given the accounts (``accounts``: what the bill run was given, read from Redis by the
caller, as ``ocs bill-audit`` does), the audit no longer depends on the invoices to know
who should have been billed:

6. **Accounts.** Each postpaid invoice account
   (:func:`~ocs.billing.accounts.invoice_accounts`) whose period (its cycle day) starts
   in the month has a live invoice overlapping that period (``missing_invoice``: the
   bill run skipped it or never reached it), unless none of its members existed before
   the period ended and none has a record in it; every record of a member that ended in
   that period is in the records check (``unbilled`` when on no live invoice, invoice
   or not); a record of a prepaid account on a line of a live audited invoice is
   ``prepaid_billed``; an account whose parent chain loops (the bill run skips it) is
   ``hierarchy_loop``. Without the accounts a postpaid account with no invoice at all
   goes unseen, and so do its records.

7. **Fees.** For each account (a line's ``child_account``, else its invoice's
   ``account``), the spans ``[period_start, period_end)`` of its ``recurring`` lines on
   the live audited invoices and on any other live invoice overlapping their periods
   never overlap: ``fee_overlap``, once per pair of lines, with both invoices and lines
   and the days charged twice (at least one of the two lines is on an audited invoice).
   Spans that meet (two plans in sequence, an off-cycle invoice and the cycle invoice
   after it) are no overlap. One query reads the other invoices' lines.

A segment the records cannot all be read from (damage, an unsealed leftover of a
stopped writer) is ``segment_unreadable``: the records it holds may be billed and not
seen here, or unbilled and not reported.

The audit only reads (a read-only transaction, one snapshot on both databases); it
changes nothing and may run beside a bill run.
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import SQLAlchemyError

from ocs.billing.accounts import BillingAccount, invoice_accounts
from ocs.billing.compose import ADJUSTMENT_PREFIX
from ocs.billing.database import reading, shown_url
from ocs.billing.invoices import in_batches, live_links_of
from ocs.billing.periods import BillPeriod, PeriodError, local_day, period_of
from ocs.billing.resellers import WHOLESALE_KINDS, wholesale_quantity
from ocs.billing.schema import (
    billing_entities,
    credit_notes,
    invoice_item_records,
    invoice_items,
    invoices,
    number_sequences,
    wholesale_invoices,
    wholesale_items,
    wholesale_sources,
)
from ocs.records.reader import RecordReader
from quota_engine.money import round_ratio_to_minor_unit, round_to_minor_unit
from quota_engine.number_formats import format_number

__all__ = ["KINDS", "AuditError", "AuditReport", "Discrepancy", "audit_period", "number_pattern"]

KINDS = (
    "unbilled",
    "billed_twice",
    "phantom_link",
    "link_account",
    "missing_invoice",
    "prepaid_billed",
    "hierarchy_loop",
    "invoice_total",
    "line_amount",
    "line_quantity",
    "line_rounding",
    "tax_mismatch",
    "tax_missing",
    "tax_unexpected",
    "fee_overlap",
    "number_gap",
    "number_duplicate",
    "number_beyond_sequence",
    "number_unparsable",
    "number_no_sequence",
    "segment_unreadable",
    "wholesale_price",
    "wholesale_amount",
    "wholesale_quantity",
    "wholesale_source",
    "wholesale_unbilled",
)
"""Every kind of discrepancy, a closed set (the metric's label values)."""

_PPM = 1_000_000
_USAGE_KINDS = frozenset({"usage", "late_usage"})
_TOTALS = ("subtotal", "tax", "total")


class AuditError(Exception):
    """The audit cannot run (no records directory, a database error): exit 2."""


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """One thing found wrong, with the account, invoice, line (position) and record it
    concerns."""

    kind: str
    message: str
    invoice: str | None = None
    line: int | None = None
    record: str | None = None
    account: str | None = None

    def text(self) -> str:
        where = []
        if self.account is not None:
            where.append(f"account {self.account}")
        if self.invoice is not None:
            where.append(f"invoice {self.invoice}")
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.record is not None:
            where.append(f"record {self.record}")
        place = f" {' '.join(where)}:" if where else ""
        return f"{self.kind}:{place} {self.message}"

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "account": self.account,
            "invoice": self.invoice,
            "line": self.line,
            "record": self.record,
            "message": self.message,
        }


@dataclass(slots=True)
class AuditReport:
    """What :func:`audit_period` checked and found."""

    period: str
    timezone: str
    start: int
    end: int
    invoices: int = 0
    lines: int = 0
    records: int = 0
    numbered_documents: int = 0
    accounts: int | None = None
    """Postpaid invoice accounts checked; None when the audit had no accounts."""
    rounding_micro: dict[str, int] = field(default_factory=dict)
    discrepancies: list[Discrepancy] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.discrepancies

    def by_kind(self) -> dict[str, int]:
        """Discrepancies per kind, every kind present (0 when none)."""
        counts = dict.fromkeys(KINDS, 0)
        for found in self.discrepancies:
            counts[found.kind] += 1
        return counts

    def as_json(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "timezone": self.timezone,
            "from": _iso(self.start),
            "to": _iso(self.end),
            "clean": self.clean,
            "invoices_checked": self.invoices,
            "lines_checked": self.lines,
            "records_checked": self.records,
            "numbered_documents_checked": self.numbered_documents,
            "invoice_accounts_checked": self.accounts,
            "rounding_difference_micro": dict(sorted(self.rounding_micro.items())),
            "discrepancies_by_kind": self.by_kind(),
            "discrepancies": [d.as_json() for d in self.discrepancies],
        }


def _iso(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class _Record:
    account: str
    end: int
    charged: int
    quantity: int


@dataclass(slots=True)
class _Invoice:
    row: Any
    items: list[Any] = field(default_factory=list)
    links: dict[int, list[str]] = field(default_factory=dict)
    accounts: dict[str, str] = field(default_factory=dict)
    """The account each linked record id is linked under (the link's ``account``)."""


@dataclass(slots=True)
class _Expected:
    """What the accounts say should have been billed."""

    periods: dict[str, BillPeriod]
    """Invoice account -> its period starting in the month."""
    members: dict[str, list[BillingAccount]]
    """Invoice account -> its members (itself first)."""
    owner_of: dict[str, str]
    """Member -> its invoice account (of those with a period)."""
    prepaid: frozenset[str]
    with_records: set[str] = field(default_factory=set)
    """Invoice accounts with a member's record in their period."""


def audit_period(
    engine: Engine,
    records_dir: str | Path,
    *,
    period: str,
    timezone: str,
    late_window: int,
    accounts: Sequence[BillingAccount] | None = None,
) -> AuditReport:
    """Audit the invoices whose period starts in the local month ``period`` (YYYY-MM) of
    ``timezone`` against the segments of ``records_dir`` (module doc). ``late_window``
    (seconds) is how far before an invoice's period its late-usage records may have
    ended (the bill run's ``billing.late_window``): the segments are read from there.
    ``accounts`` (every account, as the bill run is given them) adds the accounts'
    checks (module doc, 6.); without them an account with no invoice goes unseen.

    Raises :class:`~ocs.billing.periods.PeriodError` for a bad period, and
    :class:`AuditError` when the records directory is absent or the database fails."""
    month = period_of(period, 1, timezone)
    report = AuditReport(period=period, timezone=timezone, start=month.start, end=month.end)
    records_path = Path(records_dir)
    if not records_path.exists():
        raise AuditError(f"no such records directory: {records_path}")
    expected = None if accounts is None else _expected(accounts, period, timezone, report)
    try:
        with reading(engine).connect() as connection:
            if connection.dialect.name == "postgresql":
                # one snapshot for every query of the audit, as SQLite's deferred BEGIN
                connection.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
            connection.begin()
            documents = _invoices(connection, month.start, month.end)
            report.invoices = len(documents)
            report.lines = sum(len(d.items) for d in documents.values())
            records, scope = _read_records(records_path, documents, expected, late_window, report)
            if expected is not None:
                _check_invoice_accounts(connection, expected, report)
            _check_records(connection, documents, records, scope, expected, report)
            wholesale = _wholesale_of(connection, documents)
            for document in documents.values():
                _check_totals(document, report)
                _check_lines(document, records, report, wholesale=document.row.id in wholesale)
                _check_taxes(document, report)
            _check_wholesale(connection, documents, wholesale, report)
            _check_fee_overlaps(connection, documents, month.start, month.end, timezone, report)
            _check_numbers(connection, report)
    except SQLAlchemyError as exc:
        original = getattr(exc, "orig", None)
        reason = str(original if original is not None else exc).strip().splitlines()[0]
        raise AuditError(f"billing database {shown_url(engine.url)}: {reason}") from None
    return report


# --- reading --------------------------------------------------------------------------


def _invoices(connection: Connection, start: int, end: int) -> dict[str, _Invoice]:
    c = invoices.c
    in_window = (c.period_start >= start) & (c.period_start < end)
    documents = {
        row.id: _Invoice(row)
        for row in connection.execute(
            select(invoices).where(in_window).order_by(c.period_start, c.account, c.id)
        )
    }
    items = invoice_items.c
    query = (
        select(invoice_items)
        .join(invoices, invoices.c.id == items.invoice_id)
        .where(in_window)
        .order_by(items.invoice_id, items.position)
    )
    for item in connection.execute(query):
        documents[item.invoice_id].items.append(item)
    links = invoice_item_records.c
    query = (
        select(items.invoice_id, links.item_id, links.account, links.record_id)
        .join(invoice_items, items.id == links.item_id)
        .join(invoices, invoices.c.id == items.invoice_id)
        .where(in_window)
        .order_by(links.item_id, links.record_id)
    )
    for link in connection.execute(query):
        document = documents[link.invoice_id]
        document.links.setdefault(link.item_id, []).append(link.record_id)
        document.accounts[link.record_id] = link.account
    return documents


def _members(documents: Mapping[str, _Invoice]) -> dict[str, list[tuple[int, int]]]:
    """The billed accounts and the periods of their live invoices."""
    spans: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for document in documents.values():
        row = document.row
        if row.state == "void":
            continue
        span = (row.period_start, row.period_end)
        spans[row.account].add(span)
        for item in document.items:
            if item.child_account:
                spans[item.child_account].add(span)
    return {account: sorted(found) for account, found in spans.items()}


def _used(record: Mapping[str, Any]) -> int:
    # as the usage ledger counts them (ocs.billing.usage.UsageLedger.add)
    unit = record.get("unit") or ""
    used = record.get("used") or {}
    quantity = used.get(unit, 0) if unit else sum(used.values())
    return abs(int(quantity))


def _read_records(
    path: Path,
    documents: Mapping[str, _Invoice],
    expected: _Expected | None,
    late_window: int,
    report: AuditReport,
) -> tuple[dict[str, _Record], dict[str, str | None]]:
    """The records linked by the audited invoices and those of the billed accounts in
    their periods. The latter are the scope of the records check: record id -> None when
    in the period of one of its account's invoices, else the invoice account in whose
    period (from the accounts) it ended."""
    members = _members(documents)
    linked = {
        record
        for document in documents.values()
        for ids in document.links.values()
        for record in ids
        if not record.startswith(ADJUSTMENT_PREFIX)
    }
    records: dict[str, _Record] = {}
    scope: dict[str, str | None] = {}
    starts = [d.row.period_start - late_window for d in documents.values()]
    ends = [d.row.period_end for d in documents.values()]
    periods = expected.periods if expected is not None else {}
    owner_of = expected.owner_of if expected is not None else {}
    starts.extend(p.start for p in periods.values())
    ends.extend(p.end for p in periods.values())
    if not starts:
        return records, scope
    reader = RecordReader(path, start=min(starts), end=max(ends), warn=False)
    for record in reader:
        record_id = str(record["id"])
        account = str(record["account"])
        ended = int(record["end"])
        spans = members.get(account, ())
        owner = owner_of.get(account)
        in_owner = False
        if owner is not None:
            owner_period = periods[owner]
            in_owner = owner_period.start <= ended < owner_period.end
            if in_owner:
                assert expected is not None
                expected.with_records.add(owner)
        if any(start <= ended < end for start, end in spans):
            scope[record_id] = None
        elif in_owner:
            scope[record_id] = owner
        if record_id in scope or record_id in linked:
            records[record_id] = _Record(
                account, ended, int(record.get("charged") or 0), _used(record)
            )
    for warning in reader.warnings:
        report.discrepancies.append(Discrepancy("segment_unreadable", warning))
    report.records = len(records)
    return records, scope


def _live_links(
    connection: Connection, records: Iterable[tuple[str, str]]
) -> dict[str, list[tuple[str, int]]]:
    """Where each of ``records`` (``(account, record id)``, the key of the one-live-link
    index) is on a live invoice of the whole database: (invoice, line position) pairs by
    record id, sorted."""
    links, items = invoice_item_records.c, invoice_items.c
    found: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for batch in in_batches(sorted(set(records))):
        query = (
            live_links_of(batch, links.record_id, items.invoice_id, items.position)
            .join(invoice_items, items.id == links.item_id)
            .join(invoices, invoices.c.id == items.invoice_id)
            .where(invoices.c.state != "void")
        )
        for row in connection.execute(query):
            found[row.record_id].append((row.invoice_id, row.position))
    for places in found.values():
        places.sort()
    return found


def _expected(
    accounts: Sequence[BillingAccount], month: str, timezone: str, report: AuditReport
) -> _Expected:
    """The invoice accounts and their periods starting in ``month``; the loops of parents
    (and cycle days no period can be made of) reported on the way."""
    errors: list[tuple[str, str]] = []
    groups = invoice_accounts(accounts, errors)
    for account_id, why in sorted(errors):
        report.discrepancies.append(
            Discrepancy(
                "hierarchy_loop",
                f"{why.removeprefix(f'account {account_id}: ')}: the account is on no "
                "invoice account's invoice, so the bill run never bills it",
                account=account_id,
            )
        )
    periods: dict[str, BillPeriod] = {}
    for owner_id, members in groups.items():
        try:
            periods[owner_id] = period_of(month, members[0].bill_cycle_day, timezone)
        except PeriodError as error:
            report.discrepancies.append(
                Discrepancy(
                    "missing_invoice",
                    f"no bill period can be made of it ({error}): the bill run cannot invoice it",
                    account=owner_id,
                )
            )
    report.accounts = len(groups)
    return _Expected(
        periods=periods,
        members={owner: groups[owner] for owner in periods},
        owner_of={m.id: owner for owner in periods for m in groups[owner]},
        prepaid=frozenset(a.id for a in accounts if not a.postpaid),
    )


def _check_invoice_accounts(
    connection: Connection, expected: _Expected, report: AuditReport
) -> None:
    """``missing_invoice``: an invoice account that existed in its period (or has
    records in it) with no live invoice overlapping the period."""
    if not expected.periods:
        return
    c = invoices.c
    start = min(p.start for p in expected.periods.values())
    end = max(p.end for p in expected.periods.values())
    query = select(c.account, c.period_start, c.period_end).where(
        c.state != "void", c.period_start < end, c.period_end > start
    )
    spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for row in connection.execute(query):
        spans[row.account].append((row.period_start, row.period_end))
    for owner, period in sorted(expected.periods.items()):
        existed = any(m.created is None or m.created < period.end for m in expected.members[owner])
        if not existed and owner not in expected.with_records:
            continue  # opened after the period, nothing to bill in it
        if any(s < period.end and e > period.start for s, e in spans.get(owner, ())):
            continue
        count = len(expected.members[owner])
        members = f" ({count} accounts on its invoice)" if count > 1 else ""
        report.discrepancies.append(
            Discrepancy(
                "missing_invoice",
                f"postpaid invoice account{members} has no live invoice for its period "
                f"{period.first_day} to {period.last_day}",
                account=owner,
            )
        )


# --- the checks -----------------------------------------------------------------------


def _check_records(
    connection: Connection,
    documents: Mapping[str, _Invoice],
    records: Mapping[str, _Record],
    scope: Mapping[str, str | None],
    expected: _Expected | None,
    report: AuditReport,
) -> None:
    found = report.discrepancies
    linked_live: set[str] = set()
    # (account, record id) of every record to look up: as the records and the links say
    checked_keys: set[tuple[str, str]] = set()
    prepaid = expected.prepaid if expected is not None else frozenset()
    for document in documents.values():
        positions = {item.id: item.position for item in document.items}
        live = document.row.state != "void"
        for item_id, ids in document.links.items():
            for record_id in ids:
                linked_under = document.accounts[record_id]
                if live:
                    linked_live.add(record_id)
                    checked_keys.add((linked_under, record_id))
                if record_id.startswith(ADJUSTMENT_PREFIX):
                    continue
                if record_id in records:
                    account = records[record_id].account
                    if linked_under != account:
                        found.append(
                            Discrepancy(
                                "link_account",
                                f"linked under account {linked_under}, but the record "
                                f"charged account {account}: the rule of one live line "
                                "per record is kept per account, so it cannot see this link",
                                invoice=document.row.id,
                                line=positions.get(item_id),
                                record=record_id,
                                account=account,
                            )
                        )
                    if live and account in prepaid:
                        found.append(
                            Discrepancy(
                                "prepaid_billed",
                                f"record of prepaid account {account} is on a line of this "
                                "live invoice: a prepaid account is billed by its balance, "
                                "never invoiced",
                                invoice=document.row.id,
                                line=positions.get(item_id),
                                record=record_id,
                                account=account,
                            )
                        )
                    continue
                found.append(
                    Discrepancy(
                        "phantom_link",
                        "linked to a record id that the segments do not hold (records read "
                        f"from {_iso(report.start)} less the late window to the periods' end)",
                        invoice=document.row.id,
                        line=positions.get(item_id),
                        record=record_id,
                    )
                )
    checked = sorted(set(scope) | linked_live)
    checked_keys.update((records[record_id].account, record_id) for record_id in scope)
    where = _live_links(connection, checked_keys)
    for record_id in checked:
        places = where.get(record_id, [])
        if not places and record_id in scope:
            record = records[record_id]
            owner = scope[record_id]
            if owner is None:
                within = "in the period of its invoice"
            else:
                assert expected is not None
                period = expected.periods[owner]
                within = (
                    f"in the period {period.first_day} to {period.last_day} of invoice "
                    f"account {owner}"
                )
            found.append(
                Discrepancy(
                    "unbilled",
                    f"record of account {record.account} that ended {_iso(record.end)}, "
                    f"{within}, is on no live invoice line",
                    record=record_id,
                )
            )
        elif len(places) > 1:
            shown = ", ".join(f"invoice {i} line {p}" for i, p in places)
            found.append(
                Discrepancy(
                    "billed_twice",
                    f"on {len(places)} live invoice lines: {shown}",
                    invoice=places[0][0],
                    line=places[0][1],
                    record=record_id,
                )
            )


def _check_totals(document: _Invoice, report: AuditReport) -> None:
    row = document.row
    sums: dict[str, int] = {}
    for unit in ("minor", "micro"):
        tax = sum(getattr(i, f"amount_{unit}") for i in document.items if i.kind == "tax")
        subtotal = sum(getattr(i, f"amount_{unit}") for i in document.items if i.kind != "tax")
        sums.update({f"subtotal_{unit}": subtotal, f"tax_{unit}": tax})
        sums[f"total_{unit}"] = subtotal + tax
    for name in (f"{total}_{unit}" for unit in ("minor", "micro") for total in _TOTALS):
        stored = getattr(row, name)
        if stored != sums[name]:
            report.discrepancies.append(
                Discrepancy(
                    "invoice_total",
                    f"{name} is {stored}, its lines sum to {sums[name]}",
                    invoice=row.id,
                )
            )


def _check_lines(
    document: _Invoice,
    records: Mapping[str, _Record],
    report: AuditReport,
    *,
    wholesale: bool = False,
) -> None:
    """The lines' rounding, and a usage line's sums of its records (a wholesale
    invoice's lines link none: :func:`_check_wholesale`)."""
    row = document.row
    found = report.discrepancies
    for item in document.items:
        rounded = round_to_minor_unit(item.amount_micro, row.minor_digits)
        if item.amount_minor != rounded:
            found.append(
                Discrepancy(
                    "line_rounding",
                    f"amount_minor {item.amount_minor} is not amount_micro "
                    f"{item.amount_micro} rounded to {row.minor_digits} minor digits ({rounded})",
                    invoice=row.id,
                    line=item.position,
                )
            )
        if item.kind not in _USAGE_KINDS or wholesale:
            continue
        report.rounding_micro[row.currency] = (
            report.rounding_micro.get(row.currency, 0) + item.amount_minor - item.amount_micro
        )
        ids = document.links.get(item.id, [])
        summed = [records[i] for i in ids if i in records]
        if len(summed) != len(ids):
            continue  # a phantom link, reported as such: the sums cannot be checked
        charged = sum(r.charged for r in summed)
        if item.amount_micro != charged:
            found.append(
                Discrepancy(
                    "line_amount",
                    f"amount_micro {item.amount_micro}, its {len(ids)} records charged {charged}",
                    invoice=row.id,
                    line=item.position,
                )
            )
        quantity = sum(r.quantity for r in summed)
        if (item.quantity or 0) != quantity:
            found.append(
                Discrepancy(
                    "line_quantity",
                    f"quantity {item.quantity}, its {len(ids)} records used {quantity}",
                    invoice=row.id,
                    line=item.position,
                )
            )


def _wholesale_of(connection: Connection, documents: Mapping[str, _Invoice]) -> dict[str, str]:
    """The audited invoices that are wholesale invoices: invoice id -> reseller."""
    found: dict[str, str] = {}
    for batch in in_batches(list(documents)):
        query = select(wholesale_invoices).where(wholesale_invoices.c.invoice_id.in_(batch))
        found.update({row.invoice_id: row.reseller for row in connection.execute(query)})
    return found


def _check_wholesale(
    connection: Connection,
    documents: Mapping[str, _Invoice],
    wholesale: Mapping[str, str],
    report: AuditReport,
) -> None:
    """docs/invoicing.md, "Resellers": each live wholesale invoice's usage lines are,
    per service, category and unit, the units of the final retail invoices it holds
    (:func:`~ocs.billing.resellers.wholesale_quantity`, the bill run's own count:
    ``wholesale_quantity``), each priced at its stored wholesale price and rounded
    once (``wholesale_amount``; a line without a price is ``wholesale_price``); what
    it holds are final invoices of its reseller's billing entity
    (``wholesale_source``). And every final retail invoice of a reseller's entity
    among the audited ones, with units to wholesale, is on a live wholesale invoice
    (``wholesale_unbilled``)."""
    found = report.discrepancies
    entities = {
        row.reseller: row.entity
        for row in connection.execute(
            select(billing_entities.c.entity, billing_entities.c.reseller).where(
                billing_entities.c.reseller.isnot(None)
            )
        )
    }
    live = [d for d in wholesale if documents[d].row.state != "void"]
    sources: dict[str, list[str]] = defaultdict(list)
    for batch in in_batches(live):
        for link in connection.execute(
            select(wholesale_sources).where(
                wholesale_sources.c.wholesale_invoice_id.in_(batch), ~wholesale_sources.c.released
            )
        ):
            sources[link.wholesale_invoice_id].append(link.retail_invoice_id)
    retail_ids = sorted({r for held in sources.values() for r in held})
    retail: dict[str, Any] = {}
    retail_lines: dict[str, list[Any]] = defaultdict(list)
    for batch in in_batches(retail_ids):
        retail.update(
            {
                row.id: row
                for row in connection.execute(
                    select(invoices.c.id, invoices.c.entity, invoices.c.state).where(
                        invoices.c.id.in_(batch)
                    )
                )
            }
        )
        items = invoice_items.c
        for line in connection.execute(
            select(
                items.invoice_id,
                items.kind,
                items.service,
                items.category,
                items.unit,
                items.quantity,
                items.amount_micro,
            ).where(items.invoice_id.in_(batch), items.kind.in_(WHOLESALE_KINDS))  # fmt: skip
        ):
            retail_lines[line.invoice_id].append(line)
    prices: dict[int, Any] = {}
    item_ids = [i.id for d in live for i in documents[d].items if i.kind in _USAGE_KINDS]
    for batch in in_batches(item_ids):
        query = select(wholesale_items).where(wholesale_items.c.item_id.in_(batch))
        prices.update({row.item_id: row for row in connection.execute(query)})
    for document_id in live:
        document = documents[document_id]
        row = document.row
        entity = entities.get(wholesale[document_id])
        for source in sources.get(document_id, []):
            held = retail.get(source)
            if held is None or held.state != "final" or held.entity != entity:
                what = "absent" if held is None else f"{held.state}, of entity {held.entity}"
                found.append(
                    Discrepancy(
                        "wholesale_source",
                        f"holds invoice {source} ({what}): a wholesale invoice sums final "
                        f"invoices of reseller {wholesale[document_id]}'s entity {entity}",
                        invoice=row.id,
                        account=row.account,
                    )
                )
        owed = wholesale_quantity(
            line for source in sources.get(document_id, []) for line in retail_lines[source]
        )
        lines: dict[tuple[str, str, str], Any] = {}
        for item in document.items:
            if item.kind not in _USAGE_KINDS:
                continue
            key = (item.service or "", item.category or "", item.unit or "")
            lines[key] = item
            price = prices.get(item.id)
            if price is None:
                found.append(
                    Discrepancy(
                        "wholesale_price",
                        "wholesale line without its wholesale price (wholesale_items)",
                        invoice=row.id,
                        line=item.position,
                        account=row.account,
                    )
                )
            else:
                amount = round_ratio_to_minor_unit(
                    (item.quantity or 0) * price.price_micro, price.per_units, row.minor_digits
                )
                if item.amount_minor != amount or item.amount_micro != amount:
                    found.append(
                        Discrepancy(
                            "wholesale_amount",
                            f"amount {item.amount_minor} (micro {item.amount_micro}), its "
                            f"quantity {item.quantity} at {price.price_micro} per "
                            f"{price.per_units} units is {amount}",
                            invoice=row.id,
                            line=item.position,
                            account=row.account,
                        )
                    )
        for key in sorted(set(owed) | set(lines)):
            item = lines.get(key)
            billed = (item.quantity or 0) if item is not None else 0
            if billed != owed.get(key, 0):
                service, category, unit = key
                found.append(
                    Discrepancy(
                        "wholesale_quantity",
                        f"{service} {category or '(no category)'}: quantity {billed} {unit}, "
                        f"the retail invoices it holds bill {owed.get(key, 0)}",
                        invoice=row.id,
                        line=None if item is None else item.position,
                        account=row.account,
                    )
                )
    # the audited retail invoices of resellers with units to wholesale: held?
    reseller_entities = set(entities.values())
    candidates = [
        d.row.id
        for d in documents.values()
        if d.row.entity in reseller_entities
        and d.row.state == "final"
        and d.row.id not in wholesale
        and wholesale_quantity(d.items)
    ]
    held_by_live: set[str] = set()
    for batch in in_batches(candidates):
        held_by_live.update(
            connection.execute(
                select(wholesale_sources.c.retail_invoice_id)
                .join(invoices, invoices.c.id == wholesale_sources.c.wholesale_invoice_id)
                .where(
                    wholesale_sources.c.retail_invoice_id.in_(batch),
                    ~wholesale_sources.c.released,
                    invoices.c.state != "void",
                )
            ).scalars()
        )
    for candidate in candidates:
        if candidate not in held_by_live:
            row = documents[candidate].row
            found.append(
                Discrepancy(
                    "wholesale_unbilled",
                    f"final invoice {row.number} of reseller entity {row.entity} is on no "
                    "live wholesale invoice: its usage is not billed to the reseller",
                    invoice=row.id,
                    account=row.account,
                )
            )


def _check_taxes(document: _Invoice, report: AuditReport) -> None:
    row = document.row
    found = report.discrepancies
    bases: dict[tuple[str, int], int] = {}
    for item in document.items:
        if item.kind == "tax" or item.tax_category is None or item.tax_rate_ppm is None:
            continue
        key = (item.tax_category, item.tax_rate_ppm)
        bases[key] = bases.get(key, 0) + item.amount_minor
    expected = {
        key: round_ratio_to_minor_unit(base * key[1], _PPM, row.minor_digits)
        for key, base in bases.items()
        if key[1] != 0 and base != 0
    }
    seen: set[tuple[str, int]] = set()
    for item in document.items:
        if item.kind != "tax":
            continue
        key = (item.tax_category or "", item.tax_rate_ppm if item.tax_rate_ppm is not None else -1)
        rate = "no rate" if item.tax_rate_ppm is None else f"{item.tax_rate_ppm} ppm"
        group = f"{item.tax_category} at {rate}"
        if key in seen or key not in expected:
            reason = "a second tax line" if key in seen else "no taxed line"
            found.append(
                Discrepancy(
                    "tax_unexpected",
                    f"tax line of {group} ({item.amount_minor}): {reason} of that category "
                    "and rate",
                    invoice=row.id,
                    line=item.position,
                )
            )
            seen.add(key)
            continue
        seen.add(key)
        tax = expected[key]
        if item.amount_minor != tax or item.amount_micro != tax:
            found.append(
                Discrepancy(
                    "tax_mismatch",
                    f"tax of {group} is {item.amount_minor} (micro {item.amount_micro}), "
                    f"recomputed {tax} on a base of {bases[key]}",
                    invoice=row.id,
                    line=item.position,
                )
            )
    for key in sorted(set(expected) - seen):
        found.append(
            Discrepancy(
                "tax_missing",
                f"no tax line for {key[0]} at {key[1]} ppm: {expected[key]} on a base of "
                f"{bases[key]}",
                invoice=row.id,
            )
        )


@dataclass(frozen=True, slots=True)
class _Fee:
    """A recurring line's span, for the overlap check."""

    start: int
    end: int
    invoice: str
    position: int
    plan: str | None
    audited: bool


def _fee_spans(
    connection: Connection, documents: Mapping[str, _Invoice], start: int, end: int
) -> dict[str, list[_Fee]]:
    """Account -> the spans of its recurring lines on the live audited invoices and on
    every other live invoice overlapping them (one query for the latter)."""
    spans: dict[str, list[_Fee]] = defaultdict(list)

    def add(account: str, item: Any, invoice: str, audited: bool) -> None:
        if item.period_start is None or item.period_end is None:
            return  # no span to compare
        if item.period_end <= item.period_start:
            return
        fee = _Fee(item.period_start, item.period_end, invoice, item.position, item.plan, audited)
        spans[item.child_account or account].append(fee)

    live = [d for d in documents.values() if d.row.state != "void"]
    for document in live:
        for item in document.items:
            if item.kind == "recurring":
                add(document.row.account, item, document.row.id, True)
    if not live:
        return spans
    low = min(d.row.period_start for d in live)
    high = max(d.row.period_end for d in live)
    c, items = invoices.c, invoice_items.c
    query = (
        select(
            c.id.label("invoice"),
            c.account.label("account"),
            items.child_account,
            items.position,
            items.plan,
            items.period_start,
            items.period_end,
        )
        .join(invoices, c.id == items.invoice_id)
        .where(
            items.kind == "recurring",
            c.state != "void",
            c.period_start < high,
            c.period_end > low,
            # not audited: those are read already
            (c.period_start < start) | (c.period_start >= end),
        )
        .order_by(c.id, items.position)
    )
    for row in connection.execute(query):
        add(row.account, row, row.invoice, False)
    return spans


def _check_fee_overlaps(
    connection: Connection,
    documents: Mapping[str, _Invoice],
    start: int,
    end: int,
    timezone: str,
    report: AuditReport,
) -> None:
    """``fee_overlap``: two recurring lines of one account charging one day."""

    def days(first: int, after: int) -> str:
        return f"{local_day(first, timezone)} to {local_day(after - 1, timezone)}"

    def described(fee: _Fee) -> str:
        plan = f"plan {fee.plan}, " if fee.plan else ""
        return f"invoice {fee.invoice} line {fee.position} ({plan}{days(fee.start, fee.end)})"

    for account, fees in sorted(_fee_spans(connection, documents, start, end).items()):
        fees.sort(key=lambda f: (f.start, f.end, f.invoice, f.position))
        active: list[_Fee] = []
        for fee in fees:
            active = [a for a in active if a.end > fee.start]
            for earlier in active:
                if not (earlier.audited or fee.audited):
                    continue  # another period's audit reports it
                shown = earlier if earlier.audited else fee
                until = min(earlier.end, fee.end)
                first, last = local_day(fee.start, timezone), local_day(until - 1, timezone)
                count = (last - first).days + 1
                report.discrepancies.append(
                    Discrepancy(
                        "fee_overlap",
                        f"recurring fee charged twice for {days(fee.start, until)} "
                        f"({count} day{'s' if count != 1 else ''}): {described(earlier)} "
                        f"and {described(fee)}",
                        invoice=shown.invoice,
                        line=shown.position,
                        account=account,
                    )
                )
            active.append(fee)


# --- numbers --------------------------------------------------------------------------


def number_pattern(form: str, entity: str) -> re.Pattern[str]:
    """A regex matching the numbers ``form`` writes for ``entity``; group ``seq`` is the
    first ``{seq}`` as written (its decimal digits, with any padding or separators).
    Whether the rest agrees is for the caller to check, by writing the value back."""
    parts: list[str] = []
    named = False
    for literal, name, _spec, _conversion in string.Formatter().parse(form):
        parts.append(re.escape(literal))
        if name == "entity":
            parts.append(re.escape(entity))
        elif name == "seq":
            digits = r"[-+ ]?[0-9][0-9,_]*"
            parts.append(f"(?:{digits})" if named else f"(?P<seq>{digits})")
            named = True
    return re.compile("".join(parts))


def _value(form: str, entity: str, pattern: re.Pattern[str], number: str) -> int | None:
    match = pattern.fullmatch(number)
    if match is None:
        return None
    # the pattern's digits always make an int; writing it back decides
    value = int(match.group("seq").replace(",", "").replace("_", "").strip())
    return value if format_number(form, entity, value) == number else None


def _check_numbers(connection: Connection, report: AuditReport) -> None:
    sequences = {
        (row.entity, row.series): row for row in connection.execute(select(number_sequences))
    }
    numbered: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for series, table in (("invoice", invoices), ("credit_note", credit_notes)):
        c = table.c
        query = select(c.id, c.entity, c.number).where(c.number.is_not(None)).order_by(c.id)
        for row in connection.execute(query):
            numbered[row.entity, series].append((row.id, row.number))
    found = report.discrepancies
    for key in sorted(set(sequences) | set(numbered)):
        entity, series = key
        documents = numbered.get(key, [])
        report.numbered_documents += len(documents)
        what = series.replace("_", " ")
        sequence = sequences.get(key)
        if sequence is None:
            for document, number in documents:
                found.append(
                    Discrepancy(
                        "number_no_sequence",
                        f"{what} {document} has number {number!r}, but entity {entity!r} "
                        f"has no {what} number sequence",
                        invoice=document if series == "invoice" else None,
                    )
                )
            continue
        pattern = number_pattern(sequence.format, entity)
        holders: dict[int, list[str]] = defaultdict(list)
        for document, number in documents:
            value = _value(sequence.format, entity, pattern, number)
            invoice = document if series == "invoice" else None
            if value is None:
                found.append(
                    Discrepancy(
                        "number_unparsable",
                        f"{what} {document}: number {number!r} is not written in the "
                        f"format {sequence.format!r} of entity {entity!r}",
                        invoice=invoice,
                    )
                )
            elif not 1 <= value < sequence.next_value:
                found.append(
                    Discrepancy(
                        "number_beyond_sequence",
                        f"{what} {document}: number {number!r} ({value}) is outside the values "
                        f"the sequence of entity {entity!r} assigned (1 to "
                        f"{sequence.next_value - 1})",
                        invoice=invoice,
                    )
                )
            else:
                holders[value].append(document)
        for value, owners in sorted(holders.items()):
            if len(owners) > 1:
                number = format_number(sequence.format, entity, value)
                found.append(
                    Discrepancy(
                        "number_duplicate",
                        f"{what} number {number!r} of entity {entity!r} is on "
                        f"{len(owners)} documents: {', '.join(owners)}",
                        invoice=owners[0] if series == "invoice" else None,
                    )
                )
        for first, last in _missing_runs(holders, sequence.next_value - 1):
            low = format_number(sequence.format, entity, first)
            high = format_number(sequence.format, entity, last)
            span = repr(low) if first == last else f"{low!r} to {high!r} ({last - first + 1})"
            found.append(
                Discrepancy(
                    "number_gap",
                    f"{what} number {span} of entity {entity!r} assigned by the sequence "
                    f"(next value {sequence.next_value}) but on no {what}",
                )
            )


def _missing_runs(present: Mapping[int, object], last: int) -> Iterator[tuple[int, int]]:
    """The runs ``(first, last)`` of 1..``last`` that ``present`` lacks."""
    start: int | None = None
    for value in range(1, last + 1):
        if value in present:
            if start is not None:
                yield start, value - 1
                start = None
        elif start is None:
            start = value
    if start is not None:
        yield start, last
