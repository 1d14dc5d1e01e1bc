"""The checker the catalog and provisioning parsers share (quota_engine.documents)."""

from __future__ import annotations

from quota_engine.documents import MISSING, DocumentChecker


class _Catalogish(DocumentChecker):
    ROOT = "catalog"


def test_keys_of_the_root_are_named_without_a_prefix():
    checker = _Catalogish()
    assert checker.table({"a": 1, "b": {}}, "catalog", {"a"}) == {"a": 1, "b": {}}
    assert checker.table({"c": 1}, "plans[0]", {"a"}) is not None
    assert checker.table([], "catalog", {"a"}) is None
    assert checker.problems == [
        "b: unknown key",
        "plans[0].c: unknown key",
        "catalog: must be a table",
    ]


def test_items_of_an_optional_list():
    checker = DocumentChecker()
    assert checker.items(MISSING, "xs") == []
    assert checker.items(None, "xs") == []
    assert checker.items(("a", "b"), "xs") == [("xs[0]", "a"), ("xs[1]", "b")]
    assert checker.items({"a": 1}, "xs") == []
    assert checker.problems == ["xs: must be a list"]


def test_required_and_report_say_whether_all_was_well():
    checker = DocumentChecker()
    assert checker.required({"id": "a", "kind": None}, "accounts[0]", "id", "kind", "plan") is False
    assert checker.required({"id": "a"}, "accounts[1]", "id") is True
    assert checker.report("accounts[0]", []) is True
    assert checker.report("accounts[0]", [("plan", "unknown plan")]) is False
    assert checker.problems == [
        "accounts[0].kind: is required",
        "accounts[0].plan: is required",
        "accounts[0].plan: unknown plan",
    ]


def test_typed_getters_record_a_problem_and_return_the_default():
    checker = DocumentChecker()
    assert checker.integer(True, "n", 0, 9, "an integer from 0 to 9") is None  # bool is no int
    assert checker.integer(MISSING, "m", 0, 9, "an integer from 0 to 9") is None
    assert checker.integer(9, "o", 0, 9, "an integer from 0 to 9") == 9
    assert checker.string("  ", "s") is None
    assert checker.optional_string(None, "t") is None
    assert checker.boolean("yes", "b", True) is True
    assert checker.choice("x", "c", ("terminate", "redirect"), "terminate") == "terminate"
    assert checker.choice(None, "d", ("a",), None) is None
    assert checker.problems == [
        "n: must be an integer from 0 to 9",
        "m: is required",
        "s: must be a non-empty string",
        "b: must be true or false",
        'c: must be one of "terminate", "redirect"',
        "d: is required",
    ]


def test_tables_skips_what_is_no_table_and_keeps_the_problems_in_item_order():
    checker = DocumentChecker()
    seen = []
    for path, item in checker.tables([{"a": 1}, 5, {"b": 2}], "xs", {"a"}):
        seen.append((path, item))
        checker.problem(path, "checked")
    assert seen == [("xs[0]", {"a": 1}), ("xs[2]", {"b": 2})]
    assert checker.problems == [
        "xs[0]: checked",
        "xs[1]: must be a table",
        "xs[2].b: unknown key",
        "xs[2]: checked",
    ]


def test_required_items_must_be_given_as_a_non_empty_list():
    checker = DocumentChecker()
    assert checker.required_items(["mon", "tue"], "days") == [
        ("days[0]", "mon"),
        ("days[1]", "tue"),
    ]
    assert checker.required_items(MISSING, "a") == []
    assert checker.required_items([], "b") == []
    assert checker.required_items(None, "c") == []
    assert checker.problems == ["a: is required", "b: must not be empty", "c: must be a list"]
