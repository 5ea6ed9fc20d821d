"""Per-event decoding of Kafka values under a contract: the hot path.

Each decoder resolves the writer schema of a payload (fixed, by fingerprint, or
by registry id), classifies it against the contract once, caches the result,
and decodes the body with fastavro. Everything that goes wrong with one event
becomes an InvalidEvent with a Reason; nothing else escapes. No logging, no
per-event objects beyond the decoded record and, on failure, the exception.
"""

from __future__ import annotations

import json
import struct
from collections import OrderedDict
from enum import StrEnum
from io import BytesIO
from typing import Any, Protocol

from fastavro import parse_schema, schemaless_reader

from monitor.contract.model import (
    Contract,
    Verdict,
    WriterSchema,
    canonical_form,
    classify,
    rabin_fingerprint,
)
from monitor.contract.registry import Lookup, Resolution
from monitor.errors import ContractError

Record = dict[str, Any]
# (writer, schema the bytes are decoded with or None if incompatible, reader schema or None)
_Entry = tuple[WriterSchema, Any, Any]

_CONFLUENT_ID = struct.Struct(">I")
_MAX_NEGATIVE = 1024  # remembered unreadable schema ids; random garbage must not grow memory


class Reason(StrEnum):
    """Why an event breaks the contract; the `reason` label of contract_violations."""

    DECODE_ERROR = "decode_error"
    UNKNOWN_SCHEMA = "unknown_schema"
    NULL_VALUE = "null_value"
    BAD_FRAMING = "bad_framing"
    INCOMPATIBLE_SCHEMA = "incompatible_schema"
    MISSING_EVENT_TIME = "missing_event_time"  # raised by the pipeline
    BAD_EVENT_TIME = "bad_event_time"  # raised by the pipeline


class InvalidEvent(Exception):  # noqa: N818 - the name the pipeline uses
    """One event that breaks the contract. Raised per event, so kept cheap."""

    __slots__ = ("reason", "writer")

    def __init__(self, reason: Reason, writer: WriterSchema | None = None) -> None:
        self.reason = reason
        self.writer = writer  # set for INCOMPATIBLE_SCHEMA, so drift can be counted

    def __str__(self) -> str:
        where = f" (writer schema {self.writer.key})" if self.writer is not None else ""
        return f"invalid event: {self.reason.value}{where}"


class HoldReason(StrEnum):
    """Why a partition waits; the `reason` label of tidemark_partitions_held."""

    SCHEMA_LOOKUP = "schema_lookup"  # the writer schema is being looked up
    REGISTRY_UNREACHABLE = "registry_unreachable"  # the registry could not be asked; retrying


class SchemaPending(Exception):  # noqa: N818 - not an error: the event waits
    """The event's writer schema is not known yet: hold its partition, count nothing.

    Not an InvalidEvent: the producer did nothing wrong, and the same event is
    decoded again once the look-up has answered.
    """

    __slots__ = ("reason", "schema_id")

    def __init__(self, schema_id: int, reason: HoldReason) -> None:
        self.schema_id = schema_id
        self.reason = reason

    def __str__(self) -> str:
        return f"schema id {self.schema_id} pending: {self.reason.value}"


class SchemaResolver(Protocol):
    def resolve(self, schema_id: int) -> Resolution:
        """What is known about `schema_id` now; must not block (BackgroundLookups)."""
        ...


class Decoder(Protocol):
    writers: dict[str, WriterSchema]

    def decode(self, payload: bytes | None) -> tuple[Record, WriterSchema]: ...


def _entry(contract: Contract, writer: WriterSchema) -> _Entry:
    if writer.verdict is Verdict.CONFORMING:
        # Same bytes as the contract: decode with the contract itself, which is
        # fastest (no resolution) and keeps the contract's logical types.
        return (writer, contract.parsed, None)
    if writer.verdict is Verdict.COMPATIBLE:
        return (writer, writer.parsed, contract.parsed)
    return (writer, None, None)


def _decode_body(payload: bytes, offset: int, entry: _Entry) -> tuple[Record, WriterSchema]:
    writer, writer_schema, reader_schema = entry
    if writer_schema is None:
        raise InvalidEvent(Reason.INCOMPATIBLE_SCHEMA, writer)
    fo = BytesIO(payload)
    fo.seek(offset)
    try:
        record: Record = schemaless_reader(fo, writer_schema, reader_schema)  # type: ignore[assignment]
    except Exception:  # fastavro raises a zoo of types on bad bytes; all mean the same
        raise InvalidEvent(Reason.DECODE_ERROR) from None
    if fo.tell() != len(payload):  # a garbage payload whose prefix happens to decode
        raise InvalidEvent(Reason.DECODE_ERROR)
    return record, writer


class RawAvroDecoder:
    """Schemaless Avro written with exactly the contract (no framing, no schema id)."""

    def __init__(self, contract: Contract) -> None:
        writer = WriterSchema("contract", contract.parsed, Verdict.CONFORMING, ())
        self.writers: dict[str, WriterSchema] = {writer.key: writer}
        self._entry = _entry(contract, writer)

    def decode(self, payload: bytes | None) -> tuple[Record, WriterSchema]:
        if not payload:
            raise InvalidEvent(Reason.NULL_VALUE)
        return _decode_body(payload, 0, self._entry)


class SingleObjectDecoder:
    """Avro single-object encoding: C3 01, 8-byte LE CRC-64-AVRO fingerprint, body.

    Known writers are the contract and the writer schemas listed in config; any
    other fingerprint is unknown_schema (there is no registry to ask).
    """

    def __init__(
        self,
        contract: Contract,
        writer_schemas: list[dict[str, Any]] | None = None,
        *,
        max_writer_schemas: int = 32,
    ) -> None:
        self.writers: dict[str, WriterSchema] = {}
        self._by_fp: dict[bytes, _Entry] = {}
        for i, schema in enumerate([contract.schema, *(writer_schemas or [])]):
            try:
                parsed = parse_schema(schema)
                fp = rabin_fingerprint(canonical_form(schema))
            except Exception as exc:
                raise ContractError(
                    f"writer_schemas[{i - 1}] listed for contract {contract.path} is not "
                    f"valid Avro: {exc}"
                ) from None
            if fp in self._by_fp:
                continue
            verdict, reasons = classify(contract, schema)
            writer = WriterSchema(f"fp:{fp.hex()}", parsed, verdict, reasons)
            self._by_fp[fp] = _entry(contract, writer)
            if len(self.writers) < max_writer_schemas:
                self.writers[writer.key] = writer

    def decode(self, payload: bytes | None) -> tuple[Record, WriterSchema]:
        if not payload:
            raise InvalidEvent(Reason.NULL_VALUE)
        if len(payload) < 10 or payload[0] != 0xC3 or payload[1] != 0x01:
            raise InvalidEvent(Reason.BAD_FRAMING)
        entry = self._by_fp.get(payload[2:10])
        if entry is None:
            raise InvalidEvent(Reason.UNKNOWN_SCHEMA)
        return _decode_body(payload, 10, entry)


class ConfluentDecoder:
    """Confluent wire format: magic byte 0, 4-byte big-endian schema id, body.

    Each schema id is resolved and classified once. Resolution never waits on the
    registry: an id whose answer is not in yet raises SchemaPending, and the
    pipeline holds that event's partition until the background look-up answers.
    "Not found" is the producer's fault (unknown_schema); an unreachable registry
    is not, so it never becomes a violation.
    """

    def __init__(
        self,
        contract: Contract,
        resolver: SchemaResolver,
        *,
        max_writer_schemas: int = 32,
    ) -> None:
        self.writers: dict[str, WriterSchema] = {}
        self.writers_not_listed = 0  # writers decoded but left out of `writers` (full)
        self._contract = contract
        self._resolver = resolver
        self._max = max_writer_schemas
        self._by_id: dict[int, _Entry] = {}
        self._overflow: OrderedDict[int, _Entry] = OrderedDict()  # LRU beyond the limit
        self._unreadable: OrderedDict[int, None] = OrderedDict()  # ids whose schema is not Avro

    def decode(self, payload: bytes | None) -> tuple[Record, WriterSchema]:
        if not payload:
            raise InvalidEvent(Reason.NULL_VALUE)
        if len(payload) < 5 or payload[0] != 0:
            raise InvalidEvent(Reason.BAD_FRAMING)
        schema_id = _CONFLUENT_ID.unpack_from(payload, 1)[0]
        entry = self._by_id.get(schema_id)
        if entry is None:
            entry = self._resolve(schema_id)
        return _decode_body(payload, 5, entry)

    def prefetch(self, payload: bytes | None) -> None:
        """Queue the look-up of this event's schema id now; it is decoded later.

        Why: events behind a held one wait for their own ids too; asking for them
        while the first look-up runs turns a burst of new ids into parallel work.
        """
        if payload and len(payload) >= 5 and payload[0] == 0:
            schema_id = _CONFLUENT_ID.unpack_from(payload, 1)[0]
            if schema_id not in self._by_id and schema_id not in self._overflow:
                self._resolver.resolve(schema_id)

    def _resolve(self, schema_id: int) -> _Entry:
        """Slow path: a schema id not in the main cache."""
        entry = self._overflow.get(schema_id)
        if entry is not None:
            self._overflow.move_to_end(schema_id)
            return entry
        if schema_id in self._unreadable:
            raise InvalidEvent(Reason.UNKNOWN_SCHEMA)
        answer = self._resolver.resolve(schema_id)
        if answer.state is Lookup.NOT_FOUND:
            raise InvalidEvent(Reason.UNKNOWN_SCHEMA)
        if answer.state is Lookup.PENDING:
            raise SchemaPending(schema_id, HoldReason.SCHEMA_LOOKUP)
        if answer.state is Lookup.UNREACHABLE or answer.schema_str is None:
            raise SchemaPending(schema_id, HoldReason.REGISTRY_UNREACHABLE)
        try:
            schema = json.loads(answer.schema_str)
            parsed = parse_schema(schema)
        except Exception:  # not Avro after all, or references we cannot resolve
            self._unreadable[schema_id] = None
            if len(self._unreadable) > _MAX_NEGATIVE:
                self._unreadable.popitem(last=False)
            raise InvalidEvent(Reason.UNKNOWN_SCHEMA) from None
        verdict, reasons = classify(self._contract, schema)
        writer = WriterSchema(f"id:{schema_id}", parsed, verdict, reasons)
        entry = _entry(self._contract, writer)
        if len(self._by_id) < self._max:
            self._by_id[schema_id] = entry
            self.writers[writer.key] = writer
        else:
            self.writers_not_listed += 1
            self._overflow[schema_id] = entry
            if len(self._overflow) > self._max:
                self._overflow.popitem(last=False)
        return entry
