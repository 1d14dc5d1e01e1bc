"""``ocs-loadtest``: open-loop load against the OCS, trace capture and replay.

Commands (docs/loadtest.md has the details):

* ``run``: provision test subscribers (``ocs provision``), drive the scenario's mix at a
  target rate over N connections from W worker processes, drain the sessions, check
  the money; ``--find-max`` searches the highest rate holding a p99 bound;
* ``capture``: a transparent Diameter proxy writing the requests it forwards to a trace;
* ``replay``: send a trace's requests again at their captured pace (times ``--speed``),
  with new Session-Ids, Hop-by-Hop and End-to-End ids.

Exit codes: 0 the run held (no timeouts, no errors, only accepted Result-Codes, money
check not failed); 1 it did not; 2 usage errors, the OCS unreachable, provisioning
refused; 130 interrupted before any result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO, TypeVar

from .money_check import (
    AccountState,
    ApiClient,
    ApiError,
    ExportMetrics,
    MoneyCheck,
    MoneySource,
    RecordsCommand,
    SegmentRecords,
    SegmentsCheck,
    SegmentsCommand,
    check_money,
    check_segments,
    wait_for_export,
)
from .ocs_cli import OcsCli, OcsCliError, provisioning_document
from .report import failures, find_max_lines, summary_lines
from .runner import LoadTestError, RunConfig, run_load
from .scenario import DEFAULT_SCENARIO, Scenario, ScenarioError, load_scenario

__all__ = ["build_parser", "main"]

MONEY_READS = 3
MONEY_REREAD_PAUSE = 3.0


def _host_port(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = default_host, text
    host = host.strip("[]") or default_host
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: port out of range")
    return host, number


_Number = TypeVar("_Number", int, float)


def _positive(kind: Callable[[str], _Number]) -> Callable[[str], _Number]:
    def parse(text: str) -> _Number:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    return parse


def _common_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        type=_host_port,
        default=("127.0.0.1", 3868),
        metavar="HOST:PORT",
        help="the OCS's Diameter address [127.0.0.1:3868]",
    )
    parser.add_argument("--connections", type=_positive(int), help="Diameter connections")
    parser.add_argument("--workers", type=_positive(int), help="worker processes")
    parser.add_argument("--timeout", type=_positive(float), help="answer timeout, seconds")
    parser.add_argument(
        "--origin-realm", default="loadtest.example", help="our Origin-Realm [loadtest.example]"
    )
    parser.add_argument(
        "--destination-realm", help="Destination-Realm [the Origin-Realm of the OCS's CEA]"
    )
    parser.add_argument(
        "--accept-result-code",
        action="append",
        default=[],
        metavar="CODE",
        help="a Result-Code that counts as success besides 2001 (repeatable; e.g. 4012 "
        "when accounts may run dry, 5012 against an OCS without charging)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the full report as JSON")
    parser.add_argument(
        "--watch-pid",
        type=int,
        action="append",
        default=[],
        metavar="PID",
        help="report the CPU use of this process and its children (e.g. ocs serve and "
        "its redis-server) during the run (repeatable; Linux)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    parser.add_argument(
        "--max-lag-ms",
        type=_positive(float),
        default=10.0,
        help="warn when a worker falls this far behind its schedule [10]",
    )
    parser.add_argument(
        "--max-cpu",
        type=_positive(float),
        default=90.0,
        help="warn when a worker uses more than this %% of a CPU [90]",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocs-loadtest",
        description="Open-loop Diameter Gy/Ro load generator for the OCS, with trace "
        "capture and replay.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="drive a scenario at a target rate",
        description="Provision test subscribers, drive the scenario's traffic mix at a "
        "target rate (open loop), drain the sessions and check the money.",
    )
    run.add_argument("--scenario", metavar="FILE", help="scenario TOML [built-in default mix]")
    run.add_argument("--rate", type=_positive(float), help="target CCR/s [scenario: 100]")
    run.add_argument("--duration", type=_positive(float), help="seconds [scenario: 10]")
    run.add_argument("--arrival", choices=("uniform", "poisson"), help="request spacing [uniform]")
    run.add_argument(
        "--warmup",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds at the target rate before the measured window, left out of the figures [0]",
    )
    run.add_argument("--subscribers", type=_positive(int), help="test subscribers [1000]")
    run.add_argument("--seed", type=int, help="random seed (repeatable runs)")
    run.add_argument(
        "--drain-timeout",
        type=_positive(float),
        default=30.0,
        help="seconds to close the open sessions after the run [30]",
    )
    run.add_argument(
        "--no-drain",
        dest="drain",
        action="store_false",
        help="leave the sessions open at the end (no CCR-T): to measure the server "
        "holding them; its sweeper settles them at their deadlines",
    )
    _common_run_options(run)
    prov = run.add_argument_group("provisioning and the money check (through the ocs CLI)")
    prov.add_argument(
        "--no-provision",
        action="store_true",
        help="the test subscribers exist already; do not run `ocs provision`",
    )
    prov.add_argument(
        "--catalog",
        metavar="FILE",
        help="a catalog file to put in the provisioning document (when no catalog is "
        "active yet, or to change it)",
    )
    prov.add_argument(
        "--keep-balances",
        action="store_true",
        help="do not reset the test accounts' balances (bucket replace = false)",
    )
    prov.add_argument(
        "--ocs-command",
        metavar="CMD",
        help="how to run the ocs CLI [the `ocs` of this environment, else python -m ocs]",
    )
    prov.add_argument("--redis-url", help="passed to ocs provision / account show")
    prov.add_argument("--redis-data-dir", help="passed to ocs provision / account show")
    prov.add_argument("--ocs-config", metavar="FILE", help="passed as --config to the ocs CLI")
    prov.add_argument(
        "--api",
        metavar="URL",
        help="the OCS management API (e.g. http://127.0.0.1:8080) for balances and rated "
        "records in the money check; token in OCS_API_TOKEN",
    )
    prov.add_argument(
        "--money-check",
        metavar="N|all|none",
        help="accounts to check after the run, spread over the subscribers "
        "[all with --api, else 10: each `ocs account show` is a process start]",
    )
    prov.add_argument(
        "--records-command",
        metavar="CMD",
        help="prints an account's rated records as JSON; {account} is replaced",
    )
    segments = run.add_argument_group(
        "the segments check (the records the exporter wrote to segment files)"
    )
    segments.add_argument(
        "--segments",
        metavar="DIR",
        help="check the run's records in this segment directory (read with `ocs records "
        "read --format csv DIR`) against the money debited, once the export has drained",
    )
    segments.add_argument(
        "--segments-command",
        metavar="CMD",
        help="instead of --segments: a command printing every record of the segments "
        "as `ocs records read --format csv` (or --format json) does",
    )
    segments.add_argument(
        "--export-metrics",
        metavar="URL",
        help="the exporter's /metrics, polled until ocs_records_export_lag_entries stays 0 "
        "[the --api's /metrics; token in OCS_METRICS_TOKEN]",
    )
    segments.add_argument(
        "--segments-timeout",
        type=_positive(float),
        default=120.0,
        metavar="S",
        help="seconds to wait for the export to drain and the segments to add up [120]",
    )
    search = run.add_argument_group("--find-max")
    search.add_argument(
        "--find-max",
        action="store_true",
        help="search the highest rate holding --p99-ms with no errors",
    )
    search.add_argument("--p99-ms", type=_positive(float), default=10.0, help="p99 bound [10]")
    search.add_argument(
        "--start-rate", type=_positive(float), default=500.0, help="first step's rate [500]"
    )
    search.add_argument(
        "--max-rate", type=_positive(float), default=100_000.0, help="highest rate tried"
    )
    search.add_argument(
        "--step-duration", type=_positive(float), default=10.0, help="seconds per step [10]"
    )
    search.add_argument("--steps", type=_positive(int), default=8, help="step budget [8]")
    search.add_argument("--pause", type=float, default=2.0, help="seconds between steps [2]")

    capture = commands.add_parser(
        "capture",
        help="record the requests passing through a Diameter proxy",
        description="Transparent Diameter TCP proxy: forwards everything, records the "
        "client's requests (base protocol left out) with timestamps to a trace file.",
    )
    capture.add_argument(
        "--listen", type=_host_port, required=True, metavar="[HOST:]PORT", help="listen here"
    )
    capture.add_argument(
        "--forward", type=_host_port, required=True, metavar="HOST:PORT", help="the OCS"
    )
    capture.add_argument("--out", required=True, metavar="FILE", help="trace file to write")
    capture.add_argument("--all", action="store_true", help="record every message, both directions")
    capture.add_argument("--duration", type=_positive(float), help="stop after SECONDS")

    replay = commands.add_parser(
        "replay",
        help="replay a captured trace",
        description="Send a trace's requests at their captured pace divided by --speed, "
        "with new Session-Ids (so a trace replays many times), Hop-by-Hop and End-to-End "
        "ids; latency is measured from each request's due time.",
    )
    replay.add_argument("trace", metavar="FILE")
    replay.add_argument("--speed", type=_positive(float), default=1.0, help="time factor [1]")
    replay.add_argument("--loops", type=_positive(int), default=1, help="passes [1]")
    _common_run_options(replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "capture":
            return _capture(args)
        if args.command == "replay":
            return _replay(args)
    except KeyboardInterrupt:
        print("ocs-loadtest: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into `head`: stop writing, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    parser.print_usage(sys.stderr)
    print("ocs-loadtest: error: a command is required (run, capture, replay)", file=sys.stderr)
    return 2


def _err(message: str) -> None:
    print(f"ocs-loadtest: {message}", file=sys.stderr)


def _accepted(args: argparse.Namespace) -> set[str]:
    return {"2001", *(str(int(code)) for code in args.accept_result_code)}


def _write_json(path: str, document: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(document, indent=1, default=str) + "\n")


def _checked_accounts(scenario: Scenario, spec: str) -> list[str]:
    count = scenario.subscribers.count
    if spec == "none":
        return []
    if spec == "all":
        wanted = count
    else:
        try:
            wanted = max(0, int(spec))
        except ValueError:
            raise ValueError("--money-check must be a number, all or none") from None
    wanted = min(wanted, count)
    if wanted == 0:
        return []
    indexes = sorted({i * count // wanted for i in range(wanted)})
    return [scenario.subscribers.account_id(i) for i in indexes]


def _run(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.scenario) if args.scenario else DEFAULT_SCENARIO
        if args.subscribers:
            scenario = replace(
                scenario, subscribers=replace(scenario.subscribers, count=args.subscribers)
            )
        checked = _checked_accounts(scenario, args.money_check or ("all" if args.api else "10"))
        api = ApiClient(args.api, os.environ.get("OCS_API_TOKEN")) if args.api else None
        records = RecordsCommand(args.records_command) if args.records_command else None
        if args.segments and args.segments_command:
            raise ValueError("--segments and --segments-command: give one of them")
        if (args.segments or args.segments_command) and not checked:
            raise ValueError("the segments check needs accounts to check (--money-check)")
    except (ScenarioError, ValueError) as exc:
        _err(str(exc))
        return 2
    defaults = scenario.run
    config = RunConfig(
        host=args.target[0],
        port=args.target[1],
        rate=args.rate or defaults.rate,
        duration=args.duration or defaults.duration,
        connections=args.connections or max(defaults.connections, args.workers or 0),
        workers=args.workers or defaults.workers,
        timeout=args.timeout or defaults.timeout,
        arrival=args.arrival or defaults.arrival,
        scenario=scenario,
        seed=args.seed,
        origin_realm=args.origin_realm,
        destination_realm=args.destination_realm,
        max_lag_ms=args.max_lag_ms,
        max_cpu_percent=args.max_cpu,
        drain_timeout=args.drain_timeout,
        drain=args.drain,
        warmup=max(0.0, args.warmup),
        watch_pids=tuple(args.watch_pid),
    )
    accepted = _accepted(args)
    progress = None if args.quiet else sys.stderr
    ocs = OcsCli.build(args.ocs_command, args.redis_url, args.redis_data_dir, args.ocs_config)
    if not args.no_provision:
        try:
            _provision(ocs, scenario, args, progress)
        except OcsCliError as exc:
            _err(f"provisioning failed: {exc}")
            return 2
    source = MoneySource(api, ocs.accounts_show, records)
    before: dict[str, AccountState] = {}
    if checked:
        try:
            before = source.read(checked)
        except (OcsCliError, ApiError) as exc:
            _err(f"cannot read the test accounts for the money check: {exc}")
            return 2
    document: dict[str, Any]
    try:
        if args.find_max:
            document, ok = _find_max(config, args, accepted, progress)
        else:
            document = run_load(config, progress)
            ok = not any(failures(document, accepted).values())
            for line in summary_lines(document, accepted):
                print(line)
    except LoadTestError as exc:
        _err(str(exc))
        return 2
    if checked:
        try:
            # An OCS still working off a backlog (requests that timed out here) changes
            # balances while they are read: read again before calling it a loss.
            for attempt in range(MONEY_READS):
                after = source.read(checked)
                money = check_money(source, before, after, config.run_tag, checked)
                if money.ok or attempt == MONEY_READS - 1:
                    break
                time.sleep(MONEY_REREAD_PAUSE)
            if attempt:
                money.notes.append(f"balances read {attempt + 1} times (the OCS was still busy)")
            if not money.ok and document.get("timeouts"):
                money.notes.append(
                    "requests timed out: the OCS may still have been working off its backlog "
                    "while the accounts were read, which this check cannot tell from a loss; "
                    "check again once it is idle"
                )
        except (OcsCliError, ApiError) as exc:
            _err(f"money check: cannot read the test accounts: {exc}")
            return 2
        document["money_check"] = money.to_json()
        for line in money.lines():
            print(line)
        ok = ok and money.ok
        if args.segments or args.segments_command:
            segments = _segments_check(args, ocs, api, config.run_tag, checked, before, after)
            document["segments_check"] = segments.to_json()
            for line in segments.lines():
                print(line)
            ok = ok and segments.ok
    if args.json:
        _write_json(args.json, document)
        print(f"report written to {args.json}")
    print("verdict: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


SEGMENTS_REREAD_PAUSE = 2.0


def _segments_check(
    args: argparse.Namespace,
    ocs: OcsCli,
    api: ApiClient | None,
    run_tag: str,
    checked: list[str],
    before: dict[str, AccountState],
    after: dict[str, AccountState],
) -> SegmentsCheck:
    """Wait for the export to drain (by its metrics), then check the run's records in
    the segments; without metrics, read them again until they add up or
    ``--segments-timeout`` is spent."""
    deadline = time.monotonic() + args.segments_timeout
    if args.segments_command:
        command = SegmentsCommand.from_text(args.segments_command)
    else:
        command = SegmentsCommand(
            [*ocs.command, "records", "read", "--format", "csv", args.segments]
        )
    url = args.export_metrics or (args.api.rstrip("/") + "/metrics" if args.api else None)
    drain = None
    if url:
        metrics = ExportMetrics(url, os.environ.get("OCS_METRICS_TOKEN"))
        drain = wait_for_export(metrics, args.segments_timeout)
        if not drain.drained:
            return SegmentsCheck(MoneyCheck(ok=False, problems=[drain.detail]), drain)
    result = SegmentsCheck(MoneyCheck(), drain)
    while True:
        result.reads += 1
        try:
            segments = SegmentRecords(command(), run_tag)
            listed = _listed_by_api(api, run_tag, checked, before) if api else None
        except (RuntimeError, ApiError) as exc:
            money = MoneyCheck(ok=False, problems=[f"segments unavailable: {exc}"])
        else:
            money = check_segments(segments, before, after, run_tag, checked, listed)
            result.read = segments.total
            result.duplicates = sum(n - 1 for n in segments.ids.values())
            result.messages = command.messages
        result.money = money
        # drained by the metrics: what the segments hold now is final, read once
        if money.ok or drain is not None or time.monotonic() + SEGMENTS_REREAD_PAUSE > deadline:
            break
        time.sleep(SEGMENTS_REREAD_PAUSE)
    if url is None:
        money.notes.append(
            "no --export-metrics (or --api): the segments were read until they added up"
        )
    if result.reads > 1:
        money.notes.append(f"segments read {result.reads} times")
    return result


def _listed_by_api(
    api: ApiClient, run_tag: str, checked: list[str], before: dict[str, AccountState]
) -> dict[str, list[str]]:
    """The ids of the run's records the API lists for each checked account."""
    listed: dict[str, list[str]] = {}
    for account_id in checked:
        found = api.records(account_id, after=before[account_id].last_record)
        listed[account_id] = [
            str(r.get("id")) for r in found if f";{run_tag};" in str(r.get("session") or "")
        ]
    return listed


def _provision(
    ocs: OcsCli, scenario: Scenario, args: argparse.Namespace, progress: TextIO | None
) -> None:
    document = provisioning_document(scenario.subscribers, replace_balance=not args.keep_balances)
    with tempfile.TemporaryDirectory(prefix="ocs-loadtest-") as directory:
        if args.catalog:
            document["catalog"] = str(Path(args.catalog).resolve())
        path = Path(directory) / "subscribers.json"
        path.write_text(json.dumps(document))
        started = time.monotonic()
        output = ocs.provision(path)
    summary = [line for line in output.splitlines() if line.strip()]
    if progress is not None:
        print(
            f"provisioned {scenario.subscribers.count} test subscribers in "
            f"{time.monotonic() - started:.1f} s: {summary[-2] if len(summary) > 1 else ''}",
            file=progress,
        )


def _find_max(
    config: RunConfig, args: argparse.Namespace, accepted: set[str], progress: TextIO | None
) -> tuple[dict[str, Any], bool]:
    from .findmax import find_max

    first = [True]

    def run_step(rate: float) -> dict[str, Any]:
        if not first[0] and args.pause > 0:
            time.sleep(args.pause)
        first[0] = False
        if progress is not None:
            print(f"find-max: step at {rate:g} CCR/s for {args.step_duration:g} s", file=progress)
        step_config = replace(config, rate=rate, duration=args.step_duration)
        return run_load(step_config, progress)

    search = find_max(
        run_step,
        args.p99_ms,
        accepted,
        start=args.start_rate,
        limit=args.max_rate,
        steps=args.steps,
    )
    for line in find_max_lines(search):
        print(line)
    results = search.pop("results")
    document = {"find_max": search, "steps": results}
    best = [r for r, s in zip(results, search["steps"], strict=True) if s["holds"]]
    if best:
        top = max(best, key=lambda r: r["config"]["rate"])
        print(f"the best step ({top['config']['rate']:g} CCR/s):")
        for line in summary_lines(top, accepted):
            print("  " + line)
    return document, search["max_rate"] is not None


def _capture(args: argparse.Namespace) -> int:
    from .capture import run_capture

    try:
        asyncio.run(
            run_capture(
                args.listen[0],
                args.listen[1],
                args.forward[0],
                args.forward[1],
                args.out,
                record_all=args.all,
                duration=args.duration,
            )
        )
    except OSError as exc:
        _err(f"capture: {exc}")
        return 2
    return 0


def _replay(args: argparse.Namespace) -> int:
    from .trace import TraceError, TraceReader

    try:
        with TraceReader(args.trace) as reader:
            connections = len({r.connection for r in reader}) or 1
    except (OSError, TraceError) as exc:
        _err(f"replay: {exc}")
        return 2
    workers = args.workers or 1
    config = RunConfig(
        host=args.target[0],
        port=args.target[1],
        rate=1.0,
        duration=0.0,
        connections=max(args.connections or connections, workers),
        workers=workers,
        timeout=args.timeout or 5.0,
        origin_realm=args.origin_realm,
        destination_realm=args.destination_realm,
        max_lag_ms=args.max_lag_ms,
        max_cpu_percent=args.max_cpu,
        trace=str(args.trace),
        speed=args.speed,
        loops=args.loops,
        watch_pids=tuple(args.watch_pid),
    )
    accepted = _accepted(args)
    try:
        document = run_load(config, None if args.quiet else sys.stderr)
    except LoadTestError as exc:
        _err(str(exc))
        return 2
    for line in summary_lines(document, accepted):
        print(line)
    ok = not any(failures(document, accepted).values())
    if args.json:
        _write_json(args.json, document)
        print(f"report written to {args.json}")
    print("verdict: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1
