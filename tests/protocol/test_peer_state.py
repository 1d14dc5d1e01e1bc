"""Tests for protocol.peer_state: the RFC 6733 §5.6 peer state machine."""

from __future__ import annotations

import ast
import dataclasses
import pickle
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import peer_state
from protocol.peer_state import (
    TABLE,
    InvalidTransition,
    PeerAction,
    PeerEvent,
    PeerState,
    Transition,
    describe_table,
    rules,
    transition,
)
from tests.helpers import ROOT

S, E, A = PeerState, PeerEvent, PeerAction

DOCS = ROOT / "docs" / "diameter.md"

RECEIVED = (
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


def _expected() -> dict[tuple[PeerState, PeerEvent], tuple[PeerState, tuple[PeerAction, ...]]]:
    """The rules as specified, written out independently of the module's table."""
    x: dict[tuple[PeerState, PeerEvent], tuple[PeerState, tuple[PeerAction, ...]]] = {}
    # Closed
    x[S.CLOSED, E.START] = (S.WAIT_CONN_ACK, (A.CONNECT,))
    x[S.CLOSED, E.R_CONN] = (S.WAIT_CER, ())
    x[S.CLOSED, E.PEER_DISC] = (S.CLOSED, (A.CLEANUP,))
    # Wait-Conn-Ack
    x[S.WAIT_CONN_ACK, E.CONN_ACK] = (S.WAIT_I_CEA, (A.SEND_CER,))
    x[S.WAIT_CONN_ACK, E.CONN_NACK] = (S.CLOSED, (A.CLEANUP,))
    x[S.WAIT_CONN_ACK, E.TIMEOUT] = (S.CLOSED, (A.CLEANUP,))
    x[S.WAIT_CONN_ACK, E.STOP] = (S.CLOSED, (A.CLEANUP,))
    x[S.WAIT_CONN_ACK, E.PEER_DISC] = (S.CLOSED, (A.CLEANUP,))
    # Wait-I-CEA
    for ev in RECEIVED:
        x[S.WAIT_I_CEA, ev] = (S.CLOSED, (A.DISCONNECT,))
    x[S.WAIT_I_CEA, E.RCV_CEA_OK] = (S.OPEN, ())
    x[S.WAIT_I_CEA, E.TIMEOUT] = (S.CLOSED, (A.DISCONNECT,))
    x[S.WAIT_I_CEA, E.STOP] = (S.CLOSED, (A.DISCONNECT,))
    x[S.WAIT_I_CEA, E.WATCHDOG_DOWN] = (S.CLOSED, (A.DISCONNECT,))
    x[S.WAIT_I_CEA, E.PEER_DISC] = (S.CLOSED, (A.CLEANUP,))
    # Wait-CER
    for ev in RECEIVED:
        x[S.WAIT_CER, ev] = (S.CLOSED, (A.DISCONNECT,))
    x[S.WAIT_CER, E.RCV_CER_OK] = (S.OPEN, (A.SEND_CEA,))
    x[S.WAIT_CER, E.RCV_CER_REJECT] = (S.CLOSED, (A.SEND_CEA_ERROR, A.DISCONNECT))
    x[S.WAIT_CER, E.TIMEOUT] = (S.CLOSED, (A.DISCONNECT,))
    x[S.WAIT_CER, E.STOP] = (S.CLOSED, (A.DISCONNECT,))
    x[S.WAIT_CER, E.WATCHDOG_DOWN] = (S.CLOSED, (A.DISCONNECT,))
    x[S.WAIT_CER, E.PEER_DISC] = (S.CLOSED, (A.CLEANUP,))
    # Open
    x[S.OPEN, E.RCV_MESSAGE] = (S.OPEN, (A.PROCESS,))
    x[S.OPEN, E.RCV_DWR] = (S.OPEN, (A.SEND_DWA,))
    x[S.OPEN, E.RCV_DWA] = (S.OPEN, ())
    x[S.OPEN, E.RCV_CER_OK] = (S.OPEN, (A.SEND_CEA,))
    x[S.OPEN, E.RCV_CER_REJECT] = (S.CLOSED, (A.SEND_CEA_ERROR, A.DISCONNECT))
    x[S.OPEN, E.RCV_CEA_OK] = (S.OPEN, ())
    x[S.OPEN, E.RCV_CEA_FAIL] = (S.OPEN, ())
    x[S.OPEN, E.RCV_DPR] = (S.CLOSED, (A.SEND_DPA, A.DISCONNECT))
    x[S.OPEN, E.RCV_DPA] = (S.OPEN, ())
    x[S.OPEN, E.STOP] = (S.CLOSING, (A.SEND_DPR,))
    x[S.OPEN, E.WATCHDOG_DOWN] = (S.CLOSED, (A.DISCONNECT,))
    x[S.OPEN, E.PEER_DISC] = (S.CLOSED, (A.CLEANUP,))
    # Closing
    x[S.CLOSING, E.RCV_DPA] = (S.CLOSED, (A.DISCONNECT,))
    x[S.CLOSING, E.TIMEOUT] = (S.CLOSED, (A.DISCONNECT,))
    x[S.CLOSING, E.RCV_MESSAGE] = (S.CLOSING, (A.PROCESS,))
    x[S.CLOSING, E.RCV_DWR] = (S.CLOSING, (A.SEND_DWA,))
    x[S.CLOSING, E.RCV_DWA] = (S.CLOSING, ())
    x[S.CLOSING, E.RCV_DPR] = (S.CLOSED, (A.SEND_DPA, A.DISCONNECT))
    x[S.CLOSING, E.RCV_CER_OK] = (S.CLOSING, (A.SEND_CEA,))
    x[S.CLOSING, E.RCV_CER_REJECT] = (S.CLOSED, (A.SEND_CEA_ERROR, A.DISCONNECT))
    x[S.CLOSING, E.RCV_CEA_OK] = (S.CLOSING, ())
    x[S.CLOSING, E.RCV_CEA_FAIL] = (S.CLOSING, ())
    x[S.CLOSING, E.STOP] = (S.CLOSING, ())
    x[S.CLOSING, E.WATCHDOG_DOWN] = (S.CLOSED, (A.DISCONNECT,))
    x[S.CLOSING, E.PEER_DISC] = (S.CLOSED, (A.CLEANUP,))
    return x


EXPECTED = _expected()
ALL_PAIRS = [(s, e) for s in PeerState for e in PeerEvent]


# --- every rule --------------------------------------------------------------------


@pytest.mark.parametrize(("state", "event"), sorted(EXPECTED, key=lambda k: ALL_PAIRS.index(k)))
def test_each_specified_rule(state: PeerState, event: PeerEvent) -> None:
    next_state, actions = EXPECTED[state, event]
    assert transition(state, event) == Transition(next_state, actions)


def test_table_has_no_rule_beyond_the_specification() -> None:
    assert set(TABLE) == set(EXPECTED)


@pytest.mark.parametrize(("state", "event"), ALL_PAIRS)
def test_every_pair_has_a_rule_or_raises(state: PeerState, event: PeerEvent) -> None:
    if (state, event) in EXPECTED:
        result = transition(state, event)
        assert isinstance(result, Transition)
        assert result is TABLE[state, event]
    else:
        with pytest.raises(InvalidTransition) as info:
            transition(state, event)
        assert info.value.state is state
        assert info.value.event is event
        assert state.name in str(info.value) and event.name in str(info.value)


def test_closed_accepts_only_start_r_conn_and_peer_disc() -> None:
    valid = {e for e in PeerEvent if (S.CLOSED, e) in TABLE}
    assert valid == {E.START, E.R_CONN, E.PEER_DISC}


def test_peer_disc_cleans_up_from_every_state() -> None:
    for state in PeerState:
        assert transition(state, E.PEER_DISC) == Transition(S.CLOSED, (A.CLEANUP,))


def test_application_traffic_only_after_capabilities_exchange() -> None:
    # PROCESS appears in exactly two rules: OPEN and CLOSING receiving a message.
    processing = {k for k, tr in TABLE.items() if A.PROCESS in tr.actions}
    assert processing == {(S.OPEN, E.RCV_MESSAGE), (S.CLOSING, E.RCV_MESSAGE)}


def test_initiator_and_responder_happy_paths() -> None:
    def run(events: list[PeerEvent]) -> tuple[PeerState, list[PeerAction]]:
        state, done = S.CLOSED, []
        for ev in events:
            tr = transition(state, ev)
            state = tr.state
            done.extend(tr.actions)
        return state, done

    assert run([E.START, E.CONN_ACK, E.RCV_CEA_OK, E.RCV_MESSAGE, E.STOP, E.RCV_DPA]) == (
        S.CLOSED,
        [A.CONNECT, A.SEND_CER, A.PROCESS, A.SEND_DPR, A.DISCONNECT],
    )
    assert run([E.R_CONN, E.RCV_CER_OK, E.RCV_DWR, E.RCV_MESSAGE, E.RCV_DPR, E.PEER_DISC]) == (
        S.CLOSED,
        [A.SEND_CEA, A.SEND_DWA, A.PROCESS, A.SEND_DPA, A.DISCONNECT, A.CLEANUP],
    )


# --- the table as data ---------------------------------------------------------------


def test_rules_lists_the_table_in_enum_order() -> None:
    listed = rules()
    assert [(s, e) for s, e, _ in listed] == [p for p in ALL_PAIRS if p in TABLE]
    assert {(s, e): tr for s, e, tr in listed} == dict(TABLE)


def test_table_and_transitions_are_immutable() -> None:
    with pytest.raises(TypeError):
        TABLE[S.CLOSED, E.STOP] = Transition(S.CLOSED, ())  # type: ignore[index]
    tr = transition(S.CLOSED, E.START)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tr.state = S.OPEN  # type: ignore[misc]
    assert isinstance(tr.actions, tuple)


def test_invalid_transition_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(InvalidTransition(S.CLOSED, E.RCV_MESSAGE)))
    assert (err.state, err.event) == (S.CLOSED, E.RCV_MESSAGE)


def _parse_markdown_table(text: str) -> dict[tuple[PeerState, PeerEvent], Transition]:
    parsed: dict[tuple[PeerState, PeerEvent], Transition] = {}
    for line in text.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        state, event, nxt, actions = cells[0], cells[1], cells[2], cells[3]
        acts = () if actions == "—" else tuple(A[a.strip()] for a in actions.split(","))
        key = (S[state], E[event])
        assert key not in parsed, f"duplicate row {key}"
        parsed[key] = Transition(S[nxt], acts)
    return parsed


def test_describe_table_round_trips_to_the_table() -> None:
    text = describe_table()
    assert text.splitlines()[0].startswith("| State | Event | Next state | Actions |")
    assert _parse_markdown_table(text) == dict(TABLE)
    assert all(row.count("|") == 6 for row in text.splitlines()), "a basis contains a '|'"


def test_docs_embed_exactly_the_generated_table() -> None:
    doc = DOCS.read_text(encoding="utf-8")
    match = re.search(
        r"<!-- BEGIN peer-state-table[^>]*-->\n(.*?)<!-- END peer-state-table -->",
        doc,
        flags=re.DOTALL,
    )
    assert match, "docs/diameter.md lacks the peer-state-table markers"
    assert match.group(1) == describe_table(), (
        "docs/diameter.md is out of date: paste the output of "
        "`python -c 'from protocol.peer_state import describe_table; print(describe_table(), end=\"\")'`"
    )
    assert doc.count("<!-- BEGIN peer-state-table") == 1


def test_module_is_pure() -> None:
    """Standard library only, and nothing that does I/O or reads a clock."""
    tree = ast.parse(Path(peer_state.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            imported.add((node.module or "").split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}
    assert imported.isdisjoint({"asyncio", "socket", "time", "selectors", "random"})


# --- random walks ----------------------------------------------------------------------

ENTER_OPEN = {(S.WAIT_I_CEA, E.RCV_CEA_OK), (S.WAIT_CER, E.RCV_CER_OK)}


class _Walk:
    """Feeds events from CLOSED and checks the invariants after every step."""

    def __init__(self) -> None:
        self.state = S.CLOSED
        self.capabilities_exchanged = False

    def step(self, event: PeerEvent) -> None:
        state = self.state
        try:
            tr = transition(state, event)
        except InvalidTransition as err:
            assert (state, event) not in TABLE
            assert (err.state, err.event) == (state, event)
            return  # the transport drops an impossible event; the state is unchanged
        assert (state, event) in TABLE
        # OPEN and CLOSING are only ever reached through a capabilities exchange.
        if state in (S.OPEN, S.CLOSING):
            assert self.capabilities_exchanged
        actions = tr.actions
        # Application messages are processed only on an open (or closing) connection.
        if A.PROCESS in actions:
            assert state in (S.OPEN, S.CLOSING) and tr.state is state
            assert self.capabilities_exchanged
        # Closing or losing the connection always lands in CLOSED, as the last action ...
        if A.DISCONNECT in actions or A.CLEANUP in actions:
            assert tr.state is S.CLOSED
            assert actions[-1] in (A.DISCONNECT, A.CLEANUP)
        # ... and CLOSED is never entered without releasing the connection.
        if tr.state is S.CLOSED:
            assert A.DISCONNECT in actions or A.CLEANUP in actions
            self.capabilities_exchanged = False
        # OPEN is entered only by a successful capabilities exchange.
        if tr.state is S.OPEN and state is not S.OPEN:
            assert (state, event) in ENTER_OPEN
            self.capabilities_exchanged = True
        # A CEA is sent only in answer to a CER, a DPR only from OPEN.
        if A.SEND_CEA in actions or A.SEND_CEA_ERROR in actions:
            assert event in (E.RCV_CER_OK, E.RCV_CER_REJECT)
        if A.SEND_DPR in actions:
            assert (state, tr.state) == (S.OPEN, S.CLOSING)
        self.state = tr.state


@settings(max_examples=300)
@given(st.lists(st.sampled_from(list(PeerEvent)), min_size=1, max_size=200))
def test_random_event_sequences_keep_the_invariants(events: list[PeerEvent]) -> None:
    walk = _Walk()
    for event in events:
        walk.step(event)


VALID = {s: [e for e in PeerEvent if (s, e) in TABLE] for s in PeerState}


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=20, max_size=100))
def test_random_valid_walks_keep_the_invariants(choices: list[int]) -> None:
    """Same invariants, always choosing an event the current state accepts, so walks go deep."""
    walk = _Walk()
    for choice in choices:
        valid = VALID[walk.state]
        walk.step(valid[choice % len(valid)])


def test_every_reachable_step_keeps_the_invariants() -> None:
    """Exhaustive complement of the random walks: every step from every reachable situation."""
    start = (S.CLOSED, False)
    seen, todo = {start}, [start]
    while todo:
        state, exchanged = todo.pop()
        for event in PeerEvent:
            walk = _Walk()
            walk.state, walk.capabilities_exchanged = state, exchanged
            walk.step(event)
            nxt = (walk.state, walk.capabilities_exchanged)
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert {st_ for st_, _ in seen} == set(PeerState)  # every state is reachable from CLOSED
