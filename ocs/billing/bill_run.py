"""A bill run: one invoice per invoice account and period, from the exported records.

:func:`run_bill_run` brings the invoices of a period up to date (docs/invoicing.md,
"Bill runs"):

1. the invoice accounts (:func:`~ocs.billing.accounts.invoice_accounts`) of this
   run's share (``shard``: ``k/n`` takes the accounts whose record partition is ``k``
   modulo ``n``, so ``n`` processes share a run), each with its period;
2. what exists already: a final invoice is never touched (the account is done); a
   draft is refreshed (the grace period's late records go into it); records already on
   an invoice (an off-cycle one, an earlier period's) are not billed again;
3. the records of the partitions of those accounts are read from the segment files and
   summed (:class:`~ocs.billing.usage.UsageLedger`): those that ended in the account's
   period, and those of the ``late_window`` before it that no invoice holds (late usage,
   flagged as such);
4. each invoice is composed (:func:`~ocs.billing.compose.compose_invoice`) and written,
   ``batch`` invoices per transaction (with the run's progress row); a draft whose
   grace period is over is finalised in the same transaction (its number assigned then).

It is idempotent and resumable: invoice ids are derived from account and period, a
unique index allows one live cycle invoice per account and period, and a crash loses
at most the uncommitted batch, which the next run writes. Accounts it cannot bill (a
missing tax rate, a loop in a hierarchy) are listed in the summary and skipped; the
others are billed.
"""

from __future__ import annotations

import gc
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ocs.billing.accounts import Adjustment, BillingAccount, invoice_accounts
from ocs.billing.compose import (
    ADJUSTMENT_PREFIX,
    ComposedInvoice,
    compose_invoice,
    postpaid_since,
)
from ocs.billing.database import BillingDatabaseError, error_reason
from ocs.billing.invoices import (
    ExistingInvoice,
    billed_records,
    cycle_invoices,
    free_invoice_id,
    free_invoice_ids,
    in_batches,
    off_cycle_invoices,
    record_event,
    replace_draft,
    write_invoice,
    write_invoices,
)
from ocs.billing.numbering import finalize_invoice
from ocs.billing.periods import BillPeriod, PeriodError, period_ending, period_of
from ocs.billing.resellers import (
    Issuer,
    ensure_issuer_sequences,
    issuer_of,
    record_issuers,
    write_wholesale,
)
from ocs.billing.schema import bill_runs, invoice_items, invoices
from ocs.billing.usage import BillingError, UnbillableRecord, UsageLedger
from ocs.records.reader import RecordReader
from quota_engine.catalog import Catalog

__all__ = [
    "BillRunOptions",
    "BillRunSummary",
    "Shard",
    "parse_shard",
    "run_bill_run",
]

DAY = 86_400


@dataclass(frozen=True, slots=True)
class Shard:
    """This process's share of a bill run: partitions ``index`` modulo ``count``."""

    index: int = 0
    count: int = 1

    def takes(self, partition: int) -> bool:
        return partition % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"1/4"`` as :class:`Shard`; ValueError saying why otherwise."""
    index, sep, count = text.partition("/")
    try:
        shard = Shard(int(index), int(count))
    except ValueError:
        shard = None
    if not sep or shard is None or shard.count < 1 or not 0 <= shard.index < shard.count:
        raise ValueError(f"shard must be K/N with 0 <= K < N, such as 0/4, got {text!r}")
    return shard


@dataclass(frozen=True, slots=True)
class BillRunOptions:
    """How invoices are made: the operator's billing entity that issues and numbers
    them (a reseller's subscribers' invoices are the reseller's entity's: catalog
    ``resellers``), its number format, the grace period after a period's end during which its invoices stay
    drafts (late records go in), how far back unbilled records are looked for, and
    invoices per transaction."""

    entity: str = "default"
    number_format: str = "INV-{seq:06d}"
    grace_period: int = 3 * DAY
    late_window: int = 62 * DAY
    batch: int = 1000
    finalize: bool | None = None
    """True: finalise now, grace period or not; False: leave drafts; None: finalise the
    drafts whose grace period is over."""
    own_process: bool = False
    """The run is the whole process (``ocs bill-run``): it may pause and freeze the
    process's cyclic garbage collector (a third of a large run's time otherwise). Never
    inside ``ocs serve``, whose collector settings are the node's."""


@dataclass(slots=True)
class BillRunSummary:
    run_id: str
    period: str
    shard: str
    accounts: int = 0
    invoices_created: int = 0
    drafts_refreshed: int = 0
    finalized: int = 0
    already_final: int = 0
    records: int = 0
    late_records: int = 0
    wholesale_created: int = 0
    wholesale_refreshed: int = 0
    totals_minor: dict[str, int] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors


Progress = Callable[[int, int], None]
"""Called with (invoice accounts done, invoice accounts in all) as the run goes."""


@dataclass(slots=True)
class _Job:
    owner: BillingAccount
    members: list[BillingAccount]
    period: BillPeriod
    issuer: Issuer = Issuer("default", "INV-{seq:06d}")
    """Who issues and numbers the invoice: the operator, or the invoice account's
    reseller (:func:`~ocs.billing.resellers.issuer_of`)."""
    existing: ExistingInvoice | None = None
    covered: tuple[int, int] = (0, 0)
    adjustments: dict[str, list[Adjustment]] = field(default_factory=dict)
    billed_elsewhere: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    """Per member, the spans whose fee another live invoice charged (module doc)."""
    check_records: bool = False
    """A member is on another live invoice overlapping the period: its records are
    checked against the billed ones before they are summed."""


def _periods(
    owners: Iterable[BillingAccount], timezone: str, month: str | None, day: date | None
) -> dict[str, BillPeriod]:
    periods: dict[str, BillPeriod] = {}
    for owner in owners:
        if month is not None:
            periods[owner.id] = period_of(month, owner.bill_cycle_day, timezone)
        elif day is not None:
            period = period_ending(day, owner.bill_cycle_day, timezone)
            if period is not None:
                periods[owner.id] = period
    return periods


def run_bill_run(
    engine: Engine,
    catalog: Catalog,
    accounts: Sequence[BillingAccount],
    records_dir: str | Path,
    *,
    period: str | None = None,
    day: date | None = None,
    shard: Shard = Shard(),
    options: BillRunOptions = BillRunOptions(),
    now: int | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> BillRunSummary:
    """Bill ``period`` (YYYY-MM: the periods starting in that month) or the periods
    ending on ``day`` for the accounts of ``shard``; the summary. ``now`` (Unix s) is
    when the run happens, for the grace period (default: the clock)."""
    if (period is None) == (day is None):
        raise PeriodError("give a period (YYYY-MM) or a date, not both")
    started = clock()
    at = int(time.time()) if now is None else now
    name = period if period is not None else f"ending {day}"
    loops: list[tuple[str, str]] = []
    groups = invoice_accounts(accounts, loops)
    owners = [m[0] for m in groups.values() if shard.takes(m[0].partition)]
    periods = _periods(owners, catalog.timezone, period, day)
    # two runs in one second (a retry at once) are two runs: a random tail
    run_id = (
        f"run-{name.replace(' ', '-')}-{shard.index}of{shard.count}-{at}-{secrets.token_hex(3)}"
    )
    summary = BillRunSummary(run_id=run_id, period=name, shard=str(shard))
    partition_of = {a.id: a.partition for a in accounts}
    # a loop of parents: those accounts are listed and skipped, the others billed
    summary.errors.extend(e for e in loops if shard.takes(partition_of[e[0]]))
    operator = Issuer(options.entity, options.number_format)
    # a reseller's wholesale account (an account of the store, for its contact and
    # payments) gets its wholesale invoice, no retail one
    wholesale_accounts = {r.wholesale_account for r in catalog.resellers}
    jobs: list[_Job] = []
    for owner in owners:
        if owner.id not in periods or owner.id in wholesale_accounts:
            continue
        try:
            issuer = issuer_of(groups[owner.id], catalog, operator)
        except BillingError as error:
            # an unknown reseller: this invoice account is listed, the others billed
            summary.errors.append((owner.id, str(error)))
            continue
        jobs.append(_Job(owner, groups[owner.id], periods[owner.id], issuer))
    summary.accounts = len(jobs)

    with engine.begin() as connection:
        # the sequence of each issuer of this run's invoices, in its format, before any
        # is written (a draft finalised later, by ``ocs invoice finalize`` or the API,
        # finds it); a reseller claiming the operator's entity was refused above
        issuers = {operator.entity: operator} | {j.issuer.entity: j.issuer for j in jobs}
        for issuer in issuers.values():
            ensure_issuer_sequences(connection, issuer)
        record_issuers(connection, catalog, at, operator_entity=options.entity)
        connection.execute(
            insert(bill_runs).values(
                id=run_id,
                period=name,
                kind="cycle",
                state="running",
                started_at=at,
                accounts_total=len(jobs),
            )
        )
        record_event(
            connection,
            "bill_run_started",
            at,
            bill_run_id=run_id,
            details={"period": name, "shard": str(shard)},
        )
        pending = _plan(connection, jobs, summary)

    try:
        # reading makes no reference cycles (records are dicts freed as they are summed)
        # while the ledger grows by millions of objects the cyclic collector would walk
        # again and again: it is paused, then the ledger is frozen (see below)
        collecting = options.own_process and gc.isenabled()
        if collecting:
            gc.disable()
        try:
            ledger = _read_usage(
                connection_engine=engine,
                catalog=catalog,
                jobs=pending,
                records_dir=records_dir,
                options=options,
                summary=summary,
            )
        finally:
            if collecting:
                gc.enable()
        done = summary.already_final
        if progress is not None:
            progress(done, len(jobs))
        # the ledger is millions of long-lived objects (a group, its key and its list of
        # record ids per usage line): frozen, the cyclic garbage collector does not walk
        # them while the batches' short-lived objects are collected
        if options.own_process:
            gc.freeze()
        try:
            for start in range(0, len(pending), max(options.batch, 1)):
                batch = pending[start : start + options.batch]
                done += len(batch)
                _write_batch(engine, catalog, ledger, batch, run_id, at, options, summary, done)
                if progress is not None:
                    progress(done, len(jobs))
        finally:
            if options.own_process:
                gc.unfreeze()
        _bill_wholesale(engine, catalog, period, day, run_id, at, options, summary)
        summary.seconds = clock() - started
        with engine.begin() as connection:
            connection.execute(
                update(bill_runs)
                .where(bill_runs.c.id == run_id)
                .values(
                    state="completed",
                    finished_at=int(time.time()) if now is None else now,
                    accounts_done=done,
                    invoices_created=summary.invoices_created,
                    errors=len(summary.errors),
                )
            )
            record_event(
                connection,
                "bill_run_completed",
                at,
                bill_run_id=run_id,
                details={
                    "invoices_created": summary.invoices_created,
                    "drafts_refreshed": summary.drafts_refreshed,
                    "finalized": summary.finalized,
                    "errors": len(summary.errors),
                },
            )
    except SQLAlchemyError as error:
        # a database that fails mid-run (a lock timeout, a lost connection, a value it
        # refuses): what was committed stays, the run is marked failed, and running it
        # again writes the rest
        _mark_failed(engine, run_id, at, error)
        raise BillingDatabaseError(f"bill run {run_id} failed: {error_reason(error)}") from error
    return summary


def _bill_wholesale(
    engine: Engine,
    catalog: Catalog,
    month: str | None,
    day: date | None,
    run_id: str,
    now: int,
    options: BillRunOptions,
    summary: BillRunSummary,
) -> None:
    """Each reseller's wholesale invoice of its period starting in ``month`` (or ending
    on ``day``), after the retail invoices: one transaction per reseller
    (:func:`~ocs.billing.resellers.write_wholesale`). Every shard runs it: what the
    others finalised meanwhile is taken by the last. A reseller that cannot be billed
    (usage without a wholesale price) is listed under its wholesale account."""
    for reseller in catalog.resellers:
        if month is not None:
            wholesale_period: BillPeriod | None = period_of(
                month, reseller.bill_cycle_day, catalog.timezone
            )
        else:
            assert day is not None
            wholesale_period = period_ending(day, reseller.bill_cycle_day, catalog.timezone)
        if wholesale_period is None:
            continue
        due = (
            options.finalize
            if options.finalize is not None
            else wholesale_period.end + options.grace_period <= now
        )
        try:
            with engine.begin() as connection:
                made = write_wholesale(
                    connection, reseller, wholesale_period, catalog, entity=options.entity,
                    bill_run_id=run_id, now=now, finalize=due,
                )  # fmt: skip
        except BillingError as error:
            summary.errors.append((reseller.wholesale_account, str(error)))
            continue
        except IntegrityError:
            continue  # another process (a shard) made it meanwhile: its run counts it
        if made.outcome == "created":
            summary.wholesale_created += 1
        elif made.outcome == "refreshed":
            summary.wholesale_refreshed += 1
        else:
            continue
        if made.number is not None:
            summary.finalized += 1
        summary.totals_minor[catalog.currency] = (
            summary.totals_minor.get(catalog.currency, 0) + made.total_minor
        )


def _mark_failed(engine: Engine, run_id: str, at: int, error: SQLAlchemyError) -> None:
    try:
        with engine.begin() as connection:
            connection.execute(
                update(bill_runs)
                .where(bill_runs.c.id == run_id)
                .values(state="failed", finished_at=int(time.time()))
            )
            record_event(
                connection, "bill_run_failed", at, bill_run_id=run_id,
                details={"error": error_reason(error)},
            )  # fmt: skip
    except SQLAlchemyError:
        pass  # the database is gone: the row stays "running", the error is raised anyway


def _plan(connection: Connection, jobs: list[_Job], summary: BillRunSummary) -> list[_Job]:
    """Which jobs have work left (no final invoice), with their covered span."""
    by_start: dict[int, list[_Job]] = {}
    for job in jobs:
        by_start.setdefault(job.period.start, []).append(job)
    pending: list[_Job] = []
    for start, group in sorted(by_start.items()):
        existing = cycle_invoices(connection, [j.owner.id for j in group], start)
        end = max(j.period.end for j in group)
        off_cycle = off_cycle_invoices(connection, [j.owner.id for j in group], start, end)
        for job in group:
            job.existing = existing.get(job.owner.id)
            if job.existing is not None and job.existing.state != "draft":
                summary.already_final += 1
                continue
            covered_start = max(
                [job.period.start]
                + [
                    i.period_end
                    for i in off_cycle.get(job.owner.id, [])
                    if i.period_end <= job.period.end
                ]
            )
            job.covered = (covered_start, job.period.end)
            pending.append(job)
    pending.sort(key=lambda j: j.owner.id)
    _find_overlaps(connection, pending)
    return pending


def _find_overlaps(connection: Connection, jobs: Sequence[_Job]) -> None:
    """Other live invoices that overlap a job's period and hold one of its members: the
    member moved (to another parent, to its own invoice), its cycle day changed, or an
    off-cycle invoice billed part of the period. Their fee spans are not charged again
    and their records are not billed again."""
    if not jobs:
        return
    member_job = {m.id: job for job in jobs for m in job.members}
    own = {job.existing.id for job in jobs if job.existing is not None}
    c, items = invoices.c, invoice_items.c
    start = min(j.period.start for j in jobs)
    end = max(j.period.end for j in jobs)
    overlapping = {
        row.id: row
        for row in connection.execute(
            select(c.id, c.account, c.period_start, c.period_end).where(
                c.state != "void", c.period_start < end, c.period_end > start
            )
        )
        if row.id not in own
    }
    for batch in in_batches(list(overlapping)):
        # an overlapping invoice of a member holds, or may hold, its records
        for document in batch:
            job = member_job.get(overlapping[document].account)
            if job is not None and _overlap(overlapping[document], job):
                job.check_records = True
        lines = connection.execute(
            select(
                items.invoice_id,
                items.child_account,
                items.kind,
                items.period_start,
                items.period_end,
            )  # fmt: skip
            .where(items.invoice_id.in_(batch))
            .distinct()
        )
        for line in lines:
            invoice = overlapping[line.invoice_id]
            member = line.child_account or invoice.account
            job = member_job.get(member)
            if job is None or not _overlap(invoice, job):
                continue
            job.check_records = True
            if line.kind == "recurring" and line.period_start is not None:
                job.billed_elsewhere.setdefault(member, []).append(
                    (line.period_start, line.period_end)
                )


def _overlap(invoice: Any, job: _Job) -> bool:
    return bool(invoice.period_start < job.period.end and invoice.period_end > job.period.start)


def _read_usage(
    *,
    connection_engine: Engine,
    catalog: Catalog,
    jobs: Sequence[_Job],
    records_dir: str | Path,
    options: BillRunOptions,
    summary: BillRunSummary,
) -> UsageLedger:
    exempt = {m.id for job in jobs if job.owner.tax_exempt for m in job.members}
    ledger = UsageLedger(catalog, catalog.timezone, exempt)
    if not jobs:
        return ledger
    member_job: dict[str, _Job] = {m.id: job for job in jobs for m in job.members}
    members: dict[str, BillingAccount] = {m.id: m for job in jobs for m in job.members}
    # an account converted from prepaid: its usage before was paid from its balance
    prepaid_until = {m.id: since for m in members.values() if (since := postpaid_since(m, catalog))}
    partitions = {m.partition for m in members.values()}
    earliest = min(j.period.start for j in jobs) - options.late_window
    latest = max(j.period.end for j in jobs)
    late: list[dict[str, object]] = []
    current_ids: list[tuple[str, str]] = []
    records = Path(records_dir)
    reader = RecordReader(records, start=earliest, end=latest, partition=partitions, warn=False)
    off_cycle_covered = any(j.covered[0] > j.period.start for j in jobs)
    later = _with_later_invoices(connection_engine, jobs)
    held: list[dict[str, object]] = []
    if records.exists():
        for record in reader:
            account = record["account"]
            job = member_job.get(account)
            if job is None:
                continue
            ended = record["end"]
            if ended >= job.period.end or ended < prepaid_until.get(account, 0):
                continue
            if ended < job.period.start:
                # the late window counts from this account's period, not the run's earliest
                if ended >= job.period.start - options.late_window:
                    late.append(record)
            elif (
                (off_cycle_covered and job.covered[0] > job.period.start)
                or job.owner.id in later
                or job.check_records
            ):
                held.append(record)
                current_ids.append((account, record["id"]))
            else:
                _add(ledger, record, members[account], summary)
    # records another invoice holds already: an off-cycle invoice's, an earlier period's
    with connection_engine.connect() as connection:
        drafts = {j.existing.id for j in jobs if j.existing is not None}
        looked_up = [(str(r["account"]), str(r["id"])) for r in late] + current_ids
        billed = billed_records(connection, looked_up, ignoring=drafts)
        for record in held:
            if record["id"] not in billed:
                _add(ledger, record, members[str(record["account"])], summary)
        for record in late:
            if record["id"] not in billed:
                _add(ledger, record, members[str(record["account"])], summary, late=True)
                summary.late_records += 1
        adjustment_ids = [
            (m.id, ADJUSTMENT_PREFIX + a.id)
            for job in jobs
            for m in job.members
            for a in m.adjustments
            if a.at < job.period.end
        ]
        billed_adjustments = billed_records(connection, adjustment_ids, ignoring=drafts)
    for job in jobs:
        for member in job.members:
            chosen = [
                a
                for a in member.adjustments
                if job.period.start - options.late_window <= a.at < job.period.end
                and ADJUSTMENT_PREFIX + a.id not in billed_adjustments
            ]
            if chosen:
                job.adjustments[member.id] = chosen
    for warning in reader.warnings:
        summary.errors.append(("records", warning))
    return ledger


def _with_later_invoices(engine: Engine, jobs: Sequence[_Job]) -> set[str]:
    """The invoice accounts of ``jobs`` with a live invoice of a later period: it may
    hold records of this one as late usage (the next period was billed while this
    one's draft was open), so this period's records are checked as well."""
    by_end: dict[int, list[str]] = {}
    for job in jobs:
        by_end.setdefault(job.period.end, []).append(job.owner.id)
    found: set[str] = set()
    c = invoices.c
    with engine.connect() as connection:
        for end, owners in by_end.items():
            for batch in in_batches(owners):
                query = select(c.account).where(
                    c.account.in_(batch), c.period_start >= end, c.state != "void"
                )
                found.update(connection.execute(query).scalars())
    return found


def _add(
    ledger: UsageLedger,
    record: Mapping[str, object],
    account: BillingAccount,
    summary: BillRunSummary,
    *,
    late: bool = False,
) -> None:
    try:
        ledger.add(record, account.plan_at(int(record["end"])), late=late)  # type: ignore[call-overload]
    except UnbillableRecord as error:
        summary.errors.append(("records", str(error)))
    except BillingError as error:
        summary.errors.append((account.id, str(error)))
    else:
        summary.records += 1


def _compose(catalog: Catalog, ledger: UsageLedger, job: _Job) -> ComposedInvoice:
    return compose_invoice(
        job.owner,
        job.members,
        job.period,
        ledger,
        catalog,
        adjustments=job.adjustments,
        covered=job.covered,
        billed_elsewhere=job.billed_elsewhere,
    )


def _due(job: _Job, options: BillRunOptions, now: int) -> bool:
    if options.finalize is not None:
        return options.finalize
    return job.period.end + options.grace_period <= now


def _write_batch(
    engine: Engine,
    catalog: Catalog,
    ledger: UsageLedger,
    batch: Sequence[_Job],
    run_id: str,
    now: int,
    options: BillRunOptions,
    summary: BillRunSummary,
    done: int,
) -> None:
    """Compose and write ``batch``, and record the run's progress (``done`` accounts)
    in the same transaction."""
    composed: list[tuple[_Job, ComposedInvoice]] = []
    failed = {account for account, _ in summary.errors}
    for job in batch:
        if any(m.id in failed for m in job.members):
            continue
        try:
            composed.append((job, _compose(catalog, ledger, job)))
        except BillingError as error:
            summary.errors.append((job.owner.id, str(error)))
    try:
        with engine.begin() as connection:
            _bulk_settings(connection)
            outcomes = _write_all(connection, composed, run_id, now, options)
            created = sum(1 for outcome in outcomes if outcome.startswith("created"))
            _record_progress(connection, run_id, done, summary, created)
        recorded = True
    except IntegrityError:
        recorded = False
        # another process wrote one of these meanwhile: one transaction each, skipping it
        outcomes = []
        for job, invoice in composed:
            try:
                with engine.begin() as connection:
                    outcomes.append(_write_one(connection, job, invoice, run_id, now, options))
            except IntegrityError as error:
                with engine.connect() as connection:
                    now_there = cycle_invoices(connection, [job.owner.id], job.period.start)
                if job.owner.id in now_there:
                    # another run (a shard started twice, the daily run and a manual
                    # one) made this invoice meanwhile: done, not an error
                    outcomes.append("final")
                else:
                    summary.errors.append((job.owner.id, f"not written: {error.orig}"))
                    outcomes.append("")
    for (_, invoice), outcome in zip(composed, outcomes, strict=True):
        if not outcome:
            continue
        if outcome.startswith("created"):
            summary.invoices_created += 1
        elif outcome.startswith("refreshed"):
            summary.drafts_refreshed += 1
        elif outcome == "final":
            summary.already_final += 1
            continue
        if outcome.endswith("+final"):
            summary.finalized += 1
        summary.totals_minor[invoice.currency] = (
            summary.totals_minor.get(invoice.currency, 0) + invoice.total_minor
        )
    if not recorded:
        with engine.begin() as connection:
            _record_progress(connection, run_id, done, summary)


SQLITE_WAL_CHECKPOINT_PAGES = 16_384
"""WAL pages (64 MiB) after which a bill run's SQLite connection checkpoints (copies
the WAL into the database file and fsyncs it); SQLite's default of 1,000 made every
batch's commit a checkpoint of the index pages the batch touched, most of which the
next batch touches again."""


SQLITE_CACHE_KIB = 65_536
"""SQLite's page cache of a bill run's connection (64 MiB; the default is 2 MiB): the
lines' index on (invoice id, position) takes its inserts at random places, and with
the default cache most of them read and write back a page."""


def _bulk_settings(connection: Connection) -> None:
    """On SQLite, checkpoint the WAL less often (:data:`SQLITE_WAL_CHECKPOINT_PAGES`):
    each commit is still fsync'd (``synchronous=FULL``), so nothing about durability
    changes; the WAL file grows to about 64 MiB before it is copied back. The setting
    stays with the pooled connection."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(f"PRAGMA wal_autocheckpoint = {SQLITE_WAL_CHECKPOINT_PAGES}")
        connection.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")


def _record_progress(
    connection: Connection, run_id: str, done: int, summary: BillRunSummary, created: int = 0
) -> None:
    """The run's row: ``done`` accounts, the invoices created (``created`` more than the
    summary counts yet), the errors."""
    connection.execute(
        update(bill_runs)
        .where(bill_runs.c.id == run_id)
        .values(
            accounts_done=done,
            invoices_created=summary.invoices_created + created,
            errors=len(summary.errors),
        )
    )


def _write_all(
    connection: Connection,
    composed: Sequence[tuple[_Job, ComposedInvoice]],
    run_id: str,
    now: int,
    options: BillRunOptions,
) -> list[str]:
    """:func:`_write_one` of each, in one transaction and few statements: the drafts
    refreshed first, then the new invoices written together (one id lookup, one
    :func:`write_invoices`), then the finalisations in the batch's order."""
    outcomes: dict[int, str] = {}
    for index, (job, invoice) in enumerate(composed):
        if job.existing is not None:
            refreshed = replace_draft(
                connection, invoice, document=job.existing.id, bill_run_id=run_id
            )
            outcomes[index] = "refreshed" if refreshed else "final"
    _move_drafts(connection, composed, outcomes)
    fresh = [index for index, (job, _) in enumerate(composed) if job.existing is None]
    documents = dict(
        zip(
            fresh,
            free_invoice_ids(
                connection,
                [(composed[i][0].owner.id, composed[i][0].period.start) for i in fresh],
            ),
            strict=True,
        )
    )
    # the invoices of each issuer (the operator, each reseller) in one write
    by_entity: dict[str, list[tuple[str, ComposedInvoice]]] = {}
    for i in fresh:
        by_entity.setdefault(composed[i][0].issuer.entity, []).append(
            (documents[i], composed[i][1])
        )
    for entity, written in by_entity.items():
        write_invoices(connection, written, entity=entity, bill_run_id=run_id, now=now)
    result: list[str] = []
    for index, (job, _) in enumerate(composed):
        outcome = outcomes.get(index, "created")
        if outcome != "final" and _due(job, options, now):
            document = documents[index] if job.existing is None else job.existing.id
            _finalize(connection, document, run_id, now)
            outcome += "+final"
        result.append(outcome)
    return result


def _move_drafts(
    connection: Connection,
    composed: Sequence[tuple[_Job, ComposedInvoice]],
    outcomes: Mapping[int, str],
) -> None:
    """The refreshed drafts issued by their account's issuer now: an account that
    became a reseller's subscriber (or left it) while its draft was open. One update
    per issuer; a draft whose entity is right already is left as it is."""
    by_entity: dict[str, list[str]] = {}
    for index, outcome in outcomes.items():
        job = composed[index][0]
        if outcome == "refreshed" and job.existing is not None:
            by_entity.setdefault(job.issuer.entity, []).append(job.existing.id)
    c = invoices.c
    for entity, documents in by_entity.items():
        for batch in in_batches(documents):
            connection.execute(
                update(invoices)
                .where(c.id.in_(batch), c.state == "draft", c.entity != entity)
                .values(entity=entity)
            )


def _finalize(connection: Connection, document: str, run_id: str, now: int) -> None:
    number = finalize_invoice(connection, document, now)
    record_event(
        connection,
        "invoice_finalized",
        now,
        bill_run_id=run_id,
        invoice=document,
        details={"number": number},
    )


def _write_one(
    connection: Connection,
    job: _Job,
    invoice: ComposedInvoice,
    run_id: str,
    now: int,
    options: BillRunOptions,
) -> str:
    if job.existing is not None:
        document = job.existing.id
    else:
        document = free_invoice_id(connection, job.owner.id, job.period.start)
    if job.existing is None:
        write_invoice(
            connection,
            invoice,
            document=document,
            entity=job.issuer.entity,
            bill_run_id=run_id,
            now=now,
        )
        outcome = "created"
    elif replace_draft(connection, invoice, document=document, bill_run_id=run_id):
        outcome = "refreshed"
        _move_drafts(connection, [(job, invoice)], {0: outcome})
    else:
        return "final"
    if _due(job, options, now):
        _finalize(connection, document, run_id, now)
        outcome += "+final"
    return outcome
