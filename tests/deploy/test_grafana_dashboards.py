"""The Grafana dashboards: the committed JSON is what deploy/grafana/generate.py writes,
the JSON is well formed for Grafana (unique ids, panels that do not overlap, every query
on the provisioned datasource), every metric a panel names is one the OCS declares, and
the runbook describes every row. tests/system/test_prometheus_scrape.py runs the queries
against a real Prometheus."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from types import ModuleType

import yaml

from tests.deploy.test_prometheus_rules import (
    _NAME,
    _RECORDED,
    RUNBOOK,
    all_rules,
    exposed_names,
    github_anchor,
)
from tests.helpers import ROOT

GRAFANA = ROOT / "deploy" / "grafana"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ocs_grafana_generate", GRAFANA / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


generate = load_generator()


def committed() -> dict[str, dict]:
    return {
        path.name: json.loads(path.read_text())
        for path in sorted((GRAFANA / "dashboards").glob("*.json"))
    }


def panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def expressions(dashboard: dict) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p["targets"]]


def test_the_committed_json_is_what_the_generator_writes():
    expected = generate.dashboards()
    assert sorted(committed()) == sorted(expected), "run python deploy/grafana/generate.py"
    for name, model in expected.items():
        text = (GRAFANA / "dashboards" / name).read_text()
        assert text == generate.render(model), f"{name}: run python deploy/grafana/generate.py"
    assert generate.main(["--check"]) == 0


def test_the_check_sees_a_hand_edited_file(tmp_path, monkeypatch):
    for name, model in generate.dashboards().items():
        (tmp_path / name).write_text(generate.render(model))
    monkeypatch.setattr(generate, "DASHBOARDS", tmp_path)
    assert generate.main(["--check"]) == 0
    edited = tmp_path / "ocs-http.json"
    edited.write_text(edited.read_text().replace('"Open connections"', '"Connections"'))
    assert generate.main(["--check"]) == 1


def test_four_dashboards_with_unique_uids_and_titles():
    boards = committed()
    assert sorted(b["uid"] for b in boards.values()) == [
        "ocs-engine",
        "ocs-http",
        "ocs-overview",
        "ocs-records",
    ]
    assert len({b["title"] for b in boards.values()}) == 4


def test_panels_have_unique_ids_and_do_not_overlap():
    for name, board in committed().items():
        assert board["schemaVersion"] == generate.SCHEMA_VERSION
        assert board["editable"] is False
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
            mine = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not mine & cells, f"{name}: {panel['title']} overlaps another panel"
            cells |= mine
        titles = [p["title"] for p in panels(board)]
        assert len(titles) == len(set(titles)), name
        assert board["panels"][0]["type"] == "row", name


def test_every_query_is_on_the_provisioned_datasource():
    config = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    (datasource,) = config["datasources"]
    assert datasource["uid"] == generate.DATASOURCE_UID and datasource["type"] == "prometheus"
    for name, board in committed().items():
        for panel in panels(board):
            assert panel["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}
            assert panel["targets"], f"{name}: {panel['title']} has no query"
            assert panel["description"], f"{name}: {panel['title']}"
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"]
                assert target["expr"].strip(), panel["title"]
                assert 'instance=~"$instance"' in target["expr"], panel["title"]
        for variable in board["templating"]["list"]:
            assert variable["datasource"] == panel["datasource"]
        # no other datasource uid anywhere in the file
        uids = set(re.findall(r'"uid": "([^"]+)"', json.dumps(board)))
        assert uids <= {board["uid"], datasource["uid"], "-- Grafana --"}, (name, uids)


def test_template_variables_instance_and_peer():
    boards = committed()
    for board in boards.values():
        names = [v["name"] for v in board["templating"]["list"]]
        assert names[0] == "instance"
        assert board["templating"]["list"][0]["query"]["query"].startswith("label_values(")
    overview = boards["ocs-overview.json"]
    assert [v["name"] for v in overview["templating"]["list"]] == ["instance", "peer"]
    assert any('peer=~"$peer"' in e for e in expressions(overview))


def test_the_dashboard_provider_is_read_only_and_points_where_the_readme_says():
    config = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "ocs.yaml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["allowUiUpdates"] is False
    path = provider["options"]["path"]
    assert f"./grafana/dashboards:{path}:ro" in (GRAFANA / "README.md").read_text()


def test_every_metric_a_dashboard_names_is_declared_and_every_recording_rule_exists():
    exposed = exposed_names() | {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
    }
    recorded = {rule["record"] for _, rule in all_rules() if "record" in rule}
    used_records = set()
    for name, board in committed().items():
        for expr in expressions(board):
            unknown = [n for n in _NAME.findall(expr) if n not in exposed]
            assert unknown == [], f"{name}: {expr} names unknown {unknown}"
            uses = set(_RECORDED.findall(expr))
            assert uses <= recorded, f"{name}: {expr} uses unrecorded {uses - recorded}"
            used_records |= uses
    assert len(used_records) >= 15  # the dashboards do use the recording rules


def test_the_runbook_describes_every_dashboard_and_row():
    text = RUNBOOK.read_text()
    section = text.split("\n## Dashboards\n", 1)[1].split("\n## ", 1)[0]
    headings = re.findall(r"^### (.+)$", section, flags=re.MULTILINE)
    for board in committed().values():
        assert board["title"] in headings, board["title"]
        part = section.split(f"### {board['title']}\n", 1)[1].split("\n### ", 1)[0]
        for row in (p["title"] for p in board["panels"] if p["type"] == "row"):
            assert f"**{row}**" in part, f"{board['title']}: row {row} not described"
    assert github_anchor("Dashboards") in text.lower()
