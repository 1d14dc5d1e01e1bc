"""The human summary of a run (or a replay, or a --find-max search) and the verdict.

The JSON report is the result dict of :func:`loadtest.runner.run_load` plus what the
command added (``money_check``, ``find_max``); docs/loadtest.md lists its fields.
"""

from __future__ import annotations

from typing import Any

__all__ = ["failures", "summary_lines", "find_max_lines"]

_COLUMNS = ("p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _codes(codes: dict[str, int]) -> str:
    return " ".join(f"{code}:{n}" for code, n in sorted(codes.items())) or "-"


def failures(result: dict[str, Any], accepted: set[str]) -> dict[str, int]:
    """What makes a run fail: timeouts, transport errors, answers with a Result-Code
    not in ``accepted`` (in the measured window, the warm-up and the drain)."""
    timeouts, errors = result["timeouts"], result["errors"]
    unexpected = sum(n for code, n in result["result_codes"].items() if code not in accepted)
    for name in ("warmup", "drain"):
        side = result.get(name) or {}
        timeouts += side.get("timeouts", 0)
        errors += sum(side.get("errors", {}).values())
        codes = side.get("result_codes", {})
        unexpected += sum(n for code, n in codes.items() if code not in accepted)
    return {"timeouts": timeouts, "errors": errors, "unexpected_result_codes": unexpected}


def summary_lines(result: dict[str, Any], accepted: set[str]) -> list[str]:
    config = result["config"]
    lines = []
    target = result["target"]
    if config.get("trace"):
        head = (
            f"replay of {config['trace']} at speed {config['speed']:g} x{config['loops']} "
            f"against {target['host']}:{target['port']}"
        )
    else:
        scenario = config.get("scenario") or {}
        mix = scenario.get("mix", {})
        total = sum(mix.values()) or 1
        shares = " / ".join(f"{name} {100 * w / total:.0f}%" for name, w in mix.items() if w)
        head = (
            f"run against {target['host']}:{target['port']}: scenario {scenario.get('name')} "
            f"({shares}), {config['duration']:g} s"
            + (f" after {config['warmup']:g} s of warm-up" if config.get("warmup") else "")
        )
    lines.append(head)
    lines.append(
        f"  {config['workers']} worker(s), {config['connections']} connection(s), "
        f"{config['arrival']} arrivals, run tag {config['run_tag']}"
        + ("  [interrupted]" if result.get("interrupted") else "")
    )
    target_rate = result.get("target_rate")
    lines.append(
        "rate: "
        + (f"target {target_rate:g}/s, " if target_rate else "")
        + f"sent {result['achieved_rate']:g}/s, answered {result['answered_rate']:g}/s "
        f"({result['requests']} requests, {result['sessions']} sessions)"
    )
    lines.append(
        "latency from the scheduled send time, ms (open loop, coordinated omission corrected):"
    )
    header = f"  {'kind':<16}{'count':>9}{'p50':>9}{'p90':>9}{'p99':>9}{'p99.9':>9}{'max':>9}  result codes"
    lines.append(header)
    for kind, entry in result["by_kind"].items():
        lat = entry["latency"]
        extra = []
        if entry["timeouts"]:
            extra.append(f"timeouts:{entry['timeouts']}")
        extra += [f"{name}:{n}" for name, n in entry["errors"].items()]
        lines.append(
            f"  {kind:<16}{entry['sent']:>9}"
            + "".join(f"{_ms(lat[c]):>9}" for c in _COLUMNS)
            + f"  {_codes(entry['result_codes'])}"
            + (f" {' '.join(extra)}" if extra else "")
        )
    lat = result["latency"]
    lines.append(
        f"  {'all':<16}{result['requests']:>9}"
        + "".join(f"{_ms(lat[c]):>9}" for c in _COLUMNS)
        + f"  {_codes(result['result_codes'])}"
    )
    service, lag = result["service_time"], result["send_lag"]
    lines.append(
        f"service time (send to answer), ms: p50 {_ms(service['p50_ms'])} p99 "
        f"{_ms(service['p99_ms'])} max {_ms(service['max_ms'])}; send lag behind schedule: "
        f"p50 {_ms(lag['p50_ms'])} p99 {_ms(lag['p99_ms'])} max {_ms(lag['max_ms'])}"
    )
    warmup = result.get("warmup") or {}
    if warmup.get("sent"):
        lines.append(
            f"warm-up: {warmup['seconds']:g} s, {warmup['sent']} requests left out of the "
            f"figures ({_codes(warmup['result_codes'])}"
            + (f", timeouts {warmup['timeouts']}" if warmup["timeouts"] else "")
            + (f", errors {_codes(warmup['errors'])}" if warmup["errors"] else "")
            + ")"
        )
    drain = result["drain"]
    if drain["sent"]:
        lines.append(
            f"drain: {drain['sent']} CCR-T for open sessions ({_codes(drain['result_codes'])}"
            + (f", timeouts {drain['timeouts']}" if drain["timeouts"] else "")
            + (f", errors {_codes(drain['errors'])}" if drain["errors"] else "")
            + ")"
        )
    fail = failures(result, accepted)
    lines.append(
        f"timeouts {fail['timeouts']}, errors {fail['errors']}"
        + (f" ({_codes(result['error_kinds'])})" if result["error_kinds"] else "")
        + f", answers with other Result-Codes than {','.join(sorted(accepted))}: "
        f"{fail['unexpected_result_codes']}"
    )
    for proc in result.get("watched") or []:
        if proc["mean_percent"] is not None:
            lines.append(
                f"watched process {proc['pid']} ({proc['name']}): CPU mean "
                f"{proc['mean_percent']:.0f}%, max {proc['max_percent']:.0f}% of a core "
                "during the measured window"
            )
    generator = result["generator"]
    cpu = "/".join(f"{c:.0f}%" for c in generator["cpu_percent_max"])
    lines.append(
        f"generator: CPU max per worker {cpu}, max lag behind schedule "
        f"{generator['lag_max_ms']:.1f} ms: "
        + ("SATURATED or starved (see warnings)" if generator["saturated"] else "kept up")
    )
    for warning in generator["warnings"]:
        lines.append(
            f"  warning: {warning['message']} (from second {warning['first_second']}, "
            f"{warning['seconds']} s)"
        )
    return lines


def find_max_lines(search: dict[str, Any]) -> list[str]:
    lines = [
        f"find-max: highest rate holding p99 <= {search['p99_ms']:g} ms with no errors: "
        + (f"{search['max_rate']:g} CCR/s" if search["max_rate"] else "none of the steps held")
    ]
    lines.append(
        f"  {'step':>4} {'target/s':>9} {'sent/s':>9} {'answered/s':>10} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'p99.9 ms':>9} {'fail':>6}  verdict"
    )
    for i, step in enumerate(search["steps"], 1):
        lines.append(
            f"  {i:>4} {step['rate']:>9g} {step['achieved_rate']:>9g} {step['answered_rate']:>10g} "
            f"{_ms(step['p50_ms']):>8} {_ms(step['p99_ms']):>8} {_ms(step['p99_9_ms']):>9} "
            f"{step['failures']:>6}  {'holds' if step['holds'] else 'fails: ' + step['why']}"
            + ("  (generator warnings)" if step["saturated"] else "")
        )
    return lines
