"""A load-generator worker process: its own event loop, connections and timeline.

The parent (:mod:`loadtest.runner`) starts one worker per ``--workers`` with the
``spawn`` method and talks to it over two queues:

* worker -> parent: ``("ready", wid, info)`` once its connections are OPEN (or
  ``("failed", wid, message)``), ``("tick", wid, snapshot)`` once a second, and
  ``("done", wid, final)`` with its encoded histograms at the end;
* parent -> worker: ``("start", t0)`` with the common start time (Unix seconds),
  ``("stop",)`` to end the timeline early (Ctrl-C).

Open loop: requests are due at fixed times on a timeline (uniform spacing or a Poisson
process at the worker's share of the rate) whatever the answers do, and latency is
measured from the due time, so a server or generator that falls behind shows in the
percentiles instead of slowing the offered load (no coordinated omission).

Scenario mode: each slot of the timeline goes to a service chosen by a smooth weighted
round-robin over the mix, so the services' shares of the CCRs hold exactly. The slot
carries the next request of a session of that service whose think time has passed
(oldest first), else it opens a new session. At the end of the timeline the open
sessions are drained: each gets its CCR-T (paced at the run's rate, counted apart).

Replay mode: the trace's requests are due at their captured offsets divided by the
speed, each with a rewritten Session-Id; a request waits for the answer to the
previous request of its session before it goes out (still timed from its due time).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import os
import random
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from cext.codec import CodecError, Message
from protocol.client import client_node
from protocol.connection import PeerConnection, Timers
from protocol.dictionary import constants as c
from protocol.errors import DiameterError
from protocol.messages import Codec, LocalIdentity

from . import trace as tracefile
from .ccr import CCR, CREDIT_CONTROL, Session, SessionFactory, kind_of
from .connection import connect_corked
from .scenario import Scenario
from .stats import Recorder

if TYPE_CHECKING:
    from multiprocessing.queues import Queue as ProcessQueue

# A control message from the parent, or a result for it: (what, ...).
ControlQueue: TypeAlias = "ProcessQueue[tuple[Any, ...]]"

__all__ = ["WorkerConfig", "worker_main"]


@dataclass(frozen=True)
class WorkerConfig:
    wid: int
    workers: int
    host: str
    port: int
    connections: int
    rate: float  # this worker's share, requests per second
    duration: float
    timeout: float
    arrival: str = "uniform"
    scenario: Scenario | None = None
    subscribers: tuple[int, int, int] = (0, 1, 1)  # range(start, stop, step)
    run_tag: str = "lt"
    nonce: str = ""  # new for every run_load call: part of every Session-Id
    origin_realm: str = "loadtest.example"
    destination_realm: str | None = None  # None: the server's Origin-Realm from its CEA
    seed: int | None = None
    drain_timeout: float = 30.0
    drain: bool = True  # False: sessions open at the end are left open (no CCR-T)
    warmup: float = 0.0  # seconds at the rate before the measured window
    # replay mode
    trace: str | None = None
    speed: float = 1.0
    loops: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def worker_main(config: WorkerConfig, control: ControlQueue, results: ControlQueue) -> None:
    """Process entry point (``multiprocessing`` target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent coordinates Ctrl-C
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        loop_factory = None
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_Worker(config, control, results).run())
    except BaseException:
        results.put(("failed", config.wid, traceback.format_exc()))


class _Worker:
    def __init__(self, config: WorkerConfig, control: ControlQueue, results: ControlQueue) -> None:
        self.config = config
        self.control_queue = control
        self.results = results
        self.connections: list[PeerConnection] = []
        self.recorder = Recorder()
        self.stopped = False

    async def run(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        control: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        threading.Thread(
            target=_pump, args=(self.control_queue, loop, control), daemon=True
        ).start()
        try:
            await self._connect()
        except Exception as exc:
            self.results.put(("failed", cfg.wid, f"cannot connect to {cfg.host}:{cfg.port}: {exc}"))
            await self._close()
            return
        driver: _Driver
        driver = ReplayDriver(self) if cfg.trace is not None else ScenarioDriver(self)
        self.results.put(("ready", cfg.wid, driver.ready_info()))
        message = await control.get()
        if message[0] != "start":
            await self._close()
            self.results.put(("done", cfg.wid, self._final(driver)))
            return
        t0 = time.monotonic() + (message[1] - time.time())
        self._cpu_mark = (t0, time.process_time())
        watcher = asyncio.create_task(self._watch_control(control, driver))
        ticker = asyncio.create_task(self._tick(t0, driver))
        try:
            await driver.run(t0)
        finally:
            ticker.cancel()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        snapshot = self._snapshot(driver, int(time.monotonic() - t0), last=True)
        self.results.put(("tick", cfg.wid, snapshot))
        await self._close()
        self.results.put(("done", cfg.wid, self._final(driver)))

    async def _connect(self) -> None:
        cfg = self.config
        timers = Timers(request_timeout=cfg.timeout)
        tasks = []
        for index in range(cfg.connections):
            host = f"{cfg.run_tag}-w{cfg.wid}c{index}.{cfg.origin_realm}"
            node = client_node(host, cfg.origin_realm, timers=timers)
            tasks.append(connect_corked(node, cfg.host, cfg.port, timeout=max(cfg.timeout, 5.0)))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        self.connections = [r for r in results if not isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def _close(self) -> None:
        await asyncio.gather(
            *(asyncio.wait_for(conn.disconnect(), 5.0) for conn in self.connections),
            return_exceptions=True,
        )

    async def _watch_control(
        self, control: asyncio.Queue[tuple[Any, ...]], driver: _Driver
    ) -> None:
        while True:
            message = await control.get()
            if message[0] == "stop":
                self.stopped = True
                driver.stop()

    async def _tick(self, t0: float, driver: _Driver) -> None:
        second = 0
        while True:
            await asyncio.sleep(max(0.0, t0 + second + 1 - time.monotonic()))
            self.results.put(("tick", self.config.wid, self._snapshot(driver, second)))
            second += 1

    _cpu_mark: tuple[float, float] | None = None

    def _snapshot(self, driver: _Driver, second: int, last: bool = False) -> dict[str, Any]:
        wall, cpu = time.monotonic(), time.process_time()
        previous = self._cpu_mark or (wall - 1.0, cpu)
        self._cpu_mark = (wall, cpu)
        elapsed = wall - previous[0]
        snapshot = self.recorder.flush_second()
        snapshot.update(
            second=second,
            last=last,
            cpu_percent=round(100.0 * (cpu - previous[1]) / elapsed, 1) if elapsed > 0 else 0.0,
            in_flight=driver.in_flight,
            open_sessions=driver.open_sessions,
            phase="warmup" if snapshot.pop("warm") else driver.phase,
        )
        return snapshot

    def _final(self, driver: _Driver) -> dict[str, Any]:
        final = self.recorder.final()
        final.update(
            wid=self.config.wid,
            window_sent=driver.window_sent,
            window_answered=driver.window_answered,
            sessions=driver.sessions_started,
            timeline_seconds=driver.timeline_seconds,
            stopped_early=self.stopped,
            pid=os.getpid(),
        )
        return final


def _pump(
    queue: ControlQueue,
    loop: asyncio.AbstractEventLoop,
    target: asyncio.Queue[tuple[Any, ...]],
) -> None:
    """Thread: hand the parent's control messages to the event loop."""
    while True:
        try:
            message = queue.get()
        except (EOFError, OSError):
            return
        try:
            loop.call_soon_threadsafe(target.put_nowait, message)
        except RuntimeError:  # loop closed
            return
        if message[0] == "stop":
            return


class _Driver:
    phase = "ready"
    in_flight = 0
    open_sessions = 0
    window_sent = 0
    window_answered = 0  # answers that arrived before the timeline ended
    sessions_started = 0
    timeline_seconds = 0.0
    window_end = float("inf")

    def ready_info(self) -> dict[str, Any]:
        return {}

    async def run(self, t0: float) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


def _offsets(rate: float, arrival: str, rng: random.Random) -> Iterator[float]:
    """Due times (seconds from the start) of a worker's timeline."""
    if arrival == "poisson":
        t = 0.0
        expovariate = rng.expovariate
        while True:
            t += expovariate(rate)
            yield t
    else:
        k = 0
        phase = rng.random() / rate  # workers' slots interleave instead of coinciding
        while True:
            yield phase + k / rate
            k += 1


class StrideMix:
    """Smooth weighted round-robin: services in proportion to their shares, spread out."""

    def __init__(self, shares: dict[str, float]) -> None:
        self.names = list(shares)
        self.weights = [shares[name] for name in self.names]
        self.total = sum(self.weights)
        self.current = [0.0] * len(self.names)

    def next(self) -> str:
        current, weights = self.current, self.weights
        best = 0
        for i in range(len(current)):
            current[i] += weights[i]
            if current[i] > current[best]:
                best = i
        current[best] -= self.total
        return self.names[best]


def _result_code(answer: Message) -> int:
    try:
        code: int | None = answer.get(c.AVP_RESULT_CODE)
        if code is None:
            experimental = answer.group(c.AVP_EXPERIMENTAL_RESULT)
            if experimental is not None:
                code = experimental.get(c.AVP_EXPERIMENTAL_RESULT_CODE)
    except CodecError:
        return 0
    return 0 if code is None else code


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, DiameterError):
        return f"bad_answer_{exc.result_code}"
    if isinstance(exc, ConnectionError):
        return "connection"
    return type(exc).__name__


class ScenarioDriver(_Driver):
    def __init__(self, worker: _Worker) -> None:
        cfg = worker.config
        assert cfg.scenario is not None
        self.worker = worker
        self.cfg = cfg
        self.recorder = worker.recorder
        self.rng = random.Random(cfg.seed)
        self.scenario = cfg.scenario
        conns = worker.connections
        destination = cfg.destination_realm or (
            conns[0].peer.origin_realm if conns[0].peer else None
        )
        self.factory = SessionFactory(
            cfg.scenario,
            list(range(*cfg.subscribers)),
            destination or "ocs.example",
            cfg.origin_realm,
            cfg.run_tag,
            self.rng,
            cfg.nonce,
        )
        self.mix = StrideMix(cfg.scenario.shares)
        # per service: a heap of (due, sequence number, session) to send
        self.ready: dict[str, list[tuple[float, int, Session]]] = {
            name: [] for name in self.mix.names
        }
        self.open: set[Session] = set()
        self.drain_queue: deque[Session] = deque()
        self.draining = False
        self._stop = asyncio.Event()
        self._seq = 0
        self._next_conn = 0

    def ready_info(self) -> dict[str, Any]:
        return {"destination_realm": self.factory.destination_realm}

    @property
    def open_sessions(self) -> int:  # type: ignore[override]
        return len(self.open)

    def stop(self) -> None:
        self._stop.set()

    async def run(self, t0: float) -> None:
        cfg = self.cfg
        self.phase = "warmup" if cfg.warmup > 0 else "run"
        measure_from = t0 + cfg.warmup
        end = measure_from + cfg.duration
        self.window_end = end
        offsets = _offsets(cfg.rate, cfg.arrival, self.rng)
        due = t0 + next(offsets)
        monotonic = time.monotonic
        stop = self._stop
        while not stop.is_set():
            now = monotonic()
            while due <= now and due < end:
                self._fire(due, now, None if due >= measure_from else "warmup")
                due = t0 + next(offsets)
            if due >= measure_from:
                self.phase = "run"
            if due >= end:
                break
            # Timers have millisecond resolution: sleep at least 1 ms and send all that
            # fell due meanwhile in one go (one write per connection, see connection.py).
            delay = due - monotonic()
            if delay > 0:
                await asyncio.sleep(max(delay, 0.001))
        self.timeline_seconds = max(0.0, min(monotonic(), end) - measure_from)
        self.phase = "drain"
        await self._drain()
        self.phase = "done"

    # the timeline -----------------------------------------------------------------

    def _fire(self, due: float, now: float, side: str | None) -> None:
        service = self.mix.next()
        heap = self.ready[service]
        if heap and heap[0][0] <= due:
            session = heapq.heappop(heap)[2]
        else:
            session = self._new_session(service)
        self._send(session, due, now, side)

    def _new_session(self, service: str) -> Session:
        conns = self.worker.connections
        conn = conns[self._next_conn % len(conns)]
        self._next_conn += 1
        session = self.factory.new_session(service, conn.node.codec.identity.origin_host)
        session.connection = conn
        self.open.add(session)
        self.sessions_started += 1
        return session

    def _connection_for(self, session: Session) -> PeerConnection | None:
        conn = session.connection
        if conn is not None and conn.is_open:
            return conn
        for other in self.worker.connections:
            if other.is_open:
                session.connection = other
                return other
        return None

    def _send(self, session: Session, due: float, now: float, side: str | None) -> None:
        """Send the session's next request, due at ``due``; ``side`` is None for the
        measured window, else "warmup" or "drain" (counted apart)."""
        kind = session.kind
        conn = self._connection_for(session)
        recorder = self.recorder
        if side is not None:
            recorder.on_side_sent(side)
        else:
            recorder.on_sent(kind, int((now - due) * 1e6))
            self.window_sent += 1
        if conn is None:
            if side is not None:
                recorder.on_side_outcome(side, None, "connection")
            else:
                recorder.on_error(kind, "no_connection")
            self.open.discard(session)
            return
        avps = session.next_request()
        self.in_flight += 1
        task = asyncio.ensure_future(conn.request(CCR, CREDIT_CONTROL, avps, self.cfg.timeout))
        task.add_done_callback(
            functools.partial(self._answered, session, kind, due, time.monotonic(), side)
        )

    def _answered(
        self,
        session: Session,
        kind: str,
        due: float,
        sent: float,
        side: str | None,
        task: asyncio.Future[Message],
    ) -> None:
        now = time.monotonic()
        self.in_flight -= 1
        recorder = self.recorder
        answer = None
        code = None
        error: str | None
        if task.cancelled():
            error = "cancelled"
        else:
            exc = task.exception()
            error = None if exc is None else _error_name(exc)
            if exc is None:
                answer = task.result()
                code = _result_code(answer)
        if side is not None:
            recorder.on_side_outcome(side, code, error, int((now - due) * 1e6))
        elif code is not None:
            recorder.on_answer(kind, code, int((now - due) * 1e6), int((now - sent) * 1e6))
            if now <= self.window_end:
                self.window_answered += 1
        elif error == "timeout":
            recorder.on_timeout(kind)
        else:
            recorder.on_error(kind, error or "error")
        session.on_answer(answer, code)
        if session.finished:
            self.open.discard(session)
            return
        if self.draining:
            if self.cfg.drain:
                session.terminate_next()
                self.drain_queue.append(session)
            return
        self._seq += 1
        heapq.heappush(
            self.ready[session.service], (now + session.think_time(), self._seq, session)
        )

    # the end ----------------------------------------------------------------------

    async def _drain(self) -> None:
        """CCR-T for every open session, paced at the run's rate (at least 500/s);
        wait for the answers. With ``drain`` off, only the answers in flight are
        waited for and the sessions stay open in the server (to measure it holding
        them; its sweeper settles them at their deadlines)."""
        self.draining = True
        for heap in self.ready.values():
            if self.cfg.drain:
                for _, _, session in heap:
                    session.terminate_next()
                    self.drain_queue.append(session)
            heap.clear()
        deadline = time.monotonic() + self.cfg.drain_timeout + self.cfg.timeout
        per_tick = max(5, int(self.cfg.rate * 0.01))
        while (self.drain_queue or self.in_flight) and time.monotonic() < deadline:
            now = time.monotonic()
            for _ in range(min(per_tick, len(self.drain_queue))):
                self._send(self.drain_queue.popleft(), now, now, "drain")
            await asyncio.sleep(0.01)


class ReplayDriver(_Driver):
    """Sends a trace's client requests at their captured times (divided by ``speed``)."""

    def __init__(self, worker: _Worker) -> None:
        cfg = worker.config
        self.worker = worker
        self.cfg = cfg
        self.recorder = worker.recorder
        self._stop = asyncio.Event()
        self.items = load_replay_items(
            cfg.trace, cfg.wid, cfg.workers, len(worker.connections), cfg.extra.get("contexts")
        )
        self.waiting: dict[str, deque[ReplayItem]] = {}
        self.busy: set[str] = set()
        span = (self.items[-1][0] if self.items else 0.0) / cfg.speed
        self.span = span
        self.pass_gap = span + (cfg.extra.get("gap", 1.0))

    def ready_info(self) -> dict[str, Any]:
        return {"requests": len(self.items), "span": self.span}

    def stop(self) -> None:
        self._stop.set()

    async def run(self, t0: float) -> None:
        cfg = self.cfg
        self.phase = "run"
        monotonic = time.monotonic
        for pass_number in range(cfg.loops):
            start = t0 + pass_number * self.pass_gap
            suffix = f"{cfg.run_tag}.{cfg.nonce}.{pass_number}"
            index = 0
            items = self.items
            while index < len(items) and not self._stop.is_set():
                now = monotonic()
                while index < len(items) and start + items[index][0] / cfg.speed <= now:
                    offset, conn_index, session_key, kind, message = items[index]
                    due = start + offset / cfg.speed
                    self.recorder.on_sent(kind, int((now - due) * 1e6))
                    self.window_sent += 1
                    key = f"{session_key};{suffix}" if session_key else ""
                    item = (due, conn_index, key, kind, message, suffix)
                    if key and key in self.busy:
                        self.waiting.setdefault(key, deque()).append(item)
                    else:
                        self._send(item)
                    index += 1
                if index < len(items):
                    delay = start + items[index][0] / cfg.speed - monotonic()
                    if delay > 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._stop.wait(), delay)
        self.timeline_seconds = monotonic() - t0
        self.phase = "drain"
        deadline = monotonic() + cfg.timeout + 1.0
        while (self.in_flight or self.waiting) and monotonic() < deadline:
            await asyncio.sleep(0.01)
        self.phase = "done"

    def _send(self, item: ReplayItem) -> None:
        due, conn_index, key, kind, message, suffix = item
        conns = self.worker.connections
        conn: PeerConnection | None = conns[conn_index % len(conns)]
        if conn is not None and not conn.is_open:
            conn = next((other for other in conns if other.is_open), None)
        if conn is None:
            self.recorder.on_error(kind, "no_connection")
            self._next_of(key)
            return
        ids = conn.node.ids
        data = tracefile.rewrite(message, suffix, ids.hop_by_hop(), ids.end_to_end())
        if key:
            self.busy.add(key)
        self.in_flight += 1
        task = asyncio.ensure_future(conn.request_raw(data, self.cfg.timeout))
        task.add_done_callback(functools.partial(self._answered, item, time.monotonic()))

    def _answered(self, item: ReplayItem, sent: float, task: asyncio.Future[Message]) -> None:
        now = time.monotonic()
        self.in_flight -= 1
        due, _, key, kind, _, _ = item
        recorder = self.recorder
        if task.cancelled():
            recorder.on_error(kind, "cancelled")
        elif (exc := task.exception()) is not None:
            error = _error_name(exc)
            if error == "timeout":
                recorder.on_timeout(kind)
            else:
                recorder.on_error(kind, error)
        else:
            code = _result_code(task.result())
            recorder.on_answer(kind, code, int((now - due) * 1e6), int((now - sent) * 1e6))
            if now <= self.window_end:
                self.window_answered += 1
        self._next_of(key)

    def _next_of(self, key: str) -> None:
        if not key:
            return
        self.busy.discard(key)
        queue = self.waiting.get(key)
        if queue:
            item = queue.popleft()
            if not queue:
                del self.waiting[key]
            self._send(item)


# (due, connection index, session key, kind, message, Session-Id suffix)
ReplayItem: TypeAlias = tuple[float, int, str, str, bytes, str]

_SERVICE_OF_CONTEXT = {
    "32251@3gpp.org": "data",
    "32260@3gpp.org": "voice",
    "32274@3gpp.org": "sms",
}


def load_replay_items(
    path: str | None,
    wid: int,
    workers: int,
    connections: int,
    contexts: dict[str, str] | None = None,
) -> list[tuple[float, int, str, str, bytes]]:
    """This worker's share of a trace's client requests, as (offset seconds,
    connection index, Session-Id, kind, message), in time order.

    Connections are numbered in order of first appearance; worker ``wid`` takes those
    whose number modulo ``workers`` is ``wid``, and spreads them over its own
    ``connections``.
    """
    assert path is not None
    codec = Codec(LocalIdentity("replay.invalid", "invalid"))
    services = dict(_SERVICE_OF_CONTEXT) | (contexts or {})
    order: dict[int, int] = {}
    items = []
    first: int | None = None
    with tracefile.TraceReader(path) as reader:
        for record in reader:
            if record.direction != tracefile.TO_SERVER or len(record.message) < 20:
                continue
            message = record.message
            flags = message[4]
            command = int.from_bytes(message[5:8], "big")
            if not flags & 0x80 or command in (257, 280, 282):  # answers, CER, DWR, DPR
                continue
            if first is None:
                first = record.timestamp_ns
            rank = order.setdefault(record.connection, len(order))
            if rank % workers != wid:
                continue
            kind = f"cmd{command}"
            if command == CCR:
                try:
                    decoded = codec.decode(message)
                    context = decoded.get(c.AVP_SERVICE_CONTEXT_ID) or ""
                    local = context.rpartition("@")[0].rsplit(".", 1)[-1]
                    service = services.get(context) or services.get(f"{local}@3gpp.org", "other")
                    kind = kind_of(service, decoded.get(c.AVP_CC_REQUEST_TYPE) or 0)
                except (DiameterError, CodecError):
                    kind = "ccr_undecodable"
            items.append(
                (
                    (record.timestamp_ns - first) / 1e9,
                    (rank // workers) % max(connections, 1),
                    tracefile.session_id(message) or "",
                    kind,
                    message,
                )
            )
    items.sort(key=lambda item: item[0])
    return items
