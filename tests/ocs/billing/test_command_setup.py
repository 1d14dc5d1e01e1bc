"""The billing commands' shared start (``ocs.config.command_settings`` and
``ocs.billing.database.open_for_command``): an invalid configuration and a billing
database that cannot be used are said on stderr, named by the command, and exit 2,
before any work."""

from __future__ import annotations

import pytest

from ocs.cli import main

COMMANDS = [
    ("ocs invoice list", ["invoice", "list"]),
    ("ocs payment list", ["payment", "list"]),
    ("ocs payment dunning", ["payment", "dunning", "--dry-run"]),
    ("ocs billing status", ["billing", "status"]),
    ("ocs bill-run", ["bill-run", "--period", "2026-11"]),
    ("ocs bill-audit", ["bill-audit", "--period", "2026-11", "--no-accounts"]),
]


@pytest.mark.parametrize(("name", "argv"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_an_invalid_configuration_exits_2_naming_the_command(name, argv, tmp_path, capsys):
    config = tmp_path / "ocs.toml"
    config.write_text("[billing]\ndatabase_url = 5\n")
    assert main([*argv, "--config", str(config)], env={}) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{name}: invalid configuration:\n  ")
    assert "billing.database_url" in err


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        c
        for c in COMMANDS
        if c[0] in ("ocs invoice list", "ocs payment list", "ocs payment dunning")
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_an_unmigrated_database_exits_2_naming_it(name, argv, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    (tmp_path / "empty.db").touch()
    assert main([*argv, "--billing-database-url", url], env={}) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{name}: billing database {url}: ")
