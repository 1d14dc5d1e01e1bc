"""The ``ocs`` command: ``serve``, ``check-config``, ``provision``, and the client commands
``catalog load``, ``account create|show|bar`` and ``topup``; ``records read|verify``
read the rated-record segment files of ``records.directory`` (``ocs.records.commands``);
``billing migrate|status`` the billing database (``ocs.billing.commands``); ``bill-run``
makes invoices (``ocs.bill_run_command``), ``invoice list|show|finalize|void|credit-note``
manages them (``ocs.billing.invoice_commands``), ``bill-audit`` proves a period
(``ocs.bill_audit_command``).

Exit codes: 0 success; 1 ``check-config`` found problems in the file, ``provision``
refused the document, ``account show`` found no such account, the API refused a client
command's request; 2 usage errors, unreadable config or document file, invalid
configuration, Redis or the API unreachable; 130 interrupted; otherwise whatever
``ocs.service.run`` returns (``serve``: 3 when its private Redis died more than
``redis.embedded_max_restarts`` times within a minute).

``provision`` uses the Redis of the settings (``--redis-url``, ``OCS_REDIS_URL``,
``redis.url``). Without a URL it uses the private Redis of ``redis.data_dir``, as
``ocs serve`` does: the one a running ``ocs serve`` started (found through the data
directory's lock file), else one started just for the command and stopped after it
(its AOF keeps the data for the next ``ocs serve``).

The client commands talk to the management API (docs/api.md) at ``api.url``
(``--api-url``, ``OCS_API_URL``; default ``http://127.0.0.1:<http.port>``, the local
node) with the bearer token ``api.token`` (``OCS_API_TOKEN`` or the config file; never
a flag). ``account show`` uses the API when ``api.url`` is set, else it reads Redis
directly like ``provision``.

``serve`` has one flag per non-secret setting, generated from
:data:`ocs.config.SPECS`, so a new setting gets its flag without touching this
module. Secrets have no flag: command lines are visible to every local user.
"""

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from ocs.api.client import ApiClient, ApiRefused, ApiUnreachable
from ocs.bill_audit_command import add_audit_command, audit_command
from ocs.bill_run_command import add_bill_run_command, bill_run_command
from ocs.billing.commands import (
    add_billing_commands,
    add_invoice_commands,
    billing_command,
    invoice_command,
)
from ocs.config import (
    CONFIG_ENV,
    SPECS,
    ConfigError,
    ConfigFileError,
    Settings,
    SettingSpec,
    check_config,
    foreign_env,
    load_settings,
)
from ocs.logs import configure_logging, log_event
from ocs.metrics import package_version
from ocs.payment_command import add_payment_command, payment_command
from ocs.redis_store import StoreUnavailable, open_store
from quota_engine.accounts.model import (
    ACCOUNT_KINDS,
    Account,
    AccountError,
    Bucket,
    identity_problem,
)
from quota_engine.accounts.provisioning import ProvisioningError, provision, read_document
from quota_engine.catalog import CatalogError
from quota_engine.money import MICRO, format_money
from quota_engine.store.accounts import AccountStore
from quota_engine.store.catalogs import CatalogStore, CatalogStoreError, json_ready
from quota_engine.store.migration import migrate as migrate_schema
from quota_engine.store.schema import SchemaError

Runner = Callable[[Settings], int]

_METAVARS = {
    "bool": "true|false",
    "int": "N",
    "optional_int": "N|none",
    "float": "SECONDS",
    "str_tuple": "A,B,...",
}
_log = logging.getLogger("ocs")


def _flag_help(spec: SettingSpec) -> str:
    default = ",".join(spec.default) if spec.kind == "str_tuple" else spec.default
    shown = "unset" if default is None or default == "" else default
    return f"{spec.doc} [{spec.toml_name}, {spec.env}; default: {shown}]".replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocs", description="Convergent Online Charging System (Diameter Gy/Ro)."
    )
    parser.add_argument("--version", action="version", version=f"ocs {package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the OCS",
        description="Run the OCS. Precedence: flags > OCS_* environment > config file > defaults.",
    )
    _add_setting_flags(serve)
    export = commands.add_parser(
        "export",
        help="export rated records from Redis to segment files (a service)",
        description="Export the rated records of the partition streams to segment files in "
        "records.directory until SIGTERM (docs/records.md, Export). Several exporters share "
        "the partitions. Same settings and precedence as serve.",
    )
    _add_setting_flags(export)

    check = commands.add_parser(
        "check-config",
        help="validate a config file",
        description="Validate a TOML config file on its own (environment not included).",
    )
    check.add_argument("file", metavar="FILE")

    prov = commands.add_parser(
        "provision",
        help="load a catalog and accounts from a document",
        description="Apply a provisioning document (TOML, JSON or YAML; see "
        "docs/provisioning.md): validated whole, then applied idempotently.",
    )
    prov.add_argument("file", metavar="FILE")
    _add_redis_options(prov)

    migrate = commands.add_parser(
        "migrate",
        help="move the data of an older key schema to this version's",
        description="Move every account's keys and rated records from key schema 1 (each "
        "account its own hash tag) to the partitions of redis.partitions (docs/data-model.md, "
        "Partitions). Stop every ocs serve first. Run it again after a crash: it resumes.",
    )
    _add_redis_options(migrate)
    partitions = _spec("redis_partitions")
    assert partitions.flag is not None
    migrate.add_argument(
        partitions.flag, dest="redis_partitions", metavar="N", help=_flag_help(partitions)
    )

    catalog = commands.add_parser("catalog", help="manage the product catalog (over the API)")
    catalog_commands = catalog.add_subparsers(dest="catalog_command", metavar="ACTION")
    load = catalog_commands.add_parser(
        "load",
        help="upload a catalog file and activate it",
        description="Upload a catalog (TOML, JSON or YAML; docs/catalog.md) as a new version "
        "through the API and activate it on every node.",
    )
    load.add_argument("file", metavar="FILE")
    load.add_argument("--no-activate", action="store_true", help="upload only")
    _add_api_options(load)

    account = commands.add_parser("account", help="create, inspect and bar accounts")
    account_commands = account.add_subparsers(dest="account_command", metavar="ACTION")
    create = account_commands.add_parser(
        "create",
        help="create an account (over the API)",
        description="Create an account with its identities and, optionally, money in its "
        "main bucket. Amounts: integer micro-units, or a decimal with the currency (5.00EUR).",
    )
    create.add_argument("id", metavar="ID")
    create.add_argument("--kind", choices=ACCOUNT_KINDS, default="prepaid")
    create.add_argument("--plan", required=True, help="a plan of the active catalog")
    create.add_argument("--currency", help="default: the catalog's")
    create.add_argument("--credit-limit", metavar="AMOUNT", help="postpaid only")
    create.add_argument("--bill-cycle-day", type=int, metavar="DAY")
    create.add_argument("--parent", metavar="ID")
    create.add_argument(
        "--identity", action="append", default=[], metavar="IDENTITY",
        help="msisdn:..., imsi:..., sip:..., nai:... (repeatable)",
    )  # fmt: skip
    create.add_argument("--balance", metavar="AMOUNT", help="money in the main bucket")
    create.add_argument("--json", action="store_true", help="print the API's JSON answer")
    _add_api_options(create)
    show = account_commands.add_parser(
        "show",
        help="show an account, its identities and balances",
        description="Show an account by id or by identity (msisdn:..., imsi:..., sip:..., "
        "nai:..., or bare digits tried as MSISDN then IMSI). Over the API when api.url is "
        "set (--api-url, OCS_API_URL), else straight from Redis.",
    )
    show.add_argument("target", metavar="ID-or-identity")
    show.add_argument("--json", action="store_true", help="print JSON (exact integers)")
    _add_redis_options(show)
    _add_api_url_option(show)
    bar = account_commands.add_parser(
        "bar",
        help="bar an account (over the API); its open sessions are aborted",
        description="Set the account's status to barred: charging is refused and every "
        "open session gets an Abort-Session-Request.",
    )
    bar.add_argument("id", metavar="ID")
    _add_api_options(bar)

    topup = commands.add_parser(
        "topup",
        help="top up an account (over the API), once per key",
        description="Credit an account once per idempotency key: the same key again "
        "credits nothing and shows the first result. AMOUNT: integer micro-units (money) "
        "or units (a units bucket), or a decimal with the currency code (5.00EUR).",
    )
    topup.add_argument("account", metavar="ACCOUNT")
    topup.add_argument("amount", metavar="AMOUNT")
    topup.add_argument("--key", required=True, help="idempotency key, unique per top-up")
    topup.add_argument("--bucket", default="main", help="default: main (money)")
    topup.add_argument("--reason", help="recorded in the balance action history")
    topup.add_argument("--json", action="store_true", help="print the API's JSON answer")
    _add_api_options(topup)
    _add_records_commands(commands)
    add_billing_commands(commands)
    add_bill_run_command(commands)
    add_invoice_commands(commands)
    add_audit_command(commands)
    add_payment_command(commands)
    return parser


def _add_records_commands(commands: Any) -> None:
    records = commands.add_parser("records", help="read and check rated-record segment files")
    actions = records.add_subparsers(dest="records_command", metavar="ACTION")
    where = "segment directory or file (default: records.directory, ./data/records)"
    read = actions.add_parser(
        "read",
        help="print rated records from segment files, each once",
        description="Print the rated records of the segment files (docs/records.md), "
        "duplicates dropped. T: Unix seconds or ISO 8601 (2026-12-01, 2026-12-01T10:00:00Z; "
        "UTC without an offset); a record is in [--from, --to) by its end time.",
    )
    read.add_argument("dir", nargs="?", metavar="DIR", help=where)
    read.add_argument("--from", dest="start", metavar="T", help="records that ended at or after T")
    read.add_argument("--to", dest="end", metavar="T", help="records that ended before T")
    read.add_argument("--account", metavar="ACCOUNT", help="only this account's records")
    read.add_argument(
        "--format", dest="form", choices=("json", "csv", "msgpack"), default="json",
        help="json: one object per line; csv: the documented columns; msgpack: maps",
    )  # fmt: skip
    _add_config_option(read)
    verify = actions.add_parser(
        "verify",
        help="check every segment file (exit 0 sound, 1 damaged, 3 unsealed leftover)",
        description="Check every segment: header, checksums, trailer, missing sequences. "
        "A torn tail is reported with its offset. Exit status: 0 sound, 1 damage, 3 an "
        "unsealed segment left by a stopped writer, 2 no such directory.",
    )
    verify.add_argument("dir", nargs="?", metavar="DIR", help=where)
    _add_config_option(verify)


def _records_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ocs.records.commands import read_command, verify_command

    if args.records_command is None:
        print("usage: ocs records {read,verify} ...", file=sys.stderr)
        print("ocs records: error: an action is required (read, verify)", file=sys.stderr)
        return 2
    if args.dir is not None:
        directory = Path(args.dir)
    else:
        try:
            directory = Path(_settings_for(args, env, "records").records_directory)
        except _CommandError as exc:
            print(exc, file=sys.stderr)
            return exc.code
    if args.records_command == "verify":
        return verify_command(directory)
    return read_command(
        directory, start=args.start, end=args.end, account=args.account, form=args.form
    )


def _spec(name: str) -> SettingSpec:
    return next(s for s in SPECS if s.name == name)


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help=f"TOML config file (default: ${CONFIG_ENV}, else none)"
    )


def _add_api_url_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-url", dest="api_url", metavar="URL", help=_flag_help(_spec("api_url"))
    )


def _add_api_options(parser: argparse.ArgumentParser) -> None:
    _add_config_option(parser)
    _add_api_url_option(parser)


def _add_redis_options(parser: argparse.ArgumentParser) -> None:
    _add_config_option(parser)
    for name in ("redis_url", "redis_data_dir"):
        spec = _spec(name)
        assert spec.flag is not None  # not secrets
        parser.add_argument(spec.flag, dest=name, metavar=spec.key.upper(), help=_flag_help(spec))


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """``--config`` and a flag for each setting that has one (serve, export)."""
    _add_config_option(parser)
    for spec in SPECS:
        if spec.flag is None:
            continue
        parser.add_argument(
            spec.flag,
            dest=spec.name,
            metavar=_METAVARS.get(spec.kind, spec.key.split("_")[-1].upper()),
            help=_flag_help(spec),
        )


def _serve(args: argparse.Namespace, env: Mapping[str, str], runner: Runner | None) -> int:
    """``ocs serve`` and ``ocs export``: load the settings, configure logging, run."""
    command = args.command
    config_file = args.config or env.get(CONFIG_ENV) or None
    overrides = {spec.name: getattr(args, spec.name) for spec in SPECS if spec.flag is not None}
    try:
        settings = load_settings(config_file, env, overrides)
    except ConfigError as exc:
        count = len(exc.errors)
        plural = "s" if count != 1 else ""
        print(f"ocs {command}: invalid configuration ({count} problem{plural}):", file=sys.stderr)
        for problem in exc.errors:
            print(f"  {problem}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    log_event(_log, "config_loaded", config_file=config_file, settings=settings.redacted())
    if ignored := foreign_env(env):
        # a Service named "ocs" in the pod's namespace: harmless, but say so once
        log_event(_log, "env_ignored", level=logging.WARNING, variables=ignored,
                  reason="service links of a Kubernetes or Docker service named ocs")  # fmt: skip
    if runner is None and command == "export":
        from ocs.records.service import run as run_export  # lazy, as below

        runner = run_export
    elif runner is None:
        from ocs.service import run  # lazy: the service pulls in everything

        runner = run
    try:
        return runner(settings)
    except KeyboardInterrupt:
        log_event(_log, "interrupted")
        return 130


def _check_config(path: str) -> int:
    try:
        problems = check_config(path)
    except ConfigFileError as exc:
        for problem in exc.errors:
            print(problem, file=sys.stderr)
        return 2
    if problems:
        for problem in problems:
            print(f"{path}: {problem}", file=sys.stderr)
        return 1
    print(f"OK: {path}")
    return 0


# --- provision and account show ---------------------------------------------------------


class _CommandError(Exception):
    """Ends a command with ``message`` on stderr and exit code ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _settings_for(args: argparse.Namespace, env: Mapping[str, str], command: str) -> Settings:
    config_file = args.config or env.get(CONFIG_ENV) or None
    names = ("redis_url", "redis_data_dir", "redis_partitions", "api_url")
    overrides = {name: getattr(args, name) for name in names if hasattr(args, name)}
    try:
        return load_settings(config_file, env, overrides)
    except ConfigError as exc:
        raise _CommandError(
            2, f"ocs {command}: invalid configuration:\n  " + "\n  ".join(exc.errors)
        ) from None


@contextlib.asynccontextmanager
async def _redis(settings: Settings, command: str) -> AsyncIterator[aioredis.Redis]:
    """The Redis of the settings, as ``ocs serve`` opens it, else the private one of
    ``redis.data_dir`` (see the module doc); unusable: exit code 2."""
    try:
        async with open_store(settings, share_running=True) as client:
            yield client
    except StoreUnavailable as error:
        raise _CommandError(2, f"ocs {command}: {error}") from None


async def _provision(settings: Settings, path: str) -> int:
    try:
        document = read_document(path)
    except ProvisioningError as exc:
        raise _CommandError(2, "ocs provision: " + "\n".join(exc.problems)) from None
    async with _redis(settings, "provision") as client:
        try:
            report = await provision(client, document, base_dir=Path(path).parent)
        except ProvisioningError as exc:
            count = len(exc.problems)
            print(
                f"ocs provision: {path}: refused ({count} problem{'s' if count != 1 else ''}):",
                file=sys.stderr,
            )
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
    for line in report.lines():
        print(line)
    return 0


async def _find_account(store: AccountStore, target: str) -> str | None:
    """The account id ``target`` names: an account id, an identity, or bare digits."""
    with contextlib.suppress(AccountError, ValueError):
        if await store.get_account(target) is not None:
            return target
    for identity in _identities_named(target):
        found = await store.resolve(identity)
        if found is not None:
            return found
    return None


def _identities_named(target: str) -> list[str]:
    """The identities ``target`` may name, in the order they are tried: itself when it
    is one (``msisdn:...``), bare digits as an MSISDN, then as an IMSI."""
    if identity_problem(target) is None:
        return [target]
    if target.isdigit():
        return [f"msisdn:{target}", f"imsi:{target}"]
    return []


def _utc(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(seconds))


def _amount(value: int, bucket: Bucket, currency: str, minor_digits: int) -> str:
    if bucket.kind == "money":
        return format_money(value, currency, minor_digits)
    return f"{value} {bucket.unit}"


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]  # fmt: skip


def _show_text(account: Any, identities: list[str], buckets: list[Bucket], minor: int) -> str:
    def money(value: int) -> str:
        return format_money(value, account.currency, minor)

    lines = [
        f"account {account.id}",
        f"  kind            {account.kind}",
        f"  status          {account.status}",
        f"  plan            {account.plan}",
        f"  currency        {account.currency}",
    ]
    if account.kind == "postpaid":
        lines.append(f"  credit limit    {money(account.credit_limit)}")
    lines += [
        f"  bill cycle day  {account.bill_cycle_day}",
        f"  parent          {account.parent or '-'}",
        f"  created         {_utc(account.created)}",
        "identities" + ("" if identities else ": none"),
        *(f"  {identity}" for identity in identities),
        "buckets" + ("" if buckets else ": none"),
    ]
    if buckets:
        rows = [["ID", "KIND", "AVAILABLE", "AMOUNT", "RESERVED", "PRIORITY", "VALID", "SERVICES"]]
        for b in buckets:
            valid = (
                "-"
                if b.valid_from is None and b.valid_to is None
                else (f"{_utc(b.valid_from)} .. {_utc(b.valid_to)}")
            )
            rows.append([
                b.id, b.kind,
                _amount(b.available, b, account.currency, minor),
                _amount(b.amount, b, account.currency, minor),
                _amount(b.reserved, b, account.currency, minor),
                str(b.priority), valid, ",".join(b.services) or "all",
            ])  # fmt: skip
        lines += _columns(rows)
    return "\n".join(lines)


def _print_account(
    account: Account, identities: list[str], buckets: list[Bucket], minor: int, as_json: bool
) -> int:
    """``account show``'s output, whether read from Redis or over the API."""
    if as_json:
        document = {
            "account": account.to_dict(),
            "identities": identities,
            "buckets": [b.to_dict() for b in buckets],
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(_show_text(account, identities, buckets, minor))
    return 0


async def _account_show(settings: Settings, target: str, as_json: bool) -> int:
    async with _redis(settings, "account show") as client:
        store = AccountStore(client)
        account_id = await _find_account(store, target)
        account = None if account_id is None else await store.get_account(account_id)
        if account is None:
            print(f"ocs account show: no account or identity {target!r}", file=sys.stderr)
            return 1
        identities = await store.subscriptions(account.id)
        buckets = await store.buckets(account.id)
        minor = 2
        with contextlib.suppress(CatalogError, CatalogStoreError):
            catalog = await CatalogStore(client).active()
            if catalog is not None and catalog.currency == account.currency:
                minor = catalog.minor_digits
    return _print_account(account, identities, buckets, minor, as_json)


async def _migrate(settings: Settings) -> int:
    try:
        async with open_store(settings, check_schema=False) as client:
            report = await migrate_schema(client, settings.redis_partitions)
    except (StoreUnavailable, SchemaError) as error:
        raise _CommandError(2, f"ocs migrate: {error}") from None
    for key in report.left:
        print(f"ocs migrate: left in place, not a key this OCS knows: {key}", file=sys.stderr)
    print(
        f"{len(report.accounts)} accounts in key schema 2, {settings.redis_partitions} "
        f"partitions: {report.keys_moved} keys moved, {report.records_copied} records copied"
    )
    return 0


def _migrate_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        return asyncio.run(_migrate(_settings_for(args, env, "migrate")))
    except _CommandError as exc:
        print(exc, file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


def _run_redis_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    command = "provision" if args.command == "provision" else "account show"
    try:
        settings = _settings_for(args, env, command)
        if args.command == "provision":
            return asyncio.run(_provision(settings, args.file))
        if settings.api_url is not None:
            return _api_account_show(_client(settings), args.target, args.json)
        return asyncio.run(_account_show(settings, args.target, args.json))
    except _CommandError as exc:
        print(exc, file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


# --- the client commands: over the management API ------------------------------------


def _client(settings: Settings) -> ApiClient:
    url = settings.api_url or f"http://127.0.0.1:{settings.http_port}"
    return ApiClient(url, settings.api_token)


def _parse_amount(text: str, field: str) -> tuple[int, str | None]:
    """``(amount, currency or None)``: ``"5000000"`` -> (5000000, None), ``"5.00EUR"`` ->
    (5000000, "EUR"). Decimal amounts need their currency; no floats are involved."""
    text = text.strip().replace("_", "")
    if text.isdigit():
        return int(text), None
    number, currency = text[:-3].strip(), text[-3:]
    whole, _, fraction = number.partition(".")
    if (
        currency.isalpha()
        and currency.isupper()
        and whole.isdigit()
        and (fraction == "" or fraction.isdigit())
        and len(fraction) <= 6
    ):
        return int(whole) * MICRO + int(fraction.ljust(6, "0") or 0), currency
    raise _CommandError(
        2,
        f"{field}: give an integer (micro-units for money, else units) or a decimal with "
        f"its currency such as 5.00EUR, got {text!r}",
    )


def _refused(command: str, error: ApiRefused) -> int:
    print(f"ocs {command}: refused ({error.status}): {error.message}", file=sys.stderr)
    for field, message in error.fields:
        print(f"  {field}: {message}", file=sys.stderr)
    return 2 if error.status in (401, 403) else 1


def _catalog_load(client: ApiClient, path: str, activate: bool) -> int:
    try:
        document = json_ready(read_document(path))
    except (ProvisioningError, CatalogError) as exc:
        problems = exc.problems
        raise _CommandError(2, "ocs catalog load: " + "\n".join(problems)) from None
    status, saved, _ = client.request("POST", "/v1/catalog/versions", document)
    version = saved["version"]
    done = ["saved" if status == 201 else "already saved"]
    if activate:
        _, activated, _ = client.request("PUT", "/v1/catalog/active", {"version": version})
        done.append("activated" if activated["changed"] else "already active")
    print(f"catalog {version}: {', '.join(done)}")
    return 0


def _account_create(client: ApiClient, args: argparse.Namespace) -> int:
    entry: dict[str, Any] = {"id": args.id, "kind": args.kind, "plan": args.plan}
    if args.currency:
        entry["currency"] = args.currency
    if args.credit_limit is not None:
        entry["credit_limit"] = _parse_amount(args.credit_limit, "--credit-limit")[0]
    if args.bill_cycle_day is not None:
        entry["bill_cycle_day"] = args.bill_cycle_day
    if args.parent:
        entry["parent"] = args.parent
    if args.identity:
        entry["subscriptions"] = args.identity
    if args.balance is not None:
        entry["buckets"] = [{"id": "main", "amount": _parse_amount(args.balance, "--balance")[0]}]
    status, answer, _ = client.request("POST", "/v1/accounts", entry)
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
    else:
        print(f"account {args.id}: {answer['outcome']}")
    return 0


def _account_bar(client: ApiClient, account_id: str) -> int:
    client.request("PATCH", f"/v1/accounts/{client.quote(account_id)}", {"status": "barred"})
    print(f"account {account_id}: barred (open sessions are aborted)")
    return 0


def _topup(client: ApiClient, args: argparse.Namespace) -> int:
    amount, currency = _parse_amount(args.amount, "AMOUNT")
    body: dict[str, Any] = {"amount": amount, "bucket": args.bucket}
    if currency is not None:
        body["unit"] = currency
    if args.reason:
        body["reason"] = args.reason
    _, entry, headers = client.request(
        "POST",
        f"/v1/accounts/{client.quote(args.account)}/topupBalance",
        body,
        headers={"Idempotency-Key": args.key},
    )
    if args.json:
        print(json.dumps(entry, indent=2, ensure_ascii=False))
        return 0
    replayed = headers.get("Idempotent-Replayed") == "true"
    unit = entry.get("unit") or ""

    def shown(value: int) -> str:
        if len(unit) == 3 and unit.isupper():  # a currency code
            return format_money(value, unit)
        return f"{value} {unit}".strip()

    note = (
        " (this key was used before: nothing credited now, first result shown)" if replayed else ""
    )
    print(
        f"topped up {args.account}: +{shown(entry['amount'])} into {entry['bucket']}, "
        f"now {shown(entry['resulting_amount'])} (key {entry['key']}){note}"
    )
    return 0


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The items of ``data`` that are fields of the dataclass ``cls``."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _api_account_show(client: ApiClient, target: str, as_json: bool) -> int:
    account_data = None
    with contextlib.suppress(ApiRefused):
        account_data = client.get(f"/v1/accounts/{client.quote(target)}")
    if account_data is None:
        for identity in _identities_named(target):
            with contextlib.suppress(ApiRefused):
                owner = client.get(f"/v1/identities/{client.quote(identity)}")["account"]
                account_data = client.get(f"/v1/accounts/{client.quote(owner)}")
                break
    if account_data is None:
        print(f"ocs account show: no account or identity {target!r}", file=sys.stderr)
        return 1
    identities = account_data.get("subscriptions", [])
    account = Account(**_known(Account, account_data))
    path = f"/v1/accounts/{client.quote(account.id)}/buckets?limit=1000"
    buckets = [
        Bucket(**_known(Bucket, b) | {"services": tuple(b.get("services", ()))})
        for b in client.get(path)
    ]
    minor = 2
    with contextlib.suppress(ApiRefused, KeyError, TypeError):
        active = client.get("/v1/catalog/active")["document"]
        if active.get("currency") == account.currency:
            minor = int(active.get("minor_digits", 2))
    return _print_account(account, identities, buckets, minor, as_json)


_USAGE = {
    "catalog": ("ocs catalog load FILE", "load"),
    "account": ("ocs account {create,show,bar} ...", "create, show, bar"),
}


def _run_api_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    action = getattr(args, f"{args.command}_command", None)
    if args.command in _USAGE and action is None:
        usage, actions = _USAGE[args.command]
        print(f"usage: {usage}", file=sys.stderr)
        print(f"ocs {args.command}: error: an action is required ({actions})", file=sys.stderr)
        return 2
    command = " ".join(filter(None, (args.command, action)))
    try:
        settings = _settings_for(args, env, command)
        client = _client(settings)
        if args.command == "catalog":
            return _catalog_load(client, args.file, not args.no_activate)
        if args.command == "topup":
            return _topup(client, args)
        if action == "create":
            return _account_create(client, args)
        return _account_bar(client, args.id)
    except _CommandError as exc:
        print(exc, file=sys.stderr)
        return exc.code
    except ApiRefused as exc:
        return _refused(command, exc)
    except ApiUnreachable as exc:
        print(f"ocs {command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    runner: Runner | None = None,
) -> int:
    """Run the ``ocs`` command; return its exit code.

    ``env`` defaults to ``os.environ``; ``runner`` defaults to
    ``ocs.service.run`` (tests pass their own).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    if args.command in ("serve", "export"):
        return _serve(args, os.environ if env is None else env, runner)
    if args.command == "check-config":
        return _check_config(args.file)
    env = os.environ if env is None else env
    if args.command == "provision" or (
        args.command == "account" and args.account_command == "show"
    ):
        return _run_redis_command(args, env)
    if args.command == "records":
        return _records_command(args, env)
    if args.command == "migrate":
        return _migrate_command(args, env)
    if args.command == "billing":
        return billing_command(args, env)
    if args.command == "bill-run":
        return bill_run_command(args, env)
    if args.command == "invoice":
        # the documents read the customers' contacts from Redis (billing never does)
        from ocs.billing_source import read_document_inputs

        return invoice_command(args, env, read_document_inputs)
    if args.command == "bill-audit":
        return audit_command(args, env)
    if args.command == "payment":
        return payment_command(args, env)
    if args.command in ("catalog", "account", "topup"):
        return _run_api_command(args, env)
    parser.print_usage(sys.stderr)
    print(
        "ocs: error: a command is required "
        "(serve, export, check-config, provision, catalog, account, topup, records, billing, "
        "bill-run, invoice, bill-audit, payment)",
        file=sys.stderr,
    )
    return 2
