"""The node's periodic measurements, for the ``ocs_*`` node metrics (ocs/metrics/node.py).

:func:`monitoring` runs, while its context is open:

* the **sample** of the open sessions and outstanding reservations: every
  ``metrics.sample_interval`` seconds, the partitions' counters are read
  (:func:`quota_engine.store.open_counts.read_open_counts`, one ``HMGET`` per
  partition, pipelined) into ``ocs_sessions_open``, ``ocs_reservations_*`` and
  ``ocs_sample_duration_seconds``. A failed sample is logged (``sessions_sample_failed``)
  and the gauges keep the last good values;
* the **event-loop lag** probe: a callback scheduled every ``lag_interval`` seconds
  observes how late it ran (``ocs_event_loop_lag_seconds``); a CPU-bound callback or a
  blocking call shows here as the time it held the loop;
* the **GC pause** timer: a ``gc.callbacks`` hook times each collection by generation,
  handed to ``ocs_gc_pause_seconds`` by the lag probe (never from inside the
  collection: :class:`GcTimer`). It is removed when the context exits, so several
  nodes built one after the other in one process (the tests) never double count.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from ocs.cancellation import cancel_and_wait
from ocs.config import Settings
from ocs.logs import log_event
from ocs.metrics.node import NodeMetrics
from quota_engine.store.clients import PipelineClient
from quota_engine.store.open_counts import read_open_counts

__all__ = ["GcTimer", "LAG_INTERVAL", "lag_probe", "monitoring", "sample_loop", "sample_once"]

_log = logging.getLogger("ocs.node_monitor")

LAG_INTERVAL = 0.5
"""Seconds between two runs of the event-loop lag probe."""


class _HasNode(Protocol):
    @property
    def node(self) -> NodeMetrics: ...


async def sample_once(store: PipelineClient, node: NodeMetrics) -> None:
    """Read the open-session counters once into ``node``'s gauges."""
    started = time.perf_counter()
    counts = await read_open_counts(store)
    node.sampled(counts, time.perf_counter() - started)


async def sample_loop(store: PipelineClient, node: NodeMetrics, interval: float) -> None:
    """:func:`sample_once` every ``interval`` seconds (the first at once), until cancelled."""
    while True:
        try:
            await sample_once(store, node)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # Redis down or slow: the gauges keep their values
            log_event(_log, "sessions_sample_failed", level=logging.WARNING, error=str(error))
        await asyncio.sleep(interval)


async def lag_probe(
    observe: Callable[[float], None],
    interval: float = LAG_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
    *,
    also: Callable[[], None] | None = None,
) -> None:
    """Every ``interval`` seconds, ``observe`` how late the loop woke this task (and
    call ``also``, e.g. :meth:`GcTimer.flush`)."""
    while True:
        due = clock() + interval
        await asyncio.sleep(interval)
        observe(max(0.0, clock() - due))
        if also is not None:
            also()


class GcTimer:
    """Times the garbage collector's collections by generation (``gc.callbacks``).

    The callback only notes each pause; :meth:`flush` hands them to ``observe``. A
    collection may start anywhere, also while prometheus_client holds the
    (non-reentrant) lock of the very histogram the pause goes to: observing from the
    callback could deadlock, so the node's lag probe flushes, every ``lag_interval``."""

    def __init__(
        self,
        observe: Callable[[int, float], None],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._observe = observe
        self._clock = clock
        self._started: float | None = None
        self._pauses: collections.deque[tuple[int, float]] = collections.deque(maxlen=10_000)

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self._clock()
        elif phase == "stop" and self._started is not None:
            seconds = self._clock() - self._started
            self._started = None
            self._pauses.append((int(info.get("generation", 2)), seconds))

    def flush(self) -> None:
        """Observe the pauses noted since the last flush."""
        pauses = self._pauses
        while pauses:
            generation, seconds = pauses.popleft()
            self._observe(generation, seconds)

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self)


@contextlib.asynccontextmanager
async def monitoring(
    settings: Settings,
    store: PipelineClient,
    metrics: _HasNode | NodeMetrics,
    *,
    lag_interval: float = LAG_INTERVAL,
) -> AsyncIterator[None]:
    """The sampler, the lag probe and the GC timer, feeding ``metrics.node`` (or a
    :class:`NodeMetrics` itself), while the context is open."""
    node = metrics if isinstance(metrics, NodeMetrics) else metrics.node
    timer = GcTimer(node.gc_paused)
    timer.install()
    tasks = [
        asyncio.create_task(
            sample_loop(store, node, settings.metrics_sample_interval), name="ocs-sampler"
        ),
        asyncio.create_task(
            lag_probe(node.event_loop_lagged, lag_interval, also=timer.flush), name="ocs-lag"
        ),
    ]
    try:
        yield
    finally:
        timer.remove()
        for task in tasks:
            await cancel_and_wait(task)
        timer.flush()
