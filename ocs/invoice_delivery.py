"""The delivery step inside ``ocs serve``: the Redis side of :mod:`ocs.billing.delivery.run`.

After the daily bill runs (and dunning), :func:`scheduled_delivery` delivers the final
invoices (docs/invoicing.md, "Delivery"), and between them, every
``delivery.retry_delay``, it attempts the deliveries whose next attempt has come
(``plan=False``: nothing new is planned, no bill run). The step runs in a thread
(SMTP, Typst and the database never block the event loop); the contacts and
partitions of the accounts it needs are read from the node's Redis on the event loop
(one pipeline,
:func:`~ocs.billing_source.read_document_accounts`), handed to the thread, so that
``ocs/billing`` still never imports Redis. A failure is logged by the schedule
(``invoice_delivery_failed``) and the step runs again at the next retry or the next
day; what it could not deliver waits (``pending``) for that run or for ``ocs invoice
deliver``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from ocs.billing.accounts import Contact
from ocs.billing.delivery.run import DeliverySummary, deliver, options_of
from ocs.billing_source import read_document_accounts
from ocs.config import Settings
from ocs.metrics import BillingMetrics
from quota_engine.store.catalogs import CatalogStore

__all__ = ["scheduled_delivery"]


async def scheduled_delivery(
    store: Any,
    settings: Settings,
    *,
    now: int,
    metrics: BillingMetrics | None = None,
    plan: bool = True,
) -> DeliverySummary:
    """One delivery step at ``now`` (Unix s) on ``settings``' database, SMTP server and
    print directory, the accounts from ``store`` (the node's Redis); its counts go to
    ``metrics`` (``ocs_invoice_deliveries_*`` on the node's ``/metrics``). ``plan``
    False: only the deliveries already due (the retries between the daily runs)."""
    from ocs.billing_runner import open_billing_database

    loop = asyncio.get_running_loop()
    catalog = await CatalogStore(store).active()
    zone = catalog.timezone if catalog is not None else "UTC"

    def accounts_of(ids: list[str]) -> tuple[Mapping[str, Contact], Mapping[str, int], str]:
        # called in the step's thread: the read runs on the node's loop, which owns the client
        reading = asyncio.run_coroutine_threadsafe(read_document_accounts(store, ids), loop)
        contacts, partitions = reading.result()
        return contacts, partitions, zone

    options = options_of(settings)
    engine = await asyncio.to_thread(open_billing_database, settings.billing_database_url)
    try:
        summary = await asyncio.to_thread(deliver, engine, options, accounts_of, now=now, plan=plan)
    finally:
        engine.dispose()
    if metrics is not None:
        metrics.delivery(
            outcomes={
                "sent": summary.sent, "printed": summary.printed,
                "retrying": summary.retrying, "failed": summary.failed,
                "interrupted": summary.interrupted,
            },
            waiting=summary.waiting, ended_at=time.time(), ok=summary.ok,
        )  # fmt: skip
    return summary
