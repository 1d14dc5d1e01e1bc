"""A bill run with documents at scale (issue 12 acceptance: "the cost of a bill run with
documents for 10,000 accounts"): the accounts and records of
:mod:`tests.benchmarks.bill_run_scale`, a bill run that finalises them on a fresh
SQLite database, then one delivery step (:func:`ocs.billing.delivery.run.deliver`)
for every final invoice: the share ``--paper`` of the invoice accounts on paper (their
PDFs and the manifest in one print batch), the others by e-mail with the PDF attached
to a local SMTP sink (aiosmtpd in a process of its own, :mod:`.smtp_sink`).

    .venv/bin/python -m tests.benchmarks.delivery_scale --accounts 10000 \\
        --records 200000 --workdir /tmp/delbench [--paper 0.2] [--profile FILE]

Timed apart: the bill run, and the delivery step (documents read from the database and
the segment files, Typst, Jinja2 for the e-mails' HTML, SMTP, the print batch, the
deliveries' rows). Reported: wall and CPU seconds of each, documents per second, the
sink's count of messages and octets, the batch's size and pages, peak RSS, and the
load average (other work on the machine).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from ocs.billing.accounts import Contact
from ocs.billing.bill_run import BillRunOptions, run_bill_run
from ocs.billing.database import open_database
from ocs.billing.delivery.run import DeliveryOptions, deliver
from ocs.billing.delivery.smtp import SmtpConfig
from ocs.billing.documents import Operator
from ocs.billing.documents.html import default_logo
from ocs.billing.periods import period_of
from ocs.billing.schema import invoice_deliveries
from quota_engine.catalog.parser import load_demo_catalog
from tests.benchmarks import bill_run_scale
from tests.helpers import get_free_port

OPERATOR = Operator(
    name="Beispiel Telekom GmbH", address=("Hauptstraße 1", "10115 Berlin"),
    vat_id="DE123456789", support="support@beispiel.example", logo=default_logo(),
)  # fmt: skip


def _with_contacts(accounts: list[Any], paper: float) -> list[Any]:
    """Each account with a name, an address, a locale, an e-mail address, and every
    ``1/paper``-th invoice account on paper (deterministic by position)."""
    every = round(1 / paper) if paper > 0 else 0
    made = []
    for n, account in enumerate(accounts):
        on_paper = every > 0 and n % every == 0
        contact = Contact(
            name=f"Customer {account.id}", address=f"Street {n % 97 + 1}\n{10115 + n % 800} Berlin",
            locale="de_DE" if n % 2 else "en_GB", email=f"{account.id}@example.net",
            delivery="paper" if on_paper else "email",
        )  # fmt: skip
        made.append(dataclasses.replace(account, contact=contact))
    return made


def _sink(port: int) -> subprocess.Popen[str]:
    sink = subprocess.Popen(
        [sys.executable, "-m", "tests.benchmarks.smtp_sink", str(port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    return sink


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    accounts, records, count = bill_run_scale.inputs(args)
    accounts = _with_contacts(accounts, args.paper)
    url, _ = bill_run_scale._fresh_database(argparse.Namespace(database_url=None), workdir)
    engine = open_database(url)
    end = period_of(args.period, 1, "Europe/Berlin").end
    now = end + 3600
    began, cpu = time.monotonic(), time.process_time()
    summary = run_bill_run(
        engine, load_demo_catalog(), accounts, records, period=args.period, now=now,
        options=BillRunOptions(finalize=True, own_process=True),
    )  # fmt: skip
    bill_wall, bill_cpu = time.monotonic() - began, time.process_time() - cpu
    by_id = {a.id: a for a in accounts}

    def accounts_of(ids: list[str]) -> tuple[dict[str, Contact], dict[str, int], str]:
        known = [by_id[i] for i in ids if i in by_id]
        return {a.id: a.contact for a in known}, {a.id: a.partition for a in known}, "Europe/Berlin"

    port = get_free_port()
    sink = _sink(port)
    prints = workdir / f"print-{os.getpid()}-{int(time.time())}"
    options = DeliveryOptions(
        operator=OPERATOR, records_directory=records, smtp=SmtpConfig(
            host="127.0.0.1", port=port, security="none", sender="billing@beispiel.example"),
        print_directory=prints,
    )  # fmt: skip
    profile = cProfile.Profile() if args.profile else None
    began, cpu = time.monotonic(), time.process_time()
    if profile is not None:
        profile.enable()
    delivered = deliver(engine, options, accounts_of, now=now + 60)
    if profile is not None:
        profile.disable()
        profile.dump_stats(args.profile)
    deliver_wall, deliver_cpu = time.monotonic() - began, time.process_time() - cpu
    assert sink.stdin is not None and sink.stdout is not None
    sink.stdin.close()
    received = sink.stdout.read().split()
    sink.wait(timeout=30)
    batch = delivered.batch
    manifest = json.loads((batch / "manifest.json").read_text()) if batch else {"pages": 0}
    with engine.connect() as connection:
        states = dict(
            connection.execute(
                select(invoice_deliveries.c.state, func.count()).group_by(
                    invoice_deliveries.c.state
                )
            ).all()
        )
    engine.dispose()
    documents = delivered.sent + delivered.printed
    return {
        "accounts": len(accounts),
        "records": count,
        "invoices": summary.invoices_created + summary.drafts_refreshed,
        "bill_run_seconds": round(bill_wall, 2),
        "bill_run_cpu_seconds": round(bill_cpu, 2),
        "delivery_seconds": round(deliver_wall, 2),
        "delivery_cpu_seconds": round(deliver_cpu, 2),
        "documents_per_second": round(documents / deliver_wall, 1) if deliver_wall else None,
        "emailed": delivered.sent,
        "printed": delivered.printed,
        "failed": delivered.failed,
        "errors": delivered.errors,
        "states": states,
        "sink_messages": int(received[1]) if len(received) > 1 else None,
        "sink_mib": round(int(received[3]) / 2**20, 1) if len(received) > 3 else None,
        "print_batch_mib": round(
            sum(p.stat().st_size for p in batch.iterdir()) / 2**20, 1) if batch else 0,
        "print_pages": manifest["pages"],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--workdir", default="/tmp/delbench")
    parser.add_argument("--period", default="2026-11")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--paper", type=float, default=0.2, help="share of accounts on paper")
    parser.add_argument("--profile", default=None, help="cProfile of the delivery step")
    args = parser.parse_args(argv)
    print(json.dumps(run(args), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
