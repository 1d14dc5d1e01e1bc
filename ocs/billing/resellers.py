"""Reseller (wholesale) billing: who issues an invoice, and the reseller's wholesale
invoice (docs/invoicing.md, "Resellers").

A reseller partner is catalog data (:class:`~quota_engine.catalog.model.Reseller`): its
billing entity and number format, its documents header, the operator-side account
that receives its wholesale invoice, and its wholesale price list. An invoice account
whose ``reseller`` is set is the reseller's subscriber: its retail invoices are issued
under the reseller's entity (:func:`issuer_of`), numbered in the reseller's own
gap-free sequence; the accounts on its invoice (a hierarchy's children) are the same
reseller's subscribers, or none's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ocs.billing.accounts import BillingAccount
from ocs.billing.usage import BillingError
from quota_engine.catalog.model import Catalog, Reseller

__all__ = ["Issuer", "issuer_of"]


@dataclass(frozen=True, slots=True)
class Issuer:
    """The billing entity that issues and numbers an invoice, its number format, and
    the reseller it is (None: the operator)."""

    entity: str
    number_format: str
    reseller: Reseller | None = None


def issuer_of(members: Sequence[BillingAccount], catalog: Catalog, operator: Issuer) -> Issuer:
    """Who issues the invoice of ``members`` (the invoice account first): the reseller
    of the invoice account, else ``operator``. Raises :class:`BillingError` for a
    reseller the catalog does not have, one whose entity is the operator's own, and an
    account on the invoice that belongs to another reseller (its invoice would carry
    another issuer's name)."""
    owner = members[0]
    for member in members[1:]:
        if member.reseller is not None and member.reseller != owner.reseller:
            whose = f"reseller {owner.reseller!r}" if owner.reseller else "the operator"
            raise BillingError(
                f"account {member.id} of reseller {member.reseller!r} is on the invoice of "
                f"{owner.id}, which is {whose}'s: a hierarchy belongs to one reseller"
            )
    if owner.reseller is None:
        return operator
    reseller = catalog.reseller(owner.reseller)
    if reseller is None:
        known = ", ".join(r.id for r in catalog.resellers) or "none"
        raise BillingError(
            f"account {owner.id}: reseller {owner.reseller!r} is not in catalog "
            f"{catalog.version} (resellers: {known})"
        )
    if reseller.entity == operator.entity:
        raise BillingError(
            f"account {owner.id}: reseller {reseller.id!r} has the operator's billing entity "
            f"{operator.entity!r}: its invoices would be numbered in the operator's sequence"
        )
    return Issuer(reseller.entity, reseller.invoice_number_format, reseller)
