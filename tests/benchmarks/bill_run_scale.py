"""Bill run at scale (issue 11 acceptance): N billing accounts, M rated records in
sealed segment files, one bill run timed on a fresh migrated database.

    .venv/bin/python -m tests.benchmarks.bill_run_scale --accounts 100000 \\
        --records 2000000 --workdir /tmp/billbench [--processes N] [--database-url URL]

The inputs are generated once per (accounts, records, seed) into
``WORKDIR/records-A-R-sS/`` and reused by later runs (generation is not timed):

* accounts: mostly consumers on postpaid-standard; about 2 % of the invoice accounts
  are business parents with 3 to 20 child lines (about 18 % of all accounts are
  children; the multi-line discount applies to their invoices); 1 % have a balance adjustment in the
  period; every account's record partition is a stable hash of its id modulo 1,024
  (blake2b, as production spreads accounts over ``redis.partitions = 1024``);
* records: ``--records / --accounts`` per account on average (a skewed mix: light and
  heavy users), data (home, eu, world zones; weekday and weekend bands; allowance use;
  some zero-rated portal usage), voice (national, mobile, international) and SMS, in
  the shape the charging scripts write (docs/records.md), with ids
  ``<session>;<request>;<rating group>``; 0.5 % ended in the month before the period
  (late usage, looked up among the billed records); each partition's records are in
  end order, in segments of about 256 KiB, sealed by :class:`~ocs.records.SegmentWriter`.

The timed part is ``run_bill_run`` for period ``--period`` (default 2026-11) on a fresh
migrated database: SQLite (a file in WORKDIR, the embedded default: WAL,
``synchronous=FULL``) unless ``--database-url`` names a PostgreSQL database, in which
case a fresh schema is created in it for the run (and dropped afterwards unless
``--keep``). ``--processes N`` runs N processes at once, each with ``Shard(k, N)``, all
released together; the wall time is from their release to the last one's end. Each
process reports its own time, time in the garbage collector, CPU time (``time.process_time``: the database server's
is not in it), records, invoices and peak RSS (``ru_maxrss``); the 1-minute load
average at the end says whether other work shared the machine.

``--finalize`` finalises the invoices in the run (numbers assigned); by default the run
happens one hour after the period's end, inside the grace period, so it writes drafts
(what a scheduled run does on the first day of the cycle). ``--profile FILE`` writes a
cProfile of process 0 (``python -m pstats FILE``). ``--json`` prints the result as JSON.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import json
import multiprocessing
import os
import random
import resource
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgpack

from ocs.billing.accounts import Adjustment, BillingAccount
from ocs.billing.bill_run import BillRunOptions, BillRunSummary, Shard, run_bill_run
from ocs.billing.database import migrate, open_database
from ocs.billing.periods import period_of
from ocs.records import SegmentSettings, SegmentWriter
from quota_engine.catalog.model import Catalog
from quota_engine.catalog.parser import load_demo_catalog

PARTITIONS = 1024
GENERATOR_VERSION = 1
"""Bump when the generated inputs change: the cache directory name carries it."""

TARIFF_FIELDS = {
    "data": (0, 1_048_576, 1_048_576, 1_048_576),
    "voice": (0, 60, 60, 60),
    "sms": (0, 1, 1, 1),
}
DATA_RATES = {"home": (0, 500_000), "eu": (1, 2_000_000), "world": (2, 10_000_000)}
VOICE_RATES = {
    ("national", "weekday"): (0, 100_000),
    ("national", "weekend"): (1, 50_000),
    ("mobile", "weekday"): (2, 150_000),
    ("mobile", "weekend"): (2, 150_000),
    ("international", "weekday"): (3, 500_000),
    ("international", "weekend"): (3, 500_000),
}
SMS_RATES = {"national": (0, 90_000), "international": (1, 290_000)}
MIB = 1_048_576


def partition_of(account_id: str) -> int:
    """The record partition of an account: a stable hash of its id modulo 1,024."""
    digest = hashlib.blake2b(account_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % PARTITIONS


# --- inputs -----------------------------------------------------------------------------


def make_accounts(count: int, period_start: int, seed: int) -> list[BillingAccount]:
    """``count`` postpaid accounts: consumers, and business parents with child lines."""
    rng = random.Random(seed)
    created = period_start - 400 * 86_400
    accounts: list[BillingAccount] = []
    n = 0

    def new(account_id: str, **fields: Any) -> BillingAccount:
        adjustments: tuple[Adjustment, ...] = ()
        if rng.random() < 0.01:
            adjustments = (
                Adjustment(
                    id=f"h-{account_id}",
                    at=period_start + rng.randrange(25 * 86_400),
                    amount=rng.choice((5_000_000, -2_500_000, 10_000_000)),
                    bucket="main",
                    reason="Goodwill credit",
                ),
            )
        return BillingAccount(
            id=account_id,
            kind="postpaid",
            currency="EUR",
            plan="postpaid-standard",
            created=created + rng.randrange(300 * 86_400),
            partition=partition_of(account_id),
            subscriptions=(f"msisdn:4917{rng.randrange(10**8):08d}",),
            itemisation="detailed" if rng.random() < 0.7 else "summary",
            adjustments=adjustments,
            **fields,
        )

    while len(accounts) < count:
        n += 1
        if rng.random() < 0.02 and count - len(accounts) > 4:
            parent_id = f"biz-{n:07d}"
            accounts.append(new(parent_id))
            for c in range(min(rng.randint(3, 20), count - len(accounts))):
                accounts.append(new(f"{parent_id}-l{c:02d}", parent=parent_id))
        else:
            accounts.append(new(f"cust-{n:07d}", tax_exempt=rng.random() < 0.002))
    return accounts


def _record(
    rng: random.Random, account: BillingAccount, number: int, end: int, identity: str
) -> dict[str, Any]:
    plan = account.plan
    roll = rng.random()
    allowances: dict[str, int] = {}
    zero_rated = False
    destination: str | None = None
    day = datetime.fromtimestamp(end, ZoneInfo("Europe/Berlin")).weekday()
    band = "weekend" if day >= 5 else "weekday"
    if roll < 0.5:
        service, unit, rating_group, context = "data", "octets", 10, "32251@3gpp.org"
        zone = rng.choices(("home", "eu", "world"), (90, 8, 2))[0]
        used = rng.randrange(1, 200) * 65_536 + rng.randrange(65_536)
        if zone == "home" and rng.random() < 0.3:
            allowances = {"data-1gb": used}
            charged = 0
            rate_index, rate = DATA_RATES[zone]
        else:
            rate_index, rate = DATA_RATES[zone]
            charged = -(-used // MIB) * rate
        band_field: str | None = band
        if rng.random() < 0.04:
            service, zero_rated, zone, charged, allowances = "portal", True, "home", 0, {}
            rating_group = 20
    elif roll < 0.85:
        service, unit, rating_group, context = "voice", "seconds", 100, "32260@3gpp.org"
        zone = rng.choices(("home", "eu"), (97, 3))[0]
        destination = rng.choices(("national", "mobile", "international"), (45, 45, 10))[0]
        used = rng.randrange(5, 1800)
        rate_index, rate = VOICE_RATES[destination, band]
        charged = -(-used // 60) * rate
        band_field = band
    else:
        service, unit, rating_group, context = "sms", "events", 200, "32274@3gpp.org"
        zone = "home"
        destination = rng.choices(("national", "international"), (92, 8))[0]
        used = 1
        rate_index, rate = SMS_RATES[destination]
        charged = rate
        band_field = None
    peer = f"pgw{number % 4}.operator.net" if service in ("data", "portal") else "ims.operator.net"
    session = f"{peer};{end - 3600};{account.id};{number}"
    request = rng.randrange(1, 6)
    tariff_service = "data" if service == "portal" else service
    if zero_rated:
        price, tariff = f"{plan}:{service}:0:-1:-1", None
    else:
        first, per, first_inc, next_inc = TARIFF_FIELDS[tariff_service]
        price = f"{plan}:{service}:0:{rate_index}:-1"
        tariff = {
            "plan": plan, "service": service, "tariff_index": first, "rate_index": rate_index,
            "tier_index": -1, "rate": rate, "rate_per": per, "first_increment": first_inc,
            "next_increment": next_inc, "first_cost": rate, "next_cost": rate,
        }  # fmt: skip
    return {
        "id": f"{session};{request};{rating_group}", "account": account.id,
        "identities": [identity], "session": session, "request": request, "peer": peer,
        "context": context, "service": service, "rating_group": rating_group,
        "service_identifier": None, "unit": unit, "start": end - rng.randrange(1, 3600),
        "end": end, "used": {unit: used}, "charged": charged, "allowances": allowances,
        "money": {"main": charged} if charged else {}, "price": price, "tariff": tariff,
        "catalog": "demo-1", "zone": zone, "destination": destination, "band": band_field,
        "zero_rated": zero_rated, "cause": "normal", "currency": "EUR", "capped_from": None,
    }  # fmt: skip


def _records_per_account(rng: random.Random, mean: float) -> int:
    # light and heavy users: a geometric-like spread around the mean
    return max(1, int(rng.expovariate(1 / mean) + 0.5))


def _write_partition(
    job: tuple[Path, int, list[BillingAccount], float, int, int, int, int],
) -> int:
    directory, partition, accounts, mean, start, end, late_start, seed = job
    rng = random.Random(seed * 1_000_003 + partition)
    records: list[tuple[int, dict[str, Any]]] = []
    for account in accounts:
        identity = account.subscriptions[0]
        for number in range(_records_per_account(rng, mean)):
            if rng.random() < 0.005:
                ended = rng.randrange(late_start, start)
            else:
                ended = rng.randrange(start, end)
            records.append((ended, _record(rng, account, number, ended, identity)))
    records.sort(key=lambda item: item[0])
    settings = SegmentSettings(max_bytes=256 * 1024, max_age=10.0**9)
    with SegmentWriter(directory, partition, settings) as writer:
        for sequence, (ended, item) in enumerate(records):
            writer.append(f"{ended * 1000}-{sequence}", msgpack.packb(item))
    return len(records)


def generate(
    directory: Path, accounts: Sequence[BillingAccount], records: int, period: str, seed: int
) -> int:
    """Write the records of ``accounts`` into ``directory``; their count."""
    bill_period = period_of(period, 1, "Europe/Berlin")
    previous = period_of(_previous_month(period), 1, "Europe/Berlin")
    by_partition: dict[int, list[BillingAccount]] = {}
    for account in accounts:
        by_partition.setdefault(account.partition, []).append(account)
    mean = records / max(len(accounts), 1)
    jobs = [
        (directory, p, members, mean, bill_period.start, bill_period.end, previous.start, seed)
        for p, members in sorted(by_partition.items())
    ]
    total = 0
    with multiprocessing.get_context("fork").Pool(os.cpu_count() or 1) as pool:
        for done, count in enumerate(pool.imap_unordered(_write_partition, jobs, chunksize=8)):
            total += count
            if done % 128 == 0:
                print(f"  generated {done}/{len(jobs)} partitions", file=sys.stderr)
    return total


def _previous_month(period: str) -> str:
    year, month = (int(part) for part in period.split("-"))
    return f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"


def inputs(args: argparse.Namespace) -> tuple[list[BillingAccount], Path, int]:
    """The accounts and the cached records directory (generated on first use)."""
    start = period_of(args.period, 1, "Europe/Berlin").start
    accounts = make_accounts(args.accounts, start, args.seed)
    name = f"records-{args.accounts}-{args.records}-s{args.seed}-{args.period}-v{GENERATOR_VERSION}"
    directory = Path(args.workdir) / name
    marker = directory / "COMPLETE.json"
    if marker.exists():
        count = int(json.loads(marker.read_text())["records"])
        return accounts, directory, count
    if directory.exists():
        shutil.rmtree(directory)
    print(f"generating {args.records} records into {directory} (once)", file=sys.stderr)
    began = time.monotonic()
    count = generate(directory, accounts, args.records, args.period, args.seed)
    marker.write_text(json.dumps({"records": count, "seconds": time.monotonic() - began}))
    print(f"  {count} records in {time.monotonic() - began:.0f} s", file=sys.stderr)
    return accounts, directory, count


# --- the timed run ----------------------------------------------------------------------


@dataclass
class ProcessResult:
    shard: str
    seconds: float
    cpu_seconds: float
    gc_seconds: float
    read_seconds: float
    """From the start to the end of reading and summing the records (the run's first
    progress call); the rest is composing and writing."""
    accounts: int
    invoices: int
    records: int
    late_records: int
    errors: int
    peak_rss_mib: float


def _fresh_database(args: argparse.Namespace, workdir: Path) -> tuple[str, Any]:
    """A fresh migrated database's URL, and how to drop it."""
    if not args.database_url or args.database_url.startswith("sqlite"):
        path = workdir / "billing.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
        migrate(url)
        return url, lambda: None
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(args.database_url)
    schema = f"billbench_{os.getpid()}_{int(time.time())}"
    conninfo = {
        "host": base.host or "127.0.0.1",
        "port": base.port or 5432,
        "user": base.username or "postgres",
        "dbname": base.database or "postgres",
    }
    if base.password:
        conninfo["password"] = base.password
    with psycopg.connect(**conninfo, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    url = base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )
    migrate(url)

    def drop() -> None:
        if args.keep:
            print(f"kept schema {schema}", file=sys.stderr)
            return
        with psycopg.connect(**conninfo, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")

    return url, drop


def _worker(
    url: str,
    catalog: Catalog,
    accounts: Sequence[BillingAccount],
    records_dir: Path,
    args: argparse.Namespace,
    shard: Shard,
    now: int,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    engine = open_database(url)
    options = BillRunOptions(finalize=True if args.finalize else None, own_process=True)
    ready.release()
    go.wait()
    gc_time = [0.0, 0.0]  # spent in the cyclic garbage collector, when it started

    def on_gc(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            gc_time[1] = time.perf_counter()
        else:
            gc_time[0] += time.perf_counter() - gc_time[1]

    gc.callbacks.append(on_gc)
    began = time.monotonic()
    cpu = time.process_time()
    profile = cProfile.Profile() if args.profile and shard.index == 0 else None
    if profile is not None:
        profile.enable()
    read_until: list[float] = []

    def on_progress(_done: int, _total: int) -> None:
        if not read_until:
            read_until.append(time.monotonic())

    summary: BillRunSummary = run_bill_run(
        engine, catalog, accounts, records_dir, period=args.period, shard=shard,
        options=options, now=now, progress=on_progress,
    )  # fmt: skip
    if profile is not None:
        profile.disable()
        profile.dump_stats(args.profile)
    seconds = time.monotonic() - began
    cpu = time.process_time() - cpu
    gc.callbacks.remove(on_gc)
    engine.dispose()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    results.put(
        ProcessResult(
            shard=str(shard),
            seconds=seconds,
            cpu_seconds=cpu,
            gc_seconds=gc_time[0],
            read_seconds=(read_until[0] if read_until else time.monotonic()) - began,
            accounts=summary.accounts,
            invoices=summary.invoices_created + summary.drafts_refreshed,
            records=summary.records,
            late_records=summary.late_records,
            errors=len(summary.errors),
            peak_rss_mib=usage.ru_maxrss / 1024,
        )
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    accounts, records_dir, generated = inputs(args)
    catalog = load_demo_catalog()
    period = period_of(args.period, 1, catalog.timezone)
    now = period.end + 3600
    url, drop = _fresh_database(args, workdir)
    context = multiprocessing.get_context("fork")
    ready, go, results = context.Semaphore(0), context.Event(), context.Queue()
    processes = [
        context.Process(
            target=_worker,
            args=(
                url,
                catalog,
                accounts,
                records_dir,
                args,
                Shard(k, args.processes),
                now,
                ready,
                go,
                results,
            ),
        )  # fmt: skip
        for k in range(args.processes)
    ]
    try:
        for process in processes:
            process.start()
        for _ in processes:
            ready.acquire()
        began = time.monotonic()
        go.set()
        done = [results.get() for _ in processes]
        wall = time.monotonic() - began
        for process in processes:
            process.join()
        failed = [p.exitcode for p in processes if p.exitcode]
        if failed:
            raise SystemExit(f"a bill run process failed: exit codes {failed}")
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
        drop()
    records = sum(r.records for r in done)
    invoices = sum(r.invoices for r in done)
    return {
        "database": "sqlite" if url.startswith("sqlite") else "postgresql",
        "processes": args.processes,
        "accounts": len(accounts),
        "records_in_segments": generated,
        "records_billed": records,
        "late_records": sum(r.late_records for r in done),
        "invoices": invoices,
        "errors": sum(r.errors for r in done),
        "finalize": bool(args.finalize),
        "wall_seconds": round(wall, 2),
        "records_per_second": round(records / wall),
        "invoices_per_second": round(invoices / wall),
        "cpu_seconds": round(sum(r.cpu_seconds for r in done), 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "peak_rss_mib": round(max(r.peak_rss_mib for r in done)),
        "per_process": [vars(r) for r in sorted(done, key=lambda r: r.shard)],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--workdir", default="/tmp/billbench")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--database-url", default=None, help="default: SQLite in WORKDIR")
    parser.add_argument("--period", default="2026-11")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--finalize", action="store_true", help="finalise in the run")
    parser.add_argument("--profile", default=None, help="cProfile output of process 0")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            if key != "per_process":
                print(f"{key:>20}: {value}")
        for item in result["per_process"]:
            print(
                f"  shard {item['shard']}: {item['seconds']:.1f} s ({item['cpu_seconds']:.1f} s CPU,"
                f" {item['gc_seconds']:.1f} s of it in the garbage collector;"
                f" {item['read_seconds']:.1f} s reading),"
                f" {item['invoices']} invoices,"
                f" {item['records']} records, peak RSS {item['peak_rss_mib']:.0f} MiB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
