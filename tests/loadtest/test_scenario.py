"""Scenario files: defaults, parsing, validation, the mix's arithmetic."""

from __future__ import annotations

import random

import pytest

from loadtest.scenario import (
    DEFAULT_SCENARIO,
    Range,
    ScenarioError,
    load_scenario,
    scenario_from_dict,
)
from tests.helpers import ROOT

EXAMPLE = """
name = "busy-hour"

[mix]
data = 60
voice = 30
sms = 10

[data]
updates = [1, 3]
usage = 500_000
think_time = [0.1, 0.2]
apn = "ims"

[voice]
called_parties = ["tel:+4930111", "tel:+4930222"]

[sms]
recipients = ["+491709999"]

[subscribers]
count = 50
msisdn_prefix = "4915999"
balance = 5_000_000

[run]
rate = 250
duration = 3
arrival = "poisson"
"""


def test_default_mix_is_data_70_voice_20_sms_10():
    assert DEFAULT_SCENARIO.shares == pytest.approx({"data": 0.7, "voice": 0.2, "sms": 0.1})
    assert DEFAULT_SCENARIO.data.context == "32251@3gpp.org"
    assert DEFAULT_SCENARIO.voice.rating_group == 100
    assert DEFAULT_SCENARIO.sms.rating_group == 200


def test_session_rates_give_the_ccr_rate_back():
    rates = DEFAULT_SCENARIO.session_rates(1000)
    ccrs = sum(
        rate * DEFAULT_SCENARIO.service(name).requests_per_session for name, rate in rates.items()
    )
    assert ccrs == pytest.approx(1000)
    assert rates["sms"] == pytest.approx(100)  # one CCR-Event per SMS


def test_file_overrides_what_it_names(tmp_path):
    path = tmp_path / "busy.toml"
    path.write_text(EXAMPLE)
    scenario = load_scenario(path)
    assert scenario.name == "busy-hour"
    assert scenario.shares == pytest.approx({"data": 0.6, "voice": 0.3, "sms": 0.1})
    assert scenario.data.updates == Range(1, 3)
    assert scenario.data.usage == Range(500_000, 500_000)
    assert scenario.data.apn == "ims"
    assert scenario.data.rating_group == 10  # untouched default
    assert scenario.voice.called_parties == ("tel:+4930111", "tel:+4930222")
    assert scenario.subscribers.count == 50
    assert scenario.subscribers.msisdn(7) == "491599900007"
    assert scenario.subscribers.account_id(7) == "loadtest-000007"
    assert scenario.run.rate == 250.0 and scenario.run.arrival == "poisson"
    assert scenario.to_json()["data"]["updates"] == [1, 3]


def test_every_problem_is_reported_with_its_path():
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(
            {
                "mix": {"data": -1, "fax": 3},
                "data": {"updates": [3, 1], "usage": "lots", "colour": "red"},
                "voice": {"called_parties": []},
                "surprise": {},
            }
        )
    text = "\n".join(info.value.problems)
    for expected in (
        "mix.data: must be a number >= 0",
        "mix.fax: unknown service",
        "data.updates: needs 0 <= low <= high",
        "data.usage: must be an integer or [low, high]",
        "data.colour: unknown key",
        "voice.called_parties: must be a non-empty list of strings",
        "surprise: unknown section",
    ):
        assert expected in text


def test_values_are_checked_after_types():
    with pytest.raises(ScenarioError, match="do not fit MSISDNs"):
        scenario_from_dict({"subscribers": {"count": 100_000, "msisdn_prefix": "4915990123"}})
    with pytest.raises(ScenarioError, match="run.arrival"):
        scenario_from_dict({"run": {"arrival": "bursty"}})


def test_unreadable_files_are_scenario_errors(tmp_path):
    with pytest.raises(ScenarioError, match="No such file"):
        load_scenario(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[mix\n")
    with pytest.raises(ScenarioError, match="bad.toml"):
        load_scenario(bad)


def test_ranges_draw_inside_their_bounds():
    rng = random.Random(1)
    r = Range(2, 5)
    draws = {r.draw_int(rng) for _ in range(200)}
    assert draws == {2, 3, 4, 5}
    assert all(0.5 <= Range(0.5, 1.5).draw(rng) <= 1.5 for _ in range(100))
    assert Range(3, 3).draw_int(rng) == 3


def test_the_example_scenarios_load():

    for path in (ROOT / "loadtest" / "scenarios").glob("*.toml"):
        load_scenario(path)
