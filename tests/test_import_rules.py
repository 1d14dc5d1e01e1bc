"""DESIGN.md's import rules, enforced: a broken arrow fails this test.

cext imports nothing of ours; protocol knows nothing of Redis, money, aiohttp or
Prometheus; quota_engine knows nothing of Diameter; loadtest uses protocol and cext
only; ocs is the composition root and may import everything.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"cext", "protocol", "quota_engine", "ocs", "loadtest"}

# package -> (our packages it may import, third-party top-level modules it must not)
RULES: dict[str, tuple[set[str], set[str]]] = {
    "cext": (set(), {"diameter", "redis", "aiohttp", "prometheus_client", "msgpack"}),
    "protocol": ({"cext"}, {"redis", "aiohttp", "prometheus_client", "msgpack"}),
    "quota_engine": (set(), {"diameter", "aiohttp", "prometheus_client"}),
    "loadtest": ({"protocol", "cext"}, {"redis", "prometheus_client"}),
    "ocs": ({"cext", "protocol", "quota_engine"}, set()),
}

_CIMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+c?import|c?import\s+([\w.]+))", re.M)


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (absolute imports only)."""
    text = path.read_text()
    if path.suffix in (".pyx", ".pxd"):
        return {(a or b).split(".")[0] for a, b in _CIMPORT.findall(text)}
    names: set[str] = set()
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def package_files(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*") if p.suffix in (".py", ".pyx", ".pxd"))


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_respects_import_rules(package):
    allowed_ours, forbidden = RULES[package]
    violations = []
    for path in package_files(package):
        for name in imported_modules(path):
            if name in OURS and name != package and name not in allowed_ours:
                violations.append(f"{path.relative_to(ROOT)} imports {name}")
            if name in forbidden:
                violations.append(f"{path.relative_to(ROOT)} imports {name}")
    assert violations == []


def test_checker_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import redis\nfrom ocs.config import Settings\n")
    assert imported_modules(bad) == {"redis", "ocs"}
    pyx = tmp_path / "bad.pyx"
    pyx.write_text("from protocol.framing cimport x\ncimport cython\n")
    assert imported_modules(pyx) == {"protocol", "cython"}


def test_every_package_has_files():
    for package in RULES:
        assert package_files(package), f"{package} has no source files"
