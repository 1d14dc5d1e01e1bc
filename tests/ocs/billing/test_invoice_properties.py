"""Property test of the bill run: random accounts, records and catalogs, billed on
SQLite (a fresh database per example), and what the audit of issue 11 proves.

The expectations are computed here, independently of ``ocs/billing``: who is on whose
invoice (the parent chain), the bill periods (local midnights of the cycle day), the
tax rate of a day, and the rounding half away from zero to the cent. Two months are
billed, November then December 2026, with records ending from August 2026 (some before
every late window) to January 2027 (after both periods).
"""

from __future__ import annotations

import calendar
import dataclasses
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from ocs.billing.accounts import Adjustment, BillingAccount, PlanChange
from ocs.billing.audit import audit_period
from ocs.billing.bill_run import BillRunOptions, run_bill_run
from ocs.billing.database import migrate, open_database
from ocs.billing.schema import invoice_item_records, invoice_items, invoices
from quota_engine.catalog.model import Catalog, Discount, TaxRate
from tests.ocs.billing.factory import account, catalog, record, write_records

BERLIN = ZoneInfo("Europe/Berlin")
DAY = 86_400
LATE_WINDOW = 62 * DAY
CENT = 10_000
POSTPAID_PLANS = ("postpaid-standard", "business", "traveller")
CATEGORIES = ("standard", "reduced")
SERVICES = ("data", "voice", "sms", "portal")
FIRST = int(datetime(2026, 8, 1, tzinfo=BERLIN).timestamp())
LAST = int(datetime(2027, 1, 25, tzinfo=BERLIN).timestamp())


def midnight(day: date) -> int:
    return int(datetime.combine(day, time(0), BERLIN).timestamp())


def period(month: tuple[int, int], cycle_day: int) -> tuple[int, int]:
    """[start, end) of the period of ``cycle_day`` starting in ``month``."""

    def start(year: int, number: int) -> int:
        return midnight(date(year, number, min(cycle_day, calendar.monthrange(year, number)[1])))

    year, number = month
    after = (year + 1, 1) if number == 12 else (year, number + 1)
    return start(year, number), start(*after)


NOVEMBER, DECEMBER = (2026, 11), (2026, 12)


def local_day(at: int) -> date:
    return datetime.fromtimestamp(at, BERLIN).date()


def round_cent(numerator: int, denominator: int = 1) -> int:
    """numerator / denominator micro-units rounded half away from zero to the cent."""
    exact = Fraction(numerator, denominator) / CENT
    cents = int(abs(exact) + Fraction(1, 2))
    return (cents if exact >= 0 else -cents) * CENT


# -- strategies

instants = st.integers(FIRST, LAST)


@st.composite
def tax_rates(draw: st.DrawFn, category: str) -> list[TaxRate]:
    rates = st.sampled_from([0, 70_000, 77_777, 190_000, 200_000])
    first = draw(rates)
    if not draw(st.booleans()):
        return [TaxRate(category, first, None, None, f"{category} a")]
    split = date(2026, 10, 15) + timedelta(days=draw(st.integers(0, 80)))
    second = draw(rates.filter(lambda r: r != first))
    return [
        TaxRate(category, first, None, split, f"{category} a"),
        TaxRate(category, second, split, None, f"{category} b"),
    ]


@st.composite
def discounts(draw: st.DrawFn, number: int) -> Discount:
    kind = draw(st.sampled_from(["percent", "fixed"]))
    scope = draw(st.sampled_from(["invoice", "plan", "service"]))
    valid_from = draw(st.sampled_from([None, date(2026, 12, 1), date(2027, 1, 1)]))
    return Discount(
        id=f"d{number}",
        name=f"Discount {number}",
        kind=kind,
        scope=scope,
        rate_ppm=draw(st.integers(1, 500_000)) if kind == "percent" else 0,
        amount=draw(st.integers(1, 30_000_000)) if kind == "fixed" else 0,
        service=draw(st.sampled_from(["data", "voice", "sms"])) if scope == "service" else None,
        plans=tuple(draw(st.lists(st.sampled_from(POSTPAID_PLANS), max_size=2, unique=True))),
        min_lines=draw(st.integers(0, 3)),
        valid_from=valid_from,
    )


@st.composite
def catalogs(draw: st.DrawFn) -> Catalog:
    taxes = draw(tax_rates("standard")) + draw(tax_rates("reduced"))
    base = catalog(
        taxes=taxes,
        discounts=[draw(discounts(n)) for n in range(draw(st.integers(0, 3)))],
    )
    standard = base.plan("postpaid-standard")
    assert standard is not None
    extra = (
        dataclasses.replace(
            standard,
            id="business",
            name="Business",
            recurring_fee=draw(st.integers(1, 99_999_999)),
            tax_category="reduced",
        ),
        dataclasses.replace(
            standard,
            id="traveller",
            name="Traveller",
            recurring_fee=draw(st.integers(1, 99_999_999)),
            tax_category=draw(st.sampled_from(CATEGORIES)),
        ),
    )
    return dataclasses.replace(base, plans=base.plans + extra)


@st.composite
def accounts(draw: st.DrawFn) -> list[BillingAccount]:
    made: list[BillingAccount] = []
    for n in range(draw(st.integers(1, 6))):
        account_id = f"acct{n}"
        postpaid = draw(st.integers(0, 4)) > 0
        fields: dict[str, Any] = {
            "kind": "postpaid" if postpaid else "prepaid",
            "bill_cycle_day": draw(st.sampled_from([1, 15, 31])),
            "tax_exempt": draw(st.integers(0, 3)) == 0,
            "bill_separately": draw(st.integers(0, 3)) == 0,
            "subscriptions": tuple(f"msisdn:{n}{k}" for k in range(draw(st.integers(0, 2)))),
        }
        if made and draw(st.booleans()):
            fields["parent"] = draw(st.sampled_from([a.id for a in made]))
        if draw(st.booleans()):
            fields["created"] = draw(st.integers(FIRST + 60 * DAY, LAST - 30 * DAY))
        if postpaid:
            plans = [draw(st.sampled_from(POSTPAID_PLANS))]
            changes = []
            for at in sorted(draw(st.lists(st.integers(FIRST + 75 * DAY, LAST), max_size=2))):
                plans.append(draw(st.sampled_from(POSTPAID_PLANS)))
                changes.append(PlanChange(at, plans[-2], plans[-1]))
            fields["plan"], fields["plan_changes"] = plans[-1], tuple(changes)
            fields["adjustments"] = tuple(
                Adjustment(f"{account_id}-h{k}", draw(instants), amount, "main", "")
                for k, amount in enumerate(
                    draw(st.lists(st.integers(-9_999_999, 9_999_999), max_size=2))
                )
            )
        else:
            fields["plan"] = "prepaid-basic"
        made.append(account(account_id, **fields))
    return made


@st.composite
def records_of(draw: st.DrawFn, owners: list[BillingAccount]) -> list[dict[str, Any]]:
    made = []
    for owner in owners:
        for k in range(draw(st.integers(0, 6))):
            end = draw(instants)
            service = draw(st.sampled_from(SERVICES))
            zero_rated = service == "portal"
            charged = 0 if zero_rated else draw(st.integers(-2_000_000, 5_000_000))
            allowances = {}
            if service == "data" and draw(st.booleans()):
                allowances = {"data-1gb": draw(st.integers(1, 10**9))}
                charged = max(charged, 0) if draw(st.booleans()) else 0
            made.append(
                record(
                    f"{owner.id}-s{k};{k % 3};{draw(st.sampled_from([10, 100, 200]))}",
                    owner.id,
                    end,
                    service=service,
                    used=draw(st.integers(0, 10**8)),
                    charged=charged,
                    plan=owner.plan_at(end),
                    zone=draw(st.sampled_from(["home", "eu", "world", None])),
                    destination=draw(
                        st.sampled_from([None, "national", "mobile", "international"])
                    ),
                    band=draw(st.sampled_from(["weekday", "weekend", None])),
                    allowances=allowances,
                    cause="refund" if charged < 0 else "normal",
                    zero_rated=zero_rated,
                )
            )
    return made


# -- the expectations, computed here


def invoice_owner(by_id: dict[str, BillingAccount], account_id: str) -> str:
    current = by_id[account_id]
    while True:
        parent = by_id.get(current.parent) if current.parent else None
        if current.bill_separately or parent is None or parent.kind != "postpaid":
            return current.id
        current = parent


def rate_on(cat: Catalog, category: str, day: date) -> int:
    found = [
        t.rate_ppm
        for t in cat.taxes
        if t.category == category
        and (t.valid_from is None or t.valid_from <= day)
        and (t.valid_to is None or day < t.valid_to)
    ]
    assert len(found) == 1
    return found[0]


def tax_category(cat: Catalog, plan: str) -> str:
    return next(p.tax_category for p in cat.plans if p.id == plan)


# -- reading what the bill run wrote


def snapshot(engine: Engine) -> dict[str, Any]:
    """Every live invoice with its lines (all columns but the database's ids) and links."""
    with engine.connect() as connection:
        rows = connection.execute(select(invoices).where(invoices.c.state != "void")).all()
        items = connection.execute(select(invoice_items).order_by(invoice_items.c.position)).all()
        links = connection.execute(
            select(invoice_item_records).where(~invoice_item_records.c.released)
        ).all()
    by_item: dict[int, list[str]] = {}
    for link in links:
        by_item.setdefault(link.item_id, []).append(link.record_id)
    found: dict[str, Any] = {}
    for row in rows:
        lines = []
        for item in items:
            if item.invoice_id != row.id:
                continue
            line = item._asdict()
            del line["id"], line["parent_item_id"]
            line["records"] = sorted(by_item.get(item.id, []))
            lines.append(line)
        found[row.id] = {"invoice": row, "lines": lines}
    return found


def lines_only(found: dict[str, Any]) -> dict[str, Any]:
    return {
        invoice_id: (
            [line for line in value["lines"]],
            value["invoice"].subtotal_minor,
            value["invoice"].tax_minor,
            value["invoice"].total_minor,
        )
        for invoice_id, value in found.items()
    }


def check(
    found: dict[str, Any],
    cat: Catalog,
    people: list[BillingAccount],
    records: list[dict[str, Any]],
    months: list[tuple[int, int]],
) -> None:
    """The audit of issue 11 over the live invoices ``found``, after bill runs of
    ``months`` in that order."""
    by_id = {a.id: a for a in people}
    by_record = {r["id"]: r for r in records}
    adjustments = {f"adjustment:{a.id}": (m, a) for m in people for a in m.adjustments}

    # which documents (records, adjustments) must be billed, on whose invoice of which period
    expected: dict[str, tuple[str, int]] = {}
    owners = {a.id: invoice_owner(by_id, a.id) for a in people if a.kind == "postpaid"}
    events: list[tuple[str, str, int]] = [(r["id"], r["account"], r["end"]) for r in records]
    events += [(key, m.id, a.at) for key, (m, a) in adjustments.items()]
    for key, account_id, moment in events:
        owner = owners.get(account_id)
        if owner is None:
            continue  # prepaid
        # each run (in the order given) takes what its window holds and no run took
        for month in months:
            start, end = period(month, by_id[owner].bill_cycle_day)
            if start - LATE_WINDOW <= moment < end:
                expected[key] = (owner, start)
                break

    linked: Counter[str] = Counter()
    where: dict[str, tuple[str, int]] = {}
    for value in found.values():
        invoice = value["invoice"]
        for line in value["lines"]:
            for key in line["records"]:
                linked[key] += 1
                where[key] = (invoice.account, invoice.period_start)
    assert [key for key, times in linked.items() if times > 1] == []  # none twice
    assert where == expected  # none missing, none extra, each on its own invoice
    assert not any(
        by_id[by_record[k]["account"]].kind == "prepaid" for k in where if k in by_record
    )

    for value in found.values():
        invoice, lines = value["invoice"], value["lines"]
        owner = by_id[invoice.account]
        assert owner.kind == "postpaid" and owners[owner.id] == owner.id
        assert invoice.total_minor == sum(line["amount_minor"] for line in lines)
        assert invoice.total_minor == invoice.subtotal_minor + invoice.tax_minor
        assert invoice.subtotal_minor == sum(
            line["amount_minor"] for line in lines if line["kind"] != "tax"
        )
        assert invoice.total_micro == sum(line["amount_micro"] for line in lines)
        usage_micro = usage_charged = 0
        for line in lines:
            assert line["amount_minor"] % CENT == 0
            if line["kind"] in ("usage", "late_usage"):
                charged = sum(by_record[k]["charged"] for k in line["records"])
                assert line["amount_micro"] == charged
                assert abs(line["amount_minor"] - line["amount_micro"]) <= CENT // 2
                usage_micro += line["amount_micro"]
                usage_charged += charged
                ends = [by_record[k]["end"] for k in line["records"]]
                assert (line["kind"] == "late_usage") == (max(ends) < invoice.period_start)
                assert min(ends) >= invoice.period_start or line["kind"] == "late_usage"
                if owner.tax_exempt:
                    assert line["tax_rate_ppm"] is None
                else:  # the rate of the day each record ended
                    assert {
                        rate_on(cat, tax_category(cat, line["plan"]), local_day(e)) for e in ends
                    } == {line["tax_rate_ppm"]}
            elif line["kind"] == "one_off":
                (key,) = line["records"]
                assert line["amount_micro"] == -adjustments[key][1].amount
                assert line["amount_minor"] == round_cent(line["amount_micro"])
            elif line["kind"] == "allowance":
                assert line["amount_micro"] == line["amount_minor"] == 0
            elif line["kind"] == "discount":
                assert line["amount_minor"] < 0
        assert usage_micro == usage_charged
        # the fee days of each account on the invoice: from its creation day (or the
        # period's first) to the period's end, split between its plans
        period_days = (local_day(invoice.period_end) - local_day(invoice.period_start)).days
        for member_id in {m for m, o in owners.items() if o == owner.id}:
            member = by_id[member_id]
            section = None if member_id == owner.id else member_id
            days = sum(
                line["quantity"]
                for line in lines
                if line["kind"] == "recurring" and line["child_account"] == section
            )
            first = max(invoice.period_start, member.created or 0)
            if first >= invoice.period_end:
                assert days == 0
            else:
                assert (
                    days == period_days - (local_day(first) - local_day(invoice.period_start)).days
                )
        # taxes recomputed from the lines
        taxes = {
            (line["tax_category"], line["tax_rate_ppm"]): line["amount_minor"]
            for line in lines
            if line["kind"] == "tax"
        }
        assert len(taxes) == sum(1 for line in lines if line["kind"] == "tax")
        if owner.tax_exempt:
            assert taxes == {}
            assert all(line["tax_rate_ppm"] is None for line in lines)
            continue
        bases: dict[tuple[str, int], int] = {}
        for line in lines:
            if line["kind"] != "tax" and line["tax_rate_ppm"] is not None:
                key = (line["tax_category"], line["tax_rate_ppm"])
                bases[key] = bases.get(key, 0) + line["amount_minor"]
        assert taxes == {
            key: round_cent(base * key[1], 1_000_000)
            for key, base in bases.items()
            if key[1] and base
        }


def bill(engine: Engine, cat: Catalog, people: list[BillingAccount], path: Path, **kw: Any) -> None:
    month = kw.pop("period", "2026-11")
    options = BillRunOptions(**kw)
    summary = run_bill_run(
        engine,
        cat,
        people,
        path,
        period=month,
        now=LAST + 40 * DAY,
        options=options,
    )
    assert summary.errors == []
    # ocs bill-audit of the period, given the accounts: every postpaid invoice account
    # invoiced, each of its records on exactly one invoice, none of a prepaid account
    report = audit_period(
        engine,
        path,
        period=month,
        timezone=cat.timezone,
        late_window=options.late_window,
        accounts=people,
    )
    assert report.clean, [d.text() for d in report.discrepancies]


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty billing database at the newest revision, copied for each example
    (migrating takes longer than an example's bill runs)."""
    path = tmp_path_factory.mktemp("template") / "billing.db"
    migrate(f"sqlite:///{path}")
    yield path


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(data=st.data())
def test_random_bill_runs_pass_the_audit(migrated: Path, data: st.DataObject) -> None:
    cat = data.draw(catalogs(), label="catalog")
    people = data.draw(accounts(), label="accounts")
    records = data.draw(records_of(people), label="records")
    with tempfile.TemporaryDirectory(prefix="ocs-bill-prop-") as directory:
        path = Path(directory)
        shutil.copyfile(migrated, path / "billing.db")
        engine = open_database(f"sqlite:///{path / 'billing.db'}")
        try:
            write_records(path / "records", records, people)
            # no record drawn writes no segment: the audit wants the directory all the same
            (path / "records").mkdir(exist_ok=True)
            months = data.draw(st.sampled_from([[NOVEMBER, DECEMBER], [DECEMBER, NOVEMBER]]))
            event(f"billed {months[0][1]} first")
            runs: list[tuple[int, int]] = []
            for month in months:
                name = f"{month[0]}-{month[1]:02d}"
                before = snapshot(engine)
                runs.append(month)
                bill(engine, cat, people, path / "records", period=name, finalize=False)
                drafts = snapshot(engine)
                check(drafts, cat, people, records, runs)
                # a second run remakes the drafts line for line
                bill(engine, cat, people, path / "records", period=name, finalize=False)
                assert lines_only(snapshot(engine)) == lines_only(drafts)
                bill(engine, cat, people, path / "records", period=name, finalize=True)
                final = snapshot(engine)
                assert lines_only(final) == lines_only(drafts)
                # what earlier runs finalised is untouched
                assert lines_only({k: final[k] for k in before}) == lines_only(before)
                assert {v["invoice"].state for v in final.values()} <= {"final"}
                numbers = sorted(v["invoice"].number for v in final.values())
                assert numbers == [f"INV-{n:06d}" for n in range(1, len(final) + 1)]
            for kind in sorted({line["kind"] for v in final.values() for line in v["lines"]}):
                event(f"line kind {kind}")
            check(final, cat, people, records, runs)
        finally:
            engine.dispose()
