"""run_load end to end: worker processes against an in-process Diameter server."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest

from loadtest.runner import LoadTestError, RunConfig, run_load
from loadtest.scenario import DEFAULT_SCENARIO, Range
from tests.loadtest.echo_server import EchoApplication, ThreadedServer

FAST = replace(
    DEFAULT_SCENARIO,
    data=replace(DEFAULT_SCENARIO.data, updates=Range(1, 2), think_time=Range(0.05, 0.1)),
    voice=replace(DEFAULT_SCENARIO.voice, updates=Range(1, 1), think_time=Range(0.05, 0.1)),
    subscribers=replace(DEFAULT_SCENARIO.subscribers, count=10),
)


def test_two_workers_offer_the_rate_and_the_mix_and_close_every_session():
    app = EchoApplication(grant=10**9)
    progress = io.StringIO()
    with ThreadedServer(app) as server:
        result = run_load(
            RunConfig(
                host="127.0.0.1",
                port=server.port,
                rate=200,
                duration=1.5,
                connections=3,
                workers=2,
                scenario=FAST,
                seed=3,
            ),
            progress,
        )
    assert 298 <= result["requests"] <= 300
    assert result["achieved_rate"] == pytest.approx(200, rel=0.02)
    assert result["timeouts"] == 0 and result["errors"] == 0
    assert set(result["result_codes"]) == {"2001"}
    by_kind = result["by_kind"]
    data = sum(v["sent"] for k, v in by_kind.items() if k.startswith("data"))
    voice = sum(v["sent"] for k, v in by_kind.items() if k.startswith("voice"))
    sms = by_kind["sms_event"]["sent"]
    assert abs(data - 0.7 * result["requests"]) <= 2
    assert abs(voice - 0.2 * result["requests"]) <= 2
    assert abs(sms - 0.1 * result["requests"]) <= 2
    # every session the server saw started with I (or was an event) and was closed by T
    for session_id, types in app.sessions.items():
        assert types == [4] or (types[0] == 1 and types[-1] == 3 and 3 not in types[:-1]), (
            session_id,
            types,
        )
    # two workers, three connections: three Origin-Hosts
    hosts = {m.get(264) for m in app.messages}
    assert len(hosts) == 3
    assert result["latency"]["count"] == result["answers"] == result["requests"]
    assert result["latency"]["p50_ms"] > 0
    assert sum(s["sent"] for s in result["series"]) >= result["requests"]
    assert result["generator"]["pids"] and len(result["generator"]["cpu_percent_max"]) == 2
    assert result["drain"]["timeouts"] == 0
    assert "latency" in result["histograms"]


def test_warm_up_requests_are_sent_but_left_out_of_the_figures():
    with ThreadedServer(EchoApplication(grant=10**9)) as server:
        result = run_load(
            RunConfig(
                host="127.0.0.1",
                port=server.port,
                rate=100,
                duration=1,
                warmup=0.5,
                scenario=FAST,
            ),
            None,
        )
    assert 99 <= result["requests"] <= 100
    assert result["latency"]["count"] == result["requests"]
    assert 49 <= result["warmup"]["sent"] <= 51
    assert result["warmup"]["result_codes"] == {"2001": result["warmup"]["sent"]}
    assert result["achieved_rate"] == pytest.approx(100, rel=0.03)
    assert result["series"][0]["phase"] == "warmup"


def test_runs_with_one_run_tag_never_reuse_a_session_id():
    # --find-max runs several steps with one run tag; a reused Session-Id would make the
    # OCS answer a new CCR-I from its retransmission cache
    app = EchoApplication(grant=10**9)
    config = RunConfig(host="127.0.0.1", port=0, rate=40, duration=0.5, scenario=FAST)
    with ThreadedServer(app) as server:
        config = replace(config, port=server.port)
        run_load(config, None)
        run_load(config, None)
    assert all(types.count(1) <= 1 and types.count(4) <= 1 for types in app.sessions.values())
    assert all(f";{config.run_tag};" in session for session in app.sessions)


def test_failing_answers_are_counted_by_result_code():
    app = EchoApplication(result_code=5030)
    with ThreadedServer(app) as server:
        result = run_load(
            RunConfig(host="127.0.0.1", port=server.port, rate=50, duration=1, scenario=FAST),
            None,
        )
    assert result["result_codes"] == {"5030": result["answers"]}
    # a failed CCR-I opens nothing: no CCR-U, no drain
    assert result["drain"]["sent"] == 0
    assert not any(kind.endswith("update") for kind in result["by_kind"])


def test_slow_answers_show_in_latency_from_the_schedule():
    app = EchoApplication(delay=0.05)
    with ThreadedServer(app) as server:
        result = run_load(
            RunConfig(host="127.0.0.1", port=server.port, rate=50, duration=1, scenario=FAST),
            None,
        )
    assert result["latency"]["p50_ms"] >= 50
    assert result["service_time"]["p50_ms"] >= 50


def test_nobody_listening_is_a_load_test_error():
    from tests.helpers import get_free_port

    with pytest.raises(LoadTestError, match="cannot connect"):
        run_load(
            RunConfig(host="127.0.0.1", port=get_free_port(), rate=10, duration=1, scenario=FAST),
            None,
        )


def test_fewer_connections_than_workers_is_refused():
    with pytest.raises(LoadTestError, match="--connections"):
        run_load(
            RunConfig(host="h", port=1, rate=1, duration=1, connections=1, workers=2, scenario=FAST)
        )


def test_watched_processes_get_their_cpu_reported():
    import os

    with ThreadedServer(EchoApplication(grant=10**9)) as server:
        result = run_load(
            RunConfig(
                host="127.0.0.1",
                port=server.port,
                rate=50,
                duration=2,
                scenario=FAST,
                watch_pids=(os.getpid(),),  # the echo server runs in this process
            ),
            None,
        )
    [me, *_] = result["watched"]
    assert me["pid"] == os.getpid() and me["mean_percent"] is not None
    assert str(os.getpid()) in result["series"][0]["watched_cpu_percent"]


def test_without_drain_the_sessions_stay_open_in_the_server():
    slow = replace(
        FAST,
        data=replace(FAST.data, think_time=Range(30, 30)),
        voice=replace(FAST.voice, think_time=Range(30, 30)),
    )
    app = EchoApplication(grant=10**9)
    with ThreadedServer(app) as server:
        result = run_load(
            RunConfig(
                host="127.0.0.1", port=server.port, rate=50, duration=1, scenario=slow, drain=False
            ),
            None,
        )
    assert result["timeouts"] == 0 and result["errors"] == 0
    assert result["drain"]["sent"] == 0
    sessions = [types for types in app.sessions.values() if types != [4]]  # not SMS events
    assert sessions and all(types == [1] for types in sessions)  # CCR-I only, never a T
