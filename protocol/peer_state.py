"""Diameter peer state machine (RFC 6733 §5.6), as a pure transition function.

This module owns no connection, timer or clock. The transport classifies what
happened on one connection into a :class:`PeerEvent`, calls :func:`transition`
with the connection's current :class:`PeerState`, stores the returned state and
performs the returned :class:`PeerAction` values in order. :data:`TABLE` holds
every rule; :func:`describe_table` renders it for docs/diameter.md.

Simplification: one state machine per connection, no election
-------------------------------------------------------------

RFC 6733 §5.6 describes one state machine per *peer* that may own two
connections at once (one it initiated, one it accepted) and resolves the race
between them with an election (§5.6.4; states Wait-Conn-Ack/Elect and
Wait-Returns). This OCS never needs that: on a given connection it is either
the initiator (it connected, sends CER, waits for CEA) or the responder (it
accepted, waits for CER, sends CEA), never both, so there is no election. The
states are those of §5.6 with the I-/R- variants merged (I-Open and R-Open
become :attr:`PeerState.OPEN`; §5.6 says they differ only in which connection
is used) and the election states dropped. The responder's
``Closed + R-Conn-CER`` is split in two, as §5.6.1 describes: accepting the
connection (:attr:`PeerEvent.R_CONN`) leads to :attr:`PeerState.WAIT_CER`,
where the first message is judged. Whether a CER from an already connected
peer should win or lose against the existing connection (§5.6 ``R-Conn-CER ->
R-Reject`` in Open) is decided outside this module, by whoever classifies the
CER as accepted or rejected.

Rules decided here from the RFC text
-----------------------------------

* ``WAIT_CER``: any first message other than a CER, and the CER timer, close
  the connection: §5.6.1 "SHOULD close and discard the connection if any
  message other than a CER arrives or if an implementation-defined timeout
  occurs prior to receipt of CER". A rejected CER gets a CEA with the error and
  the connection is closed (§5.3: 3010 "In both cases, the transport
  connection is closed"; 5010: a CEA with DIAMETER_NO_COMMON_APPLICATION MUST be
  returned and the connection SHOULD be closed).
* ``WAIT_I_CEA``: any received message other than a CEA closes the
  connection, a CER included since there is no election (§5.6
  ``I-Rcv-Non-CEA -> Error -> Closed``). A CEA whose Result-Code is not 2001
  closes it too (§5.3, no common application or security).
* ``CLOSED + PEER_DISC -> CLOSED [CLEANUP]``: a DISCONNECT we performed is
  always followed by the transport reporting the connection lost; fed back as
  ``PEER_DISC`` it yields ``CLEANUP``, so resources are freed on one path
  (§5.6.3 Cleanup: "If necessary, the connection is shut down, and any local
  resources are freed"). Keep ``CLEANUP`` idempotent all the same, in case a
  loss is reported twice.
* ``STOP`` before ``OPEN``: a DPR belongs to an open connection (§5.4; the
  responder would treat it as a non-CER message, §5.6.1), so a local stop
  just closes: ``WAIT_CONN_ACK -> CLOSED [CLEANUP]`` (nothing connected yet),
  ``WAIT_I_CEA``/``WAIT_CER -> CLOSED [DISCONNECT]``. ``CLOSING + STOP`` stays
  in ``CLOSING`` with no action: the DPR is already out.
* ``WATCHDOG_DOWN`` closes the connection in every state that has one
  (``WAIT_I_CEA``, ``WAIT_CER``, ``OPEN``, ``CLOSING``): RFC 3539 §3.4.1 [4]
  and Appendix A, ``SUSPECT`` + timer -> ``CloseConnection()``. With no
  connection (``CLOSED``, ``WAIT_CONN_ACK``) it is invalid.
* ``OPEN + RCV_DPA``: we sent no DPR, so it answers nothing: §3 "An answer
  message that is received with an unknown Hop-by-Hop Identifier MUST be
  discarded". Stays ``OPEN``.
* ``CLOSING`` keeps serving the peer until the DPA: a DWR is answered (§5.6
  Process-DWR, Snd-DWA; the peer's RFC 3539 watchdog needs it), a DWA or a CEA
  is dropped, a CER is judged as in ``OPEN``, and a DPR crossing ours is
  answered and the connection closed (§5.4).
* ``RCV_NON_CER`` is the responder's classification while waiting for a CER.
  It is meaningful in ``WAIT_CER`` and, as "a message other than a CEA", in
  ``WAIT_I_CEA``; in ``OPEN``/``CLOSING`` the transport must classify the
  message properly, so it is invalid there.
* ``TIMEOUT`` is a state timer (connect, CER/CEA wait, DPA wait, §5.6.2 "An
  application-defined timer has expired while waiting for some event").
  ``OPEN`` waits for nothing (liveness there is the watchdog's job), so
  ``OPEN + TIMEOUT`` is invalid: a stale timer is a transport bug.

Rows taken from RFC 3588 rather than RFC 6733
---------------------------------------------

* ``OPEN + RCV_CER_OK -> OPEN [SEND_CEA]`` and ``OPEN + RCV_CEA_* -> OPEN``
  are the RFC 3588 §5.6 rows ``R-Rcv-CER`` and ``R-Rcv-CEA``; RFC 6733 §5.6
  dropped them and says nothing about a CER on an open connection.
* ``OPEN + RCV_DPR -> CLOSED [SEND_DPA, DISCONNECT]`` is the RFC 3588 row
  (``R-Snd-DPA, R-Disc``). RFC 6733 §5.6 goes to Closing after the DPA and
  §5.4 says "The receiver of the Disconnect-Peer-Answer message initiates the
  transport disconnect". Closing right after the DPA ends in the same place on
  both sides (the DPR sender is in Closing and takes Rcv-DPA, then Peer-Disc,
  to Closed) provided the DPA is flushed first; asyncio's
  ``Transport.close()`` flushes.

Every (state, event) pair not in :data:`TABLE` raises :class:`InvalidTransition`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "TABLE",
    "InvalidTransition",
    "PeerAction",
    "PeerEvent",
    "PeerState",
    "Transition",
    "describe_table",
    "rules",
    "transition",
]


class PeerState(enum.Enum):
    """Connection states of RFC 6733 §5.6, I-/R- variants merged (no election)."""

    CLOSED = "Closed"
    WAIT_CONN_ACK = "Wait-Conn-Ack"  # initiator: TCP connect in progress
    WAIT_I_CEA = "Wait-I-CEA"  # initiator: CER sent, waiting for the CEA
    WAIT_CER = "Wait-CER"  # responder: accepted, waiting for the peer's CER
    OPEN = "Open"  # capabilities exchanged; application traffic allowed
    CLOSING = "Closing"  # DPR sent, waiting for the DPA


class PeerEvent(enum.Enum):
    """What the transport observed (RFC 6733 §5.6 events, classified)."""

    START = "Start"  # initiator: local start, connect
    CONN_ACK = "Conn-Ack"  # initiator: TCP connected
    CONN_NACK = "Conn-Nack"  # initiator: connect failed
    R_CONN = "R-Conn"  # responder: accepted a TCP connection (we wait for its CER)
    RCV_CER_OK = "Rcv-CER (accepted)"  # CER received and accepted by the capability check
    RCV_CER_REJECT = "Rcv-CER (rejected)"  # CER rejected (3010 unknown peer, 5010 no common app)
    RCV_CEA_OK = "Rcv-CEA (2001)"  # CEA with Result-Code 2001
    RCV_CEA_FAIL = "Rcv-CEA (other)"  # CEA with any other result
    RCV_NON_CER = "Rcv-Non-CER"  # anything but CER while waiting for CER (§5.6.1: close)
    RCV_MESSAGE = "Rcv-Message"  # application request/answer
    RCV_DWR = "Rcv-DWR"
    RCV_DWA = "Rcv-DWA"
    RCV_DPR = "Rcv-DPR"
    RCV_DPA = "Rcv-DPA"
    STOP = "Stop"  # local shutdown: send DPR (with Disconnect-Cause)
    TIMEOUT = "Timeout"  # a state timer expired (connect, CER/CEA wait, DPA wait)
    WATCHDOG_DOWN = "Watchdog-Down"  # RFC 3539 watchdog declared the connection down
    PEER_DISC = "Peer-Disc"  # transport closed by the peer / error


class PeerAction(enum.Enum):
    """What the transport must do, in the order returned (RFC 6733 §5.6 actions)."""

    CONNECT = "connect"  # §5.6 I-Snd-Conn-Req: open the TCP connection
    SEND_CER = "send CER"  # §5.6 I-Snd-CER
    SEND_CEA = "send CEA"  # §5.6 R-Snd-CEA with Result-Code 2001
    SEND_CEA_ERROR = "send CEA error"  # §5.3: CEA with 3010, 5010, ... then close
    SEND_DWA = "send DWA"  # §5.5.2 / §5.6 Process-DWR, Snd-DWA
    SEND_DPR = "send DPR"  # §5.4.1 with Disconnect-Cause
    SEND_DPA = "send DPA"  # §5.4.2
    PROCESS = "process"  # §5.6 Process: hand to the application / match an answer
    DISCONNECT = "disconnect"  # §5.6 I-Disc / R-Disc / Error: we close the connection
    CLEANUP = "cleanup"  # §5.6 Cleanup: connection gone or never made; release resources


@dataclass(frozen=True, slots=True)
class Transition:
    """Result of :func:`transition`: the next state and the actions, in order."""

    state: PeerState
    actions: tuple[PeerAction, ...]


class InvalidTransition(Exception):
    """The event cannot happen in this state: :data:`TABLE` has no rule for the pair."""

    def __init__(self, state: PeerState, event: PeerEvent) -> None:
        super().__init__(f"no transition for event {event.name} in state {state.name}")
        self.state = state
        self.event = event

    def __reduce__(self) -> tuple[type[InvalidTransition], tuple[PeerState, PeerEvent]]:
        # keep pickling working with the two-argument constructor
        return (type(self), (self.state, self.event))


S = PeerState
E = PeerEvent
A = PeerAction

# Everything the peer can send us, as classified events.
_RECEIVED: tuple[PeerEvent, ...] = (
    E.RCV_CER_OK,
    E.RCV_CER_REJECT,
    E.RCV_CEA_OK,
    E.RCV_CEA_FAIL,
    E.RCV_NON_CER,
    E.RCV_MESSAGE,
    E.RCV_DWR,
    E.RCV_DWA,
    E.RCV_DPR,
    E.RCV_DPA,
)

# (state, event) -> (next state, actions, basis). Order matters only for the docs.
_RULES: dict[tuple[PeerState, PeerEvent], tuple[Transition, str]] = {}


def _rule(
    state: PeerState,
    events: PeerEvent | tuple[PeerEvent, ...],
    next_state: PeerState,
    actions: tuple[PeerAction, ...],
    basis: str,
) -> None:
    for event in events if isinstance(events, tuple) else (events,):
        key = (state, event)
        if key in _RULES:  # pragma: no cover - guards the table below while editing it
            raise RuntimeError(f"duplicate rule for {state.name} + {event.name}")
        _RULES[key] = (Transition(next_state, actions), basis)


def _others(done: set[PeerEvent], among: tuple[PeerEvent, ...]) -> tuple[PeerEvent, ...]:
    return tuple(e for e in among if e not in done)


# Bases below cite RFC 6733 unless they name another RFC. "3588" marks a row
# RFC 6733 dropped (see the module docstring).
_REJECT = "§5.3: CEA with the error (3010, 5010), then close"
_WD = "RFC 3539 §3.4.1 [4]: CloseConnection()"

# --- Closed -----------------------------------------------------------------
_rule(S.CLOSED, E.START, S.WAIT_CONN_ACK, (A.CONNECT,), "§5.6 Start: I-Snd-Conn-Req")
_rule(S.CLOSED, E.R_CONN, S.WAIT_CER, (), "§5.6.1: accept, await the CER")
_rule(S.CLOSED, E.PEER_DISC, S.CLOSED, (A.CLEANUP,), "§5.6.3 Cleanup after our own close")

# --- Wait-Conn-Ack ------------------------------------------------------------
_rule(S.WAIT_CONN_ACK, E.CONN_ACK, S.WAIT_I_CEA, (A.SEND_CER,), "§5.6 I-Rcv-Conn-Ack: I-Snd-CER")
_rule(S.WAIT_CONN_ACK, E.CONN_NACK, S.CLOSED, (A.CLEANUP,), "§5.6 I-Rcv-Conn-Nack: Cleanup")
_rule(S.WAIT_CONN_ACK, E.TIMEOUT, S.CLOSED, (A.CLEANUP,), "§5.6 Timeout: Error")
_rule(S.WAIT_CONN_ACK, E.STOP, S.CLOSED, (A.CLEANUP,), "nothing connected yet: abandon")
_rule(S.WAIT_CONN_ACK, E.PEER_DISC, S.CLOSED, (A.CLEANUP,), "§5.6.3 Cleanup")

# --- Wait-I-CEA ---------------------------------------------------------------
_rule(S.WAIT_I_CEA, E.RCV_CEA_OK, S.OPEN, (), "§5.6 I-Rcv-CEA: Process-CEA")
_rule(S.WAIT_I_CEA, E.RCV_CEA_FAIL, S.CLOSED, (A.DISCONNECT,), "§5.3: CEA not 2001: close")
_rule(
    S.WAIT_I_CEA,
    _others({E.RCV_CEA_OK, E.RCV_CEA_FAIL}, _RECEIVED),
    S.CLOSED,
    (A.DISCONNECT,),
    "§5.6 I-Rcv-Non-CEA: Error",
)
_rule(S.WAIT_I_CEA, E.STOP, S.CLOSED, (A.DISCONNECT,), "not open: no DPR (§5.4), close")
_rule(S.WAIT_I_CEA, E.TIMEOUT, S.CLOSED, (A.DISCONNECT,), "§5.6 Timeout: Error")
_rule(S.WAIT_I_CEA, E.WATCHDOG_DOWN, S.CLOSED, (A.DISCONNECT,), _WD)
_rule(S.WAIT_I_CEA, E.PEER_DISC, S.CLOSED, (A.CLEANUP,), "§5.6 I-Peer-Disc: I-Disc")

# --- Wait-CER (responder) -------------------------------------------------------
_rule(S.WAIT_CER, E.RCV_CER_OK, S.OPEN, (A.SEND_CEA,), "§5.6 R-Conn-CER: Process-CER, R-Snd-CEA")
_rule(S.WAIT_CER, E.RCV_CER_REJECT, S.CLOSED, (A.SEND_CEA_ERROR, A.DISCONNECT), _REJECT)
_rule(
    S.WAIT_CER,
    _others({E.RCV_CER_OK, E.RCV_CER_REJECT}, _RECEIVED),
    S.CLOSED,
    (A.DISCONNECT,),
    "§5.6.1: not a CER: close",
)
_rule(S.WAIT_CER, E.STOP, S.CLOSED, (A.DISCONNECT,), "not open: no DPR (§5.4), close")
_rule(S.WAIT_CER, E.TIMEOUT, S.CLOSED, (A.DISCONNECT,), "§5.6.1: no CER in time: close")
_rule(S.WAIT_CER, E.WATCHDOG_DOWN, S.CLOSED, (A.DISCONNECT,), _WD)
_rule(S.WAIT_CER, E.PEER_DISC, S.CLOSED, (A.CLEANUP,), "§5.6.3 Cleanup")

# --- Open ----------------------------------------------------------------------
_rule(S.OPEN, E.RCV_CER_OK, S.OPEN, (A.SEND_CEA,), "3588 §5.6 R-Rcv-CER: R-Snd-CEA")
_rule(S.OPEN, E.RCV_CER_REJECT, S.CLOSED, (A.SEND_CEA_ERROR, A.DISCONNECT), _REJECT)
_rule(S.OPEN, (E.RCV_CEA_OK, E.RCV_CEA_FAIL), S.OPEN, (), "3588 §5.6 R-Rcv-CEA: ignored")
_rule(S.OPEN, E.RCV_MESSAGE, S.OPEN, (A.PROCESS,), "§5.6 R-Rcv-Message: Process")
_rule(S.OPEN, E.RCV_DWR, S.OPEN, (A.SEND_DWA,), "§5.6 R-Rcv-DWR: Process-DWR, R-Snd-DWA")
_rule(S.OPEN, E.RCV_DWA, S.OPEN, (), "§5.6 R-Rcv-DWA: Process-DWA (watchdog)")
_rule(
    S.OPEN,
    E.RCV_DPR,
    S.CLOSED,
    (A.SEND_DPA, A.DISCONNECT),
    "3588 §5.6 R-Rcv-DPR: R-Snd-DPA, R-Disc",
)
_rule(S.OPEN, E.RCV_DPA, S.OPEN, (), "§3: unknown Hop-by-Hop answer: discard")
_rule(S.OPEN, E.STOP, S.CLOSING, (A.SEND_DPR,), "§5.6 Stop: R-Snd-DPR")
_rule(S.OPEN, E.WATCHDOG_DOWN, S.CLOSED, (A.DISCONNECT,), _WD)
_rule(S.OPEN, E.PEER_DISC, S.CLOSED, (A.CLEANUP,), "§5.6 R-Peer-Disc: R-Disc")

# --- Closing ---------------------------------------------------------------------
_rule(S.CLOSING, E.RCV_CER_OK, S.CLOSING, (A.SEND_CEA,), "as in Open")
_rule(S.CLOSING, E.RCV_CER_REJECT, S.CLOSED, (A.SEND_CEA_ERROR, A.DISCONNECT), _REJECT)
_rule(S.CLOSING, (E.RCV_CEA_OK, E.RCV_CEA_FAIL), S.CLOSING, (), "as in Open: ignored")
_rule(S.CLOSING, E.RCV_MESSAGE, S.CLOSING, (A.PROCESS,), "§5.4: in-flight answers still arrive")
_rule(S.CLOSING, E.RCV_DWR, S.CLOSING, (A.SEND_DWA,), "§5.6 Process-DWR, Snd-DWA")
_rule(S.CLOSING, E.RCV_DWA, S.CLOSING, (), "§5.6 Process-DWA (watchdog)")
_rule(
    S.CLOSING,
    E.RCV_DPR,
    S.CLOSED,
    (A.SEND_DPA, A.DISCONNECT),
    "DPRs crossed: DPA (§5.4.2), then close",
)
_rule(S.CLOSING, E.RCV_DPA, S.CLOSED, (A.DISCONNECT,), "§5.6 Closing Rcv-DPA: Disc")
_rule(S.CLOSING, E.STOP, S.CLOSING, (), "DPR already sent")
_rule(S.CLOSING, E.TIMEOUT, S.CLOSED, (A.DISCONNECT,), "§5.6 Closing Timeout: Error")
_rule(S.CLOSING, E.WATCHDOG_DOWN, S.CLOSED, (A.DISCONNECT,), _WD)
_rule(S.CLOSING, E.PEER_DISC, S.CLOSED, (A.CLEANUP,), "§5.6 Closing Peer-Disc: Disc")

#: The whole state machine: ``(state, event) -> Transition``. Read-only.
TABLE: MappingProxyType[tuple[PeerState, PeerEvent], Transition] = MappingProxyType(
    {key: tr for key, (tr, _basis) in _RULES.items()}
)
_BASIS: MappingProxyType[tuple[PeerState, PeerEvent], str] = MappingProxyType(
    {key: basis for key, (_tr, basis) in _RULES.items()}
)

del S, E, A, _REJECT, _WD


def transition(state: PeerState, event: PeerEvent) -> Transition:
    """Return the next state and actions for ``event`` in ``state`` (RFC 6733 §5.6).

    Raises :class:`InvalidTransition` for a pair the table does not list.
    """
    try:
        return TABLE[(state, event)]
    except KeyError:
        raise InvalidTransition(state, event) from None


def rules() -> list[tuple[PeerState, PeerEvent, Transition]]:
    """All rules, ordered by state then event (enum declaration order)."""
    return [
        (state, event, TABLE[(state, event)])
        for state in PeerState
        for event in PeerEvent
        if (state, event) in TABLE
    ]


def describe_table() -> str:
    """The transition table as Markdown, one row per rule (docs/diameter.md embeds it)."""
    lines = [
        "| State | Event | Next state | Actions | Basis (RFC 6733 unless noted; 3588 = RFC 3588) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for state, event, tr in rules():
        actions = ", ".join(a.name for a in tr.actions) or "—"
        basis = _BASIS[(state, event)]
        lines.append(f"| {state.name} | {event.name} | {tr.state.name} | {actions} | {basis} |")
    return "\n".join(lines) + "\n"
