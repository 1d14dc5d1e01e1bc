"""One charging batch per event-loop turn, whatever connection the requests came on.

Each Diameter connection hands the CCRs of one read to the Gy application as a
batch, and the engine answers a batch in one Redis round trip. With several peers
(or several connections from one peer), the batches that arrive in the same turn
of the event loop would each pay their own round trip: a write and a read on both
sides, an event-loop wake-up in Redis. On the 2-core machine of docs/benchmarks.md
that per-round-trip cost is larger than the charging itself, so
:class:`ChargingCoalescer` gathers every batch submitted during one turn (up to
``max_batch`` requests, setting ``charging.max_batch``) and runs them as ONE
``engine.charge`` call, at the end of the turn (``loop.call_soon``). It adds no timer and no waiting: a lone request is
charged in the next turn, as before.

Each caller gets its own slice of the results. A request that failed in the shared
call fails only its own caller's batch, with :class:`ChargingBatchError` carrying
that caller's results, exactly as if it had been charged alone. A caller that is
cancelled does not cancel the shared call (the other callers' requests are in it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from quota_engine.charging.engine import ChargingBatchError
from quota_engine.model import ChargingRequest, ChargingResult

__all__ = ["ChargingCoalescer"]

Charge = Callable[[Sequence[ChargingRequest]], Awaitable[list[ChargingResult]]]

_Waiting = tuple[list[ChargingRequest], asyncio.Future[list[ChargingResult]]]


class ChargingCoalescer:
    """``await coalescer.charge(requests)``: as ``engine.charge``, shared per turn."""

    def __init__(self, charge: Charge, *, max_batch: int = 256) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._charge = charge
        self._max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._count = 0
        self._flush_handle: asyncio.Handle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def charge(self, requests: Sequence[ChargingRequest]) -> list[ChargingResult]:
        if not requests:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[ChargingResult]] = loop.create_future()
        self._waiting.append((list(requests), future))
        self._count += len(requests)
        if self._count >= self._max_batch:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        waiting, self._waiting, self._count = self._waiting, [], 0
        if not waiting:
            return
        task = asyncio.get_running_loop().create_task(self._run(waiting))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, waiting: list[_Waiting]) -> None:
        requests = [request for batch, _ in waiting for request in batch]
        results: Sequence[ChargingResult | BaseException]
        try:
            results = await self._charge(requests)
            if len(results) != len(requests):
                raise RuntimeError(f"{len(results)} results for {len(requests)} requests")
        except ChargingBatchError as error:
            results = error.results
        except asyncio.CancelledError:  # the loop is shutting down: so are the callers
            for _, future in waiting:
                future.cancel()
            raise
        except Exception as error:  # nothing answered: every caller gets it
            for _, future in waiting:
                if not future.done():
                    future.set_exception(error)
            return
        start = 0
        for batch, future in waiting:
            mine = results[start : start + len(batch)]
            start += len(batch)
            if future.done():  # its caller was cancelled
                continue
            answered = [result for result in mine if not isinstance(result, BaseException)]
            if len(answered) < len(mine):
                future.set_exception(ChargingBatchError(list(mine)))
            else:
                future.set_result(answered)
