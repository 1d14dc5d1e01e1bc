"""--find-max: doubling then bisection, on a fake server with a known capacity."""

from __future__ import annotations

from loadtest.findmax import find_max


def fake_result(rate: float, capacity: float) -> dict:
    over = rate > capacity
    return {
        "latency": {"p50_ms": 1.0, "p99_ms": 50.0 if over else 2.0, "p99_9_ms": 3.0, "max_ms": 9.0},
        "achieved_rate": rate,
        "answered_rate": rate,
        "result_codes": {"2001": 100},
        "timeouts": 0,
        "errors": 0,
        "drain": {"result_codes": {}, "timeouts": 0, "errors": {}},
        "generator": {"saturated": False},
    }


def test_doubles_then_bisects_to_the_capacity():
    rates = []

    def step(rate):
        rates.append(rate)
        return fake_result(rate, 3000)

    search = find_max(step, p99_ms=10, accepted={"2001"}, start=500, steps=10)
    assert rates[:4] == [500, 1000, 2000, 4000]
    assert 2850 <= search["max_rate"] <= 3000
    assert search["lowest_failing_rate"] > 3000
    assert len(search["steps"]) <= 10
    assert search["steps"][3]["why"].startswith("p99 50.0 ms > 10 ms")


def test_a_failing_first_step_searches_downwards():
    search = find_max(
        lambda r: fake_result(r, 300), p99_ms=10, accepted={"2001"}, start=1000, steps=8
    )
    assert search["max_rate"] is not None and 250 <= search["max_rate"] <= 300


def test_errors_fail_a_step_even_with_a_good_p99():
    def step(rate):
        result = fake_result(rate, 10**9)
        result["result_codes"] = {"2001": 90, "3004": 10}
        return result

    search = find_max(step, p99_ms=10, accepted={"2001"}, start=100, steps=3)
    assert search["max_rate"] is None
    assert "unexpected Result-Codes" in search["steps"][0]["why"]


def test_stops_at_the_limit():
    search = find_max(
        lambda r: fake_result(r, 10**9),
        p99_ms=10,
        accepted={"2001"},
        start=100,
        limit=400,
        steps=10,
    )
    assert search["max_rate"] == 400 and len(search["steps"]) == 3
