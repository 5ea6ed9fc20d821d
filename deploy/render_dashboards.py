"""Grafana dashboards for the three audiences of a data-product operating model.

executive: are the products keeping their promises (SLO compliance, budget left, owner);
on-call:   what is wrong right now (SLIs, burn rates, firing alerts, lag, schema changes);
debug:     why (per-partition watermarks, idleness, histograms, invalid events, Tidemark's
           own health). Generated so panel ids, grid positions and datasources stay
           consistent; `python deploy/render.py` writes deploy/grafana/dashboards/*.json.
"""

from __future__ import annotations

from typing import Any

DS = {"type": "prometheus", "uid": "${datasource}"}
P = 'product=~"$product"'
RATE = "$__rate_interval"


def _target(expr: str, legend: str = "", ref: str = "A", table: bool = False) -> dict[str, Any]:
    t: dict[str, Any] = {"refId": ref, "datasource": DS, "expr": expr, "legendFormat": legend}
    if table:
        t |= {"instant": True, "range": False, "format": "table"}
    return t


class Board:
    """Places panels left to right, wrapping at Grafana's 24-column grid."""

    def __init__(self, uid: str, title: str, description: str) -> None:
        self.uid, self.title, self.description = uid, title, description
        self.panels: list[dict[str, Any]] = []
        self._x = self._y = self._row_h = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"id": len(self.panels) + 1, "type": "row", "title": title,
                            "collapsed": False, "panels": [],
                            "gridPos": {"x": 0, "y": self._y, "w": 24, "h": 1}})
        self._y += 1

    def _newline(self) -> None:
        self._y += self._row_h
        self._x = self._row_h = 0

    def add(self, kind: str, title: str, targets: list[dict[str, Any]], w: int = 12,
            h: int = 8, unit: str = "short", description: str = "",
            **extra: Any) -> None:
        if self._x + w > 24:
            self._newline()
        defaults: dict[str, Any] = {"unit": unit}
        defaults |= extra.pop("defaults", {})
        self.panels.append({
            "id": len(self.panels) + 1, "type": kind, "title": title,
            "description": description, "datasource": DS,
            "gridPos": {"x": self._x, "y": self._y, "w": w, "h": h},
            "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": extra.pop("overrides", [])},
            "options": extra.pop("options", {}),
            **extra,
        })
        self._x += w
        self._row_h = max(self._row_h, h)

    def json(self, variables: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "uid": self.uid, "title": self.title, "description": self.description,
            "tags": ["tidemark"], "editable": True, "schemaVersion": 39, "version": 1,
            "timezone": "browser", "refresh": "30s", "graphTooltip": 1,
            "time": {"from": "now-6h", "to": "now"},
            "links": [{"type": "dashboards", "tags": ["tidemark"], "asDropdown": True,
                       "title": "Tidemark dashboards", "includeVars": True,
                       "keepTime": True}],
            "annotations": {"list": [{
                "name": "Tidemark alerts", "datasource": DS, "enable": True,
                "iconColor": "red", "expr": 'ALERTS{alertname=~"Tidemark.+", alertstate="firing"}',
                "titleFormat": "{{alertname}}", "textFormat": "{{product}} {{sli}}",
                "step": "60s", "useValueForTime": False}]},
            "templating": {"list": variables},
            "panels": self.panels,
        }


def _variables(instance: bool = False) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": "datasource", "label": "Prometheus", "type": "datasource",
         "query": "prometheus", "current": {}, "hide": 0},
        {"name": "product", "label": "Data product", "type": "query", "datasource": DS,
         "query": {"query": "label_values(tidemark_data_product_info, product)",
                   "refId": "product"},
         "definition": "label_values(tidemark_data_product_info, product)",
         "multi": True, "includeAll": True, "allValue": ".+", "refresh": 2, "sort": 1,
         "current": {"text": "All", "value": "$__all"}},
    ]
    if instance:
        out.append({"name": "instance", "label": "Tidemark instance", "type": "query",
                    "datasource": DS,
                    "query": {"query": "label_values(tidemark_up, instance)",
                              "refId": "instance"},
                    "definition": "label_values(tidemark_up, instance)", "multi": True,
                    "includeAll": True, "allValue": ".+", "refresh": 2,
                    "current": {"text": "All", "value": "$__all"}})
    return out


RATIO = {"unit": "percentunit", "defaults": {"min": 0, "max": 1, "decimals": 2}}
JOIN = "* on (product) group_left (owner, tier) tidemark:data_product_info:max"


def _threshold_steps(*steps: tuple[str, float | None]) -> dict[str, Any]:
    return {"thresholds": {"mode": "absolute",
                           "steps": [{"color": c, "value": v} for c, v in steps]}}


def executive() -> dict[str, Any]:
    b = Board("tidemark-executive", "Tidemark / Executive: data product SLOs",
              "Are data products keeping their promises over 30 days, and who owns them?")
    b.add("stat", "SLOs met over 30 days", [_target(
        f"count(tidemark:slo_sli:ratio_rate30d{{{P}}} >= on (product, sli) "
        "tidemark:slo_objective_ratio:max) or vector(0)")], w=6, h=5,
        description="Product/SLI pairs whose 30-day SLI is at or above the objective.")
    b.add("stat", "SLOs missed over 30 days", [_target(
        f"count(tidemark:slo_sli:ratio_rate30d{{{P}}} < on (product, sli) "
        "tidemark:slo_objective_ratio:max) or vector(0)")], w=6, h=5,
        defaults=_threshold_steps(("green", None), ("red", 1)))
    b.add("stat", "Error budgets below 25%", [_target(
        f"count(tidemark:slo_error_budget_remaining:ratio30d{{{P}}} < 0.25) or vector(0)")],
        w=6, h=5, defaults=_threshold_steps(("green", None), ("orange", 1)))
    b.add("stat", "Products monitored", [_target(
        f"count(tidemark:data_product_info:max{{{P}}})")], w=6, h=5)
    b.add("table", "SLO compliance and error budget per product (30 days)", [
        _target(f"tidemark:slo_sli:ratio_rate30d{{{P}}} {JOIN}", ref="A", table=True),
        _target(f"tidemark:slo_objective_ratio:max{{{P}}} {JOIN}", ref="B", table=True),
        _target(f"tidemark:slo_error_budget_remaining:ratio30d{{{P}}} {JOIN}", ref="C",
                table=True)],
        w=24, h=10, unit="percentunit",
        description="One row per product and SLI. Budget left below 0 means the objective "
                    "is missed for this 30-day window.",
        transformations=[
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {
                "excludeByName": {"Time": True},
                "indexByName": {"product": 0, "owner": 1, "tier": 2, "sli": 3},
                "renameByName": {"Value #A": "SLI (30d)", "Value #B": "Objective",
                                 "Value #C": "Error budget left"}}}],
        overrides=[{"matcher": {"id": "byName", "options": "Error budget left"},
                    "properties": [
                        {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                        {"id": "thresholds", "value": _threshold_steps(
                            ("red", None), ("orange", 0), ("green", 0.25))["thresholds"]}]}])
    b.add("bargauge", "Error budget left (30 days)", [_target(
        f"tidemark:slo_error_budget_remaining:ratio30d{{{P}}}", "{{product}} {{sli}}")],
        w=12, h=9, unit="percentunit",
        defaults={"min": 0, "max": 1, **_threshold_steps(
            ("red", None), ("orange", 0.25), ("green", 0.5))},
        options={"orientation": "horizontal", "displayMode": "gradient"})
    b.add("timeseries", "Daily SLI trend (rolling 1 day)", [_target(
        f"tidemark:slo_sli:ratio_rate1d{{{P}}}", "{{product}} {{sli}}")], w=12, h=9,
        unit="percentunit")
    # Correctness exists only for products with rules (they alone export its series).
    b.add("bargauge", "Correctness per product (30 days) vs objective", [
        _target(f'tidemark:slo_sli:ratio_rate30d{{{P}, sli="correctness"}}', "{{product}}"),
        _target(f'tidemark:slo_objective_ratio:max{{{P}, sli="correctness"}}',
                "{{product}} objective", ref="B")],
        w=12, h=8, unit="percentunit", defaults={"min": 0.9, "max": 1, "decimals": 3},
        description="Share of rule-checked events that passed every rule of the product's "
                    "contract, next to its objective. Only products with rules appear.",
        options={"orientation": "horizontal", "displayMode": "basic"})
    b.add("timeseries", "Correctness per product (rolling 1 day) and objective", [
        _target(f'tidemark:slo_sli:ratio_rate1d{{{P}, sli="correctness"}}', "{{product}}"),
        _target(f'tidemark:slo_objective_ratio:max{{{P}, sli="correctness"}}',
                "{{product}} objective", ref="B")], w=12, h=8, unit="percentunit")
    b.add("timeseries", "Data age per product (all replicas)", [_target(
        f"tidemark:product_freshness_seconds{{{P}}}", "{{product}}")], w=24, h=7, unit="s",
        description="Now minus the product watermark: how old the newest complete data is.")
    return b.json(_variables())


def oncall() -> dict[str, Any]:
    b = Board("tidemark-oncall", "Tidemark / On-call: what is wrong now",
              "Current SLIs, burn rates, firing alerts, lag and schema changes.")
    b.add("table", "Firing Tidemark alerts", [_target(
        'ALERTS{alertname=~"Tidemark.+", alertstate="firing"}', table=True)], w=24, h=6,
        transformations=[{"id": "organize", "options": {"excludeByName": {
            "Time": True, "Value": True, "__name__": True, "alertstate": True}}}])
    b.add("stat", "Data age (all replicas)", [_target(
        f"tidemark:product_freshness_seconds{{{P}}}", "{{product}}")], w=12, h=5, unit="s")
    b.add("stat", "Freshness SLI (1h)", [_target(
        f'tidemark:slo_sli:ratio_rate1h{{{P}, sli="freshness"}}', "{{product}}")],
        w=12, h=5, **RATIO)
    b.add("timeseries", "Data age vs freshness threshold", [
        _target(f"tidemark:product_freshness_seconds{{{P}}}", "{{product}} age"),
        _target(f'tidemark:slo_threshold_seconds:max{{{P}, sli="freshness"}}',
                "{{product}} threshold", ref="B")], unit="s")
    b.add("timeseries", "SLIs (1h) and objectives", [
        _target(f"tidemark:slo_sli:ratio_rate1h{{{P}}}", "{{product}} {{sli}}"),
        _target(f"tidemark:slo_objective_ratio:max{{{P}}}", "{{product}} {{sli}} objective",
                ref="B")], **RATIO)
    b.add("timeseries", "Burn rate, 1h window (page at 14.4)", [_target(
        f"tidemark:slo_burn_rate:rate1h{{{P}}}", "{{product}} {{sli}}")],
        defaults=_threshold_steps(("green", None), ("red", 14.4)) | {
            "custom": {"thresholdsStyle": {"mode": "line"}}})
    b.add("timeseries", "Burn rate, 6h window (page at 6)", [_target(
        f"tidemark:slo_burn_rate:rate6h{{{P}}}", "{{product}} {{sli}}")],
        defaults=_threshold_steps(("green", None), ("red", 6)) | {
            "custom": {"thresholdsStyle": {"mode": "line"}}})
    b.add("timeseries", "Correctness burn rate, 1h and 6h (page at 14.4 / 6)", [
        _target(f'tidemark:slo_burn_rate:rate1h{{{P}, sli="correctness"}}', "{{product}} 1h"),
        _target(f'tidemark:slo_burn_rate:rate6h{{{P}, sli="correctness"}}', "{{product}} 6h",
                ref="B")],
        description="How fast events breaking the contract's rules spend the correctness "
                    "error budget. Runbook: docs/runbooks/correctness.md.",
        defaults=_threshold_steps(("green", None), ("orange", 6), ("red", 14.4)) | {
            "custom": {"thresholdsStyle": {"mode": "line"}}})
    b.add("timeseries", "Rule violations by rule (events/s)", [_target(
        "sum by (product, rule) (rate("
        f"tidemark_rule_violations_total{{{P}}}[{RATE}]))", "{{product}} {{rule}}")],
        unit="ops", description="Which rule breaks; /violations lists the partition and "
                                "offset of the last ones.")
    b.add("timeseries", "Tidemark consumer lag (messages)", [_target(
        f"tidemark:consumer_lag_messages:sum{{{P}}}", "{{product}}")])
    # TidemarkTopicStopped: the newest event of each topic, against its threshold.
    b.add("timeseries", "Time since the topic's newest event vs threshold", [
        _target(f"min by (product, topic) (tidemark_partition_last_event_age_seconds{{{P}}})",
                "{{topic}}"),
        _target(f'tidemark:slo_threshold_seconds:max{{{P}, sli="freshness"}}',
                "{{product}} threshold", ref="B")], unit="s")
    # TidemarkDeadLetterEvents: events arriving on dead-letter topics.
    b.add("timeseries", "Dead-letter topics: events/s", [_target(
        f"sum by (product, topic) (rate(tidemark_events_total{{{P}}}[{RATE}]))\n"
        f"and on (product, topic) max by (product, topic) "
        f"(tidemark_dead_letter_topic_info{{{P}}})", "{{topic}}")], unit="ops")
    b.add("timeseries", "Partitions waiting for a schema look-up (registry_unreachable pages)", [
        _target(f"sum by (product, reason) (tidemark_partitions_held{{{P}}})",
                "{{product}} {{reason}}")])
    b.add("timeseries", "Contract violations by reason (events/s)", [_target(
        f"sum by (product, reason) (rate(tidemark_contract_violations_total{{{P}}}[{RATE}]))",
        "{{product}} {{reason}}")], unit="ops")
    b.add("table", "Writer schemas seen (recent schema changes)", [_target(
        f"max by (product, schema, verdict) (tidemark_writer_schema_info{{{P}}})",
        table=True)],
        transformations=[{"id": "organize", "options": {"excludeByName": {
            "Time": True, "Value": True}}}])
    b.add("timeseries", "Schema drift by verdict (events/s)", [_target(
        f"sum by (product, verdict) (rate(tidemark_schema_drift_events_total{{{P}}}[{RATE}]))",
        "{{product}} {{verdict}}")], unit="ops")
    b.add("state-timeline", "Tidemark instances: alive, Kafka reachable, ready", [
        _target("tidemark_up", "{{instance}} up"),
        _target("tidemark_kafka_reachable", "{{instance}} Kafka reachable", ref="B"),
        _target("tidemark_ready", "{{instance}} ready", ref="C")], w=24, h=6,
        defaults={"mappings": [{"type": "value", "options": {
            "0": {"text": "no", "color": "red"}, "1": {"text": "yes", "color": "green"}}}]})
    return b.json(_variables())


def debug() -> dict[str, Any]:
    b = Board("tidemark-debug", "Tidemark / Debug: partitions, histograms, internals",
              "Per-partition state, latency and lateness distributions, invalid events "
              "and Tidemark's own health.")
    pi = f'{P}, instance=~"$instance"'
    pp = "{{product}} p{{partition}} ({{instance}})"
    b.row("Partitions")
    b.add("timeseries", "Partition watermark age", [_target(
        f"time() - tidemark_partition_watermark_timestamp_seconds{{{pi}}}", pp)], unit="s")
    b.add("timeseries", "Time since last event per partition", [_target(
        f"tidemark_partition_last_event_age_seconds{{{pi}}}", pp)], unit="s")
    b.add("state-timeline", "Idle (1) / stuck (1) partitions", [
        _target(f"tidemark_partition_idle{{{pi}}}", "idle " + pp),
        _target(f"tidemark_partition_stuck{{{pi}}}", "stuck " + pp, ref="B")], w=24, h=8)
    b.add("timeseries", "Consumer lag per partition (messages)", [_target(
        f"tidemark_consumer_lag_messages{{{pi}}}", pp)])
    b.add("timeseries", "Produce rate per partition (high watermark, messages/s)", [_target(
        f"deriv(tidemark_partition_high_watermark_offset{{{pi}}}[5m])", pp)], unit="ops")
    b.row("Latency and lateness")
    b.add("heatmap", "Event latency (available to Tidemark minus event time)", [dict(
        _target(f"sum by (le) (rate(tidemark_event_latency_seconds_bucket{{{pi}}}[{RATE}]))",
                "{{le}}"), format="heatmap")], unit="s",
        options={"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1})
    b.add("timeseries", "Event latency p50 / p99", [
        _target("histogram_quantile(0.5, sum by (product, le) (rate("
                f"tidemark_event_latency_seconds_bucket{{{pi}}}[{RATE}])))", "{{product}} p50"),
        _target("histogram_quantile(0.99, sum by (product, le) (rate("
                f"tidemark_event_latency_seconds_bucket{{{pi}}}[{RATE}])))", "{{product}} p99",
                ref="B")], unit="s")
    b.add("timeseries", "Late and future events (events/s)", [
        _target(f"sum by (product) (rate(tidemark_late_events_total{{{pi}}}[{RATE}]))",
                "{{product}} late"),
        _target(f"sum by (product) (rate(tidemark_future_events_total{{{pi}}}[{RATE}]))",
                "{{product}} future", ref="B")], unit="ops")
    b.add("timeseries", "Lateness of late events p99", [_target(
        "histogram_quantile(0.99, sum by (product, le) (rate("
        f"tidemark_event_lateness_seconds_bucket{{{pi}}}[{RATE}])))", "{{product}}")],
        unit="s")
    b.row("Contract")
    b.add("timeseries", "Invalid events by reason (events/s)", [_target(
        f"sum by (product, reason) (rate(tidemark_contract_violations_total{{{pi}}}[{RATE}]))",
        "{{product}} {{reason}}")], unit="ops")
    b.add("timeseries", "Events and conforming events (events/s)", [
        _target(f"sum by (product) (rate(tidemark_events_total{{{pi}}}[{RATE}]))",
                "{{product}} all"),
        _target(f"sum by (product) (rate(tidemark_events_conforming_total{{{pi}}}[{RATE}]))",
                "{{product}} conforming", ref="B")], unit="ops")
    b.row("Rules (correctness)")
    b.add("timeseries", "Rule violations by rule over time (events/s)", [_target(
        "sum by (product, rule) (rate("
        f"tidemark_rule_violations_total{{{pi}}}[{RATE}]))", "{{product}} {{rule}}")],
        w=8, unit="ops")
    b.add("timeseries", "Rule errors by rule (events/s)", [_target(
        f"sum by (product, rule) (rate(tidemark_rule_errors_total{{{pi}}}[{RATE}]))",
        "{{product}} {{rule}}")], w=8, unit="ops",
        description="Events a rule could not be evaluated on (missing field, wrong type); "
                    "they count as not correct. TidemarkRuleErrors opens a ticket.")
    b.add("timeseries", "Rule-checked and correct events (events/s)", [
        _target("sum by (product) (rate("
                f"tidemark_rule_checked_events_total{{{pi}}}[{RATE}]))", "{{product}} checked"),
        _target(f"sum by (product) (rate(tidemark_events_correct_total{{{pi}}}[{RATE}]))",
                "{{product}} correct", ref="B")], w=8, unit="ops")
    b.row("Completeness")
    b.add("timeseries", "Closed windows by verdict (windows/s)", [_target(
        f"sum by (product, verdict) (rate(tidemark_windows_closed_total{{{pi}}}[{RATE}]))",
        "{{product}} {{verdict}}")], unit="ops")
    b.add("timeseries", "Last closed window completeness", [_target(
        f"min by (product) (tidemark_window_completeness_ratio{{{pi}}})", "{{product}}")],
        **RATIO)
    b.add("timeseries", "Sequence gaps, duplicates, reordering (events/s)", [
        _target(f"sum by (product) (rate(tidemark_sequence_missing_events_total{{{pi}}}[{RATE}]))",
                "{{product}} missing"),
        _target("sum by (product) (rate("
                f"tidemark_sequence_duplicate_events_total{{{pi}}}[{RATE}]))",
                "{{product}} duplicate", ref="B"),
        _target("sum by (product) (rate("
                f"tidemark_sequence_out_of_order_events_total{{{pi}}}[{RATE}]))",
                "{{product}} out of order", ref="C")], unit="ops")
    b.add("timeseries", "Producers tracked and evicted", [
        _target(f"sum by (product) (tidemark_producers_tracked{{{pi}}})", "{{product}} tracked"),
        _target(f"sum by (product) (increase(tidemark_producer_evictions_total{{{pi}}}[1h]))",
                "{{product}} evicted in 1h", ref="B")])
    b.row("Tidemark itself")
    inst = 'instance=~"$instance"'
    b.add("timeseries", "Batch processing time p99 and batch size p50", [
        _target("histogram_quantile(0.99, sum by (instance, le) (rate("
                f"tidemark_batch_processing_seconds_bucket{{{inst}}}[{RATE}])))",
                "{{instance}} p99 seconds"),
        _target("histogram_quantile(0.5, sum by (instance, le) (rate("
                f"tidemark_batch_size_messages_bucket{{{inst}}}[{RATE}])))",
                "{{instance}} p50 messages", ref="B")], w=8)
    b.add("timeseries", "Poll loop heartbeat and lag snapshot age", [
        _target(f"time() - tidemark_poll_loop_heartbeat_timestamp_seconds{{{inst}}}",
                "{{instance}} heartbeat"),
        _target(f"time() - tidemark_lag_snapshot_timestamp_seconds{{{inst}}}",
                "{{instance}} lag snapshot", ref="B")], w=8, unit="s")
    b.add("timeseries", "Kafka errors, commits, registry look-ups (per second)", [
        _target(f"sum by (instance, code) (rate(tidemark_kafka_errors_total{{{inst}}}[{RATE}]))",
                "{{instance}} kafka {{code}}"),
        _target(f"sum by (instance, result) (rate(tidemark_commits_total{{{inst}}}[{RATE}]))",
                "{{instance}} commit {{result}}", ref="B"),
        _target("sum by (instance, result) (rate("
                f"tidemark_schema_registry_lookups_total{{{inst}}}[{RATE}]))",
                "{{instance}} registry {{result}}", ref="C")], w=8, unit="ops")
    b.add("table", "Assigned partitions and versions per instance", [
        _target(f"sum by (instance, product) (tidemark_assigned_partitions{{{inst}}})",
                ref="A", table=True),
        _target(f"tidemark_build_info{{{inst}}}", ref="B", table=True)], w=24, h=7)
    return b.json(_variables(instance=True))


def dashboards() -> dict[str, dict[str, Any]]:
    return {"tidemark-executive": executive(), "tidemark-oncall": oncall(),
            "tidemark-debug": debug()}
