# cython: language_level=3
"""Rating: the price of a request, and what a price charges for an amount of units.

A :class:`Price` is per increment, so cost is linear in increments and exact:

* ``first_cost = round_up(first_increment * rate, rate_per)`` and
  ``next_cost = round_up(next_increment * rate, rate_per)``, computed once per price with
  :func:`quota_engine.money.round_up`, the one money rounding function;
* ``units`` used (> 0) bill ``first_increment`` when ``units <= first_increment``, else
  ``first_increment + n * next_increment`` with ``n = ceil((units - first_increment) /
  next_increment)``, and cost ``first_cost + n * next_cost``; 0 units bill and cost 0.

Charging never rounds money again: ``n`` is a count of increments (units rounding), and
the cost is an exact integer sum. The Redis Lua script caps grants with the same two
integers (``first_cost``, ``next_cost``) and plain integer arithmetic.

A *continuation* (``continuation=True``) is usage that continues a charge already
billed its first increment (the later band portions of :meth:`Rater.split_by_band`):
``n = ceil(units / next_increment)``, billed ``n * next_increment``, cost
``n * next_cost``.

*Cumulative rating* (``charge_after``, ``round_grant_after``, ``units_for_money_after``):
the reports of one session and rating group at one price are charged on their running
total, ``counted`` units before the report: each report costs ``charge(counted + units)``
less ``charge(counted)``, so the reports together cost ``charge(total)`` whatever their
number and sizes, and a grant that completes an increment already paid costs nothing.
The Lua scripts (``lib.lua``: ``charge_after``, ``grant_after``,
``units_for_money_after``) compute the same.

All quantities are C ``int64_t``; a result that would not fit raises ``OverflowError``.
No floats anywhere.
"""

from libc.stdint cimport INT64_MAX, int64_t

from quota_engine.catalog import HOME_ZONE
from quota_engine.money import round_up
from quota_engine.catalog.timebands import BandClock

MAX_UNITS = INT64_MAX
"""The largest unit amount; :meth:`Price.units_for_money` never returns more."""


cdef inline int64_t _increments(int64_t units, int64_t increment) noexcept nogil:
    """How many whole increments cover ``units`` (units >= 0, increment > 0)."""
    return units // increment + (1 if units % increment else 0)


cdef Price _new_price(str plan_id, str service_id, str unit, int tariff_index,
                      int rate_index, int tier_index, object destination, object zone,
                      object band, bint zero_rated, int64_t rate, int64_t rate_per,
                      int64_t first_increment, int64_t next_increment,
                      int64_t first_cost, int64_t next_cost,
                      int64_t usage_from=0, int64_t usage_until=-1):
    cdef Price p = Price.__new__(Price)
    p.plan_id = plan_id
    p.service_id = service_id
    p.unit = unit
    p.tariff_index = tariff_index
    p.rate_index = rate_index
    p.tier_index = tier_index
    p.destination = destination
    p.zone = zone
    p.band = band
    p.zero_rated = zero_rated
    p.rate = rate
    p.rate_per = rate_per
    p.first_increment = first_increment
    p.next_increment = next_increment
    p.first_cost = first_cost
    p.next_cost = next_cost
    p.usage_from = usage_from
    p.usage_until = usage_until
    return p


cdef class Price:
    """What one rated request costs per increment, and which rate was selected.

    ``Price(rate, rate_per, first_increment, next_increment)`` builds one directly (tests,
    tools); the rater builds them from the catalog. Attributes are read-only:
    ``rate``, ``rate_per``, ``first_increment``, ``next_increment``, ``first_cost``,
    ``next_cost`` (micro-units), ``zero_rated``, and for the rated record ``plan_id``,
    ``service_id``, ``unit``, ``tariff_index`` (index in the plan's tariffs),
    ``rate_index`` (index in the tariff's rates, -1 when zero-rated), ``tier_index``
    (index in the rate's tiers, -1 for the rate's own price) and the request's resolved
    ``destination`` class, roaming ``zone`` and time ``band`` (``None`` when not known).
    ``usage_from`` and ``usage_until`` bound the period usage for which the selected
    tier holds (``usage_until`` -1: no upper bound; a rate without tiers holds for
    any usage, 0 and -1): the scripts check it, so a price rated with an outdated
    usage is never applied.
    """

    def __init__(self, rate, rate_per, first_increment, next_increment, *,
                 bint zero_rated=False, str plan_id=None, str service_id=None,
                 str unit=None, int tariff_index=-1, int rate_index=-1, int tier_index=-1,
                 destination=None, zone=None, band=None):
        for name, value, low in (("rate", rate, 0), ("rate_per", rate_per, 1),
                                 ("first_increment", first_increment, 1),
                                 ("next_increment", next_increment, 1)):
            if type(value) is not int:
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
            if value < low:
                raise ValueError(f"{name} must be at least {low}, got {value}")
        self.rate = rate
        self.rate_per = rate_per
        self.first_increment = first_increment
        self.next_increment = next_increment
        # Python ints here: increment * rate may exceed 2**63 before the division.
        self.first_cost = round_up(first_increment * rate, rate_per)
        self.next_cost = round_up(next_increment * rate, rate_per)
        self.zero_rated = zero_rated
        self.plan_id = plan_id
        self.service_id = service_id
        self.unit = unit
        self.tariff_index = tariff_index
        self.rate_index = rate_index
        self.tier_index = tier_index
        self.destination = destination
        self.zone = zone
        self.band = band
        self.usage_from = 0
        self.usage_until = -1

    cpdef tuple charge(self, int64_t units, bint continuation=False):
        """``(billed_units, cost)`` for ``units`` used (see the module docstring)."""
        cdef int64_t base, base_cost, n
        if units < 0:
            raise ValueError(f"units must not be negative, got {units}")
        if units == 0:
            return (0, 0)
        if continuation:
            base = 0
            base_cost = 0
            n = _increments(units, self.next_increment)
        else:
            if units <= self.first_increment:
                return (self.first_increment, self.first_cost)
            base = self.first_increment
            base_cost = self.first_cost
            n = _increments(units - base, self.next_increment)
        if n > (INT64_MAX - base) // self.next_increment:
            raise OverflowError(f"billed units for {units} units exceed 2**63-1")
        if self.next_cost and n > (INT64_MAX - base_cost) // self.next_cost:
            raise OverflowError(f"cost of {units} units exceeds 2**63-1 micro-units")
        return (base + n * self.next_increment, base_cost + n * self.next_cost)

    cpdef int64_t units_for_money(self, int64_t budget, bint continuation=False) except? -1:
        """The largest billed-unit amount whose cost is at most ``budget`` micro-units.

        Always whole increments. 0 when ``budget`` does not pay the first increment (the
        next one for a continuation). When further increments cost nothing (zero-rated,
        rate 0) the answer is the largest whole-increment amount up to ``MAX_UNITS``:
        the caller caps the grant by its own limits.
        """
        cdef int64_t base, base_cost, n, n_max
        if continuation:
            base = 0
            base_cost = 0
        else:
            base = self.first_increment
            base_cost = self.first_cost
        if budget < base_cost:
            return 0
        n_max = (INT64_MAX - base) // self.next_increment
        if self.next_cost == 0:
            n = n_max
        else:
            n = (budget - base_cost) // self.next_cost
            if n > n_max:
                n = n_max
        return base + n * self.next_increment

    cpdef int64_t round_grant(self, int64_t units, bint continuation=False) except? -1:
        """``units`` rounded up to whole increments (what ``charge`` would bill); 0 for <= 0."""
        if units <= 0:
            return 0
        return self.charge(units, continuation)[0]

    cpdef tuple charge_after(self, int64_t counted, int64_t units, bint continuation=False):
        """``(billed, cost)`` of ``units`` more when ``counted`` units are already charged at
        this price: ``charge(counted + units)`` less ``charge(counted)``, both parts.

        Cumulative rating: a session's reports at one price, each charged with the units
        counted before it, add up to exactly ``charge(total)`` however the total was
        split; a report that stays inside an increment already paid costs 0.
        """
        cdef int64_t billed_before, cost_before, billed_now, cost_now
        if counted < 0 or units < 0:
            raise ValueError(f"counted and units must not be negative, got {counted}, {units}")
        if units > INT64_MAX - counted:
            raise OverflowError(f"{counted} + {units} units exceed 2**63-1")
        billed_before, cost_before = self.charge(counted, continuation)
        billed_now, cost_now = self.charge(counted + units, continuation)
        return (billed_now - billed_before, cost_now - cost_before)

    cpdef int64_t round_grant_after(self, int64_t counted, int64_t units,
                                    bint continuation=False) except? -1:
        """The grant of at least ``units`` (> 0) that ends on an increment boundary when
        ``counted`` units are already charged at this price: ``round_grant(counted +
        units) - counted``; 0 for ``units <= 0``. It costs ``charge_after(counted,
        units)``: the rest of an increment already paid comes free."""
        if units <= 0:
            return 0
        if counted < 0:
            raise ValueError(f"counted must not be negative, got {counted}")
        if units > INT64_MAX - counted:
            raise OverflowError(f"{counted} + {units} units exceed 2**63-1")
        return self.charge(counted + units, continuation)[0] - counted

    cpdef int64_t units_for_money_after(self, int64_t counted, int64_t budget,
                                        bint continuation=False) except? -1:
        """The largest grant ending on an increment boundary whose ``charge_after(counted,
        grant)`` costs at most ``budget``: ``units_for_money(cost(counted) + budget) -
        counted``. At least the rest of the increment ``counted`` is in (already paid),
        even for a budget of 0."""
        cdef int64_t spent
        if counted < 0:
            raise ValueError(f"counted must not be negative, got {counted}")
        spent = self.charge(counted, continuation)[1]
        if budget > INT64_MAX - spent:
            budget = INT64_MAX - spent
        return max(0, self.units_for_money(spent + budget, continuation) - counted)

    def cost(self, units, continuation=False):
        """``charge(units, continuation)[1]``."""
        return self.charge(units, continuation)[1]

    def to_dict(self):
        """The selected price as plain data, for rated records."""
        return {
            "plan": self.plan_id, "service": self.service_id, "unit": self.unit,
            "tariff_index": self.tariff_index, "rate_index": self.rate_index,
            "tier_index": self.tier_index, "destination": self.destination,
            "zone": self.zone, "band": self.band, "zero_rated": self.zero_rated,
            "rate": self.rate, "rate_per": self.rate_per,
            "first_increment": self.first_increment, "next_increment": self.next_increment,
            "first_cost": self.first_cost, "next_cost": self.next_cost,
        }

    def __repr__(self):
        return (
            f"Price(rate={self.rate}/{self.rate_per}, increments={self.first_increment}/"
            f"{self.next_increment}, costs={self.first_cost}/{self.next_cost}, "
            f"zero_rated={bool(self.zero_rated)}, plan={self.plan_id!r}, "
            f"service={self.service_id!r}, rate_index={self.rate_index}, "
            f"tier_index={self.tier_index}, destination={self.destination!r}, "
            f"zone={self.zone!r}, band={self.band!r})"
        )


# ------------------------------------------------------------------ compiled catalog


cdef class _PrefixTable:
    """Longest-prefix match over E.164 digits: one dict, probed per prefix length."""
    cdef dict prefixes
    cdef tuple lengths  # distinct prefix lengths, longest first
    cdef object default
    cdef object missing  # class of a request without a number (the table's `missing` rule)

    def __init__(self, table, missing):
        self.prefixes = dict(table.prefixes)
        self.lengths = tuple(sorted({len(p) for p in self.prefixes}, reverse=True))
        self.default = table.default
        self.missing = missing

    cdef object lookup(self, object number):
        cdef Py_ssize_t n, length
        if number is None:
            return self.missing
        if number.startswith("+"):
            number = number[1:]
        if not (number.isascii() and number.isdigit()):
            return self.missing  # not a number: as if none was sent
        n = len(number)
        for length in self.lengths:
            if length <= n:
                cls = self.prefixes.get(number[:length])
                if cls is not None:
                    return cls
        return self.default


cdef class _Tier:
    cdef int index
    cdef int64_t from_units, rate, rate_per, first_cost, next_cost

    def __init__(self, int index, int64_t from_units, rate, rate_per, first, nxt):
        self.index = index
        self.from_units = from_units
        self.rate = rate
        self.rate_per = rate_per
        self.first_cost = round_up(first * rate, rate_per)
        self.next_cost = round_up(nxt * rate, rate_per)


cdef class _CompiledRate:
    cdef int index
    cdef object destination, zone, band
    cdef int64_t first_increment, next_increment
    cdef tuple tiers  # _Tier, highest from_units first; the rate's own price last

    def __init__(self, int index, rate):
        self.index = index
        self.destination = rate.destination
        self.zone = rate.zone
        self.band = rate.band
        self.first_increment = rate.first_increment
        self.next_increment = rate.next_increment
        tiers = [_Tier(-1, 0, rate.rate, rate.rate_per, rate.first_increment,
                       rate.next_increment)]
        for i, tier in enumerate(rate.tiers):
            tiers.append(_Tier(i, tier.from_units, tier.rate, tier.rate_per,
                               rate.first_increment, rate.next_increment))
        self.tiers = tuple(reversed(tiers))


cdef class _CompiledTariff:
    cdef int index
    cdef str unit
    cdef bint zero_rated
    cdef _PrefixTable table
    cdef tuple rates  # _CompiledRate, most specific first

    def __init__(self, int index, tariff, unit, table):
        self.index = index
        self.unit = unit
        self.zero_rated = tariff.zero_rated
        # A missing destination gets the table's `missing` class only in a tariff that
        # prices by destination: elsewhere it would just label the record.
        missing = None
        if table is not None and any(r.destination is not None for r in tariff.rates):
            missing = table.missing_class
        self.table = _PrefixTable(table, missing) if table is not None else None
        order = sorted(range(len(tariff.rates)), key=lambda i: -tariff.rates[i].specificity)
        self.rates = tuple(_CompiledRate(i, tariff.rates[i]) for i in order)


cdef Price _select(_CompiledTariff t, str plan_id, str service_id, object dest_class,
                   object zone, object band, int64_t period_usage):
    cdef _CompiledRate r
    cdef _Tier tier
    cdef int64_t until
    if t.zero_rated:
        return _new_price(plan_id, service_id, t.unit, t.index, -1, -1, dest_class, zone,
                          band, True, 0, 1, 1, 1, 0, 0)
    for r in t.rates:
        if r.destination is not None and r.destination != dest_class:
            continue
        if r.zone is not None and r.zone != zone:
            continue
        if r.band is not None and r.band != band:
            continue
        until = -1  # the next higher tier's start: where this one stops holding
        for tier in r.tiers:
            if tier.from_units <= period_usage:
                return _new_price(plan_id, service_id, t.unit, t.index, r.index, tier.index,
                                  dest_class, zone, band, False, tier.rate, tier.rate_per,
                                  r.first_increment, r.next_increment, tier.first_cost,
                                  tier.next_cost, tier.from_units, until)
            until = tier.from_units
    return None


cdef class Rater:
    """Prices requests against one catalog, compiled once into lookup structures.

    Build one per catalog version (``Rater(catalog)``) and share it; it is cheap to call
    and holds only a two-segment cache of the time bands last used.
    """

    def __init__(self, catalog):
        self.catalog = catalog
        self._plans = {}
        for plan in catalog.plans:
            tariffs = {}
            for i, tariff in enumerate(plan.tariffs):
                unit = catalog.service(tariff.service).unit
                tariffs[tariff.service] = _CompiledTariff(
                    i, tariff, unit, catalog.table_for(tariff)
                )
            self._plans[plan.id] = tariffs
        self._clock = BandClock(catalog.time_bands, catalog.holidays, catalog.timezone)
        self._has_bands = bool(catalog.time_bands)
        self._seg_start = 0
        self._seg_end = 0
        self._seg_band = None
        self._prev_start = 0
        self._prev_end = 0
        self._prev_band = None
        self._home = frozenset(catalog.home_mcc_mnc)
        self._zone_exact = {}
        self._zone_prefix = {}
        self._zone_any = None
        for zone in catalog.zones:
            for pattern in zone.mcc_mnc:
                if pattern == "*":
                    self._zone_any = zone.id
                elif pattern.endswith("*"):
                    self._zone_prefix[pattern[:len(pattern) - 1]] = zone.id
                else:
                    self._zone_exact[pattern] = zone.id
        self._zone_prefix_lengths = tuple(
            sorted({len(p) for p in self._zone_prefix}, reverse=True)
        )

    cdef object _band_at(self, int64_t timestamp):
        # Two-segment cache: the current one and the one before it, so traffic that
        # straddles a band boundary (or a session's start and now) does not thrash.
        # On return the segment holding `timestamp` is the current one (_seg_*).
        cdef int64_t start, end
        if self._seg_start <= timestamp < self._seg_end:
            return self._seg_band
        if self._prev_start <= timestamp < self._prev_end:
            start, end, band = self._prev_start, self._prev_end, self._prev_band
        else:
            band, start, end = self._clock.segment(timestamp)
        self._prev_start = self._seg_start
        self._prev_end = self._seg_end
        self._prev_band = self._seg_band
        self._seg_band = band
        self._seg_start = start
        self._seg_end = end
        return band

    cdef object _zone_of(self, object visited):
        cdef Py_ssize_t n, length
        if visited is None or visited == "" or visited in self._home:
            return HOME_ZONE
        zone = self._zone_exact.get(visited)
        if zone is not None:
            return zone
        n = len(visited)
        for length in self._zone_prefix_lengths:
            if length <= n:
                zone = self._zone_prefix.get(visited[:length])
                if zone is not None:
                    return zone
        return self._zone_any

    def band_at(self, int64_t timestamp):
        """The time band in force at a Unix timestamp (``None``: no band covers it)."""
        return self._band_at(timestamp) if self._has_bands else None

    def zone_of(self, visited_mcc_mnc):
        """The roaming zone of a visited MCC-MNC: ``"home"`` when absent or a home
        network, else the zone listing it exactly, else by longest ``"digits*"`` prefix,
        else the zone listing ``"*"``, else ``None``."""
        return self._zone_of(visited_mcc_mnc)

    def destination_class(self, str plan_id, str service_id, str destination):
        """The destination class a tariff's prefix table gives ``destination`` (or None)."""
        cdef _CompiledTariff t
        tariffs = self._plans.get(plan_id)
        t = tariffs.get(service_id) if tariffs is not None else None
        if t is None or t.table is None:
            return None
        return t.table.lookup(destination)

    cpdef Price price(self, str plan_id, str service_id, int64_t timestamp,
                      object destination=None, object visited_mcc_mnc=None,
                      int64_t period_usage=0):
        """The price of one request, or ``None`` when the plan has no tariff or no rate
        for it (the service, destination class, zone and band at ``timestamp``).

        ``destination`` is the called number in E.164 digits (a leading "+" is
        ignored; None or not a number: the destination table's ``missing`` rule,
        docs/catalog.md); ``visited_mcc_mnc`` the visited network (3GPP-SGSN-MCC-MNC);
        ``period_usage`` the service's units used in the bill period, which picks the
        tier (the engine passes the usage after the request's own reports: a tier
        applies from the report that crosses its threshold, docs/catalog.md).
        A zero-rated tariff returns a Price with ``zero_rated`` set and zero costs.
        """
        cdef _CompiledTariff t
        found = self._tariff(plan_id, service_id, destination, visited_mcc_mnc)
        if found is None:
            return None
        t, dest_class, zone = found
        band = self._band_at(timestamp) if self._has_bands else None
        return _select(t, plan_id, service_id, dest_class, zone, band, period_usage)

    def _tariff(self, str plan_id, str service_id, destination, visited_mcc_mnc):
        """``(compiled tariff, destination class, zone)`` of a request, or None when the
        plan has no tariff for the service."""
        cdef _CompiledTariff t
        tariffs = self._plans.get(plan_id)
        if tariffs is None:
            return None
        t = tariffs.get(service_id)
        if t is None:
            return None
        dest_class = None
        if t.table is not None:
            dest_class = t.table.lookup(destination)
        return t, dest_class, self._zone_of(visited_mcc_mnc)

    def split_by_band(self, str plan_id, str service_id, int64_t start, int64_t end,
                      destination=None, visited_mcc_mnc=None, int64_t period_usage=0):
        """Split the time ``[start, end)`` of a time-based session into portions of one
        price each: ``[(price, seconds), ...]`` in time order, or ``None`` when some
        portion has no rate.

        A portion is a maximal run of time rated by the same rate (and tier); its
        ``price.band`` is the band at the portion's start. Charge portion 0 with
        ``price.charge(seconds)`` and every later portion with
        ``price.charge(seconds, continuation=True)``: the first increment applies only
        once per session, each later portion rounds up to its own next increments.
        ``start == end`` gives one portion of 0 seconds.
        """
        cdef _CompiledTariff t
        cdef Price p, last
        cdef int64_t t0, t1, run_start
        if end < start:
            raise ValueError(f"end ({end}) is before start ({start})")
        found = self._tariff(plan_id, service_id, destination, visited_mcc_mnc)
        if found is None:
            return None
        t, dest_class, zone = found
        if not self._has_bands:
            p = _select(t, plan_id, service_id, dest_class, zone, None, period_usage)
            return None if p is None else [(p, end - start)]
        portions = []
        last = None
        run_start = start
        t0 = start
        while True:
            band = self._band_at(t0)
            t1 = self._seg_end if self._seg_end < end else end
            p = _select(t, plan_id, service_id, dest_class, zone, band, period_usage)
            if p is None:
                return None
            if last is None:
                last = p
            elif p.rate_index != last.rate_index or p.tier_index != last.tier_index:
                portions.append((last, t0 - run_start))
                last = p
                run_start = t0
            t0 = t1
            if t0 >= end:
                break
        portions.append((last, end - run_start))
        return portions
