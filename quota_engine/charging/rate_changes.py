"""Rate changes in time: where a grant's Validity-Time stops, and how a report that
spans a change is split.

Validity-Time is ``settings.validity_time``, cut at the next instant the service's
rate changes (a time-band boundary that selects another rate, found with
``Rater.split_by_band``), so that the client comes back at the boundary and its usage
after it is charged at the new band's price. Without time bands it is never cut. The
grant carries that instant (Tariff-Time-Change; the engine leaves it out when
``settings.tariff_time_change`` is off, the cut stays), and a report that spans a change is
split there (:meth:`RateChanges.before_change`: the client's Tariff-Change-Usage, else
the clock for time): the units before it at the stored price, the rest at the new one
(ccr.lua).

Every instant here is the request's rating time
(:mod:`~quota_engine.charging.rating_clock`).
"""

from __future__ import annotations

from quota_engine.catalog import Catalog, Plan, Service
from quota_engine.catalog.timebands import BandClock
from quota_engine.charging.rating import Price, Rater
from quota_engine.charging.settings import EngineSettings
from quota_engine.model import ServiceUsage, Unit
from quota_engine.store.contract import RatingContext

__all__ = ["RateChanges"]

_SECONDS = Unit.SECONDS.value


class RateChanges:
    """Finds the rate changes around a request's rating time; keeps the band clock of
    the current catalog (one: a new catalog replaces it)."""

    __slots__ = ("_band_clocks", "_settings")

    def __init__(self, settings: EngineSettings) -> None:
        self._settings = settings
        self._band_clocks: dict[int, tuple[Catalog, BandClock]] = {}

    def validity(
        self,
        catalog: Catalog,
        rater: Rater,
        plan: Plan | None,
        service: Service,
        rated_at: int,
        context: RatingContext,
        period_usage: dict[str, int],
    ) -> tuple[int, int | None]:
        """Validity-Time of a grant made at ``rated_at``, and the instant the rate
        changes inside the validity window (Tariff-Time-Change), if it does: the
        Validity-Time stops there. ``period_usage``: the account's usage in the bill
        period, per service (for tiers)."""
        vt = self._settings.validity_time
        if not catalog.time_bands or plan is None:
            return vt, None
        start = rated_at
        portions = _portions(rater, plan, service, start, start + vt, context, period_usage)
        if portions is not None:
            if len(portions) < 2:
                return vt, None
            cut = max(1, portions[0][1])
            return cut, start + cut
        # some later stretch has no rate at all: stop at the first band change
        clock = self._band_clock(catalog)
        band, _, end = clock.segment(start)
        while end < start + vt:
            next_band, _, next_end = clock.segment(end)
            if next_band != band:
                cut = max(1, end - start)
                return cut, start + cut
            end = next_end
        return vt, None

    def before_change(
        self,
        catalog: Catalog,
        rater: Rater,
        plan: Plan | None,
        service: Service,
        rated_at: int,
        context: RatingContext,
        period_usage: dict[str, int],
        usage: ServiceUsage,
        used: int,
    ) -> tuple[int | None, int | None]:
        """Rate changes inside a report: of the ``used`` units reported, those that
        ccr.lua commits at the stored price (the grant's), the rest going at the
        request's price; and, for a split made by the clock, the instant of the change
        (ccr.lua applies it only to a grant priced before it). ``(None, None)``: no
        split.

        The client's own split wins (Tariff-Change-Usage, RFC 8506 §8.27): the units
        tagged UNITS_BEFORE_TARIFF_CHANGE before, UNITS_AFTER_TARIFF_CHANGE after.
        Time-based units without a split (untagged, UNITS_INDETERMINATE) are split by
        the clock at the last rate change before the rating time: the report ends at
        the rating time, so the last ``rated_at - change`` seconds of it (less those
        tagged after) are after the change. Other units without a split stay at the
        stored price."""
        before, after = usage.used_before_change, usage.used_after_change
        seconds = service.unit == _SECONDS
        if before is None and after is None:
            if not seconds:
                return None, None
            change = self.last_change(
                catalog, rater, plan, service, rated_at, context, period_usage
            )
            if change is None:
                return None, None
            return used - min(used, rated_at - change), change
        tagged_before = min(before or 0, used)
        tagged_after = min(after or 0, used - tagged_before)
        rest = used - tagged_before - tagged_after  # indeterminate
        if rest and seconds:
            change = self.last_change(
                catalog, rater, plan, service, rated_at, context, period_usage
            )
            if change is not None:
                later = min(rest, max(0, rated_at - change - tagged_after))
                return used - tagged_after - later, None
        return used - tagged_after, None

    def last_change(
        self,
        catalog: Catalog,
        rater: Rater,
        plan: Plan | None,
        service: Service,
        rated_at: int,
        context: RatingContext,
        period_usage: dict[str, int],
    ) -> int | None:
        """The last instant before ``rated_at`` at which the service's rate changed
        (a time-band boundary that selects another rate), looking back as far as a
        grant can live (validity time + grace, and the timestamp tolerance at either
        end; at most ``usage_cap_seconds``, as no report is charged more); None: none
        there."""
        if not catalog.time_bands or plan is None:
            return None
        settings = self._settings
        end = rated_at
        lookback = min(
            settings.validity_time + settings.grace + 2 * settings.timestamp_tolerance,
            settings.usage_cap_seconds,
        )
        # up to and including the rating time's own second, so that the last portion
        # holds the request's price (a report made right at a change is all before it)
        portions = _portions(rater, plan, service, end - lookback, end + 1, context, period_usage)
        if portions is None or len(portions) < 2:
            return None
        return end + 1 - portions[-1][1]

    def _band_clock(self, catalog: Catalog) -> BandClock:
        hit = self._band_clocks.get(id(catalog))
        if hit is None or hit[0] is not catalog:
            clock = BandClock(catalog.time_bands, catalog.holidays, catalog.timezone)
            self._band_clocks = {id(catalog): (catalog, clock)}
            return clock
        return hit[1]


def _portions(
    rater: Rater,
    plan: Plan,
    service: Service,
    start: int,
    end: int,
    context: RatingContext,
    period_usage: dict[str, int],
) -> list[tuple[Price, int]] | None:
    """The rate portions of ``[start, end)`` for the service in the plan
    (:meth:`Rater.split_by_band`: None when some stretch has no rate)."""
    return rater.split_by_band(
        plan.id,
        service.id,
        start,
        end,
        context.destination,
        context.visited_mcc_mnc,
        period_usage.get(service.id, 0),
    )
