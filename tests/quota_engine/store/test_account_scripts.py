"""The account-side scripts of store/lua/: their files, the one bucket packer, the
one loader, and the table of what their statuses mean (accounts/errors.py)."""

from __future__ import annotations

import re

import pytest

from quota_engine.accounts.errors import (
    REFUSALS,
    AccountError,
    ActionRefusedError,
    ConflictError,
    NotFoundError,
    refusal,
)
from quota_engine.accounts.model import Account, Bucket
from quota_engine.catalog import load_demo_catalog
from quota_engine.store import scripts
from quota_engine.store.accounts import AccountStore
from quota_engine.store.scripts import (
    BALANCE_ACTION,
    CREDIT,
    LUA_DIR,
    PUT_BUCKET,
    RELEASE_IDENTITY,
    SET_STATUS,
    LuaScript,
    load_source,
)

ACCOUNT_SCRIPTS = [PUT_BUCKET, CREDIT, SET_STATUS, RELEASE_IDENTITY, BALANCE_ACTION]
BUCKET_WRITERS = [PUT_BUCKET, CREDIT, BALANCE_ACTION]


def header(script: LuaScript) -> str:
    """The leading comment block of the script's file."""
    lines = (LUA_DIR / script.name).read_text().splitlines()
    return "\n".join(line for line in lines[: lines.index("")] if line.startswith("--"))


@pytest.mark.parametrize("script", ACCOUNT_SCRIPTS, ids=lambda s: s.name)
def test_each_script_is_a_file_with_a_contract_header(script):
    text = header(script)
    assert text.startswith(f"-- {script.name}:")
    for part in ("-- KEYS", "-- ARGV:", "-- Returns:"):
        assert part in text, f"{script.name} header has no {part}"
    assert not re.search(r"^-- @include", script.source, re.M)


def test_there_is_one_bucket_packer_and_every_bucket_writer_includes_it():
    defining = [
        path.name
        for path in sorted(LUA_DIR.glob("*.lua"))
        if "local function pack_bucket(" in path.read_text()
    ]
    assert defining == ["pack_bucket.lua"]
    packer = load_source("pack_bucket.lua")
    for script in BUCKET_WRITERS:
        assert "-- @include pack_bucket.lua" in (LUA_DIR / script.name).read_text()
        assert packer in script.source
    assert packer in load_source("lib.lua")  # the charging scripts' packer is the same one
    assert packer in scripts.CCR.source


def test_every_refusal_is_a_status_its_script_documents():
    by_name = {script.name: script for script in ACCOUNT_SCRIPTS}
    assert set(REFUSALS) <= set(by_name)
    for name, statuses in REFUSALS.items():
        text = header(by_name[name])
        for status in statuses:
            assert f'"{status}"' in text, f"{name} does not document {status!r}"


def test_refusal_builds_the_error_of_the_table():
    error = refusal("balance_action.lua", "closed", account="a1")
    assert type(error) is ActionRefusedError
    assert (error.field, error.message) == ("account", "account 'a1' is closed")
    error = refusal("put_bucket.lua", "below_reserved", bucket="main", detail=5, amount=3)
    assert (
        type(error) is ConflictError
        and error.message == "bucket 'main' has 5 reserved, more than 3"
    )
    assert type(refusal("credit.lua", "no_bucket", account="a", bucket="b")) is NotFoundError
    unknown = refusal("credit.lua", "surprise")
    assert type(unknown) is AccountError and "surprise" in unknown.message


async def test_bucket_pack_in_python_and_lua_is_the_same_bytes(r):
    """Bucket.pack and pack_bucket.lua write the one stored form, nils included."""
    bucket = Bucket(id="data", kind="units", unit="octets", amount=7, services=("data",))
    lua = LuaScript(
        load_source("pack_bucket.lua")
        + "\nreturn pack_bucket({id = 'data', kind = 'units', unit = 'octets', amount = 7,"
        " reserved = 0, priority = 0, services = {'data'}})",
        "pack-test",
    )
    assert await lua(r) == bucket.pack()


async def test_account_scripts_reload_after_script_flush(r):
    store = AccountStore(r, catalog=load_demo_catalog())
    account = Account(id="a1", kind="prepaid", currency="EUR", plan="prepaid-basic")
    await store.create_account(account)
    await store.put_bucket("a1", Bucket(id="main", kind="money", amount=5))
    await r.script_flush()
    assert await store.set_status("a1", "suspended") == "active"
    assert await store.credit("a1", "main", 2, reason="x") == 7
    assert await r.script_exists(SET_STATUS.sha, CREDIT.sha) == [True, True]
