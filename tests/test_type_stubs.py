"""Our partial stub of python-diameter's constants (stubs/diameter/message/constants.pyi)
declares every name that is not an int; all other names are typed int by its
``__getattr__``. If python-diameter adds a constant of another type, this fails."""

from __future__ import annotations

import ast

from diameter.message import constants

from tests.helpers import ROOT

STUB = ROOT / "stubs" / "diameter" / "message" / "constants.pyi"


def _declared() -> dict[str, str]:
    tree = ast.parse(STUB.read_text())
    return {
        node.target.id: ast.unparse(node.annotation)
        for node in tree.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }


def test_every_constant_that_is_not_an_int_is_declared_with_its_type() -> None:
    declared = _declared()
    expected = {"Final[str]": str, "dict[int, str]": dict, "dict[str, str]": dict}
    for name in dir(constants):
        value = getattr(constants, name)
        if name.startswith("_") or type(value) is int:
            continue
        assert name in declared, f"{name} ({type(value).__name__}) missing from {STUB.name}"
        assert isinstance(value, expected[declared[name]]), (name, declared[name])


def test_every_declared_name_exists() -> None:
    missing = [name for name in _declared() if not hasattr(constants, name)]
    assert missing == []
