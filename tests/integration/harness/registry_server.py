"""A minimal Confluent-Schema-Registry-compatible HTTP server for integration tests.

It stands in for Confluent Schema Registry, Karapace or Redpanda's built-in registry,
none of which can be installed on these machines, so that a Tidemark daemon running in
another process resolves schema ids over real HTTP through confluent-kafka's own
SchemaRegistryClient. It answers the REST calls that client makes (paths and response
shapes checked against confluent-kafka 2.16's `_sync/schema_registry_client.py`):

    GET  /schemas/ids/{id}                 {"schema": ...[, "schemaType", "references",
                                            "metadata", "ruleSet"]}
    POST /subjects/{subject}/versions      {"id": N}  (same schema text, metadata and
                                           ruleSet -> same global id)
    POST /subjects/{subject}               look-up of a registered schema
    GET  /subjects, /subjects/{s}/versions, /subjects/{s}/versions/{n|latest}
         (a version: {"subject", "version", "id", "schema"[, "schemaType", "references",
         "metadata", "ruleSet"]}, the data-contract fields as Confluent returns them)

Errors use the registry's JSON shape ({"error_code": 40403, "message": ...}). Test
controls: optional HTTP basic auth, `fail_with(status)` (e.g. 500, which the client
retries with backoff), `stop()`/`start()` on the same port (connection refused in
between), `hang()` (connections accepted, nothing answered until `recover()`),
`delay(seconds)` (every answer, 404s included, that much later),
`register(..., metadata=, rule_set=)` while running (a new latest version),
`delete_subject()`, and a request log (`count`) to assert caching. The log records the user
name presented, never a password.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import fastavro

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    path: str  # decoded, without the query string
    query: dict[str, list[str]]
    user: str | None  # basic-auth user presented, if any
    status: int


@dataclass(frozen=True, slots=True)
class _Schema:
    id: int
    text: str
    schema_type: str
    references: tuple[Any, ...]
    metadata: dict[str, Any] | None = None  # {"properties": {...}, "tags": ..., "sensitive": ...}
    rule_set: dict[str, Any] | None = None  # {"domainRules": [...], "migrationRules": [...]}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": self.text}
        if self.schema_type != "AVRO":
            out["schemaType"] = self.schema_type
        if self.references:
            out["references"] = list(self.references)
        if self.metadata is not None:
            out["metadata"] = self.metadata
        if self.rule_set is not None:
            out["ruleSet"] = self.rule_set
        return out


class _Error(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class RegistryServer:
    """Schema registry on 127.0.0.1 (`url`); use as a context manager or start()/stop()."""

    def __init__(self, credentials: tuple[str, str] | None = None, port: int = 0) -> None:
        self.credentials = credentials
        self.port = port
        self.requests: list[RequestRecord] = []
        self._failure: int | None = None
        self._delay = 0.0
        self._answering = threading.Event()  # cleared while hanging
        self._answering.set()
        self._lock = threading.RLock()  # _route holds it while _register takes it
        self._schemas: dict[int, _Schema] = {}
        self._ids: dict[tuple[str, str, str, str], int] = {}
        self._subjects: dict[str, list[int]] = {}  # subject -> schema id per version
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_config(self) -> dict[str, str]:
        """Settings for confluent-kafka's SchemaRegistryClient pointing here."""
        conf = {"url": self.url}
        if self.credentials is not None:
            conf["basic.auth.user.info"] = ":".join(self.credentials)
        return conf

    # --- lifecycle -----------------------------------------------------------------
    def start(self) -> RegistryServer:
        """Listen (again) on `port`; the first start picks a free port if it is 0."""
        if self._httpd is not None:
            return self
        handler = type("Handler", (_Handler,), {"registry": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() returns within 50 ms
            name=f"registry-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: clients get connection refused until start() is called again."""
        self._answering.set()  # hanging handlers finish instead of outliving the server
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- test controls -----------------------------------------------------------
    def fail_with(self, status: int | None) -> None:
        """Answer every request with `status` (e.g. 500 or 503) until called with None."""
        self._failure = status

    def hang(self) -> None:
        """Accept connections and read requests but answer nothing until recover()."""
        self._answering.clear()

    def recover(self) -> None:
        """Answer again; requests held by hang() get their (late) answers now."""
        self._answering.set()

    def delay(self, seconds: float) -> None:
        """Answer every request `seconds` late (0 for at once)."""
        self._delay = seconds

    def register(
        self,
        subject: str,
        schema: str,
        schema_type: str = "AVRO",
        *,
        metadata: dict[str, Any] | None = None,
        rule_set: dict[str, Any] | None = None,
    ) -> int:
        """Register directly (no HTTP, not logged); returns the global schema id.

        `metadata` and `rule_set` are the data-contract parts in Confluent's JSON shape;
        they are part of the schema's identity, as in Confluent's registry.
        """
        return self._register(subject, schema, schema_type, (), metadata, rule_set)

    def delete_subject(self, subject: str) -> None:
        """Forget a subject (all its versions), as a hard delete would."""
        with self._lock:
            self._subjects.pop(subject, None)

    def count(self, method: str | None = None, path_prefix: str = "/") -> int:
        """How many requests matched (all methods when `method` is None)."""
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method) and r.path.startswith(path_prefix)
            )

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # --- registry semantics -----------------------------------------------------------
    def _register(
        self,
        subject: str,
        text: str,
        schema_type: str,
        references: tuple[Any, ...],
        metadata: dict[str, Any] | None = None,
        rule_set: dict[str, Any] | None = None,
    ) -> int:
        if schema_type == "AVRO":
            try:
                fastavro.parse_schema(json.loads(text))
            except Exception as exc:
                raise _Error(422, 42201, f"Invalid schema: {exc}") from None
        key = _key(schema_type, text, references, metadata, rule_set)
        with self._lock:
            schema_id = self._ids.get(key)
            if schema_id is None:
                schema_id = len(self._schemas) + 1
                self._ids[key] = schema_id
                self._schemas[schema_id] = _Schema(
                    schema_id, text, schema_type, references, metadata, rule_set
                )
            versions = self._subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            return schema_id

    def _version(self, subject: str, version: str) -> dict[str, Any]:
        versions = self._subjects.get(subject)
        if not versions:
            raise _Error(404, 40401, f"Subject '{subject}' not found.")
        index = len(versions) if version in ("latest", "-1") else int(version)
        if not 1 <= index <= len(versions):
            raise _Error(404, 40402, f"Version {version} not found.")
        schema = self._schemas[versions[index - 1]]
        return {"subject": subject, "version": index, "id": schema.id, **schema.body()}

    def _route(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if method == "GET" and len(parts) == 3 and parts[:2] == ["schemas", "ids"]:
            schema = self._schemas.get(int(parts[2])) if parts[2].isdigit() else None
            if schema is None:
                raise _Error(404, 40403, "Schema not found")
            return schema.body()
        if parts[0] == "subjects":
            if method == "GET" and len(parts) == 1:
                return sorted(self._subjects)
            if method == "GET" and len(parts) == 3 and parts[2] == "versions":
                if parts[1] not in self._subjects:
                    raise _Error(404, 40401, f"Subject '{parts[1]}' not found.")
                return list(range(1, len(self._subjects[parts[1]]) + 1))
            if method == "GET" and len(parts) == 4 and parts[2] == "versions":
                return self._version(parts[1], parts[3])
            if method == "POST" and len(parts) in (2, 3) and body is not None:
                text, stype = body.get("schema", ""), body.get("schemaType", "AVRO")
                refs = tuple(body.get("references") or ())
                meta, rules = body.get("metadata"), body.get("ruleSet")
                if len(parts) == 3 and parts[2] == "versions":
                    return {"id": self._register(parts[1], text, stype, refs, meta, rules)}
                if len(parts) == 2:
                    key = _key(stype, text, refs, meta, rules)
                    versions = self._subjects.get(parts[1], [])
                    if self._ids.get(key) not in versions:
                        raise _Error(404, 40403, "Schema not found")
                    return self._version(parts[1], str(versions.index(self._ids[key]) + 1))
        raise _Error(404, 404, f"HTTP 404 Not Found: {method} {path}")


def _key(
    schema_type: str,
    text: str,
    references: tuple[Any, ...],
    metadata: dict[str, Any] | None,
    rule_set: dict[str, Any] | None,
) -> tuple[str, str, str, str]:
    extras = json.dumps([metadata, rule_set], sort_keys=True)
    return (schema_type, text, json.dumps(references, sort_keys=True), extras)


class _Handler(BaseHTTPRequestHandler):
    registry: RegistryServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        reg = self.registry
        user, authorized = self._auth()
        reg._answering.wait(120)  # bounded: a forgotten hang() cannot wedge a test forever
        if reg._delay:
            time.sleep(reg._delay)
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not authorized:
                raise _Error(401, 401, "Unauthorized")
            if reg._failure is not None:
                raise _Error(reg._failure, 50001, "simulated registry outage")
            body = json.loads(raw) if raw else None
            with reg._lock:
                status, payload = 200, reg._route(method, path, body)
        except _Error as exc:
            status, payload = exc.status, {"error_code": exc.code, "message": exc.message}
        except (ValueError, KeyError) as exc:
            status, payload = 422, {"error_code": 422, "message": f"Unprocessable: {exc}"}
        with reg._lock:
            reg.requests.append(RequestRecord(method, path, query, user, status))
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", _CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="SchemaRegistry"')
        try:
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a late answer (hang, delay) to a client that gave up: as a real server

    def _auth(self) -> tuple[str | None, bool]:
        header = self.headers.get("Authorization", "")
        user, password = None, None
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                user = None
        expected = self.registry.credentials
        return user, expected is None or (user, password) == expected
