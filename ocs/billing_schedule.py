"""The daily bill run inside ``ocs serve`` (``billing.schedule = "HH:MM"``).

Every day at that local time of the active catalog's time zone, the node bills the
periods that ended that day and, for each of the days of the grace period before it,
refreshes the drafts of the periods that ended then and finalises those whose grace
period is over (the same :func:`~ocs.billing.bill_run.run_bill_run` as ``ocs bill-run
--date``, in a thread: charging never waits for it). Accounts and the catalog are read
from the node's Redis (on its event loop, 100 accounts per step, so a request waits
a few milliseconds at most), records from ``records.directory``, invoices go to
``billing.database_url``. After the bill runs, one dunning step
(:func:`ocs.payment_dunning.scheduled_dunning`): reminders, bars and lifts by the
overdue invoices (``dunning_failed`` is logged when it fails); then one delivery step
(:func:`ocs.invoice_delivery.scheduled_delivery`): the final invoices e-mailed or put
into the print batch (``invoice_delivery_failed`` is logged when it fails). Between the
daily runs, every ``delivery.retry_delay``, the delivery step alone attempts the
deliveries whose next attempt has come (a temporary failure's retry), nothing else.

Run it on one node only (or on each with its own share: several processes share a run
by ``ocs bill-run --shard``; the schedule runs the whole run). A failed run is logged
(``bill_run_failed``) and tried again the next day; the command can be run by hand
meanwhile. Results are the ``ocs_bill_run_*`` metrics on the node's ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ocs.billing.bill_run import BillRunSummary, run_bill_run
from ocs.billing_runner import bill_run_options, open_billing_database, record_metrics
from ocs.billing_source import read_billing_accounts
from ocs.config import Settings
from ocs.invoice_delivery import scheduled_delivery
from ocs.logs import log_event
from ocs.metrics import BillingMetrics
from ocs.payment_dunning import scheduled_dunning
from quota_engine.store.catalogs import CatalogStore

__all__ = ["billing_schedule", "next_run", "scheduled_bill_run"]

logger = logging.getLogger(__name__)

_DAY = 86_400


def next_run(now: float, schedule: str, timezone: str) -> float:
    """The Unix time of the next ``HH:MM`` local time in ``timezone`` after ``now``."""
    hour, minute = (int(part) for part in schedule.split(":"))
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(now, zone)
    candidate = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate.timestamp() <= now:
        following = local.date() + timedelta(days=1)
        candidate = datetime(following.year, following.month, following.day, hour, minute,
                             tzinfo=zone)  # fmt: skip
    return candidate.timestamp()


async def scheduled_bill_run(
    store: Any, settings: Settings, metrics: BillingMetrics, today: date, *, now: int
) -> list[BillRunSummary]:
    """One day's scheduled bill run at ``now`` (Unix s): the periods that ended ``today``
    and on each day of the grace period before (drafts refreshed, due ones finalised)."""
    catalog = await CatalogStore(store).active()
    if catalog is None:
        log_event(logger, "bill_run_skipped", level=logging.WARNING, reason="no active catalog")
        return []
    # small batches: the accounts are decoded on the node's event loop, between
    # Diameter requests, a few milliseconds at a time (about 12 s in all for 100,000)
    accounts = await read_billing_accounts(store, batch=100)
    engine = await asyncio.to_thread(open_billing_database, settings.billing_database_url)
    summaries = []
    try:
        options = bill_run_options(settings)
        days = math.ceil(settings.billing_grace_period / _DAY) + 1
        for back in range(days + 1):
            day = today - timedelta(days=back)
            summary = await asyncio.to_thread(
                run_bill_run, engine, catalog, accounts, settings.records_directory,
                day=day, options=options, now=now,
            )  # fmt: skip
            await asyncio.to_thread(record_metrics, metrics, summary, engine)
            log_event(
                logger, "bill_run_completed", level=logging.INFO if summary.ok else logging.ERROR,
                period=summary.period, accounts=summary.accounts,
                created=summary.invoices_created, refreshed=summary.drafts_refreshed,
                finalized=summary.finalized, errors=len(summary.errors),
                seconds=round(summary.seconds, 3),
            )  # fmt: skip
            summaries.append(summary)
    finally:
        engine.dispose()
    return summaries


async def _run_daily(
    store: Any, settings: Settings, metrics: BillingMetrics, stop: asyncio.Event,
    clock: Callable[[], float],
) -> None:  # fmt: skip
    """The daily run at ``billing.schedule`` and, between, a retry step for the
    deliveries that are due every ``delivery.retry_delay`` (the back-off of a
    temporary failure is minutes, not a day): only the delivery step, no bill run."""
    last = 0.0
    interval = float(settings.delivery_retry_delay)
    retry_at = clock() + interval
    while not stop.is_set():
        catalog = await CatalogStore(store).active()
        timezone = catalog.timezone if catalog is not None else "UTC"
        # never the same moment twice, even when the run took no time on a coarse clock
        due = next_run(max(clock(), last), settings.billing_schedule, timezone)
        wake = min(due, retry_at)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(wake - clock(), 0.0))
        if stop.is_set():
            return
        if wake < due:
            await _retry_deliveries(store, settings, metrics, now=int(clock()))
            retry_at = max(clock(), retry_at) + interval
            continue
        last = due
        today = datetime.fromtimestamp(due, ZoneInfo(timezone)).date()
        try:
            await scheduled_bill_run(store, settings, metrics, today, now=int(clock()))
        except Exception as error:  # logged, tried again tomorrow; the node goes on
            log_event(logger, "bill_run_failed", level=logging.ERROR, error=repr(error))
        try:  # after the bill runs: the invoices they finalised are due from now on
            await scheduled_dunning(store, settings, now=int(clock()))
        except Exception as error:  # logged, tried again tomorrow
            log_event(logger, "dunning_failed", level=logging.ERROR, error=repr(error))
        try:  # the invoices finalised: by e-mail or into the print batch
            await scheduled_delivery(store, settings, now=int(clock()), metrics=metrics)
        except Exception as error:  # logged, tried again tomorrow
            log_event(logger, "invoice_delivery_failed", level=logging.ERROR, error=repr(error))
        retry_at = max(clock(), retry_at) + interval  # the daily step just tried the due ones


async def _retry_deliveries(
    store: Any, settings: Settings, metrics: BillingMetrics, *, now: int
) -> None:
    try:
        await scheduled_delivery(store, settings, now=now, metrics=metrics, plan=False)
    except Exception as error:  # logged, tried again at the next retry
        log_event(logger, "invoice_delivery_failed", level=logging.ERROR, error=repr(error),
                  step="retry")  # fmt: skip


@contextlib.asynccontextmanager
async def billing_schedule(
    store: Any,
    settings: Settings,
    metrics: BillingMetrics,
    *,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[asyncio.Task[None] | None]:
    """The daily bill run as a task for the lifetime of the context (None when off)."""
    if settings.billing_schedule == "off":
        yield None
        return
    stop = asyncio.Event()
    task = asyncio.create_task(
        _run_daily(store, settings, metrics, stop, clock), name="ocs-bill-run"
    )
    try:
        yield task
    finally:
        stop.set()
        await task
