"""Invoices made the real way for the document tests: billing accounts, rated records in
sealed segment files, a bill run on a migrated SQLite database; then the document of
the invoice as the API and the CLI load it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from ocs.billing.accounts import BillingAccount, Contact
from ocs.billing.bill_run import BillRunOptions, run_bill_run
from ocs.billing.database import migrate, open_database
from ocs.billing.documents import InvoiceDocument, Operator, load_document
from ocs.billing.documents.html import default_logo
from ocs.billing.schema import invoices
from tests.ocs.billing.factory import account, at, catalog, record, write_records

BERLIN = ZoneInfo("Europe/Berlin")
NOVEMBER_DONE = at("2026-12-10 00:00")
OPERATOR = Operator(
    name="Beispiel Telekom GmbH",
    address=("Hauptstraße 1", "10115 Berlin"),
    vat_id="DE123456789",
    support="support@beispiel.example · +49 30 1234567",
    payment_terms=14,
    logo=default_logo(),
)
MIB = 1_048_576


@dataclass
class Billed:
    engine: Engine
    records: Path
    accounts: list[BillingAccount]

    def invoice_id(self, account_id: str) -> str:
        with self.engine.connect() as connection:
            return str(
                connection.execute(
                    select(invoices.c.id).where(invoices.c.account == account_id)
                ).scalar_one()
            )

    def document(self, account_id: str, *, operator: Operator = OPERATOR) -> InvoiceDocument:
        by_id = {a.id: a for a in self.accounts}
        with self.engine.connect() as connection:
            return load_document(
                connection,
                self.invoice_id(account_id),
                operator=operator,
                contacts={a.id: a.contact for a in self.accounts},
                partitions={a.id: a.partition for a in by_id.values()},
                records_directory=self.records,
                now=NOVEMBER_DONE,
            )


def bill(
    tmp_path: Path,
    accounts: list[BillingAccount],
    records: list[dict],
    *,
    period: str = "2026-11",
    now: int = NOVEMBER_DONE,
    **options,
) -> Billed:
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    migrate(url)
    engine = open_database(url)
    directory = tmp_path / "records"
    directory.mkdir(exist_ok=True)
    write_records(directory, records, accounts)
    summary = run_bill_run(
        engine,
        catalog(),
        accounts,
        directory,
        period=period,
        now=now,
        options=BillRunOptions(**options),
    )
    assert summary.errors == []
    return Billed(engine, directory, accounts)


ERIKA = Contact(
    name="Erika Mustermann",
    address="Musterstraße 12\n10115 Berlin\nDeutschland",
    locale="de_DE",
    email="erika@example.de",
)


def usage(account_id: str, count: int, *, day: int = 3, start: int = 0) -> list[dict]:
    """``count`` records of ``account_id`` in November, data, voice and SMS in turn."""
    made = []
    for i in range(start, start + count):
        end = at(f"2026-11-{day + (i // 40) % 25:02d} {8 + (i % 40) // 4:02d}:{(i * 7) % 60:02d}")
        kind = i % 3
        if kind == 0:
            made.append(
                record(
                    f"{account_id};d{i};1",
                    account_id,
                    end,
                    used=(i + 1) * MIB,
                    charged=10_000 * (i % 7 + 1),
                )
            )
        elif kind == 1:
            made.append(
                record(
                    f"{account_id};v{i};1",
                    account_id,
                    end,
                    service="voice",
                    used=60 + i,
                    charged=90_000 + i,
                    destination="mobile",
                )
            )
        else:
            made.append(
                record(
                    f"{account_id};s{i};1",
                    account_id,
                    end,
                    service="sms",
                    used=1,
                    charged=90_000,
                    destination="international",
                    zone="eu",
                )
            )
    identity = f"msisdn:4917012345{sum(account_id.encode()) % 100:02d}"
    return [{**r, "identities": [identity]} for r in made]


def single(
    tmp_path: Path,
    *,
    contact: Contact = ERIKA,
    records: int = 12,
    itemisation: str = "detailed",
    **options,
) -> Billed:
    alice = account("erika", contact=contact, itemisation=itemisation)
    return bill(tmp_path, [alice], usage("erika", records), **options)


def business(tmp_path: Path, *, per_line: int = 60, **options) -> Billed:
    """A company with 3 child lines (each on the company's invoice, its own section),
    ``per_line`` records each: itemised pages span several pages."""
    corp = account(
        "acme",
        contact=Contact(
            name="ACME Industries Ltd", address="1 Long Lane\nLondon EC1A 1AA", locale="en_GB"
        ),
    )
    lines = [
        account(
            f"acme-{n}",
            parent="acme",
            contact=Contact(name=f"Line user {n}"),
            subscriptions=(f"msisdn:4917000000{n}",),
        )
        for n in (1, 2, 3)
    ]
    records = [r for line in lines for r in usage(line.id, per_line)]
    return bill(tmp_path, [corp, *lines], records, **options)
