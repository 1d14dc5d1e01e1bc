"""Latency and outcome statistics: recorded in each worker, merged in the parent.

Latencies are integer microseconds in HDR histograms (``hdrhistogram`` package,
1 us .. 60 s, 3 significant digits). Recording straight into an ``HdrHistogram`` costs
about 6 us per value in pure Python, so a worker counts values in plain dicts, keyed by
the value rounded down to the histogram's own resolution (:func:`quantize`, so nothing
is lost and a dict holds at most ~33,000 keys), and builds the histograms at the end
(:meth:`Recorder.final`). They cross process boundaries in their standard compressed
encoding (``HdrHistogram.encode``) and the parent adds them up. The per-second
snapshots carry that second's counts as a dict instead (:func:`dict_summary`).

Two latencies are kept per request kind:

* ``latency``: from the request's *scheduled* send time to its answer. This is the
  open-loop figure, corrected for coordinated omission: when the generator or the
  server falls behind, the wait counts.
* ``service``: from the actual send to the answer (what a closed-loop tool reports).

Requests sent during the warm-up before the measured window (``warmup``) and while
draining the sessions after it (``drain``) are counted apart and stay out of the
histograms.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000
DIGITS = 3
PERCENTILES = {50.0: "p50_ms", 90.0: "p90_ms", 99.0: "p99_ms", 99.9: "p99_9_ms"}

__all__ = [
    "Recorder",
    "dict_summary",
    "quantize",
    "Totals",
    "decode_histogram",
    "encode_histogram",
    "histogram_summary",
    "new_histogram",
]


SIDES = ("warmup", "drain")


def _new_side() -> dict[str, Any]:
    return {"sent": 0, "result_codes": defaultdict(int), "timeouts": 0, "errors": defaultdict(int)}


def _plain_side(side: dict[str, Any]) -> dict[str, Any]:
    return {
        "sent": side["sent"],
        "result_codes": dict(sorted(side["result_codes"].items())),
        "timeouts": side["timeouts"],
        "errors": dict(side["errors"]),
    }


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def encode_histogram(histogram: HdrHistogram) -> bytes:
    encoded: bytes = histogram.encode()  # hdrhistogram has no type information
    return encoded


def decode_histogram(data: bytes | str) -> HdrHistogram:
    """An encoded histogram (bytes or its base64 text, as in the JSON report)."""
    if isinstance(data, str):
        data = data.encode("ascii")
    return HdrHistogram.decode(data)


def quantize(us: int) -> int:
    """``us`` rounded down to the resolution of a 3-significant-digit HDR histogram
    (2048 sub-buckets: exact below 2048, then steps of 2, 4, 8, ...), clamped to the
    histogram's range."""
    if us < 2048:
        return us if us >= LOWEST_US else LOWEST_US
    if us > HIGHEST_US:
        us = HIGHEST_US
    shift = us.bit_length() - 11
    return (us >> shift) << shift


def dict_summary(values: dict[int, int]) -> dict[str, Any]:
    """count, p50, p99 and max (ms) of a {microseconds: count} dict."""
    total = sum(values.values())
    if not total:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    keys = sorted(values)
    out: dict[str, Any] = {"count": total}
    targets = [("p50_ms", 0.50 * total), ("p99_ms", 0.99 * total)]
    seen = 0
    index = 0
    for key in keys:
        seen += values[key]
        while index < len(targets) and seen >= targets[index][1]:
            out[targets[index][0]] = round(key / 1000, 3)
            index += 1
        if index == len(targets):
            break
    out["max_ms"] = round(keys[-1] / 1000, 3)
    return out


def _fold(histogram: HdrHistogram, values: dict[int, int]) -> None:
    record = histogram.record_value
    for value, count in values.items():
        record(min(max(value, LOWEST_US), HIGHEST_US), count)


def histogram_summary(histogram: HdrHistogram | None) -> dict[str, Any]:
    """Count, mean, p50/p90/p99/p99.9 and max of a histogram, in milliseconds."""
    if histogram is None or histogram.get_total_count() == 0:
        return {"count": 0, "mean_ms": None, "p50_ms": None, "p90_ms": None, "p99_ms": None,
                "p99_9_ms": None, "max_ms": None}  # fmt: skip
    values = histogram.get_percentile_to_value_dict(list(PERCENTILES))
    out: dict[str, Any] = {
        "count": histogram.get_total_count(),
        "mean_ms": round(histogram.get_mean_value() / 1000, 3),
    }
    for p, label in PERCENTILES.items():
        out[label] = round(values[p] / 1000, 3)
    out["max_ms"] = round(histogram.get_max_value() / 1000, 3)
    return out


class Recorder:
    """What one worker saw: per kind sent, answers by Result-Code, timeouts, errors,
    latency histograms; and a series of per-second snapshots."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = defaultdict(int)
        self.result_codes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.timeouts: dict[str, int] = defaultdict(int)
        self.errors: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.latency: dict[str, HdrHistogram] = {}
        self.service: dict[str, HdrHistogram] = {}
        self.lag = new_histogram()
        self.sides: dict[str, dict[str, Any]] = {name: _new_side() for name in SIDES}
        self._latency: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self._service: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self._lag: dict[int, int] = defaultdict(int)
        self._second = self._new_second()

    @staticmethod
    def _new_second() -> dict[str, Any]:
        return {"sent": 0, "answered": 0, "ok": 0, "failed": 0, "timeouts": 0, "errors": 0,
                "lag_max_us": 0, "warm": False, "latency": defaultdict(int)}  # fmt: skip

    # hot path ---------------------------------------------------------------------

    def on_sent(self, kind: str, lag_us: int) -> None:
        self.sent[kind] += 1
        second = self._second
        second["sent"] += 1
        self._lag[quantize(lag_us)] += 1
        if lag_us > second["lag_max_us"]:
            second["lag_max_us"] = lag_us

    def on_answer(self, kind: str, result_code: int, latency_us: int, service_us: int) -> None:
        self.result_codes[kind][str(result_code)] += 1
        latency_us = quantize(latency_us)
        self._latency[kind][latency_us] += 1
        self._service[kind][quantize(service_us)] += 1
        second = self._second
        second["answered"] += 1
        if 2000 <= result_code < 3000:
            second["ok"] += 1
        else:
            second["failed"] += 1
        second["latency"][latency_us] += 1

    def on_timeout(self, kind: str) -> None:
        self.timeouts[kind] += 1
        self._second["timeouts"] += 1

    def on_error(self, kind: str, error: str) -> None:
        self.errors[kind][error] += 1
        self._second["errors"] += 1

    def on_side_sent(self, side: str) -> None:
        self.sides[side]["sent"] += 1
        if side == "warmup":
            self._second["sent"] += 1
            self._second["warm"] = True

    def on_side_outcome(
        self, side: str, result_code: int | None, error: str | None, latency_us: int = 0
    ) -> None:
        """The outcome of a warm-up or drain request (kept out of the histograms; warm-up
        answers still show in the per-second series)."""
        counts = self.sides[side]
        if result_code is not None:
            counts["result_codes"][str(result_code)] += 1
        elif error == "timeout":
            counts["timeouts"] += 1
        else:
            counts["errors"][error or "error"] += 1
        if side == "warmup":
            second = self._second
            if result_code is None:
                second["timeouts" if error == "timeout" else "errors"] += 1
                return
            second["answered"] += 1
            second["ok" if 2000 <= result_code < 3000 else "failed"] += 1
            second["latency"][quantize(latency_us)] += 1

    # once a second ----------------------------------------------------------------

    def flush_second(self) -> dict[str, Any]:
        """The second's snapshot (its latencies as a {us: count} dict); starts the next."""
        second, self._second = self._second, self._new_second()
        second["latency"] = dict(second["latency"])
        return second

    def _build(self) -> None:
        for kind, values in self._latency.items():
            _fold(self.latency.setdefault(kind, new_histogram()), values)
        for kind, values in self._service.items():
            _fold(self.service.setdefault(kind, new_histogram()), values)
        _fold(self.lag, self._lag)
        self._latency.clear()
        self._service.clear()
        self._lag.clear()

    def final(self) -> dict[str, Any]:
        """Everything, histograms encoded, ready to cross a process boundary."""
        self._build()
        return {
            "sent": dict(self.sent),
            "result_codes": {k: dict(v) for k, v in self.result_codes.items()},
            "timeouts": dict(self.timeouts),
            "errors": {k: dict(v) for k, v in self.errors.items()},
            "latency": {k: encode_histogram(h) for k, h in self.latency.items()},
            "service": {k: encode_histogram(h) for k, h in self.service.items()},
            "lag": encode_histogram(self.lag),
            "sides": {name: _plain_side(side) for name, side in self.sides.items()},
        }


@dataclass
class Totals:
    """The merge of every worker's :meth:`Recorder.final`."""

    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    result_codes: dict[str, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    timeouts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: dict[str, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    latency: dict[str, HdrHistogram] = field(default_factory=dict)
    service: dict[str, HdrHistogram] = field(default_factory=dict)
    lag: HdrHistogram = field(default_factory=new_histogram)
    sides: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {name: _new_side() for name in SIDES}
    )

    def side(self, name: str) -> dict[str, Any]:
        """The warm-up or drain counts, JSON-ready."""
        return _plain_side(self.sides.get(name) or _new_side())

    def add(self, final: dict[str, Any]) -> None:
        for kind, n in final["sent"].items():
            self.sent[kind] += n
        for kind, codes in final["result_codes"].items():
            for code, n in codes.items():
                self.result_codes[kind][code] += n
        for kind, n in final["timeouts"].items():
            self.timeouts[kind] += n
        for kind, errors in final["errors"].items():
            for name, n in errors.items():
                self.errors[kind][name] += n
        for name in ("latency", "service"):
            target = getattr(self, name)
            for kind, data in final[name].items():
                histogram = decode_histogram(data)
                if kind in target:
                    target[kind].add(histogram)
                else:
                    target[kind] = histogram
        self.lag.add(decode_histogram(final["lag"]))
        for name, side in final["sides"].items():
            mine = self.sides.setdefault(name, _new_side())
            mine["sent"] += side["sent"]
            mine["timeouts"] += side["timeouts"]
            for code, n in side["result_codes"].items():
                mine["result_codes"][code] += n
            for error, n in side["errors"].items():
                mine["errors"][error] += n

    @property
    def kinds(self) -> list[str]:
        seen = set(self.sent) | set(self.result_codes) | set(self.timeouts) | set(self.errors)
        return sorted(seen)

    def all_latency(self, service_time: bool = False) -> HdrHistogram:
        merged = new_histogram()
        for histogram in (self.service if service_time else self.latency).values():
            merged.add(histogram)
        return merged

    def count_answers(self) -> int:
        return sum(sum(codes.values()) for codes in self.result_codes.values())

    def count_timeouts(self) -> int:
        return sum(self.timeouts.values())

    def count_errors(self) -> int:
        return sum(sum(errors.values()) for errors in self.errors.values())

    def codes(self) -> dict[str, int]:
        merged: dict[str, int] = defaultdict(int)
        for codes in self.result_codes.values():
            for code, n in codes.items():
                merged[code] += n
        return dict(sorted(merged.items()))

    def unexpected_answers(self, accepted: set[str]) -> int:
        return sum(n for code, n in self.codes().items() if code not in accepted)
