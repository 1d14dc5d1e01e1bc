# Declarations of quota_engine.charging.rating, so Cython code elsewhere in quota_engine can
# `cimport` Price and Rater and call their typed methods without Python overhead.

from libc.stdint cimport int64_t


cdef class Price:
    cdef readonly str plan_id
    cdef readonly str service_id
    cdef readonly str unit
    cdef readonly int tariff_index
    cdef readonly int rate_index
    cdef readonly int tier_index
    cdef readonly object destination
    cdef readonly object zone
    cdef readonly object band
    cdef readonly bint zero_rated
    cdef readonly int64_t rate
    cdef readonly int64_t rate_per
    cdef readonly int64_t first_increment
    cdef readonly int64_t next_increment
    cdef readonly int64_t first_cost
    cdef readonly int64_t next_cost
    cdef readonly int64_t usage_from
    cdef readonly int64_t usage_until

    cpdef tuple charge(self, int64_t units, bint continuation=*)
    cpdef int64_t units_for_money(self, int64_t budget, bint continuation=*) except? -1
    cpdef int64_t round_grant(self, int64_t units, bint continuation=*) except? -1
    cpdef tuple charge_after(self, int64_t counted, int64_t units, bint continuation=*)
    cpdef int64_t round_grant_after(self, int64_t counted, int64_t units,
                                    bint continuation=*) except? -1
    cpdef int64_t units_for_money_after(self, int64_t counted, int64_t budget,
                                        bint continuation=*) except? -1


cdef class Rater:
    cdef readonly object catalog
    cdef dict _plans
    cdef object _clock
    cdef bint _has_bands
    cdef int64_t _seg_start
    cdef int64_t _seg_end
    cdef object _seg_band
    cdef int64_t _prev_start
    cdef int64_t _prev_end
    cdef object _prev_band
    cdef frozenset _home
    cdef dict _zone_exact
    cdef dict _zone_prefix
    cdef tuple _zone_prefix_lengths
    cdef object _zone_any

    cdef object _band_at(self, int64_t timestamp)
    cdef object _zone_of(self, object visited_mcc_mnc)
    cpdef Price price(self, str plan_id, str service_id, int64_t timestamp,
                      object destination=*, object visited_mcc_mnc=*,
                      int64_t period_usage=*)
