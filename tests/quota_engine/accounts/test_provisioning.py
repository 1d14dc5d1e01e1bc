"""quota_engine.accounts.provisioning against a real Redis: validated whole, applied idempotently."""

from __future__ import annotations

import json
import logging
import tomllib

import msgpack
import pytest

from quota_engine.accounts.model import Bucket
from quota_engine.accounts.provisioning import (
    CONCURRENCY,
    DEMO_DATA_PATH,
    ProvisioningError,
    provision,
    provision_demo,
    provision_file,
    read_document,
)
from quota_engine.catalog import DEMO_CATALOG_PATH
from quota_engine.store import keys
from quota_engine.store.accounts import AccountStore
from quota_engine.store.catalogs import CatalogStore, demo_catalog_document
from tests.quota_engine.catalogs import base_catalog

NOW = 1_741_338_000
DAY = 86_400


async def snapshot(r) -> dict[bytes, bytes]:
    """Every key with its DUMP: equal snapshots mean byte-identical data."""
    return {key: await r.dump(key) for key in sorted(await r.keys("*"))}


def account(i: int, **extra) -> dict:
    return {
        "id": f"acc-{i}",
        "kind": "prepaid",
        "plan": "prepaid-basic",
        "subscriptions": [f"msisdn:4917000001{i:02d}"],
        "buckets": [{"id": "main", "amount": 1_000_000 * i}],
        **extra,
    }


def document(*accounts: dict) -> dict:
    return {"catalog": demo_catalog_document(), "accounts": list(accounts)}


# --------------------------------------------------------------------------- the demo data


async def test_demo_data_provisions_the_documented_subscribers(r):
    report = await provision_file(r, DEMO_DATA_PATH, now=NOW)
    assert report.catalog_version == "demo-1" and report.catalog == "saved, activated"
    store = AccountStore(r)
    assert await store.resolve("msisdn:491700000001") == "demo-prepaid"
    assert await store.resolve("imsi:001010000000001") == "demo-prepaid"
    assert await store.resolve("msisdn:491700000002") == "demo-postpaid"
    assert await store.resolve("msisdn:499999999999") is None  # answers 5030
    prepaid = await store.get_account("demo-prepaid")
    assert (prepaid.kind, prepaid.plan, prepaid.currency, prepaid.created) == (
        "prepaid",
        "prepaid-basic",
        "EUR",
        NOW,
    )
    assert await store.buckets("demo-prepaid") == [
        Bucket(id="main", kind="money", amount=10_000_000)
    ]
    postpaid = await store.get_account("demo-postpaid")
    assert (postpaid.kind, postpaid.plan, postpaid.credit_limit) == (
        "postpaid",
        "postpaid-standard",
        100_000_000,
    )
    assert await r.smembers(keys.ACCOUNTS) == {b"demo-prepaid", b"demo-postpaid"}


async def test_demo_money_covers_data_voice_and_sms(r):
    await provision_file(r, DEMO_DATA_PATH, now=NOW)
    catalog = await CatalogStore(r).active()
    [main] = await AccountStore(r).buckets("demo-prepaid")
    assert main.services == ()  # every service
    for context, rating_group in (
        ("32251@3gpp.org", 10),
        ("32260@3gpp.org", 100),
        ("32274@3gpp.org", 200),
    ):
        service = catalog.find_service(context, rating_group)
        assert catalog.plan("prepaid-basic").tariff_for(service.id) is not None


# --------------------------------------------------------------------------- idempotency


async def test_twice_changes_nothing_byte_for_byte(r):
    first = await provision(r, document(account(1, allowances=["data-1gb"]), account(2)), now=NOW)
    assert first.changed
    before = await snapshot(r)
    second = await provision(
        r, document(account(1, allowances=["data-1gb"]), account(2)), now=NOW + 3600
    )
    assert not second.changed
    assert await snapshot(r) == before
    assert second.lines() == [
        "catalog demo-1: unchanged",
        "account acc-1: unchanged",
        "account acc-2: unchanged",
        "2 accounts: 0 created, 0 updated, 0 kept, 2 unchanged; 0 identities added; "
        "0 buckets created, 0 replaced",
        "unchanged: nothing to do",
    ]


async def test_first_run_report(r):
    report = await provision(r, document(account(1, allowances=["data-1gb"])), now=NOW)
    assert report.lines() == [
        "catalog demo-1: saved, activated",
        "account acc-1: created; identities added: msisdn:491700000101; "
        "buckets main created, data-1gb created",
        "1 account: 1 created, 0 updated, 0 kept, 0 unchanged; 1 identities added; "
        "2 buckets created, 0 replaced",
        "changed",
    ]


async def test_existing_account_that_differs_is_kept_unless_replace(r, redis_url):
    await provision(r, document(account(1)), now=NOW)
    store = AccountStore(r)
    await store.set_status("acc-1", "barred")
    report = await provision(r, document(account(1)), now=NOW)
    assert report.accounts[0].outcome == "kept"
    assert report.lines()[1] == "account acc-1: kept (differs in status; replace = true overwrites)"
    assert (await store.get_account("acc-1")).status == "barred"
    report = await provision(r, document(account(1, replace=True)), now=NOW + 10)
    assert report.accounts[0].outcome == "updated"
    got = await store.get_account("acc-1")
    assert (got.status, got.created) == ("active", NOW)


async def test_buckets_are_left_alone_unless_replace_which_keeps_reserved(r):
    await provision(r, document(account(1)), now=NOW)
    field = keys.buckets("acc-1")
    used = msgpack.unpackb(await r.hget(field, "main"))
    await r.hset(field, "main", msgpack.packb({**used, "amount": 400_000, "reserved": 300_000}))
    report = await provision(r, document(account(1)), now=NOW)
    assert report.accounts[0].buckets == {"main": "unchanged"}
    assert (await AccountStore(r).bucket("acc-1", "main")).amount == 400_000
    refill = account(1, buckets=[{"id": "main", "amount": 5_000_000, "replace": True}])
    report = await provision(r, document(refill), now=NOW)
    assert report.accounts[0].buckets == {"main": "replaced"}
    main = await AccountStore(r).bucket("acc-1", "main")
    assert (main.amount, main.reserved, main.available) == (5_000_000, 300_000, 4_700_000)
    again = await provision(r, document(refill), now=NOW)
    assert not again.changed


async def test_allowance_buckets(r):
    await provision(r, document(account(1, allowances=["data-1gb"])), now=NOW)
    bucket = await AccountStore(r).bucket("acc-1", "data-1gb")
    assert bucket == Bucket(
        id="data-1gb",
        kind="units",
        unit="octets",
        amount=1_073_741_824,
        valid_from=NOW,
        valid_to=NOW + 30 * DAY,
        services=("data",),
    )


async def test_bucket_fields_and_times(r):
    buckets = [
        {"id": "main", "amount": 0},
        {
            "id": "promo",
            "kind": "money",
            "amount": 2_000_000,
            "priority": 1,
            "services": ["voice", "sms"],
            "valid_from": "2025-03-01T00:00:00+00:00",
            "valid_to": 1_750_000_000,
        },
        {
            "id": "minutes",
            "kind": "units",
            "unit": "seconds",
            "amount": 6000,
            "services": ["voice"],
        },
    ]
    await provision(r, document(account(1, buckets=buckets)), now=NOW)
    promo = await AccountStore(r).bucket("acc-1", "promo")
    assert (promo.valid_from, promo.valid_to, promo.services, promo.priority) == (
        1_740_787_200,
        1_750_000_000,
        ("voice", "sms"),
        1,
    )


async def test_toml_datetimes(r, tmp_path):
    path = tmp_path / "doc.toml"
    path.write_text(
        f'catalog = "{DEMO_CATALOG_PATH}"\n'
        '[[accounts]]\nid = "a"\nkind = "prepaid"\nplan = "prepaid-basic"\n'
        '[[accounts.buckets]]\nid = "main"\namount = 1\nvalid_to = 2025-03-01T00:00:00Z\n'
    )
    await provision_file(r, path, now=NOW)
    assert (await AccountStore(r).bucket("a", "main")).valid_to == 1_740_787_200


async def test_identity_added_to_an_existing_account(r):
    await provision(r, document(account(1)), now=NOW)
    more = account(1, subscriptions=["msisdn:491700000101", "nai:one@example.net"])
    report = await provision(r, document(more), now=NOW)
    assert report.accounts[0].identities_added == ["nai:one@example.net"]
    assert report.accounts[0].outcome == "unchanged"


# --------------------------------------------------------------------------- validated whole


async def test_a_bad_account_3_writes_nothing(r):
    bad = account(3, buckets=[{"id": "main", "amount": 2**53}])
    doc = document(account(0), account(1), account(2), bad, account(4))
    with pytest.raises(ProvisioningError) as exc:
        await provision(r, doc, now=NOW)
    assert exc.value.problems == [
        "accounts[3].buckets[0].amount: must be an integer from 0 to 9007199254740991 (below 2**53)"
    ]
    assert await r.keys("*") == []


async def test_every_problem_is_reported_with_its_path(r):
    doc = {
        "catalog": demo_catalog_document(),
        "colour": "blue",
        "accounts": [
            {"kind": "prepaid", "plan": "prepaid-basic", "nickname": "x"},
            account(1, subscriptions=["msisdn:+491700000001", "imsi:123"], replace="yes"),
            account(2, plan="gold", allowances=["data-1gb"]),
            account(3, subscriptions=["msisdn:491700000104"], allowances=["nope"]),
            account(4, subscriptions=["msisdn:491700000104"], status="closed"),
            account(3, kind="postpaid", plan="postpaid-standard", credit_limit=-5),
            account(
                6,
                buckets=[
                    {"id": "main", "amount": 1, "unit": "octets"},
                    {
                        "id": "m",
                        "kind": "units",
                        "unit": "octets",
                        "amount": 1,
                        "services": ["voice"],
                    },
                    {"id": "main", "amount": 1},
                    {"amount": 1, "colour": "red"},
                    {"id": "t", "amount": 1, "valid_to": "soon"},
                ],
            ),
        ],
    }
    with pytest.raises(ProvisioningError) as exc:
        await provision(r, doc, now=NOW)
    assert exc.value.problems == [
        "colour: unknown key",
        "accounts[0].nickname: unknown key",
        "accounts[0].id: is required",
        "accounts[1].replace: must be true or false",
        "accounts[1].subscriptions[0]: msisdn must be an E.164 number: 7 to 15 digits, "
        "no '+', got '+491700000001'",
        "accounts[1].subscriptions[1]: imsi must be an IMSI: 15 digits, got '123'",
        "accounts[2].plan: unknown plan 'gold' in catalog demo-1 "
        "(plans: prepaid-basic, postpaid-standard)",
        "accounts[3].allowances[0]: plan 'prepaid-basic' has no allowance 'nope' "
        "(allowances: data-1gb)",
        "accounts[4].status: must be one of active, suspended, barred",
        "accounts[4].subscriptions[0]: msisdn:491700000104 is also listed at "
        "accounts[3].subscriptions[0]",
        "accounts[5].credit_limit: must be an integer from 0 to 9007199254740991 (micro-units)",
        "accounts[5].id: duplicate account 'acc-3' (also accounts[3])",
        "accounts[6].buckets[0].unit: a money bucket has no unit (its unit is the account currency)",
        "accounts[6].buckets[1].services[0]: service 'voice' is counted in seconds",
        "accounts[6].buckets[2].id: duplicate bucket 'main' (also accounts[6].buckets[0])",
        "accounts[6].buckets[3].colour: unknown key",
        "accounts[6].buckets[3].id: is required",
        "accounts[6].buckets[4].valid_to: must be Unix seconds or an ISO 8601 time with an offset",
    ]
    assert await r.keys("*") == []


async def test_problems_found_in_redis_also_stop_everything(r):
    await provision(r, document(account(1)), now=NOW)
    before = await snapshot(r)
    thief = account(2, subscriptions=["msisdn:491700000101"])  # acc-1's number
    orphan = account(3, parent="ghost")
    later_parent = account(4, parent="acc-5")
    changed_catalog = demo_catalog_document()
    changed_catalog["currency"] = "EUR"
    changed_catalog["minor_digits"] = 3
    doc = {"catalog": changed_catalog, "accounts": [thief, orphan, later_parent, account(5)]}
    with pytest.raises(ProvisioningError) as exc:
        await provision(r, doc, now=NOW)
    assert exc.value.problems == [
        "catalog.version: version 'demo-1' is already saved with a different document; "
        "give the changed catalog a new version",
        "accounts[0].subscriptions[0]: msisdn:491700000101 belongs to account 'acc-1'; "
        "remove it there first",
        "accounts[1].parent: no account 'ghost' in Redis or earlier in the document",
        "accounts[2].parent: no account 'acc-5' in Redis or earlier in the document",
    ]
    assert await snapshot(r) == before


async def test_parents_earlier_in_the_document_or_in_redis(r):
    await provision(r, document(account(1), account(2, parent="acc-1")), now=NOW)
    await provision(r, document(account(3, parent="acc-2")), now=NOW)
    assert (await AccountStore(r).get_account("acc-3")).parent == "acc-2"


async def test_replace_below_the_reservation_is_refused_before_writing(r):
    await provision(r, document(account(1)), now=NOW)
    used = msgpack.unpackb(await r.hget(keys.buckets("acc-1"), "main"))
    await r.hset(keys.buckets("acc-1"), "main", msgpack.packb({**used, "reserved": 900_000}))
    before = await snapshot(r)
    doc = document(account(1, buckets=[{"id": "main", "amount": 10, "replace": True}]), account(2))
    with pytest.raises(ProvisioningError) as exc:
        await provision(r, doc, now=NOW)
    assert exc.value.problems == ["accounts[0].buckets[0].amount: below the 900000 reserved now"]
    assert await snapshot(r) == before


async def test_without_a_catalog_the_active_one_is_used(r):
    with pytest.raises(ProvisioningError) as exc:
        await provision(r, {"accounts": [account(1)]})
    assert exc.value.problems == [
        "catalog: no catalog is active in Redis; add a catalog to the document"
    ]
    catalogs = CatalogStore(r)
    await catalogs.activate(await catalogs.save(demo_catalog_document()))
    report = await provision(r, {"accounts": [account(1)]}, now=NOW)
    assert report.catalog is None and report.accounts[0].outcome == "created"


async def test_an_invalid_inline_catalog_is_reported_under_catalog(r):
    bad = base_catalog()
    bad["currency"] = "euro"
    with pytest.raises(ProvisioningError) as exc:
        await provision(r, {"catalog": bad, "accounts": []})
    assert exc.value.problems == [
        "catalog.currency: must be an ISO 4217 code (three capital letters)"
    ]


async def test_catalog_path_is_relative_to_the_document(r, tmp_path):
    (tmp_path / "cat.json").write_text(json.dumps(base_catalog()))
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps({"catalog": "cat.json", "accounts": []}))
    report = await provision_file(r, doc)
    assert report.catalog_version == "t1"
    assert await CatalogStore(r).active_version() == "t1"
    doc.write_text(json.dumps({"catalog": "missing.toml"}))
    with pytest.raises(ProvisioningError) as exc:
        await provision_file(r, doc)
    assert exc.value.problems[0].startswith(f"catalog: {tmp_path / 'missing.toml'}: cannot read")


def test_read_document_errors(tmp_path):
    cases = {
        "a.toml": ("x = ", "cannot parse"),
        "a.json": ("[1, 2]", "the document must be a table"),
        "a.txt": ("", "unknown format '.txt'"),
        "a.yaml": ("a: 1", "PyYAML" if not _has_yaml() else None),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        if message is None:
            assert read_document(path) == {"a": 1}
            continue
        with pytest.raises(ProvisioningError) as exc:
            read_document(path)
        assert message in exc.value.problems[0] and str(path) in exc.value.problems[0]
    with pytest.raises(ProvisioningError, match="cannot read"):
        read_document(tmp_path / "absent.toml")


def _has_yaml() -> bool:
    try:
        import yaml  # noqa: F401
    except ImportError:
        return False
    return True


def test_demo_data_file_is_valid_toml_without_unknown_keys():
    data = tomllib.loads(DEMO_DATA_PATH.read_text())
    assert [a["id"] for a in data["accounts"]] == ["demo-prepaid", "demo-postpaid"]


# --------------------------------------------------------------------------- provision_demo


async def test_provision_demo_installs_catalog_and_subscribers_idempotently(r):
    await provision_demo(r)
    assert await CatalogStore(r).active_version() == "demo-1"
    assert await AccountStore(r).resolve("msisdn:491700000001") == "demo-prepaid"
    before = await snapshot(r)
    await provision_demo(r)
    assert await snapshot(r) == before


async def test_provision_demo_never_replaces_an_operator_catalog(r, caplog):
    catalogs = CatalogStore(r)
    await catalogs.activate(await catalogs.save(base_catalog()))  # plans without the demo ones
    with caplog.at_level(logging.WARNING):
        await provision_demo(r)
    assert await catalogs.active_version() == "t1"
    assert await AccountStore(r).get_account("demo-prepaid") is None
    assert "demo subscribers not provisioned: problems at accounts[0].plan" in caplog.text


async def test_provision_demo_leaves_changed_demo_accounts_alone(r):
    await provision_demo(r)
    store = AccountStore(r)
    await store.set_status("demo-prepaid", "barred")
    await store.credit("demo-prepaid", "main", 5, reason="test")
    await provision_demo(r)
    assert (await store.get_account("demo-prepaid")).status == "barred"
    assert (await store.bucket("demo-prepaid", "main")).amount == 10_000_005


async def test_provision_demo_logs_a_moved_demo_identity(r, caplog):
    await provision_demo(r)
    store = AccountStore(r)
    await store.remove_subscription("demo-prepaid", "msisdn:491700000001")
    await store.add_subscription("demo-postpaid", "msisdn:491700000001")
    with caplog.at_level(logging.WARNING):
        await provision_demo(r)  # no exception
    assert "problems at accounts[0].subscriptions[0]" in caplog.text
    assert "491700000001" not in caplog.text  # no identities in clear in logs


async def test_provision_demo_survives_a_changed_demo_catalog_under_the_same_version(r, caplog):
    changed = demo_catalog_document()
    changed["holidays"] = []
    catalogs = CatalogStore(r)
    await catalogs.activate(await catalogs.save(changed))  # an older "demo-1"
    with caplog.at_level(logging.WARNING):
        await provision_demo(r)
    assert "demo catalog not installed" in caplog.text
    assert await AccountStore(r).resolve("msisdn:491700000001") == "demo-prepaid"


# --------------------------------------------------------------------------- bulk documents


async def test_a_bulk_document_is_applied_whole_and_reported_in_document_order(r):
    # more accounts than are worked on at once, with parent chains inside and across
    # the chunks: a child must never be created before its parent
    count = 3 * CONCURRENCY + 5
    accounts = [account(i, parent=f"acc-{i - 1}" if i % 3 else None) for i in range(count)]
    report = await provision(r, document(*accounts), now=NOW)
    assert [a.id for a in report.accounts] == [f"acc-{i}" for i in range(count)]
    assert all(a.outcome == "created" for a in report.accounts)
    store = AccountStore(r)
    for i in range(count):
        assert (await store.get_account(f"acc-{i}")).parent == (f"acc-{i - 1}" if i % 3 else None)
        assert await store.resolve(f"msisdn:4917000001{i:02d}") == f"acc-{i}"
    again = await provision(r, document(*accounts), now=NOW)
    assert {a.outcome for a in again.accounts} == {"unchanged"}


async def test_problems_of_a_bulk_document_come_in_document_order(r):
    count = 2 * CONCURRENCY
    await provision(r, document(*(account(i) for i in range(count))), now=NOW)
    # every second account claims an identity of an existing account. The first one
    # claims it after ten fresh identities, so its check, run alongside the others,
    # finds its problem last: the report must still list it first.
    fresh = [f"msisdn:4918{n:08d}" for n in range(10)]
    moved = [
        {
            **account(count + i),
            "subscriptions": [*(fresh if i == 1 else []), f"msisdn:4917000001{i:02d}"],
        }
        if i % 2
        else account(count + i)
        for i in range(1, count)
    ]
    with pytest.raises(ProvisioningError) as caught:
        await provision(r, document(*moved), now=NOW)
    paths = [problem.split(":")[0] for problem in caught.value.problems]
    assert paths == sorted(paths, key=lambda p: int(p.split("[")[1].split("]")[0]))
    assert len(paths) == count // 2


# --------------------------------------------------------------------------- billing preferences, plan changes


async def test_billing_preferences_are_provisioned_and_idempotent(r):
    parent = {"id": "corp", "kind": "postpaid", "plan": "postpaid-standard"}
    child = {
        **parent,
        "id": "line-1",
        "parent": "corp",
        "tax_exempt": True,
        "bill_separately": True,
        "itemisation": "summary",
    }
    await provision(r, document(parent, child), now=NOW)
    got = await AccountStore(r).get_account("line-1")
    assert (got.tax_exempt, got.bill_separately, got.itemisation) == (True, True, "summary")
    before = await snapshot(r)
    report = await provision(r, document(parent, child), now=NOW + 5)
    assert not report.changed and await snapshot(r) == before
    report = await provision(r, document(parent, {**child, "tax_exempt": False}), now=NOW)
    assert report.accounts[1].outcome == "kept"
    assert report.accounts[1].differences == ["tax_exempt"]


async def test_bad_billing_preferences_are_reported_with_their_paths(r):
    doc = document(account(1, tax_exempt="yes", bill_separately=1, itemisation="full"))
    with pytest.raises(ProvisioningError) as exc:
        await provision(r, doc, now=NOW)
    assert exc.value.problems == [
        "accounts[0].tax_exempt: must be true or false",
        "accounts[0].bill_separately: must be true or false",
        "accounts[0].itemisation: must be one of detailed, summary",
    ]
    assert await r.keys("*") == []


async def test_replace_with_another_plan_is_a_plan_change_dated_now(r):
    catalog = demo_catalog_document()
    catalog["version"] = "demo-plans"
    catalog["plans"].append({**catalog["plans"][0], "id": "prepaid-plus"})
    await provision(r, {"catalog": catalog, "accounts": [account(1)]}, now=NOW)
    again = {"catalog": catalog, "accounts": [account(1, plan="prepaid-plus", replace=True)]}
    report = await provision(r, again, now=NOW + DAY)
    assert report.accounts[0].outcome == "updated"
    entries = [json.loads(e) for e in await r.lrange(keys.history("acc-1"), 0, -1)]
    assert entries == [
        {
            "type": "plan_change",
            "previous": "prepaid-basic",
            "plan": "prepaid-plus",
            "time": NOW + DAY,
        }
    ]
    await provision(r, again, now=NOW + 2 * DAY)  # the same plan again: no entry
    assert await r.llen(keys.history("acc-1")) == 1
