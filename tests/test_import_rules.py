"""DESIGN.md's import rules, enforced: a broken arrow fails this test.

Between the top-level packages (:data:`RULES`): cext imports nothing of ours; protocol
knows nothing of Redis, money, aiohttp or Prometheus; quota_engine knows nothing of
Diameter; loadtest uses protocol and cext only; ocs is the composition root and may
import everything.

Inside them, packages are named after their jobs: ``quota_engine/`` holds ``catalog/``
(model, parser), ``charging/`` (engine, rating, sweeper), ``accounts/`` (the account
model, provisioning, balance actions) and ``store/``, the only place that knows Redis
key names: only modules of ``quota_engine/store/`` import ``quota_engine.store.keys``
(:data:`KEY_SCHEMA_IMPORTERS`) and no other module writes a string that starts like a
key (``ocs:acct:...``). Everyone else (the API, the Gy notifier, the catalog
holder, accounts) goes through store functions; the store itself imports the models it
stores (``catalog``, ``accounts.model`` and ``accounts.errors``), never the services
above it. ``ocs/`` holds ``gy/`` (the Gy/Ro application) and ``api/`` (the HTTP API).
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
_CFROM = re.compile(r"^\s*from\s+([\w.]+)\s+c?import\s+\(?([\w, ]+)", re.M)

KEY_SCHEMA = "quota_engine.store.keys"
KEY_SCHEMA_IMPORTERS = ("quota_engine/store/",)
"""Where a module may import :data:`KEY_SCHEMA` (the engine and the sweeper, which did
until the layout issue, call store functions now)."""
KEY_START = re.compile(r"ocs:[\w{]")
"""How a Redis key of ours starts (``ocs:acct:{A}``, ``ocs:events``; not ``"ocs: error"``)."""


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


def imported_names(path: Path, package: str) -> set[str]:
    """Dotted names of every module ``path`` imports, and of every ``module.name`` it
    imports a name from, relative imports resolved against ``package`` (the dotted
    package ``path`` belongs to): ``from quota_engine.store import keys`` and ``from
    ..store import keys`` (in quota_engine/accounts/) both give
    ``quota_engine.store.keys``."""
    text = path.read_text()
    names: set[str] = set()
    if path.suffix in (".pyx", ".pxd"):
        names.update(a or b for a, b in _CIMPORT.findall(text))
        for module, imported in _CFROM.findall(text):
            names.update(f"{module}.{n.split()[0]}" for n in imported.split(",") if n.strip())
        return names
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            module = ".".join(base) if node.level else ""
            if node.module:
                module = f"{module}.{node.module}" if module else node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def key_strings(path: Path) -> list[str]:
    """String literals (f-strings too) of ``path`` that start like a key (:data:`KEY_START`)."""
    if path.suffix != ".py":
        return []
    nodes = list(ast.walk(ast.parse(path.read_text(), str(path))))
    # an f-string is judged by its start only, not by the pieces after its fields
    pieces = {id(v) for n in nodes if isinstance(n, ast.JoinedStr) for v in n.values}
    found = []
    for node in nodes:
        if isinstance(node, ast.JoinedStr) and node.values:
            node = node.values[0]
        elif id(node) in pieces:
            continue
        if isinstance(node, ast.Constant) and KEY_START.match(str(node.value)):
            found.append(node.value)
    return found


def key_schema_violations(root: Path, packages: list[str]) -> list[str]:
    """Modules under ``root`` outside :data:`KEY_SCHEMA_IMPORTERS` that import the key
    schema or spell a key."""
    violations = []
    for package in packages:
        for path in _files(root, package):
            relative = path.relative_to(root)
            if relative.as_posix().startswith(KEY_SCHEMA_IMPORTERS):
                continue
            parts = relative.with_suffix("").parts
            dotted = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            own_package = dotted if path.name == "__init__.py" else dotted.rpartition(".")[0]
            names = imported_names(path, own_package)
            if any(name == KEY_SCHEMA or name.startswith(f"{KEY_SCHEMA}.") for name in names):
                violations.append(f"{relative} imports {KEY_SCHEMA}")
            violations.extend(f"{relative} spells the key {text!r}" for text in key_strings(path))
    return violations


def _files(root: Path, package: str) -> list[Path]:
    return sorted(p for p in (root / package).rglob("*") if p.suffix in (".py", ".pyx", ".pxd"))


def package_files(package: str) -> list[Path]:
    return _files(ROOT, package)


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


def test_only_the_store_knows_key_names():
    assert key_schema_violations(ROOT, sorted(RULES)) == []


STORE_MUST_NOT_IMPORT = (
    "quota_engine.charging",
    "quota_engine.accounts.balance_actions",
    "quota_engine.accounts.provisioning",
)
"""The services above the store: it may import the models it stores, not these."""


def test_the_store_imports_no_service_above_it():
    violations = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in package_files("quota_engine/store")
        for name in sorted(imported_names(path, "quota_engine.store"))
        if name.startswith(STORE_MUST_NOT_IMPORT)
    ]
    assert violations == []


INNER_RULES: dict[str, tuple[str, ...]] = {
    "quota_engine/catalog": (
        "quota_engine.charging",
        "quota_engine.accounts",
        "quota_engine.store",
        "redis",
        "msgpack",
    ),
    "quota_engine/accounts": ("quota_engine.charging",),
    "ocs/api": ("protocol", "cext", "ocs.gy", "diameter"),
    "ocs/gy": ("ocs.api", "aiohttp"),
    "ocs/records": ("protocol", "cext", "ocs.gy"),
    "ocs/billing": ("protocol", "cext", "ocs.gy", "redis", "quota_engine.store"),
}
"""Sub-package -> the modules it must not import (prefixes): the catalog is a pure model
(no Redis, no charging), accounts are charged but do not charge, the HTTP API knows no
Diameter and the Gy application no HTTP, record export works from records, not from the
charging path, and billing from the exported segment files and its own database, never
from Redis."""


def inner_violations(root: Path) -> list[str]:
    violations = []
    for folder, forbidden in INNER_RULES.items():
        package = folder.replace("/", ".")
        for path in _files(root, folder):
            own = package if path.name == "__init__.py" else path.relative_to(root).with_suffix("")
            own_package = own if isinstance(own, str) else ".".join(own.parts[:-1])
            names = imported_names(path, own_package)
            violations.extend(
                f"{path.relative_to(root)} imports {prefix}"
                for prefix in forbidden
                if any(name == prefix or name.startswith(f"{prefix}.") for name in names)
            )
    return violations


def test_sub_packages_respect_their_rules():
    assert inner_violations(ROOT) == []


def test_inner_rule_checker_sees_a_violation(tmp_path):
    files = {
        "quota_engine/catalog/model.py": "import redis\nfrom quota_engine.money import round_up\n",
        "quota_engine/accounts/model.py": "from ..charging.engine import ChargingEngine\n",
        "ocs/api/sessions.py": "from protocol.dictionary import constants\n",
        "ocs/gy/notifier.py": "from ocs.api import errors\n",
        "ocs/records/reader.py": "from ocs.gy.translation import x\nimport cext.codec\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert inner_violations(tmp_path) == [
        "quota_engine/catalog/model.py imports redis",
        "quota_engine/accounts/model.py imports quota_engine.charging",
        "ocs/api/sessions.py imports protocol",
        "ocs/gy/notifier.py imports ocs.api",
        "ocs/records/reader.py imports cext",
        "ocs/records/reader.py imports ocs.gy",
    ]


def test_key_schema_checker_sees_a_violation(tmp_path):
    files = {
        "quota_engine/store/accounts.py": "from quota_engine.store import keys\n",
        "quota_engine/store/text.py": "from . import keys\nKEY = 'ocs:accounts'\n",
        "quota_engine/charging/engine.py": "from quota_engine.store import keys\n",
        "quota_engine/charging/sweeper.py": "from quota_engine.store.records import read_records\n",
        "quota_engine/accounts/model.py": "from quota_engine.store import keys as k\n",
        "quota_engine/accounts/relative.py": "from ..store.keys import account\n",
        "quota_engine/accounts/__init__.py": "from ..store import keys\n",
        "ocs/api/accounts.py": "import quota_engine.store.keys\n",
        "ocs/gy/notifier.py": "from quota_engine.store import events\n",
        "ocs/catalog_holder.py": "CHANNEL = 'ocs:catalog'\nKEY = f'ocs:acct:{{{1}}}'\n"
        "ERROR = 'ocs: error'\nNAME = f'{1}ocs:x'\n",
        "quota_engine/charging/rating.pyx": "from quota_engine.store cimport keys\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert key_schema_violations(tmp_path, ["ocs", "quota_engine"]) == [
        "ocs/api/accounts.py imports quota_engine.store.keys",
        "ocs/catalog_holder.py spells the key 'ocs:catalog'",
        "ocs/catalog_holder.py spells the key 'ocs:acct:{'",
        "quota_engine/accounts/__init__.py imports quota_engine.store.keys",
        "quota_engine/accounts/model.py imports quota_engine.store.keys",
        "quota_engine/accounts/relative.py imports quota_engine.store.keys",
        "quota_engine/charging/engine.py imports quota_engine.store.keys",
        "quota_engine/charging/rating.pyx imports quota_engine.store.keys",
    ]
    pyx = tmp_path / "quota_engine/accounts/bad.pyx"
    pyx.write_text("from quota_engine.store import keys, text\n")
    assert "quota_engine.store.keys" in imported_names(pyx, "quota_engine.accounts")


def test_every_package_has_files():
    for package in RULES:
        assert package_files(package), f"{package} has no source files"
