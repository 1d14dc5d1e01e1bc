"""``ocs billing migrate`` and ``ocs billing status``: the billing database's schema; and
the arguments of ``ocs invoice list|show|finalize|void|credit-note``, whose work is
:mod:`ocs.billing.invoice_commands` (imported when they run, like SQLAlchemy here).

``migrate`` creates the database of ``billing.database_url`` or brings it to this
version's schema (idempotent; docs/invoicing.md, "Database"); ``status`` says which
revision it is at. A group of its own rather than a flag of ``ocs migrate``, which moves
Redis keys, takes Redis options and must run with every ``ocs serve`` stopped: the
billing database is another store with another lifecycle, and later billing commands
can join the group.

Exit codes: 0 done (``status``: at the head revision); 1 ``status``: empty or behind;
2 invalid configuration, unreachable database, or a revision this ocs does not know.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from ocs.config import add_setting_flags, command_settings


def add_billing_commands(commands: Any) -> None:
    """Add ``billing migrate|status`` to the ``ocs`` parser's subcommands."""
    billing = commands.add_parser("billing", help="the billing database (migrate, status)")
    actions = billing.add_subparsers(dest="billing_command", metavar="ACTION")
    migrate = actions.add_parser(
        "migrate",
        help="create the billing database or upgrade it to this version's schema",
        description="Create the database of billing.database_url, or upgrade it to this "
        "version's schema, in one transaction; running it again does nothing. Take a "
        "backup before upgrading (docs/invoicing.md, Backup and restore).",
    )
    status = actions.add_parser(
        "status",
        help="print the billing database's schema revision (exit 0 current, 1 behind)",
        description="Print the revision of the billing database and this version's newest.",
    )
    for parser in (migrate, status):
        add_setting_flags(parser, ["billing_database_url"])


def billing_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run ``ocs billing ACTION``; the exit code."""
    if args.billing_command is None:
        print("usage: ocs billing {migrate,status} ...", file=sys.stderr)
        print("ocs billing: error: an action is required (migrate, status)", file=sys.stderr)
        return 2
    command = f"ocs billing {args.billing_command}"
    settings = command_settings(
        command, args.config, env, {"billing_database_url": args.billing_database_url}
    )
    if settings is None:
        return 2
    # imported here: SQLAlchemy and Alembic are not needed by the other commands
    from ocs.billing.database import (
        BillingDatabaseError,
        create_billing_engine,
        migrate,
        revision_status,
        shown_url,
    )

    url = settings.billing_database_url
    shown = shown_url(url)
    try:
        if args.billing_command == "migrate":
            done = migrate(url)
            if done.changed:
                before = "empty" if done.before is None else f"revision {done.before}"
                print(f"billing database {shown}: migrated from {before} to {done.after}")
            else:
                print(f"billing database {shown}: at revision {done.after} already")
            return 0
        engine = create_billing_engine(url)
        try:
            status = revision_status(engine)
        finally:
            engine.dispose()
    except BillingDatabaseError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 2
    print(
        f"billing database {shown}: revision {status.revision or 'none (empty)'}, "
        f"newest {status.head}"
    )
    if status.current:
        return 0
    if not status.known:
        print(
            f"{command}: revision {status.revision} is unknown to this version of ocs "
            "(a newer one migrated the database)",
            file=sys.stderr,
        )
        return 2
    print(f"{command}: run `ocs billing migrate`", file=sys.stderr)
    return 1


INVOICE_FLAGS = (
    "billing_database_url",
    "billing_invoice_number_format",
    "billing_credit_note_number_format",
)


DOCUMENT_FLAGS = (
    *INVOICE_FLAGS,
    "redis_url",
    "redis_data_dir",
    "records_directory",
)


DELIVERY_FLAGS = (
    *DOCUMENT_FLAGS,
    "smtp_host",
    "smtp_port",
    "smtp_security",
    "smtp_user",
    "smtp_secret_file",
    "smtp_from",
)


def add_invoice_commands(commands: Any) -> None:
    """Add ``invoice list|show|finalize|void|credit-note|pdf|html|deliver`` to the ``ocs``
    subcommands."""
    invoice = commands.add_parser("invoice", help="show and manage invoices")
    actions = invoice.add_subparsers(dest="invoice_command", metavar="ACTION")
    listing = actions.add_parser("list", help="list invoices (newest periods first)")
    listing.add_argument("--account", help="only this account's")
    listing.add_argument("--state", choices=("draft", "final", "void"))
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--timezone", default="UTC", help="show period starts in this zone")
    show = actions.add_parser("show", help="an invoice and its lines")
    show.add_argument("invoice", metavar="INVOICE", help="id (in_...) or number")
    show.add_argument("--json", action="store_true", help="the TMF678 document")
    show.add_argument("--timezone", default="UTC", help="show instants in this zone")
    final = actions.add_parser("finalize", help="finalise a draft: its number is assigned")
    final.add_argument("invoice", metavar="INVOICE")
    cancel = actions.add_parser("void", help="void a final invoice (its records are released)")
    cancel.add_argument("invoice", metavar="INVOICE")
    cancel.add_argument("--reason", required=True)
    note = actions.add_parser("credit-note", help="credit lines of a final invoice")
    note.add_argument("invoice", metavar="INVOICE")
    note.add_argument(
        "--line", action="append", required=True, metavar="POSITION[:AMOUNT]",
        help="a line to credit, whole or this amount before tax (1.50); repeatable",
    )  # fmt: skip
    note.add_argument("--reason", required=True)
    note.add_argument("--key", help="idempotency key: the same key gives the same credit note")
    documents = []
    for kind in ("pdf", "html"):
        document = actions.add_parser(
            kind,
            help=f"write the invoice's {kind.upper()} document (docs/invoicing.md, Documents)",
            description=f"Write the {kind.upper()} the customer reads. The customer contact "
            "comes from the accounts in Redis (redis.url, or the private Redis of "
            "redis.data_dir), the itemised records from records.directory.",
        )
        document.add_argument("invoice", metavar="INVOICE", help="id (in_...) or number")
        document.add_argument("--output", "-o", required=True, metavar="FILE",
                              help="the file to write ('-': standard output)")  # fmt: skip
        add_setting_flags(document, DOCUMENT_FLAGS)
        documents.append(document)
    deliver = actions.add_parser(
        "deliver",
        help="deliver the final invoices: e-mail, print batch (docs/invoicing.md, Delivery)",
        description="Plan a delivery for each final invoice that has none, e-mail the due "
        "ones with their PDF (smtp.*), put those of paper accounts into one print batch "
        "(delivery.print_directory or --print-dir), and retry what failed for a while. "
        "The contacts come from the accounts in Redis. Exit 1 when something failed.",
    )
    deliver.add_argument("--invoice", metavar="INVOICE",
                         help="only this final invoice (id or number), whatever its age")  # fmt: skip
    deliver.add_argument("--print-dir", metavar="DIR",
                         help="write the print batch into DIR (instead of delivery.print_directory)")  # fmt: skip
    deliver.add_argument("--resend", action="store_true",
                         help="deliver --invoice again, though it was delivered (or failed)")  # fmt: skip
    add_setting_flags(deliver, DELIVERY_FLAGS)
    for parser in (listing, show, final, cancel, note):
        add_setting_flags(parser, INVOICE_FLAGS)


def invoice_command(args: argparse.Namespace, env: Mapping[str, str], read_accounts: Any) -> int:
    """Run ``ocs invoice ACTION`` (:mod:`ocs.billing.invoice_commands`); the exit code.
    ``read_accounts``: what ``pdf``, ``html`` and ``deliver`` read the accounts with (the composition
    root's :func:`ocs.billing_source.read_document_inputs`)."""
    from ocs.billing.invoice_commands import run_invoice_command

    return run_invoice_command(args, env, read_accounts)
