"""The shipped Prometheus configuration: its alert rules watch metrics the OCS exports.

An alert on a metric name that does not exist never fires; this catches a renamed
metric or a typo in deploy/prometheus/rules/. (Evaluating the rules in a real
Prometheus belongs to the dashboards-and-alerts work.)
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ocs.metrics import Metrics
from tests.helpers import ROOT

PROMETHEUS = ROOT / "deploy" / "prometheus"
_NAME = re.compile(r"\b(ocs_[a-z0-9_]+)\b")


def exposed_names() -> set[str]:
    names = set()
    for family in Metrics(process=False).registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def rule_files() -> list[Path]:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    files: list[Path] = []
    for pattern in config["rule_files"]:
        files.extend(sorted(PROMETHEUS.glob(pattern)))
    return files


def test_prometheus_loads_the_rule_files():
    assert [path.name for path in rule_files()] == ["ocs-billing.yml", "ocs-records.yml"]


def test_every_alert_watches_metrics_the_ocs_exposes():
    exposed = exposed_names()
    for path in rule_files():
        groups = yaml.safe_load(path.read_text())["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        assert rules, path
        for rule in rules:
            assert {"alert", "expr", "for", "annotations"} <= rule.keys(), rule
            names = _NAME.findall(rule["expr"])
            assert names, rule["alert"]
            unknown = [n for n in names if n not in exposed]
            assert unknown == [], f"{path.name}: {rule['alert']} watches unknown {unknown}"


def test_the_name_check_would_see_a_typo():
    exposed = exposed_names()
    assert "ocs_records_exported_total" in exposed
    assert "ocs_records_exportd_total" not in exposed
