"""What the Gy/Ro application and the notifier report, for metrics.

:class:`GyObserver` is the sink: ``ocs serve`` passes
:class:`ocs.metrics.diameter.DiameterMetrics`, which counts the calls in bounded series;
without one nothing is counted (:data:`NO_OBSERVER`). The labels given are from closed
sets: ``service`` one of :data:`SERVICES`, ``unit`` a :class:`quota_engine.model.Unit`
value, ``command`` ``"RAR"`` or ``"ASR"``.
"""

from __future__ import annotations

from typing import Protocol

from quota_engine.store.open_counts import SERVICES, service_of_context

__all__ = ["NO_OBSERVER", "SERVICES", "GyObserver", "NoGyObserver", "service_of"]

# One service table for the Gy metrics and the open-session counters (which the Lua
# scripts keep with the same table): quota_engine.store.open_counts.
service_of = service_of_context


class GyObserver(Protocol):
    def mscc_answered(self, service: str, result_code: int) -> None:
        """One Multiple-Services-Credit-Control answered with its own Result-Code."""
        ...

    def units(self, service: str, unit: str, granted: int, used: int) -> None:
        """Units granted (Granted-Service-Unit sent) and reported used in an accepted
        request, for one service of one answer."""
        ...

    def outgoing_request(self, command: str) -> None:
        """A RAR or ASR sent to a peer."""
        ...

    def outgoing_answer(self, command: str, result_code: int | None) -> None:
        """The answer to a RAR or ASR: its Result-Code, None when none came in time (or
        the connection went away), 0 for an answer without one."""
        ...


class NoGyObserver:
    """Counts nothing."""

    def mscc_answered(self, service: str, result_code: int) -> None:
        pass

    def units(self, service: str, unit: str, granted: int, used: int) -> None:
        pass

    def outgoing_request(self, command: str) -> None:
        pass

    def outgoing_answer(self, command: str, result_code: int | None) -> None:
        pass


NO_OBSERVER = NoGyObserver()
