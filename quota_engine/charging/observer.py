"""The engine's observer: what the charging engine reports as it works, for metrics.

The engine calls an :class:`EngineObserver` at a few points of each batch (never per
command, and with counts, not ids), so an OCS node can turn them into Prometheus
metrics (``ocs.metrics.Metrics`` is one) without the engine importing prometheus.
The default, :data:`NO_OBSERVER`, does nothing.

The sweeper has its own, :class:`SweeperObserver` (default :data:`NO_SWEEPER_OBSERVER`):
one call per round.
"""

from __future__ import annotations

from typing import Literal, Protocol

__all__ = [
    "NO_OBSERVER",
    "NO_SWEEPER_OBSERVER",
    "CacheName",
    "EngineObserver",
    "NoObserver",
    "NoSweeperObserver",
    "RoundOutcome",
    "SweeperObserver",
]

RoundOutcome = Literal["ok", "failed"]
"""How a sweeper round ended: every settle call of it ran (whatever it settled), or
Redis failed the round or one of its settle calls."""

CacheName = Literal["identity", "account"]
"""The engine's caches: identity -> account, and the accounts' rating fields."""


class EngineObserver(Protocol):
    def charge_batch(self, requests: int) -> None:
        """``engine.charge`` was called with this many requests (one batch)."""

    def cache_lookups(self, cache: CacheName, hits: int, misses: int) -> None:
        """A batch looked up this many keys in ``cache``: found fresh, or read from Redis."""

    def stale_requests(self, requests: int) -> None:
        """This many requests were rated from an outdated cached account; their
        scripts refused them, and they are run again (up to three times in all)."""

    def failed_requests(self, requests: int) -> None:
        """This many requests of a batch failed (a Redis or script error, an account
        that kept changing); for a batch that failed whole, all of them."""

    def capped_reports(self, reports: int) -> None:
        """This many usage reports were cut by usage sanity (more than the grant times
        ``usage_cap_factor``, or than the unit's cap): the rest was not charged."""

    def untrusted_timestamps(self, requests: int) -> None:
        """This many requests of a batch carried an Event-Timestamp further than
        ``timestamp_tolerance`` from server time: they were rated at server time
        (:mod:`~quota_engine.charging.rating_clock`). Called only when there are some."""


class NoObserver:
    """Observes nothing."""

    __slots__ = ()

    def charge_batch(self, requests: int) -> None:
        pass

    def cache_lookups(self, cache: CacheName, hits: int, misses: int) -> None:
        pass

    def stale_requests(self, requests: int) -> None:
        pass

    def failed_requests(self, requests: int) -> None:
        pass

    def capped_reports(self, reports: int) -> None:
        pass

    def untrusted_timestamps(self, requests: int) -> None:
        pass


NO_OBSERVER: EngineObserver = NoObserver()


class SweeperObserver(Protocol):
    def sweeper_round(self, outcome: RoundOutcome, seconds: float, settled: int) -> None:
        """One sweeper round ended ``outcome`` after ``seconds``, having settled
        ``settled`` expired sessions (a failed round may have settled some before or
        beside the call that failed)."""


class NoSweeperObserver:
    """Observes nothing."""

    __slots__ = ()

    def sweeper_round(self, outcome: RoundOutcome, seconds: float, settled: int) -> None:
        pass


NO_SWEEPER_OBSERVER: SweeperObserver = NoSweeperObserver()
