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
