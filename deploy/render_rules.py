"""Recording rules for Tidemark's SLIs, generated so the eight windows cannot drift apart.

`python deploy/render.py` writes the result to deploy/prometheus/rules/tidemark-recording.yml;
edit this file, not the YAML. Names follow Prometheus' level:metric:operations convention.
"""

from __future__ import annotations

from typing import Any

# window -> seconds; 5m..3d feed the burn-rate alerts, 30d the error-budget alerts.
WINDOWS: dict[str, int] = {
    "5m": 300, "30m": 1800, "1h": 3600, "2h": 7200, "6h": 21600,
    "1d": 86400, "3d": 259200, "30d": 2592000,
}

# sli -> (series counting every event, series counting good events)
SLIS: dict[str, tuple[str, str]] = {
    "freshness": ("tidemark_event_latency_seconds_count", "tidemark_events_fresh_total"),
    "conformance": ("tidemark_events_total", "tidemark_events_conforming_total"),
    "completeness": ("tidemark_completeness_expected_events_total",
                     "tidemark_completeness_observed_events_total"),
    # Only products with rules export these, so only they get a correctness SLI. The
    # denominator is the events whose rules were evaluated (conforming, after sampling),
    # not every event: a non-conforming event is conformance's loss, not correctness's.
    "correctness": ("tidemark_rule_checked_events_total", "tidemark_events_correct_total"),
}

def _owned_first(series: str) -> str:
    """Per partition: the series of replicas that read it, else of those that lost it."""
    by_partition = "max by (product, topic, partition)"
    return (
        f"{by_partition} (\n"
        f"  {series}\n"
        "  unless on (job, instance, product, topic, partition) "
        "(tidemark_partition_orphaned == 1)\n"
        ")\n"
        "or\n"
        f"{by_partition} ({series})\n"
    )


PRODUCT_RULES: list[dict[str, Any]] = [
    # Every replica exports the static series for every product: collapse them.
    {"record": "tidemark:data_product_info:max",
     "expr": "max by (product, owner, tier) (tidemark_data_product_info)"},
    {"record": "tidemark:slo_objective_ratio:max",
     "expr": "max by (product, sli) (tidemark_slo_objective_ratio)"},
    {"record": "tidemark:slo_threshold_seconds:max",
     "expr": "max by (product, sli) (tidemark_slo_threshold_seconds)"},
    # One series per partition. A replica that lost its partitions in an outage keeps
    # exporting their last watermark (tidemark_partition_orphaned == 1) so freshness
    # keeps growing; once another replica reads such a partition, its series wins. A
    # partition exported twice (a rebalance, two orphans) counts at its newest value.
    {"record": "tidemark:partition_watermark_timestamp_seconds:max",
     "expr": _owned_first("tidemark_partition_watermark_timestamp_seconds")},
    {"record": "tidemark:partition_idle:max",
     "expr": _owned_first("tidemark_partition_idle")},
    # Replicas own disjoint partitions: the product watermark is the oldest non-idle
    # partition watermark, or, when every partition is idle, the newest one (the data
    # really is that old).
    {"record": "tidemark:product_watermark_timestamp_seconds:min",
     "expr": "min by (product) (\n"
             "  tidemark:partition_watermark_timestamp_seconds:max\n"
             "  unless on (product, topic, partition) (tidemark:partition_idle:max == 1)\n"
             ")\n"
             "or\n"
             "max by (product) (tidemark:partition_watermark_timestamp_seconds:max)\n"},
    {"record": "tidemark:product_freshness_seconds",
     "expr": "time() - tidemark:product_watermark_timestamp_seconds:min"},
    # max by partition first: during a rebalance two replicas may briefly export one.
    {"record": "tidemark:consumer_lag_messages:sum",
     "expr": "sum by (product, topic) (\n"
             "  max by (product, topic, partition) (tidemark_consumer_lag_messages)\n"
             ")\n"},
]


def _counter_rate(series: str, window: str) -> str:
    return f"sum by (product) (rate({series}[{window}]))"


def window_rules(window: str) -> list[dict[str, Any]]:
    """Events, good events, SLI, error ratio, bad events and burn rate over one window."""
    seconds = WINDOWS[window]
    rules: list[dict[str, Any]] = []
    if window == "30d":
        # Raw 30-day rates scan every sample of a month at each evaluation; the mean of
        # the recorded 1h rates (which carry the sli label) is the same quantity, cheaply.
        rules += [{"record": "tidemark:slo_events:rate30d",
                   "expr": "avg_over_time(tidemark:slo_events:rate1h[30d])"},
                  {"record": "tidemark:slo_good_events:rate30d",
                   "expr": "avg_over_time(tidemark:slo_good_events:rate1h[30d])"}]
    for sli, (total, good) in (SLIS.items() if window != "30d" else ()):
        rules.append({"record": f"tidemark:slo_events:rate{window}", "labels": {"sli": sli},
                      "expr": _counter_rate(total, window)})
        # A good-events counter that never incremented may not be exported yet: treat it
        # as zero rather than losing the SLI (which would hide a 100% bad product).
        rules.append({"record": f"tidemark:slo_good_events:rate{window}", "labels": {"sli": sli},
                      "expr": f"{_counter_rate(good, window)}\nor\n"
                              f"0 * {_counter_rate(total, window)}\n"})
    rules += [
        {"record": f"tidemark:slo_sli:ratio_rate{window}",
         "expr": f"clamp_max(\n  tidemark:slo_good_events:rate{window}\n"
                 f"  / (tidemark:slo_events:rate{window} > 0),\n  1\n)\n"},
        {"record": f"tidemark:slo_errors:ratio_rate{window}",
         "expr": f"1 - tidemark:slo_sli:ratio_rate{window}"},
        {"record": f"tidemark:slo_bad_events:increase{window}",
         "expr": f"tidemark:slo_errors:ratio_rate{window} * tidemark:slo_events:rate{window}"
                 f" * {seconds}"},
        # Burn rate 1 = spending the error budget exactly as fast as the objective allows.
        {"record": f"tidemark:slo_burn_rate:rate{window}",
         "expr": f"tidemark:slo_errors:ratio_rate{window}\n"
                 "/ on (product, sli)\n"
                 "(1 - max by (product, sli) (tidemark_slo_objective_ratio))\n"},
    ]
    if window == "30d":
        rules.append({"record": "tidemark:slo_error_budget_remaining:ratio30d",
                      "expr": "1 - tidemark:slo_burn_rate:rate30d"})
    return rules


def recording_groups() -> dict[str, Any]:
    groups = [{"name": "tidemark-product", "rules": PRODUCT_RULES}]
    groups += [{"name": f"tidemark-slo-{w}", "rules": window_rules(w)} for w in WINDOWS]
    return {"groups": groups}
