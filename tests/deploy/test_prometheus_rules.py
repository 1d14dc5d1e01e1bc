"""The shipped Prometheus rules: what they watch exists, each alert is documented and
tested, recording rules are named ``level:metric:operations``.

An alert on a metric name that does not exist never fires; this catches a renamed
metric or a typo in deploy/prometheus/rules/. promtool checks and unit-tests the rules
(tests/deploy/test_promtool.py); tests/system/test_prometheus_scrape.py evaluates them
in a real Prometheus scraping a real node.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ocs.metrics import Metrics
from tests.helpers import ROOT

PROMETHEUS = ROOT / "deploy" / "prometheus"
RUNBOOK = ROOT / "docs" / "runbook.md"
_NAME = re.compile(r"(?<![\w:])((?:ocs|process)_[a-z0-9_]+)(?![\w:])")
_RECORDED = re.compile(r"(?<![\w:])([a-z_]+:[a-z0-9_]+:[a-z0-9_]+)(?![\w:])")
_LEVEL_METRIC_OPERATIONS = re.compile(r"^[a-z][a-z_]*:(ocs|process)_[a-z0-9_]+:[a-z0-9_]+$")
SEVERITIES = {"critical", "warning"}


def exposed_names() -> set[str]:
    names = set()
    for family in Metrics(process=False).registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def rule_files() -> list[Path]:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    files: list[Path] = []
    for pattern in config["rule_files"]:
        files.extend(sorted(PROMETHEUS.glob(pattern)))
    return files


def all_rules() -> list[tuple[str, dict]]:
    return [
        (path.name, rule)
        for path in rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped
    (hyphens and underscores kept), spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {github_anchor(heading) for heading in headings}


def promtool_tests() -> list[dict]:
    return [
        yaml.safe_load(path.read_text())
        for path in sorted((PROMETHEUS / "tests").glob("*.test.yml"))
    ]


def test_prometheus_loads_the_rule_files():
    assert [path.name for path in rule_files()] == [
        "ocs-billing.yml",
        "ocs-diameter.yml",
        "ocs-http.yml",
        "ocs-node.yml",
        "ocs-records.yml",
    ]


def test_every_rule_watches_metrics_the_ocs_exposes():
    exposed = exposed_names()
    recorded = {rule["record"] for _, rule in all_rules() if "record" in rule}
    for path, rule in all_rules():
        name = rule.get("alert") or rule["record"]
        metrics = _NAME.findall(rule["expr"])
        uses = _RECORDED.findall(rule["expr"])
        assert metrics or uses or rule["expr"].startswith("up{"), name
        unknown = [n for n in metrics if n not in exposed]
        assert unknown == [], f"{path}: {name} watches unknown {unknown}"
        assert set(uses) <= recorded, f"{path}: {name} uses unrecorded {set(uses) - recorded}"


def test_recording_rules_are_named_level_metric_operations():
    rules = [rule for _, rule in all_rules() if "record" in rule]
    records = [rule["record"] for rule in rules]
    assert len(records) >= 20
    assert len(set(records)) == len(records)
    for rule in rules:
        record = rule["record"]
        assert _LEVEL_METRIC_OPERATIONS.match(record), record
        level = record.split(":")[0].split("_")
        # the level names the labels the rule keeps: every one is in its by (...) clause
        if "by (" in rule["expr"]:
            kept = re.findall(r"by \(([^)]*)\)", rule["expr"])[-1].replace(" ", "").split(",")
            assert "_".join(level) == "_".join(k for k in kept if k != "le"), record


def test_every_alert_has_severity_summary_description_and_a_runbook_section():
    anchors = runbook_anchors()
    alerts = [(path, rule) for path, rule in all_rules() if "alert" in rule]
    assert len(alerts) >= 25
    for path, rule in alerts:
        name = rule["alert"]
        assert {"alert", "expr", "for", "labels", "annotations"} <= rule.keys(), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= annotations.keys(), name
        url = annotations["runbook_url"]
        assert url == f"docs/runbook.md#{name.lower()}", f"{path}: {name}: {url}"
        assert url.split("#")[1] in anchors, f"{path}: {name}: no section {url} in runbook"


def test_the_anchor_check_follows_github():
    assert github_anchor("OCSRedisDown") == "ocsredisdown"
    assert github_anchor("Is it healthy?") == "is-it-healthy"
    assert github_anchor("Start, stop, restart") == "start-stop-restart"
    assert "ocsredisdown" in runbook_anchors()
    assert "ocsredisdwn" not in runbook_anchors()


def test_every_alert_fires_in_one_promtool_test_and_stays_silent_in_another():
    fired: dict[str, set[str]] = {}
    silent: dict[str, set[str]] = {}
    for document in promtool_tests():
        for test in document["tests"]:
            for case in test.get("alert_rule_test", []):
                target = fired if case["exp_alerts"] else silent
                target.setdefault(case["alertname"], set()).add(test["name"])
    alerts = {rule["alert"] for _, rule in all_rules() if "alert" in rule}
    assert alerts - fired.keys() == set(), "alerts never fired in a promtool test"
    assert alerts - silent.keys() == set(), "alerts never tested silent"


def test_the_name_check_would_see_a_typo():
    exposed = exposed_names()
    assert "ocs_records_exported_total" in exposed
    assert "ocs_records_exportd_total" not in exposed
    assert _NAME.findall("instance:ocs_x:rate5m + ocs_y_total") == ["ocs_y_total"]


def test_the_links_of_the_alerts_and_dashboards_sections_resolve():
    sections = RUNBOOK.read_text().split("\n## ")
    ours = "".join(s for s in sections if s.startswith(("Alerts\n", "Dashboards\n")))
    links = re.findall(r"\]\(#([^)]+)\)", ours)
    assert len(links) >= 10
    assert sorted(set(links) - runbook_anchors()) == []
