"""Rated records summed into the usage lines of an invoice.

A usage line is one (account, plan, service, category, tax rate) of one invoice, with
the units used (``quantity``), the money charged (the exact sum of the records'
``charged``, micro-units) and the ids of every record it sums. The category says where
and when: the roaming zone (``roaming-eu``; nothing at home), the destination class
(``national``, ``mobile``, ``international``) and the time band, joined by ``/``
(``roaming-eu/weekday``, ``national/weekend``). Zero-rated usage and refunds get lines
of their own (a refund's quantity is the units given back; its amount is negative).
Units taken from allowances are summed per bucket into allowance lines, which are shown
and never charged.

The tax rate of a record is the rate of its plan's tax category on the local day its
usage ended, so a rate that changes within the period splits the line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ocs.billing.periods import local_day
from quota_engine.catalog import Catalog

__all__ = [
    "AllowanceKey",
    "BillingError",
    "MAX_RECORD_ID",
    "TaxPoint",
    "UnbillableRecord",
    "UsageGroup",
    "UsageKey",
    "UsageLedger",
    "category_of",
]

MAX_RECORD_ID = 512
"""Longest record id an invoice line can hold (``invoice_item_records.record_id``)."""

_SLOT = 900
"""Seconds of one memo slot of local days: every real UTC offset is a multiple of 15 min."""


class BillingError(Exception):
    """An invoice that cannot be made as the catalog and accounts stand (no tax rate for
    a category on a day, an unknown plan): the account is reported and skipped."""


class UnbillableRecord(BillingError):
    """One record no invoice line can hold (an id longer than :data:`MAX_RECORD_ID`):
    the record is reported and left out, its account billed without it."""


@dataclass(frozen=True, slots=True)
class TaxPoint:
    """A tax category and the rate (ppm) that applies; ``rate_ppm`` None: not taxed
    (a tax-exempt invoice)."""

    category: str
    rate_ppm: int | None


@dataclass(frozen=True, slots=True, order=True)
class UsageKey:
    account: str
    plan: str
    service: str
    unit: str
    category: str
    zero_rated: bool
    refund: bool
    late: bool
    tax: TaxPoint = field(compare=False)
    tax_order: tuple[str, int] = ("", -1)


@dataclass(frozen=True, slots=True, order=True)
class AllowanceKey:
    account: str
    bucket: str
    service: str
    unit: str


@dataclass(slots=True)
class UsageGroup:
    """What one usage line sums."""

    quantity: int = 0
    charged: int = 0
    records: list[str] = field(default_factory=list)


def category_of(record: Mapping[str, Any]) -> str:
    """The usage category of a record: roaming zone, destination, time band."""
    parts = []
    zone = record.get("zone")
    if zone and zone != "home":
        parts.append(f"roaming-{zone}")
    for name in ("destination", "band"):
        value = record.get(name)
        if value:
            parts.append(str(value))
    return "/".join(parts)


def _plan_of(record: Mapping[str, Any]) -> str | None:
    tariff = record.get("tariff")
    if isinstance(tariff, Mapping) and tariff.get("plan"):
        return str(tariff["plan"])
    price = record.get("price")
    if isinstance(price, str) and ":" in price:
        return price.split(":", 1)[0]
    return None


class UsageLedger:
    """The usage of the accounts of one bill run, summed as records are added.

    ``tax_exempt`` lists the accounts whose lines carry no tax rate (the members of a
    tax-exempt invoice account). Records are summed by :meth:`add`; the caller decides
    which records belong (period, already billed) before adding them.
    """

    def __init__(self, catalog: Catalog, timezone: str, tax_exempt: Iterable[str] = ()) -> None:
        self.catalog = catalog
        self.timezone = timezone
        self.tax_exempt = frozenset(tax_exempt)
        self.groups: dict[str, dict[UsageKey, UsageGroup]] = {}
        self.allowances: dict[str, dict[AllowanceKey, int]] = {}
        self._days: dict[int, date] = {}
        self._taxes: dict[tuple[str, date], TaxPoint] = {}
        self._plan_tax: dict[str, str] = {p.id: p.tax_category for p in catalog.plans}
        # memos of add(), which runs once per record: a plain tuple of the compared
        # fields of a UsageKey finds its group without building and hashing the key
        self._index: dict[tuple[Any, ...], UsageGroup] = {}
        self._points: dict[tuple[str, int, bool], tuple[TaxPoint, tuple[str, int]]] = {}
        self._categories: dict[tuple[Any, Any, Any], str] = {}

    def day(self, at: int) -> date:
        slot = at // _SLOT
        day = self._days.get(slot)
        if day is None:
            day = self._days[slot] = local_day(slot * _SLOT, self.timezone)
        return day

    def tax_point(self, plan: str, at: int, exempt: bool) -> TaxPoint:
        """The tax category of ``plan`` and its rate on the local day of ``at``."""
        category = self._plan_tax.get(plan)
        if category is None:
            raise BillingError(f"plan {plan!r} is not in catalog {self.catalog.version}")
        if exempt:
            return TaxPoint(category, None)
        day = self.day(at)
        point = self._taxes.get((category, day))
        if point is None:
            rate = self.catalog.tax_rate(category, day)
            if rate is None:
                raise BillingError(
                    f"catalog {self.catalog.version} has no tax rate for category "
                    f"{category!r} on {day.isoformat()}"
                )
            point = self._taxes[category, day] = TaxPoint(category, rate.rate_ppm)
        return point

    def add(self, record: Mapping[str, Any], account_plan: str, *, late: bool = False) -> None:
        """Sum one record of its account. ``account_plan`` is the account's plan when the
        record's usage ended, for a record that names none (zero-rated records do)."""
        get = record.get
        account = record["account"]
        if len(record["id"]) > MAX_RECORD_ID:
            raise UnbillableRecord(
                f"record {record['id'][:60]}...: its id is longer than {MAX_RECORD_ID} "
                "characters (a Session-Id that long): not billable, see ocs bill-audit"
            )
        end = record["end"]
        plan = _plan_of(record) or account_plan
        unit = get("unit") or ""
        used = get("used") or {}
        quantity = used.get(unit, 0) if unit else sum(used.values())
        charged = get("charged") or 0
        refund = get("cause") == "refund" or charged < 0
        service = get("service") or ""
        zero_rated = bool(get("zero_rated"))
        exempt = account in self.tax_exempt
        # the tax point depends on the local day only, so on the 15-minute slot of end
        memo = (plan, end // _SLOT, exempt)
        point = self._points.get(memo)
        if point is None:
            tax = self.tax_point(plan, end, exempt)
            point = (tax, (tax.category, -1 if tax.rate_ppm is None else tax.rate_ppm))
            self._points[memo] = point
        tax, tax_order = point
        category = self._category(record)
        compared = (account, plan, service, unit, category, zero_rated, refund, late, tax_order)
        group = self._index.get(compared)
        if group is None:
            key = UsageKey(
                account=account,
                plan=plan,
                service=service,
                unit=unit,
                category=category,
                zero_rated=zero_rated,
                refund=refund,
                late=late,
                tax=tax,
                tax_order=tax_order,
            )
            groups = self.groups.setdefault(account, {})
            group = groups.get(key)
            if group is None:
                group = groups[key] = UsageGroup()
            self._index[compared] = group
        group.quantity += abs(quantity)
        group.charged += charged
        group.records.append(record["id"])
        allowances = get("allowances")
        if allowances:
            taken = self.allowances.setdefault(account, {})
            for bucket, units in allowances.items():
                allowance = AllowanceKey(account, str(bucket), service, unit)
                taken[allowance] = taken.get(allowance, 0) + units

    def _category(self, record: Mapping[str, Any]) -> str:
        """:func:`category_of`, memoised on the three fields it reads."""
        where = (record.get("zone"), record.get("destination"), record.get("band"))
        try:
            category = self._categories.get(where)
        except TypeError:  # a field of a malformed record that cannot be hashed
            return category_of(record)
        if category is None:
            category = self._categories[where] = category_of(record)
        return category

    def records(self, account: str) -> int:
        """How many records of ``account`` were summed."""
        return sum(len(g.records) for g in self.groups.get(account, {}).values())
