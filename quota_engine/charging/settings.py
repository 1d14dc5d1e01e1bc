"""How the charging engine sizes and times grants and its caches: :class:`EngineSettings`.

Kept apart from the engine so that the OCS settings (``ocs.config``, section
``[charging]``) can take their defaults from here without importing the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_CAP_FACTOR", "MAX_TIMESTAMP_TOLERANCE", "MAX_USAGE_CAP", "EngineSettings"]

MAX_USAGE_CAP = 2**40
"""The largest per-report cap: the scripts multiply a grant (at most 2**40 units) by
the factor and add reports, all below 2**53, where Lua's doubles are exact."""
MAX_CAP_FACTOR = 1000
MAX_TIMESTAMP_TOLERANCE = 2**31 - 1


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """How the engine sizes and times grants. All durations in seconds."""

    default_octets: int = 10 * 1024 * 1024
    """Grant when the client asks the server to decide (empty RSU), data."""
    default_seconds: int = 300
    default_events: int = 1
    validity_time: int = 1800
    """Validity-Time of a grant (cut at the next rate change, see the module doc)."""
    tariff_time_change: bool = True
    """Whether a grant that spans a rate change carries Tariff-Time-Change; off for
    network elements that do not support it (its Validity-Time is cut all the same)."""
    grace: int = 60
    """A session's deadline is now + validity time + grace; the sweeper settles it after."""
    quota_threshold_percent: int | None = 20
    """Quota threshold as a percentage of the grant (None: not sent)."""
    quota_holding_time: int | None = None
    idempotency_ttl: int = 900
    """How long a result is kept for retransmissions. Clients retransmit within their
    Tx timer and a failover (seconds to minutes); each stored result costs Redis about
    250 bytes, so a day's worth at 1,000 CCR/s would be some 20 GB."""
    identity_cache_ttl: float = 30.0
    """How long an identity -> account mapping is trusted without reading Redis."""
    identity_cache_size: int = 200_000
    account_cache_ttl: float = 30.0
    """How long an account's plan, bill cycle day, currency and period usage are
    reused without reading Redis (the scripts check them; see the module doc)."""
    account_cache_size: int = 200_000
    usage_ttl: int = 400 * 86400
    """Period usage hashes expire this long after their last write."""
    timestamp_tolerance: int = 300
    """A request is rated at its Event-Timestamp when that is at most this many
    seconds from server time (earlier or later), else at server time
    (:mod:`~quota_engine.charging.rating_clock`); 0: always at server time."""
    usage_cap_factor: int = 2
    """A report is committed up to this many times the grant it was made against, or
    up to the unit's default grant if that is more (small grants see large relative
    overruns); what is beyond is not charged (the record says so: ``capped_from``)."""
    usage_cap_octets: int = 2**40
    """The most octets one report commits, grant or not (1 TiB)."""
    usage_cap_seconds: int = 86_400
    """The most seconds one report commits (a day)."""
    usage_cap_events: int = 10_000
    """The most events (service-specific units) one report commits."""

    def __post_init__(self) -> None:
        for name in ("default_octets", "default_seconds", "default_events", "validity_time"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("grace", "idempotency_ttl", "usage_ttl"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        pct = self.quota_threshold_percent
        if pct is not None and not 0 <= pct <= 100:
            raise ValueError("quota_threshold_percent must be 0..100 or None")
        for name in ("identity_cache_ttl", "account_cache_ttl"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("identity_cache_size", "account_cache_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0 <= self.timestamp_tolerance <= MAX_TIMESTAMP_TOLERANCE:
            raise ValueError(f"timestamp_tolerance must be 0..{MAX_TIMESTAMP_TOLERANCE}")
        if not 1 <= self.usage_cap_factor <= MAX_CAP_FACTOR:
            raise ValueError(f"usage_cap_factor must be 1..{MAX_CAP_FACTOR}")
        for name in ("usage_cap_octets", "usage_cap_seconds", "usage_cap_events"):
            if not 1 <= getattr(self, name) <= MAX_USAGE_CAP:
                raise ValueError(f"{name} must be 1..{MAX_USAGE_CAP}")

    def usage_cap(self, unit: str | None) -> int:
        """The most units of ``unit`` one report commits (unknown unit: the largest)."""
        if unit == "octets":
            return self.usage_cap_octets
        if unit == "seconds":
            return self.usage_cap_seconds
        if unit == "events":
            return self.usage_cap_events
        return max(self.usage_cap_octets, self.usage_cap_seconds, self.usage_cap_events)

    def default_grant(self, unit: str) -> int:
        if unit == "octets":
            return self.default_octets
        if unit == "seconds":
            return self.default_seconds
        return self.default_events
