"""Dunning to barring on a real Redis and a real billing database (SQLite, PostgreSQL):
an overdue invoice's account is reminded, then barred through the account status
(account_barred is published: the nodes send ASRs), and lifted back to active when a
payment settles what is overdue; accounts an operator suspended are left alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from ocs.billing.database import migrate, open_database
from ocs.billing.payments.allocation import PaymentRequest, record_payment
from ocs.billing.schema import billing_events, payment_accounts
from ocs.cli import main
from ocs.config import load_settings
from ocs.payment_dunning import EngineDatabase, lift_settled, run_dunning
from quota_engine.accounts.model import Account
from quota_engine.catalog.parser import load_demo_catalog
from quota_engine.store import keys
from quota_engine.store.accounts import AccountStore
from tests.ocs.billing.conftest import (  # noqa: F401 (fixtures of the billing tests)
    database_url,
    postgres_server,
    postgres_url,
    sqlite_url,
)
from tests.ocs.billing.test_payments import DAY, EUR, START, bill

FINAL = START + 31 * DAY
DUE = FINAL + 14 * DAY


@pytest.fixture
def billing(database_url: str):  # noqa: F811
    migrate(database_url)
    engine = open_database(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    store = AccountStore(client, catalog=load_demo_catalog())
    for name, status in (("dora", "active"), ("emil", "suspended"), ("fred", "active")):
        await store.create_account(
            Account(id=name, kind="postpaid", status=status, currency="EUR",
                    plan="postpaid-standard")
        )  # fmt: skip
    yield client
    await client.aclose()


def settings_of(url: str):
    return load_settings(None, {}, {"billing_database_url": url})  # defaults: 14, 7, 30


async def status(client, account: str) -> str:
    found = await AccountStore(client).get_account(account)
    assert found is not None
    return found.status


def dunning_of(engine, account: str) -> str | None:
    with engine.connect() as c:
        return c.execute(
            select(payment_accounts.c.dunning).where(payment_accounts.c.account == account)
        ).scalar_one_or_none()


def events(engine) -> list[tuple[str, str]]:
    with engine.connect() as c:
        rows = c.execute(
            select(billing_events.c.kind, billing_events.c.details)
            .where(billing_events.c.actor == "dunning")
            .order_by(billing_events.c.id)
        ).all()
    return [(kind, json.loads(details)["account"]) for kind, details in rows]


async def test_overdue_to_reminder_to_barring_and_a_payment_lifts_the_bar(
    redis_client,
    billing,
    database_url,  # noqa: F811
):
    settings = settings_of(database_url)
    with billing.begin() as c:
        bill(c, "in_d", 20_000_000, account="dora", final_at=FINAL)
        bill(c, "in_e", 20_000_000, account="emil", final_at=FINAL)
        bill(c, "in_f", 20_000_000, account="fred", final_at=FINAL)
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(keys.EVENTS_CHANNEL)
    await pubsub.get_message(timeout=1.0)
    # due, but not yet overdue long enough for a reminder
    report = await run_dunning(redis_client, billing, settings, now=DUE + 6 * DAY)
    assert (report.plan.reminded, report.plan.to_bar) == ([], [])
    # 7 days overdue: reminders; fred pays his bill in full
    report = await run_dunning(redis_client, billing, settings, now=DUE + 7 * DAY)
    assert [found.account for found in report.plan.reminded] == ["dora", "emil", "fred"]
    assert report.plan.reminded[0].days(DUE + 7 * DAY) == 7
    assert dunning_of(billing, "dora") == "reminder"
    with billing.begin() as c:
        record_payment(c, PaymentRequest("fred", 20_000_000, "EUR"), now=DUE + 8 * DAY, known=EUR)
    again = await run_dunning(redis_client, billing, settings, now=DUE + 8 * DAY)
    assert (again.plan.reminded, again.plan.cleared) == ([], ["fred"])  # reminded once
    assert dunning_of(billing, "fred") == "none"
    # 30 days overdue: dora is barred (an ASR for her sessions), emil was suspended by an
    # operator: left alone
    report = await run_dunning(redis_client, billing, settings, now=DUE + 30 * DAY)
    assert report.barred == ["dora"]
    assert report.skipped == [("emil", "status is suspended, not active")]
    assert await status(redis_client, "dora") == "barred"
    assert await status(redis_client, "emil") == "suspended"
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
    assert message is not None
    assert json.loads(message["data"]) == {"event": "account_barred", "account": "dora"}
    assert dunning_of(billing, "dora") == "barred"
    report = await run_dunning(redis_client, billing, settings, now=DUE + 31 * DAY)
    assert (report.barred, report.lifted) == ([], [])  # barred once
    # a payment of part of it lifts nothing; one that settles it lifts the bar at once
    database = EngineDatabase(billing)
    accounts = AccountStore(redis_client)
    with billing.begin() as c:
        record_payment(c, PaymentRequest("dora", 5_000_000, "EUR"), now=DUE + 32 * DAY)
    assert await lift_settled(accounts, database, ["dora"], settings=settings,
                              now=DUE + 32 * DAY) == []  # fmt: skip
    assert await status(redis_client, "dora") == "barred"
    with billing.begin() as c:
        record_payment(c, PaymentRequest("dora", 15_000_000, "EUR"), now=DUE + 33 * DAY)
    assert await lift_settled(accounts, database, ["dora"], settings=settings,
                              now=DUE + 33 * DAY) == ["dora"]  # fmt: skip
    assert await status(redis_client, "dora") == "active"
    assert dunning_of(billing, "dora") == "none"
    assert events(billing) == [
        ("payment_reminder", "dora"),
        ("payment_reminder", "emil"),
        ("payment_reminder", "fred"),
        ("account_barred_dunning", "dora"),
        ("account_bar_lifted", "dora"),
    ]
    await pubsub.aclose()


async def test_a_payment_recorded_offline_is_lifted_by_the_next_step_and_a_manual_change_kept(
    redis_client,
    billing,
    database_url,  # noqa: F811
):
    settings = settings_of(database_url)
    with billing.begin() as c:
        bill(c, "in_d", 20_000_000, account="dora", final_at=FINAL)
    await run_dunning(redis_client, billing, settings, now=DUE + 40 * DAY)
    assert await status(redis_client, "dora") == "barred"
    # an operator suspends her meanwhile: the lift records it, and leaves the status
    await AccountStore(redis_client).set_status("dora", "suspended")
    with billing.begin() as c:
        record_payment(c, PaymentRequest("dora", 20_000_000, "EUR"), now=DUE + 41 * DAY)
    report = await run_dunning(redis_client, billing, settings, now=DUE + 41 * DAY)
    assert report.lifted == ["dora"]
    assert await status(redis_client, "dora") == "suspended"
    assert dunning_of(billing, "dora") == "none"


async def test_ocs_payment_dunning_command(redis_client, redis_url, billing, database_url, capsys):  # noqa: F811
    with billing.begin() as c:
        bill(c, "in_d", 20_000_000, account="dora", final_at=FINAL)  # long overdue by now
    env = {"OCS_BILLING_DATABASE_URL": database_url}

    async def ocs(*argv: str) -> int:  # the command runs its own event loop
        return await asyncio.to_thread(main, list(argv), env=env)

    assert await ocs("payment", "dunning", "--redis-url", redis_url, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would bar: dora: invoice INV-0001" in out
    assert "1 barred, 0 lifted, 0 cleared, 0 left alone (dry run: nothing recorded" in out
    assert await status(redis_client, "dora") == "active"
    assert dunning_of(billing, "dora") is None
    assert await ocs("payment", "dunning", "--redis-url", redis_url) == 0
    out = capsys.readouterr().out
    assert "barred: dora: invoice INV-0001" in out
    assert "dunning: 0 reminded, 1 barred, 0 lifted, 0 cleared, 0 left alone" in out
    assert await status(redis_client, "dora") == "barred"
    assert await ocs("payment", "dunning", "--redis-url", redis_url, "--json") == 0
    assert json.loads(capsys.readouterr().out)["barred"] == []
    # Redis that cannot be reached: exit 2
    assert await ocs("payment", "dunning", "--redis-url", "redis://127.0.0.1:1") == 2
