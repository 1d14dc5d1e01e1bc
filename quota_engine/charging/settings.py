"""How the charging engine sizes and times grants and its caches: :class:`EngineSettings`.

Kept apart from the engine so that the OCS settings (``ocs.config``, section
``[charging]``) can take their defaults from here without importing the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EngineSettings"]


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """How the engine sizes and times grants. All durations in seconds."""

    default_octets: int = 10 * 1024 * 1024
    """Grant when the client asks the server to decide (empty RSU), data."""
    default_seconds: int = 300
    default_events: int = 1
    validity_time: int = 1800
    """Validity-Time of a grant (cut at the next rate change, see the module doc)."""
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

    def default_grant(self, unit: str) -> int:
        if unit == "octets":
            return self.default_octets
        if unit == "seconds":
            return self.default_seconds
        return self.default_events
