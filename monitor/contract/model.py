"""A data product's contract (an Avro schema) and how a writer schema relates to it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from monitor.contract.compat import AvroJson, incompatibilities, parse_avro
from monitor.contract.hazards import unbounded_shapes
from monitor.errors import ContractError

_RABIN = "CRC-64-AVRO"


class Verdict(StrEnum):
    CONFORMING = "conforming"  # same parsing canonical form: byte-for-byte the contract
    COMPATIBLE = "compatible"  # differs, but the contract can read it (Avro resolution)
    INCOMPATIBLE = "incompatible"  # the contract cannot read it


def canonical_form(schema: AvroJson) -> str:
    """Avro Parsing Canonical Form (drops docs, defaults, logical types, aliases)."""
    return str(to_parsing_canonical_form(schema))


def rabin_fingerprint(canonical: str) -> bytes:
    """8-byte little-endian CRC-64-AVRO, the form single-object encoding puts on the wire."""
    return bytes.fromhex(fingerprint(canonical, _RABIN))


@dataclass(frozen=True, slots=True)
class Contract:
    path: Path
    schema: dict[str, Any] = field(repr=False)
    parsed: Any = field(repr=False)  # fastavro's parsed schema, usable as reader_schema
    canonical: str
    fingerprint: bytes
    fingerprint_hex: str

    @classmethod
    def load(cls, path: Path) -> Contract:
        """Read and validate a .avsc file; ContractError says what is wrong and where."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ContractError(
                f"contract {path}: file not found; check the contract path in the product "
                "config (relative paths are resolved from the working directory)"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ContractError(f"contract {path}: cannot be read: {exc}") from None
        try:
            schema = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ContractError(
                f"contract {path}: not valid JSON at line {exc.lineno} column {exc.colno}: "
                f"{exc.msg}"
            ) from None
        return cls.from_schema(schema, Path(path))

    @classmethod
    def from_schema(cls, schema: Any, path: Path = Path("<inline>")) -> Contract:
        """Build from an already-decoded JSON schema (tests, embedded demo contracts)."""
        if not isinstance(schema, dict):
            raise ContractError(
                f"contract {path}: the top level must be a JSON object (an Avro record "
                f'schema such as {{"type": "record", ...}}), got {type(schema).__name__}'
            )
        try:
            parsed = parse_schema(schema)
        except Exception as exc:  # fastavro raises several exception types here
            raise ContractError(f"contract {path}: not a valid Avro schema: {exc}") from None
        unbounded = unbounded_shapes(parsed)
        if unbounded:
            raise ContractError(f"contract {path}: {'; '.join(unbounded)}")
        try:
            parse_avro(schema)  # the compatibility checker must be able to read it too
        except Exception as exc:
            raise ContractError(
                f"contract {path}: rejected by the avro library used for compatibility "
                f"checks: {exc}"
            ) from None
        canonical = canonical_form(schema)
        fp = rabin_fingerprint(canonical)
        return cls(path, schema, parsed, canonical, fp, fp.hex())

    @property
    def name(self) -> str:
        """Full name of the top-level type, e.g. com.example.shop.Order."""
        return str(self.parsed.get("name", self.path.stem))


@dataclass(frozen=True, slots=True)
class WriterSchema:
    key: str  # "contract" | "id:<n>" | "fp:<16 hex>"
    parsed: Any = field(repr=False)  # fastavro parsed writer schema
    verdict: Verdict
    reasons: tuple[str, ...]  # why the contract cannot read it; empty unless incompatible


def logical_types(schema: AvroJson) -> list[tuple[str, Any, Any]]:
    """Every logical type annotation, in schema order (what the canonical form drops)."""
    found: list[tuple[str, Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "logicalType" in node:
                found.append((str(node["logicalType"]), node.get("precision"), node.get("scale")))
            for key in ("type", "fields", "items", "values"):
                if key in node:
                    walk(node[key])
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema)
    return found


UNSAFE_PREFIX = "unsafe writer schema: "


def unsafe_writer(writer_schema: AvroJson) -> tuple[str, ...]:
    """Why a writer schema must never drive the decoder (see contract.hazards); () if safe.

    Each reason starts with UNSAFE_PREFIX, so the decoder can count its events as
    unsafe_schema rather than incompatible_schema.
    """
    try:
        parsed = parse_schema(writer_schema)
    except Exception:  # classify reports unparseable writers on its own
        return ()
    return tuple(UNSAFE_PREFIX + problem for problem in unbounded_shapes(parsed))


def classify(contract: Contract, writer_schema: AvroJson) -> tuple[Verdict, tuple[str, ...]]:
    """Verdict for data written with `writer_schema`, the contract being the reader.

    Runs once per new writer schema (the decoders cache it), never per event.
    """
    try:
        same_shape = canonical_form(writer_schema) == contract.canonical
    except Exception as exc:  # not parseable by fastavro
        return Verdict.INCOMPATIBLE, (f"writer schema is not valid Avro: {exc}",)
    if same_shape:
        # The canonical form drops logical types: timestamp-millis and -micros look
        # alike there, but the values mean different things. Such a writer is drift
        # (decoded with its own logical types), not conforming.
        if logical_types(writer_schema) == logical_types(contract.schema):
            return Verdict.CONFORMING, ()
        return Verdict.COMPATIBLE, ()
    unbounded = unsafe_writer(writer_schema)
    if unbounded:
        return Verdict.INCOMPATIBLE, unbounded
    reasons = incompatibilities(contract.schema, writer_schema)
    if reasons:
        return Verdict.INCOMPATIBLE, reasons
    return Verdict.COMPATIBLE, ()
