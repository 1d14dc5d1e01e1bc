"""The OCS Grafana dashboards, as code: the one source of deploy/grafana/dashboards/*.json.

    python deploy/grafana/generate.py          # writes the JSON files
    python deploy/grafana/generate.py --check  # exit 1 when a file differs from this code

Plain Python dicts in Grafana's dashboard JSON model (schemaVersion 39, Grafana 10 and
later), no dependency. Every panel and template variable uses the datasource Grafana
provisions from deploy/grafana/provisioning/datasources/prometheus.yaml (uid
``ocs-prometheus``) and nothing else. Panels use the recording rules of
deploy/prometheus/rules/ where one exists (their 5-minute windows), raw series with
``$__rate_interval`` otherwise. docs/runbook.md ("Dashboards") says what each row
shows; tests/deploy/test_grafana_dashboards.py checks the files are what this writes,
tests/system/test_prometheus_scrape.py that every query returns data from a real node.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DASHBOARDS = HERE / "dashboards"
DATASOURCE_UID = "ocs-prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39
WIDTH = 24

#: the selectors every query carries
I = 'instance=~"$instance"'  # noqa: E741
IP = 'instance=~"$instance", peer=~"$peer"'
RI = "$__rate_interval"


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        # Grafana's StandardPromVariableQuery: the editor parses label_values(...) itself
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "regex": "",
        "refresh": 2,  # on time range change
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
    }


INSTANCE = variable("instance", "Instance", "label_values(ocs_build_info, instance)")
PEER = variable(
    "peer", "Peer", 'label_values(ocs_diameter_requests_total{instance=~"$instance"}, peer)'
)


class Dashboard:
    """Panels laid out left to right, ``row()`` starting a new full-width row."""

    def __init__(self, uid: str, title: str, description: str, variables: list[dict]) -> None:
        self.uid = uid
        self.title = title
        self.description = description
        self.variables = variables
        self.panels: list[dict[str, Any]] = []
        self._x = 0
        self._y = 0
        self._row_height = 0

    def _next_id(self) -> int:
        return len(self.panels) + 1

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "id": self._next_id(),
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": self._y, "w": WIDTH, "h": 1},
                "panels": [],
            }
        )
        self._y += 1

    def _newline(self) -> None:
        self._y += self._row_height
        self._x = 0
        self._row_height = 0

    def panel(
        self,
        title: str,
        description: str,
        targets: list[tuple[str, str]],
        *,
        unit: str = "short",
        kind: str = "timeseries",
        width: int = 8,
        height: int = 8,
        threshold: float | None = None,
        stack: bool = False,
        text_mode: str = "auto",
    ) -> None:
        if self._x + width > WIDTH:
            self._newline()
        panel: dict[str, Any] = {
            "id": self._next_id(),
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DATASOURCE,
            "gridPos": {"x": self._x, "y": self._y, "w": width, "h": height},
            "targets": [
                {
                    "refId": chr(ord("A") + n),
                    "datasource": DATASOURCE,
                    "expr": expr,
                    "legendFormat": legend,
                    "range": True,
                    "instant": False,
                    **({"format": "heatmap"} if kind == "heatmap" else {}),
                }
                for n, (expr, legend) in enumerate(targets)
            ],
            "fieldConfig": {
                "defaults": self._defaults(unit, kind, threshold, stack),
                "overrides": [],
            },
            "options": self._options(kind, text_mode),
        }
        self.panels.append(panel)
        self._x += width
        self._row_height = max(self._row_height, height)

    @staticmethod
    def _defaults(unit: str, kind: str, threshold: float | None, stack: bool) -> dict[str, Any]:
        steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
        if threshold is not None:
            steps.append({"color": "red", "value": threshold})
        defaults: dict[str, Any] = {
            "unit": unit,
            "thresholds": {"mode": "absolute", "steps": steps},
        }
        if kind == "timeseries":
            defaults["custom"] = {
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 10 if stack else 0,
                "showPoints": "never",
                "spanNulls": False,
                "stacking": {"mode": "normal" if stack else "none", "group": "A"},
                "thresholdsStyle": {"mode": "dashed" if threshold is not None else "off"},
            }
            defaults["color"] = {"mode": "palette-classic"}
        return defaults

    @staticmethod
    def _options(kind: str, text_mode: str) -> dict[str, Any]:
        if kind == "stat":
            return {
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "value",
                "graphMode": "area",
                "textMode": text_mode,
            }
        if kind == "heatmap":
            return {
                "calculate": False,
                "yAxis": {"unit": "s"},
                "cellGap": 1,
                "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                "tooltip": {"show": True, "yHistogram": False},
            }
        return {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["ocs"],
            "timezone": "utc",
            "editable": False,
            "graphTooltip": 1,  # shared crosshair
            "refresh": "30s",
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "time": {"from": "now-6h", "to": "now"},
            "links": [
                {
                    "title": "OCS dashboards",
                    "type": "dashboards",
                    "tags": ["ocs"],
                    "asDropdown": True,
                    "includeVars": True,
                    "keepTime": True,
                }
            ],
            "annotations": {
                "list": [
                    {
                        "builtIn": 1,
                        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                        "enable": True,
                        "hide": True,
                        "iconColor": "rgba(0, 211, 255, 1)",
                        "name": "Annotations & Alerts",
                        "type": "dashboard",
                    }
                ]
            },
            "templating": {"list": self.variables},
            "panels": self.panels,
        }


def overview() -> Dashboard:
    d = Dashboard(
        "ocs-overview",
        "OCS service overview",
        "Rate, errors and duration of the Credit-Control traffic per CC-Request-Type and"
        " service; peers; sessions and reservations (docs/runbook.md, Dashboards).",
        [INSTANCE, PEER],
    )
    d.row("Summary")
    d.panel(
        "CCR per second",
        "Credit-Control-Requests answered per second on the nodes chosen (recording rule, 5 min).",
        [(f"sum(instance_request_type:ocs_diameter_requests:rate5m{{{I}}})", "CCR/s")],
        kind="stat",
        unit="reqps",
        width=5,
        height=4,
    )
    d.panel(
        "Error ratio",
        "Share of CCAs with a 3xxx or 5xxx Result-Code (recording rules, 5 min).",
        [
            (
                f"sum(instance_request_type:ocs_diameter_request_errors:rate5m{{{I}}})"
                f" / sum(instance_request_type:ocs_diameter_requests:rate5m{{{I}}})",
                "errors",
            )
        ],
        kind="stat",
        unit="percentunit",
        width=5,
        height=4,
        threshold=0.05,
    )
    d.panel(
        "Worst p99",
        "The highest p99 answer time of any CC-Request-Type on any node chosen (objective: 50 ms).",
        [
            (
                "max(instance_request_type:ocs_diameter_request_duration_seconds:p99_rate5m"
                f"{{{I}}})",
                "p99",
            )
        ],
        kind="stat",
        unit="s",
        width=5,
        height=4,
        threshold=0.05,
    )
    d.panel(
        "Peers OPEN",
        "Diameter connections in state OPEN on the nodes chosen.",
        [(f'sum(ocs_diameter_peers{{state="OPEN", {I}}})', "OPEN")],
        kind="stat",
        width=4,
        height=4,
    )
    d.panel(
        "Open sessions",
        "Charging sessions open in Redis, all services (sampled).",
        [(f"sum(max by (service) (ocs_sessions_open{{{I}}}))", "sessions")],
        kind="stat",
        width=5,
        height=4,
    )
    d.row("Traffic")
    d.panel(
        "CCR per second by CC-Request-Type",
        "Credit-Control-Requests answered per second, by CC-Request-Type, for the peers chosen.",
        [
            (
                "sum by (request_type) (rate(ocs_diameter_requests_total"
                f'{{command="CCR", {IP}}}[{RI}]))',
                "{{request_type}}",
            )
        ],
        unit="reqps",
        stack=True,
    )
    d.panel(
        "CCR answers by Result-Code",
        "Top-level Result-Codes of the CCAs per second (recording rule, 5 min). 2001 is"
        " normal; 4012 and 5030 follow the subscribers; 5012: the node could not charge.",
        [
            (
                "sum by (result_code) (instance_request_type_result_code:ocs_diameter_requests:rate5m"
                f"{{{I}}}) > 0",
                "{{result_code}}",
            )
        ],
        unit="reqps",
    )
    d.panel(
        "Other Diameter requests",
        "CER, DWR, DPR answered per second (and RAR/ASR answered by the OCS, if any).",
        [
            (
                "sum by (command) (rate(ocs_diameter_requests_total"
                f'{{command!="CCR", {IP}}}[{RI}]))',
                "{{command}}",
            )
        ],
        unit="reqps",
    )
    d.row("Errors")
    d.panel(
        "Error ratio by CC-Request-Type",
        "Share of CCAs with a 3xxx or 5xxx Result-Code (recording rule, 5 min). The"
        " OCSDiameterErrorRatioHigh alert fires above 5 %.",
        [
            (
                f"instance_request_type:ocs_diameter_request_errors:ratio_rate5m{{{I}}}",
                "{{instance}} {{request_type}}",
            )
        ],
        unit="percentunit",
        threshold=0.05,
    )
    d.panel(
        "Errors by CC-Request-Type and Result-Code",
        "CCAs per second with a 3xxx or 5xxx Result-Code, for the peers chosen.",
        [
            (
                "sum by (request_type, result_code) (rate(ocs_diameter_requests_total"
                f'{{command="CCR", result_code=~"3...|5...|invalid", {IP}}}[{RI}])) > 0',
                "{{request_type}} {{result_code}}",
            )
        ],
        unit="reqps",
    )
    d.panel(
        "MSCC error ratio by service",
        "Share of Multiple-Services-Credit-Control answers with a 3xxx or 5xxx"
        " Result-Code of their own (5031 rating failed inside a 2001 CCA), by service.",
        [
            (
                f"instance_service:ocs_diameter_mscc_errors:ratio_rate5m{{{I}}}",
                "{{instance}} {{service}}",
            )
        ],
        unit="percentunit",
        threshold=0.05,
    )
    d.panel(
        "MSCC answers by service and Result-Code",
        "Rating-group answers per second by service and their own Result-Code (recording"
        " rule, 5 min): 4012 per rating group is a subscriber out of credit for one service.",
        [
            (
                "sum by (service, result_code) (instance_service_result_code:ocs_diameter_mscc:rate5m"
                f"{{{I}}})",
                "{{service}} {{result_code}}",
            )
        ],
        unit="reqps",
        width=12,
    )
    d.panel(
        "Units granted and used by service",
        "Units granted (GSU) and reported used (USU) per second, by service and unit.",
        [
            (
                f"sum by (service, unit) (rate(ocs_charging_granted_units_total{{{I}}}[{RI}]))",
                "granted {{service}} {{unit}}",
            ),
            (
                f"sum by (service, unit) (rate(ocs_charging_used_units_total{{{I}}}[{RI}]))",
                "used {{service}} {{unit}}",
            ),
        ],
        width=12,
    )
    d.row("Latency")
    d.panel(
        "CCR p50 and p99 by CC-Request-Type",
        "Time from a CCR decoded to its CCA written (recording rules, 5 min). The"
        " objective is a p99 below 50 ms (OCSDiameterLatencyHigh).",
        [
            (
                f"instance_request_type:ocs_diameter_request_duration_seconds:p99_rate5m{{{I}}}",
                "p99 {{instance}} {{request_type}}",
            ),
            (
                f"instance_request_type:ocs_diameter_request_duration_seconds:p50_rate5m{{{I}}}",
                "p50 {{instance}} {{request_type}}",
            ),
        ],
        unit="s",
        threshold=0.05,
    )
    d.panel(
        "CCR latency distribution",
        "How many CCRs were answered within each latency bucket (0.1 ms to 1 s).",
        [
            (
                "sum by (le) (rate(ocs_diameter_request_duration_seconds_bucket"
                f'{{command="CCR", {I}}}[{RI}]))',
                "{{le}}",
            )
        ],
        kind="heatmap",
        unit="reqps",
    )
    d.panel(
        "Requests in flight",
        "Diameter requests decoded and not answered yet: a rising line is a node that"
        " cannot keep up (or waits for Redis).",
        [(f"sum by (instance) (ocs_diameter_inflight_requests{{{I}}})", "{{instance}}")],
    )
    d.row("Peers")
    d.panel(
        "Peer connections by state",
        "Diameter connections by state: OPEN ones charge; WAIT_CER ones have not sent a CER yet.",
        [(f"sum by (state) (ocs_diameter_peers{{{I}}})", "{{state}}")],
    )
    d.panel(
        "CCR per second by peer",
        "CCRs per second by peer: a configured Origin-Host (diameter.allowed_peers) or"
        " 'other' (recording rule, 5 min).",
        [
            (
                f"sum by (peer) (instance_peer:ocs_diameter_requests:rate5m{{{IP}}})",
                "{{peer}}",
            )
        ],
        unit="reqps",
    )
    d.panel(
        "RAR and ASR sent, and their answers",
        "Requests the OCS sent to the network elements, and the Result-Codes of their"
        " answers ('timeout' when none came).",
        [
            (
                f"sum by (command) (rate(ocs_diameter_outgoing_requests_total{{{I}}}[{RI}]))",
                "sent {{command}}",
            ),
            (
                "sum by (command, result_code) "
                f"(instance_command_result_code:ocs_diameter_outgoing_answers:rate5m{{{I}}})",
                "answered {{command}} {{result_code}}",
            ),
        ],
        unit="reqps",
    )
    d.row("Sessions and reservations")
    d.panel(
        "Open sessions by service",
        "Charging sessions open in Redis, by service (sampled every"
        " metrics.sample_interval; the same on every node of one Redis).",
        [(f"max by (service) (ocs_sessions_open{{{I}}})", "{{service}}")],
        stack=True,
    )
    d.panel(
        "Money reserved by service",
        "Money held by open sessions' reservations, in currency units (micro-units / 1e6).",
        [
            (
                f"max by (service) (ocs_reservations_money_micro_units{{{I}}}) / 1e6",
                "{{service}}",
            )
        ],
        stack=True,
    )
    d.panel(
        "Units reserved by service",
        "Units granted and not yet reported by open sessions, by service and unit.",
        [
            (
                f"max by (service, unit) (ocs_reservations_units{{{I}}})",
                "{{service}} {{unit}}",
            )
        ],
    )
    return d


def engine() -> Dashboard:
    d = Dashboard(
        "ocs-engine",
        "OCS charging engine and Redis",
        "Utilisation, saturation and errors of the charging engine, Redis, the sweeper and"
        " the process (docs/runbook.md, Dashboards).",
        [INSTANCE],
    )
    d.row("Charging engine")
    d.panel(
        "Requests per charging batch",
        "Requests per engine call (one Redis round trip when cached): larger batches under"
        " load are the coalescer working.",
        [
            (
                "histogram_quantile(0.99, sum by (le) (rate(ocs_charging_batch_requests_bucket"
                f"{{{I}}}[{RI}])))",
                "p99",
            ),
            (
                f"sum(rate(ocs_charging_batch_requests_sum{{{I}}}[{RI}]))"
                f" / sum(rate(ocs_charging_batch_requests_count{{{I}}}[{RI}]))",
                "mean",
            ),
        ],
    )
    d.panel(
        "Cache hit ratio",
        "Share of identity and account lookups found in the engine's caches (recording"
        " rule, 5 min). Low after a restart; a lasting low share on a busy node: caches"
        " too small.",
        [
            (
                f"instance_cache:ocs_charging_cache_lookups:hit_ratio_rate5m{{{I}}}",
                "{{instance}} {{cache}}",
            )
        ],
        unit="percentunit",
    )
    d.panel(
        "Stale, failed, capped, untrusted",
        "Requests rerun because their cached account was stale, requests the engine could"
        " not charge (5012), usage reports capped, Event-Timestamps not trusted.",
        [
            (f"sum(rate(ocs_charging_stale_requests_total{{{I}}}[{RI}]))", "stale"),
            (f"sum(rate(ocs_charging_failed_requests_total{{{I}}}[{RI}]))", "failed"),
            (f"sum(rate(ocs_charging_capped_reports_total{{{I}}}[{RI}]))", "capped"),
            (
                f"sum(rate(ocs_charging_untrusted_timestamps_total{{{I}}}[{RI}]))",
                "untrusted timestamp",
            ),
        ],
        unit="reqps",
    )
    d.panel(
        "Catalog version",
        "Version of the catalog each node rates with (the version label of the series"
        " at 1): all nodes should show the same.",
        [
            (
                f"max by (instance, version) (ocs_catalog_active_version{{{I}}})",
                "{{instance}}: {{version}}",
            )
        ],
        kind="stat",
        text_mode="name",
        width=12,
        height=5,
    )
    d.panel(
        "Catalog age",
        "Time since each node started rating with its active catalog.",
        [
            (
                f"time() - max by (instance) (ocs_catalog_loaded_timestamp_seconds{{{I}}})",
                "{{instance}}",
            )
        ],
        kind="stat",
        unit="s",
        width=12,
        height=5,
    )
    d.row("Redis")
    d.panel(
        "Redis up",
        "1 while Redis answers within redis.timeout (OCSRedisDown fires on 0).",
        [(f"min by (instance) (ocs_redis_up{{{I}}})", "{{instance}}")],
        threshold=0.5,
    )
    d.panel(
        "Redis round trip p99 by client",
        "99th percentile of one Redis command or pipeline (recording rule, 5 min):"
        " 'charging' is the hot path, 'general' the rest. OCSRedisSlow fires above 10 ms.",
        [
            (
                f"instance_client:ocs_redis_command_duration_seconds:p99_rate5m{{{I}}}",
                "{{instance}} {{client}}",
            )
        ],
        unit="s",
        threshold=0.01,
    )
    d.panel(
        "Redis calls per second by client",
        "Redis commands and pipelines per second (recording rule, 5 min).",
        [(f"instance_client:ocs_redis_commands:rate5m{{{I}}}", "{{instance}} {{client}}")],
        unit="ops",
    )
    d.panel(
        "Redis errors by kind",
        "Failed Redis calls per second: timeouts (redis.timeout), lost connections,"
        " error replies (recording rule, 5 min).",
        [
            (
                f"sum by (client, kind) (instance_client_kind:ocs_redis_errors:rate5m{{{I}}})",
                "{{client}} {{kind}}",
            )
        ],
        unit="ops",
    )
    d.panel(
        "Reconnects and embedded restarts",
        "New Redis connections after one was lost, and restarts of the embedded"
        " redis-server after it died.",
        [
            (
                f"sum by (client) (increase(ocs_redis_reconnects_total{{{I}}}[{RI}]))",
                "reconnects {{client}}",
            ),
            (
                f"sum(increase(ocs_redis_embedded_restarts_total{{{I}}}[{RI}]))",
                "embedded restarts",
            ),
        ],
    )
    d.row("Sweeper and sampling")
    d.panel(
        "Sweeper rounds by outcome",
        "Rounds of the expired-session sweeper per second, ok or failed (recording rule,"
        " 15 min). OCSSweeperFailing fires while failed stays above 0.",
        [
            (
                f"sum by (outcome) (instance_outcome:ocs_sweeper_rounds:rate15m{{{I}}})",
                "{{outcome}}",
            )
        ],
        unit="ops",
    )
    d.panel(
        "Sweeper round p99 and sessions settled",
        "Time one sweeper round takes, and expired sessions it settled per second.",
        [
            (
                "histogram_quantile(0.99, sum by (le) (rate(ocs_sweeper_round_duration_seconds_bucket"
                f"{{{I}}}[{RI}])))",
                "round p99 (s)",
            ),
            (
                f"sum(rate(ocs_sweeper_settled_sessions_total{{{I}}}[{RI}]))",
                "settled per second",
            ),
        ],
    )
    d.panel(
        "Sample duration",
        "Time the last sample of sessions and reservations in Redis took.",
        [(f"max by (instance) (ocs_sample_duration_seconds{{{I}}})", "{{instance}}")],
        unit="s",
    )
    d.row("Process")
    d.panel(
        "Event-loop lag p99",
        "How late the event loop runs a callback scheduled at a fixed interval (recording"
        " rule, 5 min): every Diameter answer is delayed by as much. OCSEventLoopLag fires"
        " above 25 ms.",
        [(f"instance:ocs_event_loop_lag_seconds:p99_rate5m{{{I}}}", "{{instance}}")],
        unit="s",
        threshold=0.025,
    )
    d.panel(
        "GC pauses",
        "p99 pause of the Python garbage collector by generation (recording rule, 5 min)"
        " and pauses per second.",
        [
            (
                f"instance_generation:ocs_gc_pause_seconds:p99_rate5m{{{I}}}",
                "p99 (s) {{instance}} gen {{generation}}",
            ),
            (
                f"sum by (generation) (rate(ocs_gc_pause_seconds_count{{{I}}}[{RI}]))",
                "per second gen {{generation}}",
            ),
        ],
    )
    d.panel(
        "Ready",
        "1 while the node is ready for traffic (/readyz 200); 0 while Redis is down or the"
        " node drains.",
        [(f"min by (instance) (ocs_ready{{{I}}})", "{{instance}}")],
        threshold=0.5,
    )
    d.panel(
        "CPU",
        "CPU time of the process per second (1 = one core busy): about 0.12 ms per CCR.",
        [(f"rate(process_cpu_seconds_total{{{I}}}[{RI}])", "{{instance}}")],
        unit="percentunit",
    )
    d.panel(
        "Resident memory",
        "Resident set size of the process.",
        [(f"process_resident_memory_bytes{{{I}}}", "{{instance}}")],
        unit="bytes",
    )
    d.panel(
        "File descriptors",
        "Open file descriptors against the limit: Diameter peers, HTTP clients and Redis"
        " connections share them.",
        [
            (f"process_open_fds{{{I}}}", "open {{instance}}"),
            (f"process_max_fds{{{I}}}", "limit {{instance}}"),
        ],
    )
    return d


def management_api() -> Dashboard:
    d = Dashboard(
        "ocs-http",
        "OCS management API",
        "Requests, latency and connections of the HTTP API (/v1, /metrics, /healthz)"
        " (docs/runbook.md, Dashboards).",
        [INSTANCE],
    )
    d.row("Requests")
    d.panel(
        "Requests per second by route",
        "HTTP requests answered per second, by route template (recording rule, 5 min);"
        " 'unmatched' is a path no route knows.",
        [
            (
                f"sum by (route) (instance_route_status:ocs_http_requests:rate5m{{{I}}})",
                "{{route}}",
            )
        ],
        unit="reqps",
        stack=True,
    )
    d.panel(
        "Requests per second by status",
        "HTTP status codes of the answers: 401/403 a token problem, 404 unknown ids,"
        " 503 Redis unreachable.",
        [
            (
                f"sum by (status) (instance_route_status:ocs_http_requests:rate5m{{{I}}})",
                "{{status}}",
            )
        ],
        unit="reqps",
    )
    d.panel(
        "5xx ratio",
        "Share of answers with a 5xx status (recording rule, 5 min); OCSHTTPErrorRatioHigh"
        " fires above 5 %.",
        [(f"instance:ocs_http_request_errors:ratio_rate5m{{{I}}}", "{{instance}}")],
        unit="percentunit",
        threshold=0.05,
    )
    d.row("Latency")
    d.panel(
        "p99 by route",
        "99th percentile of the time to answer, by route template (recording rule, 5 min).",
        [
            (
                f"instance_route:ocs_http_request_duration_seconds:p99_rate5m{{{I}}}",
                "{{instance}} {{route}}",
            )
        ],
        unit="s",
        width=12,
    )
    d.panel(
        "p50 and p99 of all routes",
        "Median and 99th percentile of every API request.",
        [
            (
                "histogram_quantile(0.5, sum by (le) (rate(ocs_http_request_duration_seconds_bucket"
                f"{{{I}}}[{RI}])))",
                "p50",
            ),
            (
                "histogram_quantile(0.99, sum by (le) (rate(ocs_http_request_duration_seconds_bucket"
                f"{{{I}}}[{RI}])))",
                "p99",
            ),
        ],
        unit="s",
        width=12,
    )
    d.row("Connections")
    d.panel(
        "Open connections",
        "HTTP connections open, against http.max_connections (256 by default).",
        [(f"sum by (instance) (ocs_http_connections{{{I}}})", "{{instance}}")],
    )
    d.panel(
        "Connections refused",
        "Connections closed at once because http.max_connections were open.",
        [
            (
                f"sum by (instance) (increase(ocs_http_connections_refused_total{{{I}}}[{RI}]))",
                "{{instance}}",
            )
        ],
    )
    d.panel(
        "Timeouts by kind",
        "Connections closed by a timeout: idle keep-alive (http.keepalive_timeout) or a"
        " request too slow (http.request_timeout).",
        [
            (
                f"sum by (kind) (increase(ocs_http_timeouts_total{{{I}}}[{RI}]))",
                "{{kind}}",
            )
        ],
    )
    return d


def records_and_invoicing() -> Dashboard:
    d = Dashboard(
        "ocs-records",
        "OCS records and invoicing",
        "Export of rated records to segment files, bill runs and invoice delivery"
        " (docs/runbook.md, Dashboards).",
        [INSTANCE],
    )
    d.row("Record export")
    d.panel(
        "Records written and exported",
        "Rated records appended to the partition streams and made durable in segment"
        " files, per second: the two lines follow each other.",
        [
            (f"sum(rate(ocs_records_written_total{{{I}}}[{RI}]))", "written"),
            (f"sum(rate(ocs_records_exported_total{{{I}}}[{RI}]))", "exported"),
            (
                f"sum(rate(ocs_records_duplicates_dropped_total{{{I}}}[{RI}]))",
                "duplicates dropped",
            ),
        ],
        unit="ops",
    )
    d.panel(
        "Export lag",
        "Age of the oldest record not exported yet (normally about a minute), and the"
        " records waiting in Redis.",
        [
            (f"max(ocs_records_export_lag_seconds{{{I}}})", "oldest waiting (s)"),
            (f"sum(ocs_records_export_lag_entries{{{I}}})", "records waiting"),
        ],
    )
    d.panel(
        "Partitions",
        "Partitions owned by exporters, and those whose stream holds more than"
        " records.stream_cap entries (OCSRecordExportLagging).",
        [
            (f"sum(ocs_records_export_partitions{{{I}}})", "owned"),
            (f"sum(ocs_records_partitions_over_cap{{{I}}})", "over cap"),
        ],
    )
    d.panel(
        "Segments sealed",
        "Segment files sealed and their bytes per second.",
        [
            (f"sum(rate(ocs_records_segments_total{{{I}}}[{RI}]))", "segments"),
            (f"sum(rate(ocs_records_segment_bytes_total{{{I}}}[{RI}]))", "bytes"),
        ],
        width=12,
    )
    d.panel(
        "fsync p99",
        "99th percentile of the fsync of a segment and its directory: a slow disk shows here.",
        [
            (
                "histogram_quantile(0.99, sum by (le) (rate(ocs_records_fsync_duration_seconds_bucket"
                f"{{{I}}}[{RI}])))",
                "p99",
            )
        ],
        unit="s",
        width=12,
    )
    d.row("Bill runs")
    d.panel(
        "Since the last good bill run",
        "Time since the last bill run that ended without errors (OCSBillRunMissed after"
        " two days); about 56 years: no bill run has succeeded since the node started.",
        [
            (
                f"time() - max(ocs_bill_run_last_success_timestamp_seconds{{{I}}})",
                "since last success",
            )
        ],
        kind="stat",
        unit="s",
        width=6,
    )
    d.panel(
        "Last bill run duration",
        "Wall time of the last bill run.",
        [(f"max(ocs_bill_run_duration_seconds{{{I}}})", "duration")],
        kind="stat",
        unit="s",
        width=6,
    )
    d.panel(
        "Bill-run invoices by outcome (1 day)",
        "Invoices created, drafts refreshed, finalised, and accounts that could not be"
        " billed (failed: OCSBillRunFailedAccounts), in the last day.",
        [
            (
                f"sum by (outcome) (increase(ocs_bill_run_invoices_total{{{I}}}[1d]))",
                "{{outcome}}",
            ),
            (f"sum(increase(ocs_bill_run_records_total{{{I}}}[1d]))", "records billed"),
        ],
        width=6,
    )
    d.panel(
        "Invoices by state",
        "Invoices in the billing database by state, as the last bill run left them.",
        [(f"max by (state) (ocs_invoices{{{I}}})", "{{state}}")],
        width=6,
    )
    d.row("Invoice delivery")
    d.panel(
        "Deliveries by outcome (1 day)",
        "What the delivery steps did in the last day: sent, printed, retrying, failed"
        " (OCSInvoiceDeliveriesFailed), interrupted.",
        [
            (
                f"sum by (outcome) (increase(ocs_invoice_deliveries_total{{{I}}}[1d]))",
                "{{outcome}}",
            )
        ],
        width=12,
    )
    d.panel(
        "Deliveries waiting",
        "Deliveries due that the last step did not attempt (OCSInvoiceDeliveriesWaiting).",
        [(f"max(ocs_invoice_deliveries_waiting{{{I}}})", "waiting")],
        kind="stat",
        width=6,
    )
    d.panel(
        "Since the last good delivery step",
        "Time since the last delivery step without an SMTP or print directory error.",
        [
            (
                f"time() - max(ocs_invoice_delivery_last_success_timestamp_seconds{{{I}}})",
                "since last success",
            )
        ],
        kind="stat",
        unit="s",
        width=6,
    )
    return d


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON model."""
    return {
        f"{board.uid}.json": board.to_json()
        for board in (overview(), engine(), management_api(), records_and_invoicing())
    }


def render(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    expected = dashboards()
    for name, model in expected.items():
        path = DASHBOARDS / name
        text = render(model)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            DASHBOARDS.mkdir(exist_ok=True)
            path.write_text(text)
    extra = sorted(p.name for p in DASHBOARDS.glob("*.json") if p.name not in expected)
    if check and (stale or extra):
        print(
            f"deploy/grafana/dashboards differs from generate.py: {stale + extra};"
            " run python deploy/grafana/generate.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
