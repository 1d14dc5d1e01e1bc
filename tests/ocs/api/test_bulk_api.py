"""Bulk provisioning: NDJSON streamed in chunks through the provisioning code."""

from __future__ import annotations

import json

from ocs.api import bulk
from tests.ocs.api.conftest import EUR

PATH = "/v1/bulk/accounts"


def line(i: int, **extra) -> str:
    entry = {
        "id": f"load-{i:05d}",
        "kind": "prepaid",
        "plan": "prepaid-basic",
        "subscriptions": [f"msisdn:4917{i:09d}"],
        "buckets": [{"id": "main", "amount": 5 * EUR}],
        **extra,
    }
    return json.dumps(entry)


async def post_lines(http, lines: list[str] | bytes):
    data = lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode()
    return await http.call(
        "POST", PATH, data=data, headers={"Content-Type": "application/x-ndjson"}
    )


async def test_bulk_applies_good_lines_and_reports_bad_ones(http, monkeypatch):
    monkeypatch.setattr(bulk, "CHUNK", 50)
    lines = [line(i) for i in range(120)]
    lines[3] = "{not json"
    lines[10] = json.dumps({"id": "x", "kind": "gold"})
    lines[60] = line(60, plan="nope")
    lines[61] = line(61, subscriptions=["msisdn:4917000000000"])  # line 1's identity
    lines.insert(30, "   ")  # blank lines are skipped
    reply = await post_lines(http, lines)
    assert reply.status == 200, reply.body
    result = reply.body
    assert result["lines"] == 121
    assert (result["accounts"], result["created"], result["failed"]) == (116, 116, 4)
    errors = {e["line"]: {p["field"] for p in e["problems"]} for e in result["errors"]}
    assert errors == {4: {"body"}, 11: {"kind", "plan"}, 62: {"plan"}, 63: {"subscriptions[0]"}}
    listed = await http.get("/v1/accounts", params={"limit": 1})
    assert listed.headers["X-Total-Count"] == "116"
    account = await http.get("/v1/accounts/load-00119")
    assert account.body["subscriptions"] == ["msisdn:4917000000119"]

    # sent again (fixed): the applied lines are unchanged, the one that was bad is created
    again = await post_lines(http, [line(i) for i in range(5)])
    assert (again.body["unchanged"], again.body["created"], again.body["failed"]) == (4, 1, 0)


async def test_bulk_streams_a_body_larger_than_the_json_limit(http):
    async def body():
        yield (line(1) + "\n").encode()
        for _ in range(100):
            yield b" \n" * 30_000  # 6 MB in all, more than a JSON body may be
        yield line(2).encode()  # no final newline

    reply = await http.call("POST", PATH, data=body())
    assert reply.status == 200
    assert (reply.body["accounts"], reply.body["failed"]) == (2, 0)


async def test_bulk_caps_the_error_list(http, monkeypatch):
    monkeypatch.setattr(bulk, "MAX_ERRORS", 3)
    reply = await post_lines(http, ["[]"] * 5)
    assert (reply.body["failed"], len(reply.body["errors"]), reply.body["errors_truncated"]) == (
        5,
        3,
        True,
    )


async def test_bulk_line_too_long_is_413(http, monkeypatch):
    monkeypatch.setattr(bulk, "MAX_LINE", 1000)
    reply = await post_lines(http, [line(1), "x" * 1001, line(2)])
    assert reply.status == 413
    assert "longer than 1000 bytes" in reply.body["error"]["message"]
    unterminated = await post_lines(http, ("y" * 5000).encode())
    assert unterminated.status == 413


async def test_bulk_without_a_catalog_is_422(bare_http):
    reply = await post_lines(bare_http, [line(1)])
    assert reply.status == 422
