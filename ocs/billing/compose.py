"""One invoice composed from an account (and its hierarchy), a period, usage and the
catalog: typed lines and exact totals, before anything is stored.

The rules (docs/invoicing.md, "Invoice content"):

* **Sections.** The invoice account's own lines first, then one section per child
  account on the invoice (its lines carry ``child_account``), then the invoice's
  discounts, then its taxes.
* **Recurring fee** of each plan held in the period, prorated by local days: a plan
  held from day ``a`` to day ``b`` of ``D`` costs ``round(fee * b / D) - round(fee *
  a / D)`` (cumulative: the parts of a period add up to the rounded fee exactly). A
  change (account created, plan changed, off-cycle invoice ended) at any time of a day
  counts from that day: the new plan pays that whole day, the old one stops the day
  before. Days another live invoice charged are left out (``billed_elsewhere``).
* **Usage** per service and category, **allowances** (units, amount 0), **one-off**
  charges and credits from the balance history (an adjustment adding money to the
  balance is a credit on the invoice).
* **Rounding.** A line's ``amount_micro`` is exact where it is a sum of micro-units
  (usage, full fees, adjustments) and its ``amount_minor`` that amount rounded half away
  from zero to the currency's minor unit, once (:func:`round_to_minor_unit`). A line
  that is a ratio (a percentage discount, a tax) is rounded once from the exact ratio
  (:func:`round_ratio_to_minor_unit`), a prorated fee is the difference of two such
  cumulative roundings, and the micro amount of either is that rounded amount. Discounts and taxes are computed on the rounded amounts of the lines
  they apply to, so the invoice shows a base and its tax that agree to the cent; the
  total is the sum of the rounded lines, exactly.
* **Discounts** from the catalog, computed per tax category and rate of their base (a
  discount lowers the taxed amount of the lines it applies to).
* **Taxes:** one line per tax category and rate, on the sum of the rounded lines at that
  rate. A tax-exempt invoice account gets no tax lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from ocs.billing.accounts import Adjustment, BillingAccount
from ocs.billing.periods import BillPeriod
from ocs.billing.usage import BillingError, TaxPoint, UsageLedger
from quota_engine.catalog.model import Catalog, Discount
from quota_engine.money import round_ratio_to_minor_unit, round_to_minor_unit

__all__ = [
    "ADJUSTMENT_PREFIX",
    "ComposedInvoice",
    "InvoiceLine",
    "compose_invoice",
    "percent",
    "percent_text",
    "postpaid_since",
]

ADJUSTMENT_PREFIX = "adjustment:"
"""Adjustments are linked to their line like records, as ``adjustment:<history id>``,
so that each is billed once."""

_PPM = 1_000_000
_CHARGE_KINDS = frozenset({"recurring", "usage", "late_usage", "one_off"})


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """One line of an invoice (``invoice_items``); ``records`` are the ids it sums."""

    kind: str
    description: str
    amount_micro: int
    amount_minor: int
    child_account: str | None = None
    plan: str | None = None
    service: str | None = None
    category: str | None = None
    quantity: int | None = None
    unit: str | None = None
    period_start: int | None = None
    period_end: int | None = None
    tax_category: str | None = None
    tax_rate_ppm: int | None = None
    records: tuple[str, ...] = field(default=(), repr=False)
    applies_to: int | None = None
    """Index (in ``lines``) of the one line a discount applies to, if only one."""


@dataclass(frozen=True, slots=True)
class ComposedInvoice:
    account: str
    currency: str
    minor_digits: int
    period_start: int
    period_end: int
    lines: tuple[InvoiceLine, ...]
    off_cycle: bool = False
    itemisation: str = "detailed"
    """The invoice account's presentation preference, kept for the documents."""
    tax_exempt: bool = False

    @property
    def subtotal_micro(self) -> int:
        return sum(line.amount_micro for line in self.lines if line.kind != "tax")

    @property
    def subtotal_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines if line.kind != "tax")

    @property
    def tax_micro(self) -> int:
        return sum(line.amount_micro for line in self.lines if line.kind == "tax")

    @property
    def tax_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines if line.kind == "tax")

    @property
    def total_minor(self) -> int:
        return self.subtotal_minor + self.tax_minor

    @property
    def total_micro(self) -> int:
        return self.subtotal_micro + self.tax_micro

    @property
    def record_count(self) -> int:
        return sum(len(line.records) for line in self.lines)


def percent(rate_ppm: int) -> str:
    """A rate in parts per million as a percent number: ``190000`` -> ``"19"``,
    ``55000`` -> ``"5.5"`` (exact, no float)."""
    whole, rest = divmod(rate_ppm, 10_000)
    decimals = f"{rest:04d}".rstrip("0")
    return f"{whole}.{decimals}" if decimals else str(whole)


def percent_text(rate_ppm: int) -> str:
    """``190000`` as ``19 %``, ``75000`` as ``7.5 %``."""
    return f"{percent(rate_ppm)} %"


def _describe_usage(service: str, category: str, *, zero_rated: bool, refund: bool) -> str:
    words = [service.capitalize() or "Usage"]
    if category:
        words.extend(part.replace("-", " ") for part in category.split("/"))
    text = ", ".join(words)
    if zero_rated:
        text += " (zero-rated)"
    if refund:
        text += " (refund)"
    return text


class _Composer:
    def __init__(
        self,
        owner: BillingAccount,
        period: BillPeriod,
        ledger: UsageLedger,
        catalog: Catalog,
        exempt: bool,
    ) -> None:
        self.owner, self.period, self.ledger, self.catalog = owner, period, ledger, catalog
        self.exempt = exempt
        self.minor = catalog.minor_digits
        self.lines: list[InvoiceLine] = []

    def round(self, micro: int) -> int:
        return round_to_minor_unit(micro, self.minor)

    def tax(self, plan: str, at: int) -> TaxPoint:
        return self.ledger.tax_point(plan, at, self.exempt)

    # -- one account's section

    def section(
        self,
        account: BillingAccount,
        adjustments: Sequence[Adjustment],
        covered: tuple[int, int],
        billed_elsewhere: Sequence[tuple[int, int]] = (),
    ) -> None:
        child = None if account.id == self.owner.id else account.id
        self.recurring(account, child, covered, billed_elsewhere)
        ledger = self.ledger
        for key, group in sorted(ledger.groups.get(account.id, {}).items()):
            description = _describe_usage(
                key.service, key.category, zero_rated=key.zero_rated, refund=key.refund
            )
            if key.late:
                description += ", late usage of an earlier period"
            self.lines.append(
                InvoiceLine(
                    kind="late_usage" if key.late else "usage",
                    description=description,
                    amount_micro=group.charged,
                    amount_minor=self.round(group.charged),
                    child_account=child,
                    plan=key.plan,
                    service=key.service or None,
                    category=key.category or None,
                    quantity=group.quantity,
                    unit=key.unit or None,
                    tax_category=key.tax.category,
                    tax_rate_ppm=key.tax.rate_ppm,
                    records=tuple(group.records),
                )
            )
        for allowance, units in sorted(ledger.allowances.get(account.id, {}).items()):
            if units <= 0:
                continue
            self.lines.append(
                InvoiceLine(
                    kind="allowance",
                    description=f"Allowance {allowance.bucket} used: {allowance.service}",
                    amount_micro=0,
                    amount_minor=0,
                    child_account=child,
                    service=allowance.service or None,
                    category=allowance.bucket,
                    quantity=units,
                    unit=allowance.unit or None,
                )
            )
        for adjustment in sorted(adjustments, key=lambda a: (a.at, a.id)):
            owed = -adjustment.amount
            plan = account.plan_at(adjustment.at)
            tax = self.tax(plan, adjustment.at)
            kind_text = "credit" if owed < 0 else "charge"
            self.lines.append(
                InvoiceLine(
                    kind="one_off",
                    description=adjustment.reason or f"One-off {kind_text}",
                    amount_micro=owed,
                    amount_minor=self.round(owed),
                    child_account=child,
                    plan=plan,
                    period_start=adjustment.at,
                    tax_category=tax.category,
                    tax_rate_ppm=tax.rate_ppm,
                    records=(ADJUSTMENT_PREFIX + adjustment.id,),
                )
            )

    def recurring(
        self,
        account: BillingAccount,
        child: str | None,
        covered: tuple[int, int],
        billed_elsewhere: Sequence[tuple[int, int]] = (),
    ) -> None:
        period = self.period
        start = max(covered[0], account.created or 0, postpaid_since(account, self.catalog))
        end = covered[1]
        if start >= end:
            return
        spans: list[tuple[int, int, str]] = []
        first, current = period.day_index(start), account.plan_at(start)
        for change in account.plan_changes:
            if not start < change.at < end:
                continue
            index = period.day_index(change.at)
            if index > first:
                spans.append((first, index, current))
                first = index
            current = change.plan
        last = period.day_index(end) if end < period.end else period.days
        if last > first:
            spans.append((first, last, current))
        # days another live invoice charged already (the account's section on another
        # invoice account's invoice, its earlier cycle, an off-cycle invoice): not again
        taken = [(period.day_index(a), period.day_index(b)) for a, b in billed_elsewhere]
        spans = [piece for span in spans for piece in _without(span, taken)]
        merged: list[tuple[int, int, str]] = []
        for span in spans:
            if merged and merged[-1][2] == span[2] and merged[-1][1] == span[0]:
                merged[-1] = (merged[-1][0], span[1], span[2])
            else:
                merged.append(span)
        for begin, finish, plan_id in merged:
            plan = self.catalog.plan(plan_id)
            if plan is None:
                raise BillingError(
                    f"account {account.id}: plan {plan_id!r} is not in catalog "
                    f"{self.catalog.version}"
                )
            if plan.recurring_fee == 0:
                continue
            days = finish - begin
            span_start = period.midnight(period.first_day + timedelta(days=begin))
            span_end = period.midnight(period.first_day + timedelta(days=finish))
            if days == period.days:
                micro = plan.recurring_fee
                minor = self.round(micro)
                description = f"{plan.name}: recurring fee"
            else:
                # cumulative: the parts of a period (off-cycle, plan changes) add up to
                # the rounded monthly fee exactly
                fee, whole = plan.recurring_fee, period.days
                micro = minor = round_ratio_to_minor_unit(
                    fee * finish, whole, self.minor
                ) - round_ratio_to_minor_unit(fee * begin, whole, self.minor)
                description = f"{plan.name}: recurring fee, {days} of {period.days} days"
            tax = self.tax(plan.id, span_start)
            self.lines.append(
                InvoiceLine(
                    kind="recurring",
                    description=description,
                    amount_micro=micro,
                    amount_minor=minor,
                    child_account=child,
                    plan=plan.id,
                    quantity=days,
                    unit="days",
                    period_start=span_start,
                    period_end=span_end,
                    tax_category=tax.category,
                    tax_rate_ppm=tax.rate_ppm,
                )
            )

    # -- the invoice's own lines

    def discounts(self, members: Sequence[BillingAccount]) -> None:
        subscriptions = sum(len(m.subscriptions) for m in members)
        owner_plan = self.owner.plan_at(self.period.end - 1)
        charges = list(enumerate(self.lines))
        for discount in self.catalog.discounts:
            if not discount.covers(self.period.last_day) or subscriptions < discount.min_lines:
                continue
            if discount.scope == "invoice" and discount.plans and owner_plan not in discount.plans:
                continue
            base = [(i, line) for i, line in charges if _in_base(discount, line)]
            self.discount(discount, base)

    def discount(self, discount: Discount, base: Sequence[tuple[int, InvoiceLine]]) -> None:
        groups: dict[tuple[str, int | None], int] = {}
        for _, line in base:
            key = (line.tax_category or "", line.tax_rate_ppm)
            groups[key] = groups.get(key, 0) + line.amount_minor
        applies_to = base[0][0] if len(base) == 1 else None
        amounts: list[tuple[tuple[str, int | None], int]] = []
        if discount.kind == "percent":
            for key in sorted(groups, key=_tax_order):
                amount = round_ratio_to_minor_unit(
                    groups[key] * discount.rate_ppm, _PPM, self.minor
                )
                amounts.append((key, amount))
        else:
            left = min(self.round(discount.amount), sum(max(v, 0) for v in groups.values()))
            for key in sorted(groups, key=lambda k: (-groups[k], _tax_order(k))):
                take = min(left, max(groups[key], 0))
                amounts.append((key, take))
                left -= take
        for (category, rate), amount in amounts:
            if amount <= 0:
                continue
            self.lines.append(
                InvoiceLine(
                    kind="discount",
                    description=discount.name,
                    amount_micro=-amount,
                    amount_minor=-amount,
                    service=discount.service,
                    category=discount.id,
                    tax_category=category or None,
                    tax_rate_ppm=rate,
                    applies_to=applies_to,
                )
            )

    def taxes(self) -> None:
        if self.exempt:
            return
        bases: dict[tuple[str, int], int] = {}
        for line in self.lines:
            if line.tax_category is None or line.tax_rate_ppm is None:
                continue
            key = (line.tax_category, line.tax_rate_ppm)
            bases[key] = bases.get(key, 0) + line.amount_minor
        for category, rate in sorted(bases):
            base = bases[category, rate]
            if rate == 0 or base == 0:
                continue
            tax = round_ratio_to_minor_unit(base * rate, _PPM, self.minor)
            name = next(
                (
                    t.name
                    for t in self.catalog.taxes
                    if t.category == category and t.rate_ppm == rate
                ),
                "",
            )
            self.lines.append(
                InvoiceLine(
                    kind="tax",
                    description=name or f"Tax {category} {percent_text(rate)}",
                    amount_micro=tax,
                    amount_minor=tax,
                    quantity=None,
                    category=category,
                    tax_category=category,
                    tax_rate_ppm=rate,
                )
            )


def postpaid_since(account: BillingAccount, catalog: Catalog) -> int:
    """When ``account`` last became postpaid (Unix s; 0: always was): the last change
    away from a prepaid plan, or from the prepaid kind (on a plan for both kinds). Its
    usage before then was paid from its balance."""
    since = 0
    for change in account.plan_changes:
        plan = catalog.plan(change.previous)
        if plan is not None and plan.type == "prepaid":
            since = max(since, change.at)
    for kind_change in account.kind_changes:
        if kind_change.previous == "prepaid":
            since = max(since, kind_change.at)
    return since


def _without(
    span: tuple[int, int, str], taken: Sequence[tuple[int, int]]
) -> list[tuple[int, int, str]]:
    """The parts of the day span ``[begin, finish)`` of a plan outside ``taken``."""
    pieces = [span]
    for low, high in taken:
        kept = []
        for begin, finish, plan in pieces:
            if high <= begin or low >= finish:
                kept.append((begin, finish, plan))
                continue
            if begin < low:
                kept.append((begin, low, plan))
            if high < finish:
                kept.append((high, finish, plan))
        pieces = kept
    return pieces


def _tax_order(key: tuple[str, int | None]) -> tuple[str, int]:
    return key[0], -1 if key[1] is None else key[1]


def _in_base(discount: Discount, line: InvoiceLine) -> bool:
    if line.kind not in _CHARGE_KINDS or line.amount_minor <= 0:
        return False
    if discount.scope == "service":
        return (
            line.kind in ("usage", "late_usage")
            and line.service == discount.service
            and (not discount.plans or line.plan in discount.plans)
        )
    if discount.scope == "plan":
        return line.kind == "recurring" and (not discount.plans or line.plan in discount.plans)
    return True


def compose_invoice(
    owner: BillingAccount,
    members: Sequence[BillingAccount],
    period: BillPeriod,
    ledger: UsageLedger,
    catalog: Catalog,
    *,
    adjustments: Mapping[str, Iterable[Adjustment]] | None = None,
    covered: tuple[int, int] | None = None,
    billed_elsewhere: Mapping[str, Sequence[tuple[int, int]]] | None = None,
    off_cycle: bool = False,
) -> ComposedInvoice:
    """The invoice of ``owner`` for ``period``: ``members`` are the accounts on it (the
    owner first, see :func:`ocs.billing.accounts.invoice_accounts`), ``ledger`` their
    summed usage, ``adjustments`` the balance adjustments to bill per account.
    ``billed_elsewhere`` lists, per account, the spans (Unix s) whose recurring fee
    another live invoice charged already. ``covered`` is the span the recurring fees are
    for (the period unless an off-cycle
    invoice took part of it). Raises :class:`BillingError` when it cannot be made."""
    for member in members:
        if member.currency != catalog.currency:
            raise BillingError(
                f"account {member.id} is in {member.currency}, the catalog in {catalog.currency}"
            )
    composer = _Composer(owner, period, ledger, catalog, exempt=owner.tax_exempt)
    span = covered or (period.start, period.end)
    for member in members:
        composer.section(
            member,
            list((adjustments or {}).get(member.id, ())),
            span,
            (billed_elsewhere or {}).get(member.id, ()),
        )
    composer.discounts(members)
    composer.taxes()
    return ComposedInvoice(
        account=owner.id,
        currency=owner.currency,
        minor_digits=catalog.minor_digits,
        period_start=span[0] if off_cycle else period.start,
        period_end=span[1] if off_cycle else period.end,
        lines=tuple(composer.lines),
        off_cycle=off_cycle,
        itemisation=owner.itemisation,
        tax_exempt=owner.tax_exempt,
    )
