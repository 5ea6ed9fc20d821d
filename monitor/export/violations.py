"""/violations: where the most recent bad events of each product are, never their payload.

On-call fetches the exact events with their own tools (kcat, the console consumer)
from the partition and offset listed here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from monitor.pipeline import Pipeline


def violations_json(pipeline: Pipeline) -> bytes:
    """/violations: the most recent bad events per product, where they are, never their payload."""
    return dump_violations(violations_of(pipeline))


def dump_violations(products: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"products": products, **extra}, indent=1).encode() + b"\n"


def violations_of(pipeline: Pipeline) -> dict[str, Any]:
    """Product name -> {"topic", "violations" (newest first)}; plain data, so it pickles."""
    with pipeline.lock:
        copied = [(p.config, list(p.recent)) for p in pipeline.products.values()]
    out: dict[str, Any] = {}
    for config, records in copied:
        entries = []
        for r in reversed(records):  # newest first
            entry: dict[str, Any] = {
                "partition": r.partition,
                "offset": r.offset,
                "timestamp_ms": r.timestamp_ms,
                "timestamp": _iso(r.timestamp_ms),
            }
            if r.kind == "contract":
                entry["reason"] = r.names[0]
            else:
                entry["rules"] = list(r.names)
                if r.errors:
                    entry["rule_errors"] = list(r.errors)
            entries.append(entry)
        out[config.name] = {"topic": config.topic, "violations": entries}
    return out


def _iso(ms: int) -> str | None:
    if ms <= 0:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
