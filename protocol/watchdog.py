"""Device watchdog (RFC 3539 §3.4 and Appendix A), as a pure object.

RFC 6733 §5.5.3 makes the RFC 3539 transport failure algorithm mandatory for
Diameter, with DWR/DWA as its watchdog messages. This module holds the
algorithm's state for one open connection and reads no clock: the caller
passes ``now`` (any monotonic seconds, e.g. ``loop.time()``) and schedules a
call to :meth:`Watchdog.on_timer` at :attr:`Watchdog.deadline`.

The states and transitions follow the RFC 3539 Appendix A pseudo code and its
state table for OKAY, SUSPECT and DOWN:

========  ===================  ===================================  ========
state     event                actions                              next
========  ===================  ===================================  ========
OKAY      receive DWA          pending = False, SetWatchdog()       OKAY
OKAY      receive non-DWA      SetWatchdog()                        OKAY
SUSPECT   receive DWA          pending = False, SetWatchdog()       OKAY
SUSPECT   receive non-DWA      SetWatchdog()                        OKAY
DOWN      receive DWA          pending = False (message dropped)    DOWN
DOWN      receive non-DWA      (message dropped)                    DOWN
OKAY      timer, not pending   send DWR, SetWatchdog(), pending     OKAY
OKAY      timer, pending       SetWatchdog() (failover)             SUSPECT
SUSPECT   timer                CloseConnection()                    DOWN
========  ===================  ===================================  ========

Note that *any* message in SUSPECT returns to OKAY (Appendix A, "SUSPECT
Receive non-DWA ... OKAY"), not only a DWA; a non-DWA leaves ``pending`` set,
so if no DWA follows, the next expiry goes straight back to SUSPECT without a
second DWR (§3.4.1 [4]: "the watchdog is not sent a second time").

Omitted on purpose: INITIAL and REOPEN, and the DOWN timer's
``AttemptOpen()``. They serve an initiator that reconnects a failed connection
and validates it with three DWAs (§3.4.1 [5]). Here a watchdog lives exactly
as long as one connection: it is created when the connection opens (which is
Appendix A ``INITIAL + Connection up -> SetWatchdog() -> OKAY``) and is
dropped once it says :attr:`WatchdogAction.CLOSE`; whoever reconnects makes a
new connection and a new watchdog. Failover and failback (moving pending
requests to another peer) are likewise the caller's business; the caller can
read :attr:`Watchdog.state`.

Timing (§3.4.1 [1] and Appendix A ``SetWatchdog()``): each time the timer is
set, the interval is ``tw + jitter`` with jitter in [-2, 2] seconds from a
pseudo-random generator owned by the object. ``tw`` (the RFC's Twinit,
default 30 s) must be at least 6 s. The RFC applies that 6 s minimum to
Twinit "not including jitter"; this module also never sets an interval below
6 s, which is stricter (at ``tw`` below 8 s part of the negative jitter is
lost) and still within the RFC. With steady silence a DWR goes out after one
interval, the connection becomes SUSPECT one interval later and is closed one
interval after that: about 2·Tw after the unanswered DWR, 3·Tw after the last
message (§3.4.1 [3], [4]).
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable

__all__ = [
    "JITTER_MAX",
    "TW_DEFAULT",
    "TW_MIN",
    "Watchdog",
    "WatchdogAction",
    "WatchdogState",
]

#: RFC 3539 §3.4.1 [1]: the default Twinit.
TW_DEFAULT = 30.0
#: RFC 3539 §3.4.1 [1]: Twinit "MUST NOT be set lower than" 6 seconds.
TW_MIN = 6.0
#: RFC 3539 §3.4.1 [1]: jitter is "a value drawn between -2 and 2 seconds".
JITTER_MAX = 2.0


class WatchdogState(enum.Enum):
    """RFC 3539 Appendix A connection status (INITIAL and REOPEN omitted)."""

    OKAY = "okay"  # the connection is up
    SUSPECT = "suspect"  # a DWR went unanswered for a whole interval: failover
    DOWN = "down"  # the connection has been (or must now be) closed


class WatchdogAction(enum.Enum):
    """What :meth:`Watchdog.on_timer` asks the caller to do."""

    NONE = "none"
    SEND_DWR = "send DWR"  # Appendix A SendWatchdog()
    CLOSE = "close"  # Appendix A CloseConnection()


class Watchdog:
    """RFC 3539 watchdog for one open connection; time is passed in, never read.

    ``tw`` is Twinit in seconds (≥ 6, RFC 3539 §3.4.1 [1]); ``now`` is the time
    the connection opened; ``jitter`` returns seconds in [-2, 2] each time the
    timer is set (default: ``uniform(-2, 2)`` from a :class:`random.Random`
    owned by this object, so the global generator is never touched). A value
    outside [-2, 2] is clamped into it, and a NaN counts as 0.

    Attributes, read by the caller:

    ``state``
        :class:`WatchdogState`, starts at OKAY.
    ``pending``
        True while a DWR we sent is unanswered.
    ``deadline``
        When :meth:`on_timer` should next be called; ``math.inf`` once DOWN.
    """

    __slots__ = ("_jitter", "_tw", "deadline", "pending", "state")

    def __init__(self, tw: float, now: float, jitter: Callable[[], float] | None = None) -> None:
        # `not tw >= TW_MIN` also rejects NaN.
        if not math.isfinite(tw) or not tw >= TW_MIN:
            raise ValueError(
                f"watchdog interval tw must be a finite number >= {TW_MIN} s "
                f"(RFC 3539 §3.4.1), got {tw!r}"
            )
        if jitter is None:
            # Seeded from os.urandom: §3.4.1 [1] wants a PRNG "seeded as per [RFC1750]".
            rng = random.Random()

            def jitter() -> float:
                return rng.uniform(-JITTER_MAX, JITTER_MAX)

        self._tw = float(tw)
        self._jitter = jitter
        self.state = WatchdogState.OKAY
        self.pending = False
        self.deadline = self._set_watchdog(now)

    @property
    def tw(self) -> float:
        """Twinit, the interval before jitter, in seconds."""
        return self._tw

    def _set_watchdog(self, now: float) -> float:
        """Appendix A ``SetWatchdog()``: next deadline, ``tw`` + jitter from ``now``.

        Jitter is kept within ±2 s (§3.4.1 [1]) and the interval never below
        :data:`TW_MIN`.
        """
        j = float(self._jitter())
        if math.isnan(j):
            j = 0.0
        j = min(JITTER_MAX, max(-JITTER_MAX, j))
        return now + max(TW_MIN, self._tw + j)

    def on_receive(self, now: float, is_dwa: bool = False) -> None:
        """Any message from the peer arrived (Appendix A ``OnReceive``).

        A DWA clears ``pending`` in every state. In OKAY the timer is reset
        (§3.4.1 [2]: "When any AAA message is received, Tw is reset"). In
        SUSPECT any message, DWA or not, returns to OKAY and resets the timer
        (failback). In DOWN the message is thrown away.
        """
        if is_dwa:
            self.pending = False
        if self.state is WatchdogState.OKAY:
            self.deadline = self._set_watchdog(now)
        elif self.state is WatchdogState.SUSPECT:
            self.state = WatchdogState.OKAY
            self.deadline = self._set_watchdog(now)
        # DOWN: Throwaway(); the deadline stays at infinity.

    def on_timer(self, now: float) -> WatchdogAction:
        """The timer fired (Appendix A ``OnTimerElapsed``); returns what to do.

        Called before :attr:`deadline` (a stale or early wake-up), it changes
        nothing and returns NONE. Otherwise: OKAY with no DWR pending sends one
        (§3.4.1 [2]); OKAY with a DWR pending becomes SUSPECT without sending
        another (§3.4.1 [3], [4]); SUSPECT becomes DOWN and the connection
        must be closed (§3.4.1 [4]). DOWN has nothing left to do (reopening is
        omitted, see the module docstring).
        """
        if self.state is WatchdogState.DOWN or now < self.deadline:
            return WatchdogAction.NONE
        if self.state is WatchdogState.OKAY:
            if not self.pending:
                self.pending = True
                self.deadline = self._set_watchdog(now)
                return WatchdogAction.SEND_DWR
            self.state = WatchdogState.SUSPECT
            self.deadline = self._set_watchdog(now)
            return WatchdogAction.NONE
        # SUSPECT
        self.state = WatchdogState.DOWN
        self.deadline = math.inf
        return WatchdogAction.CLOSE
