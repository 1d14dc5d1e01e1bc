"""ocs.service: the [charging] and [diameter] settings reach the engine, the node and
the sweeper."""

from __future__ import annotations

import dataclasses

from ocs.config import load_settings
from ocs.metrics import Metrics
from ocs.service import build_node, engine_settings
from quota_engine.charging.settings import EngineSettings


def test_every_engine_setting_comes_from_charging():
    given = {
        "OCS_CHARGING_VALIDITY_TIME": "600",
        "OCS_CHARGING_DEFAULT_OCTETS": "1000",
        "OCS_CHARGING_DEFAULT_SECONDS": "60",
        "OCS_CHARGING_DEFAULT_EVENTS": "2",
        "OCS_CHARGING_GRACE": "5",
        "OCS_CHARGING_QUOTA_THRESHOLD_PERCENT": "none",
        "OCS_CHARGING_QUOTA_HOLDING_TIME": "30",
        "OCS_CHARGING_IDEMPOTENCY_TTL": "120",
        "OCS_CHARGING_IDENTITY_CACHE_TTL": "1.5",
        "OCS_CHARGING_IDENTITY_CACHE_SIZE": "10",
        "OCS_CHARGING_ACCOUNT_CACHE_TTL": "0",
        "OCS_CHARGING_ACCOUNT_CACHE_SIZE": "20",
        "OCS_CHARGING_USAGE_TTL": "86400",
        "OCS_CHARGING_USAGE_CAP_FACTOR": "3",
        "OCS_CHARGING_USAGE_CAP_OCTETS": "1000000",
        "OCS_CHARGING_USAGE_CAP_SECONDS": "3600",
        "OCS_CHARGING_USAGE_CAP_EVENTS": "50",
        "OCS_CHARGING_TIMESTAMP_TOLERANCE": "30",
        "OCS_CHARGING_TARIFF_TIME_CHANGE": "no",
    }
    engine = engine_settings(load_settings(env=given))
    assert engine == EngineSettings(
        validity_time=600,
        default_octets=1000,
        default_seconds=60,
        default_events=2,
        grace=5,
        quota_threshold_percent=None,
        quota_holding_time=30,
        idempotency_ttl=120,
        identity_cache_ttl=1.5,
        identity_cache_size=10,
        account_cache_ttl=0.0,
        account_cache_size=20,
        usage_ttl=86400,
        usage_cap_factor=3,
        usage_cap_octets=1_000_000,
        usage_cap_seconds=3600,
        usage_cap_events=50,
        timestamp_tolerance=30,
        tariff_time_change=False,
    )
    # every field was given a value other than its default: none is left out
    defaults = EngineSettings()
    for field in dataclasses.fields(EngineSettings):
        assert getattr(engine, field.name) != getattr(defaults, field.name), field.name


def test_the_node_takes_the_connection_batch_limit():
    settings = load_settings(env={"OCS_DIAMETER_MAX_INFLIGHT_BATCHES": "3"})
    assert build_node(settings, Metrics(process=False)).timers.max_inflight_batches == 3
