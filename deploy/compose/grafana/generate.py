#!/usr/bin/env python3
"""Writes the provisioned Grafana dashboards (dashboards/*.json).

The JSON files are committed; edit this script and run it again rather than
editing them by hand:  python3 deploy/compose/grafana/generate.py
"""

import json
import pathlib

OUT = pathlib.Path(__file__).resolve().parent / "dashboards"

DS_TEAM = {"type": "prometheus", "uid": "${datasource}"}
DS_OPS = {"type": "prometheus", "uid": "strata-ops"}


def datasource_variable(regex: str = "/Strata team-.*/") -> dict:
    return {
        "name": "datasource",
        "label": "Team",
        "type": "datasource",
        "query": "prometheus",
        "regex": regex,
        "current": {},
        "hide": 0,
    }


def query_variable(name: str, label: str, query: str, ds: dict, multi: bool = True) -> dict:
    """A template variable from /api/v1/label/<name>/values?match[]=..."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": ds,
        "query": {"query": query, "refId": f"var-{name}", "qryType": 1},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": multi,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "sort": 1,
        "hide": 0,
    }


class Dashboard:
    def __init__(self, uid: str, title: str, ds: dict, tags: list[str]):
        self.uid, self.title, self.ds, self.tags = uid, title, ds, tags
        self.panels: list[dict] = []
        self.variables: list[dict] = []
        self.y = 0
        self.x = 0
        self.row_height = 0

    def row(self, title: str) -> None:
        self.newline()
        self.panels.append({
            "type": "row", "title": title, "collapsed": False, "panels": [],
            "id": len(self.panels) + 1, "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
        })
        self.y += 1

    def newline(self) -> None:
        if self.x:
            self.y += self.row_height
            self.x = 0
            self.row_height = 0

    def panel(self, kind: str, title: str, targets: list[tuple[str, str]], w: int = 12, h: int = 8,
              unit: str = "short", description: str = "", **extra) -> None:
        if self.x + w > 24:
            self.newline()
        panel = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": self.ds,
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "targets": [
                {"refId": chr(ord("A") + i), "datasource": self.ds, "expr": expr,
                 "legendFormat": legend, "range": True, "editorMode": "code"}
                for i, (expr, legend) in enumerate(targets)
            ],
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {},
        }
        if kind == "timeseries":
            panel["fieldConfig"]["defaults"]["custom"] = {"fillOpacity": 10, "lineWidth": 1, "showPoints": "never"}
            panel["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                                "tooltip": {"mode": "multi", "sort": "desc"}}
        for key, value in extra.items():
            if key == "defaults":
                panel["fieldConfig"]["defaults"].update(value)
            elif key == "options":
                panel["options"].update(value)
            else:
                panel[key] = value
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)

    def json(self) -> dict:
        return {
            "uid": self.uid,
            "title": self.title,
            "tags": self.tags,
            "editable": False,
            "schemaVersion": 39,
            "version": 1,
            "time": {"from": "now-30m", "to": "now"},
            "refresh": "30s",
            "timezone": "browser",
            "graphTooltip": 1,
            "templating": {"list": self.variables},
            "annotations": {"list": []},
            "panels": self.panels,
        }


def system() -> Dashboard:
    d = Dashboard("strata-system", "System metrics", DS_TEAM, ["strata", "node"])
    d.variables = [
        datasource_variable(),
        query_variable("instance", "Host", "label_values(node_cpu_seconds_total, instance)", DS_TEAM),
    ]
    sel = 'instance=~"$instance"'
    d.row("CPU")
    d.panel("timeseries", "CPU busy", [
        (f'1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle",{sel}}}[$__rate_interval]))', "{{instance}}")],
        unit="percentunit", defaults={"min": 0, "max": 1})
    d.panel("timeseries", "CPU by mode", [
        (f'sum by (mode) (rate(node_cpu_seconds_total{{mode!="idle",{sel}}}[$__rate_interval]))', "{{mode}}")],
        unit="short", description="CPU seconds per second spent in each mode, all selected hosts",
        defaults={"custom": {"fillOpacity": 30, "stacking": {"mode": "normal"}, "lineWidth": 1, "showPoints": "never"}})
    d.panel("timeseries", "Load (1m)", [(f'node_load1{{{sel}}}', "{{instance}}")], w=12)
    d.panel("stat", "Hosts up", [(f'sum(up{{job="node",{sel}}})', "up")], w=6, unit="none")
    d.panel("stat", "CPU cores", [(f'count(node_cpu_seconds_total{{mode="idle",{sel}}})', "cores")], w=6, unit="none")
    d.row("Memory")
    d.panel("timeseries", "Memory used", [
        (f'1 - node_memory_MemAvailable_bytes{{{sel}}} / node_memory_MemTotal_bytes{{{sel}}}', "{{instance}}")],
        unit="percentunit", defaults={"min": 0, "max": 1})
    d.panel("timeseries", "Memory available", [(f'node_memory_MemAvailable_bytes{{{sel}}}', "{{instance}}")], unit="bytes")
    d.row("Disk")
    d.panel("timeseries", "Filesystem used", [
        (f'1 - node_filesystem_avail_bytes{{{sel}}} / node_filesystem_size_bytes{{{sel}}}', "{{instance}} {{mountpoint}}")],
        unit="percentunit", defaults={"min": 0, "max": 1})
    d.panel("timeseries", "Disk throughput", [
        (f'sum by (instance) (rate(node_disk_read_bytes_total{{{sel}}}[$__rate_interval]))', "{{instance}} read"),
        (f'-sum by (instance) (rate(node_disk_written_bytes_total{{{sel}}}[$__rate_interval]))', "{{instance}} written")],
        unit="Bps", description="Reads above zero, writes below")
    d.row("Network")
    d.panel("timeseries", "Network traffic", [
        (f'sum by (instance) (rate(node_network_receive_bytes_total{{{sel}}}[$__rate_interval]))', "{{instance}} in"),
        (f'-sum by (instance) (rate(node_network_transmit_bytes_total{{{sel}}}[$__rate_interval]))', "{{instance}} out")],
        unit="Bps", w=24, description="Received above zero, transmitted below")
    return d


def application() -> Dashboard:
    d = Dashboard("strata-application", "Application metrics", DS_TEAM, ["strata", "http"])
    d.variables = [
        datasource_variable(),
        query_variable("instance", "Instance", 'label_values(up{job="api"}, instance)', DS_TEAM),
        query_variable("route", "Route", "label_values(http_requests_total, route)", DS_TEAM),
    ]
    sel = 'instance=~"$instance",route=~"$route"'
    d.row("Traffic")
    d.panel("stat", "Requests / s", [(f'sum(rate(http_requests_total{{{sel}}}[$__rate_interval]))', "")],
            w=6, unit="reqps")
    d.panel("stat", "Error ratio", [
        (f'sum(rate(http_requests_total{{status=~"5..",{sel}}}[$__rate_interval])) / sum(rate(http_requests_total{{{sel}}}[$__rate_interval]))', "")],
        w=6, unit="percentunit",
        defaults={"thresholds": {"mode": "absolute", "steps": [
            {"color": "green", "value": None}, {"color": "orange", "value": 0.01}, {"color": "red", "value": 0.05}]}})
    d.panel("stat", "p99 latency", [
        (f'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{{sel}}}[$__rate_interval])))', "")],
        w=6, unit="s")
    d.panel("stat", "Instances up", [('sum(up{job="api",instance=~"$instance"}) / count(up{job="api",instance=~"$instance"})', "")],
            w=6, unit="percentunit",
            defaults={"thresholds": {"mode": "absolute", "steps": [
                {"color": "red", "value": None}, {"color": "orange", "value": 0.5}, {"color": "green", "value": 1}]}})
    d.panel("timeseries", "Request rate by route", [
        (f'sum by (route) (rate(http_requests_total{{{sel}}}[$__rate_interval]))', "{{route}}")], unit="reqps")
    d.panel("timeseries", "Error rate by route", [
        (f'sum by (route) (rate(http_requests_total{{status=~"5..",{sel}}}[$__rate_interval]))'
         f' / sum by (route) (rate(http_requests_total{{{sel}}}[$__rate_interval]))', "{{route}}")],
        unit="percentunit")
    d.row("Latency")
    d.panel("timeseries", "Latency quantiles", [
        (f'histogram_quantile({q}, sum by (le) (rate(http_request_duration_seconds_bucket{{{sel}}}[$__rate_interval])))', f"p{int(q * 100)}")
        for q in (0.5, 0.9, 0.99)], unit="s")
    d.panel("heatmap", "Latency distribution", [
        (f'sum by (le) (increase(http_request_duration_seconds_bucket{{{sel}}}[$__rate_interval]))', "{{le}}")],
        unit="s", options={"calculate": False, "yAxis": {"unit": "s"}, "color": {"scheme": "Oranges", "mode": "scheme"},
                           "cellGap": 1, "rowsFrame": {"layout": "le"}},
        targets_format="heatmap")
    d.panels[-1]["targets"][0]["format"] = "heatmap"
    d.panels[-1].pop("targets_format")
    d.panel("timeseries", "Mean latency by route", [
        (f'sum by (route) (rate(http_request_duration_seconds_sum{{{sel}}}[$__rate_interval]))'
         f' / sum by (route) (rate(http_request_duration_seconds_count{{{sel}}}[$__rate_interval]))', "{{route}}")], unit="s")
    d.row("Service health")
    d.panel("state-timeline", "Instance up", [('up{job="api",instance=~"$instance"}', "{{instance}}")],
            w=12, unit="none",
            defaults={"mappings": [{"type": "value", "options": {"0": {"text": "down", "color": "red"},
                                                               "1": {"text": "up", "color": "green"}}}],
                      "thresholds": {"mode": "absolute", "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}]}})
    return d


def strata() -> Dashboard:
    d = Dashboard("strata-health", "Strata health", DS_OPS, ["strata", "ops"])
    d.variables = [query_variable("instance", "Process", 'label_values(up{job="strata"}, instance)', DS_OPS)]
    for expr_title in STRATA_PANELS:
        kind, title, targets, kw = expr_title
        if kind == "row":
            d.row(title)
        else:
            d.panel(kind, title, targets, **kw)
    return d


# Strata's own metrics as its processes export them on /metrics, scraped by
# the load generator into the tenant strata-ops with job="strata" and
# instance="<service>:9090".
I = 'instance=~"$instance"'
STRATA_PANELS: list = [
    ("row", "Cluster", [], {}),
    ("stat", "Store nodes (meta)", [('max by (state) (strata_meta_store_members)', "{{state}}")],
     {"w": 4, "unit": "none", "description": "Store members by state, as the meta service sees them",
      "options": {"textMode": "value_and_name"}}),
    ("stat", "Store processes up", [('count(up{job="strata",instance=~"store.*"} == 1)', "")],
     {"w": 4, "unit": "none", "description": "Store processes answering /metrics"}),
    ("stat", "Processes up", [(f'sum(up{{job="strata",{I}}})', "")], {"w": 4, "unit": "none"}),
    ("stat", "Raft leader", [('max by (instance) (strata_meta_raft_leader) == 1', "{{instance}}")],
     {"w": 4, "unit": "none", "description": "The meta node that leads Raft (strata_meta_raft_leader is 1 there)",
      "options": {"textMode": "name", "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}}),
    ("stat", "Raft term", [('max(strata_meta_raft_term)', "")],
     {"w": 4, "unit": "none", "description": "A term that keeps rising means repeated elections"}),
    ("stat", "Placement epochs", [('max(strata_meta_epochs)', "")],
     {"w": 4, "unit": "none", "description": "A new epoch starts whenever store membership changes"}),
    ("state-timeline", "Processes", [(f'up{{job="strata",{I}}}', "{{instance}}")],
     {"w": 24, "h": 7, "unit": "none",
      "defaults": {"mappings": [{"type": "value", "options": {"0": {"text": "down", "color": "red"},
                                                            "1": {"text": "up", "color": "green"}}}],
                   "thresholds": {"mode": "absolute", "steps": [{"color": "red", "value": None},
                                                                {"color": "green", "value": 1}]}}}),
    ("row", "Ingest", [], {}),
    ("timeseries", "Samples received (frontend)", [
        (f'sum by (instance) (rate(strata_frontend_samples_received_total{{{I}}}[$__rate_interval]))', "{{instance}}"),
        (f'sum(rate(strata_frontend_samples_refused_total{{{I}}}[$__rate_interval]))', "refused")],
     {"unit": "short", "description": "Samples per second accepted by remote write / OTLP"}),
    ("timeseries", "Samples appended (stores, all replicas)", [
        (f'sum by (instance) (rate(strata_store_samples_appended_total{{{I}}}[$__rate_interval]))', "{{instance}}"),
        (f'sum(rate(strata_store_samples_rejected_total{{{I}}}[$__rate_interval]))', "rejected")],
     {"unit": "short"}),
    ("timeseries", "Store write latency", [
        (f'histogram_quantile({q}, sum by (le) (rate(strata_store_write_duration_seconds_bucket{{{I}}}[$__rate_interval])))', f"p{int(q * 100)}")
        for q in (0.5, 0.99)], {"unit": "s"}),
    ("timeseries", "Active series in heads", [(f'strata_store_head_series{{{I}}}', "{{instance}}")], {"unit": "short"}),
    ("timeseries", "Write quorum failures and read retries", [
        (f'sum(rate(strata_cluster_write_quorum_failures_total{{{I}}}[$__rate_interval]))', "write quorum failures"),
        (f'sum(rate(strata_cluster_read_retries_total{{{I}}}[$__rate_interval]))', "read retries")],
     {"unit": "short", "w": 24}),
    ("row", "Queries", [], {}),
    ("timeseries", "Query latency", [
        (f'histogram_quantile({q}, sum by (le) (rate(strata_frontend_http_request_duration_seconds_bucket{{route=~"/api/v1/query.*",{I}}}[$__rate_interval])))', f"p{int(q * 100)}")
        for q in (0.5, 0.9, 0.99)], {"unit": "s"}),
    ("timeseries", "HTTP requests by route", [
        (f'sum by (route) (rate(strata_frontend_http_requests_total{{{I}}}[$__rate_interval]))', "{{route}}"),
        (f'sum(rate(strata_frontend_http_requests_total{{status_code=~"5..",{I}}}[$__rate_interval]))', "5xx")],
     {"unit": "reqps"}),
    ("timeseries", "Cache hit rate", [
        (f'sum(rate(strata_query_frontend_results_cache_hits_total{{{I}}}[$__rate_interval])) / '
         f'(sum(rate(strata_query_frontend_results_cache_hits_total{{{I}}}[$__rate_interval])) + sum(rate(strata_query_frontend_results_cache_misses_total{{{I}}}[$__rate_interval])))',
         "results cache"),
        (f'sum(rate(strata_store_block_cache_hits_total{{{I}}}[$__rate_interval])) / '
         f'(sum(rate(strata_store_block_cache_hits_total{{{I}}}[$__rate_interval])) + sum(rate(strata_store_block_cache_misses_total{{{I}}}[$__rate_interval])))',
         "block cache")],
     {"unit": "percentunit", "defaults": {"min": 0, "max": 1}}),
    ("timeseries", "Blocks on disk", [(f'sum by (instance) (strata_store_block_bytes{{{I}}})', "{{instance}}")],
     {"unit": "bytes"}),
]


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for dashboard, name in ((system(), "system"), (application(), "application"), (strata(), "strata")):
        path = OUT / f"{name}.json"
        path.write_text(json.dumps(dashboard.json(), indent=2, sort_keys=False) + "\n")
        print(f"wrote {path.relative_to(OUT.parent.parent.parent.parent)}")


if __name__ == "__main__":
    main()
