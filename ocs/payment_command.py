"""``ocs payment add|refund|import|list|dunning``: the arguments; the work is
:mod:`ocs.billing.payment_commands` (the billing database only) and, for ``dunning``,
:mod:`ocs.payment_dunning` (the accounts' status in Redis too), imported when the
command runs (the other ``ocs`` commands start without SQLAlchemy).

Exit codes: 0 done; 1 refused (an unknown account, a refund above the credit, a key used
for another payment) or, for ``import``, some lines not matched (each listed); 2 usage or
configuration errors, a file that cannot be read, Redis or the database unusable.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from ocs.config import add_setting_flags

__all__ = ["DUNNING_FLAGS", "FLAGS", "add_payment_command", "payment_command"]

FLAGS = ("billing_database_url",)
DUNNING_FLAGS = (
    "billing_database_url",
    "redis_url",
    "redis_data_dir",
    "documents_payment_terms",
    "billing_dunning_reminder_days",
    "billing_dunning_barring_days",
)
METHOD_HELP = "bank_transfer (default), card, cash, direct_debit, cheque, wallet, other"


def add_payment_command(commands: Any) -> None:
    """Add ``payment add|refund|import|list|dunning`` to the ``ocs`` subcommands."""
    payment = commands.add_parser("payment", help="record payments, import bank files, dunning")
    actions = payment.add_subparsers(dest="payment_command", metavar="ACTION")
    add = actions.add_parser(
        "add",
        help="record a payment: allocated to the account's open invoices oldest first",
        description="Record money received from an account; it pays the account's final "
        "invoices oldest first and the rest is credit for the next invoice.",
    )
    add.add_argument("account", metavar="ACCOUNT")
    add.add_argument("amount", metavar="AMOUNT", help="a decimal: 25.00")
    add.add_argument("--key", required=True, help="idempotency key, unique per payment")
    add.add_argument("--currency", help="default: the account's")
    add.add_argument("--method", default="bank_transfer", help=METHOD_HELP)
    add.add_argument("--reference", help="what the payer wrote (an invoice number)")
    add.add_argument("--external-id", help="the bank's or gateway's id of the transfer")
    add.add_argument("--date", help="when it was received (ISO 8601; default now)")
    refund = actions.add_parser("refund", help="give back part or all of an account's credit")
    refund.add_argument("account", metavar="ACCOUNT")
    refund.add_argument("amount", metavar="AMOUNT")
    refund.add_argument("--key", required=True, help="idempotency key, unique per refund")
    refund.add_argument("--reason", required=True)
    refund.add_argument("--method", default="bank_transfer", help=METHOD_HELP)
    refund.add_argument("--reference")
    imported = actions.add_parser(
        "import",
        help="reconcile a bank or gateway CSV file: every matched line becomes a payment",
        description="Read a CSV payment file (columns date, amount, currency, reference, "
        "payer, external_id: docs/invoicing.md, Payment files) and record each line matched "
        "to an account; list every line that could not be. Importing a file twice records "
        "nothing new.",
    )
    imported.add_argument("file", metavar="FILE", help="the CSV file ('-': standard input)")
    imported.add_argument("--method", default="bank_transfer", help=METHOD_HELP)
    imported.add_argument("--delimiter", default=",", help="field separator (default ,)")
    imported.add_argument("--json", action="store_true", help="the report as one JSON object")
    listing = actions.add_parser("list", help="payments, newest first")
    listing.add_argument("--account", help="only this account's (and its credit)")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="the TMF676 documents")
    dunning = actions.add_parser(
        "dunning",
        help="remind, bar and lift accounts by their overdue invoices (one step)",
        description="One dunning step, as ocs serve runs it after its daily bill run: "
        "accounts whose oldest overdue invoice is billing.dunning_reminder_days overdue get "
        "a reminder, billing.dunning_barring_days overdue are barred (ASR); those that "
        "paid are lifted.",
    )
    dunning.add_argument("--json", action="store_true", help="the report as one JSON object")
    dunning.add_argument(
        "--dry-run", action="store_true",
        help="say what it would do: nothing recorded, no status changed",
    )  # fmt: skip
    for parser in (add, refund, imported, listing):
        add_setting_flags(parser, FLAGS)
    add_setting_flags(dunning, DUNNING_FLAGS)


def payment_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run ``ocs payment ACTION``; the exit code."""
    if args.payment_command == "dunning":  # the accounts' status: Redis, at the ocs root
        from ocs.payment_dunning import dunning_command

        return dunning_command(args, env)
    from ocs.billing.payment_commands import run_payment_command

    return run_payment_command(args, env)
