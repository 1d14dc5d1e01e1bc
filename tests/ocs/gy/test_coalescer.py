"""ocs.gy.coalescer: the batches of one event-loop turn share one engine call.

The engine here is a recording stand-in (a plain async function): what is under
test is how batches are gathered and results handed back, not charging. The
system tests (tests/charging, tests/system) run the real engine behind it.
"""

from __future__ import annotations

import asyncio

import pytest

from ocs.gy.coalescer import ChargingCoalescer
from quota_engine.charging.engine import ChargingBatchError
from quota_engine.model import ChargingRequest, ChargingResult, Outcome, RequestType


def ccr(session: str) -> ChargingRequest:
    return ChargingRequest(
        session_id=session,
        request_type=RequestType.INITIAL,
        request_number=0,
        identities=["msisdn:1"],
        service_context="32251@3gpp.org",
        services=[],
        timestamp=0,
    )


def answer(request: ChargingRequest) -> ChargingResult:
    return ChargingResult(Outcome.OK, account_id=request.session_id)


class Recorder:
    """An engine stand-in: records each call's sessions; ``fail`` maps a session id
    to the exception its request meets (``ChargingBatchError`` semantics)."""

    def __init__(self, fail: dict[str, BaseException] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail or {}
        self.release = asyncio.Event()
        self.release.set()

    async def charge(self, requests):
        self.calls.append([r.session_id for r in requests])
        await self.release.wait()
        results = [self.fail.get(r.session_id) or answer(r) for r in requests]
        if any(isinstance(r, BaseException) for r in results):
            raise ChargingBatchError(results)
        return results


def sessions(results) -> list[str]:
    return [r.account_id for r in results]


async def test_batches_of_one_turn_share_one_call_and_get_their_own_results():
    engine = Recorder()
    coalescer = ChargingCoalescer(engine.charge)
    a, b = await asyncio.gather(
        coalescer.charge([ccr("a1"), ccr("a2")]), coalescer.charge([ccr("b1")])
    )
    assert engine.calls == [["a1", "a2", "b1"]]
    assert sessions(a) == ["a1", "a2"] and sessions(b) == ["b1"]


async def test_batches_of_later_turns_get_their_own_call():
    engine = Recorder()
    coalescer = ChargingCoalescer(engine.charge)
    assert sessions(await coalescer.charge([ccr("a")])) == ["a"]
    assert sessions(await coalescer.charge([ccr("b")])) == ["b"]
    assert engine.calls == [["a"], ["b"]]


async def test_a_full_batch_goes_at_once():
    engine = Recorder()
    coalescer = ChargingCoalescer(engine.charge, max_batch=3)
    results = await asyncio.gather(
        coalescer.charge([ccr("a1"), ccr("a2")]),
        coalescer.charge([ccr("b1")]),  # reaches 3: sent without waiting for the turn
        coalescer.charge([ccr("c1")]),
    )
    assert engine.calls == [["a1", "a2", "b1"], ["c1"]]
    assert [sessions(r) for r in results] == [["a1", "a2"], ["b1"], ["c1"]]


async def test_a_failed_request_fails_only_its_own_callers_batch():
    error = RuntimeError("script error on corrupt data")
    engine = Recorder(fail={"b2": error})
    coalescer = ChargingCoalescer(engine.charge)
    a, b = await asyncio.gather(
        coalescer.charge([ccr("a1")]),
        coalescer.charge([ccr("b1"), ccr("b2")]),
        return_exceptions=True,
    )
    assert sessions(a) == ["a1"]
    assert isinstance(b, ChargingBatchError)
    assert sessions(b.results[:1]) == ["b1"] and b.results[1] is error


async def test_an_engine_failure_reaches_every_caller():
    async def down(requests):
        raise ConnectionError("Redis is down")

    coalescer = ChargingCoalescer(down)
    results = await asyncio.gather(
        coalescer.charge([ccr("a")]), coalescer.charge([ccr("b")]), return_exceptions=True
    )
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]


async def test_a_cancelled_caller_does_not_cancel_the_others():
    engine = Recorder()
    engine.release.clear()
    coalescer = ChargingCoalescer(engine.charge)
    first = asyncio.create_task(coalescer.charge([ccr("a")]))
    second = asyncio.create_task(coalescer.charge([ccr("b")]))
    await asyncio.sleep(0.01)
    assert engine.calls == [["a", "b"]]  # in flight, together
    first.cancel()
    engine.release.set()
    assert sessions(await second) == ["b"]
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_no_requests_no_call():
    engine = Recorder()
    assert await ChargingCoalescer(engine.charge).charge([]) == []
    assert engine.calls == []


def test_max_batch_must_be_positive():
    with pytest.raises(ValueError, match="max_batch"):
        ChargingCoalescer(Recorder().charge, max_batch=0)


async def test_cancelling_the_shared_call_cancels_its_callers_rather_than_leave_them_waiting():
    engine = Recorder()
    engine.release.clear()
    coalescer = ChargingCoalescer(engine.charge)
    callers = [asyncio.create_task(coalescer.charge([ccr(s)])) for s in ("a", "b")]
    await asyncio.sleep(0.01)
    [shared] = coalescer._running
    shared.cancel()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert [type(r) for r in results] == [asyncio.CancelledError] * 2
