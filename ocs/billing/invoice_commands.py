"""``ocs invoice list|show|finalize|void|credit-note|pdf|html|deliver``: invoices in the
billing database.

The work of the commands that :mod:`ocs.billing.commands` parses. Offline commands on
``billing.database_url`` (no Redis, no running node). An invoice is
named by its id (``in_...``) or its number (``INV-000042``). ``show`` prints the lines
as a billing clerk reads them (``--json``: the TMF678 document of the API); ``pdf`` and
``html`` write the document the customer reads (they also read the customer contact
from Redis and the itemised records from the segment files); ``deliver`` runs the
delivery step once (:mod:`ocs.billing.delivery.run`: e-mail, print batch). The lifecycle
actions are :mod:`ocs.billing.lifecycle`'s, each in one transaction.

Exit codes: 0 done; 1 refused (no such invoice, not in a state that allows it, a credit
beyond the line; ``deliver``: a delivery failed, or the SMTP server or the print
directory could not be used); 2 usage or configuration errors, database unusable.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, Engine, or_, select

from ocs.billing.accounts import Contact
from ocs.billing.commands import DELIVERY_FLAGS, DOCUMENT_FLAGS, INVOICE_FLAGS
from ocs.billing.database import open_for_command
from ocs.billing.delivery.status import DeliveryStatus, delivery_status_of
from ocs.billing.lifecycle import CreditLine, LifecycleError, create_credit_note, finalize, void
from ocs.billing.representation import applied_rates, customer_bill, decimal_text
from ocs.billing.schema import invoice_items, invoices
from ocs.config import command_settings
from quota_engine.money import MICRO, MICRO_DIGITS, format_money

__all__ = ["ReadAccounts", "parse_amount", "run_invoice_command"]

ReadAccounts = Callable[[Any, list[str]], tuple[dict[str, Contact], dict[str, int], str]]
"""``(settings, account ids) -> (contacts, partitions, time zone)``; ValueError saying why
the accounts cannot be read."""

_AMOUNT = re.compile(r"([0-9]+)(?:\.([0-9]{1,6}))?")
_ACTOR = "ocs invoice"


class _Refused(Exception):
    """Exit code 1 with this message."""


class _Usage(Exception):
    """Exit code 2 with this message."""


def parse_amount(text: str) -> int:
    """``"1.50"`` as 1_500_000 micro-units (exact, no float); ValueError otherwise."""
    match = _AMOUNT.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"an amount is a decimal such as 1.50, got {text!r}")
    fraction = (match.group(2) or "").ljust(MICRO_DIGITS, "0")
    whole: int = int(match.group(1)) * MICRO
    return whole + int(fraction)


def _find(connection: Connection, reference: str) -> str:
    c = invoices.c
    found = (
        connection.execute(select(c.id).where(or_(c.id == reference, c.number == reference)))
        .scalars()
        .all()
    )
    if not found:
        raise _Refused(f"no invoice {reference!r} (give its id or its number)")
    if len(found) > 1:
        raise _Refused(
            f"{reference!r} names {len(found)} invoices (of several entities): give the id"
        )
    return str(found[0])


def _money(micro: int, row: Any) -> str:
    return decimal_text(micro, row.minor_digits)


def _instant(at: int | None, zone: ZoneInfo) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, zone).isoformat(timespec="minutes")


def _delivery_text(status: DeliveryStatus, zone: ZoneInfo) -> str:
    """A delivery in a few words: channel, state, to whom, when, why it failed."""
    text = f"{status.channel} {status.state}"
    if status.recipient:
        text += f" to {status.recipient}"
    if status.sent_at is not None:
        text += f" {_instant(status.sent_at, zone)}"
    if status.batch:
        text += f" in batch {status.batch}"
    text += f" (attempts {status.attempts}"
    text += f", resend {status.sequence})" if status.sequence else ")"
    if status.last_error:
        text += f": {status.last_error}"
    return text


def _show(connection: Connection, document: str, zone: ZoneInfo) -> list[str]:
    invoice = connection.execute(select(invoices).where(invoices.c.id == document)).one()
    items = connection.execute(
        select(invoice_items)
        .where(invoice_items.c.invoice_id == document)
        .order_by(invoice_items.c.position)
    ).all()
    kind = "off-cycle invoice" if invoice.off_cycle else "invoice"
    lines = [
        f"{kind} {invoice.number or '(draft, no number yet)'}  id {invoice.id}  {invoice.state}",
        f"  account {invoice.account}, entity {invoice.entity}",
        f"  period {_instant(invoice.period_start, zone)} to {_instant(invoice.period_end, zone)}",
    ]
    if invoice.finalized_at:
        lines.append(f"  finalised {_instant(invoice.finalized_at, zone)}")
    if invoice.voided_at:
        lines.append(f"  voided {_instant(invoice.voided_at, zone)}: {invoice.void_reason}")
    delivery = delivery_status_of(connection, [document]).get(document)
    if delivery is not None:
        lines.append(f"  delivery {_delivery_text(delivery, zone)}")
    width = max([len(i.description) for i in items] + [11])
    lines.append(
        f"  {'#':>3}  {'kind':<10}  {'description':<{width}}  {'quantity':>16}  {'amount':>12}"
    )
    section = None
    for item in items:
        if item.child_account != section and item.kind not in ("discount", "tax"):
            section = item.child_account
            if section is not None:
                lines.append(f"  -- line {section}")
        quantity = "" if item.quantity is None else f"{item.quantity} {item.unit or ''}".strip()
        lines.append(
            f"  {item.position:>3}  {item.kind:<10}  {item.description:<{width}}  "
            f"{quantity:>16}  {_money(item.amount_minor, invoice):>12}"
        )
    pad = 3 + 2 + 10 + 2 + width + 2 + 16 + 2
    lines += [
        f"{'subtotal':>{pad}}{_money(invoice.subtotal_minor, invoice):>12}",
        f"{'tax':>{pad}}{_money(invoice.tax_minor, invoice):>12}",
        f"{'total ' + invoice.currency:>{pad}}{_money(invoice.total_minor, invoice):>12}",
    ]
    return lines


def _list(connection: Connection, args: argparse.Namespace, zone: ZoneInfo) -> list[str]:
    c = invoices.c
    query = select(invoices).order_by(c.period_start.desc(), c.account).limit(max(args.limit, 1))
    if args.account:
        query = query.where(c.account == args.account)
    if args.state:
        query = query.where(c.state == args.state)
    return [
        f"{row.id}  {row.number or '-':<14} {row.state:<6} {row.account:<20} "
        f"{_instant(row.period_start, zone)}  "
        f"{format_money(row.total_minor, row.currency, row.minor_digits)}"
        for row in connection.execute(query)
    ]


def _credit_lines(specs: list[str]) -> list[CreditLine]:
    lines = []
    for spec in specs:
        position, _, amount = spec.partition(":")
        if not position.isdigit():
            raise _Usage(f"--line: give POSITION or POSITION:AMOUNT such as 3:1.50, got {spec!r}")
        try:
            micro = parse_amount(amount) if amount else None
        except ValueError as error:
            raise _Usage(f"--line {spec}: {error}") from None
        lines.append(CreditLine(int(position), micro))
    return lines


def _document(
    engine: Engine, args: argparse.Namespace, settings: Any, read_accounts: ReadAccounts
) -> list[str]:
    """``ocs invoice pdf|html``: the document written to ``--output``."""
    from ocs.billing.documents import document_accounts, load_document, operator_of, render

    with engine.connect() as connection:
        document = _find(connection, args.invoice)
        accounts = document_accounts(connection, document)
    try:
        contacts, partitions, zone = read_accounts(settings, accounts)
    except ValueError as error:
        raise _Usage(str(error)) from None
    with engine.connect() as connection:
        loaded = load_document(
            connection, document, operator=operator_of(settings), contacts=contacts,
            partitions=partitions, records_directory=settings.records_directory,
            now=int(time.time()), late_window=int(settings.billing_late_window),
        )  # fmt: skip
    body = render(loaded, "pdf" if args.invoice_command == "pdf" else "html", ZoneInfo(zone))
    if args.output == "-":
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
        return []
    try:
        with open(args.output, "wb") as out:
            out.write(body)
    except OSError as error:
        raise _Usage(f"--output {args.output}: {error.strerror or error}") from None
    number = loaded.number or "draft"
    return [f"invoice {document} ({number}): {args.invoice_command} written to {args.output}"]


def _deliver(
    engine: Engine, args: argparse.Namespace, settings: Any, read_accounts: ReadAccounts
) -> tuple[int, list[str]]:
    """``ocs invoice deliver``: the delivery step once (``--invoice``: of that invoice;
    ``--resend``: again); exit 1 when a delivery failed or the server or the print
    directory could not be used."""
    from ocs.billing.delivery.run import deliver, options_of, resend

    if args.resend and args.invoice is None:
        raise _Usage("--resend needs --invoice")
    document = None
    if args.invoice is not None:
        with engine.connect() as connection:
            document = _find(connection, args.invoice)
    options = options_of(settings, print_directory=args.print_dir)

    def accounts_of(ids: list[str]) -> tuple[dict[str, Contact], dict[str, int], str]:
        return read_accounts(settings, ids)

    now = int(time.time())
    try:
        if args.resend:
            assert document is not None
            summary = resend(engine, options, accounts_of, document, now=now)
        else:
            ids = None if document is None else [document]
            summary = deliver(engine, options, accounts_of, now=now, invoice_ids=ids)
    except ValueError as error:  # the accounts could not be read
        raise _Usage(str(error)) from None
    lines = [
        f"deliveries: {summary.planned} planned, {summary.sent} e-mailed, "
        f"{summary.printed} printed, {summary.retrying} to retry, {summary.failed} failed, "
        f"{summary.waiting} waiting, {summary.interrupted} interrupted"
    ]
    if summary.batch is not None:
        lines.append(f"print batch: {summary.batch}")
    if summary.waiting and options.smtp is None:
        lines.append("e-mail is off: set smtp.host to send the waiting e-mails")
    if summary.waiting and options.print_directory is None:
        lines.append("printing is off: set delivery.print_directory (or --print-dir)")
    if summary.unsettled:
        lines.append(
            f"{summary.unsettled} paper deliveries of interrupted print batches left sending: "
            "without a print directory their batches cannot be checked (run with it to settle)"
        )
    if document is not None:
        with engine.connect() as connection:
            status = delivery_status_of(connection, [document]).get(document)
        if status is not None:
            lines.append(f"invoice {document}: {_delivery_text(status, ZoneInfo('UTC'))}")
    lines.extend(f"error: {error}" for error in summary.errors)
    return (0 if summary.ok and summary.failed == 0 else 1), lines


def _run(
    engine: Engine,
    args: argparse.Namespace,
    settings: Any,
    read_accounts: ReadAccounts,
) -> list[str]:
    action = args.invoice_command
    if action in ("pdf", "html"):
        return _document(engine, args, settings, read_accounts)
    now = int(time.time())
    if action in ("list", "show"):
        try:
            zone = ZoneInfo(args.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise _Usage(f"--timezone: unknown time zone {args.timezone!r}") from None
    if action == "list":
        with engine.connect() as connection:
            return _list(connection, args, zone)
    if action == "show":
        with engine.connect() as connection:
            document = _find(connection, args.invoice)
            if args.json:
                bill = customer_bill(connection, document)
                bill["appliedCustomerBillingRate"] = applied_rates(
                    connection, document, detail=True
                )
                return [json.dumps(bill, indent=2, sort_keys=True)]
            return _show(connection, document, zone)
    credit = _credit_lines(args.line) if action == "credit-note" else []
    with engine.begin() as connection:
        document = _find(connection, args.invoice)
        if action == "finalize":
            number = finalize(
                connection, document, now=now, actor=_ACTOR,
                number_format=settings.billing_invoice_number_format,
            )  # fmt: skip
            return [f"invoice {document}: final, number {number}"]
        if action == "void":
            void(connection, document, reason=args.reason, now=now, actor=_ACTOR)
            return [f"invoice {document}: void; its records go on the period's next bill run"]
        note, number = create_credit_note(
            connection, document, credit, reason=args.reason, now=now, actor=_ACTOR,
            number_format=settings.billing_credit_note_number_format, key=args.key,
        )  # fmt: skip
        return [f"credit note {number} (id {note}) for invoice {document}"]


def run_invoice_command(
    args: argparse.Namespace,
    env: Mapping[str, str],
    read_accounts: ReadAccounts,
) -> int:
    """Run ``ocs invoice ACTION``; the exit code. ``read_accounts(settings, ids)``: the
    contacts, partitions and time zone the documents need, from the accounts (billing
    never reads Redis itself: ``ocs.billing_source.read_document_inputs``)."""
    if args.invoice_command is None:
        print("ocs invoice: an action is required "
              "(list, show, finalize, void, credit-note, pdf, html, deliver)", file=sys.stderr)  # fmt: skip
        return 2
    command = f"ocs invoice {args.invoice_command}"
    flags: tuple[str, ...] = INVOICE_FLAGS
    if args.invoice_command in ("pdf", "html"):
        flags = DOCUMENT_FLAGS
    elif args.invoice_command == "deliver":
        flags = DELIVERY_FLAGS
    settings = command_settings(
        command, args.config, env, {name: getattr(args, name) for name in flags}
    )
    if settings is None:
        return 2
    engine = open_for_command(command, settings.billing_database_url)
    if engine is None:
        return 2
    try:
        if args.invoice_command == "deliver":
            code, lines = _deliver(engine, args, settings, read_accounts)
            for line in lines:
                print(line, file=sys.stdout if code == 0 else sys.stderr)
            return code
        for line in _run(engine, args, settings, read_accounts):
            print(line)
        return 0
    except (_Refused, LifecycleError) as error:
        print(f"{command}: {error}", file=sys.stderr)
        return 1
    except _Usage as error:
        print(f"{command}: {error}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
