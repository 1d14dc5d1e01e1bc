"""The parent process of a run: starts the workers, starts them together, shows the
live progress line, watches the generator for saturation and merges the results.

See :mod:`loadtest.worker` for what a worker does and the messages they exchange.
"""

from __future__ import annotations

import multiprocessing
import queue
import secrets
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TextIO

from .procwatch import ProcessWatch
from .scenario import Scenario
from .stats import Totals, dict_summary, histogram_summary
from .worker import ControlQueue, WorkerConfig, worker_main

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

__all__ = ["LoadTestError", "RunConfig", "run_load"]


class LoadTestError(RuntimeError):
    """The run could not be done (connection refused, a worker died, ...)."""


@dataclass(frozen=True)
class RunConfig:
    host: str
    port: int
    rate: float
    duration: float
    connections: int = 2
    workers: int = 1
    timeout: float = 5.0
    arrival: str = "uniform"
    scenario: Scenario | None = None
    run_tag: str = field(default_factory=lambda: "lt" + secrets.token_hex(3))
    seed: int | None = None
    origin_realm: str = "loadtest.example"
    destination_realm: str | None = None
    max_lag_ms: float = 10.0
    max_cpu_percent: float = 90.0
    drain_timeout: float = 30.0
    drain: bool = True
    warmup: float = 0.0
    ready_timeout: float = 60.0
    # replay
    trace: str | None = None
    speed: float = 1.0
    loops: int = 1
    watch_pids: tuple[int, ...] = ()


def _worker_configs(config: RunConfig) -> list[WorkerConfig]:
    workers = config.workers
    nonce = secrets.token_hex(2)
    if config.connections < workers:
        raise LoadTestError(
            f"--connections ({config.connections}) must be at least --workers ({workers})"
        )
    subscribers = config.scenario.subscribers.count if config.scenario else 1
    out = []
    for wid in range(workers):
        share = config.connections // workers + (1 if wid < config.connections % workers else 0)
        out.append(
            WorkerConfig(
                wid=wid,
                workers=workers,
                host=config.host,
                port=config.port,
                connections=share,
                rate=config.rate / workers,
                duration=config.duration,
                timeout=config.timeout,
                arrival=config.arrival,
                scenario=config.scenario,
                subscribers=(wid % subscribers, subscribers, workers)
                if subscribers >= workers
                else (0, subscribers, 1),
                run_tag=config.run_tag,
                nonce=nonce,
                origin_realm=config.origin_realm,
                destination_realm=config.destination_realm,
                seed=None if config.seed is None else config.seed * 1000 + wid,
                drain_timeout=config.drain_timeout,
                drain=config.drain,
                warmup=config.warmup,
                trace=config.trace,
                speed=config.speed,
                loops=config.loops,
            )
        )
    return out


class _Series:
    """Per-second snapshots of every worker, merged, plus the saturation warnings."""

    def __init__(self, config: RunConfig, workers: int, out: TextIO | None) -> None:
        self.config = config
        self.workers = workers
        self.out = out
        self.seconds: dict[int, dict[str, Any]] = {}
        self.reported: dict[int, int] = defaultdict(lambda: -1)
        self.printed = -1
        self.warnings: dict[str, dict[str, Any]] = {}
        self.cpu_max: dict[int, float] = defaultdict(float)
        self.lag_max_ms = 0.0
        self.started = time.monotonic()
        self.expected = config.warmup + config.duration
        self.watch: ProcessWatch | None = None
        self._tty = bool(out is not None and hasattr(out, "isatty") and out.isatty())
        self._line_open = False

    def add(self, wid: int, snap: dict[str, Any]) -> None:
        second = snap["second"]
        entry = self.seconds.get(second)
        if entry is None:
            entry = self.seconds[second] = {
                "second": second,
                "sent": 0, "answered": 0, "ok": 0, "failed": 0, "timeouts": 0, "errors": 0,
                "lag_max_ms": 0.0, "in_flight": 0, "open_sessions": 0,
                "cpu_percent": {}, "phase": snap["phase"], "_lat": defaultdict(int),
            }  # fmt: skip
        for key in ("sent", "answered", "ok", "failed", "timeouts", "errors"):
            entry[key] += snap[key]
        lag_ms = snap["lag_max_us"] / 1000
        entry["lag_max_ms"] = max(entry["lag_max_ms"], round(lag_ms, 3))
        entry["in_flight"] += snap["in_flight"]
        entry["open_sessions"] += snap["open_sessions"]
        entry["cpu_percent"][wid] = snap["cpu_percent"]
        if snap["phase"] != "run":
            entry["phase"] = snap["phase"]
        latencies = entry["_lat"]
        for value, count in snap["latency"].items():
            latencies[value] += count
        self._check(wid, second, snap, lag_ms)
        if not snap.get("last"):
            self.reported[wid] = max(self.reported[wid], second)
        self._print_ready()

    def _check(self, wid: int, second: int, snap: dict[str, Any], lag_ms: float) -> None:
        cpu = snap["cpu_percent"]
        self.cpu_max[wid] = max(self.cpu_max[wid], cpu)
        in_run = snap["phase"] == "run"
        if in_run:
            self.lag_max_ms = max(self.lag_max_ms, lag_ms)
        if in_run and cpu > self.config.max_cpu_percent and not snap.get("last"):
            self._warn(
                f"cpu-w{wid}",
                f"worker {wid} used {cpu:.0f}% of a CPU (limit {self.config.max_cpu_percent:.0f}%)"
                ": the generator may be the bottleneck; add --workers or lower the rate",
                second,
            )
        if in_run and lag_ms > self.config.max_lag_ms:
            if cpu > self.config.max_cpu_percent:
                cause = "the generator is saturated"
            else:
                cause = (
                    "the worker got too little CPU (other processes on the same cores, "
                    "e.g. the OCS and Redis)"
                )
            self._warn(
                f"lag-w{wid}",
                f"worker {wid} fell {lag_ms:.1f} ms behind its schedule at {cpu:.0f}% CPU "
                f"(limit {self.config.max_lag_ms:g} ms): {cause}",
                second,
            )

    def _warn(self, key: str, text: str, second: int) -> None:
        warning = self.warnings.get(key)
        if warning is None:
            self.warnings[key] = {"message": text, "first_second": second, "seconds": 1}
            self._emit(f"warning: second {second}: {text}", newline=True)
        else:
            warning["seconds"] += 1

    def _print_ready(self) -> None:
        if len(self.reported) < self.workers:
            return
        complete = min(self.reported.values())
        while self.printed < complete:
            self.printed += 1
            entry = self.seconds.get(self.printed)
            if entry is not None and (self._tty or self.printed % 5 == 4):
                self._emit(self.progress_line(entry))

    def progress_line(self, entry: dict[str, Any]) -> str:
        p99 = dict_summary(entry["_lat"])["p99_ms"] or 0.0
        cpu = "/".join(f"{entry['cpu_percent'][w]:.0f}" for w in sorted(entry["cpu_percent"]))
        phase = "" if entry["phase"] == "run" else f" [{entry['phase']}]"
        return (
            f"[{entry['second'] + 1:>4}s/{self.expected:.0f}s]{phase} "
            + (f"target {self.config.rate:g}/s " if self.config.trace is None else "")
            + f"sent {entry['sent']}/s "
            f"answered {entry['answered']}/s p99 {p99:.2f} ms "
            f"failed {entry['failed']} timeouts {entry['timeouts']} errors {entry['errors']} "
            f"in-flight {entry['in_flight']} sessions {entry['open_sessions']} "
            f"lag {entry['lag_max_ms']:.1f} ms cpu {cpu}%"
        )

    def _emit(self, text: str, newline: bool = False) -> None:
        out = self.out
        if out is None:
            return
        if self._tty and not newline:
            out.write("\r\x1b[2K" + text)
            self._line_open = True
        else:
            if self._line_open:
                out.write("\n")
                self._line_open = False
            out.write(text + "\n")
        out.flush()

    def finish(self) -> None:
        if self._line_open and self.out is not None:
            self.out.write("\n")
            self.out.flush()
            self._line_open = False

    def to_json(self) -> list[dict[str, Any]]:
        out = []
        for second in sorted(self.seconds):
            entry = dict(self.seconds[second])
            summary = dict_summary(entry.pop("_lat"))
            entry.update(
                p50_ms=summary["p50_ms"], p99_ms=summary["p99_ms"], max_ms=summary["max_ms"]
            )
            entry["cpu_percent"] = [entry["cpu_percent"][w] for w in sorted(entry["cpu_percent"])]
            if self.watch is not None and self.watch.pids:
                sample = self.watch.samples.get(second, {})
                entry["watched_cpu_percent"] = {str(pid): v for pid, v in sample.items()}
            out.append(entry)
        return out


def run_load(config: RunConfig, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    """Run the workers and return the merged result (see :mod:`loadtest.report`)."""
    configs = _worker_configs(config)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    controls = [context.Queue() for _ in configs]
    processes = [
        context.Process(
            target=worker_main, args=(wc, controls[wc.wid], results), daemon=True, name=f"w{wc.wid}"
        )
        for wc in configs
    ]
    for process in processes:
        process.start()
    series = _Series(config, len(configs), progress)
    watch = ProcessWatch(list(config.watch_pids))
    series.watch = watch
    finals: dict[int, dict[str, Any]] = {}
    ready: dict[int, dict[str, Any]] = {}
    failures: list[str] = []
    interrupted = False
    try:
        deadline = time.monotonic() + config.ready_timeout
        while len(ready) < len(configs):
            message = _get(results, processes, deadline, "connect")
            if message[0] == "ready":
                ready[message[1]] = message[2]
            elif message[0] == "failed":
                raise LoadTestError(f"worker {message[1]}: {message[2]}")
        t0 = time.time() + 0.3
        for control in controls:
            control.put(("start", t0))
        started = time.monotonic()
        watch.start()
        next_sample = 0
        limit = config.warmup + config.duration + config.drain_timeout + 2 * config.timeout + 30.0
        if config.trace is not None:
            span = max(info.get("span", 0.0) for info in ready.values())
            limit += (span + 1.0) * config.loops
            series.expected = span * config.loops + config.loops - 1
        deadline = started + limit
        while len(finals) + len(failures) < len(configs):
            while time.time() >= t0 + next_sample + 1:
                watch.sample(next_sample)
                next_sample += 1
            try:
                message = _get(results, processes, deadline, "finish", finals)
            except KeyboardInterrupt:
                if interrupted:
                    raise
                interrupted = True
                series._emit("interrupted: stopping the timeline and draining", newline=True)
                for control in controls:
                    control.put(("stop",))
                continue
            if message[0] == "tick":
                series.add(message[1], message[2])
            elif message[0] == "done":
                finals[message[1]] = message[2]
            elif message[0] == "failed":
                failures.append(f"worker {message[1]}: {message[2]}")
        series.finish()
    finally:
        for control in controls:
            control.put(("stop",))
        for process in processes:
            process.join(5.0)
            if process.is_alive():
                process.terminate()
                process.join(2.0)
    if failures:
        raise LoadTestError("; ".join(failures))
    totals = Totals()
    for final in finals.values():
        totals.add(final)
    elapsed_window = config.duration
    if config.trace is not None or any(final["stopped_early"] for final in finals.values()):
        elapsed_window = max(final["timeline_seconds"] for final in finals.values())
    elapsed_window = max(elapsed_window, 1e-3)
    return _result(config, totals, series, finals, ready, elapsed_window, interrupted)


def _get(
    results: ControlQueue,
    processes: Sequence[BaseProcess],
    deadline: float,
    what: str,
    finals: dict[int, dict[str, Any]] | None = None,
) -> tuple[Any, ...]:
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LoadTestError(f"workers did not {what} in time")
        try:
            return results.get(timeout=min(remaining, 1.0))
        except queue.Empty:
            dead = [
                p.name
                for i, p in enumerate(processes)
                if not p.is_alive() and (finals is None or i not in finals)
            ]
            if dead:
                # one more look: its last message may still be in the pipe
                try:
                    return results.get(timeout=1.0)
                except queue.Empty:
                    raise LoadTestError(f"worker process(es) {', '.join(dead)} died") from None


def _result(
    config: RunConfig,
    totals: Totals,
    series: _Series,
    finals: dict[int, dict[str, Any]],
    ready: dict[int, dict[str, Any]],
    window: float,
    interrupted: bool,
) -> dict[str, Any]:
    window_sent = sum(f["window_sent"] for f in finals.values())
    window_answered = sum(f["window_answered"] for f in finals.values())
    kinds = totals.kinds
    per_kind = {}
    for kind in kinds:
        per_kind[kind] = {
            "sent": totals.sent.get(kind, 0),
            "result_codes": dict(sorted(totals.result_codes.get(kind, {}).items())),
            "timeouts": totals.timeouts.get(kind, 0),
            "errors": dict(totals.errors.get(kind, {})),
            "latency": histogram_summary(totals.latency.get(kind)),
            "service_time": histogram_summary(totals.service.get(kind)),
        }
    warnings = list(series.warnings.values())
    return {
        "target": {
            "host": config.host,
            "port": config.port,
        },
        "config": {
            "rate": config.rate,
            "duration": config.duration,
            "warmup": config.warmup,
            "connections": config.connections,
            "workers": config.workers,
            "timeout": config.timeout,
            "arrival": config.arrival,
            "run_tag": config.run_tag,
            "trace": config.trace,
            "speed": config.speed if config.trace else None,
            "loops": config.loops if config.trace else None,
            "scenario": config.scenario.to_json() if config.scenario else None,
        },
        "target_rate": config.rate if config.trace is None else None,
        "achieved_rate": round(window_sent / window, 1),
        "answered_rate": round(window_answered / window, 1),
        "window_seconds": round(window, 3),
        "interrupted": interrupted,
        "requests": window_sent,
        "answers": totals.count_answers(),
        "sessions": sum(f["sessions"] for f in finals.values()),
        "result_codes": totals.codes(),
        "timeouts": totals.count_timeouts(),
        "errors": totals.count_errors(),
        "error_kinds": _error_kinds(totals),
        "latency": histogram_summary(totals.all_latency()),
        "service_time": histogram_summary(totals.all_latency(service_time=True)),
        "send_lag": histogram_summary(totals.lag),
        "by_kind": per_kind,
        "warmup": totals.side("warmup") | {"seconds": config.warmup},
        "drain": totals.side("drain"),
        "generator": {
            "workers": config.workers,
            "cpu_percent_max": [series.cpu_max[w] for w in sorted(series.cpu_max)],
            "lag_max_ms": round(series.lag_max_ms, 3),
            "saturated": bool(warnings),
            "warnings": warnings,
            "pids": [finals[w]["pid"] for w in sorted(finals)],
        },
        "watched": series.watch.summary(
            {s for s, e in series.seconds.items() if e["phase"] == "run"}
        )
        if series.watch is not None
        else [],
        "peer": ready.get(0, {}),
        "series": series.to_json(),
        "histograms": {
            "latency": {
                kind: h.encode().decode("ascii") for kind, h in sorted(totals.latency.items())
            },
            "service_time": {
                kind: h.encode().decode("ascii") for kind, h in sorted(totals.service.items())
            },
        },
    }


def _error_kinds(totals: Totals) -> dict[str, int]:
    merged: dict[str, int] = defaultdict(int)
    for errors in totals.errors.values():
        for name, n in errors.items():
            merged[name] += n
    return dict(merged)


def with_rate(config: RunConfig, rate: float, duration: float | None = None) -> RunConfig:
    return replace(config, rate=rate, duration=duration or config.duration)
