"""``ocs billing migrate|status`` and the ``[billing]`` setting."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy as sa

from ocs.billing.database import create_billing_engine, head_revision
from ocs.cli import main
from ocs.config import ConfigError, Settings, load_settings
from tests.helpers import ROOT


def test_migrate_creates_the_database_then_finds_it_current(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/billing.db"
    assert main(["billing", "status", f"--billing-database-url={url}"], env={}) == 1
    assert "revision none (empty)" in capsys.readouterr().out
    assert main(["billing", "migrate", f"--billing-database-url={url}"], env={}) == 0
    assert f"migrated from empty to {head_revision()}" in capsys.readouterr().out
    assert main(["billing", "migrate", f"--billing-database-url={url}"], env={}) == 0
    assert f"at revision {head_revision()} already" in capsys.readouterr().out
    assert main(["billing", "status", f"--billing-database-url={url}"], env={}) == 0


def test_migrate_on_postgresql_from_the_environment(postgres_url, capsys):
    env = {"OCS_BILLING_DATABASE_URL": postgres_url}
    assert main(["billing", "migrate"], env=env) == 0
    assert "migrated from empty" in capsys.readouterr().out
    assert main(["billing", "status"], env=env) == 0


def test_the_url_comes_from_the_config_file(tmp_path, capsys):
    config = tmp_path / "ocs.toml"
    config.write_text(f'[billing]\ndatabase_url = "sqlite:///{tmp_path}/from-file.db"\n')
    assert main(["billing", "migrate", "--config", str(config)], env={}) == 0
    assert (tmp_path / "from-file.db").is_file()


def test_the_default_is_a_sqlite_file_in_data(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert Settings().billing_database_url == "sqlite:///./data/billing.db"
    assert main(["billing", "migrate"], env={}) == 0
    assert (tmp_path / "data" / "billing.db").is_file()


def test_an_unknown_revision_fails_both_commands(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/billing.db"
    assert main(["billing", "migrate", f"--billing-database-url={url}"], env={}) == 0
    engine = create_billing_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = 'zz99'"))
    engine.dispose()
    capsys.readouterr()
    assert main(["billing", "migrate", f"--billing-database-url={url}"], env={}) == 2
    assert "'zz99', which this version of ocs does not know" in capsys.readouterr().err
    assert main(["billing", "status", f"--billing-database-url={url}"], env={}) == 2
    assert "unknown to this version" in capsys.readouterr().err


def test_an_unreachable_database_exits_2_without_showing_the_password(free_port, capsys):
    env = {"OCS_BILLING_DATABASE_URL": f"postgresql://ocs:pa55word@127.0.0.1:{free_port()}/b"}
    assert main(["billing", "migrate"], env=env) == 2
    err = capsys.readouterr().err
    assert "ocs billing migrate: billing database postgresql+psycopg://ocs:***@127.0.0.1" in err
    assert "pa55word" not in err


def test_an_action_is_required(capsys):
    assert main(["billing"], env={}) == 2
    assert "an action is required (migrate, status)" in capsys.readouterr().err


def test_a_password_on_the_command_line_is_refused(capsys):
    url = "postgresql://ocs:pa55word@db/billing"
    assert main(["billing", "migrate", f"--billing-database-url={url}"], env={}) == 2
    err = capsys.readouterr().err
    assert "do not put a password on the command line" in err
    assert "pa55word" not in err


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ocs:pa55word@db/billing",
        "postgresql://ocs@db/billing?password=pa55word&sslmode=require",
    ],
)
def test_the_password_is_hidden_wherever_settings_are_shown(url):
    settings = load_settings(env={"OCS_BILLING_DATABASE_URL": url})
    assert settings.billing_database_url == url
    assert "pa55word" not in repr(settings)
    assert "<hidden>" in settings.redacted()["billing_database_url"]
    assert "pa55word" not in str(settings.redacted())


@pytest.mark.parametrize(
    "url",
    ["mysql://db/billing", "sqlite://", "sqlite:///:memory:", "postgresql://db:99999/b", "x"],
)
def test_a_bad_url_is_refused_by_the_settings(url):
    with pytest.raises(ConfigError, match="billing.database_url|OCS_BILLING_DATABASE_URL"):
        load_settings(env={"OCS_BILLING_DATABASE_URL": url})


def test_the_cli_module_does_not_import_sqlalchemy():
    """The other commands start without loading SQLAlchemy and Alembic."""
    code = "import sys, ocs.cli; print('sqlalchemy' in sys.modules, 'alembic' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.split() == ["False", "False"]
