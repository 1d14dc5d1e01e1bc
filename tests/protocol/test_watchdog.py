"""Tests for protocol.watchdog: the RFC 3539 device watchdog, driven with explicit time."""

from __future__ import annotations

import ast
import math
import random
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import watchdog as watchdog_module
from protocol.watchdog import TW_MIN, Watchdog, WatchdogAction, WatchdogState

OKAY, SUSPECT, DOWN = WatchdogState.OKAY, WatchdogState.SUSPECT, WatchdogState.DOWN
NONE, SEND_DWR, CLOSE = WatchdogAction.NONE, WatchdogAction.SEND_DWR, WatchdogAction.CLOSE

TW = 30.0
T0 = 1000.0


def fixed(value: float):
    return lambda: value


def make(jitter: float = 0.0, tw: float = TW, now: float = T0) -> Watchdog:
    return Watchdog(tw, now, jitter=fixed(jitter))


# --- construction ----------------------------------------------------------------------


def test_starts_okay_with_the_first_deadline_one_interval_away() -> None:
    wd = make(jitter=0.5)
    assert (wd.state, wd.pending, wd.deadline) == (OKAY, False, T0 + TW + 0.5)
    assert wd.tw == TW


@pytest.mark.parametrize("tw", [5.999, 0.0, -30.0, math.nan, math.inf])
def test_tw_below_the_rfc_minimum_or_not_finite_is_rejected(tw: float) -> None:
    with pytest.raises(ValueError, match="tw"):
        Watchdog(tw, T0, jitter=fixed(0.0))


def test_tw_at_the_rfc_minimum_is_accepted() -> None:
    assert Watchdog(6, T0, jitter=fixed(0.0)).deadline == T0 + 6.0


# --- OKAY: DWR after Tw of silence, traffic postpones it -------------------------------------


def test_dwr_after_tw_of_silence() -> None:
    wd = make()
    assert wd.on_timer(T0 + TW) is SEND_DWR
    assert (wd.state, wd.pending, wd.deadline) == (OKAY, True, T0 + 2 * TW)


def test_timer_called_early_does_nothing() -> None:
    wd = make()
    assert wd.on_timer(T0 + TW - 0.001) is NONE
    assert (wd.state, wd.pending, wd.deadline) == (OKAY, False, T0 + TW)
    wd.on_timer(T0 + TW)  # DWR out, now pending
    assert wd.on_timer(T0 + 2 * TW - 0.001) is NONE
    assert (wd.state, wd.pending) == (OKAY, True)


def test_late_timer_measures_the_next_interval_from_now() -> None:
    wd = make()
    assert wd.on_timer(T0 + TW + 7) is SEND_DWR
    assert wd.deadline == T0 + 2 * TW + 7


def test_any_traffic_postpones_the_dwr() -> None:
    wd = make()
    wd.on_receive(T0 + 20)  # e.g. a CCR
    assert wd.deadline == T0 + 20 + TW
    assert wd.on_timer(T0 + TW) is NONE  # the original deadline no longer counts
    assert wd.on_timer(T0 + 20 + TW) is SEND_DWR


def test_dwa_clears_pending_and_the_next_silence_sends_a_new_dwr() -> None:
    wd = make()
    wd.on_timer(T0 + TW)
    wd.on_receive(T0 + TW + 1, is_dwa=True)
    assert (wd.state, wd.pending, wd.deadline) == (OKAY, False, T0 + 2 * TW + 1)
    assert wd.on_timer(T0 + 2 * TW + 1) is SEND_DWR


# --- no answer: SUSPECT, then DOWN + CLOSE ----------------------------------------------------


def test_unanswered_dwr_leads_to_suspect_then_down_and_close_after_two_tw() -> None:
    wd = make()
    dwr_at = T0 + TW
    assert wd.on_timer(dwr_at) is SEND_DWR
    assert wd.on_timer(dwr_at + TW) is NONE  # no second DWR (RFC 3539 §3.4.1 [4])
    assert (wd.state, wd.pending) == (SUSPECT, True)
    assert wd.on_timer(dwr_at + 2 * TW - 0.001) is NONE
    assert wd.state is SUSPECT
    assert wd.on_timer(dwr_at + 2 * TW) is CLOSE
    assert wd.state is DOWN
    assert wd.deadline == math.inf


def test_non_dwa_traffic_does_not_answer_a_pending_dwr() -> None:
    # In OKAY traffic resets the timer but the DWR stays pending: the next expiry is
    # SUSPECT, without a second DWR.
    wd = make()
    wd.on_timer(T0 + TW)
    wd.on_receive(T0 + TW + 5)
    assert (wd.state, wd.pending) == (OKAY, True)
    assert wd.on_timer(T0 + 2 * TW + 5) is NONE
    assert wd.state is SUSPECT


def test_close_is_returned_once_and_down_is_final() -> None:
    wd = make()
    for t in (T0 + TW, T0 + 2 * TW, T0 + 3 * TW):
        wd.on_timer(t)
    assert wd.state is DOWN
    assert wd.on_timer(T0 + 100 * TW) is NONE
    wd.on_receive(T0 + 100 * TW)
    assert wd.state is DOWN
    wd.on_receive(T0 + 100 * TW, is_dwa=True)  # RFC 3539 Appendix A: DOWN + DWA clears Pending
    assert (wd.state, wd.pending, wd.deadline) == (DOWN, False, math.inf)
    assert wd.on_timer(math.inf) is NONE


# --- SUSPECT: any message brings it back ------------------------------------------------------


def _suspect() -> Watchdog:
    wd = make()
    wd.on_timer(T0 + TW)
    wd.on_timer(T0 + 2 * TW)
    assert wd.state is SUSPECT
    return wd


def test_dwa_in_suspect_returns_to_okay() -> None:
    wd = _suspect()
    wd.on_receive(T0 + 2 * TW + 3, is_dwa=True)
    assert (wd.state, wd.pending, wd.deadline) == (OKAY, False, T0 + 3 * TW + 3)
    assert wd.on_timer(T0 + 3 * TW + 3) is SEND_DWR  # a fresh probe, not a close


def test_non_dwa_in_suspect_returns_to_okay_but_keeps_the_dwr_pending() -> None:
    # RFC 3539 Appendix A: "SUSPECT Receive non-DWA -> Failback(), SetWatchdog() -> OKAY".
    wd = _suspect()
    wd.on_receive(T0 + 2 * TW + 3)
    assert (wd.state, wd.pending, wd.deadline) == (OKAY, True, T0 + 3 * TW + 3)
    assert wd.on_timer(T0 + 3 * TW + 3) is NONE
    assert wd.state is SUSPECT


# --- jitter and the interval --------------------------------------------------------------------


def test_jitter_is_drawn_each_time_the_timer_is_set() -> None:
    draws = iter([1.5, -1.0, 0.25, 2.0])
    wd = Watchdog(TW, T0, jitter=lambda: next(draws))
    assert wd.deadline == T0 + TW + 1.5
    wd.on_receive(T0 + 10)
    assert wd.deadline == T0 + 10 + TW - 1.0
    wd.on_timer(wd.deadline)  # SEND_DWR at T0 + 39
    assert wd.deadline == T0 + 39 + TW + 0.25
    wd.on_timer(wd.deadline)  # SUSPECT at T0 + 69.25
    assert wd.deadline == T0 + 69.25 + TW + 2.0


@pytest.mark.parametrize(
    ("tw", "jitter", "interval"),
    [
        (30.0, -2.0, 28.0),
        (30.0, 2.0, 32.0),
        (6.0, -2.0, 6.0),  # never below the 6 s minimum
        (7.0, -2.0, 6.0),
        (6.0, 1.5, 7.5),
        (30.0, 5.0, 32.0),  # a jitter outside [-2, 2] is clamped
        (30.0, -9.0, 28.0),
        (30.0, math.nan, 30.0),
    ],
)
def test_interval_is_tw_plus_jitter_within_the_rfc_bounds(
    tw: float, jitter: float, interval: float
) -> None:
    assert Watchdog(tw, T0, jitter=fixed(jitter)).deadline == T0 + interval


def test_default_jitter_stays_within_two_seconds_and_varies() -> None:
    intervals = set()
    for _ in range(200):
        wd = Watchdog(TW, 0.0)
        assert TW - 2.0 <= wd.deadline <= TW + 2.0
        intervals.add(wd.deadline)
    assert len(intervals) > 100


def test_default_jitter_does_not_touch_the_global_random_generator() -> None:
    random.seed(12345)
    expected = [random.random() for _ in range(3)]
    random.seed(12345)
    wd = Watchdog(TW, 0.0)
    wd.on_receive(1.0)
    wd.on_timer(wd.deadline)
    assert [random.random() for _ in range(3)] == expected


def test_module_is_pure() -> None:
    """Standard library only; no asyncio, sockets or clock."""
    tree = ast.parse(Path(watchdog_module.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            imported.add((node.module or "").split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}
    assert imported.isdisjoint({"asyncio", "socket", "time", "selectors"})


# --- random schedules -------------------------------------------------------------------------

_STEP = st.tuples(
    st.sampled_from(["timer", "timer", "msg", "dwa"]),
    st.floats(min_value=0.0, max_value=3 * TW, allow_nan=False),
    st.floats(min_value=-2.0, max_value=2.0, allow_nan=False),
)


@given(st.lists(_STEP, max_size=50), st.floats(min_value=TW_MIN, max_value=120.0))
def test_random_schedules_follow_the_rfc_state_table(steps, tw) -> None:
    jitters: list[float] = [0.0]
    wd = Watchdog(tw, 0.0, jitter=lambda: jitters[-1])
    now = 0.0
    closes = 0
    for kind, delay, jitter in steps:
        jitters.append(jitter)
        now += delay
        before = (wd.state, wd.pending, wd.deadline)
        if kind == "timer":
            action = wd.on_timer(now)
            if before[0] is DOWN or now < before[2]:
                assert action is NONE and (wd.state, wd.pending, wd.deadline) == before
                continue
            if before[0] is OKAY and not before[1]:
                assert (action, wd.state, wd.pending) == (SEND_DWR, OKAY, True)
            elif before[0] is OKAY:
                assert (action, wd.state, wd.pending) == (NONE, SUSPECT, True)
            else:
                assert (action, wd.state) == (CLOSE, DOWN)
                closes += 1
        else:
            wd.on_receive(now, is_dwa=(kind == "dwa"))
            assert wd.pending == (before[1] and kind != "dwa")
            assert wd.state is (DOWN if before[0] is DOWN else OKAY)
            if before[0] is DOWN:
                assert wd.deadline == math.inf
                continue
        if wd.state is not DOWN:
            # Every (re)set interval is tw + jitter, clamped to at least 6 s.
            assert wd.deadline == now + max(TW_MIN, tw + jitter)
    assert closes <= 1
