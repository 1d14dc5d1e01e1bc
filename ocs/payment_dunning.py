"""Dunning with the accounts' status: the Redis side of :mod:`ocs.billing.payments.dunning`.

:func:`run_dunning` is one dunning step (``ocs payment dunning``, and the daily run of
``ocs serve`` after its bill runs, :mod:`ocs.billing_schedule`): the billing database
says which accounts to remind, bar and lift; barring goes through the same
:meth:`~quota_engine.store.accounts.AccountStore.set_status` as ``PATCH
/v1/accounts/{id}`` with ``{"status": "barred"}``, which publishes ``account_barred``
so that every node sends an ASR to the account's open sessions. Only an ``active``
account is barred (a suspended or closed one is left as it is); only an account that
dunning barred and that is still ``barred`` is made ``active`` again.

:func:`lift_settled` lifts at once the bar of accounts whose payment (``POST
/v1/payment``) settled what was overdue; payments recorded offline (``ocs payment add``,
``ocs payment import``) are lifted by the next dunning step.

A bar is recorded before and after the status change (:mod:`ocs.billing.payments.dunning`):
the intent ``barring`` is committed first, with the account rechecked under its payment
row's lock (a payment since the plan: no bar), then the status is set, then ``barred``
is recorded (or, when a payment's lift came in between, the bar just set is lifted). A
crash anywhere is completed, or lifted once paid, by the next step. A lift sets the
status first and records after: a crash in between repeats it. An account dunning
barred whose status is no longer ``barred`` (an operator changed it) is no longer
dunning's: recorded so (``by: operator``), so a bar the operator sets later stays.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine

from ocs.billing.payments.dunning import (
    DunningPlan,
    DunningTerms,
    Overdue,
    begin_bar,
    complete_bar,
    mark_lifted,
    plan_dunning,
    settled_barred,
)
from ocs.config import Settings, command_settings
from ocs.logs import log_event, mask_identity
from quota_engine.store.accounts import AccountStore

__all__ = [
    "DunningReport",
    "dunning_command",
    "dunning_terms",
    "lift_settled",
    "run_dunning",
    "scheduled_dunning",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Database(Protocol):
    """The billing database as the API holds it (:class:`ocs.api.context.BillingDatabase`)."""

    async def read(self, work: Callable[[Connection], T]) -> T: ...

    async def write(self, work: Callable[[Connection], T]) -> T: ...


class EngineDatabase:
    """:class:`Database` over an engine: each call in a thread, one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def read(self, work: Callable[[Connection], T]) -> T:
        def run() -> T:
            with self.engine.connect() as connection:
                return work(connection)

        return await asyncio.to_thread(run)

    async def write(self, work: Callable[[Connection], T]) -> T:
        def run() -> T:
            with self.engine.begin() as connection:
                return work(connection)

        return await asyncio.to_thread(run)


def dunning_terms(settings: Settings) -> DunningTerms:
    return DunningTerms(
        payment_terms=settings.documents_payment_terms,
        reminder_days=settings.billing_dunning_reminder_days,
        barring_days=settings.billing_dunning_barring_days,
    )


@dataclass
class DunningReport:
    """What a dunning step did: the plan, the accounts barred and lifted, and those it
    left alone (account id, why)."""

    plan: DunningPlan
    barred: list[str] = field(default_factory=list)
    lifted: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: accounts whose bar an operator took over (status no longer dunning's ``barred``)
    released: list[str] = field(default_factory=list)


async def _lift(accounts: AccountStore, database: Database, account: str, now: int) -> str | None:
    current = await accounts.get_account(account)
    status = None if current is None else current.status
    if status == "barred":
        await accounts.set_status(account, "active")
        status = "active"
    await database.write(lambda c: mark_lifted(c, account, now, status=status))
    log_event(logger, "dunning_bar_lifted", account=mask_identity(account), status=status)
    return status


async def lift_settled(
    accounts: AccountStore, database: Database, ids: Iterable[str], *, settings: Settings, now: int
) -> list[str]:
    """Lift the dunning bar of those of ``ids`` that have nothing overdue any more."""
    wanted = list(ids)
    terms = dunning_terms(settings)
    lifting = await database.read(lambda c: settled_barred(c, wanted, now, terms))
    for account in lifting:
        await _lift(accounts, database, account, now)
    return lifting


async def _bar(
    accounts: AccountStore,
    database: Database,
    found: Overdue,
    now: int,
    terms: DunningTerms,
    *,
    resumed: bool,
) -> str | None:
    """Bar ``found.account`` (see the module doc): None when barred, else why not.
    ``resumed``: a step left it ``barring``, so a ``barred`` status is that step's."""
    current = await accounts.get_account(found.account)
    status = None if current is None else current.status
    if status != "active" and not (resumed and status == "barred"):
        # barred by an operator, suspended, closed: theirs; an intent left is dropped
        if resumed:
            await database.write(
                lambda c: mark_lifted(c, found.account, now, status=status, by="operator")
            )
        return f"status is {status or 'unknown'}, not active"
    again = await database.write(lambda c: begin_bar(c, found, now, terms))
    if again is None:
        if resumed:  # paid since the crashed step; nothing of its bar was set
            await _lift(accounts, database, found.account, now)
        return "paid since the dunning plan"
    if status == "active":
        await accounts.set_status(found.account, "barred")  # account_barred: ASR
    if not await database.write(lambda c: complete_bar(c, again, now, terms)):
        await _lift(accounts, database, found.account, now)  # a payment came in between
        return "paid while being barred"
    log_event(logger, "dunning_account_barred", level=logging.WARNING,
              account=mask_identity(found.account), invoice=found.number,
              days_overdue=found.days(now))  # fmt: skip
    return None


async def _check_held(accounts: AccountStore, database: Database, account: str, now: int) -> bool:
    """Whether the bar dunning recorded for ``account`` is still dunning's (its status
    ``barred``); else it is recorded as the operator's now (False)."""
    current = await accounts.get_account(account)
    status = None if current is None else current.status
    if status == "barred":
        return True
    await database.write(lambda c: mark_lifted(c, account, now, status=status, by="operator"))
    log_event(logger, "dunning_bar_taken_over", account=mask_identity(account), status=status)
    return False


async def run_dunning(
    redis: Any, engine: Engine, settings: Settings, *, now: int, dry_run: bool = False
) -> DunningReport:
    """One dunning step at ``now`` (see the module doc). ``dry_run``: what it would do,
    with nothing recorded and no status changed."""
    accounts = AccountStore(redis)
    database = EngineDatabase(engine)
    terms = dunning_terms(settings)
    if dry_run:  # a read's transaction is rolled back: the reminders are not kept
        plan = await database.read(lambda c: plan_dunning(c, now, terms))
    else:
        plan = await database.write(lambda c: plan_dunning(c, now, terms))
    report = DunningReport(plan)
    for found in plan.reminded if not dry_run else ():
        log_event(logger, "payment_reminder", account=mask_identity(found.account),
                  invoice=found.number,
                  days_overdue=found.days(now))  # fmt: skip
    resumed = set(plan.resumed)
    for found in plan.to_bar:
        if dry_run:
            current = await accounts.get_account(found.account)
            status = None if current is None else current.status
            if status == "active" or (found.account in resumed and status == "barred"):
                report.barred.append(found.account)
            else:
                report.skipped.append(
                    (found.account, f"status is {status or 'unknown'}, not active")
                )
            continue
        why = await _bar(accounts, database, found, now, terms, resumed=found.account in resumed)
        if why is None:
            report.barred.append(found.account)
        else:
            report.skipped.append((found.account, why))
    for account in plan.held if not dry_run else ():
        if not await _check_held(accounts, database, account, now):
            report.released.append(account)
    for account in plan.to_lift:
        if not dry_run:
            await _lift(accounts, database, account, now)
        report.lifted.append(account)
    return report


def _report_lines(report: DunningReport, now: int, *, dry_run: bool = False) -> list[str]:
    plan = report.plan
    remind, bar, lift = ("would remind", "would bar", "would lift") if dry_run else (
        "reminder", "barred", "lifted"
    )  # fmt: skip
    lines = [
        f"{remind}: {found.account}: invoice {found.number} {found.days(now)} days overdue"
        for found in plan.reminded
    ]
    barred = set(report.barred)
    lines += [
        f"{bar}: {found.account}: invoice {found.number} {found.days(now)} days overdue"
        for found in plan.to_bar
        if found.account in barred
    ]
    lines += [f"not barred: {account}: {why}" for account, why in report.skipped]
    lines += [f"{lift}: {account}: nothing overdue any more" for account in report.lifted]
    lines += [
        f"bar released: {account}: its status was changed by an operator, the bar is theirs"
        for account in report.released
    ]
    lines.append(
        f"dunning: {len(plan.reminded)} reminded, {len(report.barred)} barred, "
        f"{len(report.lifted)} lifted, {len(plan.cleared)} cleared, "
        f"{len(report.skipped)} left alone"
        + (" (dry run: nothing recorded, no status changed)" if dry_run else "")
    )
    return lines


def _report_json(report: DunningReport, now: int) -> dict[str, Any]:
    plan = report.plan

    def overdue(found: Overdue) -> dict[str, Any]:
        return {"account": found.account, "invoice": found.invoice_id, "number": found.number,
                "days_overdue": found.days(now), "remaining_minor": found.remaining}  # fmt: skip

    return {
        "reminded": [overdue(found) for found in plan.reminded],
        "barred": [overdue(found) for found in plan.to_bar if found.account in report.barred],
        "skipped": [{"account": account, "reason": why} for account, why in report.skipped],
        "lifted": report.lifted,
        "released": report.released,
        "cleared": plan.cleared,
    }


def dunning_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``ocs payment dunning``: one step now, on ``billing.database_url`` and the Redis of
    the settings (``redis.url``, or the private one of ``redis.data_dir``: the one a
    running ``ocs serve`` holds, else one started for the command)."""
    from ocs.billing.database import open_for_command
    from ocs.payment_command import DUNNING_FLAGS
    from ocs.redis_store import StoreUnavailable, open_store

    command = "ocs payment dunning"
    settings = command_settings(
        command, args.config, env, {name: getattr(args, name) for name in DUNNING_FLAGS}
    )
    if settings is None:
        return 2
    engine = open_for_command(command, settings.billing_database_url)
    if engine is None:
        return 2
    now = int(time.time())

    async def step() -> DunningReport:
        async with open_store(settings, share_running=True) as client:
            return await run_dunning(client, engine, settings, now=now, dry_run=args.dry_run)

    try:
        report = asyncio.run(step())
    except StoreUnavailable as error:
        print(f"{command}: {error}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps({**_report_json(report, now), "dry_run": args.dry_run}, indent=2))
    else:
        for line in _report_lines(report, now, dry_run=args.dry_run):
            print(line)
    return 0


async def scheduled_dunning(redis: Any, settings: Settings, *, now: int) -> DunningReport:
    """The daily dunning step of ``ocs serve``, after its bill runs (the invoices they
    finalised count from then on)."""
    from ocs.billing_runner import open_billing_database

    engine = await asyncio.to_thread(open_billing_database, settings.billing_database_url)
    try:
        report = await run_dunning(redis, engine, settings, now=now)
    finally:
        engine.dispose()
    log_event(
        logger, "dunning_completed", reminded=len(report.plan.reminded),
        barred=len(report.barred), lifted=len(report.lifted), skipped=len(report.skipped),
    )  # fmt: skip
    return report
