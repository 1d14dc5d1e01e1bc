"""Usage sanity: how much of a session report is charged at most.

A broken or hostile client may report any number of units (a 2^63-octet CCR-T after a
5 MiB grant). Two caps apply, and what is beyond them is not charged:

- the unit's cap (``EngineSettings.usage_cap_octets/seconds/events``), applied here,
  grant or not (:func:`cap_report`);
- ``usage_cap_factor`` times the grant the report was made against, or the unit's
  default grant if that is more (:func:`cap_floor`: small grants see large relative
  overruns), applied by ccr.lua, which alone knows the grant.

The script is sent what was reported (at most 2^53-1, the largest integer its doubles
hold exactly) beside what is committed; the records carry ``capped_from``, and every
cut report is counted (observer ``capped_reports``) and logged (WARNING
``usage_capped``, :func:`report_capped`). A retransmission is not counted again.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from quota_engine.charging.observer import EngineObserver
from quota_engine.charging.settings import EngineSettings

__all__ = ["cap_floor", "cap_report", "report_capped"]

_log = logging.getLogger("quota_engine.charging.engine")  # the engine's log, as before

_MAX_EXACT: Final = 2**53 - 1
"""The largest integer Lua's doubles hold exactly: a report's ``reported`` is cut here."""


def cap_floor(settings: EngineSettings) -> dict[str, int]:
    """The units of each unit a report may always reach, however small its grant (the
    default grants): ccr.lua's ``cfl``."""
    return {
        "octets": settings.default_octets,
        "seconds": settings.default_seconds,
        "events": settings.default_events,
    }


def cap_report(used: int | None, cap: int) -> tuple[int, int | None]:
    """A report of ``used`` units cut to ``cap`` (the unit's): the units sent as used,
    and the units reported when more than that (None: not cut)."""
    reported = max(int(used or 0), 0)
    if reported > cap:
        return cap, min(reported, _MAX_EXACT)
    return reported, None


def report_capped(
    observer: EngineObserver, account: str | None, peer: str | None, capped: list[list[Any]]
) -> None:
    """Reports cut by usage sanity (ccr.lua's answer: rating group key, units reported,
    units committed of each): counted and logged (a broken or hostile client; the log
    names the account, masked to its last 4 characters, and the peer, no subscriber
    identity)."""
    observer.capped_reports(len(capped))
    for key, reported, committed in capped:
        _log.warning(
            "usage_capped account=%s peer=%s rating_group=%s reported=%d committed=%d",
            _masked(account),
            peer,
            key,
            reported,
            committed,
        )


def _masked(account: str | None) -> str | None:
    """All but the last 4 characters hidden, as ``ocs.logs.mask_identity`` (which this
    package may not import): account ids stay out of WARNING lines in clear."""
    if account is None:
        return None
    return "*" * len(account) if len(account) <= 4 else "*" * (len(account) - 4) + account[-4:]
