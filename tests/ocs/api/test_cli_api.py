"""The client commands (`ocs catalog load`, `ocs account create|show|bar`, `ocs topup`)
against a live API server; `ocs account show` over the API equals the direct path."""

from __future__ import annotations

import json

import pytest

from ocs.cli import main
from quota_engine.catalog import DEMO_CATALOG_PATH
from tests.helpers import get_free_port
from tests.ocs.api.conftest import ADMIN_TOKEN, VIEWER_TOKEN


@pytest.fixture
def env(live):
    return {"OCS_API_URL": live.url, "OCS_API_TOKEN": ADMIN_TOKEN}


def run(capsys, env, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), env=env)
    out, err = capsys.readouterr()
    return code, out, err


def test_catalog_load_uploads_and_activates(capsys, env, tmp_path):
    path = tmp_path / "catalog.toml"
    path.write_text(
        DEMO_CATALOG_PATH.read_text().replace('version = "demo-1"', 'version = "cli-1"')
    )
    assert run(capsys, env, "catalog", "load", str(path)) == (
        0,
        "catalog cli-1: saved, activated\n",
        "",
    )
    code, out, _ = run(capsys, env, "catalog", "load", str(path))
    assert (code, out) == (0, "catalog cli-1: already saved, already active\n")
    demo = run(capsys, env, "catalog", "load", str(DEMO_CATALOG_PATH), "--no-activate")
    assert demo[:2] == (0, "catalog demo-1: already saved\n")
    assert run(capsys, env, "catalog", "load", str(DEMO_CATALOG_PATH))[1] == (
        "catalog demo-1: already saved, activated\n"
    )


def test_catalog_load_errors(capsys, env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('version = "x"\ncurrency = "euro"\n')
    code, _, err = run(capsys, env, "catalog", "load", str(bad))
    assert code == 1 and "refused (422): invalid catalog" in err and "currency:" in err
    code, _, err = run(capsys, env, "catalog", "load", str(tmp_path / "missing.toml"))
    assert code == 2 and "cannot read" in err
    code, _, err = run(capsys, env, "catalog")
    assert code == 2 and "an action is required (load)" in err


def test_account_create_show_bar_topup(capsys, env, redis_server):
    code, out, err = run(
        capsys, env, "account", "create", "cli-alice", "--plan", "prepaid-basic",
        "--identity", "msisdn:491709990001", "--balance", "2.50EUR",
    )  # fmt: skip
    assert (code, out, err) == (0, "account cli-alice: created\n", "")
    again = run(capsys, env, "account", "create", "cli-alice", "--plan", "prepaid-basic", "--json")
    assert again[0] == 0 and json.loads(again[1])["outcome"] == "unchanged"
    code, _, err = run(
        capsys, env, "account", "create", "cli-alice", "--plan", "prepaid-basic",
        "--bill-cycle-day", "9",
    )  # fmt: skip
    assert code == 1 and "refused (409)" in err and "bill_cycle_day" in err

    code, out, _ = run(
        capsys, env, "topup", "cli-alice", "1.25EUR", "--key", "t1", "--reason", "shop"
    )
    assert code == 0
    assert out == "topped up cli-alice: +1.25 EUR into main, now 3.75 EUR (key t1)\n"
    code, out, _ = run(
        capsys, env, "topup", "cli-alice", "1.25EUR", "--key", "t1", "--reason", "shop"
    )
    assert code == 0 and "nothing credited now, first result shown" in out and "3.75 EUR" in out
    code, out, _ = run(capsys, env, "topup", "cli-alice", "10000", "--key", "t2", "--json")
    assert code == 0 and json.loads(out)["resulting_amount"] == 3_760_000

    # show over the API prints what the direct path prints
    for target in ("cli-alice", "msisdn:491709990001", "491709990001"):
        code, over_api, _ = run(capsys, env, "account", "show", target)
        assert code == 0
        direct_env = {}
        direct = run(capsys, direct_env, "account", "show", target, "--redis-url", redis_server.url)
        assert over_api == direct[1]
        assert "3.76 EUR" in over_api
    api_json = run(capsys, env, "account", "show", "cli-alice", "--json")[1]
    direct_json = run(
        capsys, {}, "account", "show", "cli-alice", "--json", "--redis-url", redis_server.url
    )[1]
    assert json.loads(api_json) == json.loads(direct_json)
    code, _, err = run(capsys, env, "account", "show", "nobody")
    assert code == 1 and "no account or identity 'nobody'" in err

    assert run(capsys, env, "account", "bar", "cli-alice") == (
        0,
        "account cli-alice: barred (open sessions are aborted)\n",
        "",
    )
    code, out, _ = run(capsys, env, "account", "show", "cli-alice")
    assert "status          barred" in out


def test_topup_errors(capsys, env, live):
    code, _, err = run(capsys, env, "topup", "nobody", "5", "--key", "k")
    assert code == 1 and "refused (404)" in err
    code, _, err = run(capsys, env, "topup", "demo-prepaid", "5.0", "--key", "k")
    assert code == 2 and "5.00EUR" in err
    code, _, err = run(capsys, env, "topup", "demo-prepaid", "5USD", "--key", "k")
    assert code == 1 and "refused (422)" in err and "unit: bucket 'main' is money EUR" in err
    code, _, err = run(capsys, env, "topup", "demo-prepaid", "5", "--key", "bad key")
    assert code == 1 and "Idempotency-Key" in err
    code, _, err = run(
        capsys, {"OCS_API_URL": live.url}, "topup", "demo-prepaid", "5", "--key", "k"
    )
    assert code == 2 and "refused (401)" in err
    viewer = {"OCS_API_URL": live.url, "OCS_API_TOKEN": VIEWER_TOKEN}
    code, _, err = run(capsys, viewer, "account", "bar", "demo-prepaid")
    assert code == 2 and "refused (403)" in err
    dead = {"OCS_API_TOKEN": ADMIN_TOKEN}
    url = f"http://127.0.0.1:{get_free_port()}"
    code, _, err = run(capsys, dead, "account", "bar", "demo-prepaid", "--api-url", url)
    assert code == 2 and "cannot reach the API" in err


def test_api_settings_from_the_config_file(capsys, live, tmp_path):
    config = tmp_path / "ocs.toml"
    config.write_text(f'[api]\nurl = "{live.url}"\ntoken = "{ADMIN_TOKEN}"\n')
    code, out, _ = run(capsys, {}, "account", "show", "demo-postpaid", "--config", str(config))
    assert code == 0 and "credit limit    100.00 EUR" in out
    code, _, err = run(capsys, {"OCS_API_URL": "ftp://x"}, "topup", "a", "1", "--key", "k")
    assert code == 2 and "OCS_API_URL: must be an http:// or https:// URL" in err
