"""``ocs bill-run``: bill a period (or one account off-cycle) from the exported records.

This module is the command's arguments; the work is :mod:`ocs.billing_runner`, imported
when the command runs (the other ``ocs`` commands start without SQLAlchemy).

Exit codes: 0 done; 1 some invoice accounts could not be billed (listed; the others
are); 2 usage or configuration errors, Redis or the database unusable, no active catalog.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from ocs.config import add_setting_flags

__all__ = ["FLAGS", "add_bill_run_command", "bill_run_command"]

FLAGS = (
    "redis_url",
    "redis_data_dir",
    "records_directory",
    "billing_database_url",
    "billing_entity",
    "billing_invoice_number_format",
    "billing_grace_period",
    "billing_late_window",
)


def add_bill_run_command(commands: Any) -> None:
    """Add ``bill-run`` to the ``ocs`` parser's subcommands."""
    parser = commands.add_parser(
        "bill-run",
        help="make the invoices of a bill period (or one account's off-cycle invoice)",
        description="Make one invoice per postpaid invoice account for a period from the "
        "exported rated records (docs/invoicing.md, Bill runs). Idempotent and resumable: "
        "run it again after a crash, or to put the grace period's late records into drafts; "
        "drafts whose grace period is over are finalised.",
    )
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--period", metavar="YYYY-MM", help="the periods starting in this month")
    when.add_argument(
        "--date", metavar="YYYY-MM-DD", help="the periods ending on this date (a daily run)"
    )
    when.add_argument(
        "--account", metavar="ID", help="one account's off-cycle invoice, up to --until"
    )
    parser.add_argument(
        "--until",
        metavar="YYYY-MM-DD[THH:MM]",
        help="with --account: bill up to this local time of the catalog (default: now)",
    )
    parser.add_argument(
        "--shard", metavar="K/N", default="0/1",
        help="this process's share: the invoice accounts of partitions K modulo N",
    )  # fmt: skip
    final = parser.add_mutually_exclusive_group()
    final.add_argument(
        "--finalize", dest="finalize", action="store_true", default=None,
        help="finalise the drafts now, grace period or not",
    )  # fmt: skip
    final.add_argument(
        "--no-finalize", dest="finalize", action="store_false",
        help="leave every invoice a draft",
    )  # fmt: skip
    parser.add_argument(
        "--metrics-file", metavar="FILE",
        help="write the run's metrics there (Prometheus text, node_exporter textfile)",
    )  # fmt: skip
    add_setting_flags(parser, FLAGS)


def bill_run_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run ``ocs bill-run``; the exit code."""
    from ocs.billing_runner import run_command

    return run_command(args, env)
