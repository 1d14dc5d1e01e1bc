"""Inputs of bill runs under test: billing accounts, rated records in segment files as
the exporter leaves them, and a catalog with taxes and discounts set by the test."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgpack

from ocs.billing.accounts import BillingAccount
from ocs.records import SegmentSettings, SegmentWriter
from quota_engine.catalog.model import Catalog, Discount, TaxRate
from quota_engine.catalog.parser import load_demo_catalog

BERLIN = ZoneInfo("Europe/Berlin")
_entries = itertools.count(1)


def at(text: str) -> int:
    """Unix seconds of a local Berlin time, ``"2026-11-03 10:00"``."""
    return int(datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp())


def catalog(
    *, taxes: Iterable[TaxRate] | None = None, discounts: Iterable[Discount] = ()
) -> Catalog:
    """The demo catalog (Europe/Berlin, EUR, postpaid-standard at 20 EUR a month) with
    these taxes (default: standard 19 %) and discounts."""
    rates = (
        (TaxRate("standard", 190_000, date(2021, 1, 1), None, "VAT 19 %"),)
        if taxes is None
        else tuple(taxes)
    )
    return dataclasses.replace(load_demo_catalog(), taxes=rates, discounts=tuple(discounts))


def account(account_id: str, **fields: Any) -> BillingAccount:
    values: dict[str, Any] = {
        "id": account_id,
        "kind": "postpaid",
        "currency": "EUR",
        "plan": "postpaid-standard",
        "subscriptions": (f"msisdn:49170{abs(hash(account_id)) % 10**7:07d}",),
        "partition": sum(account_id.encode()) % 16,
    }
    values.update(fields)
    return BillingAccount(**values)


def record(
    record_id: str,
    account_id: str,
    end: int,
    *,
    service: str = "data",
    unit: str | None = None,
    used: int = 1_048_576,
    charged: int = 500_000,
    plan: str = "postpaid-standard",
    zone: str | None = "home",
    destination: str | None = None,
    band: str | None = "weekday",
    allowances: Mapping[str, int] | None = None,
    cause: str = "normal",
    zero_rated: bool = False,
) -> dict[str, Any]:
    unit = unit or {"data": "octets", "voice": "seconds", "sms": "events"}.get(service, "octets")
    return {
        "id": record_id,
        "account": account_id,
        "identities": [],
        "session": record_id.rsplit(";", 2)[0],
        "request": 1,
        "service": service,
        "unit": unit,
        "start": end - 60,
        "end": end,
        "used": {unit: used},
        "charged": charged,
        "allowances": dict(allowances or {}),
        "money": {"main": charged} if charged else {},
        "price": f"{plan}:{service}:0:0:-1" if not zero_rated else f"{plan}:{service}:0:-1:-1",
        "tariff": None if zero_rated else {"plan": plan, "service": service},
        "catalog": "demo-1",
        "zone": zone,
        "destination": destination,
        "band": band,
        "zero_rated": zero_rated,
        "cause": cause,
        "currency": "EUR",
    }


def write_records(
    directory: Path, records: Iterable[Mapping[str, Any]], accounts: Iterable[BillingAccount]
) -> None:
    """Write ``records`` into sealed segments of their accounts' partitions."""
    partition = {a.id: a.partition for a in accounts}
    writers: dict[int, SegmentWriter] = {}
    settings = SegmentSettings(max_bytes=64 * 2**20, max_age=3600.0)
    for item in records:
        p = partition[item["account"]]
        writer = writers.get(p)
        if writer is None:
            writer = writers[p] = SegmentWriter(directory, partition=p, settings=settings)
        writer.append(f"{1_764_547_200_000 + next(_entries)}-0", msgpack.packb(dict(item)))
    for writer in writers.values():
        writer.close()
