"""Invoice benchmarks: composing 1,000 invoices from summed usage, and writing them
(invoice, lines, record links) to a fresh SQLite billing database in one transaction,
as a bill run's batches do.

Each account has 20 records (data, voice, SMS; home and roaming; both bands) and one
account in ten is a business parent's child line, so the invoices have usage lines,
allowance lines, recurring fees, the multi-line discount and taxes. The whole bill run
at the size of the acceptance (100,000 accounts, 2,000,000 records) is
``tests/benchmarks/bill_run_scale.py``; docs/benchmarks.md ("Bill run") has both.

Run with ``pytest tests/benchmarks/test_invoice_bench.py --benchmark-only
--benchmark-enable`` (or ``make bench``); skipped in the default run. The plain test at
the end always runs when this file is named: it checks that what is benchmarked writes
every invoice, line and record link.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from ocs.billing.accounts import BillingAccount
from ocs.billing.compose import ComposedInvoice, compose_invoice
from ocs.billing.database import migrate, open_database
from ocs.billing.invoices import invoice_id, write_invoice
from ocs.billing.periods import period_of
from ocs.billing.schema import invoice_item_records, invoice_items, invoices
from ocs.billing.usage import UsageLedger
from quota_engine.catalog.parser import load_demo_catalog
from tests.ocs.billing.factory import account, catalog, record

INVOICES = 1000
RECORDS_PER_ACCOUNT = 20
CATALOG = catalog(discounts=load_demo_catalog().discounts)  # the multi-line discount
PERIOD = period_of("2026-11", 1, CATALOG.timezone)
SHAPES = [
    {"service": "data", "used": 3_000_000, "charged": 1_500_000},
    {"service": "data", "used": 5_000_000, "charged": 10_000_000, "zone": "eu"},
    {"service": "data", "used": 800_000, "charged": 0, "allowances": {"data-1gb": 800_000}},
    {"service": "voice", "used": 125, "charged": 300_000, "destination": "national"},
    {"service": "voice", "used": 60, "charged": 150_000, "destination": "mobile"},
    {"service": "voice", "used": 95, "charged": 100_000, "destination": "national", "band": "weekend"},
    {"service": "sms", "used": 1, "charged": 90_000, "destination": "national"},
]  # fmt: skip


def _accounts() -> dict[str, list[BillingAccount]]:
    groups: dict[str, list[BillingAccount]] = {}
    for n in range(INVOICES):
        if n % 100 == 0:  # a business parent with 9 child lines (3 or more: the discount)
            parent = account(f"biz-{n:04d}")
            children = [account(f"biz-{n:04d}-l{c}", parent=parent.id) for c in range(9)]
            groups[parent.id] = [parent, *children]
        else:
            consumer = account(f"cust-{n:04d}")
            groups[consumer.id] = [consumer]
    return groups


GROUPS = _accounts()


def _ledger() -> UsageLedger:
    ledger = UsageLedger(CATALOG, CATALOG.timezone)
    serial = itertools.count()
    for members in GROUPS.values():
        for member in members:
            for n in range(RECORDS_PER_ACCOUNT):
                shape = SHAPES[n % len(SHAPES)]
                end = PERIOD.start + 3600 + 97_000 * n + next(serial) % 3600
                item = record(f"s-{member.id}-{n};1;10", member.id, end, **shape)  # type: ignore[arg-type]
                ledger.add(item, member.plan)
    return ledger


LEDGER = _ledger()


def compose_all() -> list[ComposedInvoice]:
    return [
        compose_invoice(members[0], members, PERIOD, LEDGER, CATALOG) for members in GROUPS.values()
    ]


def write_all(engine: Engine, composed: list[ComposedInvoice]) -> None:
    with engine.begin() as connection:
        for invoice in composed:
            document = invoice_id(invoice.account, invoice.period_start)
            write_invoice(
                connection, invoice, document=document, entity="default", bill_run_id=None, now=0
            )


def _fresh(directory: Path) -> Engine:
    url = f"sqlite:///{directory / 'billing.db'}"
    migrate(url)
    return open_database(url)


@pytest.mark.benchmark(group="invoices")
def test_compose_1000_invoices(benchmark):
    composed = benchmark(compose_all)
    assert len(composed) == INVOICES
    benchmark.extra_info["invoices_per_second"] = round(INVOICES / benchmark.stats["median"])


@pytest.mark.benchmark(group="invoices")
def test_write_1000_invoices_sqlite(benchmark, tmp_path):
    composed = compose_all()
    rounds = itertools.count()
    engines: list[Engine] = []

    def setup():
        directory = tmp_path / f"round-{next(rounds)}"
        directory.mkdir()
        engines.append(_fresh(directory))
        return (engines[-1], composed), {}

    benchmark.pedantic(write_all, setup=setup, rounds=5, warmup_rounds=1)
    benchmark.extra_info["invoices_per_second"] = round(INVOICES / benchmark.stats["median"])
    benchmark.extra_info["record_links"] = sum(i.record_count for i in composed)
    for engine in engines:
        engine.dispose()


def test_benchmarked_write_stores_every_line_and_record(tmp_path):
    composed = compose_all()
    engine = _fresh(tmp_path)
    try:
        write_all(engine, composed)
        with engine.connect() as connection:
            counts = [
                connection.execute(select(func.count()).select_from(table)).scalar_one()
                for table in (invoices, invoice_items, invoice_item_records)
            ]
    finally:
        engine.dispose()
    members = sum(len(m) for m in GROUPS.values())
    assert counts == [
        INVOICES,
        sum(len(i.lines) for i in composed),
        members * RECORDS_PER_ACCOUNT,
    ]
    discounted = [i for i in composed if any(line.kind == "discount" for line in i.lines)]
    assert len(discounted) == INVOICES // 100  # the business invoices get the discount
