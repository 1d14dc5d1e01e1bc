"""``ocs bill-audit --period 2026-11``: the revenue-assurance audit of a bill period.

Runs :func:`ocs.billing.audit.audit_period` against the billing database
(``billing.database_url``), the record segments (``records.directory``) and the
accounts, read from Redis as ``ocs bill-run`` reads them (``redis.url``, or the private
Redis of ``redis.data_dir``: the one a running ``ocs serve`` holds, else one started for
the command), so that a postpaid account the bill run skipped or never reached is
found too; ``--no-accounts`` audits from the database and the segments only, a weaker
proof (such an account goes unseen). It prints each discrepancy on a line of its own
and then a summary (``--json``: one JSON document instead), and optionally writes the
audit's metrics for node_exporter's textfile collector (``--metrics-file``).
docs/invoicing.md, "Audit: ocs bill-audit".

This module lives at the top of ``ocs`` (the composition root), not in ``ocs.billing``,
which never touches Redis. Its heavy imports (SQLAlchemy, redis, the catalog parser)
are made when the command runs: ``import ocs.cli`` stays light.

The periods are chosen in the catalog's time zone: ``--timezone`` names one, else that
of ``--catalog FILE``, else the active catalog's in Redis, else (``--no-accounts``) the
demo catalog's that ``ocs serve`` starts with. The taxes are recomputed from the rates
stored on the invoice lines, so no catalog is needed for them.

Exit codes: 0 clean, 1 discrepancies found, 2 usage, configuration, Redis, records
directory or database errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ocs.config import Settings, add_setting_flags, command_settings

if TYPE_CHECKING:
    from ocs.billing.accounts import BillingAccount

__all__ = ["add_audit_command", "audit_command", "write_metrics"]

_COMMAND = "ocs bill-audit"


def add_audit_command(commands: Any) -> None:
    """Add ``bill-audit`` to the ``ocs`` parser's subcommands."""
    audit = commands.add_parser(
        "bill-audit",
        help="audit a bill period: records billed once, totals, taxes, numbers "
        "(exit 0 clean, 1 discrepancies)",
        description="Prove for the periods starting in the month PERIOD that every "
        "postpaid invoice account has an invoice, every rated record of a postpaid account "
        "is on exactly one invoice and no prepaid one on any, each total is the sum of its "
        "lines, each usage line the sum of its records, taxes recompute and numbers are "
        "gap-free. The accounts are read from Redis as ocs bill-run reads them "
        "(--no-accounts: from the database and the segments only, a weaker proof). Prints "
        "each discrepancy, then a summary. Exit status: 0 clean, 1 discrepancies, 2 usage, "
        "configuration, Redis or database errors.",
    )
    audit.add_argument(
        "--period", required=True, metavar="YYYY-MM", help="the month the periods start in"
    )
    add_setting_flags(audit, ["billing_database_url", "redis_url", "redis_data_dir"])
    audit.add_argument(
        "--records-dir",
        dest="records_dir",
        metavar="DIR",
        help="segment directory (default: records.directory, ./data/records)",
    )
    audit.add_argument(
        "--no-accounts",
        dest="no_accounts",
        action="store_true",
        help="do not read the accounts from Redis: audit the invoices from the database "
        "and the segments only (a postpaid account with no invoice goes unseen)",
    )
    audit.add_argument(
        "--catalog",
        metavar="FILE",
        help="catalog file whose time zone the periods are in (default: the active "
        "catalog's in Redis; with --no-accounts the demo catalog's)",
    )
    audit.add_argument(
        "--timezone", metavar="TZ", help="time zone of the periods, such as Europe/Berlin"
    )
    audit.add_argument("--json", action="store_true", help="print the report as one JSON object")
    audit.add_argument(
        "--metrics-file",
        dest="metrics_file",
        metavar="PATH",
        help="write the audit's metrics there in Prometheus text format (node_exporter "
        "textfile collector), replaced atomically",
    )


def _fail(message: str) -> int:
    print(f"{_COMMAND}: {message}", file=sys.stderr)
    return 2


def _given_timezone(args: argparse.Namespace) -> str | None:
    """The time zone of ``--timezone`` or ``--catalog``, None when neither is given;
    ValueError saying why it cannot be had."""
    # imported here: the catalog parser is not needed by the other commands
    from quota_engine.catalog import CatalogError
    from quota_engine.catalog.parser import catalog_from_file

    if args.timezone is not None:
        try:
            ZoneInfo(args.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"--timezone: unknown time zone {args.timezone!r}") from None
        return str(args.timezone)
    if args.catalog is None:
        return None
    try:
        return catalog_from_file(args.catalog).timezone
    except CatalogError as exc:
        raise ValueError("--catalog: " + "; ".join(exc.problems)) from None


def _demo_timezone() -> str:
    from quota_engine.catalog.parser import load_demo_catalog

    return load_demo_catalog().timezone


async def _read_accounts(settings: Settings) -> tuple[list[BillingAccount], str | None]:
    """Every account as the bill run sees it, and the active catalog's time zone (None
    without an active catalog), from the Redis of ``settings``; ValueError saying why
    Redis cannot be used."""
    from redis.exceptions import RedisError

    from ocs.billing_source import read_billing_accounts
    from ocs.redis_store import StoreUnavailable, open_store
    from quota_engine.store.catalogs import CatalogStore

    try:
        async with open_store(settings, share_running=True) as client:
            catalog = await CatalogStore(client).active()
            accounts = await read_billing_accounts(client)
    except (StoreUnavailable, RedisError) as error:
        raise ValueError(
            f"cannot read the accounts: {error}\n"
            "Give the Redis with --redis-url (or OCS_REDIS_URL, redis.url), or audit from "
            "the billing database and the segments only with --no-accounts (a postpaid "
            "account with no invoice then goes unseen)."
        ) from None
    return accounts, None if catalog is None else catalog.timezone


def audit_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run ``ocs bill-audit``; the exit code."""
    settings = command_settings(
        _COMMAND,
        args.config,
        env,
        {
            "billing_database_url": args.billing_database_url,
            "records_directory": args.records_dir,
            "redis_url": args.redis_url,
            "redis_data_dir": args.redis_data_dir,
        },
    )
    if settings is None:
        return 2
    # imported here: SQLAlchemy is not needed by the other commands
    from ocs.billing.audit import AuditError, audit_period
    from ocs.billing.database import BillingDatabaseError, open_database
    from ocs.billing.periods import PeriodError, parse_month

    try:
        parse_month(args.period)
    except PeriodError as exc:
        return _fail(f"--period: {exc}")
    accounts: list[BillingAccount] | None = None
    try:
        timezone = _given_timezone(args)
        if not args.no_accounts:
            accounts, active = asyncio.run(_read_accounts(settings))
            if timezone is None and active is None:
                raise ValueError(
                    "no active catalog in Redis to take the periods' time zone from: give "
                    "--timezone or --catalog (or load one: ocs catalog load, ocs provision)"
                )
            timezone = timezone or active
    except ValueError as exc:
        return _fail(str(exc))
    if timezone is None:
        timezone = _demo_timezone()
    try:
        engine = open_database(settings.billing_database_url)
    except BillingDatabaseError as exc:
        return _fail(str(exc))
    try:
        report = audit_period(
            engine,
            settings.records_directory,
            period=args.period,
            timezone=timezone,
            late_window=int(settings.billing_late_window),
            accounts=accounts,
        )
    except AuditError as exc:
        return _fail(str(exc))
    finally:
        engine.dispose()
    if args.metrics_file:
        try:
            write_metrics(args.metrics_file, report.by_kind(), at=time.time())
        except OSError as exc:
            return _fail(f"--metrics-file: cannot write {args.metrics_file}: {exc}")
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        for found in report.discrepancies:
            print(found.text())
        rounding = ", ".join(
            f"{micro:+d} micro-units {currency}"
            for currency, micro in sorted(report.rounding_micro.items())
        )
        kinds = ", ".join(f"{kind} {n}" for kind, n in report.by_kind().items() if n)
        print(
            f"period {report.period} ({report.timezone}): {report.invoices} invoices, "
            f"{report.lines} lines, {report.records} records, "
            f"{report.numbered_documents} numbered documents checked"
        )
        print(f"rounding difference of the usage lines: {rounding or 'none'}")
        if report.accounts is None:
            print(
                "accounts: not read (--no-accounts): a postpaid account with no invoice goes unseen"
            )
        else:
            print(f"accounts: {report.accounts} postpaid invoice accounts checked")
        count = len(report.discrepancies)
        print(f"discrepancies: {count}" + (f" ({kinds})" if kinds else ""))
    return 0 if report.clean else 1


def write_metrics(path: str | Path, by_kind: Mapping[str, int], *, at: float) -> None:
    """Write the audit's metrics to ``path`` in Prometheus text format, atomically (a
    temporary file in the same directory, fsync'd, then renamed over it)."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()
    discrepancies = Gauge(
        "ocs_bill_audit_discrepancies",
        "Discrepancies the last ocs bill-audit found, by kind.",
        ["kind"],
        registry=registry,
    )
    for kind, count in by_kind.items():
        discrepancies.labels(kind=kind).set(count)
    Gauge(
        "ocs_bill_audit_last_run_timestamp_seconds",
        "Unix time the last ocs bill-audit finished.",
        registry=registry,
    ).set(at)
    target = Path(path)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(generate_latest(registry))
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
