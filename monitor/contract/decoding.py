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
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from io import BytesIO
from typing import Any, Protocol

from fastavro import parse_schema, schemaless_reader
from fastavro._read_py import read_data as python_read_data
from fastavro.io.binary_decoder import BinaryDecoder

from monitor.contract.eventtime import RawEventTime
from monitor.contract.hazards import is_recursive, without_bytes_decimals
from monitor.contract.model import (
    UNSAFE_PREFIX,
    Contract,
    Verdict,
    WriterSchema,
    canonical_form,
    classify,
    rabin_fingerprint,
    unsafe_writer,
)
from monitor.contract.registry import Lookup, Resolution
from monitor.errors import ContractError

Record = dict[str, Any]

_CONFLUENT_ID = struct.Struct(">I")
_MAX_NEGATIVE = 1024  # remembered unreadable schema ids; random garbage must not grow memory
DEFAULT_MAX_PAYLOAD = 1024 * 1024  # bytes; a decoded event can cost ~200x its size in memory


class Reason(StrEnum):
    """Why an event breaks the contract; the `reason` label of contract_violations."""

    DECODE_ERROR = "decode_error"
    UNKNOWN_SCHEMA = "unknown_schema"
    NULL_VALUE = "null_value"
    BAD_FRAMING = "bad_framing"
    INCOMPATIBLE_SCHEMA = "incompatible_schema"
    PAYLOAD_TOO_LARGE = "payload_too_large"  # over the product's max_payload_bytes
    UNSAFE_SCHEMA = "unsafe_schema"  # writer schema refused: see monitor.contract.hazards
    NESTING_TOO_DEEP = "nesting_too_deep"  # a self-containing type nested past the limit
    MISSING_EVENT_TIME = "missing_event_time"  # raised by the pipeline
    BAD_EVENT_TIME = "bad_event_time"  # raised by the pipeline


class InvalidEvent(Exception):  # noqa: N818 - the name the pipeline uses
    """One event that breaks the contract. Raised per event, so kept cheap."""

    __slots__ = ("reason", "writer")

    def __init__(self, reason: Reason, writer: WriterSchema | None = None) -> None:
        self.reason = reason
        self.writer = writer  # set for INCOMPATIBLE/UNSAFE_SCHEMA, so drift can be counted

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


# Every nesting level of a self-containing type costs at least one byte (a union index
# or an array block count), and fastavro's compiled reader uses ~1.5 KB of C stack per
# level (8 MB crashed at ~5000 levels). Up to this many bytes the nesting cannot reach
# 1 MB of stack, so the compiled reader is safe; larger payloads of such schemas are
# read by the pure-Python reader, which stops at the recursion limit (~100-250 levels).
_COMPILED_SAFE_BYTES = 512
_ANY_SIZE = 2**63
_MAX_VARINT_BYTES = 10  # an Avro long (64 bits, zig-zag) never takes more


class _BoundedDecoder(BinaryDecoder):
    """fastavro's pure-Python decoder, with varints of at most 10 bytes.

    Its own read_long accepts any number of continuation bytes, growing a Python int
    as it goes: quadratic, so 1 MiB of 0xFF bytes took 93 s.
    """

    def __init__(self, fo: BytesIO) -> None:
        super().__init__(fo)  # type: ignore[no-untyped-call]

    def read_long(self) -> int:
        read = self.fo.read
        c = read(1)
        if not c:
            raise EOFError
        b: int = c[0]
        n = b & 0x7F
        shift = 7
        while b & 0x80:
            if shift >= 7 * _MAX_VARINT_BYTES:
                raise ValueError("varint longer than 10 bytes")
            c = read(1)
            if not c:
                raise EOFError
            b = c[0]
            n |= (b & 0x7F) << shift
            shift += 7
        return (n >> 1) ^ -(n & 1)

    read_int = read_long


class _PythonReader:
    """fastavro's pure-Python schemaless reader for one writer (and reader) schema.

    Recursion here is Python recursion: RecursionError at the interpreter's limit
    instead of a C stack overflow. The schemas are parsed once, not per event.
    """

    _OPTIONS: dict[str, Any] = {
        "return_record_name": False,
        "return_record_name_override": False,
        "handle_unicode_errors": "strict",
        "return_named_type": False,
        "return_named_type_override": False,
    }

    def __init__(self, writer_schema: Any, reader_schema: Any) -> None:
        self._named: dict[str, dict[str, Any]] = {"writer": {}, "reader": {}}
        self._writer = parse_schema(writer_schema, self._named["writer"])
        self._reader = (
            parse_schema(reader_schema, self._named["reader"])
            if reader_schema is not None and reader_schema != writer_schema
            else None
        )

    def __call__(self, fo: BytesIO) -> Any:
        return python_read_data(  # type: ignore[no-untyped-call]
            _BoundedDecoder(fo), self._writer, self._named, self._reader, self._OPTIONS
        )


_READ_OPTIONS: dict[str, Any] = {
    "return_record_name": False,
    "return_record_name_override": False,
    "handle_unicode_errors": "strict",
    "return_named_type": False,
    "return_named_type_override": False,
}

# fastavro's compiled reader, the call schemaless_reader ends in (not in its stubs).
_compiled_read_data: Callable[..., Any] | None
try:
    from fastavro import _read as _fastavro_compiled

    _compiled_read_data = getattr(_fastavro_compiled, "_read_data", None)
except ImportError:  # pragma: no cover - a fastavro without its compiled extension
    _compiled_read_data = None


def _named_schemas(writer_schema: Any, reader_schema: Any) -> tuple[Any, dict[str, Any]]:
    """(reader schema, named-schema table) exactly as schemaless_reader sets them up per call.

    Why: per event, schemaless_reader compares the two schemas, builds a fresh
    named-schema table and an options dict and re-enters parse_schema, ~0.4 µs
    of a ~3 µs decode. Done once per writer here; the decode itself is then
    fastavro's own compiled `_read_data`, the call schemaless_reader ends in, so
    every record and every error is what schemaless_reader gives.
    """
    if writer_schema == reader_schema:
        reader_schema = None  # as schemaless_reader does
    named: dict[str, dict[str, Any]] = {"writer": {}, "reader": {}}
    parse_schema(writer_schema, named["writer"])
    if reader_schema:
        reader_schema = parse_schema(reader_schema, named["reader"])
    return reader_schema or None, named


@dataclass(frozen=True, slots=True)
class _Entry:
    """How the bodies of one writer schema are decoded, decided once per writer."""

    writer: WriterSchema
    schema: Any  # what the bytes are decoded with; None when they must not be
    reader_schema: Any  # the contract when resolving a compatible writer, else None
    python: _PythonReader | None  # for payloads over _COMPILED_SAFE_BYTES (recursive)
    refused: Reason  # why, when schema is None
    raw: RawEventTime | None = None  # set when the event time is decoded as a plain long
    # With fastavro's compiled reader: the reader schema and named-schema table it is
    # called with (see _named_schemas); None when refused or without it.
    compiled: tuple[Any, dict[str, Any]] | None = None


def _entry(contract: Contract, writer: WriterSchema, raw: RawEventTime | None = None) -> _Entry:
    if writer.verdict is Verdict.CONFORMING:
        # Same bytes as the contract: decode with the contract itself, which is
        # fastest (no resolution) and keeps the contract's logical types, except
        # the event-time field's on the fast path (see RawEventTime).
        schema, reader_schema = (contract.parsed, None) if raw is None else (raw.schema, None)
    elif writer.verdict is Verdict.COMPATIBLE:
        schema, reader_schema = writer.parsed, contract.parsed
    else:
        unsafe = any(r.startswith(UNSAFE_PREFIX) for r in writer.reasons)
        refused = Reason.UNSAFE_SCHEMA if unsafe else Reason.INCOMPATIBLE_SCHEMA
        return _Entry(writer, None, None, None, refused)
    schema = without_bytes_decimals(schema)
    if reader_schema is not None:
        reader_schema = without_bytes_decimals(reader_schema)
    deep = is_recursive(schema) or (reader_schema is not None and is_recursive(reader_schema))
    python = _PythonReader(schema, reader_schema) if deep else None
    if writer.verdict is not Verdict.CONFORMING:
        raw = None
    compiled = _named_schemas(schema, reader_schema) if _compiled_read_data else None
    return _Entry(writer, schema, reader_schema, python, Reason.DECODE_ERROR, raw, compiled)


def _decode_body(payload: bytes, offset: int, entry: _Entry) -> tuple[Record, WriterSchema]:
    writer_schema = entry.schema
    if writer_schema is None:
        raise InvalidEvent(entry.refused, entry.writer)
    fo = BytesIO(payload)
    fo.seek(offset)
    try:
        python = entry.python
        compiled = entry.compiled
        if python is not None and len(payload) > _COMPILED_SAFE_BYTES:
            record: Record = python(fo)
        elif compiled is not None:  # schemaless_reader without its per-call set-up
            record = _compiled_read_data(fo, writer_schema, compiled[1], compiled[0], _READ_OPTIONS)  # type: ignore[misc]
        else:
            record = schemaless_reader(fo, writer_schema, entry.reader_schema)  # type: ignore[assignment]
    except RecursionError:
        raise InvalidEvent(Reason.NESTING_TOO_DEEP) from None
    except Exception:  # fastavro raises a zoo of types on bad bytes; all mean the same
        raise InvalidEvent(Reason.DECODE_ERROR) from None
    if fo.tell() != len(payload):  # a garbage payload whose prefix happens to decode
        raise InvalidEvent(Reason.DECODE_ERROR)
    raw = entry.raw
    if raw is not None:  # refuse what the datetime conversion refused
        if raw.top is not None:  # a top-level field: RawEventTime.check inline
            value = record.get(raw.top)
            if type(value) is int and not raw.low <= value <= raw.high:
                raise InvalidEvent(Reason.DECODE_ERROR)
        elif not raw.check(record):
            raise InvalidEvent(Reason.DECODE_ERROR)
    return record, entry.writer


class RawAvroDecoder:
    """Schemaless Avro written with exactly the contract (no framing, no schema id)."""

    def __init__(
        self,
        contract: Contract,
        *,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD,
        raw_event_time: RawEventTime | None = None,
    ) -> None:
        writer = WriterSchema("contract", contract.parsed, Verdict.CONFORMING, ())
        self.writers: dict[str, WriterSchema] = {writer.key: writer}
        self._entry = _entry(contract, writer, raw_event_time)
        self._max_payload = max_payload_bytes

    def decode(self, payload: bytes | None) -> tuple[Record, WriterSchema]:
        if not payload:
            raise InvalidEvent(Reason.NULL_VALUE)
        if len(payload) > self._max_payload:
            raise InvalidEvent(Reason.PAYLOAD_TOO_LARGE)
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
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD,
        raw_event_time: RawEventTime | None = None,
    ) -> None:
        self.writers: dict[str, WriterSchema] = {}
        self._by_fp: dict[bytes, _Entry] = {}
        self._max_payload = max_payload_bytes
        for i, schema in enumerate([contract.schema, *(writer_schemas or [])]):
            try:
                parsed = parse_schema(schema)
                fp = rabin_fingerprint(canonical_form(schema))
            except Exception as exc:
                raise ContractError(
                    f"writer_schemas[{i - 1}] listed for contract {contract.path} is not "
                    f"valid Avro: {exc}"
                ) from None
            unsafe = unsafe_writer(schema)
            if unsafe:  # listed in config: the operator can fix it before we start
                raise ContractError(
                    f"writer_schemas[{i - 1}] listed for contract {contract.path}: "
                    + "; ".join(r.removeprefix(UNSAFE_PREFIX) for r in unsafe)
                )
            if fp in self._by_fp:
                continue
            verdict, reasons = classify(contract, schema)
            writer = WriterSchema(f"fp:{fp.hex()}", parsed, verdict, reasons)
            self._by_fp[fp] = _entry(contract, writer, raw_event_time)
            if len(self.writers) < max_writer_schemas:
                self.writers[writer.key] = writer

    def decode(self, payload: bytes | None) -> tuple[Record, WriterSchema]:
        if not payload:
            raise InvalidEvent(Reason.NULL_VALUE)
        if len(payload) > self._max_payload:
            raise InvalidEvent(Reason.PAYLOAD_TOO_LARGE)
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
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD,
        raw_event_time: RawEventTime | None = None,
    ) -> None:
        self.writers: dict[str, WriterSchema] = {}
        self.writers_not_listed = 0  # writers decoded but left out of `writers` (full)
        self._contract = contract
        self._raw = raw_event_time
        self._resolver = resolver
        self._max = max_writer_schemas
        self._max_payload = max_payload_bytes
        self._by_id: dict[int, _Entry] = {}
        self._overflow: OrderedDict[int, _Entry] = OrderedDict()  # LRU beyond the limit
        self._unreadable: OrderedDict[int, None] = OrderedDict()  # ids whose schema is not Avro

    def decode(self, payload: bytes | None) -> tuple[Record, WriterSchema]:
        if not payload:
            raise InvalidEvent(Reason.NULL_VALUE)
        if len(payload) > self._max_payload:
            raise InvalidEvent(Reason.PAYLOAD_TOO_LARGE)
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
        entry = _entry(self._contract, writer, self._raw)
        if len(self._by_id) < self._max:
            self._by_id[schema_id] = entry
            self.writers[writer.key] = writer
        else:
            self.writers_not_listed += 1
            self._overflow[schema_id] = entry
            if len(self._overflow) > self._max:
                self._overflow.popitem(last=False)
        return entry
