"""ocs.metrics: names, labels, buckets, isolation, exposition."""

import platform

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from ocs.metrics import Metrics
from ocs.metrics.diameter import LATENCY_BUCKETS


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_build_info_names_version_and_python():
    metrics = Metrics(version="1.2.3")
    assert sample(metrics, "ocs_build_info", version="1.2.3", python=platform.python_version()) == 1


def test_build_info_defaults_to_the_package_version():
    metrics = Metrics()
    body, _ = metrics.render()
    assert 'ocs_build_info{python="' in body.decode()


def test_observe_answer_counts_by_command_and_result_code():
    metrics = Metrics()
    metrics.observe_answer("CCR", 2001, 0.002)
    metrics.observe_answer("CCR", 2001, 0.003)
    metrics.observe_answer("CCR", 4012, 0.004)
    metrics.observe_answer("DWR", 2001, 0.0001)
    total = "ocs_diameter_requests_total"
    assert (
        sample(metrics, total, command="CCR", result_code="2001", request_type="none", peer="other")
        == 2
    )
    assert (
        sample(metrics, total, command="CCR", result_code="4012", request_type="none", peer="other")
        == 1
    )
    assert (
        sample(metrics, total, command="DWR", result_code="2001", request_type="none", peer="other")
        == 1
    )
    assert (
        sample(
            metrics,
            "ocs_diameter_request_duration_seconds_count",
            command="CCR",
            request_type="none",
        )
        == 3
    )
    assert sample(
        metrics, "ocs_diameter_request_duration_seconds_sum", command="CCR", request_type="none"
    ) == pytest.approx(0.009)


def test_latency_buckets_are_100us_to_1s_and_fine_between_1_and_10_ms():
    assert LATENCY_BUCKETS[0] == 0.0001 and LATENCY_BUCKETS[-1] == 1.0
    assert list(LATENCY_BUCKETS) == sorted(set(LATENCY_BUCKETS))
    assert len([b for b in LATENCY_BUCKETS if 0.001 <= b <= 0.01]) >= 10
    metrics = Metrics()
    metrics.observe_answer("CCR", 2001, 0.0003)
    bucket = "ocs_diameter_request_duration_seconds_bucket"
    assert sample(metrics, bucket, command="CCR", request_type="none", le="0.00025") == 0
    assert sample(metrics, bucket, command="CCR", request_type="none", le="0.0005") == 1
    assert sample(metrics, bucket, command="CCR", request_type="none", le="+Inf") == 1
    families = {f.name: f for f in parse_text(metrics.render()[0].decode())}
    les = [
        float(s.labels["le"])
        for s in families["ocs_diameter_request_duration_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["command"] == "CCR"
    ]
    assert les == [*LATENCY_BUCKETS, float("inf")]


def test_unknown_commands_and_result_codes_fold_into_bounded_labels():
    metrics = Metrics()
    metrics.observe_answer("XYZ-session-4711", 2001, 0.001)
    metrics.observe_answer("CCR", 99, 0.001)
    metrics.observe_answer("CCR", 60001, 0.001)
    total = "ocs_diameter_requests_total"
    assert (
        sample(
            metrics, total, command="unknown", result_code="2001", request_type="none", peer="other"
        )
        == 1
    )
    assert (
        sample(
            metrics, total, command="CCR", result_code="invalid", request_type="none", peer="other"
        )
        == 2
    )
    assert "XYZ" not in metrics.render()[0].decode()


def test_known_commands_have_series_before_any_request():
    metrics = Metrics()
    for command in ("CCR", "CER", "DWR", "DPR"):
        assert (
            sample(
                metrics,
                "ocs_diameter_request_duration_seconds_count",
                command=command,
                request_type="none",
            )
            == 0
        )


def test_negative_duration_is_refused():
    metrics = Metrics()
    with pytest.raises(ValueError, match="must not be negative, got -0.1"):
        metrics.observe_answer("CCR", 2001, -0.1)
    assert (
        sample(
            metrics,
            "ocs_diameter_requests_total",
            command="CCR",
            result_code="2001",
            request_type="none",
            peer="other",
        )
        is None
    )


def test_peer_state_changes_move_one_connection():
    metrics = Metrics()
    metrics.peer_state_changed(None, "WAIT_CER")
    metrics.peer_state_changed(None, "WAIT_CER")
    metrics.peer_state_changed("WAIT_CER", "OPEN")
    assert sample(metrics, "ocs_diameter_peers", state="WAIT_CER") == 1
    assert sample(metrics, "ocs_diameter_peers", state="OPEN") == 1
    metrics.peer_state_changed("OPEN", "CLOSED")
    metrics.peer_state_changed("CLOSED", None)
    assert sample(metrics, "ocs_diameter_peers", state="OPEN") == 0
    assert sample(metrics, "ocs_diameter_peers", state="CLOSED") == 0


def test_instances_do_not_share_counts():
    first, second = Metrics(), Metrics()
    first.observe_answer("CCR", 2001, 0.001)
    assert (
        sample(
            first,
            "ocs_diameter_requests_total",
            command="CCR",
            result_code="2001",
            request_type="none",
            peer="other",
        )
        == 1
    )
    assert (
        sample(
            second,
            "ocs_diameter_requests_total",
            command="CCR",
            result_code="2001",
            request_type="none",
            peer="other",
        )
        is None
    )


def test_nothing_lands_in_the_global_registry():
    from prometheus_client import REGISTRY

    Metrics().observe_answer("CCR", 2001, 0.001)
    assert (
        REGISTRY.get_sample_value(
            "ocs_diameter_requests_total", {"command": "CCR", "result_code": "2001"}
        )
        is None
    )


def test_render_prometheus_text_by_default():
    metrics = Metrics()
    metrics.observe_answer("CER", 2001, 0.001)
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert (
        'ocs_diameter_requests_total{command="CER",peer="other",request_type="none",result_code="2001"} 1.0'
        in text
    )
    assert "# TYPE ocs_diameter_request_duration_seconds histogram" in text
    assert "process_cpu_seconds_total" in text
    names = {family.name for family in parse_text(text)}
    assert {"ocs_build_info", "ocs_diameter_requests", "ocs_diameter_peers"} <= names


def test_render_openmetrics_when_asked():
    metrics = Metrics()
    metrics.observe_answer("CER", 2001, 0.001)
    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.decode().endswith("# EOF\n")
    names = {family.name for family in parse_om(body.decode())}
    assert "ocs_diameter_requests" in names


def test_process_metrics_can_be_left_out():
    assert "process_cpu_seconds_total" not in Metrics(process=False).render()[0].decode()


def test_metrics_observe_the_charging_engine():
    from quota_engine.charging.observer import EngineObserver

    metrics = Metrics()
    observer: EngineObserver = metrics
    observer.charge_batch(3)
    observer.cache_lookups("identity", 2, 1)
    observer.cache_lookups("account", 0, 1)
    observer.cache_lookups("msisdn:491700000001", 1, 1)  # not a cache: folded
    observer.stale_requests(1)
    observer.failed_requests(2)
    lookups = "ocs_charging_cache_lookups_total"
    assert sample(metrics, lookups, cache="identity", result="hit") == 2
    assert sample(metrics, lookups, cache="identity", result="miss") == 1
    assert sample(metrics, lookups, cache="account", result="hit") == 0
    assert sample(metrics, lookups, cache="unknown", result="miss") == 1
    assert sample(metrics, "ocs_charging_batch_requests_count") == 1
    assert sample(metrics, "ocs_charging_batch_requests_sum") == 3
    assert sample(metrics, "ocs_charging_batch_requests_bucket", le="2.0") == 0
    assert sample(metrics, "ocs_charging_batch_requests_bucket", le="4.0") == 1
    assert sample(metrics, "ocs_charging_stale_requests_total") == 1
    assert sample(metrics, "ocs_charging_failed_requests_total") == 2
    assert "msisdn" not in metrics.render()[0].decode()


def test_metrics_count_untrusted_timestamps():
    from quota_engine.charging.observer import EngineObserver

    metrics = Metrics()
    observer: EngineObserver = metrics
    observer.untrusted_timestamps(2)
    assert sample(metrics, "ocs_charging_untrusted_timestamps_total") == 2


# ------------------------------------------------ the transport's observer (issue 13, item 1)

TOTAL = "ocs_diameter_requests_total"
DURATION_COUNT = "ocs_diameter_request_duration_seconds_count"


def requests(metrics: Metrics, command="CCR", request_type="initial", code="2001", peer="other"):
    return sample(
        metrics, TOTAL, command=command, request_type=request_type, result_code=code, peer=peer
    )


def test_ccr_answers_are_counted_by_request_type_and_configured_peer():
    metrics = Metrics()
    observer = metrics.diameter_observer(["pgw1.test.net", "pgw2.test.net"])
    observer.answered(272, 2001, 0.002, "initial", "pgw1.test.net")
    observer.answered(272, 2001, 0.003, "initial", "pgw1.test.net")
    observer.answered(272, 4012, 0.004, "update", "pgw2.test.net")
    observer.answered(272, 5030, 0.001, "event", "rogue.test.net")  # not configured
    observer.answered(272, 5005, 0.001, None, None)  # refused before the application
    assert requests(metrics, peer="pgw1.test.net") == 2
    assert requests(metrics, request_type="update", code="4012", peer="pgw2.test.net") == 1
    assert requests(metrics, request_type="event", code="5030", peer="other") == 1
    assert requests(metrics, request_type="none", code="5005", peer="other") == 1
    assert "rogue" not in metrics.render()[0].decode()
    assert sample(metrics, DURATION_COUNT, command="CCR", request_type="initial") == 2
    assert sample(metrics, DURATION_COUNT, command="CCR", request_type="update") == 1
    assert sample(metrics, DURATION_COUNT, command="CCR", request_type="none") == 1


def test_known_ccr_result_codes_exist_at_zero_for_each_request_type_and_peer():
    from ocs.metrics.diameter import KNOWN_RESULT_CODES

    metrics = Metrics()
    metrics.diameter_observer(["pgw1.test.net"])
    assert {5030, 5031, 4012, 5012, 2001} <= set(KNOWN_RESULT_CODES)
    for request_type in ("initial", "update", "terminate", "event"):
        assert sample(metrics, DURATION_COUNT, command="CCR", request_type=request_type) == 0
        for peer in ("pgw1.test.net", "other"):
            for code in KNOWN_RESULT_CODES:
                assert requests(metrics, request_type=request_type, code=str(code), peer=peer) == 0
    # a first 5030 is a rise from 0, not a new series
    observer = metrics.diameter_observer(["pgw1.test.net"])
    observer.answered(272, 5030, 0.001, "initial", "pgw1.test.net")
    assert requests(metrics, code="5030", peer="pgw1.test.net") == 1


def test_other_commands_unknown_commands_and_odd_kinds_fold_into_bounded_labels():
    metrics = Metrics()
    observer = metrics.diameter_observer(["pgw1.test.net"])
    observer.answered(257, 2001, 0.001, None, "pgw1.test.net")  # CER
    observer.answered(280, 2001, 0.001, "initial", "pgw1.test.net")  # a kind on a DWR: ignored
    observer.answered(999, 3001, 0.001, None, "pgw1.test.net")
    observer.answered(272, 2001, 0.001, "msisdn:491700000001", "pgw1.test.net")
    observer.answered(272, 60001, 0.001, "update", "pgw1.test.net")
    assert requests(metrics, "CER", "none", "2001", "pgw1.test.net") == 1
    assert requests(metrics, "DWR", "none", "2001", "pgw1.test.net") == 1
    assert requests(metrics, "unknown", "none", "3001", "pgw1.test.net") == 1
    assert requests(metrics, "CCR", "none", "2001", "pgw1.test.net") == 1
    assert requests(metrics, "CCR", "update", "invalid", "pgw1.test.net") == 1
    assert "msisdn" not in metrics.render()[0].decode()


def test_without_configured_peers_every_peer_is_other():
    metrics = Metrics()
    observer = metrics.diameter_observer()
    for host in ("a.test.net", "b.test.net"):
        observer.answered(272, 2001, 0.001, "terminate", host)
    assert requests(metrics, request_type="terminate") == 2


def test_many_distinct_peers_stay_counted_without_growing_the_bound_children():
    from ocs.metrics.diameter import MAX_BOUND_SERIES

    metrics = Metrics(process=False)
    observer = metrics.diameter_observer()
    for n in range(MAX_BOUND_SERIES + 10):
        observer.answered(272, 2001, 0.001, "update", f"pgw{n}.test.net")
    assert len(observer._series) <= MAX_BOUND_SERIES
    assert requests(metrics, request_type="update") == MAX_BOUND_SERIES + 10


def test_inflight_and_peer_states_through_the_observer():
    metrics = Metrics()
    observer = metrics.diameter_observer()
    observer.inflight(3)
    observer.inflight(2)
    observer.inflight(-3)
    assert sample(metrics, "ocs_diameter_inflight_requests") == 2
    observer.peer_state_changed(None, "WAIT_CER")
    observer.peer_state_changed("WAIT_CER", "OPEN")
    assert sample(metrics, "ocs_diameter_peers", state="OPEN") == 1
    assert sample(metrics, "ocs_diameter_peers", state="WAIT_CER") == 0


def test_the_observer_is_the_protocols():
    from protocol.connection import Observer

    observer: Observer = Metrics().diameter_observer(["pgw1.test.net"])
    assert callable(observer.answered)


# ------------------------------------------------------------ the Gy observer: MSCC, units, RAR


def test_mscc_outcomes_by_service_with_known_codes_at_zero():
    metrics = Metrics()
    sink = metrics.diameter
    for service in ("data", "voice", "sms", "other"):
        for code in ("2001", "4012", "5031"):
            assert (
                sample(metrics, "ocs_diameter_mscc_total", service=service, result_code=code) == 0
            )
    sink.mscc_answered("data", 4012)
    sink.mscc_answered("data", 4012)
    sink.mscc_answered("voice", 2001)
    sink.mscc_answered("fax", 5031)  # not a service label of ours
    sink.mscc_answered("sms", 70000)
    mscc = "ocs_diameter_mscc_total"
    assert sample(metrics, mscc, service="data", result_code="4012") == 2
    assert sample(metrics, mscc, service="voice", result_code="2001") == 1
    assert sample(metrics, mscc, service="other", result_code="5031") == 1
    assert sample(metrics, mscc, service="sms", result_code="invalid") == 1
    assert "fax" not in metrics.render()[0].decode()


def test_granted_and_used_units_by_service_and_unit():
    metrics = Metrics()
    sink = metrics.diameter
    sink.units("data", "octets", 1000, 300)
    sink.units("data", "octets", 0, 200)
    sink.units("voice", "seconds", 60, 0)
    sink.units("mms", "pages", 1, 1)  # folded: other/events
    granted, used = "ocs_charging_granted_units_total", "ocs_charging_used_units_total"
    assert sample(metrics, granted, service="data", unit="octets") == 1000
    assert sample(metrics, used, service="data", unit="octets") == 500
    assert sample(metrics, granted, service="voice", unit="seconds") == 60
    assert sample(metrics, used, service="voice", unit="seconds") == 0
    assert sample(metrics, granted, service="other", unit="events") == 1
    assert sample(metrics, granted, service="sms", unit="events") == 0


def test_outgoing_requests_and_answers_with_timeouts():
    metrics = Metrics()
    sink = metrics.diameter
    assert (
        sample(metrics, "ocs_diameter_outgoing_answers_total", command="ASR", result_code="timeout")
        == 0
    )
    sink.outgoing_request("RAR")
    sink.outgoing_answer("RAR", 2001)
    sink.outgoing_request("ASR")
    sink.outgoing_answer("ASR", None)
    sink.outgoing_answer("ASR", 0)  # an answer without a Result-Code
    answers = "ocs_diameter_outgoing_answers_total"
    assert sample(metrics, "ocs_diameter_outgoing_requests_total", command="RAR") == 1
    assert sample(metrics, "ocs_diameter_outgoing_requests_total", command="ASR") == 1
    assert sample(metrics, answers, command="RAR", result_code="2001") == 1
    assert sample(metrics, answers, command="ASR", result_code="timeout") == 1
    assert sample(metrics, answers, command="ASR", result_code="invalid") == 1


def test_diameter_metrics_are_the_gy_observer():
    from ocs.gy.observer import GyObserver

    sink: GyObserver = Metrics().diameter
    assert callable(sink.mscc_answered)
