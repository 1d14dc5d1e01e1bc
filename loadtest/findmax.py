"""``--find-max``: the highest rate that holds a p99 bound with no errors.

A few short steps: the rate doubles from ``start`` until a step fails (or ``limit`` is
reached), then bisects between the best step that held and the lowest that failed,
until they are within ``tolerance`` of each other or the step budget is spent. A step
holds when its p99 (from the scheduled send time) is at most the bound, nothing timed
out or failed (transport errors, Result-Codes other than the accepted ones) and the
answered rate reached 95 % of the target.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .report import failures

__all__ = ["find_max", "step_verdict"]

MIN_ANSWERED_SHARE = 0.95


def step_verdict(
    result: dict[str, Any], rate: float, p99_ms: float, accepted: set[str]
) -> dict[str, Any]:
    fail = failures(result, accepted)
    lat = result["latency"]
    why = []
    if lat["p99_ms"] is None or lat["p99_ms"] > p99_ms:
        why.append(f"p99 {lat['p99_ms']} ms > {p99_ms:g} ms")
    if fail["timeouts"]:
        why.append(f"{fail['timeouts']} timeouts")
    if fail["errors"]:
        why.append(f"{fail['errors']} errors")
    if fail["unexpected_result_codes"]:
        why.append(f"{fail['unexpected_result_codes']} unexpected Result-Codes")
    if result["answered_rate"] < MIN_ANSWERED_SHARE * rate:
        why.append(f"answered {result['answered_rate']:g}/s < 95% of {rate:g}/s")
    return {
        "rate": rate,
        "achieved_rate": result["achieved_rate"],
        "answered_rate": result["answered_rate"],
        "p50_ms": lat["p50_ms"],
        "p99_ms": lat["p99_ms"],
        "p99_9_ms": lat["p99_9_ms"],
        "max_ms": lat["max_ms"],
        "failures": sum(fail.values()),
        "saturated": result["generator"]["saturated"],
        "holds": not why,
        "why": "; ".join(why),
    }


def find_max(
    run_step: Callable[[float], dict[str, Any]],
    p99_ms: float,
    accepted: set[str],
    start: float = 500.0,
    limit: float = 100_000.0,
    steps: int = 8,
    tolerance: float = 0.05,
) -> dict[str, Any]:
    """Search with ``run_step(rate) -> run result``; the search record (JSON-ready)."""
    record: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    good: float | None = None
    bad: float | None = None

    def step(rate: float) -> bool:
        result = run_step(rate)
        verdict = step_verdict(result, rate, p99_ms, accepted)
        record.append(verdict)
        results.append(result)
        return bool(verdict["holds"])

    rate = min(start, limit)
    while len(record) < steps:
        if step(rate):
            good = rate
            if rate >= limit:
                break
            rate = min(rate * 2, limit)
        else:
            bad = rate
            break
    if good is None and bad is not None:
        low = 0.0
        while len(record) < steps and bad - low > tolerance * bad:
            rate = round((low + bad) / 2, 1)
            if step(rate):
                good = low = rate
            else:
                bad = rate
    while good is not None and bad is not None and len(record) < steps:
        if (bad - good) <= tolerance * good:
            break
        rate = round((good + bad) / 2, 1)
        if step(rate):
            good = rate
        else:
            bad = rate
    return {
        "p99_ms": p99_ms,
        "accepted_result_codes": sorted(accepted),
        "max_rate": good,
        "lowest_failing_rate": bad,
        "steps": record,
        "results": results,
    }
