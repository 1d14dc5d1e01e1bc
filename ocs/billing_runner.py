"""Bill runs for the node: their inputs from Redis, the billing database, the summary,
the metrics; ``ocs bill-run`` (:mod:`ocs.bill_run_command`) and the daily run inside
``ocs serve`` (:mod:`ocs.billing_schedule`) both run bill runs through it.

The bill run itself is :mod:`ocs.billing.bill_run` (no Redis). This module reads the
accounts (:mod:`ocs.billing_source`) and the active catalog from Redis (``redis.url``,
or the private Redis of ``redis.data_dir``), and opens the billing database: the
embedded SQLite one is created or upgraded on first use; a PostgreSQL one must be
migrated with ``ocs billing migrate`` first (a schema change in production is an
operator's decision, taken with a backup).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, write_to_textfile
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from ocs.bill_run_command import FLAGS
from ocs.billing.accounts import BillingAccount
from ocs.billing.bill_run import BillRunOptions, BillRunSummary, parse_shard, run_bill_run
from ocs.billing.database import (
    BillingDatabaseError,
    error_reason,
    open_database,
    shown_url,
)
from ocs.billing.off_cycle import run_off_cycle
from ocs.billing.periods import PeriodError, parse_month
from ocs.billing.schema import invoices
from ocs.billing.usage import BillingError
from ocs.billing_source import read_billing_accounts
from ocs.config import Settings, command_settings
from ocs.metrics import BillingMetrics
from ocs.redis_store import StoreUnavailable, open_store
from quota_engine.catalog.model import Catalog
from quota_engine.money import format_money
from quota_engine.store.catalogs import CatalogStore

__all__ = [
    "BillRunInputs",
    "bill_run_options",
    "open_billing_database",
    "read_inputs",
    "record_metrics",
    "run_command",
]


class _Failed(Exception):
    """Ends the command with exit code 2 and this message."""


@dataclass(frozen=True, slots=True)
class BillRunInputs:
    accounts: list[BillingAccount]
    catalog: Catalog


async def read_inputs(settings: Settings) -> BillRunInputs:
    """The accounts and the active catalog, from the Redis of ``settings``."""
    try:
        async with open_store(settings, share_running=True) as client:
            catalog = await CatalogStore(client).active()
            if catalog is None:
                raise _Failed("no active catalog in Redis (ocs catalog load, or ocs provision)")
            accounts = await read_billing_accounts(client)
    except StoreUnavailable as error:
        raise _Failed(str(error)) from None
    return BillRunInputs(accounts, catalog)


def open_billing_database(url: str) -> Engine:
    """The billing database; the embedded SQLite one is created or upgraded on first
    use, a PostgreSQL one must be at this version's schema (``ocs billing migrate``)."""
    try:
        return open_database(url, upgrade=url.startswith("sqlite"))
    except BillingDatabaseError as error:
        raise _Failed(f"billing database {shown_url(url)}: {error}") from None


def bill_run_options(
    settings: Settings, finalize: bool | None = None, *, own_process: bool = False
) -> BillRunOptions:
    return BillRunOptions(
        entity=settings.billing_entity,
        number_format=settings.billing_invoice_number_format,
        grace_period=int(settings.billing_grace_period),
        late_window=int(settings.billing_late_window),
        finalize=finalize,
        own_process=own_process,
    )


def invoice_states(engine: Engine) -> dict[str, int]:
    """Invoices per state in the database."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(invoices.c.state, func.count()).group_by(invoices.c.state)
        ).all()
    return {state: count for state, count in rows}


def record_metrics(metrics: BillingMetrics, summary: BillRunSummary, engine: Engine) -> None:
    metrics.bill_run(
        seconds=summary.seconds,
        ended_at=time.time(),
        outcomes={
            "created": summary.invoices_created,
            "refreshed": summary.drafts_refreshed,
            "finalized": summary.finalized,
            "failed": len({account for account, _ in summary.errors if account != "records"}),
        },
        records=summary.records,
        states=invoice_states(engine),
        ok=summary.ok,
    )


class ProgressBar:
    """``[#####.....] 1200/5000 invoice accounts`` on a terminal, redrawn in place."""

    def __init__(self, out: TextIO, width: int = 30) -> None:
        self.out, self.width = out, width

    def __call__(self, done: int, total: int) -> None:
        filled = self.width * done // total if total else self.width
        bar = "#" * filled + "." * (self.width - filled)
        self.out.write(f"\r[{bar}] {done}/{total} invoice accounts")
        if done >= total:
            self.out.write("\n")
        self.out.flush()


def summary_lines(summary: BillRunSummary, catalog: Catalog) -> list[str]:
    totals = ", ".join(
        format_money(total, currency, catalog.minor_digits)
        for currency, total in sorted(summary.totals_minor.items())
    )
    lines = [
        f"bill run {summary.run_id}: period {summary.period}, shard {summary.shard}",
        f"  invoice accounts {summary.accounts}: {summary.invoices_created} invoices created, "
        f"{summary.drafts_refreshed} drafts refreshed, {summary.finalized} finalised, "
        f"{summary.already_final} final already",
        f"  records {summary.records} (late {summary.late_records})",
    ]
    if summary.wholesale_created or summary.wholesale_refreshed:
        lines.append(
            f"  wholesale invoices: {summary.wholesale_created} created, "
            f"{summary.wholesale_refreshed} drafts refreshed"
        )
    lines += [
        f"  total {totals or '0'}",
        f"  time {summary.seconds:.1f} s",
    ]
    if summary.errors:
        lines.append(f"  errors {len(summary.errors)}:")
        lines.extend(f"    {account}: {message}" for account, message in summary.errors)
    return lines


def _until(text: str | None, timezone: str) -> int:
    if text is None:
        return int(time.time())
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Failed(f"--until: give YYYY-MM-DD or YYYY-MM-DDTHH:MM, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return int(moment.timestamp())


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _Failed(f"--date: give YYYY-MM-DD, got {text!r}") from None


def _off_cycle(
    args: argparse.Namespace,
    engine: Engine,
    loaded: BillRunInputs,
    records: Path,
    options: BillRunOptions,
) -> int:
    until = _until(args.until, loaded.catalog.timezone)
    try:
        made = run_off_cycle(
            engine, loaded.catalog, loaded.accounts, records, args.account,
            until=until, options=options, actor="ocs bill-run",
        )  # fmt: skip
    except BillingError as error:
        print(f"ocs bill-run: {error}", file=sys.stderr)
        return 1
    invoice = made.invoice
    assert invoice is not None  # made now: no idempotency key
    state = f"final {made.number}" if made.number else "draft"
    shown_until = datetime.fromtimestamp(until, ZoneInfo(loaded.catalog.timezone))
    print(
        f"off-cycle invoice {made.id} ({state}) of {args.account} up to "
        f"{shown_until.isoformat(timespec='minutes')}: {len(invoice.lines)} lines, total "
        f"{format_money(invoice.total_minor, invoice.currency, invoice.minor_digits)}"
    )
    return 0


def run_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run ``ocs bill-run``; the exit code."""
    overrides = {name: getattr(args, name) for name in FLAGS}
    settings = command_settings("ocs bill-run", args.config, env, overrides)
    if settings is None:
        return 2
    try:
        shard = parse_shard(args.shard)
        if args.period is not None:
            parse_month(args.period)
        day = _day(args.date) if args.date is not None else None
        if args.until is not None and args.account is None:
            raise _Failed("--until goes with --account")
        loaded = asyncio.run(read_inputs(settings))
        engine = open_billing_database(settings.billing_database_url)
    except (_Failed, ValueError) as error:
        print(f"ocs bill-run: {error}", file=sys.stderr)
        return 2
    try:
        options = bill_run_options(settings, args.finalize, own_process=True)
        records = Path(settings.records_directory)
        if args.account is not None:
            return _off_cycle(args, engine, loaded, records, options)
        progress = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
        summary = run_bill_run(
            engine, loaded.catalog, loaded.accounts, records,
            period=args.period, day=day, shard=shard, options=options, progress=progress,
        )  # fmt: skip
        for line in summary_lines(summary, loaded.catalog):
            print(line)
        if args.metrics_file:
            metrics = BillingMetrics(CollectorRegistry())
            record_metrics(metrics, summary, engine)
            write_to_textfile(args.metrics_file, metrics.registry)
        return 0 if summary.ok else 1
    except (_Failed, PeriodError, BillingDatabaseError) as error:
        print(f"ocs bill-run: {error}", file=sys.stderr)
        return 2
    except SQLAlchemyError as error:  # an off-cycle invoice's transaction, a metrics read
        print(f"ocs bill-run: billing database error: {error_reason(error)}", file=sys.stderr)
        return 2
    except OSError as error:  # --metrics-file
        print(f"ocs bill-run: {error}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
