"""The billing view of an account: what a bill run needs to know of it, read once.

The accounts live in Redis (the charging store), which ``ocs/billing`` never imports: the
composition root reads them into :class:`BillingAccount` values (``ocs.billing_source``)
and hands them to the bill run. Everything here is plain data: the bill run's result
depends on these values, the catalog and the records only, so running it twice on the
same inputs gives the same invoices.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "ITEMISATIONS",
    "Adjustment",
    "BillingAccount",
    "Contact",
    "HierarchyError",
    "PlanChange",
    "invoice_accounts",
]

ITEMISATIONS = ("detailed", "summary")
"""How an account's invoice documents present usage: every record, or the lines only."""


@dataclass(frozen=True, slots=True)
class PlanChange:
    """The account moved from plan ``previous`` to ``plan`` at ``at`` (Unix s)."""

    at: int
    previous: str
    plan: str


@dataclass(frozen=True, slots=True)
class KindChange:
    """The account changed from kind ``previous`` to ``kind`` (prepaid, postpaid) at
    ``at`` (Unix s), its plan changed or not."""

    at: int
    previous: str
    kind: str


@dataclass(frozen=True, slots=True)
class Adjustment:
    """A one-off change of a money bucket made by the operator (balance history ``type``
    ``adjustment``): ``amount`` micro-units added to the balance (positive: a credit to
    the customer; negative: a charge). The invoice shows it with the sign flipped (what
    the customer owes)."""

    id: str
    at: int
    amount: int
    bucket: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Contact:
    """Who an invoice is addressed to, as the account holds it (each part optional):
    ``address`` lines are separated by ``"\\n"``; ``locale`` (``de_DE``) says how the
    documents write amounts and dates (None: the operator's default); ``delivery`` is
    ``email`` or ``paper``."""

    name: str | None = None
    address: str | None = None
    locale: str | None = None
    email: str | None = None
    delivery: str = "email"


@dataclass(frozen=True, kw_only=True, slots=True)
class BillingAccount:
    """One account as the bill run sees it.

    ``plan`` is the plan now; ``plan_changes`` (oldest first) say which plan held when
    (:meth:`plan_at`); ``kind_changes`` when it moved between prepaid and postpaid.
    ``partition`` is the record partition of the account (the segment
    files holding its records). ``subscriptions`` are its identities (its "lines").
    ``bill_separately``: a child account invoiced on its own rather than on its parent's
    invoice. ``itemisation``: one of :data:`ITEMISATIONS`. ``contact``: the customer's
    name, address, locale and e-mail for the invoice documents, and how they are
    delivered (:class:`Contact`). ``reseller``: the reseller partner (catalog id) whose
    subscriber the account is, None: the operator's own (docs/invoicing.md, "Resellers").
    """

    id: str
    kind: str
    status: str = "active"
    currency: str
    plan: str
    bill_cycle_day: int = 1
    parent: str | None = None
    created: int | None = None
    partition: int = 0
    subscriptions: tuple[str, ...] = ()
    tax_exempt: bool = False
    bill_separately: bool = False
    itemisation: str = "detailed"
    reseller: str | None = None
    plan_changes: tuple[PlanChange, ...] = ()
    kind_changes: tuple[KindChange, ...] = ()
    adjustments: tuple[Adjustment, ...] = ()
    contact: Contact = Contact()

    @property
    def postpaid(self) -> bool:
        return self.kind == "postpaid"

    def plan_at(self, at: int) -> str:
        """The plan the account was on at ``at`` (Unix s)."""
        plan = self.plan_changes[0].previous if self.plan_changes else self.plan
        for change in self.plan_changes:
            if change.at > at:
                break
            plan = change.plan
        return plan


class HierarchyError(ValueError):
    """An account's parent chain loops, or names an account that does not exist."""


def invoice_accounts(
    accounts: Iterable[BillingAccount], errors: list[tuple[str, str]] | None = None
) -> dict[str, list[BillingAccount]]:
    """The postpaid accounts grouped by the account whose invoice they are on:
    ``{invoice account id: [that account, then its members, depth first]}``.

    An account is on its parent's invoice when it has a postpaid parent and is not
    ``bill_separately``; the parent's own invoice account decides (deeper hierarchies
    roll up to the top). A prepaid account gets no invoice, and a prepaid parent is no
    invoice account: its postpaid children are invoiced on their own. A parent missing
    from ``accounts`` makes the child its own invoice account (the parent was closed and
    removed). A loop of parents raises :class:`HierarchyError`, or, given ``errors``,
    appends ``(account, why)`` there for each account whose chain loops and leaves them
    out (the other accounts are grouped as usual)."""
    by_id: Mapping[str, BillingAccount] = {a.id: a for a in accounts}
    owner: dict[str, str] = {}

    def invoice_owner(account: BillingAccount) -> str:
        chain: list[str] = []
        current = account
        while True:
            known = owner.get(current.id)
            if known is not None:
                break
            parent = by_id.get(current.parent) if current.parent else None
            if current.bill_separately or parent is None or not parent.postpaid:
                known = current.id
                break
            if current.id in chain:
                raise HierarchyError(f"account {account.id}: parent chain loops at {current.id}")
            chain.append(current.id)
            current = parent
        for member in chain:
            owner[member] = known
        owner[current.id] = known
        return known

    looping: set[str] = set()
    for account in by_id.values():
        if not account.postpaid:
            continue
        try:
            invoice_owner(account)
        except HierarchyError as error:
            if errors is None:
                raise
            looping.add(account.id)
            errors.append((account.id, str(error)))
    children: dict[str, list[BillingAccount]] = {}
    for account in by_id.values():
        if account.postpaid and account.parent and account.id not in looping:
            children.setdefault(account.parent, []).append(account)
    groups: dict[str, list[BillingAccount]] = {}
    for account in sorted(by_id.values(), key=lambda a: a.id):
        if account.id in looping or not account.postpaid or invoice_owner(account) != account.id:
            continue
        members: list[BillingAccount] = []
        stack = [account]
        while stack:
            current = stack.pop()
            members.append(current)
            for child in sorted(children.get(current.id, ()), key=lambda a: a.id, reverse=True):
                if invoice_owner(child) == account.id:
                    stack.append(child)
        groups[account.id] = members
    return groups
