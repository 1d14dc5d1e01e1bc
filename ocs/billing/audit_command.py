"""``ocs bill-audit --period 2026-11``: the revenue-assurance audit of a bill period.

Runs :func:`ocs.billing.audit.audit_period` against the billing database
(``billing.database_url``) and the record segments (``records.directory``), prints each
discrepancy on a line of its own and then a summary (``--json``: one JSON document
instead), and optionally writes the audit's metrics for node_exporter's textfile
collector (``--metrics-file``). docs/invoicing.md, "Audit: ocs bill-audit".

The periods are chosen in the catalog's time zone: that of ``--catalog FILE``, else of
the demo catalog that ``ocs serve`` starts with; ``--timezone`` names one directly. The
taxes are recomputed from the rates stored on the invoice lines, so no catalog is
needed for them.

Exit codes: 0 clean, 1 discrepancies found, 2 usage, configuration, records directory
or database errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ocs.config import CONFIG_ENV, SPECS, ConfigError, load_settings

__all__ = ["add_audit_command", "audit_command", "write_metrics"]

_URL_SETTING = next(spec for spec in SPECS if spec.name == "billing_database_url")
_COMMAND = "ocs bill-audit"


def add_audit_command(commands: Any) -> None:
    """Add ``bill-audit`` to the ``ocs`` parser's subcommands."""
    audit = commands.add_parser(
        "bill-audit",
        help="audit a bill period: records billed once, totals, taxes, numbers "
        "(exit 0 clean, 1 discrepancies)",
        description="Prove for the invoices whose period starts in the month PERIOD that "
        "every rated record of a billed account is on exactly one invoice, each total is "
        "the sum of its lines, each usage line the sum of its records, taxes recompute and "
        "numbers are gap-free. Prints each discrepancy, then a summary. Exit status: 0 "
        "clean, 1 discrepancies, 2 usage, configuration or database errors.",
    )
    audit.add_argument(
        "--period", required=True, metavar="YYYY-MM", help="the month the periods start in"
    )
    audit.add_argument(
        "--config", metavar="FILE", help=f"TOML config file (default: ${CONFIG_ENV}, else none)"
    )
    assert _URL_SETTING.flag is not None
    audit.add_argument(
        _URL_SETTING.flag,
        dest="billing_database_url",
        metavar="URL",
        help=f"{_URL_SETTING.doc} [{_URL_SETTING.toml_name}, {_URL_SETTING.env}; "
        f"default: {_URL_SETTING.default}]",
    )
    audit.add_argument(
        "--records-dir",
        dest="records_dir",
        metavar="DIR",
        help="segment directory (default: records.directory, ./data/records)",
    )
    audit.add_argument(
        "--catalog",
        metavar="FILE",
        help="catalog file whose time zone the periods are in (default: the demo catalog's)",
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


def _timezone(args: argparse.Namespace) -> str:
    """The periods' time zone; ValueError saying why it cannot be had."""
    # imported here: the catalog parser is not needed by the other commands
    from quota_engine.catalog import CatalogError
    from quota_engine.catalog.parser import catalog_from_file, load_demo_catalog

    if args.timezone is not None:
        try:
            ZoneInfo(args.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"--timezone: unknown time zone {args.timezone!r}") from None
        return str(args.timezone)
    try:
        catalog = catalog_from_file(args.catalog) if args.catalog else load_demo_catalog()
    except CatalogError as exc:
        raise ValueError("--catalog: " + "; ".join(exc.problems)) from None
    return catalog.timezone


def audit_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run ``ocs bill-audit``; the exit code."""
    config_file = args.config or env.get(CONFIG_ENV) or None
    try:
        settings = load_settings(
            config_file,
            env,
            {
                "billing_database_url": args.billing_database_url,
                "records_directory": args.records_dir,
            },
        )
    except ConfigError as exc:
        print(f"{_COMMAND}: invalid configuration:\n  " + "\n  ".join(exc.errors), file=sys.stderr)
        return 2
    try:
        timezone = _timezone(args)
    except ValueError as exc:
        return _fail(str(exc))
    # imported here: SQLAlchemy is not needed by the other commands
    from ocs.billing.audit import AuditError, audit_period
    from ocs.billing.database import BillingDatabaseError, open_database
    from ocs.billing.periods import PeriodError, parse_month

    try:
        parse_month(args.period)
    except PeriodError as exc:
        return _fail(f"--period: {exc}")
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
