"""The billing view of accounts: plans over time and invoice accounts of hierarchies."""

from __future__ import annotations

import pytest

from ocs.billing.accounts import HierarchyError, PlanChange, invoice_accounts
from tests.ocs.billing.factory import account


def ids(groups):
    return {owner: [m.id for m in members] for owner, members in groups.items()}


def test_plan_at_follows_the_changes():
    a = account("a", plan="c", plan_changes=(PlanChange(100, "a", "b"), PlanChange(200, "b", "c")))
    assert [a.plan_at(t) for t in (0, 99, 100, 199, 200, 10**9)] == ["a", "a", "b", "b", "c", "c"]
    assert account("x", plan="p").plan_at(5) == "p"


def test_hierarchies_roll_up_and_stop_where_they_should():
    accounts = [
        account("corp"),
        account("dept", parent="corp"),
        account("line-1", parent="dept"),  # grandchild: on corp's invoice
        account("own", parent="corp", bill_separately=True),
        account("own-line", parent="own"),  # below a separate child: on its invoice
        account("pp", kind="prepaid", plan="prepaid-basic"),
        account("under-pp", parent="pp"),  # a prepaid parent is no invoice account
        account("orphan", parent="gone"),  # parent removed: on its own
        account("pp-child", kind="prepaid", parent="corp"),  # prepaid: no invoice at all
    ]
    assert ids(invoice_accounts(accounts)) == {
        "corp": ["corp", "dept", "line-1"],
        "orphan": ["orphan"],
        "own": ["own", "own-line"],
        "under-pp": ["under-pp"],
    }


def test_a_loop_is_an_error_of_its_accounts_only():
    accounts = [account("a", parent="b"), account("b", parent="a"), account("c")]
    with pytest.raises(HierarchyError, match="loops"):
        invoice_accounts(accounts)
    errors: list[tuple[str, str]] = []
    assert ids(invoice_accounts(accounts, errors)) == {"c": ["c"]}
    assert sorted(account for account, _ in errors) == ["a", "b"]
