"""HTTP endpoints: /metrics, /healthz (the poll loop is alive), /readyz (assigned)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from monitor.runtime.health import HealthState


class MetricsServer:
    """A small threaded server; scrapes read in-memory state only."""

    def __init__(
        self, registry: CollectorRegistry, health: HealthState, bind: str, port: int
    ) -> None:
        handler = _make_handler(registry, health)
        self.httpd = ThreadingHTTPServer((bind, port), handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="tidemark-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _make_handler(registry: CollectorRegistry, health: HealthState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "tidemark"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            now = time.time()
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = health.alive(now)
                self._send(200 if ok else 503, b"ok\n" if ok else b"poll loop stalled\n")
            elif path == "/readyz":
                ok = health.ready(now)
                reason = (
                    b"ready\n"
                    if ok
                    else b"not ready: " + _why_not_ready(health, now).encode() + b"\n"
                )
                self._send(200 if ok else 503, reason)
            elif path == "/":
                self._send(200, b"tidemark: see /metrics, /healthz, /readyz\n")
            else:
                self._send(404, b"not found\n")

        def _send(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would drown the log

    return Handler


def _why_not_ready(health: HealthState, now: float) -> str:
    return health.not_ready_reason(now) or "starting"
