"""The catalog model: services, time bands, roaming zones, destinations, plans.

Immutable dataclasses built by :mod:`quota_engine.catalog.parser` (which validates a
catalog document whole); the format is documented in docs/catalog.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from quota_engine.catalog.timebands import (
    BandWindow,
    TimeBand,
)

__all__ = [
    "UNITS",
    "HOME_ZONE",
    "MAX_INCREMENT_COST",
    "MISSING_DESTINATION",
    "Allowance",
    "BandWindow",
    "DISCOUNT_KINDS",
    "DISCOUNT_SCOPES",
    "Catalog",
    "CatalogError",
    "Discount",
    "DestinationTable",
    "Plan",
    "Rate",
    "Reseller",
    "Service",
    "Tariff",
    "TaxRate",
    "Tier",
    "TimeBand",
    "WholesalePrice",
    "Zone",
]

UNITS = ("octets", "seconds", "events")
HOME_ZONE = "home"
"""The implicit zone of a subscriber at home (no visited network, or a home network)."""

MISSING_DESTINATION = ("default", "reject")
"""What a destination table does with a request that has no destination number
(none sent, or not a number): ``"default"`` gives it the table's ``default`` class,
``"reject"`` gives it no class (only rates without ``destination`` can price it)."""

MAX_AMOUNT = 10**12
"""Largest ``rate``, ``rate_per`` and increment accepted (keeps products far from 2**63)."""
MAX_INCREMENT_COST = 10**15
"""Largest cost of one increment in micro-units (a billion currency units)."""
MAX_UINT32 = 2**32 - 1


class CatalogError(ValueError):
    """A catalog that cannot be used; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(
            f"invalid catalog ({len(self.problems)} problem"
            f"{'s' if len(self.problems) != 1 else ''}):\n  " + "\n  ".join(self.problems)
        )


@dataclass(frozen=True, slots=True)
class Service:
    id: str
    context: str
    rating_groups: tuple[int, ...]
    service_identifiers: tuple[int, ...]
    unit: str

    @property
    def catch_all(self) -> bool:
        """True when the service matches any request of its context (no RG/SI listed)."""
        return not self.rating_groups and not self.service_identifiers


@dataclass(frozen=True, slots=True)
class Zone:
    id: str
    mcc_mnc: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DestinationTable:
    id: str
    prefixes: tuple[tuple[str, str], ...]
    """``(E.164 prefix, destination class)`` pairs, longest-prefix match."""
    default: str | None = None
    """Class of a number no prefix matches (``None``: no class)."""
    missing: str = "default"
    """What a request without a destination number gets: one of :data:`MISSING_DESTINATION`."""

    @property
    def missing_class(self) -> str | None:
        """The class of a request without a destination number (``None``: no class)."""
        return self.default if self.missing == "default" else None

    @property
    def classes(self) -> frozenset[str]:
        found = {cls for _, cls in self.prefixes}
        if self.default is not None:
            found.add(self.default)
        return frozenset(found)


@dataclass(frozen=True, slots=True)
class Tier:
    from_units: int
    rate: int
    rate_per: int


@dataclass(frozen=True, slots=True)
class Rate:
    rate: int
    rate_per: int
    first_increment: int
    next_increment: int
    destination: str | None = None
    zone: str | None = None
    band: str | None = None
    tiers: tuple[Tier, ...] = ()

    @property
    def specificity(self) -> int:
        return sum(c is not None for c in (self.destination, self.zone, self.band))


@dataclass(frozen=True, slots=True)
class Tariff:
    service: str
    zero_rated: bool = False
    destinations: str | None = None
    """Id of the destination table the rates' ``destination`` classes come from."""
    rates: tuple[Rate, ...] = ()


@dataclass(frozen=True, slots=True)
class Allowance:
    id: str
    services: tuple[str, ...]
    units: int
    validity_days: int


@dataclass(frozen=True, slots=True)
class Plan:
    id: str
    name: str
    type: str | None
    recurring_fee: int
    tax_category: str
    final_unit_action: str
    redirect_address: str | None
    tariffs: tuple[Tariff, ...]
    allowances: tuple[Allowance, ...]

    def tariff_for(self, service_id: str) -> Tariff | None:
        for tariff in self.tariffs:
            if tariff.service == service_id:
                return tariff
        return None


def _within(day: date, first: date | None, after: date | None) -> bool:
    """``day`` is in ``[first, after)`` (None: unbounded on that side)."""
    return (first is None or first <= day) and (after is None or day < after)


DISCOUNT_KINDS = ("percent", "fixed")
DISCOUNT_SCOPES = ("invoice", "plan", "service")


@dataclass(frozen=True, slots=True)
class TaxRate:
    """The rate of one tax category over a span of local days (docs/catalog.md, Taxes).

    ``valid_from`` is the first local day the rate applies (None: always before),
    ``valid_to`` the first day it no longer does (None: open); the rates of one category
    never overlap. ``rate_ppm`` is parts per million (19 % = 190000)."""

    category: str
    rate_ppm: int
    valid_from: date | None = None
    valid_to: date | None = None
    name: str = ""

    def covers(self, day: date) -> bool:
        return _within(day, self.valid_from, self.valid_to)


@dataclass(frozen=True, slots=True)
class Discount:
    """A discount or promotion applied by the bill run (docs/catalog.md, Discounts).

    ``kind`` ``percent`` takes ``rate_ppm`` of its base, ``fixed`` takes ``amount``
    micro-units (never more than the base). ``scope`` says what the base is:
    ``service`` the usage lines of ``service``, ``plan`` the recurring fee lines,
    ``invoice`` every charge line (recurring, usage, one-off charges). ``plans``: only for
    invoices whose account (or, in a hierarchy, line's account) is on one of these plans
    (empty: any plan). ``min_lines``: only when the invoice covers at least this many
    subscriptions (lines), e.g. 3 for "10 % off from 3 lines". ``valid_from`` /
    ``valid_to`` bound the bill periods it applies to by their last local day, as for
    tax rates."""

    id: str
    name: str
    kind: str
    scope: str
    rate_ppm: int = 0
    amount: int = 0
    service: str | None = None
    plans: tuple[str, ...] = ()
    min_lines: int = 0
    valid_from: date | None = None
    valid_to: date | None = None

    def covers(self, day: date) -> bool:
        return _within(day, self.valid_from, self.valid_to)


@dataclass(frozen=True, slots=True)
class WholesalePrice:
    """What the operator charges a reseller for its subscribers' usage of ``service``
    in usage ``category`` (``""``: every category of the service without an entry of
    its own): ``price`` micro-units per ``per`` units of the service (per MiB:
    ``per = 1048576`` octets; per minute: 60 seconds; per SMS: 1 event)."""

    service: str
    category: str
    price: int
    per: int = 1


@dataclass(frozen=True, slots=True)
class Reseller:
    """A reseller (wholesale) partner: it bills its own subscribers (the accounts whose
    ``reseller`` is its id) under its own billing ``entity``, numbered in its own
    sequence written with ``invoice_number_format``, with its ``name``, ``address``,
    ``vat_id``, ``support`` contact and ``logo`` (a file path) on their documents; the
    operator bills the reseller once per period, on the operator-side account
    ``wholesale_account``, for their usage priced at ``wholesale`` (docs/invoicing.md,
    "Resellers"). ``bill_cycle_day`` is the day its wholesale periods start, and
    ``tax_category`` the catalog tax category of the wholesale lines."""

    id: str
    name: str
    entity: str
    invoice_number_format: str
    wholesale_account: str
    tax_category: str
    wholesale: tuple[WholesalePrice, ...]
    address: tuple[str, ...] = ()
    vat_id: str = ""
    support: str = ""
    logo: str | None = None
    bill_cycle_day: int = 1
    credit_note_number_format: str | None = None
    """How its credit notes are numbered (its own ``credit_note`` sequence); None: the
    operator's ``billing.credit_note_number_format``."""

    def price_for(self, service: str, category: str) -> WholesalePrice | None:
        """The wholesale price of ``service`` usage in ``category``: the entry of the
        longest leading part of the category (``roaming-eu/weekday``, then
        ``roaming-eu``), else the service's entry for every category (``""``); None
        when the list does not price it."""
        entries = {p.category: p for p in self.wholesale if p.service == service}
        parts = category.split("/") if category else []
        for length in range(len(parts), -1, -1):
            found = entries.get("/".join(parts[:length]))
            if found is not None:
                return found
        return None


@dataclass(frozen=True)
class Catalog:
    version: str
    currency: str
    minor_digits: int
    timezone: str
    holidays: frozenset[date]
    home_mcc_mnc: tuple[str, ...]
    services: tuple[Service, ...]
    time_bands: tuple[TimeBand, ...]
    zones: tuple[Zone, ...]
    destinations: tuple[DestinationTable, ...]
    plans: tuple[Plan, ...]
    taxes: tuple[TaxRate, ...] = ()
    discounts: tuple[Discount, ...] = ()
    resellers: tuple[Reseller, ...] = ()
    _services_by_id: dict[str, Service] = field(init=False, repr=False, compare=False)
    _by_rating_group: dict[tuple[str, int], Service] = field(init=False, repr=False, compare=False)
    _by_service_id: dict[tuple[str, int], Service] = field(init=False, repr=False, compare=False)
    _catch_all: dict[str, Service] = field(init=False, repr=False, compare=False)
    _plans_by_id: dict[str, Plan] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_rg: dict[tuple[str, int], Service] = {}
        by_si: dict[tuple[str, int], Service] = {}
        catch_all: dict[str, Service] = {}
        for s in self.services:
            for rg in s.rating_groups:
                by_rg[s.context, rg] = s
            for si in s.service_identifiers:
                by_si[s.context, si] = s
            if s.catch_all:
                catch_all[s.context] = s
        init = object.__setattr__
        init(self, "_services_by_id", {s.id: s for s in self.services})
        init(self, "_by_rating_group", by_rg)
        init(self, "_by_service_id", by_si)
        init(self, "_catch_all", catch_all)
        init(self, "_plans_by_id", {p.id: p for p in self.plans})

    def find_service(
        self, context: str, rating_group: int | None = None, service_identifier: int | None = None
    ) -> Service | None:
        """The service a request is for: exact Rating-Group match first, then
        Service-Identifier, then the context's catch-all service; ``None`` if none."""
        if rating_group is not None:
            found = self._by_rating_group.get((context, rating_group))
            if found is not None:
                return found
        if service_identifier is not None:
            found = self._by_service_id.get((context, service_identifier))
            if found is not None:
                return found
        return self._catch_all.get(context)

    def service(self, service_id: str) -> Service | None:
        return self._services_by_id.get(service_id)

    def plan(self, plan_id: str) -> Plan | None:
        return self._plans_by_id.get(plan_id)

    def reseller(self, reseller_id: str) -> Reseller | None:
        for reseller in self.resellers:
            if reseller.id == reseller_id:
                return reseller
        return None

    def reseller_of_entity(self, entity: str) -> Reseller | None:
        """The reseller whose billing entity is ``entity`` (None: the operator's)."""
        for reseller in self.resellers:
            if reseller.entity == entity:
                return reseller
        return None

    def tax_rate(self, category: str, day: date) -> TaxRate | None:
        """The rate of tax ``category`` on local ``day`` (None: the catalog has none)."""
        for rate in self.taxes:
            if rate.category == category and rate.covers(day):
                return rate
        return None

    def destination_table(self, table_id: str) -> DestinationTable | None:
        for table in self.destinations:
            if table.id == table_id:
                return table
        return None

    def table_for(self, tariff: Tariff) -> DestinationTable | None:
        """The destination table a tariff's rates use: its own, else the only one."""
        if tariff.destinations is not None:
            return self.destination_table(tariff.destinations)
        if len(self.destinations) == 1:
            return self.destinations[0]
        return None
