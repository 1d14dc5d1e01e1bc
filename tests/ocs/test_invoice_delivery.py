"""The delivery step inside ocs serve: after the daily bill run, the final invoices are
e-mailed (a real aiosmtpd) to the address the account holds in a real Redis, from the
step's thread through the node's event loop; a failure is logged and the schedule goes on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from ocs.billing.schema import invoice_deliveries
from ocs.billing_schedule import billing_schedule, next_run
from ocs.config import load_settings
from ocs.invoice_delivery import scheduled_delivery
from ocs.metrics import BillingMetrics
from quota_engine.accounts.model import Account
from quota_engine.catalog import DEMO_CATALOG_PATH
from quota_engine.catalog.parser import load_demo_catalog
from quota_engine.documents import read_document
from quota_engine.store import keys
from quota_engine.store.catalogs import CatalogStore, json_ready
from tests.ocs.billing.delivery.smtp_server import smtp_server
from tests.ocs.billing.documents.builders import ERIKA, bill, usage
from tests.ocs.billing.factory import account


async def _erika(client, tmp_path: Path):
    """Erika in Redis (e-mail), the demo catalog active, her November invoice final."""
    catalogs = CatalogStore(client)
    await catalogs.save(json_ready(read_document(DEMO_CATALOG_PATH)))
    await catalogs.activate(load_demo_catalog().version)
    stored = Account(id="erika", kind="postpaid", currency="EUR", plan="postpaid-standard",
                     name=ERIKA.name, email=ERIKA.email, locale="de_DE")  # fmt: skip
    await client.hset(keys.account("erika"), mapping=stored.to_hash())
    made = bill(tmp_path, [account("erika", partition=keys.partition_of("erika"))],
                usage("erika", 3), finalize=True)  # fmt: skip
    made.engine.dispose()
    return made


def _settings(made, server, **more):
    return load_settings(None, {}, {
        "billing_database_url": str(made.engine.url), "records_directory": str(made.records),
        "smtp_host": server.host, "smtp_port": str(server.port), "smtp_security": "none",
        **more,
    })  # fmt: skip


async def test_the_step_mails_the_final_invoice_to_the_address_in_redis(redis_url, tmp_path):
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    made = await _erika(client, tmp_path)
    metrics = BillingMetrics(CollectorRegistry())
    with smtp_server() as server:
        settings = _settings(made, server)
        summary = await scheduled_delivery(client, settings, now=int(time.time()), metrics=metrics)
        again = await scheduled_delivery(client, settings, now=int(time.time()), metrics=metrics)
        assert (summary.planned, summary.sent, again.sent) == (1, 1, 0)
        assert metrics.deliveries.labels("sent")._value.get() == 1
        assert metrics.deliveries.labels("failed")._value.get() == 0
        assert metrics.deliveries_waiting._value.get() == 0
        assert metrics.delivery_last_success._value.get() > 0
        [received] = server.sink.received
        assert received.recipients == ["erika@example.de"]
        assert received.message["Subject"].startswith("Invoice INV-000001 from ")
    await client.aclose()


async def test_the_daily_schedule_delivers_after_its_bill_run(redis_url, tmp_path, caplog):
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    made = await _erika(client, tmp_path)
    with smtp_server() as server:
        settings = _settings(made, server, billing_schedule="02:00")
        # the clock just before the next 02:00: the run is due in 0.2 s
        clock = [next_run(time.time(), "02:00", "Europe/Berlin") - 0.2]
        async with billing_schedule(
            client, settings, BillingMetrics(CollectorRegistry()), clock=lambda: clock[0]
        ) as task:
            for _ in range(100):
                if server.sink.received:
                    break
                await asyncio.sleep(0.1)
            assert task is not None and not task.done()
        assert [r.recipients for r in server.sink.received] == [["erika@example.de"]]
    await client.aclose()


async def test_a_failed_step_is_logged_and_the_schedule_goes_on(redis_url, tmp_path, caplog):
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    made = await _erika(client, tmp_path)
    with smtp_server() as server:
        # a billing database that refuses every connection: the step fails altogether
        broken = _settings(made, server, billing_schedule="02:00",
                           billing_database_url="postgresql://nobody@127.0.0.1:1/billing")  # fmt: skip
    clock = [next_run(time.time(), "02:00", "Europe/Berlin") - 0.2]
    async with billing_schedule(
        client, broken, BillingMetrics(CollectorRegistry()), clock=lambda: clock[0]
    ) as task:
        with caplog.at_level("ERROR", logger="ocs.billing_schedule"):
            for _ in range(60):
                if any("invoice_delivery_failed" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.1)
        assert any("invoice_delivery_failed" in r.getMessage() for r in caplog.records)
        assert task is not None and not task.done()
    assert task.done() and task.exception() is None
    await client.aclose()


async def test_the_metrics_count_what_waits_and_an_smtp_error(redis_url, tmp_path):
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    made = await _erika(client, tmp_path)
    metrics = BillingMetrics(CollectorRegistry())
    with smtp_server() as server:
        settings = _settings(made, server)
    # the server is gone: a temporary failure, an SMTP error, no success time
    summary = await scheduled_delivery(client, settings, now=int(time.time()), metrics=metrics)
    assert summary.retrying == 1 and summary.errors
    assert metrics.deliveries.labels("retrying")._value.get() == 1
    assert metrics.delivery_last_success._value.get() == 0
    await client.aclose()


async def test_the_schedule_retries_a_deferred_delivery_without_waiting_a_day(
    redis_url, tmp_path, caplog
):
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    made = await _erika(client, tmp_path)
    with smtp_server() as server:
        server.sink.replies = ["451 4.7.1 Greylisted, try again in a second"]
        settings = _settings(made, server, billing_schedule="02:00", delivery_retry_delay="1")
        clock = [next_run(time.time(), "02:00", "Europe/Berlin") - 0.2]
        with caplog.at_level("INFO"):
            async with billing_schedule(
                client, settings, BillingMetrics(CollectorRegistry()), clock=lambda: clock[0]
            ) as task:
                for _ in range(100):  # the daily run: greylisted, pending for a second
                    if server.sink.rcpt_commands:
                        break
                    await asyncio.sleep(0.05)
                assert server.sink.rcpt_commands == 1 and server.sink.received == []
                bill_runs = _count(caplog, "bill_run_completed")
                assert bill_runs >= 1
                clock[0] += 2  # the back-off is over; the next daily run is a day away
                for _ in range(100):
                    if server.sink.received:
                        break
                    await asyncio.sleep(0.05)
                assert task is not None and not task.done()
            assert [r.recipients for r in server.sink.received] == [["erika@example.de"]]
            assert server.sink.rcpt_commands == 2
            assert _count(caplog, "bill_run_completed") == bill_runs  # no bill run again
    with made.engine.connect() as connection:
        [row] = connection.execute(select(invoice_deliveries)).all()
    assert (row.state, row.attempts) == ("sent", 2)
    made.engine.dispose()
    await client.aclose()


def _count(caplog, event: str) -> int:
    return sum(event in record.getMessage() for record in caplog.records)


async def test_a_failed_retry_step_is_logged_and_the_schedule_goes_on(redis_url, tmp_path, caplog):
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    made = await _erika(client, tmp_path)
    with smtp_server() as server:
        broken = _settings(made, server, billing_schedule="02:00", delivery_retry_delay="1",
                           billing_database_url="postgresql://nobody@127.0.0.1:1/billing")  # fmt: skip
    # the daily run is an hour away: only the retry steps run meanwhile
    clock = [next_run(time.time(), "02:00", "Europe/Berlin") - 3600]
    async with billing_schedule(
        client, broken, BillingMetrics(CollectorRegistry()), clock=lambda: clock[0]
    ) as task:
        with caplog.at_level("ERROR", logger="ocs.billing_schedule"):
            for _ in range(60):
                if _count(caplog, "invoice_delivery_failed") >= 2:
                    break
                await asyncio.sleep(0.1)
        failures = [
            _fields(r) for r in caplog.records if r.getMessage() == "invoice_delivery_failed"
        ]
        assert len(failures) >= 2 and all(fields["step"] == "retry" for fields in failures)
        assert _count(caplog, "bill_run") == 0
        assert task is not None and not task.done()
    assert task.done() and task.exception() is None
    await client.aclose()


def _fields(record) -> dict:
    """The fields of a log_event record."""
    return record.ocs_event[1]
