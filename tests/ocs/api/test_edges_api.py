"""Client mistakes at the edges of the API: malformed stream ids, bodies that are not
JSON, URLs and headers too long for the server. Each gets a 4xx with a JSON error and
one WARNING event in the log, never an ERROR traceback; a Redis *command* error is a
server fault (500, logged), never "the store is unavailable"."""

from __future__ import annotations

import logging
import socket

import pytest
import redis
from redis.exceptions import (
    BusyLoadingError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)

from ocs.api.context import API_KEY
from ocs.api.errors import describe
from tests.ocs.api.conftest import ADMIN_TOKEN


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def warnings_logged(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and getattr(r, "ocs_event", (None,))[0] == event
    ]


# ---------------------------------------------------------------- usage ?after=


@pytest.mark.parametrize(
    "after",
    [
        "99999999999999999999-0",  # beyond 2**64: Redis refuses the id
        "18446744073709551615-18446744073709551615",  # the largest id: no "after" it
        "18446744073709551616-0",
        "1-99999999999999999999",
        "1741338000000",
        "1741338000000-0-0",
    ],
)
async def test_usage_after_a_malformed_stream_id_is_400_naming_it(http, alice, caplog, after):
    with caplog.at_level(logging.INFO):
        reply = await http.get("/v1/accounts/alice/usage", params={"after": after})
    assert reply.status == 400, reply.body
    assert set(reply.fields()) == {"after"}
    assert errors_logged(caplog) == []
    assert len(warnings_logged(caplog, "http_client_error")) == 1


async def test_usage_after_the_largest_accepted_id_is_an_empty_page(http, alice):
    reply = await http.get(
        "/v1/accounts/alice/usage", params={"after": "9999999999999999999-9999999999999999999"}
    )
    assert (reply.status, reply.body) == (200, [])


async def test_a_redis_command_error_is_a_500_not_store_unavailable(http, alice, caplog):
    api = http.client.server.app[API_KEY]
    real = api.accounts.get_account

    async def bad_command(account_id: str):  # a real Redis refusing a malformed command
        await api.redis.xrange("some-stream", min="(not-an-id")
        return await real(account_id)

    api.accounts.get_account = bad_command
    with caplog.at_level(logging.INFO):
        reply = await http.get("/v1/accounts/alice")
    assert reply.status == 500
    assert "unavailable" not in reply.body["error"]["message"]
    assert "Retry-After" not in reply.headers
    [record] = errors_logged(caplog)
    assert record.exc_info is not None


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (ResponseError("Invalid stream ID specified as stream command argument"), 500),
        (ResponseError("wrong number of arguments for 'xrange' command"), 500),
        (BusyLoadingError("Redis is loading the dataset in memory"), 503),
        (ReadOnlyError("You can't write against a read only replica."), 503),
        (OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), 503),
        (TryAgainError("Multiple keys request during rehashing of slot"), 503),
        (ResponseError("BUSY Redis is busy running a script."), 503),
        (ResponseError("MISCONF Redis is configured to save RDB snapshots"), 503),
        (redis.ConnectionError("Connection refused"), 503),
        (redis.TimeoutError("Timeout reading from socket"), 503),
    ],
)
def test_only_an_unavailable_store_is_503(exc, status):
    assert describe(exc)[0] == status


# ---------------------------------------------------------------- Content-Type


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
    ],
)
async def test_a_json_endpoint_refuses_a_body_that_is_not_json_with_415(
    http, alice, caplog, content_type
):
    with caplog.at_level(logging.INFO):
        reply = await http.call(
            "POST",
            "/v1/accounts/alice/topupBalance",
            data=b'{"amount": 1}',
            headers={"Content-Type": content_type, "Idempotency-Key": "ct-1"},
        )
    assert reply.status == 415, reply.body
    assert reply.body["error"]["status"] == 415
    assert "application/json" in reply.body["error"]["message"]
    assert errors_logged(caplog) == []
    balance = await http.get("/v1/accounts/alice/buckets/main")
    assert balance.body["amount"] == 10_000_000  # nothing credited


async def test_a_body_without_content_type_is_415(http, alice):
    reply = await http.call(
        "PATCH", "/v1/accounts/alice", data=b'{"credit_limit": 1}', headers={"Content-Type": ""}
    )
    assert reply.status == 415, reply.body


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/merge-patch+json",
    ],
)
async def test_json_with_parameters_and_json_suffix_types_are_accepted(http, alice, content_type):
    reply = await http.call(
        "PATCH",
        "/v1/accounts/alice",
        data=b'{"credit_limit": 0}',
        headers={"Content-Type": content_type},
    )
    assert reply.status == 200, reply.body


async def test_bulk_keeps_taking_ndjson(http):
    line = b'{"id": "carol", "kind": "prepaid", "plan": "prepaid-basic"}\n'
    reply = await http.call(
        "POST", "/v1/bulk/accounts", data=line, headers={"Content-Type": "application/x-ndjson"}
    )
    assert (reply.status, reply.body["accounts"]) == (200, 1)


# ---------------------------------------------------------------- strings that are not text


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/accounts/alice/topupBalance", '{"amount": 1, "reason": "\\ud800"}', "reason"),
        ("POST", "/v1/accounts", '{"id": "x", "kind": "prepaid", "plan": "prepaid-basic", '
         '"subscriptions": ["nai:\\udc00@x"]}', "subscriptions[0]"),
        ("PUT", "/v1/catalog/active", '{"version": "v\\udfff"}', "version"),
        ("POST", "/v1/catalog/validate", '{"\\ud800": 1}', "body"),
    ],
)  # fmt: skip
async def test_an_unpaired_surrogate_is_400_naming_the_field(
    http, alice, caplog, method, path, body, field
):
    with caplog.at_level(logging.INFO):
        reply = await http.call(method, path, data=body.encode(), headers={"Idempotency-Key": "u1"})
    assert reply.status == 400, reply.body
    assert field in reply.fields()
    assert errors_logged(caplog) == []


async def test_bulk_reports_an_unpaired_surrogate_on_its_line(http):
    lines = b'{"id": "carol", "kind": "prepaid", "plan": "prepaid-basic", "parent": "\\udc00"}\n'
    reply = await http.call(
        "POST", "/v1/bulk/accounts", data=lines, headers={"Content-Type": "application/x-ndjson"}
    )
    assert reply.status == 200
    [error] = reply.body["errors"]
    assert error["line"] == 1 and error["problems"][0]["field"] == "parent"


# ---------------------------------------------------------------- client mistakes log a warning


async def test_client_mistakes_log_one_warning_and_server_faults_an_error(http, alice, caplog):
    mistakes = [
        ("GET", "/v1/accounts/a%20b", None),  # bad id
        ("GET", "/v1/nothing", None),  # 404 route
        ("GET", "/v1/accounts/nobody", None),  # 404 account
        ("POST", "/v1/accounts", b"{not json"),  # malformed JSON
    ]
    for method, path, data in mistakes:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            reply = await http.call(method, path, data=data)
        assert 400 <= reply.status < 500, (path, reply.status)
        assert errors_logged(caplog) == [], path
        [warning] = warnings_logged(caplog, "http_client_error")
        assert warning.exc_info is None
        assert warning.ocs_event[1]["status"] == reply.status  # type: ignore[attr-defined]


# ---------------------------------------------------------------- too long for the server (TCP)


def raw_request(port: int, request: bytes) -> tuple[int, bytes, bytes]:
    """One request over a real TCP socket: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head, body


def get(path: str, extra: bytes = b"") -> bytes:
    return (
        (
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
            "Connection: close\r\n"
        ).encode()
        + extra
        + b"\r\n"
    )


@pytest.mark.parametrize("length", [8_200, 20_000, 100_000])
def test_a_url_over_8_kib_is_a_4xx_and_a_warning(live, caplog, length):
    path = "/v1/accounts/alice/usage?after=" + "1" * length
    with caplog.at_level(logging.INFO):
        status, _, body = raw_request(live.port, get(path))
    assert status in (400, 414), body[:200]
    assert errors_logged(caplog) == []
    assert warnings_logged(caplog, "http_client_error") or warnings_logged(
        caplog, "http_bad_request"
    )
    if length <= 60_000:  # within the server's line limit: our JSON error
        assert status == 414 and b'"status": 414' in body


def test_a_url_just_under_8_kib_is_served(live):
    path = "/v1/accounts/alice/usage?x=" + "1" * (8_000 - len("/v1/accounts/alice/usage?x="))
    status, _, _ = raw_request(live.port, get(path))
    assert status == 404  # no account alice here: the request reached the handler


def test_a_header_too_long_is_a_4xx_and_a_warning(live, caplog):
    with caplog.at_level(logging.INFO):
        status, _, body = raw_request(
            live.port, get("/v1/accounts", b"X-Junk: " + b"j" * 20_000 + b"\r\n")
        )
    assert 400 <= status < 500, body[:200]
    assert errors_logged(caplog) == []
    [warning] = warnings_logged(caplog, "http_bad_request")
    assert warning.exc_info is None
