"""docs/metrics.md lists every metric the OCS declares, with its type and labels, and
nothing it does not declare."""

from __future__ import annotations

import re

from prometheus_client.metrics import MetricWrapperBase

from ocs.metrics import Metrics
from tests.helpers import ROOT

DOC = ROOT / "docs" / "metrics.md"
_ROW = re.compile(r"^\| `((?:ocs)_[a-z0-9_]+)` \| (\w+) \| ([^|]*) \|", re.MULTILINE)


def declared() -> dict[str, tuple[str, tuple[str, ...]]]:
    """name as exported -> (type, label names), for every ocs_ metric of Metrics."""
    metrics = {}
    for collector in Metrics(process=False).registry._collector_to_names:
        assert isinstance(collector, MetricWrapperBase)
        suffix = "_total" if collector._type == "counter" else ""
        metrics[collector._name + suffix] = (collector._type, tuple(collector._labelnames))
    return metrics


def documented() -> dict[str, tuple[str, tuple[str, ...]]]:
    rows = {}
    for name, kind, labels in _ROW.findall(DOC.read_text()):
        assert name not in rows, f"{name} listed twice"
        rows[name] = (kind, tuple(re.findall(r"`(\w+)`", labels)))
    return rows


def test_every_declared_metric_is_documented_with_its_type_and_labels():
    code, doc = declared(), documented()
    assert len(code) > 50
    assert sorted(set(code) - set(doc)) == [], "declared but not in docs/metrics.md"
    assert sorted(set(doc) - set(code)) == [], "in docs/metrics.md but not declared"
    for name, (kind, labels) in code.items():
        assert doc[name] == (kind, labels), name


def test_the_process_metrics_the_dashboards_use_are_documented():
    text = DOC.read_text()
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"):
        assert f"`{name}`" in text
