"""The catalog parser: a catalog document (a mapping read from TOML, JSON or YAML) in,
an immutable :class:`~quota_engine.catalog.model.Catalog` out.

:func:`load_catalog` validates the document WHOLE and either returns the catalog or
raises :class:`~quota_engine.catalog.model.CatalogError` listing every problem, each
prefixed with the path of the value at fault
(``plans[2].tariffs[0].next_increment: must be a positive integer``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from quota_engine.catalog.model import (
    DISCOUNT_KINDS,
    DISCOUNT_SCOPES,
    HOME_ZONE,
    MAX_AMOUNT,
    MAX_INCREMENT_COST,
    MAX_UINT32,
    MISSING_DESTINATION,
    UNITS,
    Allowance,
    Catalog,
    CatalogError,
    DestinationTable,
    Discount,
    Plan,
    Rate,
    Reseller,
    Service,
    Tariff,
    TaxRate,
    Tier,
    WholesalePrice,
    Zone,
)
from quota_engine.catalog.timebands import (
    DAY_NAMES,
    BandWindow,
    TimeBand,
    first_week_gap,
    format_minutes,
    parse_hhmm,
)
from quota_engine.documents import MISSING, DocumentChecker, DocumentError, quoted, read_document
from quota_engine.money import round_up
from quota_engine.number_formats import check_format

__all__ = ["DEMO_CATALOG_PATH", "catalog_from_file", "load_catalog", "load_demo_catalog"]

_CURRENCY = re.compile(r"[A-Z]{3}")
_MCC_MNC = re.compile(r"[0-9]{5,6}")
_ZONE_PATTERN = re.compile(r"[0-9]{5,6}|[0-9]{0,5}\*")
_PREFIX = re.compile(r"[0-9]{1,15}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NAME_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""An account id or a billing entity: what the account store and ``number_sequences``
hold."""
_NAME_ID_TEXT = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
MAX_ADDRESS_LINES = 6

_TOP_KEYS = {
    "version",
    "currency",
    "minor_digits",
    "timezone",
    "holidays",
    "home_mcc_mnc",
    "services",
    "time_bands",
    "zones",
    "destinations",
    "plans",
    "taxes",
    "discounts",
    "resellers",
}

MAX_PPM = 1_000_000
"""``rate_ppm`` is in parts per million: 1_000_000 is 100 %."""


class _Parser(DocumentChecker):
    """Checks a catalog document whole and builds the :class:`Catalog` when it is good."""

    ROOT = "catalog"

    def positive(self, value: Any, path: str, high: int = MAX_AMOUNT) -> int | None:
        return self.integer(value, path, 1, high, f"a positive integer (at most {high})")

    def non_negative(self, value: Any, path: str, high: int = MAX_AMOUNT) -> int | None:
        return self.integer(value, path, 0, high, f"a non-negative integer (at most {high})")

    def unique_id(self, item: Mapping[str, Any], path: str, seen: dict[str, str]) -> str | None:
        ident = self.string(item.get("id", MISSING), f"{path}.id")
        if ident is None:
            return None
        if ident in seen:
            self.problem(f"{path}.id", f"duplicate id {quoted(ident)} (also {seen[ident]})")
            return None
        seen[ident] = path
        return ident

    # -- sections

    def parse(self, data: Any) -> Catalog | None:
        top = self.table(data, self.ROOT, _TOP_KEYS)
        if top is None:
            return None
        version = self.string(top.get("version", MISSING), "version")
        currency = top.get("currency", MISSING)
        if currency is MISSING:
            self.problem("currency", "is required")
        elif not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
            self.problem("currency", "must be an ISO 4217 code (three capital letters)")
        minor = top.get("minor_digits", 2)
        minor = self.integer(minor, "minor_digits", 0, 6, "an integer from 0 to 6")
        timezone = self.timezone(top.get("timezone", "UTC"))
        holidays = self.holidays(top)
        home = self.home(top)
        services = self.services(top)
        bands = self.time_bands(top)
        zones = self.zones(top, set(home))
        tables = self.destinations(top)
        refs = _Refs(services, {b.id: b for b in bands}, {z.id for z in zones}, tables)
        taxes, categories = self.taxes(top)
        plans = self.plans(top, refs, categories)
        discounts = self.discounts(top, services, {p.id for p in plans})
        resellers = self.resellers(top, services, categories)
        # a None from a typed getter always comes with a problem
        if self.problems or version is None or minor is None:
            return None
        return Catalog(
            version=version,
            currency=currency,
            minor_digits=minor,
            timezone=timezone,
            holidays=frozenset(holidays),
            home_mcc_mnc=tuple(home),
            services=tuple(services.values()),
            time_bands=tuple(bands),
            zones=tuple(zones),
            destinations=tuple(tables.values()),
            plans=tuple(plans),
            taxes=tuple(taxes),
            discounts=tuple(discounts),
            resellers=tuple(resellers),
        )

    def timezone(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            self.problem("timezone", 'must be an IANA time zone name such as "Europe/Berlin"')
            return "UTC"
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            self.problem("timezone", f"unknown time zone {quoted(value)}")
            return "UTC"
        return value

    def holidays(self, top: Mapping[str, Any]) -> list[date]:
        raw = top.get("holidays", [])
        values = self.list_(raw, "holidays") or []
        seen: dict[date, int] = {}
        for i, value in enumerate(values):
            path = f"holidays[{i}]"
            day = self.day(value, path)
            if day is None:
                continue
            if day in seen:
                self.problem(path, f"duplicate date {day} (also holidays[{seen[day]}])")
                continue
            seen[day] = i
        return list(seen)

    def day(self, value: Any, path: str) -> date | None:
        """A local date: ``"YYYY-MM-DD"`` or a TOML date (not a date-time)."""
        if type(value) is date:  # TOML has a native date type
            return value
        if isinstance(value, str) and _DATE.fullmatch(value):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        self.problem(path, 'must be a date "YYYY-MM-DD"')
        return None

    def validity(self, item: Mapping[str, Any], path: str) -> tuple[bool, date | None, date | None]:
        """``(good, valid_from, valid_to)``: optional days, ``valid_to`` (exclusive)
        after ``valid_from``."""
        days: dict[str, date | None] = {}
        good = True
        for key in ("valid_from", "valid_to"):
            raw = item.get(key)
            days[key] = None if raw is None else self.day(raw, f"{path}.{key}")
            good = good and (raw is None or days[key] is not None)
        start, end = days["valid_from"], days["valid_to"]
        if start is not None and end is not None and end <= start:
            self.problem(
                f"{path}.valid_to", f"must be after valid_from ({start}; valid_to is exclusive)"
            )
            good = False
        return good, start, end

    def home(self, top: Mapping[str, Any]) -> list[str]:
        values = self.list_(top.get("home_mcc_mnc", []), "home_mcc_mnc") or []
        found: list[str] = []
        for i, value in enumerate(values):
            path = f"home_mcc_mnc[{i}]"
            if not isinstance(value, str) or not _MCC_MNC.fullmatch(value):
                self.problem(path, "must be an MCC-MNC of 5 or 6 digits")
            elif value in found:
                self.problem(path, f"duplicate MCC-MNC {quoted(value)}")
            else:
                found.append(value)
        return found

    def services(self, top: Mapping[str, Any]) -> dict[str, Service]:
        keys = {"id", "context", "rating_groups", "service_identifiers", "unit"}
        seen: dict[str, str] = {}
        owners: dict[tuple[str, str, int], str] = {}  # (context, kind, number) -> path
        catch_all: dict[str, str] = {}
        result: dict[str, Service] = {}
        for path, item in self.tables(top.get("services"), "services", keys):
            ident = self.unique_id(item, path, seen)
            context = self.string(item.get("context", MISSING), f"{path}.context")
            numbers: dict[str, tuple[int, ...]] = {}
            for kind, label in (
                ("rating_groups", "rating group"),
                ("service_identifiers", "service identifier"),
            ):
                values = self.list_(item.get(kind, []), f"{path}.{kind}") or []
                good: list[int] = []
                for i, value in enumerate(values):
                    vpath = f"{path}.{kind}[{i}]"
                    number = self.integer(
                        value, vpath, 0, MAX_UINT32, f"an integer from 0 to {MAX_UINT32}"
                    )
                    if number is None:
                        continue
                    if number in good:
                        self.problem(vpath, f"duplicate {label} {number}")
                        continue
                    good.append(number)
                    if context is None:
                        continue
                    owner = owners.setdefault((context, kind, number), path)
                    if owner != path:
                        self.problem(
                            vpath,
                            f"{label} {number} of context {quoted(context)} is already used by {owner}",
                        )
                numbers[kind] = tuple(good)
            unit = self.choice(item.get("unit", MISSING), f"{path}.unit", UNITS, None)
            if (
                context is not None
                and not item.get("rating_groups")
                and not item.get("service_identifiers")
            ):
                if context in catch_all:
                    self.problem(
                        path,
                        f"a second catch-all service (no rating_groups or service_identifiers) "
                        f"for context {quoted(context)} (also {catch_all[context]})",
                    )
                else:
                    catch_all[context] = path
            if ident is not None and context is not None and unit is not None:
                result[ident] = Service(
                    ident, context, numbers["rating_groups"], numbers["service_identifiers"], unit
                )
            elif ident is not None:
                result[ident] = None  # type: ignore[assignment]  # known id, invalid entry
        return result

    def window(self, item: Mapping[str, Any], path: str) -> BandWindow | None:
        days: set[str] = set()
        for dpath, day in self.required_items(item.get("days", MISSING), f"{path}.days"):
            if day not in DAY_NAMES:
                self.problem(dpath, "must be one of " + ", ".join(DAY_NAMES))
            elif day in days:
                self.problem(dpath, f"duplicate day {quoted(day)}")
            else:
                days.add(day)
        start = end = None
        for key, allow_24, shown in (
            ("start", False, "00:00 to 23:59"),
            ("end", True, "00:01 to 24:00"),
        ):
            raw = item.get(key, MISSING)
            if raw is MISSING:
                self.problem(f"{path}.{key}", "is required")
                continue
            minutes = parse_hhmm(raw, allow_24=allow_24)
            if minutes is None or (key == "end" and minutes == 0):
                self.problem(f"{path}.{key}", f'must be a time "HH:MM" ({shown})')
            elif key == "start":
                start = minutes
            else:
                end = minutes
        if start is not None and end is not None and end <= start:
            self.problem(f"{path}.end", f"must be after start ({format_minutes(start)})")
            return None
        if not days or start is None or end is None:
            return None
        return BandWindow(frozenset(days), start, end)

    def time_bands(self, top: Mapping[str, Any]) -> list[TimeBand]:
        keys = {"id", "days", "start", "end", "windows"}
        seen: dict[str, str] = {}
        bands: list[TimeBand] = []
        placed: list[tuple[str, BandWindow]] = []  # (path, window) of every good window
        for path, item in self.tables(top.get("time_bands"), "time_bands", keys):
            ident = self.unique_id(item, path, seen)
            windows: list[tuple[str, BandWindow | None]] = []
            if "windows" in item:
                if any(k in item for k in ("days", "start", "end")):
                    self.problem(path, "give either windows or days/start/end, not both")
                    continue
                for wpath, witem in self.tables(
                    item.get("windows"), f"{path}.windows", {"days", "start", "end"}
                ):
                    windows.append((wpath, self.window(witem, wpath)))
                if not item["windows"]:
                    self.problem(f"{path}.windows", "must not be empty")
            else:
                windows.append((path, self.window(item, path)))
            good: list[BandWindow] = []
            for wpath, window in windows:
                if window is None:
                    continue
                clash = self.overlap(window, placed)
                if clash is not None:
                    other, day, lo, hi = clash
                    self.problem(
                        wpath,
                        f"overlaps {other} on {day} {format_minutes(lo)}-{format_minutes(hi)}",
                    )
                    continue
                placed.append((wpath, window))
                good.append(window)
            if ident is not None:
                bands.append(TimeBand(ident, tuple(good)))
        return bands

    @staticmethod
    def overlap(
        window: BandWindow, placed: list[tuple[str, BandWindow]]
    ) -> tuple[str, str, int, int] | None:
        for other_path, other in placed:
            lo, hi = max(window.start, other.start), min(window.end, other.end)
            if lo >= hi:
                continue
            for day in DAY_NAMES:
                if day in window.days and day in other.days:
                    return other_path, day, lo, hi
        return None

    def zones(self, top: Mapping[str, Any], home: set[str]) -> list[Zone]:
        keys = {"id", "mcc_mnc"}
        seen: dict[str, str] = {}
        owners: dict[str, str] = {}
        zones: list[Zone] = []
        for path, item in self.tables(top.get("zones"), "zones", keys):
            ident = self.unique_id(item, path, seen)
            if ident == HOME_ZONE:
                self.problem(
                    f"{path}.id",
                    f"{quoted(HOME_ZONE)} is reserved (list home networks in home_mcc_mnc)",
                )
                ident = None
            patterns: list[str] = []
            for ppath, value in self.required_items(
                item.get("mcc_mnc", MISSING), f"{path}.mcc_mnc"
            ):
                if not isinstance(value, str) or not _ZONE_PATTERN.fullmatch(value):
                    self.problem(
                        ppath,
                        'must be 5 or 6 digits, or digits followed by "*" '
                        '(e.g. "208*"; "*" alone matches every network)',
                    )
                elif value in owners:
                    self.problem(ppath, f"{quoted(value)} is already in {owners[value]}")
                elif value in home:
                    self.problem(ppath, f"{quoted(value)} is a home network (home_mcc_mnc)")
                else:
                    owners[value] = path
                    patterns.append(value)
            if ident is not None:
                zones.append(Zone(ident, tuple(patterns)))
        return zones

    def destinations(self, top: Mapping[str, Any]) -> dict[str, DestinationTable]:
        keys = {"id", "prefixes", "default", "missing"}
        seen: dict[str, str] = {}
        tables: dict[str, DestinationTable] = {}
        for path, item in self.tables(top.get("destinations"), "destinations", keys):
            ident = self.unique_id(item, path, seen)
            default = self.optional_string(item.get("default", MISSING), f"{path}.default")
            missing = self.choice(
                item.get("missing"), f"{path}.missing", MISSING_DESTINATION, "default"
            )
            if item.get("missing") == "default" and item.get("default") is None:
                self.problem(f"{path}.missing", '"default" needs a default class (set default)')
            prefixes: list[tuple[str, str]] = []
            raw_prefixes = item.get("prefixes", MISSING)
            if raw_prefixes is MISSING:
                self.problem(f"{path}.prefixes", "is required")
            elif not isinstance(raw_prefixes, Mapping):
                self.problem(f"{path}.prefixes", 'must be a table of "prefix" = "class"')
            elif not raw_prefixes and default is None:
                self.problem(f"{path}.prefixes", "must not be empty (or set a default)")
            else:
                for prefix, cls in raw_prefixes.items():
                    ppath = f"{path}.prefixes[{quoted(str(prefix))}]"
                    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
                        self.problem(ppath, "prefix must be 1 to 15 digits")
                    elif not isinstance(cls, str) or not cls.strip():
                        self.problem(ppath, "class must be a non-empty string")
                    else:
                        prefixes.append((prefix, cls))
            if ident is not None:
                tables[ident] = DestinationTable(ident, tuple(sorted(prefixes)), default, missing)
        return tables

    def taxes(self, top: Mapping[str, Any]) -> tuple[list[TaxRate], set[str]]:
        """The good rates, and the categories of every entry whose category is good
        (what the plans' ``tax_category`` are checked against)."""
        keys = {"category", "rate_ppm", "name", "valid_from", "valid_to"}
        categories: set[str] = set()
        placed: list[tuple[str, TaxRate]] = []  # (path, rate) of every well-formed rate
        for path, item in self.tables(top.get("taxes"), "taxes", keys):
            category = self.string(item.get("category", MISSING), f"{path}.category")
            if category is not None:
                categories.add(category)
            rate_ppm = self.integer(
                item.get("rate_ppm", MISSING),
                f"{path}.rate_ppm",
                0,
                MAX_PPM,
                f"an integer from 0 to {MAX_PPM} (parts per million: 19 % is 190000)",
            )
            name = self.optional_string(item.get("name", MISSING), f"{path}.name")
            good, start, end = self.validity(item, path)
            if category is None or rate_ppm is None or not good:
                continue
            rate = TaxRate(category, rate_ppm, start, end, name or "")
            for other_path, other in placed:
                days = _common_days(rate, other) if other.category == category else None
                if days is not None:
                    self.problem(
                        path,
                        f"overlaps {other_path}: two rates of tax category "
                        f"{quoted(category)} {days}",
                    )
                    break
            placed.append((path, rate))  # even when it clashes, so every overlap is named
        return [rate for _, rate in placed], categories

    def discounts(
        self, top: Mapping[str, Any], services: dict[str, Service], plan_ids: set[str]
    ) -> list[Discount]:
        keys = {
            "id",
            "name",
            "kind",
            "rate_ppm",
            "amount",
            "scope",
            "service",
            "plans",
            "min_lines",
            "valid_from",
            "valid_to",
        }
        seen: dict[str, str] = {}
        result: list[Discount] = []
        for path, item in self.tables(top.get("discounts"), "discounts", keys):
            ident = self.unique_id(item, path, seen)
            name = self.optional_string(item.get("name", MISSING), f"{path}.name")
            kind = self.choice(item.get("kind"), f"{path}.kind", DISCOUNT_KINDS, None)
            rate_ppm = self.kind_value(
                item,
                path,
                kind,
                "rate_ppm",
                "percent",
                lambda v, p: self.integer(
                    v,
                    p,
                    1,
                    MAX_PPM,
                    f"an integer from 1 to {MAX_PPM} (parts per million: 10 % is 100000)",
                ),
            )
            amount = self.kind_value(item, path, kind, "amount", "fixed", self.positive)
            scope = self.choice(item.get("scope"), f"{path}.scope", DISCOUNT_SCOPES, None)
            service = None
            raw_service = item.get("service")
            if scope == "service" and raw_service is None:
                self.problem(f"{path}.service", 'is required when scope is "service"')
            elif scope not in (None, "service") and raw_service is not None:
                self.problem(f"{path}.service", 'only allowed when scope is "service"')
            elif raw_service is not None:
                service = self.string(raw_service, f"{path}.service")
                if service is not None and service not in services:
                    self.problem(f"{path}.service", f"unknown service {quoted(service)}")
            plans: list[str] = []
            for ppath, value in self.items(item.get("plans"), f"{path}.plans"):
                plan_id = self.string(value, ppath)
                if plan_id is None:
                    continue
                if plan_id not in plan_ids:
                    self.problem(ppath, f"unknown plan {quoted(plan_id)}")
                elif plan_id in plans:
                    self.problem(ppath, f"duplicate plan {quoted(plan_id)}")
                else:
                    plans.append(plan_id)
            min_lines = self.non_negative(item.get("min_lines", 0), f"{path}.min_lines", MAX_UINT32)
            _, valid_from, valid_to = self.validity(item, path)
            if ident is None or kind is None or scope is None or min_lines is None:
                continue  # reported; the catalog is refused
            result.append(
                Discount(
                    id=ident,
                    name=name or ident,
                    kind=kind,
                    scope=scope,
                    rate_ppm=rate_ppm,
                    amount=amount,
                    service=service,
                    plans=tuple(plans),
                    min_lines=min_lines,
                    valid_from=valid_from,
                    valid_to=valid_to,
                )
            )
        return result

    def resellers(
        self, top: Mapping[str, Any], services: dict[str, Service], categories: set[str]
    ) -> list[Reseller]:
        keys = {
            "id",
            "name",
            "address",
            "vat_id",
            "support",
            "logo",
            "entity",
            "invoice_number_format",
            "credit_note_number_format",
            "wholesale_account",
            "bill_cycle_day",
            "tax_category",
            "wholesale",
        }
        seen: dict[str, str] = {}
        entities: dict[str, str] = {}
        accounts: dict[str, str] = {}
        result: list[Reseller] = []
        for path, item in self.tables(top.get("resellers"), "resellers", keys):
            ident = self.unique_id(item, path, seen)
            name = self.string(item.get("name", MISSING), f"{path}.name")
            address: list[str] = []
            for apath, line in self.items(item.get("address"), f"{path}.address"):
                text = self.string(line, apath)
                if text is not None:
                    address.append(text)
            if len(address) > MAX_ADDRESS_LINES:
                self.problem(f"{path}.address", f"must be at most {MAX_ADDRESS_LINES} lines")
            vat_id = self.optional_string(item.get("vat_id", MISSING), f"{path}.vat_id")
            support = self.optional_string(item.get("support", MISSING), f"{path}.support")
            logo = self.optional_string(item.get("logo", MISSING), f"{path}.logo")
            entity = self.name_id(item.get("entity", item.get("id", MISSING)), f"{path}.entity")
            if entity is not None:
                if entity in entities:
                    self.problem(
                        f"{path}.entity",
                        f"billing entity {quoted(entity)} is also {entities[entity]}'s",
                    )
                entities[entity] = path
            form = self.number_format(
                item.get("invoice_number_format", MISSING),
                f"{path}.invoice_number_format",
                entity or "E",
            )
            credit_form = None
            if item.get("credit_note_number_format") is not None:
                credit_form = self.number_format(
                    item["credit_note_number_format"],
                    f"{path}.credit_note_number_format",
                    entity or "E",
                )
            account = self.name_id(
                item.get("wholesale_account", MISSING), f"{path}.wholesale_account"
            )
            if account is not None:
                if account in accounts:
                    self.problem(
                        f"{path}.wholesale_account",
                        f"account {quoted(account)} receives {accounts[account]}'s "
                        "wholesale invoices already",
                    )
                accounts[account] = path
            cycle_day = self.integer(
                item.get("bill_cycle_day", 1),
                f"{path}.bill_cycle_day",
                1,
                28,
                "an integer from 1 to 28",
            )
            tax_category = self.string(item.get("tax_category", "standard"), f"{path}.tax_category")
            if tax_category is not None and categories and tax_category not in categories:
                self.problem(
                    f"{path}.tax_category",
                    f"tax category {quoted(tax_category)} has no rate in taxes",
                )
            prices = self.wholesale(item, path, services)
            if (
                ident is None
                or name is None
                or entity is None
                or form is None
                or account is None
                or cycle_day is None
                or tax_category is None
            ):
                continue  # reported; the catalog is refused
            result.append(
                Reseller(
                    id=ident,
                    name=name,
                    entity=entity,
                    invoice_number_format=form,
                    wholesale_account=account,
                    tax_category=tax_category,
                    wholesale=tuple(prices),
                    address=tuple(address),
                    vat_id=vat_id or "",
                    support=support or "",
                    logo=logo,
                    bill_cycle_day=cycle_day,
                    credit_note_number_format=credit_form,
                )
            )
        return result

    def wholesale(
        self, item: Mapping[str, Any], path: str, services: dict[str, Service]
    ) -> list[WholesalePrice]:
        """The reseller's wholesale price list: one entry per service and category."""
        keys = {"service", "category", "price", "per"}
        seen: dict[tuple[str, str], str] = {}
        prices: list[WholesalePrice] = []
        wanted = item.get("wholesale", MISSING)
        if wanted is MISSING or wanted is None:
            self.problem(f"{path}.wholesale", "is required (the wholesale price list)")
            return prices
        for wpath, entry in self.tables(wanted, f"{path}.wholesale", keys):
            service = self.string(entry.get("service", MISSING), f"{wpath}.service")
            if service is not None and service not in services:
                self.problem(f"{wpath}.service", f"unknown service {quoted(service)}")
                service = None
            category = entry.get("category", "")
            if not isinstance(category, str):
                self.problem(f"{wpath}.category", 'must be a string ("": every category)')
                category = None
            price = self.non_negative(entry.get("price", MISSING), f"{wpath}.price")
            per = self.positive(entry.get("per", 1), f"{wpath}.per", MAX_UINT32)
            if service is None or category is None or price is None or per is None:
                continue
            key = (service, category)
            if key in seen:
                self.problem(
                    wpath,
                    f"duplicate price of service {quoted(service)} category "
                    f"{quoted(category)} (also {seen[key]})",
                )
                continue
            seen[key] = wpath
            prices.append(WholesalePrice(service, category, price, per))
        return prices

    def name_id(self, value: Any, path: str) -> str | None:
        text = self.string(value, path)
        if text is not None and not _NAME_ID.fullmatch(text):
            self.problem(path, f"must be {_NAME_ID_TEXT}")
            return None
        return text

    def number_format(self, value: Any, path: str, entity: str) -> str | None:
        """A document number format (:func:`~quota_engine.number_formats.check_format`:
        the billing numbering's own check)."""
        form = self.string(value, path)
        if form is None:
            return None
        try:
            return check_format(form, entity)
        except ValueError as exc:
            reason = str(exc).removeprefix(f"number format {form!r}: ")
            self.problem(path, f'must be a number format such as "RES-{{seq:06d}}": {reason}')
            return None

    def kind_value(
        self,
        item: Mapping[str, Any],
        path: str,
        kind: str | None,
        key: str,
        wanted: str,
        check: Callable[[Any, str], int | None],
    ) -> int:
        """``rate_ppm`` or ``amount`` of a discount: required for the ``wanted`` kind,
        refused for the other (0 when not given or not good)."""
        raw = item.get(key)
        if kind is not None and kind != wanted:
            if raw is not None:
                self.problem(f"{path}.{key}", f"only allowed when kind is {quoted(wanted)}")
            return 0
        if raw is None and kind is None:
            return 0  # the kind is at fault (reported); a value not given says nothing
        return check(MISSING if raw is None else raw, f"{path}.{key}") or 0

    def plans(self, top: Mapping[str, Any], refs: _Refs, categories: set[str]) -> list[Plan]:
        keys = {
            "id",
            "name",
            "type",
            "recurring_fee",
            "tax_category",
            "final_unit_action",
            "redirect_address",
            "tariffs",
            "allowances",
        }
        seen: dict[str, str] = {}
        plans: list[Plan] = []
        # with any [[taxes]] at all, every plan's category needs a rate (an entry whose
        # category is good counts: a bad rate of the category is reported on its own)
        for path, item in self.tables(top.get("plans"), "plans", keys):
            ident = self.unique_id(item, path, seen)
            name = self.optional_string(item.get("name", MISSING), f"{path}.name") or ident
            kind = self.choice(item.get("type"), f"{path}.type", ("prepaid", "postpaid"), "")
            fee = self.non_negative(item.get("recurring_fee", 0), f"{path}.recurring_fee")
            tax = self.optional_string(item.get("tax_category", MISSING), f"{path}.tax_category")
            if categories and item.get("tax_category") is None and "standard" not in categories:
                self.problem(
                    f"{path}.tax_category",
                    'the default tax category "standard" has no rate in taxes '
                    "(add one or set tax_category)",
                )
            elif categories and tax is not None and tax not in categories:
                self.problem(
                    f"{path}.tax_category", f"tax category {quoted(tax)} has no rate in taxes"
                )
            action = self.choice(
                item.get("final_unit_action"),
                f"{path}.final_unit_action",
                ("terminate", "redirect"),
                "terminate",
            )
            redirect = self.optional_string(
                item.get("redirect_address", MISSING), f"{path}.redirect_address"
            )
            if action == "redirect" and redirect is None and "redirect_address" not in item:
                self.problem(
                    f"{path}.redirect_address", 'is required when final_unit_action is "redirect"'
                )
            if action == "terminate" and redirect is not None:
                self.problem(
                    f"{path}.redirect_address", 'only allowed when final_unit_action is "redirect"'
                )
            tariffs = self.tariffs(item, path, refs)
            allowances = self.allowances(item, path, refs)
            if ident is not None:
                plans.append(
                    Plan(
                        id=ident,
                        name=name or ident,
                        type=kind or None,
                        recurring_fee=fee or 0,
                        tax_category=tax or "standard",
                        final_unit_action=action,
                        redirect_address=redirect,
                        tariffs=tuple(tariffs),
                        allowances=tuple(allowances),
                    )
                )
        return plans

    def tariffs(self, plan: Mapping[str, Any], plan_path: str, refs: _Refs) -> list[Tariff]:
        keys = {"service", "zero_rated", "destinations", "rates"}
        by_service: dict[str, str] = {}
        tariffs: list[Tariff] = []
        for path, item in self.tables(plan.get("tariffs"), f"{plan_path}.tariffs", keys):
            service = self.string(item.get("service", MISSING), f"{path}.service")
            if service is not None and service not in refs.services:
                self.problem(f"{path}.service", f"unknown service {quoted(service)}")
            elif service is not None and service in by_service:
                self.problem(
                    f"{path}.service",
                    f"a second tariff for service {quoted(service)} (also {by_service[service]})",
                )
            elif service is not None:
                by_service[service] = path
            zero = self.boolean(item.get("zero_rated", MISSING), f"{path}.zero_rated", False)
            table_id = self.optional_string(
                item.get("destinations", MISSING), f"{path}.destinations"
            )
            table: DestinationTable | None = None
            if table_id is not None:
                table = refs.tables.get(table_id)
                if table is None:
                    self.problem(
                        f"{path}.destinations", f"unknown destination table {quoted(table_id)}"
                    )
            elif len(refs.tables) == 1:
                table = next(iter(refs.tables.values()))
            raw_rates = item.get("rates", MISSING)
            if zero:
                if raw_rates not in (MISSING, None, []):
                    self.problem(f"{path}.rates", "must be empty for a zero-rated tariff")
                rates: list[Rate] = []
            else:
                if raw_rates in (MISSING, None, []):
                    self.problem(f"{path}.rates", "must not be empty (or set zero_rated = true)")
                rates = self.rates(item, path, refs, table, table_id)
            if service is not None:
                tariffs.append(Tariff(service, zero, table_id, tuple(rates)))
        return tariffs

    def rates(
        self,
        tariff: Mapping[str, Any],
        tariff_path: str,
        refs: _Refs,
        table: DestinationTable | None,
        table_id: str | None,
    ) -> list[Rate]:
        keys = {
            "destination",
            "zone",
            "band",
            "rate",
            "rate_per",
            "first_increment",
            "next_increment",
            "tiers",
        }
        rates: list[tuple[str, Rate]] = []
        table_reported = False
        for path, item in self.tables(tariff.get("rates"), f"{tariff_path}.rates", keys):
            ok = True
            destination = self.optional_string(
                item.get("destination", MISSING), f"{path}.destination"
            )
            if destination is not None:
                if table is not None:
                    if destination not in table.classes:
                        self.problem(
                            f"{path}.destination",
                            f"unknown destination class {quoted(destination)} in table {quoted(table.id)}",
                        )
                        ok = False
                elif table_id is None:
                    if refs.tables:
                        if not table_reported:  # once per tariff, not once per rate
                            self.problem(
                                f"{tariff_path}.destinations",
                                "is required when a rate "
                                f"sets destination (the catalog has {len(refs.tables)} "
                                "destination tables)",
                            )
                        table_reported = True
                    else:
                        self.problem(f"{path}.destination", "the catalog has no destination tables")
                    ok = False
            zone = self.optional_string(item.get("zone", MISSING), f"{path}.zone")
            if zone is not None and zone != HOME_ZONE and zone not in refs.zones:
                self.problem(f"{path}.zone", f"unknown zone {quoted(zone)}")
                ok = False
            band = self.optional_string(item.get("band", MISSING), f"{path}.band")
            if band is not None and band not in refs.bands:
                self.problem(f"{path}.band", f"unknown time band {quoted(band)}")
                ok = False
            rate = self.non_negative(item.get("rate", MISSING), f"{path}.rate")
            rate_per = self.positive(item.get("rate_per", MISSING), f"{path}.rate_per")
            first = self.positive(item.get("first_increment", MISSING), f"{path}.first_increment")
            nxt = self.positive(item.get("next_increment", MISSING), f"{path}.next_increment")
            tiers = self.tiers(item, path)
            if rate is None or rate_per is None or first is None or nxt is None or tiers is None:
                continue
            for tpath, (r, per) in [(path, (rate, rate_per))] + [
                (f"{path}.tiers[{i}]", (t.rate, t.rate_per)) for i, t in enumerate(tiers)
            ]:
                increment = max(first, nxt)
                cost = round_up(increment * r, per)
                if cost > MAX_INCREMENT_COST:
                    self.problem(
                        tpath,
                        f"one increment of {increment} units costs {cost} "
                        f"micro-units, more than {MAX_INCREMENT_COST}",
                    )
                    ok = False
            if ok:
                rates.append(
                    (path, Rate(rate, rate_per, first, nxt, destination, zone, band, tiers))
                )
        self.ambiguous(rates)
        if refs.bands:
            self.uncovered_bands(rates, refs)
        return [rate for _, rate in rates]

    def tiers(self, rate: Mapping[str, Any], rate_path: str) -> tuple[Tier, ...] | None:
        tiers: list[Tier] = []
        ok = True
        for path, raw in self.items(rate.get("tiers"), f"{rate_path}.tiers"):
            item = self.table(raw, path, {"from_units", "rate", "rate_per"})
            if item is None:
                ok = False
                continue
            start = self.integer(
                item.get("from_units", MISSING),
                f"{path}.from_units",
                1,
                2**62,
                "a positive integer (the rate itself applies from 0)",
            )
            r = self.non_negative(item.get("rate", MISSING), f"{path}.rate")
            per = self.positive(item.get("rate_per", MISSING), f"{path}.rate_per")
            if start is None or r is None or per is None:
                ok = False
                continue
            if tiers and start <= tiers[-1].from_units:
                self.problem(
                    f"{path}.from_units",
                    f"must be greater than the previous tier's ({tiers[-1].from_units})",
                )
                ok = False
                continue
            tiers.append(Tier(start, r, per))
        return tuple(tiers) if ok else None

    def ambiguous(self, rates: list[tuple[str, Rate]]) -> None:
        for j, (path, rate) in enumerate(rates):
            for other_path, other in rates[:j]:
                if rate.specificity != other.specificity:
                    continue
                if all(
                    a is None or b is None or a == b
                    for a, b in (
                        (rate.destination, other.destination),
                        (rate.zone, other.zone),
                        (rate.band, other.band),
                    )
                ):
                    self.problem(
                        path,
                        f"ambiguous rates: {other_path.rsplit('.', 1)[-1]} "
                        "can match the same request with the same specificity",
                    )
                    break

    def uncovered_bands(self, rates: list[tuple[str, Rate]], refs: _Refs) -> None:
        gap = first_week_gap(refs.bands.values())
        if gap is None:
            return
        for path, rate in rates:
            if rate.band is None:
                continue
            fallback = any(
                other.band is None
                and other.destination in (None, rate.destination)
                and other.zone in (None, rate.zone)
                for _, other in rates
            )
            if not fallback:
                self.problem(
                    f"{path}.band",
                    f"the time bands leave {gap} uncovered and no rate "
                    "without band matches this rate's destination and zone",
                )

    def allowances(self, plan: Mapping[str, Any], plan_path: str, refs: _Refs) -> list[Allowance]:
        keys = {"id", "services", "units", "validity_days"}
        seen: dict[str, str] = {}
        result: list[Allowance] = []
        for path, item in self.tables(plan.get("allowances"), f"{plan_path}.allowances", keys):
            ident = self.unique_id(item, path, seen)
            services: list[str] = []
            for spath, value in self.required_items(
                item.get("services", MISSING), f"{path}.services"
            ):
                sid = self.string(value, spath)
                if sid is None:
                    continue
                if sid not in refs.services:
                    self.problem(spath, f"unknown service {quoted(sid)}")
                elif sid in services:
                    self.problem(spath, f"duplicate service {quoted(sid)}")
                else:
                    services.append(sid)
            units = {refs.services[s].unit for s in services}
            if len(units) > 1:
                self.problem(
                    f"{path}.services",
                    "services of different units (" + ", ".join(sorted(units)) + ")",
                )
            amount = self.positive(item.get("units", MISSING), f"{path}.units", 2**62)
            days = self.positive(item.get("validity_days", MISSING), f"{path}.validity_days", 36600)
            if ident is not None and amount is not None and days is not None:
                result.append(Allowance(ident, tuple(services), amount, days))
        return result


def _common_days(a: TaxRate, b: TaxRate) -> str | None:
    """The days two validity spans share, as a problem text shows them; None if none."""
    starts = [d for d in (a.valid_from, b.valid_from) if d is not None]
    ends = [d for d in (a.valid_to, b.valid_to) if d is not None]
    first = max(starts) if starts else None
    stop = min(ends) if ends else None
    if first is not None and stop is not None and stop <= first:
        return None
    last = None if stop is None else stop - timedelta(days=1)
    if first is not None and last is not None:
        return f"apply on the days {first} to {last}" if first != last else f"apply on {first}"
    if first is not None:
        return f"apply from {first} on"
    if last is not None:
        return f"apply up to {last}"
    return "apply on every day"


@dataclass(frozen=True, slots=True)
class _Refs:
    services: dict[str, Service]
    bands: dict[str, TimeBand]
    zones: set[str]
    tables: dict[str, DestinationTable]


def load_catalog(data: Mapping[str, Any]) -> Catalog:
    """Validate ``data`` whole and build the catalog; :class:`CatalogError` lists every problem."""
    parser = _Parser()
    catalog = parser.parse(data)
    if parser.problems or catalog is None:
        raise CatalogError(parser.problems)
    return catalog


def catalog_from_file(path: str | Path) -> Catalog:
    """Load a catalog from a ``.toml``, ``.json`` or ``.yaml``/``.yml`` file.

    Unreadable or unparsable files raise :class:`CatalogError` naming the file.
    """
    try:
        data = read_document(path)
    except DocumentError as exc:
        raise CatalogError([str(exc)]) from None
    return load_catalog(data)


DEMO_CATALOG_PATH = Path(__file__).with_name("demo_catalog.toml")
"""The demo catalog shipped as package data (what `ocs serve` uses by default)."""


def load_demo_catalog() -> Catalog:
    """The demo catalog (quota_engine/catalog/demo_catalog.toml)."""
    return catalog_from_file(DEMO_CATALOG_PATH)
