"""CPU use of other processes during a run (``--watch-pid``), read from ``/proc``.

On a machine the OCS shares with its Redis and the load generator, the OCS's CPU use
says whether it was the bottleneck. The parent samples each watched process and its
direct children (e.g. the embedded redis-server) once a second of the run; the report
gives the per-second series and the mean and maximum per process. Linux only; elsewhere
the watch reports nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

__all__ = ["ProcessWatch"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            found += [int(child) for child in text]
    except OSError:
        return []
    return sorted(set(found))


class ProcessWatch:
    def __init__(self, pids: list[int]) -> None:
        self.pids: list[int] = []
        for pid in pids:
            for each in (pid, *_children(pid)):
                if each not in self.pids and _cpu_seconds(each) is not None:
                    self.pids.append(each)
        self.names = {pid: _name(pid) for pid in self.pids}
        self._last: dict[int, tuple[float, float]] = {}
        self.samples: dict[int, dict[int, float]] = {}  # second -> pid -> percent

    def start(self) -> None:
        now = time.monotonic()
        for pid in self.pids:
            cpu = _cpu_seconds(pid)
            if cpu is not None:
                self._last[pid] = (now, cpu)

    def sample(self, second: int) -> None:
        now = time.monotonic()
        values = {}
        for pid in self.pids:
            cpu = _cpu_seconds(pid)
            last = self._last.get(pid)
            if cpu is None or last is None or now <= last[0]:
                continue
            values[pid] = round(100.0 * (cpu - last[1]) / (now - last[0]), 1)
            self._last[pid] = (now, cpu)
        self.samples[second] = values

    def summary(self, seconds: set[int] | None = None) -> list[dict[str, Any]]:
        """Mean and max CPU % per process over ``seconds`` (all sampled if None)."""
        out = []
        for pid in self.pids:
            values = [
                sample[pid]
                for second, sample in self.samples.items()
                if pid in sample and (seconds is None or second in seconds)
            ]
            out.append(
                {
                    "pid": pid,
                    "name": self.names.get(pid, "?"),
                    "mean_percent": round(sum(values) / len(values), 1) if values else None,
                    "max_percent": max(values) if values else None,
                }
            )
        return out
