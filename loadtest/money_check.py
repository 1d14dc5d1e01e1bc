"""The money check: after a run, what left the test accounts equals what was charged.

Each checked account is read before the run and again after it (all sessions drained).
With the management API (``--api URL``, token in ``OCS_API_TOKEN``) a reading is the
account's buckets (``GET /v1/accounts/{id}/buckets``), its open sessions
(``.../sessions``) and the id of its newest rated record (``.../usage``); the records
written in between are then read with ``after=``. The check is the conservation of
money, per account:

* money taken from money buckets == the money parts of the records written during
  the run + what open sessions committed in the meantime without a record yet
  (their ``charged`` after minus before); per bucket, exactly, when no session was
  open before or after;
* reserved after - reserved before == what open sessions hold after - before, per
  bucket (so nothing is left reserved once every session is closed);
* each record's ``charged`` == the sum of its money parts.

Sessions a failed CCR-T left open (the sweeper settles them at their deadline) and
earlier runs' leftovers that the sweeper settles during this run are therefore
accounted for, not reported as losses.

Without the API, balances come from ``ocs account show ID --json`` and the records
from ``--records-command`` (``{account}`` replaced; prints a JSON list of records or
an object with a ``records`` list), of which the run's count (their Session-Id carries
the run tag); then nothing may stay reserved. Without any records source only the
balance-side checks run and the result says the check is partial.

The segments check (``--segments DIR`` or ``--segments-command``) is the same
conservation with the records read back from the exporter's segment files (``ocs
records read --format csv DIR``, which keeps each record id once), once the export has
drained (:func:`wait_for_export`): the run's records of each checked account (its
Session-Id carries the run tag; with the API also those written between the two
readings by stream id), each id exactly once in what the command printed, and their
money equal to what left the balances (:func:`check_segments`).
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AccountState",
    "ApiClient",
    "ApiError",
    "ExportDrain",
    "ExportMetrics",
    "MoneyCheck",
    "MoneySource",
    "RecordsCommand",
    "SegmentRecords",
    "SegmentsCommand",
    "balances_of",
    "check_money",
    "check_segments",
    "parse_records",
    "wait_for_export",
]

RecordsFetcher = Callable[[str], list[dict[str, Any]]]


class RecordsCommand:
    """Runs ``template`` with ``{account}`` filled in; parses its JSON output."""

    def __init__(self, template: str, timeout: float = 120.0) -> None:
        if "{account}" not in template:
            raise ValueError("the records command needs an {account} placeholder")
        self.template = template
        self.timeout = timeout

    def __call__(self, account_id: str) -> list[dict[str, Any]]:
        argv = [part.replace("{account}", account_id) for part in shlex.split(self.template)]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=self.timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{shlex.join(argv)} exited {done.returncode}: {done.stderr.strip()[:500]}"
            )
        document = json.loads(done.stdout)
        if isinstance(document, dict):
            document = document.get("records", [])
        if not isinstance(document, list):
            raise RuntimeError(f"{shlex.join(argv)}: expected a JSON list of records")
        return document


class ApiError(RuntimeError):
    """The management API refused or failed a request."""


class ApiClient:
    """The few reads of the OCS management API (docs/api.md) the money check needs."""

    PAGE = 1000

    def __init__(self, base_url: str, token: str | None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _get(self, path: str, query: dict[str, Any] | None = None) -> Any:
        return self._get_with_headers(path, query)[0]

    def _get_with_headers(self, path: str, query: dict[str, Any] | None = None) -> tuple[Any, Any]:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read()), response.headers
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            hint = " (set OCS_API_TOKEN to a viewer token)" if exc.code in (401, 403) else ""
            raise ApiError(f"GET {path}: HTTP {exc.code}{hint}: {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ApiError(f"GET {url}: {exc}") from None

    def _all_pages(self, account_id: str, what: str) -> list[dict[str, Any]]:
        """Every item of ``/v1/accounts/{account_id}/{what}``, read by offset a page at a time."""
        path = f"/v1/accounts/{urllib.parse.quote(account_id, safe='')}/{what}"
        found: list[dict[str, Any]] = []
        while True:
            page = self._get(path, {"offset": len(found), "limit": self.PAGE})
            found += page
            if len(page) < self.PAGE:
                return found

    def account(self, account_id: str) -> dict[str, Any]:
        """The account's buckets, shaped like ``ocs account show --json``."""
        return {"account": {"id": account_id}, "buckets": self._all_pages(account_id, "buckets")}

    def accounts(self, account_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {account_id: self.account(account_id) for account_id in account_ids}

    def sessions(self, account_id: str) -> list[dict[str, Any]]:
        """The account's open sessions with what they hold."""
        return self._all_pages(account_id, "sessions")

    def last_record(self, account_id: str) -> str:
        """The stream id of the account's newest rated record ("" when it has none)."""
        path = f"/v1/accounts/{urllib.parse.quote(account_id, safe='')}/usage"
        _, headers = self._get_with_headers(path, {"limit": 1})
        total = int(headers.get("X-Total-Count") or 0)
        if total == 0:
            return ""
        page = self._get(path, {"offset": total - 1, "limit": 1})
        return str(page[-1].get("stream_id") or "") if page else ""

    def records(self, account_id: str, after: str | None = None) -> list[dict[str, Any]]:
        """The account's rated records (after the stream id ``after``), oldest first."""
        quoted = urllib.parse.quote(account_id, safe="")
        records: list[dict[str, Any]] = []
        after = after or None
        while True:
            query: dict[str, Any] = {"limit": self.PAGE}
            if after is not None:
                query["after"] = after
            page = self._get(f"/v1/accounts/{quoted}/usage", query)
            records += page
            if len(page) < self.PAGE or not page[-1].get("stream_id"):
                return records
            after = page[-1]["stream_id"]


def balances_of(account: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """bucket id -> {kind, amount, reserved} from ``ocs account show --json``."""
    return {
        bucket["id"]: {
            "kind": bucket.get("kind", "money"),
            "amount": int(bucket["amount"]),
            "reserved": int(bucket.get("reserved", 0)),
        }
        for bucket in account.get("buckets", [])
    }


@dataclass
class AccountState:
    """One reading of an account: its buckets, and with the API its open sessions and
    the id of its newest record."""

    buckets: dict[str, dict[str, Any]]
    sessions: list[dict[str, Any]] | None = None
    last_record: str | None = None


class MoneySource:
    """Where the check reads accounts and records: the API, or the ocs CLI plus an
    optional records command."""

    def __init__(
        self,
        api: ApiClient | None = None,
        show: Callable[[list[str]], dict[str, dict[str, Any]]] | None = None,
        records: RecordsFetcher | None = None,
    ) -> None:
        if api is None and show is None:
            raise ValueError("a money source needs the API or an account reader")
        self.api = api
        self.show = show
        self.records_command = records

    @property
    def has_records(self) -> bool:
        return self.records_command is not None or self.api is not None

    def read(self, account_ids: list[str]) -> dict[str, AccountState]:
        if self.api is None:
            assert self.show is not None
            return {a: AccountState(balances_of(doc)) for a, doc in self.show(account_ids).items()}
        api = self.api
        return {
            account_id: AccountState(
                balances_of(api.account(account_id)),
                api.sessions(account_id),
                api.last_record(account_id),
            )
            for account_id in account_ids
        }

    def records_between(
        self, account_id: str, before: AccountState, after: AccountState
    ) -> list[dict[str, Any]]:
        """Records written between the two readings (with the API: after the first
        reading's newest record, up to the second's; a records command gives all)."""
        if self.records_command is not None:
            return self.records_command(account_id)
        assert self.api is not None
        found = self.api.records(account_id, after=before.last_record)
        if after.last_record:
            end = _stream_key(after.last_record)
            found = [r for r in found if _stream_key(str(r.get("stream_id") or "0-0")) <= end]
        return found


def _stream_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return (0, 0)


@dataclass
class MoneyCheck:
    accounts: int = 0
    ok: bool = True
    complete: bool = True
    debited: int = 0  # money taken from money buckets, micro-units
    charged: int = 0  # sum of ``charged`` of the records
    records: int = 0
    left_open: int = 0  # the run's sessions the OCS still holds after the drain
    settled_earlier: int = 0  # records of earlier runs' sessions written during this one
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    per_account: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "complete": self.complete,
            "accounts": self.accounts,
            "debited_micro": self.debited,
            "charged_micro": self.charged,
            "records": self.records,
            "sessions_left_open": self.left_open,
            "records_of_earlier_runs": self.settled_earlier,
            "problems": self.problems,
            "notes": self.notes,
            "per_account": self.per_account,
        }

    def lines(self) -> list[str]:
        if self.ok and self.complete:
            verdict = "OK" + (
                f" (with {self.left_open} sessions left open)" if self.left_open else ""
            )
        elif self.ok:
            verdict = "PARTIAL (balances only)"
        else:
            verdict = "FAILED"
        lines = [
            f"money check: {verdict}: {self.accounts} accounts, debited {_money(self.debited)}, "
            f"charged in {self.records} records {_money(self.charged)}"
        ]
        lines += [f"  problem: {p}" for p in self.problems[:20]]
        if len(self.problems) > 20:
            lines.append(f"  ... and {len(self.problems) - 20} more problems")
        lines += [f"  note: {n}" for n in self.notes]
        return lines


def _money(micro: int) -> str:
    sign = "-" if micro < 0 else ""
    micro = abs(micro)
    return f"{sign}{micro // 1_000_000}.{micro % 1_000_000:06d}"


def _in_run(session_id: Any, run_tag: str | None) -> bool:
    return run_tag is None or f";{run_tag};" in str(session_id or "")


def _held(sessions: list[dict[str, Any]]) -> tuple[dict[str, int], int]:
    """What open sessions hold: reserved per bucket (money and units), and the money
    they have committed without a record yet (``charged``)."""
    reserved: dict[str, int] = defaultdict(int)
    charged = 0
    for session in sessions:
        for service in session.get("services") or []:
            for bucket_id, amount in (service.get("reserved_money") or {}).items():
                reserved[bucket_id] += int(amount)
            for bucket_id, amount in (service.get("reserved_units") or {}).items():
                reserved[bucket_id] += int(amount)
            charged += int(service.get("charged") or 0)
    return reserved, charged


def check_money(
    source: MoneySource,
    before: dict[str, AccountState],
    after: dict[str, AccountState],
    run_tag: str | None,
    account_ids: Iterable[str],
) -> MoneyCheck:
    """Compare each account's two readings with the records written in between."""
    result = MoneyCheck()
    if not source.has_records:
        result.complete = False
        result.notes.append(
            "no records source (--api or --records-command): only balances were checked "
            "(reservations released, no balance went up)"
        )
    held_total = 0
    for account_id in account_ids:
        result.accounts += 1
        entry = _check_account(
            source, account_id, before[account_id], after[account_id], run_tag, result
        )
        held_total += entry.get("open_charged", 0)
        result.per_account[account_id] = entry
    if result.left_open:
        result.notes.append(
            f"{result.left_open} of the run's sessions are still open in the OCS: their "
            "CCR-T did not get through (see the drain's Result-Codes); the OCS's sweeper "
            "settles them at their deadline"
        )
    if result.settled_earlier:
        result.notes.append(
            f"{result.settled_earlier} records of earlier runs' sessions were written "
            "during this run (the sweeper settling sessions left open); counted"
        )
    result.ok = not result.problems
    return result


def _check_account(
    source: MoneySource,
    account_id: str,
    before: AccountState,
    after: AccountState,
    run_tag: str | None,
    result: MoneyCheck,
) -> dict[str, Any]:
    problems = result.problems
    old, new = before.buckets, after.buckets
    kinds = {b: v["kind"] for b, v in (old | new).items()}
    # records from the API are exactly those written between the readings; a records
    # command gives all of them, of which the run's are taken
    exact = source.records_command is None and before.last_record is not None
    held_before = _held(before.sessions or [])
    held_after = _held(after.sessions or [])
    moved: dict[str, int] = {}
    for bucket_id in sorted(set(old) | set(new)):
        o = old.get(bucket_id, {"amount": 0, "reserved": 0})
        n = new.get(bucket_id, {"amount": 0, "reserved": 0})
        moved[bucket_id] = o["amount"] - n["amount"]
        held = held_after[0].get(bucket_id, 0) - held_before[0].get(bucket_id, 0)
        if n["reserved"] - o["reserved"] != held:
            problems.append(
                f"{account_id}: bucket {bucket_id} reserved {o['reserved']} before, "
                f"{n['reserved']} after the drained run"
                + (f" (open sessions explain a change of {held})" if held else "")
            )
        if moved[bucket_id] < 0:
            problems.append(f"{account_id}: bucket {bucket_id} went up by {-moved[bucket_id]}")
        if kinds[bucket_id] == "money":
            result.debited += moved[bucket_id]
    entry: dict[str, Any] = {"moved": moved}
    left_open = [s for s in after.sessions or [] if _in_run(s.get("session_id"), run_tag)]
    if left_open:
        entry["open_sessions"] = [s.get("session_id") for s in left_open]
        result.left_open += len(left_open)
    if not source.has_records:
        return entry
    try:
        found = source.records_between(account_id, before, after)
    except Exception as exc:  # a failing records source fails the check
        problems.append(f"{account_id}: records unavailable: {exc}")
        return entry
    if not exact:
        found = [r for r in found if _in_run(r.get("session") or r.get("id"), run_tag)]
    expected: dict[str, int] = defaultdict(int)
    charged = 0
    for record in found:
        parts = 0
        for bucket_id, amount in (record.get("money") or {}).items():
            expected[bucket_id] += int(amount)
            parts += int(amount)
        for bucket_id, amount in (record.get("allowances") or {}).items():
            expected[bucket_id] += int(amount)
        charged += int(record.get("charged") or 0)
        if int(record.get("charged") or 0) != parts:
            problems.append(
                f"{account_id}: record {record.get('id')} says charged "
                f"{record.get('charged')} but its money parts sum to {parts}"
            )
        if not _in_run(record.get("session"), run_tag):
            result.settled_earlier += 1
    result.records += len(found)
    result.charged += charged
    entry.update(records=len(found), charged=charged, expected=dict(expected))
    open_delta = held_after[1] - held_before[1]
    quiet = not (before.sessions or after.sessions)
    if quiet:
        for bucket_id in sorted(set(moved) | set(expected)):
            if moved.get(bucket_id, 0) != expected.get(bucket_id, 0):
                problems.append(
                    f"{account_id}: bucket {bucket_id} moved by {moved.get(bucket_id, 0)} "
                    f"but the {len(found)} records written during the run charge it "
                    f"{expected.get(bucket_id, 0)}"
                )
    else:
        # open sessions have committed money with no record yet; which bucket it came
        # from is not shown, so compare the money in total
        money_moved = sum(a for b, a in moved.items() if kinds.get(b, "money") == "money")
        from_records = sum(a for b, a in expected.items() if kinds.get(b, "money") == "money")
        entry["open_charged"] = open_delta
        if money_moved != from_records + open_delta:
            problems.append(
                f"{account_id}: money moved by {money_moved} but the {len(found)} records "
                f"written during the run charge {from_records} and open sessions "
                f"committed {open_delta} more"
            )
    return entry


# --- the segments check ---------------------------------------------------------------

EXPORT_LAG = "ocs_records_export_lag_entries"
EXPORT_PARTITIONS = "ocs_records_export_partitions"
EXPORT_SETTLE = 6.0
"""Seconds the export lag must read 0 before the export counts as drained: the exporter
measures its partitions' backlog every 5 s, so a window this long holds a measurement
taken after the run ended (an earlier 0 may be stale)."""

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{.*\})?\s+(\S+)")


def parse_records(text: str) -> list[dict[str, Any]]:
    """Records as ``ocs records read`` prints them: CSV with its header row (``--format
    csv``, ``charged`` an integer, ``money`` and ``allowances`` JSON maps) or JSON lines
    (``--format json``)."""
    if not text.strip():
        return []
    if text.lstrip().startswith("{"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = csv.DictReader(io.StringIO(text))
    columns = set(rows.fieldnames or ())
    missing = {"id", "account", "session", "charged", "money", "allowances"} - columns
    if missing:
        raise ValueError(
            f"not the CSV of ocs records read (no column {', '.join(sorted(missing))})"
        )
    records: list[dict[str, Any]] = []
    for row in rows:
        record: dict[str, Any] = dict(row)
        record["charged"] = int(row["charged"]) if row["charged"] else None
        for name in ("money", "allowances"):
            record[name] = json.loads(row[name] or "{}")
        records.append(record)
    return records


class SegmentsCommand:
    """Runs a command that prints every record of the segments once (``ocs records read
    --format csv DIR``) and parses what it prints; what it says on stderr (segments it
    found damaged, duplicates it dropped) is kept in :attr:`messages`."""

    def __init__(self, argv: Sequence[str], timeout: float = 600.0) -> None:
        if not argv:
            raise ValueError("the segments command is empty")
        self.argv = list(argv)
        self.timeout = timeout
        self.messages: list[str] = []

    @classmethod
    def from_text(cls, command: str) -> SegmentsCommand:
        return cls(shlex.split(command))

    def __call__(self) -> list[dict[str, Any]]:
        try:
            done = subprocess.run(
                self.argv, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"{shlex.join(self.argv)}: {exc}") from None
        if done.returncode != 0:
            raise RuntimeError(
                f"{shlex.join(self.argv)} exited {done.returncode}: {done.stderr.strip()[:500]}"
            )
        self.messages = [line for line in done.stderr.splitlines() if line.strip()]
        try:
            return parse_records(done.stdout)
        except ValueError as exc:
            raise RuntimeError(f"{shlex.join(self.argv)}: {exc}") from None


class ExportMetrics:
    """Reads the export lag from an OCS ``/metrics`` (``ocs serve``'s HTTP port, or
    ``ocs export``'s ``records.export_metrics_port``)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.url = url
        self.token = token
        self.timeout = timeout

    def read(self) -> dict[str, float]:
        """Each metric's samples summed (label sets added up), by name."""
        request = urllib.request.Request(self.url)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            raise ApiError(f"GET {self.url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ApiError(f"GET {self.url}: {exc}") from None
        values: dict[str, float] = defaultdict(float)
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if match is None:
                continue
            try:
                values[match.group(1)] += float(match.group(3))
            except ValueError:
                continue
        return dict(values)


@dataclass
class ExportDrain:
    """How waiting for the export ended."""

    drained: bool
    waited: float
    detail: str
    lag_entries: float | None = None
    partitions: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "drained": self.drained,
            "waited_s": round(self.waited, 1),
            "detail": self.detail,
            "lag_entries": self.lag_entries,
            "partitions": self.partitions,
        }


def wait_for_export(
    metrics: ExportMetrics,
    timeout: float,
    settle: float = EXPORT_SETTLE,
    poll: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ExportDrain:
    """Wait until the exporter reports nothing left to export (``ocs_records_export_lag_entries``
    0, with partitions owned) in every reading for ``settle`` seconds; give up after
    ``timeout`` seconds, or at once when the OCS has no such metric (no exporter)."""
    start = clock()
    quiet_since: float | None = None
    lag = partitions = None
    while True:
        now = clock()
        try:
            values = metrics.read()
        except ApiError as exc:
            quiet_since, detail = None, str(exc)
        else:
            lag, partitions = values.get(EXPORT_LAG), values.get(EXPORT_PARTITIONS)
            if lag is None:
                return ExportDrain(
                    False, now - start,
                    f"{metrics.url} has no {EXPORT_LAG}: is the exporter running there "
                    "(records.export on; for ocs export, its records.export_metrics_port)?",
                )  # fmt: skip
            if lag == 0 and (partitions or 0) > 0:
                if quiet_since is None:
                    quiet_since = now
                if now - quiet_since >= settle:
                    return ExportDrain(True, now - start, "export drained", lag, partitions)
                detail = "export lag 0"
            else:
                quiet_since = None
                detail = f"{lag:g} records not exported yet ({partitions or 0:g} partitions owned)"
        if now - start >= timeout:
            return ExportDrain(
                False, now - start,
                f"the export did not drain within {timeout:g} s: {detail}", lag, partitions,
            )  # fmt: skip
        sleep(poll)


class SegmentRecords(MoneySource):
    """The records read back from the segments, as a records source of the money check.

    An account's records of the run are those whose Session-Id carries the run tag;
    when the first reading knows the account's newest record (the API), also every
    later one by stream id (earlier runs' sessions the sweeper settled meanwhile). With
    the second reading's newest record, none after it (written once the balances were
    read)."""

    def __init__(self, records: Iterable[dict[str, Any]], run_tag: str | None) -> None:
        self.api = None
        self.show = None
        self.records_command = None
        self.run_tag = run_tag
        self.total = 0
        self.ids: Counter[str] = Counter()
        self.by_account: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in records:
            self.total += 1
            self.ids[str(record.get("id"))] += 1
            self.by_account[str(record.get("account"))].append(record)

    @property
    def has_records(self) -> bool:
        return True

    def records_between(
        self, account_id: str, before: AccountState, after: AccountState
    ) -> list[dict[str, Any]]:
        low = _stream_key(before.last_record) if before.last_record else None
        high = _stream_key(after.last_record) if after.last_record else None
        found = []
        for record in self.by_account.get(account_id, ()):
            key = _stream_key(str(record.get("stream_id") or "0-0"))
            if high is not None and key > high:
                continue
            if _in_run(record.get("session"), self.run_tag) or (low is not None and key > low):
                found.append(record)
        return found


@dataclass
class SegmentsCheck:
    """The money check on the records read back from the segments."""

    money: MoneyCheck
    drain: ExportDrain | None = None
    read: int = 0  # records the command printed (all accounts, all runs)
    duplicates: int = 0  # extra copies of a record id in what it printed
    reads: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.money.ok and (self.drain is None or self.drain.drained)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.money.to_json(),
            "ok": self.ok,
            "export": None if self.drain is None else self.drain.to_json(),
            "segment_records": self.read,
            "duplicates": self.duplicates,
            "reads": self.reads,
            "reader_messages": self.messages[:20],
        }

    def lines(self) -> list[str]:
        money = self.money
        verdict = "OK" if self.ok else "FAILED"
        lines = [
            f"segments check: {verdict}: {money.accounts} accounts, debited "
            f"{_money(money.debited)}, charged in {money.records} records of the segments "
            f"{_money(money.charged)} ({self.read} records read, {self.duplicates} duplicates)"
        ]
        lines += [f"  problem: {p}" for p in money.problems[:20]]
        if len(money.problems) > 20:
            lines.append(f"  ... and {len(money.problems) - 20} more problems")
        lines += [f"  note: {n}" for n in money.notes]
        lines += [f"  reader: {m}" for m in self.messages[:5]]
        return lines


def check_segments(
    segments: SegmentRecords,
    before: dict[str, AccountState],
    after: dict[str, AccountState],
    run_tag: str | None,
    account_ids: Iterable[str],
    listed: dict[str, list[str]] | None = None,
) -> MoneyCheck:
    """The money check with the segments' records, and each record id exactly once.

    ``listed``: per account, the ids of the run's records the API lists (from Redis, or
    wherever it reads them); each must be in the segments."""
    result = check_money(segments, before, after, run_tag, account_ids)
    for record_id, count in sorted(segments.ids.items()):
        if count > 1:
            result.problems.append(
                f"record {record_id} appears {count} times in the records read from the "
                "segments (each id must be there once)"
            )
    for account_id, ids in sorted((listed or {}).items()):
        for record_id in ids:
            if record_id not in segments.ids:
                result.problems.append(
                    f"{account_id}: record {record_id} of the run is listed by the API "
                    "but not in the segments (not exported, or lost)"
                )
    result.ok = not result.problems
    return result
