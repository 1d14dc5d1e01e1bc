"""A bill run in a process of its own, for the crash test (test_bill_run_crash.py).

``python -m tests.ocs.billing.bill_run_crash_script DATABASE_URL RECORDS_DIR ACCOUNTS``
bills November 2026 for the accounts of :func:`accounts` (finalising, a few invoices
per transaction) from the records :func:`records` wrote into RECORDS_DIR, and prints
the run's summary as JSON. The test kills it with SIGKILL halfway and runs it again.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import date
from typing import Any

from ocs.billing.accounts import Adjustment, BillingAccount
from ocs.billing.bill_run import BillRunOptions, run_bill_run
from ocs.billing.database import open_database
from quota_engine.catalog.model import Catalog, Discount, TaxRate
from tests.ocs.billing.factory import account, at, catalog, record

NOW = at("2026-12-10 00:00")
OPTIONS = BillRunOptions(batch=2, finalize=True)


def bill_catalog() -> Catalog:
    return catalog(
        taxes=[TaxRate("standard", 190_000, date(2021, 1, 1), None, "VAT 19 %")],
        discounts=[
            Discount(
                "data-5", "5 % off data", "percent", "service", rate_ppm=50_000, service="data"
            )
        ],
    )


def accounts(count: int) -> list[BillingAccount]:
    """``count`` postpaid accounts, each with one line and, for every third, a credit."""
    return [
        account(
            f"acct{n:04d}",
            subscriptions=(f"msisdn:4917000{n:04d}",),
            adjustments=(
                (Adjustment(f"h{n}", at("2026-11-15 12:00"), 1_000_000 + n, "main", "Credit"),)
                if n % 3 == 0
                else ()
            ),
        )
        for n in range(count)
    ]


def records(count: int, per_account: int = 12) -> list[dict[str, Any]]:
    made = []
    for n in range(count):
        for k in range(per_account):
            service = ("data", "voice", "sms")[k % 3]
            made.append(
                record(
                    f"s{n}-{k};1;{10 + k % 3}",
                    f"acct{n:04d}",
                    at("2026-11-02 08:00") + k * 86_400 + n * 60,
                    service=service,
                    used=1_000 + 37 * k + n,
                    charged=123_457 * (k + 1) + 1_111 * n,
                    destination=None if service == "data" else ("national", "mobile")[k % 2],
                    zone=("home", "home", "eu")[(k + n) % 3],
                )
            )
    return made


def main(argv: list[str]) -> int:
    url, records_dir, count = argv[0], argv[1], int(argv[2])
    engine = open_database(url)
    try:
        summary = run_bill_run(
            engine,
            bill_catalog(),
            accounts(count),
            records_dir,
            period="2026-11",
            now=NOW,
            options=OPTIONS,
        )
    finally:
        engine.dispose()
    print(json.dumps(asdict(summary)))
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
