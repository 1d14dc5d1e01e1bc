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


class Crash(Exception):
    """The process dies here (the step is not finished)."""


async def test_a_crash_between_the_status_and_its_record_is_completed_then_lifted(
    redis_client,
    billing,
    database_url,  # noqa: F811
    monkeypatch,
):
    """The intent (``barring``) is committed before the status change: a step that dies
    after barring the account leaves it ``barring``; the next step records the bar
    (the status is that step's), and a payment lifts it as any bar of dunning's."""
    import ocs.payment_dunning as composition

    settings = settings_of(database_url)
    with billing.begin() as c:
        bill(c, "in_d", 20_000_000, account="dora", final_at=FINAL)

    def crash(*args, **kwargs):
        raise Crash

    with monkeypatch.context() as patched:
        patched.setattr(composition, "complete_bar", crash)
        with pytest.raises(Crash):
            await run_dunning(redis_client, billing, settings, now=DUE + 31 * DAY)
    assert await status(redis_client, "dora") == "barred"
    assert dunning_of(billing, "dora") == "barring"
    report = await run_dunning(redis_client, billing, settings, now=DUE + 32 * DAY)
    assert (report.barred, report.plan.resumed) == (["dora"], ["dora"])
    assert dunning_of(billing, "dora") == "barred"
    with billing.begin() as c:
        record_payment(c, PaymentRequest("dora", 20_000_000, "EUR"), now=DUE + 33 * DAY)
    report = await run_dunning(redis_client, billing, settings, now=DUE + 34 * DAY)
    assert report.lifted == ["dora"]
    assert await status(redis_client, "dora") == "active"
    assert dunning_of(billing, "dora") == "none"
    assert [kind for kind, _ in events(billing)] == ["account_barred_dunning", "account_bar_lifted"]


async def test_a_crash_before_the_status_change_is_barred_by_the_next_step_or_cleared_once_paid(
    redis_client,
    billing,
    database_url,  # noqa: F811
    monkeypatch,
):
    import ocs.payment_dunning as composition

    settings = settings_of(database_url)
    with billing.begin() as c:
        bill(c, "in_d", 20_000_000, account="dora", final_at=FINAL)
        bill(c, "in_f", 20_000_000, account="fred", final_at=FINAL)

    class Dying(AccountStore):
        async def set_status(self, account_id: str, status: str) -> str:
            raise Crash

    with monkeypatch.context() as patched:
        patched.setattr(composition, "AccountStore", Dying)
        with pytest.raises(Crash):
            await run_dunning(redis_client, billing, settings, now=DUE + 31 * DAY)
    assert await status(redis_client, "dora") == "active"
    assert dunning_of(billing, "dora") == "barring"
    # dora pays (offline) before the next step; fred's bar is set by it
    with billing.begin() as c:
        record_payment(c, PaymentRequest("dora", 20_000_000, "EUR"), now=DUE + 32 * DAY)
    report = await run_dunning(redis_client, billing, settings, now=DUE + 32 * DAY)
    assert (report.barred, report.lifted) == (["fred"], ["dora"])
    assert (await status(redis_client, "dora"), dunning_of(billing, "dora")) == ("active", "none")
    assert (await status(redis_client, "fred"), dunning_of(billing, "fred")) == ("barred", "barred")


async def test_a_payment_during_the_step_before_the_bar_is_not_barred(
    redis_client,
    billing,
    database_url,  # noqa: F811
    monkeypatch,
):
    """The customer pays over the API (and its lift runs) after the plan, before the
    bar: the step checks the account again with its payment row locked, and skips it."""
    import ocs.payment_dunning as composition

    settings = settings_of(database_url)
    now = DUE + 31 * DAY
    with billing.begin() as c:
        bill(c, "in_d", 20_000_000, account="dora", final_at=FINAL)

    class PayingFirst(AccountStore):
        async def get_account(self, account_id: str):
            with billing.begin() as c:
                record_payment(c, PaymentRequest("dora", 20_000_000, "EUR"), now=now)
            await lift_settled(self, EngineDatabase(billing), ["dora"], settings=settings, now=now)
            return await super().get_account(account_id)

    monkeypatch.setattr(composition, "AccountStore", PayingFirst)
    report = await run_dunning(redis_client, billing, settings, now=now)
    assert report.barred == []
    assert report.skipped == [("dora", "paid since the dunning plan")]
    monkeypatch.undo()
    assert await status(redis_client, "dora") == "active"
    assert dunning_of(billing, "dora") == "none"


async def test_a_payment_between_the_intent_and_the_bar_lifts_the_bar_just_set(
    redis_client,
    billing,
    database_url,  # noqa: F811
    monkeypatch,
):
    """The payment's lift comes after the intent is committed, before the status is
    barred: the step sees the intent gone and lifts the bar it set."""
    import ocs.payment_dunning as composition

    settings = settings_of(database_url)
    now = DUE + 31 * DAY
    with billing.begin() as c:
        bill(c, "in_d", 20_000_000, account="dora", final_at=FINAL)

    class PaidMeanwhile(AccountStore):
        async def set_status(self, account_id: str, status: str) -> str:
            if status == "barred":
                assert dunning_of(billing, "dora") == "barring"
                with billing.begin() as c:
                    record_payment(c, PaymentRequest("dora", 20_000_000, "EUR"), now=now)
                lifted = await lift_settled(
                    AccountStore(redis_client), EngineDatabase(billing), ["dora"],
                    settings=settings, now=now,
                )  # fmt: skip
                assert lifted == ["dora"]
            return await super().set_status(account_id, status)

    monkeypatch.setattr(composition, "AccountStore", PaidMeanwhile)
    report = await run_dunning(redis_client, billing, settings, now=now)
    assert report.skipped == [("dora", "paid while being barred")]
    monkeypatch.undo()
    assert await status(redis_client, "dora") == "active"
    assert dunning_of(billing, "dora") == "none"


async def test_a_bar_an_operator_sets_after_dunnings_own_is_never_lifted_by_dunning(
    redis_client,
    billing,
    database_url,  # noqa: F811
):
    """Dunning barred dora; an operator lifts her (a step sees her status is no longer
    dunning's bar and releases it), then bars her for another reason: her payment lifts
    nothing."""
    settings = settings_of(database_url)
    with billing.begin() as c:
        bill(c, "in_d", 20_000_000, account="dora", final_at=FINAL)
    await run_dunning(redis_client, billing, settings, now=DUE + 31 * DAY)
    assert dunning_of(billing, "dora") == "barred"
    accounts = AccountStore(redis_client)
    await accounts.set_status("dora", "active")  # the operator's
    report = await run_dunning(redis_client, billing, settings, now=DUE + 32 * DAY)
    assert (report.released, report.barred) == (["dora"], [])
    assert dunning_of(billing, "dora") == "none"
    await accounts.set_status("dora", "barred")  # the operator's bar, for fraud say
    report = await run_dunning(redis_client, billing, settings, now=DUE + 33 * DAY)
    assert report.skipped == [("dora", "status is barred, not active")]
    with billing.begin() as c:
        record_payment(c, PaymentRequest("dora", 20_000_000, "EUR"), now=DUE + 34 * DAY)
    assert await lift_settled(accounts, EngineDatabase(billing), ["dora"], settings=settings,
                              now=DUE + 34 * DAY) == []  # fmt: skip
    report = await run_dunning(redis_client, billing, settings, now=DUE + 35 * DAY)
    assert report.lifted == []
    assert await status(redis_client, "dora") == "barred"
    released = [json.loads(d) for k, d in _event_rows(billing) if k == "account_bar_lifted"]
    assert released == [{"account": "dora", "status": "active", "by": "operator"}]


def _event_rows(engine) -> list[tuple[str, str]]:
    with engine.connect() as c:
        return [
            (row.kind, row.details)
            for row in c.execute(
                select(billing_events.c.kind, billing_events.c.details).order_by(
                    billing_events.c.id
                )
            )
        ]
