"""The daily bill run of ocs serve: when it runs, and one day's run against a real Redis
and a real SQLite billing database."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, select

from ocs.billing.schema import invoices
from ocs.billing_schedule import billing_schedule, next_run, scheduled_bill_run
from ocs.config import load_settings
from ocs.metrics import BillingMetrics
from quota_engine.accounts.model import Account
from quota_engine.catalog import DEMO_CATALOG_PATH
from quota_engine.catalog.parser import load_demo_catalog
from quota_engine.documents import read_document
from quota_engine.store import keys
from quota_engine.store.accounts import AccountStore
from quota_engine.store.catalogs import CatalogStore, json_ready
from quota_engine.store.records import partition_of_account
from tests.ocs.billing.factory import account, at, record, write_records

BERLIN = ZoneInfo("Europe/Berlin")


def local(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-11-30 01:00", "2026-11-30 02:00"),
        ("2026-11-30 02:00", "2026-12-01 02:00"),  # at the minute: the next day's
        ("2026-11-30 23:59", "2026-12-01 02:00"),
        ("2026-03-28 03:00", "2026-03-29 03:00"),  # 02:00 does not exist that night (DST)
    ],
)
def test_next_run_is_the_next_local_time(now, expected):
    schedule = "03:00" if now.startswith("2026-03-28") else "02:00"
    assert next_run(local(now), schedule, "Europe/Berlin") == local(expected)


async def test_one_day_bills_the_periods_that_ended_and_finalises_after_grace(
    redis_url: str, tmp_path: Path
):
    client = aioredis.Redis.from_url(redis_url)
    catalog = load_demo_catalog()
    catalogs = CatalogStore(client)
    await catalogs.save(json_ready(read_document(DEMO_CATALOG_PATH)))
    await catalogs.activate(catalog.version)
    store = AccountStore(client, catalog=catalog)
    for name, day in (("dora", 1), ("emil", 15)):
        await store.create_account(
            Account(
                id=name,
                kind="postpaid",
                currency="EUR",
                plan="postpaid-standard",
                bill_cycle_day=day,
            )  # fmt: skip
        )
        await client.hset(keys.account(name), "created", at("2026-01-01 00:00"))
    records = tmp_path / "records"
    write_records(
        records,
        [
            record("d;1;10", "dora", at("2026-11-20 10:00")),
            record("e;1;10", "emil", at("2026-11-20 10:00")),
        ],  # fmt: skip
        [
            account("dora", partition=partition_of_account("dora")),
            account("emil", partition=partition_of_account("emil")),
        ],  # fmt: skip
    )
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    settings = load_settings(None, {}, {
        "billing_database_url": url, "records_directory": str(records),
        "billing_grace_period": 172_800.0,
    })  # fmt: skip
    metrics = BillingMetrics(CollectorRegistry())
    # on 2026-12-01: dora's period (cycle day 1) ended today: a draft (grace of 2 days)
    summaries = await scheduled_bill_run(
        client, settings, metrics, date(2026, 12, 1), now=at("2026-12-01 02:00")
    )
    assert [s.period for s in summaries][0] == "ending 2026-12-01"
    engine = create_engine(url)
    with engine.connect() as connection:
        states = dict(connection.execute(select(invoices.c.account, invoices.c.state)).all())
    assert states == {"dora": "draft"}
    # two days later the grace period is over: finalised (emil's period ends on the 15th)
    await scheduled_bill_run(
        client, settings, metrics, date(2026, 12, 3), now=at("2026-12-03 02:00")
    )
    with engine.connect() as connection:
        rows = connection.execute(select(invoices.c.account, invoices.c.number)).all()
    assert [tuple(r) for r in rows] == [("dora", "INV-000001")]
    assert metrics.invoices.labels("final")._value.get() == 1
    engine.dispose()
    await client.aclose()


async def test_the_schedule_task_runs_when_due_and_stops(redis_url: str, tmp_path: Path, caplog):
    client = aioredis.Redis.from_url(redis_url)
    settings = load_settings(None, {}, {
        "billing_schedule": "02:00", "billing_database_url": f"sqlite:///{tmp_path / 'b.db'}",
        "records_directory": str(tmp_path / "records"),
    })  # fmt: skip
    # no active catalog: the schedule is in UTC until one is loaded
    two = datetime(2026, 12, 1, 2, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    clock_now = [two - 0.2]
    metrics = BillingMetrics(CollectorRegistry())
    async with billing_schedule(client, settings, metrics, clock=lambda: clock_now[0]) as task:
        assert task is not None
        with caplog.at_level("INFO", logger="ocs.billing_schedule"):
            await asyncio.sleep(0.5)  # the run was due after 0.2 s: no catalog, skipped
        assert ["bill_run_skipped" in r.getMessage() for r in caplog.records].count(True) == 1
        clock_now[0] = two + 3600
        assert not task.done()
    assert task.done() and task.exception() is None
    off = load_settings(None, {}, {"billing_schedule": "off"})
    async with billing_schedule(client, off, metrics) as nothing:
        assert nothing is None
    await client.aclose()


async def test_a_failed_daily_run_is_logged_and_the_schedule_goes_on(
    redis_url: str, tmp_path: Path, caplog
):
    client = aioredis.Redis.from_url(redis_url)
    catalogs = CatalogStore(client)
    await catalogs.save(json_ready(read_document(DEMO_CATALOG_PATH)))
    await catalogs.activate(load_demo_catalog().version)
    settings = load_settings(None, {}, {
        "billing_schedule": "02:00", "records_directory": str(tmp_path / "records"),
        # a database that refuses every connection
        "billing_database_url": "postgresql://nobody@127.0.0.1:1/billing",
    })  # fmt: skip
    due = local("2026-12-01 02:00")
    clock_now = [due - 0.2]
    async with billing_schedule(
        client, settings, BillingMetrics(CollectorRegistry()), clock=lambda: clock_now[0]
    ) as task:
        with caplog.at_level("ERROR", logger="ocs.billing_schedule"):
            await asyncio.sleep(1.5)
        assert any("bill_run_failed" in r.getMessage() for r in caplog.records)
        assert task is not None and not task.done()  # tried again tomorrow
    assert task.done() and task.exception() is None
    await client.aclose()
