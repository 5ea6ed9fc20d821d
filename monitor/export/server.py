"""HTTP endpoints: /metrics, /healthz (the poll loop is alive), /readyz (assigned).

One asyncio event loop in one thread owns every connection, so a client that sends
half a request costs a socket, never a thread. What keeps a flood of such clients
from delaying a scrape:

- at most `max_connections` are open. When full, the connection that has waited
  longest for its request to arrive is dropped to admit the new one: a scraper
  sends its request within milliseconds of connecting, a slow-loris never does.
  Connections are accepted in small batches so a scraper's request is read before
  enough newer arrivals could push it out;
- the TLS handshake and the request head must arrive within `read_timeout`; a
  keep-alive connection may idle `idle_timeout` between requests; a response must
  be taken by the client within `write_timeout`; request heads are at most 8 KiB;
- TLS state is made only once a ClientHello arrives (see _Channel), so silent
  clients cost no more over HTTPS than over HTTP;
- rendering /metrics and bcrypt checks run on two small fixed thread pools.

/metrics speaks what Prometheus asks for through prometheus-client's own encoders:
OpenMetrics by Accept, gzip by Accept-Encoding, `name[]` filtering. TLS and basic
auth come from the web-config file (monitor/export/webconfig.py). Basic auth guards
/metrics and /violations (JSON: where the last bad events are, never a payload)
only: /healthz and /readyz say one line about liveness and are what
Kubernetes probes call, and probes cannot carry credentials without putting the
password in the pod spec.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import http.client
import io
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import Message
from urllib.parse import parse_qs

import structlog
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import CollectorRegistry

from monitor.errors import ConfigError
from monitor.export.exposition import TidemarkRegistry
from monitor.export.webconfig import BasicAuth, WebConfig
from monitor.runtime.health import HealthState

log = structlog.get_logger("tidemark.http")

MAX_HEAD_BYTES = 8192
_CHUNK = 65536
_BACKLOG = 512
_RENDER_THREADS = 2
_AUTH_THREADS = 1
_AUTH_QUEUE = 4  # bcrypt checks waiting or running at most
_REPORT_EVERY = 60.0
_TEXT = "text/plain; charset=utf-8"
_INDEX = b"tidemark: see /metrics, /violations, /healthz, /readyz\n"

Headers = list[tuple[str, str]]
Response = tuple[int, Headers, bytes]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on connections and on how long a client may take (seconds)."""

    max_connections: int = 64
    read_timeout: float = 5.0
    write_timeout: float = 10.0
    idle_timeout: float = 30.0


@dataclass(slots=True)
class ServerStats:
    """Connection outcomes, counted on the event loop thread (read them for tests)."""

    accepted: int = 0
    requests: int = 0
    evicted: int = 0  # waiting for a request, dropped to admit a newer connection
    timed_out: int = 0  # handshake, request or response not done in time
    refused: int = 0  # full, and every connection was being answered
    tls_failed: int = 0
    unauthorized: int = 0
    auth_busy: int = 0  # new credentials refused (503) while bcrypt was saturated
    open: int = 0


@dataclass(eq=False, slots=True)
class _Conn:
    transport: asyncio.Transport
    since: float  # monotonic: when it began waiting for its current request
    busy: bool = False  # a request is being answered: never evicted
    task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    query: str
    headers: Message
    keep_alive: bool


class _BadRequestError(Exception):
    """Answer with this status and close the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Channel:
    """One connection's bytes, in the clear or through TLS (ssl.SSLObject on memory BIOs).

    TLS is done here rather than with asyncio's start_tls because asyncio gives every
    TLS connection a 256 KiB buffer the moment it starts, before the client has sent
    a byte; a flood of silent connections took the daemon from 70 to 370 MiB RSS.
    Here a connection holds what it has sent and OpenSSL's state, nothing more.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        context: ssl.SSLContext | None,
    ) -> None:
        self._reader, self._writer = reader, writer
        self._buffer = bytearray()  # received bytes in the clear, not yet parsed
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.context = context
        self.tls: ssl.SSLObject | None = None  # made when the ClientHello starts to arrive

    @property
    def buffered(self) -> bool:
        return bool(self._buffer)

    def _flush_tls(self) -> None:
        pending = self._outgoing.read()
        if pending:
            self._writer.write(pending)

    async def _fill(self) -> bool:
        """Raw bytes from the socket into the TLS engine; False at end of stream."""
        data = await self._reader.read(_CHUNK)
        if not data:
            self._incoming.write_eof()
            return False
        self._incoming.write(data)
        return True

    async def handshake(self) -> None:
        assert self.context is not None
        if not await self._fill():
            raise ConnectionResetError("closed before the TLS handshake")
        self.tls = self.context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        while True:
            try:
                self.tls.do_handshake()
                self._flush_tls()
                return
            except ssl.SSLWantReadError:
                self._flush_tls()
                if not await self._fill():
                    raise ConnectionResetError("closed during the TLS handshake") from None
            except ssl.SSLError:
                self._flush_tls()  # the alert tells the client what was wrong
                raise

    async def receive(self) -> bool:
        """Append what arrives next to the buffer; False at the end of the connection."""
        if self.tls is None:
            data = await self._reader.read(_CHUNK)
        else:
            while True:
                try:
                    data = self.tls.read(_CHUNK)
                    break
                except ssl.SSLWantReadError:
                    self._flush_tls()
                    if not await self._fill():
                        data = b""
                        break
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    data = b""
                    break
            self._flush_tls()
        self._buffer += data
        return bool(data)

    async def read_head(self) -> bytes | None:
        """The next request head (through the blank line); None at a clean end."""
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise _BadRequestError(431, "request head too large")
            if not await self.receive():
                if self._buffer:
                    raise _BadRequestError(400, "incomplete request")
                return None
        if end + 4 > MAX_HEAD_BYTES:
            raise _BadRequestError(431, "request head too large")
        head = bytes(self._buffer[: end + 4])
        del self._buffer[: end + 4]
        return head

    def send(self, data: bytes) -> None:
        if self.tls is None:
            self._writer.write(data)
        else:
            self.tls.write(data)
            self._flush_tls()

    async def drain(self) -> None:
        await self._writer.drain()

    def close_notify(self) -> None:
        """Tell a TLS peer we are done (without waiting for its reply)."""
        if self.tls is not None:
            with contextlib.suppress(ssl.SSLError):
                self.tls.unwrap()
            self._flush_tls()


class MetricsServer:
    """Serves /metrics, /healthz and /readyz; scrapes read in-memory state only."""

    def __init__(
        self,
        registry: CollectorRegistry,
        health: HealthState,
        bind: str,
        port: int,
        *,
        limits: Limits | None = None,
        web: WebConfig | None = None,
        violations: Callable[[], bytes] | None = None,
    ) -> None:
        self._registry = registry
        self._violations = violations  # /violations JSON; guarded like /metrics
        self._health = health
        self._limits = limits or Limits()
        self._tls = web.tls if web else None
        self._auth: BasicAuth | None = web.auth if web else None
        self._bind = bind or "0.0.0.0"
        self._sock = _listen(self._bind, port)
        self._conns: set[_Conn] = set()
        self.stats = ServerStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._render_pool = ThreadPoolExecutor(_RENDER_THREADS, "tidemark-http-render")
        self._auth_pool = ThreadPoolExecutor(_AUTH_THREADS, "tidemark-http-auth")
        self._stopped = False
        self._reported = ServerStats()
        self._auth_pending = 0

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def scheme(self) -> str:
        return "https" if self._tls else "http"

    def url(self, path: str = "/metrics") -> str:
        """Where this server answers, for logs and tests (wildcards become loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self._bind, self._bind)
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}{path}"

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        # asyncio accepts at most `backlog` connections per loop turn. A small batch
        # lets a scraper that connected among a flood be read (and so marked busy,
        # never evicted) before max_connections newer arrivals could push it out;
        # the kernel's queue is then set back to the full _BACKLOG.
        batch = max(1, min(16, self._limits.max_connections // 8))
        self._server = loop.run_until_complete(
            asyncio.start_server(
                self._on_connect, sock=self._sock, limit=MAX_HEAD_BYTES, backlog=batch
            )
        )
        self._sock.listen(_BACKLOG)
        loop.call_soon(self._report_drops)
        self._thread = threading.Thread(target=loop.run_forever, name="tidemark-http", daemon=True)
        self._thread.start()
        if self._auth and not self._tls:
            log.warning("http_basic_auth_without_tls", hint="passwords cross the network in clear")
        log.info(
            "http_server_started",
            url=self.url(),
            tls=self._tls is not None,
            client_auth=self._tls.client_auth_type if self._tls else None,
            basic_auth_users=len(self._auth.users) if self._auth else 0,
            max_connections=self._limits.max_connections,
        )

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            self._sock.close()
        else:
            done = asyncio.run_coroutine_threadsafe(self._close(), loop)
            try:
                done.result(timeout=5)
            except Exception as exc:
                log.warning("http_server_stop_incomplete", error=repr(exc))
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            if not thread.is_alive():
                loop.close()
        self._render_pool.shutdown(wait=False, cancel_futures=True)
        self._auth_pool.shutdown(wait=False, cancel_futures=True)

    def _report_drops(self) -> None:
        """One log line a minute while clients are turned away, never one per client:
        a flood must not become a log flood. Runs on the event loop."""
        now, last = self.stats, self._reported
        fields = ("evicted", "timed_out", "refused", "tls_failed", "unauthorized", "auth_busy")
        delta = {f: getattr(now, f) - getattr(last, f) for f in fields}
        if any(delta.values()):
            log.warning("http_clients_turned_away", interval_seconds=_REPORT_EVERY, **delta)
        self._reported = dataclasses.replace(now)
        if self._loop is not None and not self._stopped:
            self._loop.call_later(_REPORT_EVERY, self._report_drops)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [c.task for c in self._conns if c.task is not None]
        for conn in list(self._conns):
            self._drop(conn)
        if tasks:
            await asyncio.wait(tasks, timeout=2)

    # --- connections -------------------------------------------------------------

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Runs inside connection_made: admit or refuse before a byte is read."""
        transport = writer.transport
        assert isinstance(transport, asyncio.Transport)
        self.stats.accepted += 1
        if not self._make_room():
            self.stats.refused += 1
            transport.abort()
            return
        conn = _Conn(transport, time.monotonic())
        self._conns.add(conn)
        self.stats.open = len(self._conns)
        assert self._loop is not None
        conn.task = self._loop.create_task(self._serve(conn, reader, writer))

    def _make_room(self) -> bool:
        if len(self._conns) < self._limits.max_connections:
            return True
        waiting = [c for c in self._conns if not c.busy]
        if not waiting:
            return False
        self._drop(min(waiting, key=lambda c: c.since))
        self.stats.evicted += 1
        return True

    def _drop(self, conn: _Conn) -> None:
        self._conns.discard(conn)
        self.stats.open = len(self._conns)
        conn.transport.abort()
        if conn.task is not None and conn.task is not asyncio.current_task():
            conn.task.cancel()

    async def _serve(
        self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        limits = self._limits
        loop = asyncio.get_running_loop()
        deadline: float | None = loop.time() + limits.read_timeout
        graceful = False
        channel = _Channel(reader, writer, None)
        try:
            channel.context = self._tls.context() if self._tls else None
            if channel.context is not None:
                try:
                    async with asyncio.timeout_at(deadline):
                        await channel.handshake()
                except ssl.SSLError as exc:
                    self.stats.tls_failed += 1
                    log.debug("http_tls_handshake_failed", error=exc.reason or str(exc))
                    return
            while True:
                conn.busy, conn.since = False, time.monotonic()
                try:
                    request = await self._read_request(channel, deadline)
                except _BadRequestError as bad:
                    conn.busy = True
                    body = f"{bad.reason}\n".encode()
                    await self._write(channel, bad.status, [("Content-Type", _TEXT)], body, False)
                    graceful = True
                    return
                if request is None:
                    graceful = True
                    return
                conn.busy = True
                self.stats.requests += 1
                status, headers, body = await self._answer(request)
                if request.method == "HEAD":
                    headers.append(("Content-Length", str(len(body))))
                    body = b""
                await self._write(channel, status, headers, body, request.keep_alive)
                if not request.keep_alive:
                    graceful = True
                    return
                deadline = None
        except TimeoutError:
            self.stats.timed_out += 1
        except (OSError, ssl.SSLError):
            pass  # the client went away or broke the protocol: nothing to answer
        except Exception:
            log.exception("http_connection_failed")
        finally:
            self._conns.discard(conn)
            self.stats.open = len(self._conns)
            try:
                if graceful:
                    # Let the response drain, but not forever.
                    channel.close_notify()
                    writer.close()
                    async with asyncio.timeout(limits.write_timeout):
                        await writer.wait_closed()
            except Exception:  # noqa: S110 - the peer is gone either way
                pass
            finally:
                conn.transport.abort()
                conn.task = None  # no cycle through a cancelled task's traceback

    async def _read_request(self, channel: _Channel, deadline: float | None) -> _Request | None:
        """The next request head, or None at a clean end of the connection.

        `deadline` bounds a first request (and the handshake before it); later
        requests on a kept-alive connection may wait `idle_timeout` to begin and
        then have `read_timeout` to complete.
        """
        if deadline is None:
            if not channel.buffered:
                async with asyncio.timeout(self._limits.idle_timeout):
                    if not await channel.receive():
                        return None
            deadline = asyncio.get_running_loop().time() + self._limits.read_timeout
        async with asyncio.timeout_at(deadline):
            head = await channel.read_head()
        return None if head is None else _parse_head(head)

    async def _write(
        self,
        channel: _Channel,
        status: int,
        headers: Headers,
        body: bytes,
        keep_alive: bool,
    ) -> None:
        lines = [f"HTTP/1.1 {status} {_reason(status)}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if not any(k == "Content-Length" for k, _ in headers):
            lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
        channel.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        async with asyncio.timeout(self._limits.write_timeout):
            await channel.drain()

    # --- requests ----------------------------------------------------------------

    async def _answer(self, request: _Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            request.keep_alive = False  # a body may follow that we will not read
            return 405, [("Allow", "GET, HEAD"), ("Content-Type", _TEXT)], b"use GET\n"
        path, now = request.path, time.time()
        if path in ("/metrics", "/violations"):
            allowed = await self._authorized(request.headers) if self._auth else True
            if allowed is None:
                self.stats.auth_busy += 1
                request.keep_alive = False
                return 503, [("Retry-After", "1"), ("Content-Type", _TEXT)], b"busy\n"
            if not allowed:
                self.stats.unauthorized += 1
                headers = [("WWW-Authenticate", 'Basic realm="tidemark"'), ("Content-Type", _TEXT)]
                return 401, headers, b"unauthorized\n"
        if path == "/violations":
            if self._violations is None:
                return _text(404, b"not found\n")
            try:  # takes the pipeline lock briefly: off the event loop
                body = await asyncio.get_running_loop().run_in_executor(
                    self._render_pool, self._violations
                )
            except Exception:
                log.exception("http_render_failed")
                return 500, [("Content-Type", _TEXT)], b"internal error\n"
            return 200, [("Content-Type", "application/json")], body
        if path == "/metrics":
            loop = asyncio.get_running_loop()
            accept = request.headers.get("Accept", "")
            encoding = request.headers.get("Accept-Encoding", "")
            try:
                return await loop.run_in_executor(
                    self._render_pool, self._render, accept, encoding, request.query
                )
            except Exception:
                log.exception("http_render_failed")
                return 500, [("Content-Type", _TEXT)], b"internal error\n"
        if path == "/healthz":
            ok = self._health.alive(now)
            return _text(200 if ok else 503, b"ok\n" if ok else b"poll loop stalled\n")
        if path == "/readyz":
            ok = self._health.ready(now)
            if ok:
                return _text(200, b"ready\n")
            return _text(503, b"not ready: " + _why_not_ready(self._health, now).encode() + b"\n")
        if path == "/":
            return _text(200, _INDEX)
        return _text(404, b"not found\n")

    async def _authorized(self, headers: Message) -> bool | None:
        """True/False; None when too many bcrypt checks are already queued.

        A credential that passed before is checked on the loop at once. New ones
        cost ~60 ms of bcrypt each, so a password guesser could otherwise fill every
        connection slot with requests waiting for the auth thread, and a scraper
        whose credentials are cached could not get in.
        """
        assert self._auth is not None
        creds = BasicAuth.credentials(headers.get("Authorization"))
        if creds is None:
            return False
        if self._auth.cached(*creds):
            return True
        if self._auth_pending >= _AUTH_QUEUE:
            return None
        self._auth_pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._auth_pool, self._auth.verify, *creds)
        finally:
            self._auth_pending -= 1

    def _render(self, accept: str, encoding: str, query: str) -> Response:
        """prometheus-client's negotiation (see exposition._bake_output), public API only."""
        encoder, content_type = choose_encoder(accept)
        names = parse_qs(query).get("name[]")
        if isinstance(self._registry, TidemarkRegistry) and not names:
            openmetrics = content_type.startswith("application/openmetrics-text")
            body = self._registry.exposition(encoder, openmetrics)
        else:
            registry = self._registry.restricted_registry(names) if names else self._registry
            body = encoder(registry)
        headers = [("Content-Type", content_type), ("Vary", "Accept, Accept-Encoding")]
        if gzip_accepted(encoding):
            # Level 1: at 1,000 topics the body is ~8 MB, and level 9 costs ~0.2 s of
            # CPU a scrape for ~15% fewer bytes.
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        return 200, headers, body


def _text(status: int, body: bytes) -> Response:
    return status, [("Content-Type", _TEXT)], body


def _reason(status: int) -> str:
    try:
        return http.client.responses[status]
    except KeyError:
        return "Unknown"


def _parse_head(head: bytes) -> _Request:
    line, _, rest = head.partition(b"\r\n")
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequestError(400, "malformed request line")
    method, target, version = parts
    try:
        headers = http.client.parse_headers(io.BytesIO(rest))
    except http.client.HTTPException:
        raise _BadRequestError(431, "too many or too long headers") from None
    has_body = headers.get("Transfer-Encoding") or headers.get("Content-Length", "0").strip() != "0"
    if method in ("GET", "HEAD") and has_body:
        raise _BadRequestError(400, "request bodies are not accepted")
    tokens = {t.strip().lower() for t in headers.get("Connection", "").split(",")}
    keep_alive = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
    path, _, query = target.partition("?")
    return _Request(method, path, query, headers, keep_alive)


def _listen(bind: str, port: int) -> socket.socket:
    """A listening socket of the family `bind` needs; "::" also takes IPv4 where it can."""
    try:
        infos = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        dual = family == socket.AF_INET6 and sockaddr[0] == "::" and socket.has_dualstack_ipv6()
        return socket.create_server(sockaddr, family=family, backlog=_BACKLOG, dualstack_ipv6=dual)
    except OSError as exc:
        raise ConfigError(
            f"server.bind_address/server.port: cannot listen on {bind!r} port {port}: "
            f"{exc.strerror or exc}"
        ) from None


def _why_not_ready(health: HealthState, now: float) -> str:
    return health.not_ready_reason(now) or "starting"
