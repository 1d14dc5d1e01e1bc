"""The money check's arithmetic on account readings and rated records."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from loadtest.money_check import (
    AccountState,
    ApiClient,
    ApiError,
    MoneySource,
    RecordsCommand,
    balances_of,
    check_money,
)


def buckets(amount: int, reserved: int = 0, units: int | None = None) -> dict:
    items = [{"id": "main", "kind": "money", "amount": amount, "reserved": reserved}]
    if units is not None:
        items.append({"id": "data-1gb", "kind": "units", "amount": units, "reserved": 0})
    return balances_of({"buckets": items})


def record(session: str, money: dict, charged: int, allowances: dict | None = None) -> dict:
    return {"session": session, "money": money, "charged": charged, "allowances": allowances or {}}


class FakeSource(MoneySource):
    """Records as the API would give them: those written after the first reading."""

    def __init__(self, records: dict[str, list], command: bool = False) -> None:
        self.api = None
        self.show = None
        self.records_command = (lambda a: records[a]) if command else None
        self._records = records

    @property
    def has_records(self) -> bool:
        return True

    def records_between(self, account_id, before, after):
        if self.records_command is not None:
            return self.records_command(account_id)
        return self._records[account_id]


def api_state(amount, reserved=0, sessions=(), units=None):
    return AccountState(buckets(amount, reserved, units), list(sessions), "1-0")


def test_balances_and_records_agree():
    before = {"a": api_state(1_000_000, units=5000), "b": api_state(500)}
    after = {"a": api_state(700_000, units=1000), "b": api_state(500)}
    records = {
        "a": [
            record("h;tag;1", {"main": 200_000}, 200_000, {"data-1gb": 4000}),
            record("h;tag;2", {"main": 100_000}, 100_000),
        ],
        "b": [],
    }
    result = check_money(FakeSource(records), before, after, "tag", ["a", "b"])
    assert result.ok and result.complete, result.problems
    assert result.debited == 300_000 and result.charged == 300_000 and result.records == 2
    assert "OK" in result.lines()[0]


def test_a_missing_record_or_leaked_reservation_fails_it():
    before = {"a": api_state(1_000_000)}
    after = {"a": api_state(700_000, reserved=5)}
    records = {"a": [record("h;tag;1", {"main": 200_000}, 200_000)]}
    result = check_money(FakeSource(records), before, after, "tag", ["a"])
    assert not result.ok
    text = "\n".join(result.problems)
    assert "moved by 300000 but the 1 records written during the run charge it 200000" in text
    assert "reserved 0 before, 5 after" in text
    assert "FAILED" in result.lines()[0]


def test_a_record_whose_parts_do_not_add_up_fails_it():
    before, after = {"a": api_state(100)}, {"a": api_state(90)}
    records = {"a": [record("h;tag;1", {"main": 10}, 12)]}
    result = check_money(FakeSource(records), before, after, "tag", ["a"])
    assert "says charged 12 but its money parts sum to 10" in result.problems[0]


def test_sessions_left_open_and_earlier_leftovers_are_accounted_for():
    earlier = {
        "session_id": "h;old;7",
        "services": [{"reserved_money": {"main": 30_000}, "charged": 20_000}],
    }
    mine = {
        "session_id": "h;tag;2",
        "services": [{"reserved_money": {"main": 50_000}, "charged": 100_000}],
    }
    before = {"a": api_state(1_000_000, reserved=30_000, sessions=[earlier])}
    # during the run: the sweeper settled the earlier session (record of 25,000, of
    # which 20,000 were committed before), our session 2 stayed open
    after = {"a": api_state(1_000_000 - 300_000 - 5_000 - 100_000, 50_000, [mine])}
    records = {
        "a": [
            record("h;tag;1", {"main": 300_000}, 300_000),
            record("h;old;7", {"main": 25_000}, 25_000),
        ]
    }
    result = check_money(FakeSource(records), before, after, "tag", ["a"])
    assert result.ok, result.problems
    assert result.left_open == 1 and result.settled_earlier == 1
    assert "with 1 sessions left open" in result.lines()[0]
    # a debit nobody explains is still caught
    after["a"] = api_state(1_000_000 - 300_000 - 5_000 - 100_000 - 1, 50_000, [mine])
    result = check_money(FakeSource(records), before, after, "tag", ["a"])
    assert not result.ok and "money moved by 405001" in result.problems[0]


def test_without_records_only_balances_are_checked():
    source = MoneySource(show=lambda ids: {})
    before, after = {"a": AccountState(buckets(10))}, {"a": AccountState(buckets(20))}
    result = check_money(source, before, after, "tag", ["a"])
    assert not result.complete
    assert "went up by 10" in result.problems[0]
    result = check_money(source, after, before, "tag", ["a"])
    assert result.ok and not result.complete
    assert "PARTIAL" in result.lines()[0]


def test_a_records_command_counts_only_the_run(tmp_path):
    before = {"a": AccountState(buckets(1000))}
    after = {"a": AccountState(buckets(900))}
    records = {"a": [record("h;tag;1", {"main": 100}, 100), record("h;x;1", {"main": 7}, 7)]}
    result = check_money(FakeSource(records, command=True), before, after, "tag", ["a"])
    assert result.ok, result.problems
    assert result.records == 1


def test_records_command_fills_in_the_account(tmp_path):
    script = tmp_path / "records.py"
    script.write_text(
        "import json, sys\n"
        "print(json.dumps({'records': [{'session': 's;t;1', 'account': sys.argv[1]}]}))\n"
    )
    command = RecordsCommand(f"{sys.executable} {script} {{account}}")
    assert command("acct-7") == [{"session": "s;t;1", "account": "acct-7"}]
    with pytest.raises(ValueError):
        RecordsCommand("no placeholder")
    failing = RecordsCommand(f"{sys.executable} -c 'import sys; sys.exit(3)' {{account}}")
    with pytest.raises(RuntimeError, match="exited 3"):
        failing("a")


def test_api_client_reads_buckets_sessions_and_records_after_an_id():
    records = [{"session": f"s;t;{i}", "stream_id": f"{i}-0", "charged": 1} for i in range(5)]
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            seen.append(url.path)
            if self.headers.get("Authorization") != "Bearer sekrit":
                self.send_response(401)
                self.end_headers()
                self.wfile.write(b'{"title": "missing bearer token"}')
                return
            headers = {}
            if url.path.endswith("/usage"):
                after = int(query["after"].split("-")[0]) if "after" in query else -1
                items = [r for r in records if int(r["stream_id"].split("-")[0]) > after]
                offset, limit = int(query.get("offset", 0)), int(query["limit"])
                body = items[offset : offset + limit]
                headers["X-Total-Count"] = str(len(items))
            elif url.path.endswith("/sessions"):
                body = [{"session_id": "s;t;9", "services": []}]
            else:
                body = [{"id": "main", "kind": "money", "amount": 5, "reserved": 0}]
            data = json.dumps(body).encode()
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = ApiClient(f"http://127.0.0.1:{server.server_address[1]}", "sekrit")
        client.PAGE = 2
        assert [r["session"] for r in client.records("acct/1")] == [f"s;t;{i}" for i in range(5)]
        assert seen[0] == "/v1/accounts/acct%2F1/usage"
        assert [r["stream_id"] for r in client.records("a", after="2-0")] == ["3-0", "4-0"]
        assert client.last_record("a") == "4-0"
        # records written after the second reading are not counted
        source = MoneySource(client)
        between = source.records_between(
            "a", AccountState({}, [], "1-0"), AccountState({}, [], "3-0")
        )
        assert [r["stream_id"] for r in between] == ["2-0", "3-0"]
        state = MoneySource(client).read(["a"])["a"]
        assert state.buckets["main"]["amount"] == 5
        assert state.sessions == [{"session_id": "s;t;9", "services": []}]
        assert state.last_record == "4-0"
        with pytest.raises(ApiError, match="HTTP 401.*OCS_API_TOKEN"):
            ApiClient(client.base_url, None).account("a")
    finally:
        server.shutdown()
