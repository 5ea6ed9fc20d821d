"""The HTTP endpoint with real clients on loopback: exposition, IPv6, bounds, TLS, auth."""

from __future__ import annotations

import base64
import gzip
import http.client
import re
import shutil
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily

from monitor.config import load_settings
from monitor.errors import ConfigError
from monitor.export import server as server_module
from monitor.export.server import MAX_HEAD_BYTES, Limits, MetricsServer
from monitor.export.webconfig import WebConfig, load_web_config
from monitor.runtime.health import HealthState

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from harness.certs import TLSFiles, make_tls_files  # noqa: E402

PASSWORD = "s3cret-scrape"
# cost 4 keeps the tests fast; production hashes use 10+ (htpasswd -nBC 10)
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()

StartServer = Callable[..., MetricsServer]


@pytest.fixture()
def registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=True)
    Counter("tidemark_demo_events", "events seen", registry=reg).inc(3)
    Gauge("tidemark_demo_lag", "lag", registry=reg).set(7)
    return reg


@pytest.fixture()
def health() -> HealthState:
    state = HealthState(liveness_limit=60.0)
    state.loop.heartbeat = time.time()
    state.connected = state.assigned = True
    state.kafka.answered(time.time())  # the broker has answered: ready once assigned
    return state


@pytest.fixture()
def start(registry: CollectorRegistry, health: HealthState) -> Iterator[StartServer]:
    servers: list[MetricsServer] = []

    def start_server(
        bind: str = "127.0.0.1", web: WebConfig | None = None, **limits: Any
    ) -> MetricsServer:
        server = MetricsServer(registry, health, bind, 0, limits=Limits(**limits), web=web)
        server.start()
        servers.append(server)
        return server

    yield start_server
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def get(
    url: str, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def write_web_config(directory: Path, text: str) -> Path:
    path = directory / "web.yml"
    path.write_text(text)
    return path


# --- exposition -------------------------------------------------------------------


def test_plain_scrape_is_prometheus_text(start: StartServer) -> None:
    server = start()
    status, headers, body = get(server.url())
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b"tidemark_demo_events_total 3.0" in body
    assert b"# EOF" not in body


def test_openmetrics_is_negotiated_by_accept(start: StartServer) -> None:
    server = start()
    accept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4"
    status, headers, body = get(server.url(), {"Accept": accept})
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")
    assert b"tidemark_demo_events_total 3.0" in body


def test_gzip_by_accept_encoding(start: StartServer) -> None:
    server = start()
    _, _, plain = get(server.url())
    status, headers, body = get(server.url(), {"Accept-Encoding": "gzip, deflate"})
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == plain


def test_name_filter_restricts_the_families(start: StartServer) -> None:
    server = start()
    _, _, body = get(server.url("/metrics?name[]=tidemark_demo_lag"))
    assert b"tidemark_demo_lag 7.0" in body
    assert b"tidemark_demo_events" not in body


def test_health_endpoints_keep_their_semantics(start: StartServer, health: HealthState) -> None:
    server = start()
    assert get(server.url("/healthz"))[::2] == (200, b"ok\n")
    assert get(server.url("/readyz"))[::2] == (200, b"ready\n")
    health.assigned = False
    assert get(server.url("/readyz"))[::2] == (
        503,
        b"not ready: connected, no partitions assigned yet\n",
    )
    health.loop.heartbeat = time.time() - 120
    assert get(server.url("/healthz"))[::2] == (503, b"poll loop stalled\n")
    assert get(server.url("/readyz"))[::2] == (503, b"not ready: poll loop not running\n")
    assert get(server.url("/nope"))[0] == 404


def test_keep_alive_serves_several_requests_on_one_connection(start: StartServer) -> None:
    server = start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    for path in ("/metrics", "/healthz", "/metrics"):
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200
        response.read()
    conn.close()
    assert server.stats.accepted == 1
    assert server.stats.requests == 3


@pytest.mark.parametrize("tls", [False, True])
def test_pipelined_requests_are_answered_in_order(
    start: StartServer, tls_files: TLSFiles, tls: bool
) -> None:
    server = start(web=_tls_web(tls_files) if tls else None)
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    client = _client_ctx(tls_files).wrap_socket(raw, server_hostname="localhost") if tls else raw
    with client:
        client.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", received) == [b"200", b"404", b"200"]
    assert received.endswith(b"ready\n")


def test_head_and_other_methods(start: StartServer) -> None:
    server = start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("HEAD", "/metrics")
    response = conn.getresponse()
    assert response.status == 200
    assert int(response.getheader("Content-Length")) > 0
    assert response.read() == b""
    conn.request("POST", "/metrics", body=b"x=1")
    response = conn.getresponse()
    assert response.status == 405
    assert response.getheader("Allow") == "GET, HEAD"


# --- addresses --------------------------------------------------------------------


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="host has no ::1")


@needs_ipv6
def test_ipv6_loopback_bind(start: StartServer) -> None:
    server = start("::1")
    assert server.url() == f"http://[::1]:{server.port}/metrics"
    assert get(server.url())[0] == 200


@needs_ipv6
@pytest.mark.skipif(not socket.has_dualstack_ipv6(), reason="no dual-stack sockets here")
def test_ipv6_wildcard_serves_ipv4_too(start: StartServer) -> None:
    server = start("::")
    assert get(f"http://[::1]:{server.port}/metrics")[0] == 200
    assert get(f"http://127.0.0.1:{server.port}/metrics")[0] == 200


@pytest.mark.parametrize("bind", ["0.0.0.0", "127.0.0.1", ""])
def test_ipv4_binds_keep_working(start: StartServer, bind: str) -> None:
    server = start(bind)
    assert get(f"http://127.0.0.1:{server.port}/metrics")[0] == 200


def test_a_busy_port_is_a_config_error(start: StartServer, registry: CollectorRegistry) -> None:
    server = start()
    with pytest.raises(ConfigError, match=r"cannot listen on '127.0.0.1' port \d+"):
        MetricsServer(registry, HealthState(60.0), "127.0.0.1", server.port)


# --- bounds -------------------------------------------------------------------------


def test_half_sent_request_is_dropped_after_read_timeout(start: StartServer) -> None:
    server = start(read_timeout=0.5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as slow:
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
        began = time.monotonic()
        assert slow.recv(1024) == b""  # the server hung up
        waited = time.monotonic() - began
    assert 0.4 < waited < 3.0
    assert server.stats.timed_out == 1


def test_silent_client_on_a_tls_port_is_dropped_after_read_timeout(
    start: StartServer, tls_files: TLSFiles
) -> None:
    server = start(web=_tls_web(tls_files), read_timeout=0.5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as silent:
        began = time.monotonic()  # no ClientHello, ever
        assert silent.recv(1024) == b""
        waited = time.monotonic() - began
    assert 0.4 < waited < 3.0
    assert server.stats.open == 0


def test_idle_keep_alive_connection_is_closed_after_idle_timeout(start: StartServer) -> None:
    server = start(idle_timeout=0.5, read_timeout=5.0)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
        began = time.monotonic()
        assert client.recv(1024) == b""
        waited = time.monotonic() - began
    assert 0.4 < waited < 3.0


def test_turned_away_clients_are_summed_up_in_the_log_not_logged_one_by_one(
    start: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "_REPORT_EVERY", 0.3)
    with structlog.testing.capture_logs() as logs:
        server = start(read_timeout=0.2, max_connections=2)
        slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(5)]
        deadline = time.monotonic() + 10
        while not any(e["event"] == "http_clients_turned_away" for e in logs):
            assert time.monotonic() < deadline, logs
            time.sleep(0.05)
        for s in slow:
            s.close()
    reports = [e for e in logs if e["event"] == "http_clients_turned_away"]
    assert sum(e["evicted"] for e in reports) >= 3
    assert len(reports) <= 3  # not one line per client


def test_full_server_drops_the_longest_waiting_connection_for_a_scrape(
    start: StartServer,
) -> None:
    server = start(max_connections=4, read_timeout=30.0)
    slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(8)]
    try:
        for s in slow:
            s.sendall(b"GET /metrics HTTP/1.1\r\n")
        began = time.monotonic()
        assert get(server.url())[0] == 200
        assert time.monotonic() - began < 2.0
        assert server.stats.evicted >= 5
        assert server.stats.open <= 4
    finally:
        for s in slow:
            s.close()


def test_client_that_does_not_read_is_dropped_after_write_timeout(
    health: HealthState,
) -> None:
    class Huge:
        def collect(self) -> Iterator[GaugeMetricFamily]:
            family = GaugeMetricFamily("huge", "too big for any socket buffer", labels=["v"])
            family.add_metric(["x" * 16_000_000], 1)
            yield family

    registry = CollectorRegistry()
    registry.register(Huge())  # type: ignore[arg-type]
    server = MetricsServer(registry, health, "127.0.0.1", 0, limits=Limits(write_timeout=0.5))
    server.start()
    try:
        with socket.socket() as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.connect(("127.0.0.1", server.port))
            client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            deadline = time.monotonic() + 10
            while server.stats.timed_out == 0:  # never reading a byte
                assert time.monotonic() < deadline, "a client that does not read holds on"
                time.sleep(0.05)
            assert server.stats.open == 0
    finally:
        server.stop()


def test_oversized_request_head_is_refused(start: StartServer) -> None:
    server = start()
    status, _, _ = get(server.url(), {"X-Padding": "a" * (MAX_HEAD_BYTES + 10)})
    assert status == 431


# --- web config: parsing ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("basic_auth_user:\n  a: b\n", r"basic_auth_user: unknown key"),
        ("rate_limit:\n  burst: 1\n", r"rate_limit: an exporter-toolkit key Tidemark does not"),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n"
            "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
            r"tls_server_config\.cipher_suites: an exporter-toolkit key",
        ),
        (
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: server-key.pem\n",
            r"tls_server_config\.cert_file: .*missing\.pem: no such file",
        ),
        (
            "tls_server_config:\n  key_file: server-key.pem\n",
            r"tls_server_config\.cert_file: required",
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: client-key.pem\n",
            r"tls_server_config: cannot use the certificate, key or client CA",
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n"
            "  min_version: TLS14\n",
            r"tls_server_config\.min_version: 'TLS14' is not one of",
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n"
            "  client_auth_type: RequireAnyClientCert\n",
            r"client_auth_type: RequireAnyClientCert accepts unverified client certificates",
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n"
            "  client_auth_type: RequireAndVerifyClientCert\n",
            r"client_ca_file: client_auth_type RequireAndVerifyClientCert needs the CA",
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n"
            "  client_ca_file: ca.pem\n",
            r"client_ca_file: client CAs are configured without a client_auth_type",
        ),
        ("basic_auth_users:\n  alice: hunter2-not-a-hash\n", r"basic_auth_users\.alice: not a"),
        ("basic_auth_users: [alice]\n", r"basic_auth_users: must be a mapping"),
        ("tls_server_config: [\n", r"web\.yml:\d+: not valid YAML"),
    ],
)
def test_web_config_errors_name_file_key_and_problem(
    tls_files: TLSFiles, tmp_path: Path, text: str, message: str
) -> None:
    for f in tls_files.ca_cert.parent.iterdir():
        shutil.copy(f, tmp_path / f.name)
    path = write_web_config(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"^{path}(:\d+)?: ") as caught:
        load_web_config(path)
    assert caught.match(message)
    assert "hunter2" not in str(caught.value)


def test_encrypted_key_is_an_error_not_a_password_prompt(
    tls_files: TLSFiles, tmp_path: Path
) -> None:
    key = serialization.load_pem_private_key(tls_files.server_key.read_bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    (tmp_path / "locked.pem").write_bytes(encrypted)
    path = write_web_config(
        tmp_path,
        f"tls_server_config:\n  cert_file: {tls_files.server_cert}\n  key_file: locked.pem\n",
    )
    with pytest.raises(ConfigError, match="cannot use the certificate, key or client CA"):
        load_web_config(path)


def test_web_config_paths_are_relative_to_the_file(tls_files: TLSFiles) -> None:
    path = write_web_config(
        tls_files.ca_cert.parent,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n"
        f"basic_auth_users:\n  prometheus: '{HASH}'\n",
    )
    web = load_web_config(path)
    assert web.tls is not None and web.tls.cert_file == tls_files.server_cert
    assert web.auth is not None and web.auth.users == ["prometheus"]
    assert HASH not in repr(web)


def test_bad_web_config_fails_the_tidemark_config(tmp_path: Path) -> None:
    shutil.copytree(REPO / "config" / "contracts", tmp_path / "contracts")
    write_web_config(tmp_path, "basic_auth_users:\n  alice: plain-password\n")
    config = tmp_path / "tidemark.yaml"
    config.write_text(
        "server:\n  web_config_file: web.yml\nproducts:\n  - name: orders\n    owner: t\n"
        "    topic: shop.orders\n    contract: contracts/orders.avsc\n    encoding: avro-raw\n"
        "    event_time: occurred_at\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    text = str(caught.value)
    assert (
        f"{config}:2: server.web_config_file: {tmp_path / 'web.yml'}: basic_auth_users.alice"
        in text
    )
    assert "plain-password" not in text


def test_server_limits_and_web_config_path_in_tidemark_config(
    tls_files: TLSFiles, tmp_path: Path
) -> None:
    shutil.copytree(REPO / "config" / "contracts", tmp_path / "contracts")
    (tmp_path / "secure").mkdir()
    for name in ("server.pem", "server-key.pem"):
        shutil.copy(tls_files.ca_cert.parent / name, tmp_path / "secure" / name)
    write_web_config(
        tmp_path / "secure",
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n",
    )
    products = (
        "products:\n  - name: orders\n    owner: t\n    topic: shop.orders\n"
        "    contract: contracts/orders.avsc\n    encoding: avro-raw\n    event_time: occurred_at\n"
    )
    config = tmp_path / "tidemark.yaml"
    config.write_text(
        "server:\n  bind_address: '::'\n  max_connections: 8\n  read_timeout: 2s\n"
        "  web_config_file: secure/web.yml\n" + products
    )
    server = load_settings(config).server
    assert server.web_config_file == tmp_path / "secure" / "web.yml"  # relative to the config
    assert (server.max_connections, server.read_timeout, server.idle_timeout) == (8, 2.0, 30.0)
    config.write_text("server:\n  read_timeout: 0\n  max_connections: 0\n" + products)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "server.read_timeout: must be more than 0 seconds" in str(caught.value)
    assert "server.max_connections: Input should be greater than or equal to 1" in str(caught.value)


# --- basic auth -------------------------------------------------------------------


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_basic_auth_guards_metrics_not_probes(start: StartServer, tmp_path: Path) -> None:
    web = load_web_config(write_web_config(tmp_path, f"basic_auth_users:\n  prom: '{HASH}'\n"))
    with structlog.testing.capture_logs() as logs:
        server = start(web=web)
        status, headers, _ = get(server.url())
        assert status == 401
        assert headers["WWW-Authenticate"] == 'Basic realm="tidemark"'
        assert get(server.url(), _basic("prom", "wrong"))[0] == 401
        assert get(server.url(), _basic("nobody", PASSWORD))[0] == 401
        assert get(server.url(), {"Authorization": "Basic !!!"})[0] == 401
        assert get(server.url(), _basic("prom", PASSWORD))[0] == 200
        assert get(server.url(), _basic("prom", PASSWORD))[0] == 200  # the cached path
        assert get(server.url("/healthz"))[0] == 200
        assert get(server.url("/readyz"))[0] == 200
    assert server.stats.unauthorized == 4
    logged = repr(logs)
    assert PASSWORD not in logged and HASH not in logged
    assert any(e["event"] == "http_basic_auth_without_tls" for e in logs)


def test_password_guessing_cannot_crowd_out_a_known_scraper(
    start: StartServer, tmp_path: Path
) -> None:
    slow_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=12)).decode()
    web = load_web_config(write_web_config(tmp_path, f"basic_auth_users:\n  prom: '{slow_hash}'\n"))
    server = start(web=web, max_connections=8)
    assert get(server.url(), _basic("prom", PASSWORD))[0] == 200  # now cached
    stop = threading.Event()
    answers: list[int] = []

    def guess(n: int) -> None:
        while not stop.is_set():
            try:
                answers.append(get(server.url(), _basic("prom", f"guess-{n}-{len(answers)}"))[0])
            except OSError:
                answers.append(0)

    guessers = [threading.Thread(target=guess, args=(n,)) for n in range(12)]
    for thread in guessers:
        thread.start()
    try:
        time.sleep(0.5)
        took = []
        for _ in range(5):
            began = time.monotonic()
            assert get(server.url(), _basic("prom", PASSWORD))[0] == 200
            took.append(time.monotonic() - began)
    finally:
        stop.set()
        for thread in guessers:
            thread.join(30)
    assert max(took) < 1.0, took
    assert 503 in answers and server.stats.auth_busy > 0
    assert 200 not in answers


# --- TLS ----------------------------------------------------------------------------


def _client_ctx(tls: TLSFiles, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=tls.ca_cert)
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def _tls_web(tls: TLSFiles, extra: str = "") -> WebConfig:
    text = (
        f"tls_server_config:\n  cert_file: {tls.server_cert}\n  key_file: {tls.server_key}\n"
        + extra
    )
    return load_web_config(write_web_config(tls.ca_cert.parent, text))


def test_tls_handshake_and_scrape(start: StartServer, tls_files: TLSFiles) -> None:
    server = start(web=_tls_web(tls_files))
    url = f"https://localhost:{server.port}/metrics"
    status, _, body = get(url, context=_client_ctx(tls_files))
    assert status == 200 and b"tidemark_demo_events_total" in body
    # A client that does not trust the CA refuses; a plain-HTTP client gets nothing.
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        get(url, context=ssl.create_default_context(cafile=tls_files.other_ca_cert))
    with pytest.raises((http.client.HTTPException, OSError)):
        get(f"http://127.0.0.1:{server.port}/metrics")
    assert get(url, context=_client_ctx(tls_files))[0] == 200  # still serving


def test_tls_min_version_is_enforced(start: StartServer, tls_files: TLSFiles) -> None:
    server = start(web=_tls_web(tls_files, "  min_version: TLS13\n"))
    old = _client_ctx(tls_files)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(urllib.error.URLError):
        get(f"https://localhost:{server.port}/metrics", context=old)
    assert get(f"https://localhost:{server.port}/metrics", context=_client_ctx(tls_files))[0] == 200


def test_client_certificates_are_required_and_verified(
    start: StartServer, tls_files: TLSFiles
) -> None:
    extra = (
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {tls_files.ca_cert}\n"
    )
    server = start(web=_tls_web(tls_files, extra))
    url = f"https://localhost:{server.port}/metrics"
    ok = _client_ctx(tls_files, tls_files.client_cert, tls_files.client_key)
    assert get(url, context=ok)[0] == 200
    for ctx in (
        _client_ctx(tls_files),  # no certificate
        _client_ctx(tls_files, tls_files.other_client_cert, tls_files.other_client_key),
    ):
        with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
            get(url, context=ctx)
    assert server.stats.tls_failed >= 1


def test_tls_and_basic_auth_together(start: StartServer, tls_files: TLSFiles) -> None:
    server = start(web=_tls_web(tls_files, f"basic_auth_users:\n  prom: '{HASH}'\n"))
    url = f"https://localhost:{server.port}/metrics"
    assert get(url, context=_client_ctx(tls_files))[0] == 401
    assert get(url, _basic("prom", PASSWORD), context=_client_ctx(tls_files))[0] == 200


def test_rotated_certificate_is_served_to_new_connections(
    start: StartServer, tls_files: TLSFiles, tmp_path: Path
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(tls_files.server_cert, cert)
    shutil.copy(tls_files.server_key, key)
    web = load_web_config(
        write_web_config(
            tmp_path, "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"
        )
    )
    server = start(web=web)
    url = f"https://localhost:{server.port}/metrics"
    assert get(url, context=_client_ctx(tls_files))[0] == 200
    renewed = make_tls_files(tmp_path / "renewed")  # a new CA signs the new certificate
    shutil.copy(renewed.server_key, key)
    shutil.copy(renewed.server_cert, cert)
    time.sleep(1.2)  # rotation is checked at most once a second

    def scrape_with_new_ca() -> int:
        try:
            return get(url, context=_client_ctx(renewed))[0]
        except urllib.error.URLError:
            return 0

    deadline = time.monotonic() + 5
    while scrape_with_new_ca() != 200:
        assert time.monotonic() < deadline, "the renewed certificate was never served"
        time.sleep(0.2)


def test_violations_are_json_and_guarded_by_basic_auth_like_metrics(
    registry: CollectorRegistry, health: HealthState, tmp_path: Path
) -> None:
    web = load_web_config(write_web_config(tmp_path, f"basic_auth_users:\n  prom: '{HASH}'\n"))
    body = b'{"products": {}}\n'
    server = MetricsServer(registry, health, "127.0.0.1", 0, web=web, violations=lambda: body)
    server.start()
    try:
        assert get(server.url("/violations"))[0] == 401
        status, headers, got = get(server.url("/violations"), _basic("prom", PASSWORD))
        assert (status, headers["Content-Type"], got) == (200, "application/json", body)
    finally:
        server.stop()
    unset = MetricsServer(registry, health, "127.0.0.1", 0)  # no source: not served
    unset.start()
    try:
        assert get(unset.url("/violations"))[0] == 404
    finally:
        unset.stop()
