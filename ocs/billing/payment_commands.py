"""``ocs payment add|refund|import|list``: payments in the billing database.

The work of the commands that :mod:`ocs.payment_command` parses: offline commands on
``billing.database_url`` (no Redis, no running node; ``dunning`` is
:mod:`ocs.payment_dunning`). An account is one the billing database knows (it has an
invoice or a payment). A barred account whose payment settled what was overdue is
lifted by the next ``ocs payment dunning`` (or the daily run); ``POST /v1/payment``
lifts it at once.

Exit codes: 0 done; 1 refused, or ``import`` with lines not matched; 2 usage or
configuration errors, an unreadable file, the database unusable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path

from sqlalchemy import Engine

from ocs.billing.database import open_for_command
from ocs.billing.payments.allocation import (
    PaymentError,
    PaymentRequest,
    RefundRequest,
    account_credit,
    account_money,
    parse_amount,
    record_payment,
    refund_credit,
)
from ocs.billing.payments.imports import ImportReport, import_payments, read_csv
from ocs.billing.payments.tmf import list_payments, parse_instant
from ocs.config import command_settings
from ocs.payment_command import FLAGS
from quota_engine.money import format_money

__all__ = ["import_lines", "run_payment_command"]

_ACTOR = "ocs payment"


class _Usage(Exception):
    """Exit code 2 with this message."""


class _Unmatched(Exception):
    """Exit code 1: the output is printed, some lines were not matched."""


def run_payment_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Run ``ocs payment ACTION`` (not ``dunning``); the exit code."""
    if args.payment_command is None:
        print("ocs payment: an action is required (add, refund, import, list, dunning)",
              file=sys.stderr)  # fmt: skip
        return 2
    command = f"ocs payment {args.payment_command}"
    settings = command_settings(
        command, args.config, env, {name: getattr(args, name) for name in FLAGS}
    )
    if settings is None:
        return 2
    engine = open_for_command(command, settings.billing_database_url)
    if engine is None:
        return 2
    try:
        for line in _run(engine, args):
            print(line)
        return 0
    except _Unmatched:
        return 1
    except PaymentError as error:
        print(f"{command}: {error}", file=sys.stderr)
        return 1
    except _Usage as error:
        print(f"{command}: {error}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()


def _instant(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise _Usage(f"--date: {exc}") from None


def _amount(text: str, digits: int) -> int:
    try:
        return parse_amount(text, digits)
    except ValueError as exc:
        raise _Usage(f"AMOUNT: {exc}") from None


def _run(engine: Engine, args: argparse.Namespace) -> Iterator[str]:
    now = int(time.time())
    action = args.payment_command
    if action == "add":
        with engine.begin() as connection:
            money = account_money(connection, args.account)
            currency = args.currency or money.currency
            request = PaymentRequest(
                account=args.account,
                amount_micro=_amount(args.amount, money.minor_digits),
                currency=currency,
                method=args.method,
                received_at=_instant(args.date),
                reference=args.reference,
                external_id=args.external_id,
            )
            done = record_payment(
                connection, request, now=now, key=args.key, source="cli", actor=_ACTOR
            )
        shown = format_money(request.amount_micro, currency, money.minor_digits)
        yield f"payment {done.id}: {shown} from {args.account}" + (
            " (recorded before with this key: nothing new)" if done.replayed else ""
        )
        for invoice, amount in done.settlement.allocated:
            yield f"  paid {format_money(amount, currency, money.minor_digits)} of invoice {invoice}"
        credit = done.settlement.credit
        yield f"  credit {format_money(credit, currency, money.minor_digits)}"
    elif action == "refund":
        with engine.begin() as connection:
            money = account_money(connection, args.account)
            request_refund = RefundRequest(
                account=args.account,
                amount_micro=_amount(args.amount, money.minor_digits),
                currency=money.currency,
                method=args.method,
                reference=args.reference,
                reason=args.reason,
            )
            done = refund_credit(connection, request_refund, now=now, key=args.key, actor=_ACTOR)
        shown = format_money(request_refund.amount_micro, money.currency, money.minor_digits)
        left = format_money(done.settlement.credit, money.currency, money.minor_digits)
        yield f"refund {done.id}: {shown} to {args.account}; credit left {left}"
    elif action == "import":
        yield from import_lines(engine, args, now)
    elif action == "list":
        with engine.connect() as connection:
            total, items = list_payments(connection, account=args.account, limit=args.limit)
            credit_text = None
            if args.account is not None:
                money = account_money(connection, args.account)
                credit_text = format_money(
                    account_credit(connection, args.account), money.currency, money.minor_digits
                )
        if args.json:
            yield json.dumps(items, indent=2)
            return
        for item in items:
            paid = ", ".join(
                f"{i['item']['id']} {i['amount']['value']}" for i in item["paymentItem"]
            )
            yield (
                f"{item['id']}  {item['paymentDate']}  {item['account']['id']}  "
                f"{item['amount']['value']} {item['amount']['unit']}  "
                f"{item['paymentMethod']['name']}  {item['correlatorId'] or '-'}  "
                f"paid: {paid or '-'}"
            )
        yield f"{len(items)} of {total} payments" + (
            f"; credit of {args.account}: {credit_text}" if credit_text is not None else ""
        )
    else:  # pragma: no cover: argparse allows only the actions above
        raise _Usage(f"unknown action {action!r}")


def import_lines(engine: Engine, args: argparse.Namespace, now: int) -> Iterator[str]:
    """``ocs payment import``: read, reconcile, record; then the report (exit 1 when a
    line was not matched, after printing it)."""
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            text = Path(args.file).read_text(encoding="utf-8-sig")
        rows = read_csv(text, args.delimiter)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _Usage(f"{args.file}: {exc}") from None
    with engine.begin() as connection:
        report = import_payments(connection, rows, method=args.method, now=now, actor=_ACTOR)
    yield from _report(report, args.json)
    if report.unmatched:
        raise _Unmatched()


def _report(report: ImportReport, as_json: bool) -> Iterator[str]:
    if as_json:
        yield json.dumps(
            {
                "lines": report.lines,
                "recorded": [asdict(m) for m in report.recorded],
                "already_imported": [asdict(m) for m in report.already],
                "unmatched": [asdict(u) for u in report.unmatched],
            },
            indent=2,
        )
        return
    for m in report.recorded:
        note = f" ({m.note})" if m.note else ""
        yield f"line {m.line}: {m.external_id}: payment {m.payment_id} of {m.account}{note}"
    for u in report.unmatched:
        yield f"line {u.line}: {u.external_id or '-'}: not matched: {u.kind}: {u.reason}"
    yield (
        f"{report.lines} lines: {len(report.recorded)} recorded, "
        f"{len(report.already)} already imported, {len(report.unmatched)} not matched"
    )
