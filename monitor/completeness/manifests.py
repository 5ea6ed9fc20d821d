"""Producer manifests: the Avro record producers publish to say "N events in window W".

Why: a count from the source is the only exact expectation for a window (the audit
pattern of Uber's Chaperone). Encoded as raw (schemaless) Avro with the shipped schema
monitor/completeness/manifest.avsc, so any Avro library can write it.
"""

from __future__ import annotations

import copy
import io
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from monitor.errors import TidemarkError

SCHEMA_RESOURCE = "manifest.avsc"


class ManifestError(TidemarkError):
    """A control-topic record is not a usable manifest (skipped, never fatal)."""


def manifest_schema() -> dict[str, Any]:
    """The manifest schema as JSON (a fresh copy)."""
    resource = resources.files("monitor.completeness").joinpath(SCHEMA_RESOURCE)
    text = resource.read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _without_logical_types(schema: dict[str, Any]) -> dict[str, Any]:
    """Read timestamps as plain longs: exact milliseconds, no datetime round trip."""
    raw = copy.deepcopy(schema)
    for f in raw["fields"]:
        if isinstance(f["type"], dict):
            f["type"].pop("logicalType", None)
    return raw


_SCHEMA = manifest_schema()
_WRITER = parse_schema(_SCHEMA)
_READER = parse_schema(_without_logical_types(_SCHEMA))


@dataclass(frozen=True, slots=True)
class Manifest:
    """product sent event_count events with event time in [window_start, window_end)."""

    product: str
    window_start: float  # epoch seconds (millisecond precision on the wire)
    window_end: float
    event_count: int
    producer_id: str | None = None


def encode_manifest(manifest: Manifest) -> bytes:
    """Raw Avro bytes of a manifest (no magic byte, no schema id)."""
    _check(manifest, "encode")
    out = io.BytesIO()
    schemaless_writer(
        out,
        _WRITER,
        {
            "product": manifest.product,
            "window_start": round(manifest.window_start * 1000),
            "window_end": round(manifest.window_end * 1000),
            "event_count": manifest.event_count,
            "producer_id": manifest.producer_id,
        },
    )
    return out.getvalue()


def decode_manifest(payload: bytes) -> Manifest:
    """A manifest from raw Avro bytes; ManifestError says what is wrong."""
    buf = io.BytesIO(payload)
    try:
        record: Any = schemaless_reader(buf, _READER, None)
    except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, ...
        raise ManifestError(
            f"control record of {len(payload)} bytes is not a manifest "
            f"({type(exc).__name__}); producers must write {SCHEMA_RESOURCE} as raw Avro"
        ) from exc
    if buf.tell() != len(payload):
        raise ManifestError(
            f"control record has {len(payload) - buf.tell()} bytes after the manifest; "
            f"producers must write {SCHEMA_RESOURCE} as raw Avro, one record per message"
        )
    manifest = Manifest(
        product=record["product"],
        window_start=record["window_start"] / 1000,
        window_end=record["window_end"] / 1000,
        event_count=record["event_count"],
        producer_id=record["producer_id"],
    )
    _check(manifest, "decode")
    return manifest


def _check(manifest: Manifest, action: str) -> None:
    if manifest.window_end <= manifest.window_start:
        raise ManifestError(
            f"cannot {action} manifest for product {manifest.product!r}: window_end "
            f"{manifest.window_end} is not after window_start {manifest.window_start}"
        )
    if manifest.event_count < 0:
        raise ManifestError(
            f"cannot {action} manifest for product {manifest.product!r}: event_count "
            f"{manifest.event_count} is negative"
        )
