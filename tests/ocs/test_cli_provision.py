"""`ocs provision` and `ocs account show` against a real Redis, in-process via ocs.cli.main."""

from __future__ import annotations

import json
import textwrap

import pytest
import redis

from ocs.cli import main
from ocs.embedded_redis import EmbeddedRedis
from ocs.redis_store import running_embedded_url
from quota_engine.accounts.provisioning import DEMO_DATA_PATH
from quota_engine.catalog import DEMO_CATALOG_PATH
from quota_engine.store import keys

DOC = textwrap.dedent(
    f"""
    catalog = "{DEMO_CATALOG_PATH}"

    [[accounts]]
    id = "alice"
    kind = "prepaid"
    plan = "prepaid-basic"
    subscriptions = ["msisdn:491701234567", "imsi:262011234567890"]
    allowances = ["data-1gb"]

      [[accounts.buckets]]
      id = "main"
      amount = 12_345_678
    """
)


@pytest.fixture
def sync_redis(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def doc(tmp_path):
    path = tmp_path / "accounts.toml"
    path.write_text(DOC)
    return path


def run(capsys, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    code = main(list(argv), env={} if env is None else env)
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- provision


def test_provision_then_again_unchanged(capsys, redis_url, sync_redis, doc):
    code, out, err = run(capsys, "provision", str(doc), "--redis-url", redis_url)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "catalog demo-1: saved, activated"
    assert out.splitlines()[-1] == "changed"
    assert sync_redis.get(keys.subscriber("msisdn:491701234567")) == b"alice"
    dump = {k: sync_redis.dump(k) for k in sync_redis.keys("*")}
    code, out, err = run(capsys, "provision", str(doc), "--redis-url", redis_url)
    assert code == 0
    assert "account alice: unchanged" in out
    assert out.splitlines()[-1] == "unchanged: nothing to do"
    assert {k: sync_redis.dump(k) for k in sync_redis.keys("*")} == dump


def test_provision_invalid_document_exits_1_and_writes_nothing(capsys, redis_url, sync_redis, doc):
    doc.write_text(DOC.replace("12_345_678", "9_007_199_254_740_992") + '\nstatus = "x"\n')
    code, out, err = run(capsys, "provision", str(doc), "--redis-url", redis_url)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"ocs provision: {doc}: refused (2 problems):",
        "  accounts[0].buckets[0].status: unknown key",
        "  accounts[0].buckets[0].amount: must be an integer from 0 to 9007199254740991 "
        "(below 2**53)",
    ]
    # ocs:meta (the key schema) is recorded by the first command on an empty Redis
    assert sync_redis.keys("*") == [b"ocs:meta"]


def test_provision_identity_of_another_account_exits_1(capsys, redis_url, sync_redis, doc):
    assert run(capsys, "provision", str(doc), "--redis-url", redis_url)[0] == 0
    doc.write_text(DOC.replace('"alice"', '"bob"'))
    code, _, err = run(capsys, "provision", str(doc), "--redis-url", redis_url)
    assert code == 1
    assert "accounts[0].subscriptions[0]: msisdn:491701234567 belongs to account 'alice'" in err
    assert not sync_redis.exists(keys.account("bob"))


def test_provision_unreadable_document_exits_2(capsys, redis_url, tmp_path):
    code, _, err = run(capsys, "provision", str(tmp_path / "nope.toml"), "--redis-url", redis_url)
    assert code == 2
    assert f"ocs provision: {tmp_path / 'nope.toml'}: cannot read" in err
    bad = tmp_path / "bad.toml"
    bad.write_text("accounts = [")
    code, _, err = run(capsys, "provision", str(bad), "--redis-url", redis_url)
    assert code == 2 and "cannot parse" in err


def test_provision_unreachable_redis_exits_2(capsys, doc, free_port):
    url = f"redis://127.0.0.1:{free_port()}/0"
    code, _, err = run(capsys, "provision", str(doc), "--redis-url", url)
    assert code == 2
    assert f"ocs provision: cannot reach Redis at {url}" in err


def test_redis_url_from_env_and_config_file(capsys, redis_url, sync_redis, doc, tmp_path):
    assert run(capsys, "provision", str(doc), env={"OCS_REDIS_URL": redis_url})[0] == 0
    assert sync_redis.exists(keys.account("alice"))
    sync_redis.flushall()
    config = tmp_path / "ocs.toml"
    config.write_text(f'[redis]\nurl = "{redis_url}"\n')
    assert run(capsys, "provision", str(doc), "--config", str(config))[0] == 0
    assert sync_redis.exists(keys.account("alice"))


def test_bad_configuration_exits_2(capsys, doc):
    code, _, err = run(capsys, "provision", str(doc), env={"OCS_REDIS_URL": "http://x"})
    assert code == 2
    assert "OCS_REDIS_URL: must be a redis://, rediss:// or unix:// URL" in err
    code, _, err = run(capsys, "provision", str(doc), "--redis-url", "redis://u:secret@h/0")
    assert code == 2
    assert "do not put a password on the command line" in err and "secret" not in err


def test_without_url_the_private_redis_of_the_data_dir_is_used(capsys, doc, tmp_path):
    data_dir = tmp_path / "redis"
    code, out, err = run(capsys, "provision", str(doc), "--redis-data-dir", str(data_dir))
    assert (code, err) == (0, "")
    assert (data_dir / "appendonlydir").is_dir() or any(data_dir.glob("*.aof*"))
    assert running_embedded_url(data_dir) is None  # stopped after the command
    # a later command (here while a server holds the directory, as `ocs serve` would)
    with EmbeddedRedis(data_dir) as server:
        assert running_embedded_url(data_dir) == server.url
        code, out, err = run(capsys, "account", "show", "alice", "--redis-data-dir", str(data_dir))
        assert (code, err) == (0, "")
        assert "12.345678 EUR" in out


def test_running_embedded_url_without_a_server(tmp_path):
    assert running_embedded_url(tmp_path) is None
    (tmp_path / "embedded-redis.lock").write_text("1\n")  # pid 1 is not our redis-server
    assert running_embedded_url(tmp_path) is None


# --------------------------------------------------------------------------- account show


@pytest.fixture
def provisioned(capsys, redis_url, doc):
    assert run(capsys, "provision", str(doc), "--redis-url", redis_url)[0] == 0
    return redis_url


@pytest.mark.parametrize(
    "target", ["alice", "msisdn:491701234567", "491701234567", "262011234567890"]
)
def test_account_show_by_id_or_identity(capsys, provisioned, target):
    code, out, err = run(capsys, "account", "show", target, "--redis-url", provisioned)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "account alice"
    assert "  status          active" in lines
    assert "  imsi:262011234567890" in lines and "  msisdn:491701234567" in lines
    [main] = [line for line in lines if line.lstrip().startswith("main ")]
    assert main.split()[:4] == ["main", "money", "12.345678", "EUR"]
    assert main.rstrip().endswith("all")
    [data] = [line for line in lines if line.lstrip().startswith("data-1gb")]
    assert "1073741824 octets" in data and data.rstrip().endswith("data")


def test_account_show_json_has_exact_integers(capsys, provisioned, sync_redis):
    code, out, _ = run(capsys, "account", "show", "alice", "--json", "--redis-url", provisioned)
    assert code == 0
    shown = json.loads(out)
    assert shown["account"]["id"] == "alice" and shown["account"]["credit_limit"] == 0
    assert shown["identities"] == ["imsi:262011234567890", "msisdn:491701234567"]
    by_id = {b["id"]: b for b in shown["buckets"]}
    assert by_id["main"]["amount"] == by_id["main"]["available"] == 12_345_678
    assert by_id["data-1gb"]["unit"] == "octets" and by_id["data-1gb"]["services"] == ["data"]


def test_account_show_postpaid_credit_limit(capsys, redis_url):
    assert run(capsys, "provision", str(DEMO_DATA_PATH), "--redis-url", redis_url)[0] == 0
    code, out, _ = run(capsys, "account", "show", "491700000002", "--redis-url", redis_url)
    assert code == 0
    assert "  credit limit    100.00 EUR" in out.splitlines()


@pytest.mark.parametrize("target", ["bob", "491700000099", "msisdn:499999999999", "a{b}", "x:y"])
def test_account_show_unknown_exits_1(capsys, provisioned, target):
    code, out, err = run(capsys, "account", "show", target, "--redis-url", provisioned)
    assert (code, out) == (1, "")
    assert err == f"ocs account show: no account or identity {target!r}\n"


def test_account_without_action_is_a_usage_error(capsys):
    code, _, err = run(capsys, "account")
    assert code == 2 and "an action is required (create, show, bar)" in err
    code, _, err = run(capsys, "provision")
    assert code == 2 and "required: FILE" in err
