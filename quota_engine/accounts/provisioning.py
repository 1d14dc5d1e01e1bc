"""Provisioning documents: an optional catalog and accounts with their identities and
buckets, applied idempotently. The format and the rules are in docs/provisioning.md.

:func:`provision` validates the WHOLE document first (shape, values, the catalog, plans,
and what Redis already holds: catalog versions, identities owned by other accounts,
parents); it raises :class:`ProvisioningError` listing every problem, each prefixed
with its path (``accounts[3].buckets[0].amount: ...``), before writing anything.

Then it writes, additively: the catalog is saved and activated; each account, identity
and bucket is created when missing and left alone when present, unless the document
says ``replace = true`` for that account or bucket. Nothing is ever deleted, and
``reserved`` (live sessions) is never touched. Running a document twice changes
nothing the second time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import redis.asyncio as aioredis

from quota_engine import documents
from quota_engine.accounts.model import (
    Account,
    AccountError,
    Bucket,
    account_catalog_problems,
    bucket_catalog_problems,
    identity_problem,
    validate_account,
    validate_bucket,
)
from quota_engine.catalog import Catalog, CatalogError, load_catalog
from quota_engine.store.accounts import AccountStore
from quota_engine.store.catalogs import (
    CatalogStore,
    CatalogStoreError,
    canonical_json,
    demo_catalog_document,
    json_ready,
)
from quota_engine.store.limits import MAX_AMOUNT

__all__ = [
    "DEMO_DATA_PATH",
    "AccountReport",
    "ProvisioningError",
    "Report",
    "provision",
    "provision_demo",
    "provision_file",
    "read_document",
]

DEMO_DATA_PATH = Path(__file__).with_name("demo_data.toml")
"""The demo subscribers `ocs serve` provisions on the embedded default."""

_log = logging.getLogger(__name__)

CONCURRENCY = 32
"""Accounts of a document checked or applied at once (see :func:`_in_chunks`)."""

T = TypeVar("T")
R = TypeVar("R")
_MISSING = documents.MISSING
_DAY = 86_400
_TOP_KEYS = {"catalog", "accounts"}
_ACCOUNT_KEYS = {
    "id",
    "kind",
    "status",
    "currency",
    "plan",
    "credit_limit",
    "bill_cycle_day",
    "parent",
    "tax_exempt",
    "bill_separately",
    "itemisation",
    "name",
    "address",
    "locale",
    "email",
    "delivery",
    "reseller",
    "replace",
    "subscriptions",
    "buckets",
    "allowances",
}
_BUCKET_KEYS = {
    "id",
    "kind",
    "unit",
    "amount",
    "priority",
    "valid_from",
    "valid_to",
    "services",
    "replace",
}


class ProvisioningError(ValueError):
    """A document that cannot be applied; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        super().__init__(
            f"invalid provisioning document ({count} problem{'s' if count != 1 else ''}):\n  "
            + "\n  ".join(self.problems)
        )


# --------------------------------------------------------------------------- reading


def read_document(path: str | Path) -> dict[str, Any]:
    """Parse a ``.toml``, ``.json`` or ``.yaml``/``.yml`` provisioning document."""
    try:
        return documents.read_document(path)
    except documents.DocumentError as exc:
        raise ProvisioningError([str(exc)]) from None


# --------------------------------------------------------------------------- reports


@dataclass
class AccountReport:
    id: str
    outcome: str  # created | updated | unchanged | kept (exists, differs, no replace)
    differences: list[str] = field(default_factory=list)
    identities_added: list[str] = field(default_factory=list)
    buckets: dict[str, str] = field(default_factory=dict)  # id -> created|replaced|unchanged

    @property
    def changed(self) -> bool:
        return (
            self.outcome in ("created", "updated")
            or bool(self.identities_added)
            or any(o != "unchanged" for o in self.buckets.values())
        )

    def line(self) -> str:
        parts = [self.outcome]
        if self.outcome == "kept":
            parts = [f"kept (differs in {', '.join(self.differences)}; replace = true overwrites)"]
        if self.identities_added:
            parts.append(f"identities added: {', '.join(self.identities_added)}")
        changed = [f"{b} {o}" for b, o in self.buckets.items() if o != "unchanged"]
        if changed:
            parts.append("buckets " + ", ".join(changed))
        return f"account {self.id}: " + "; ".join(parts)


@dataclass
class Report:
    catalog_version: str | None = None
    catalog: str | None = None  # "saved, activated" | "activated" | "unchanged"
    accounts: list[AccountReport] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.catalog not in (None, "unchanged") or any(a.changed for a in self.accounts)

    def lines(self) -> list[str]:
        lines = []
        if self.catalog_version is not None:
            lines.append(f"catalog {self.catalog_version}: {self.catalog}")
        lines += [a.line() for a in self.accounts]
        counts = {
            o: sum(a.outcome == o for a in self.accounts) for o in ("created", "updated", "kept")
        }
        counts["unchanged"] = len(self.accounts) - sum(counts.values())
        buckets = [o for a in self.accounts for o in a.buckets.values()]
        identities = sum(len(a.identities_added) for a in self.accounts)
        lines.append(
            f"{len(self.accounts)} account{'s' if len(self.accounts) != 1 else ''}: "
            + ", ".join(f"{n} {o}" for o, n in counts.items())
            + f"; {identities} identities added; {buckets.count('created')} buckets created, "
            f"{buckets.count('replaced')} replaced"
        )
        lines.append("changed" if self.changed else "unchanged: nothing to do")
        return lines


# --------------------------------------------------------------------------- parsing


@dataclass
class _AccountPlan:
    path: str
    account: Account
    replace: bool
    identities: list[tuple[str, str]]  # (path, identity)
    buckets: list[tuple[str, Bucket, bool]]  # (path, bucket, replace)
    existing: Account | None = None


class _Parser(documents.DocumentChecker):
    """Checks a document against itself and a catalog; collects ``path: message``."""

    def __init__(self, now: int) -> None:
        super().__init__()
        self.now = now

    def flag(self, item: Mapping[str, Any], path: str) -> bool:
        value = item.get("replace", False)
        if not isinstance(value, bool):
            self.problem(f"{path}.replace", "must be true or false")
            return False
        return value

    def timestamp(self, value: Any, path: str) -> Any:
        """Unix seconds from an int, a datetime with an offset, or an ISO 8601 string."""
        if value is None or type(value) is int:
            return value
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                self.problem(path, "must be Unix seconds or an ISO 8601 time with an offset")
                return None
        if isinstance(value, datetime) and value.tzinfo is not None:
            return int(value.timestamp())
        self.problem(
            path, "must be Unix seconds or a date-time with an offset (2025-01-01T00:00:00Z)"
        )
        return None

    # -- the catalog

    def catalog(self, value: Any, base_dir: Path) -> tuple[dict[str, Any] | None, Catalog | None]:
        if value is _MISSING or value is None:
            return None, None
        if isinstance(value, str):
            path = base_dir / value
            try:
                data = read_document(path)
            except ProvisioningError as exc:
                self.problems += [f"catalog: {p}" for p in exc.problems]
                return None, None
            prefix = f"catalog ({path}): "
        elif isinstance(value, Mapping):
            data, prefix = dict(value), "catalog."
        else:
            self.problem("catalog", "must be a table (the catalog) or the path of a catalog file")
            return None, None
        try:
            document = json_ready(data)
            return document, load_catalog(document)
        except CatalogError as exc:
            self.problems += [prefix + p for p in exc.problems]
            return None, None

    # -- accounts

    def accounts(self, value: Any, catalog: Catalog | None) -> list[_AccountPlan]:
        plans: list[_AccountPlan] = []
        ids: dict[str, str] = {}
        identities: dict[str, str] = {}
        for path, raw in self.items(value, "accounts"):
            plan = self.account(raw, path, catalog, ids, identities)
            if plan is not None:
                plans.append(plan)
        return plans

    def account(
        self,
        raw: Any,
        path: str,
        catalog: Catalog | None,
        ids: dict[str, str],
        identities: dict[str, str],
    ) -> _AccountPlan | None:
        item = self.table(raw, path, _ACCOUNT_KEYS)
        if item is None:
            return None
        complete = self.required(item, path, "id", "kind", "plan")
        # without a catalog (already reported) nothing is written: "XXX" is never stored
        currency = item.get("currency", catalog.currency if catalog else "XXX")
        replace = self.flag(item, path)
        account = None
        if complete:
            account = Account(
                id=item["id"],
                kind=item["kind"],
                status=item.get("status", "active"),
                currency=currency,
                credit_limit=item.get("credit_limit", 0),
                plan=item["plan"],
                bill_cycle_day=item.get("bill_cycle_day", 1),
                parent=item.get("parent"),
                created=self.now,
                tax_exempt=item.get("tax_exempt", False),
                bill_separately=item.get("bill_separately", False),
                itemisation=item.get("itemisation", "detailed"),
                name=item.get("name"),
                address=item.get("address"),
                locale=item.get("locale"),
                email=item.get("email"),
                delivery=item.get("delivery", "email"),
                reseller=item.get("reseller"),
            )
            if self.report(path, validate_account(account)) and catalog is not None:
                self.report(path, account_catalog_problems(account, catalog))
            if account.id in ids:
                self.problem(
                    f"{path}.id", f"duplicate account {account.id!r} (also {ids[account.id]})"
                )
            ids.setdefault(account.id, path)
        found = []
        for ipath, identity in self.items(item.get("subscriptions"), f"{path}.subscriptions"):
            problem = identity_problem(identity)
            if problem is not None:
                self.problem(ipath, problem)
            elif identity in identities:
                self.problem(ipath, f"{identity} is also listed at {identities[identity]}")
            else:
                identities[identity] = ipath
                found.append((ipath, identity))
        buckets = self.buckets(item, path, catalog)
        buckets += self.allowances(item, path, account, catalog, {b.id for _, b, _ in buckets})
        if account is None:
            return None
        return _AccountPlan(path, account, replace, found, buckets)

    def buckets(
        self, item: Mapping[str, Any], path: str, catalog: Catalog | None
    ) -> list[tuple[str, Bucket, bool]]:
        found: list[tuple[str, Bucket, bool]] = []
        seen: dict[str, str] = {}
        for bpath, raw in self.items(item.get("buckets"), f"{path}.buckets"):
            entry = self.table(raw, bpath, _BUCKET_KEYS)
            if entry is None or not self.required(entry, bpath, "id", "amount"):
                continue
            services = entry.get("services", [])
            bucket = Bucket(
                id=entry["id"],
                kind=entry.get("kind", "money"),
                unit=entry.get("unit"),
                amount=entry["amount"],
                priority=entry.get("priority", 0),
                valid_from=self.timestamp(entry.get("valid_from"), f"{bpath}.valid_from"),
                valid_to=self.timestamp(entry.get("valid_to"), f"{bpath}.valid_to"),
                services=tuple(services) if isinstance(services, list | tuple) else services,
            )
            replace = self.flag(entry, bpath)
            if isinstance(bucket.id, str) and bucket.id in seen:
                self.problem(
                    f"{bpath}.id", f"duplicate bucket {bucket.id!r} (also {seen[bucket.id]})"
                )
                continue
            if isinstance(bucket.id, str):
                seen[bucket.id] = bpath
            if not self.report(bpath, validate_bucket(bucket)):
                continue
            if catalog is not None and not self.report(
                bpath, bucket_catalog_problems(bucket, catalog)
            ):
                continue
            found.append((bpath, bucket, replace))
        return found

    def allowances(
        self,
        item: Mapping[str, Any],
        path: str,
        account: Account | None,
        catalog: Catalog | None,
        bucket_ids: set[str],
    ) -> list[tuple[str, Bucket, bool]]:
        found: list[tuple[str, Bucket, bool]] = []
        entries = self.items(item.get("allowances"), f"{path}.allowances")
        plan = catalog.plan(account.plan) if catalog is not None and account is not None else None
        for apath, allowance_id in entries:
            if plan is None or catalog is None:  # a plan implies a catalog
                return found  # the plan problem is already reported
            allowance = next((a for a in plan.allowances if a.id == allowance_id), None)
            if allowance is None:
                known = ", ".join(a.id for a in plan.allowances) or "none"
                self.problem(
                    apath,
                    f"plan {plan.id!r} has no allowance {allowance_id!r} (allowances: {known})",
                )
                continue
            if allowance.id in bucket_ids:
                self.problem(apath, f"a bucket {allowance.id!r} is already listed in buckets")
                continue
            if allowance.units > MAX_AMOUNT:
                self.problem(apath, f"allowance units exceed {MAX_AMOUNT}")
                continue
            service = catalog.service(allowance.services[0])
            bucket = Bucket(
                id=allowance.id,
                kind="units",
                unit=service.unit if service is not None else None,
                amount=allowance.units,
                valid_from=self.now,
                valid_to=self.now + allowance.validity_days * _DAY,
                services=allowance.services,
            )
            bucket_ids.add(allowance.id)
            found.append((apath, bucket, False))
        return found


# --------------------------------------------------------------------------- checks against Redis


async def _check_redis(
    parser: _Parser,
    store: AccountStore,
    catalogs: CatalogStore,
    document: dict[str, Any] | None,
    catalog: Catalog | None,
    plans: list[_AccountPlan],
) -> None:
    if document is not None and catalog is not None:
        stored = await catalogs.document(catalog.version)
        if stored is not None and canonical_json(stored) != canonical_json(document):
            parser.problem(
                "catalog.version",
                f"version {catalog.version!r} is already saved with a different document; "
                "give the changed catalog a new version",
            )
    defined: set[str] = set()
    parent_in_redis: list[bool] = []  # whether a plan's parent must be found in Redis
    for plan in plans:
        parent = plan.account.parent
        parent_in_redis.append(parent is not None and parent not in defined)
        defined.add(plan.account.id)

    async def check(index: int) -> list[tuple[str, str]]:
        plan = plans[index]
        account = plan.account
        problems: list[tuple[str, str]] = []
        plan.existing = await store.get_account(account.id)
        parent = account.parent
        if (
            parent is not None
            and parent_in_redis[index]
            and await store.get_account(parent) is None
        ):
            problems.append(
                (
                    f"{plan.path}.parent",
                    f"no account {parent!r} in Redis or earlier in the document",
                )
            )
        for path, identity in plan.identities:
            owner = await store.resolve(identity)
            if owner is not None and owner != account.id:
                problems.append(
                    (path, f"{identity} belongs to account {owner!r}; remove it there first")
                )
        for path, bucket, replace in plan.buckets:
            existing = await store.bucket(account.id, bucket.id) if replace else None
            if existing is None or existing.reserved == 0:
                continue
            if existing.kind != bucket.kind or existing.unit != bucket.unit:
                problems.append(
                    (path, f"{existing.reserved} reserved: kind and unit cannot change now")
                )
            elif bucket.amount < existing.reserved:
                problems.append((f"{path}.amount", f"below the {existing.reserved} reserved now"))
        return problems

    for found in await _in_chunks(range(len(plans)), check):
        for path, message in found:  # in document order, whatever order the reads ended
            parser.problem(path, message)


async def _in_chunks(
    items: Iterable[T],
    work: Callable[[T], Awaitable[R]],
    *,
    waits_for: Callable[[T], object] = lambda item: None,
    key: Callable[[T], object] = lambda item: item,
) -> list[R]:
    """``work`` for every item, up to :data:`CONCURRENCY` at a time; results in item
    order. An item whose ``waits_for`` is the ``key`` of an item in the same chunk
    (an account whose parent the document creates just before) starts the next chunk.

    Each account's reads and writes are a handful of Redis round trips that do not
    depend on other accounts, so a bulk document is worked through many accounts at
    once (100,000 accounts took about 3 minutes one by one). An exception is raised
    once its chunk has finished, so no work is left running behind it."""
    results: list[R] = []
    chunk: list[T] = []
    keys_in_chunk: set[object] = set()

    async def run() -> None:
        done = await asyncio.gather(*(work(item) for item in chunk), return_exceptions=True)
        for value in done:
            if isinstance(value, BaseException):
                raise value
        results.extend(done)  # type: ignore[arg-type]

    for item in items:
        if len(chunk) == CONCURRENCY or waits_for(item) in keys_in_chunk:
            await run()
            chunk, keys_in_chunk = [], set()
        chunk.append(item)
        keys_in_chunk.add(key(item))
    if chunk:
        await run()
    return results


# --------------------------------------------------------------------------- applying


async def provision(
    redis: aioredis.Redis,
    document: Mapping[str, Any],
    *,
    base_dir: str | Path | None = None,
    now: int | None = None,
) -> Report:
    """Validate ``document`` whole, then apply it; returns what changed.

    ``base_dir`` resolves a catalog given as a path (default: the working directory);
    ``now`` (Unix seconds) dates new accounts, allowance buckets and the plan changes
    that ``replace`` makes (their balance history entries).
    """
    now = int(time.time()) if now is None else now
    parser = _Parser(now)
    catalogs = CatalogStore(redis)
    if not isinstance(document, Mapping):
        raise ProvisioningError(["document: must be a table (mapping)"])
    top = parser.table(document, "", _TOP_KEYS) or {}
    given = top.get("catalog", _MISSING)
    cat_document, catalog = parser.catalog(given, Path(base_dir or "."))
    if given is _MISSING or given is None:
        try:
            catalog = await catalogs.active()
        except (CatalogError, CatalogStoreError) as exc:
            parser.problem("catalog", f"the active catalog cannot be loaded: {exc}")
        else:
            if catalog is None:
                parser.problem(
                    "catalog", "no catalog is active in Redis; add a catalog to the document"
                )
    plans = parser.accounts(top.get("accounts", _MISSING), catalog)
    if catalog is None or parser.problems:
        raise ProvisioningError(parser.problems)
    store = AccountStore(redis, catalog=catalog)
    await _check_redis(parser, store, catalogs, cat_document, catalog, plans)
    if parser.problems:
        raise ProvisioningError(parser.problems)
    report = Report()
    if cat_document is not None:
        saved = await catalogs.document(catalog.version) is None
        version = await catalogs.save(cat_document)
        activated = await catalogs.activate(version)
        report.catalog_version = version
        report.catalog = (
            ", ".join([w for w, done in (("saved", saved), ("activated", activated)) if done])
            or "unchanged"
        )

    async def apply(plan: _AccountPlan) -> AccountReport:
        try:
            return await _apply(store, plan, now)
        except AccountError as exc:
            raise ProvisioningError(
                [
                    f"{plan.path}: {exc} (stopped here; fix it and run again: provisioning is idempotent)"
                ]
            ) from exc

    report.accounts.extend(
        await _in_chunks(
            plans,
            apply,
            waits_for=lambda plan: plan.account.parent,
            key=lambda plan: plan.account.id,
        )
    )
    return report


async def _apply(store: AccountStore, plan: _AccountPlan, now: int) -> AccountReport:
    account = plan.account
    differences = plan.existing.differences(account) if plan.existing is not None else []
    if differences and not plan.replace:
        report = AccountReport(account.id, "kept", differences)
    else:
        outcome = await store.create_account(account, upsert=plan.replace, now=now)
        report = AccountReport(account.id, outcome)
    for _, identity in plan.identities:
        if await store.add_subscription(account.id, identity):
            report.identities_added.append(identity)
    for _, bucket, replace in plan.buckets:
        report.buckets[bucket.id] = await store.put_bucket(account.id, bucket, replace=replace)
    return report


async def provision_file(
    redis: aioredis.Redis, path: str | Path, *, now: int | None = None
) -> Report:
    """:func:`provision` a file; a catalog path in it is relative to the file."""
    path = Path(path)
    return await provision(redis, read_document(path), base_dir=path.parent, now=now)


async def provision_demo(redis: aioredis.Redis) -> None:
    """The embedded default: activate the demo catalog when no catalog is active, then
    provision the accounts of :data:`DEMO_DATA_PATH` idempotently.

    Never replaces an operator's active catalog or changes an existing demo account; a
    problem with the demo data (a demo identity moved to another account, an active
    catalog without the demo plans) is logged as a warning, not raised.
    """
    catalogs = CatalogStore(redis)
    try:
        version = await catalogs.save(demo_catalog_document())
        await catalogs.activate(version, only_if_none=True)
    except CatalogStoreError as exc:  # demo_catalog.toml changed without a new version
        _log.warning("demo catalog not installed: %s", exc)
    document = read_document(DEMO_DATA_PATH)
    document.pop("catalog", None)  # activated above, only if none was
    try:
        report = await provision(redis, document)
    except ProvisioningError as exc:
        # paths only: the messages may hold identities, which logs must not show in clear
        where = ", ".join(problem.split(": ", 1)[0] for problem in exc.problems)
        _log.warning(
            "demo subscribers not provisioned: problems at %s (see them with `ocs provision %s`)",
            where,
            DEMO_DATA_PATH,
        )
        return
    _log.info("demo subscribers: %s", report.lines()[-2])  # counts only: no identities
