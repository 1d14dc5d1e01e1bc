"""The charging engine: charging requests in, grants and debits out, balances in Redis.

:meth:`ChargingEngine.charge` takes a batch of :class:`~quota_engine.model.ChargingRequest`
(the requests that arrived together) and answers each with a
:class:`~quota_engine.model.ChargingResult`, in one Redis round trip for the whole
batch when its caches hold the batch's subscribers, and four at most (plus two for
each rerun of a request found stale, below):

1. identities -> account: an in-process cache (``identity_cache_ttl``); misses are
   read (``GET ocs:sub:<identity>``) in one pipeline, the first identity of a request
   that has an account wins;
2. accounts: the fields rating needs (plan, bill cycle day, currency) and the period
   usage (``ocs:acct:{A}:usage:<period>``, for tiers) come from an in-process cache
   (``account_cache_ttl``) for session CCRs and direct debits; the other requests and
   the misses read them in one pipeline. The period needs the bill cycle day, which
   is cached; if it changed, the usage is read again;
3. each service is rated in Cython (``Catalog.find_service``, ``Rater.price``), and
   ONE pipeline carries one script call per request (ccr.lua, event.lua, refund.lua or
   balance.lua), each session request's call followed by its ``ocs:deadlines`` update
   as it will most likely be: ZADD at the new deadline for CCR-I/U, ZREM for CCR-T
   (``ocs:deadlines`` has no hash tag, so a script cannot write it on a Cluster);
4. only where a script's answer says otherwise, one more pipeline puts the index
   right: every session alive after its call (its answer carries its deadline, also
   for a refused, out-of-order or replayed request) is indexed at that deadline, and
   no other. A request that failed after its ZREM is indexed again at the new
   deadline: the sweeper finds the session (or its absence) then.

The cache is optimistic and never trusted blindly: ccr.lua and event.lua get the
plan, bill cycle day and currency the request was rated with, and for each tiered
price the usage range its tier holds for, and compare them with Redis before writing
anything. A request rated from an outdated copy (a plan change, a tier crossed by
usage elsewhere) is answered ``stale``; the engine drops the cached account, reads it
and runs the request again (step 2 and 3 once more, for those requests only). So in
the steady state a batch costs one round trip, and a change made anywhere applies to
the very next request.

The session's rating context (destination, visited MCC-MNC, APN, which many network
elements send only in CCR-Initial: docs/diameter.md, "What a CCR may omit") is kept
by ccr.lua in the session and cached here the same way (session id -> context, filled
from the CCR-I and from the answers): a session request that omits an input is rated
with the cached value, and ccr.lua refuses one rated with another context than the
session's (``stale`` with the session's context, e.g. on a node that never saw the
CCR-I); it is rated again with that, the account cache kept.

A request that cannot be prepared (e.g. a Python error while rating it) fails alone:
:class:`ChargingBatchError` carries it in its place, the others are answered.

Price enquiries need no script. The results are decoded into the model's dataclasses;
a retransmission's result is the one stored by the first call, byte for byte.

Each request is rated at its own rating time (``_Job.rated_at``,
:mod:`~quota_engine.charging.rating_clock`); deadlines and TTLs stay on server time
(``now``, read once per batch).

The engine needs a client whose responses are bytes (``decode_responses=False``).
The per-request pipelines may go over another client to the same server, ``link``
(a :class:`~quota_engine.store.redis_link.RedisLink` in ``ocs serve``: much cheaper per
pipeline than redis-py); the rest (sessions, sweeping) uses ``redis``.

Beside the engine, each module with its own story:

- :mod:`~quota_engine.charging.settings`: its settings (``[charging]`` of ``ocs serve``);
- :mod:`~quota_engine.charging.cache`: one ``ExpiringCache`` class for all its caches;
- :mod:`~quota_engine.charging.rating_clock`: the rating time;
- :mod:`~quota_engine.charging.periods`: the bill period arithmetic;
- :mod:`~quota_engine.charging.rate_changes`: Validity-Time cut at a rate change,
  Tariff-Time-Change, a report split at a change;
- :mod:`~quota_engine.charging.tiers`: tiers priced after the request's reports;
- :mod:`~quota_engine.charging.grants`: how much a grant or an event may hold;
- :mod:`~quota_engine.charging.script_prices`: the price as the scripts take it;
- :mod:`~quota_engine.charging.usage_caps`: usage sanity, a report's caps;
- :mod:`~quota_engine.charging.results`: answers and price enquiries as results;
- :mod:`~quota_engine.charging.sessions`: the sessions view the API uses;
- :mod:`quota_engine.store.charging_reads`: its reads;
- :mod:`~quota_engine.charging.observer`: batch sizes, cache hits and misses, stale
  reruns, failures, for metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Sequence
from typing import Any, Final, TypeVar

from quota_engine.catalog import Catalog, Plan, Service
from quota_engine.charging.cache import ExpiringCache
from quota_engine.charging.grants import MAX_GRANT_COST, MAX_USED, cost_cap, grant_units
from quota_engine.charging.observer import NO_OBSERVER, EngineObserver
from quota_engine.charging.periods import BillPeriods, cycle_day
from quota_engine.charging.rate_changes import RateChanges
from quota_engine.charging.rating import Price, Rater
from quota_engine.charging.rating_clock import rating_time
from quota_engine.charging.results import charging_result, price_enquiry_result
from quota_engine.charging.script_prices import script_price
from quota_engine.charging.sessions import sessions_of
from quota_engine.charging.settings import EngineSettings
from quota_engine.charging.sweeper import sweep_expired
from quota_engine.charging.tiers import price_after_reports
from quota_engine.charging.usage_caps import cap_floor, cap_report, report_capped
from quota_engine.model import (
    ChargingRequest,
    ChargingResult,
    EventAction,
    Outcome,
    RequestType,
    ServiceUsage,
)
from quota_engine.store import deadlines
from quota_engine.store.charging_reads import read_owners, read_period_usage, read_rating_inputs
from quota_engine.store.clients import PipelineClient, RedisClient
from quota_engine.store.contract import (
    STALE,
    BalanceArgs,
    CcrArgs,
    ChargeAnswer,
    EventArgs,
    EventService,
    RatedService,
    RatedWith,
    RatingContext,
    RefundArgs,
    ScriptPrice,
    SessionService,
    decode_balance,
    decode_ccr,
    decode_debit,
)
from quota_engine.store.records import rg_key
from quota_engine.store.scripts import BALANCE, CCR, EVENT, REFUND, ScriptPipeline

__all__ = [
    "MAX_GRANT_COST",
    "AccountChanged",
    "ChargingBatchError",
    "MAX_USED",
    "ChargingEngine",
    "EngineSettings",
]

CatalogSource = Callable[[], tuple[Catalog, Rater]]

_ATTEMPTS = 3
"""Runs of a request whose script found the cached account outdated (the last one
with the account just read; a third means it changed twice in a few milliseconds)."""
_Rated = TypeVar("_Rated", bound=RatedService)

_NO_CONTEXT: Final = RatingContext()
_KEPT: Final = frozenset({Outcome.OK.value, Outcome.SERVICE_DENIED.value})
"""The outcomes of ccr.lua after which the session keeps the context the request was
rated with (it wrote the session)."""

_CachedAccount = tuple[str, dict[str, str], dict[str, int]]
"""What the account cache holds: the bill period it was read for, the account's
rating fields and its usage in that period."""


class ChargingBatchError(RuntimeError):
    """Some requests of a batch failed in Redis (a script error on corrupt data, a
    wrong key type). ``results[i]`` is the :class:`ChargingResult` of request ``i`` or
    the exception it met. The answered requests are done (their debits are committed,
    and a retransmission gets the same answer), so a caller may answer them and fail
    only the others."""

    def __init__(self, results: list[ChargingResult | BaseException]) -> None:
        self.results = results
        errors = [r for r in results if isinstance(r, BaseException)]
        super().__init__(f"{len(errors)} of {len(results)} charging requests failed: {errors[0]}")


class AccountChanged(RuntimeError):
    """A request's account kept changing while it was being charged (see
    ``_ATTEMPTS``); nothing was written for it and it can be sent again."""


class _Job:
    """One request on its way through :meth:`ChargingEngine.charge`."""

    __slots__ = (
        "account",
        "answer",
        "context",
        "decode",
        "error",
        "deadline",
        "index",
        "info",
        "member",
        "rated_at",
        "request",
        "result",
        "services",
        "session_context",
        "usage",
        "zrem_sent",
    )

    def __init__(self, request: ChargingRequest, rated_at: int) -> None:
        self.request = request
        # the rating time (rating_clock): band, bill period, bucket validity, records
        self.rated_at = rated_at
        self.account: str | None = None
        # a session request's ocs:deadlines member, its new deadline, and whether its
        # script call went with a ZREM (CCR-T) rather than a ZADD at that deadline
        self.member: str | None = None
        self.deadline = 0
        self.zrem_sent = False
        # the session's rating context as its script answered it (a stale answer):
        # kept across reset(), the next run rates with it
        self.session_context: RatingContext | None = None
        self.reset()

    def reset(self) -> None:
        """Back to resolved-only, to be prepared and run again."""
        self.info: dict[str, str] | None = None
        self.usage: dict[str, int] = {}
        self.result: ChargingResult | None = None
        self.error: BaseException | None = None  # met while preparing or running it
        self.index: int | None = None  # of the script call in the pipeline
        self.answer: ChargeAnswer | None = None  # the script's answer
        self.decode: Callable[[bytes], ChargeAnswer] = decode_ccr  # the script's decoder
        self.services: Sequence[RatedService] = ()
        self.context = _NO_CONTEXT  # what the request is rated with

    @property
    def checks_account(self) -> bool:
        """Whether this request's script re-checks the account fields and usage it
        was rated with, so that it may be rated from the cache."""
        request = self.request
        return request.request_type is not RequestType.EVENT or request.action in (
            None,
            EventAction.DIRECT_DEBITING,
        )


class ChargingEngine:
    """Rates and charges :class:`ChargingRequest` batches against Redis."""

    def __init__(
        self,
        redis: RedisClient,
        catalog_source: CatalogSource,
        settings: EngineSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        link: PipelineClient | None = None,
        observer: EngineObserver = NO_OBSERVER,
    ) -> None:
        pool = getattr(redis, "connection_pool", None)
        if pool is not None and pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the charging engine needs a Redis client with decode_responses=False")
        self.redis = redis
        self._link: PipelineClient = redis if link is None else link
        self._catalog_source = catalog_source
        self.settings = settings = settings or EngineSettings()
        self._clock = clock
        self._observer = observer
        # the caches' clock is time.monotonic, read once per batch
        self._identities: ExpiringCache[str, str] = ExpiringCache(
            settings.identity_cache_ttl, settings.identity_cache_size
        )
        self._accounts: ExpiringCache[str, _CachedAccount] = ExpiringCache(
            settings.account_cache_ttl, settings.account_cache_size
        )
        self._periods = BillPeriods(settings.account_cache_size)
        self._rate_changes = RateChanges(settings)
        self._meta_cache: dict[str, ScriptPrice] = {}
        # usage sanity: a report may overrun a small grant up to the unit's default grant
        self._cap_floor = cap_floor(settings)
        # session id -> the rating context its script keeps (ccr.lua checks it): a
        # session silent for longer is settled by the sweeper anyway
        self._contexts: ExpiringCache[str, RatingContext] = ExpiringCache(
            settings.validity_time + settings.grace, settings.account_cache_size
        )

    # ------------------------------------------------------------------ identities

    def forget(self, identity: str | None = None) -> None:
        """Drop one identity (or all) from the identity cache."""
        if identity is None:
            self._identities.clear()
        else:
            self._identities.pop(identity)

    async def _resolve(self, jobs: list[_Job]) -> None:
        cache = self._identities
        mono = time.monotonic()
        wanted: dict[str, None] = {}
        # the cache hits are kept here: another batch may drop an entry (expired,
        # forgotten, cache full) while this one waits for Redis
        known: dict[str, str] = {}
        hits = misses = 0
        for job in jobs:
            for identity in job.request.identities:
                account = cache.get(identity, mono)
                if account is not None:
                    known[identity] = account
                    hits += 1
                    break
                wanted[identity] = None
                misses += 1
        self._observer.cache_lookups("identity", hits, misses)
        found: dict[str, str] = {}
        if wanted:
            names = list(wanted)
            for identity, owner in zip(names, await read_owners(self._link, names), strict=True):
                if owner is not None:
                    found[identity] = owner
                    cache.put(identity, owner, mono)
        for job in jobs:
            for identity in job.request.identities:
                account = found.get(identity) or known.get(identity)
                if account:
                    job.account = account
                    break

    # ------------------------------------------------------------------ accounts

    async def _load_accounts(self, jobs: list[_Job], catalog: Catalog) -> None:
        tz = catalog.timezone
        cache, periods = self._accounts, self._periods
        mono = time.monotonic()
        wanted: dict[str, None] = {}
        hits = misses = 0
        for job in jobs:
            account = job.account
            if not account:
                continue
            if job.checks_account:
                hit = cache.get(account, mono)
                # the usage of the bill period of the request's rating time
                if hit is not None and hit[0] == periods.of(account, tz, job.rated_at):
                    job.info, job.usage = hit[1], hit[2]
                    hits += 1
                    continue
                misses += 1
            wanted[account] = None
        self._observer.cache_lookups("account", hits, misses)
        if wanted:
            await self._read_accounts(list(wanted), jobs, tz, mono)

    async def _read_accounts(
        self, accounts: list[str], jobs: list[_Job], tz: str, mono: float
    ) -> None:
        """Read the accounts' fields, and their usage in the bill period of each of
        their jobs' rating times (nearly always one), in one pipeline, guessing the
        periods from each account's last known cycle day; a wrong guess costs one more
        pipeline. Every job of an account read gets what was read."""
        periods = self._periods
        periods.make_room(len(accounts))
        asked = {account: periods.known_day(account) for account in accounts}
        pairs = self._periods_of(asked, jobs, tz)
        read = await read_rating_inputs(self._link, pairs)
        infos: dict[str, dict[str, str] | None] = {}
        usages: dict[tuple[str, str], dict[str, int]] = {}
        again: dict[str, None] = {}
        for pair, (info, usage) in zip(pairs, read, strict=True):
            account = pair[0]
            infos[account] = info
            if info is None:
                continue
            actual = cycle_day(info["bill_cycle_day"])
            periods.learn(account, actual)
            if actual != asked[account]:
                again[account] = None
            else:
                usages[pair] = usage
        if again:
            wanted = self._periods_of(again, jobs, tz)
            usages.update(zip(wanted, await read_period_usage(self._link, wanted), strict=True))
        cache = self._accounts
        for job in jobs:
            owner = job.account
            if owner is None or owner not in infos:
                continue
            info = job.info = infos[owner]
            if info is None:
                job.usage = {}
                if cache.ttl > 0:
                    cache.pop(owner)
                continue
            period = periods.of(owner, tz, job.rated_at)
            job.usage = usages[owner, period]
            if cache.ttl > 0:
                cache.put(owner, (period, info, job.usage), mono)

    def _periods_of(
        self, accounts: Container[str], jobs: list[_Job], tz: str
    ) -> list[tuple[str, str]]:
        """``(account, bill period)`` of the rating time of every job of ``accounts``,
        each pair once, from the accounts' known cycle days."""
        periods = self._periods
        pairs: dict[tuple[str, str], None] = {}
        for job in jobs:
            account = job.account
            if account is not None and account in accounts:
                pairs[account, periods.of(account, tz, job.rated_at)] = None
        return list(pairs)

    # ------------------------------------------------------------------ charge

    async def charge(self, requests: Sequence[ChargingRequest]) -> list[ChargingResult]:
        """Answer every request of the batch (same order)."""
        if not requests:
            return []
        now = int(self._clock())  # server time: deadlines; rating is at each rated_at
        tolerance = self.settings.timestamp_tolerance
        jobs = [
            _Job(request, rating_time(request.timestamp, now, tolerance)) for request in requests
        ]
        observer = self._observer
        observer.charge_batch(len(jobs))
        untrusted = sum(1 for job in jobs if job.rated_at != job.request.timestamp)
        if untrusted:
            observer.untrusted_timestamps(untrusted)
        catalog, rater = self._catalog_source()
        try:
            await self._resolve(jobs)
            pending = jobs
            for _ in range(_ATTEMPTS):
                await self._load_accounts(pending, catalog)
                pending = await self._run(pending, catalog, rater, now)
                if not pending:
                    break
                observer.stale_requests(len(pending))
        except Exception:
            observer.failed_requests(len(jobs))
            raise
        for job in pending:
            job.error = AccountChanged(f"account {job.account} changed during charging")
        out: list[Any] = []
        corrections: list[tuple[Any, ...]] = []
        failed = 0
        for job in jobs:
            if job.member is not None and (correction := _index_correction(job)) is not None:
                corrections.append(correction)
            if job.error is not None:
                out.append(job.error)
                failed += 1
                continue
            if job.result is None:
                assert job.answer is not None
                job.result = charging_result(job.answer, job.account, job.info)
            out.append(job.result)
        if corrections:  # rare: most batches need no second round trip, nor its pipeline
            index = self._link.pipeline(transaction=False)
            for command in corrections:
                index.execute_command(*command)
            # the index is the sweeper's hint, not the truth: a failed write of it
            # does not undo the charging done (it is retried with the next request)
            await index.execute(raise_on_error=False)
        if failed:
            observer.failed_requests(failed)
            raise ChargingBatchError(out)
        return out

    async def _run(self, jobs: list[_Job], catalog: Catalog, rater: Rater, now: int) -> list[_Job]:
        """Prepare the jobs and run their scripts in one pipeline; the jobs whose
        script found the cached account outdated come back, reset, to run again."""
        pipe = ScriptPipeline(self._link)
        mono = time.monotonic()
        for job in jobs:
            try:
                self._prepare(job, catalog, rater, now, mono, pipe)
            except Exception as error:  # this request only; the others go on
                job.error = error
        results = await pipe.execute() if len(pipe) else []
        stale = []
        contexts = self._contexts
        for job in jobs:
            if job.index is None:
                continue
            raw = results[job.index]
            if isinstance(raw, BaseException):
                job.error = raw
                continue
            answer = job.decode(raw)
            request = job.request
            if answer.outcome == STALE:
                assert job.account is not None  # a script ran for it
                context = answer.session_context
                if context is None:  # the account changed, not the session
                    self._accounts.pop(job.account)
                else:
                    job.session_context = context
                    contexts.put(request.session_id, context, mono)
                job.reset()
                stale.append(job)
                continue
            job.answer = answer
            if answer.capped:
                report_capped(self._observer, job.account, request.peer, answer.capped)
            if request.request_type is RequestType.TERMINATE:
                contexts.pop(request.session_id)
            elif request.request_type is not RequestType.EVENT and answer.outcome in _KEPT:
                # the script keeps the context the request was rated with
                contexts.put(request.session_id, job.context, mono)
        return stale

    def _prepare(
        self,
        job: _Job,
        catalog: Catalog,
        rater: Rater,
        now: int,
        mono: float,
        pipe: ScriptPipeline,
    ) -> None:
        request = job.request
        if job.account is None or job.info is None:
            job.result = ChargingResult(Outcome.UNKNOWN_SUBSCRIBER, message="unknown subscriber")
            return
        account = job.account
        plan = catalog.plan(job.info["plan"])
        kind = request.request_type
        carried = RatingContext(request.destination, request.visited_mcc_mnc, request.apn)
        if kind is RequestType.EVENT:
            job.context = carried
            action = request.action or EventAction.DIRECT_DEBITING
            self._prepare_event(job, action, catalog, rater, plan, now, pipe)
            return
        # what the request omits is rated as the session remembers it: from the
        # script's stale answer, else this node's cache (ccr.lua checks it)
        kept = job.session_context
        if kept is None and kind is not RequestType.INITIAL:
            kept = self._contexts.get(request.session_id, mono)
        job.context = context = carried if kept is None else carried.over(kept)
        settings, rate_changes = self.settings, self._rate_changes
        services = []
        validity = []
        closing = kind is RequestType.TERMINATE
        for usage in request.services:
            service, price, entry = self._rate(job, usage, catalog, rater, plan, SessionService)
            # usage sanity: the unit's cap here, the grant's factor in ccr.lua
            entry.used, entry.reported = cap_report(usage.used, settings.usage_cap(entry.unit))
            entry.final = bool(usage.final)
            if service is not None and entry.used > 0:
                entry.used_before, entry.change_at = rate_changes.before_change(
                    catalog,
                    rater,
                    plan,
                    service,
                    job.rated_at,
                    context,
                    job.usage,
                    usage,
                    entry.used,
                )
            if price is not None and service is not None and not price.zero_rated:
                want = usage.requested
                if not want and (want == 0 or kind is RequestType.INITIAL):
                    want = settings.default_grant(service.unit)
                if want and not closing and not usage.final:
                    entry.requested = grant_units(price, want)
                    vt, change = rate_changes.validity(
                        catalog, rater, plan, service, job.rated_at, context, job.usage
                    )
                    # off: Validity-Time still stops at the change, the CCA (and the
                    # answer ccr.lua stores for retransmissions) just does not say why
                    entry.tariff_time_change = change if settings.tariff_time_change else None
                    validity.append(vt)
                    entry.validity_time = vt
                    entry.threshold_percent = settings.quota_threshold_percent
                    entry.holding_time = settings.quota_holding_time
                    if plan is not None:
                        entry.final_action = plan.final_unit_action
                        entry.redirect_address = plan.redirect_address
            services.append(entry)
        price_after_reports(
            services, job.usage, job.rated_at, context, catalog, rater, plan, self._meta_cache
        )
        job.services = services
        deadline = now + max(validity or [settings.validity_time]) + settings.grace
        args = CcrArgs(
            account=account,
            session_id=request.session_id,
            request_number=request.request_number,
            request_type=kind.value,
            timestamp=job.rated_at,
            now=now,
            deadline=deadline,
            idempotency_ttl=settings.idempotency_ttl,
            usage_ttl=settings.usage_ttl,
            peer=request.peer,
            context=request.service_context,
            identities=request.identities,
            services=services,
            rated_with=_rated_with(job.info),
            period=self._periods.of(account, catalog.timezone, job.rated_at),
            rating_context=context,
            carried_context=None if context is carried else carried,
            cap_factor=settings.usage_cap_factor,
            cap_floor=self._cap_floor,
        )
        job.decode = decode_ccr
        job.index = pipe.script(CCR, args.keys(), args.argv())
        job.member = member = deadlines.member(account, request.session_id)
        job.deadline, job.zrem_sent = deadline, closing
        if closing:
            pipe.command(*deadlines.unindex(member))
        else:
            pipe.command(*deadlines.index(member, deadline))

    def _prepare_event(
        self,
        job: _Job,
        action: EventAction,
        catalog: Catalog,
        rater: Rater,
        plan: Plan | None,
        now: int,
        pipe: ScriptPipeline,
    ) -> None:
        request = job.request
        account = job.account
        assert account is not None and job.info is not None
        settings = self.settings
        refund = action is EventAction.REFUND_ACCOUNT
        enquiry = action is EventAction.PRICE_ENQUIRY
        services = []
        costs = []  # of a price enquiry's services
        for usage in request.services:
            service, price, entry = self._rate(job, usage, catalog, rater, plan, EventService)
            units = 0
            if service is not None:
                units = usage.requested or usage.used or settings.default_grant(service.unit)
                units = min(max(int(units), 0), MAX_USED)
            entry.units = units
            cost = 0
            if price is not None:
                if refund and price.zero_rated:
                    entry.preset = Outcome.NOT_APPLICABLE.value
                elif (refund or enquiry) and not price.zero_rated and units > cost_cap(price):
                    # no balance could pay this many units (and its price would not
                    # fit the scripts' exact range): not quoted, not refunded
                    entry.preset = Outcome.CREDIT_LIMIT_REACHED.value
                elif refund:
                    entry.amount = min(price.cost(units), MAX_GRANT_COST)
                elif enquiry and not price.zero_rated:
                    cost = price.cost(units)
            if enquiry:
                costs.append(cost)
            services.append(entry)
        job.services = services
        if enquiry:
            job.result = price_enquiry_result(job.account, job.info, services, costs)
            return
        if action is EventAction.CHECK_BALANCE:
            balance = BalanceArgs(account, job.rated_at, services)
            job.decode = decode_balance
            job.index = pipe.script(BALANCE, balance.keys(), balance.argv())
        elif refund:
            credit = RefundArgs(
                account=account,
                session_id=request.session_id,
                request_number=request.request_number,
                timestamp=job.rated_at,
                now=now,
                idempotency_ttl=settings.idempotency_ttl,
                peer=request.peer,
                context=request.service_context,
                identities=request.identities,
                services=services,
                rating_context=job.context,
            )
            job.decode = decode_debit
            job.index = pipe.script(REFUND, credit.keys(), credit.argv())
        else:
            debit = EventArgs(
                account=account,
                session_id=request.session_id,
                request_number=request.request_number,
                timestamp=job.rated_at,
                now=now,
                idempotency_ttl=settings.idempotency_ttl,
                usage_ttl=settings.usage_ttl,
                peer=request.peer,
                context=request.service_context,
                identities=request.identities,
                services=services,
                rated_with=_rated_with(job.info),
                period=self._periods.of(account, catalog.timezone, job.rated_at),
                rating_context=job.context,
            )
            job.decode = decode_debit
            job.index = pipe.script(EVENT, debit.keys(), debit.argv())

    # ------------------------------------------------------------------ rating

    def _rate(
        self,
        job: _Job,
        usage: ServiceUsage,
        catalog: Catalog,
        rater: Rater,
        plan: Plan | None,
        script_service: type[_Rated],
    ) -> tuple[Service | None, Price | None, _Rated]:
        """Rate one service into the script's form of it (``script_service``)."""
        request, context = job.request, job.context
        rg, si = usage.rating_group, usage.service_identifier
        entry = script_service(rg_key(rg, si), rg, si)
        service = catalog.find_service(request.service_context, rg, si)
        if service is None:
            entry.preset = Outcome.NO_TARIFF.value
            return None, None, entry
        entry.service, entry.unit = service.id, service.unit
        price = None
        if plan is not None:
            price = rater.price(
                plan.id,
                service.id,
                job.rated_at,
                context.destination,
                context.visited_mcc_mnc,
                job.usage.get(service.id, 0),
            )
        if price is None:
            entry.preset = Outcome.NO_TARIFF.value
            return service, None, entry
        entry.price = script_price(price, catalog, self._meta_cache)
        entry.zero_rated = bool(price.zero_rated)
        if price.usage_from or price.usage_until >= 0:  # a tier: holds for this usage only
            entry.usage_range = (price.usage_from, price.usage_until)
        return service, price, entry

    # ------------------------------------------------------------------ sessions

    async def sessions_of(self, account_id: str) -> list[dict[str, Any]]:
        """The account's open sessions (:func:`quota_engine.charging.sessions.sessions_of`)."""
        return await sessions_of(self.redis, account_id)

    async def sweep(self, now: int, limit: int = 100) -> int:
        """Settle up to ``limit`` expired sessions (see :mod:`quota_engine.charging.sweeper`)."""
        return await sweep_expired(self.redis, now, limit)


def _rated_with(info: dict[str, str] | None) -> RatedWith:
    """The account fields a request was rated with, for the scripts to check."""
    assert info is not None
    return RatedWith(info["plan"], info["bill_cycle_day"], info["currency"])


def _index_correction(job: _Job) -> tuple[Any, ...] | None:
    """The command that mends what the ``ocs:deadlines`` update sent with the script
    call got wrong, if anything.

    ccr.lua's answer carries the session's deadline whenever the session is alive
    after the call (a stored answer replayed, a refused or out-of-order request on a
    live session): it must be indexed at that deadline, else not at all. A request
    without an answer (it failed, or its account kept changing) may have had its
    session removed from the index by a ZREM it did not follow up: it is indexed
    again at the new deadline, and the sweeper settles the session, or drops the
    entry of one that is gone, when that passes."""
    member = job.member
    if job.answer is None:
        return deadlines.index(member, job.deadline) if job.zrem_sent else None
    deadline = job.answer.deadline
    if deadline is not None:
        if job.zrem_sent or deadline != job.deadline:
            return deadlines.index(member, deadline)
    elif not job.zrem_sent:
        return deadlines.unindex(member)
    return None
