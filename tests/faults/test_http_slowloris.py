"""Slow-loris against the real daemon: half-sent requests must not keep a scrape out.

500 clients connect to `python -m monitor run` and send half a request head (over
HTTPS: connect and never send a ClientHello), then an attacker keeps replacing
dropped connections while a scraper (a new connection per scrape, as after a
Prometheus restart) reads /metrics and /healthz. Measured: scrape latency under the
flood, the daemon's threads and RSS during it, and how long until its sockets are
released after the flood stops. Figures are printed (run with -s).
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_support import product, write_config
from harness import Broker, TidemarkProcess
from harness.certs import TLSTidemarkProcess, make_tls_files

FLOOD = 500
READ_TIMEOUT = 2.0
HALF_REQUEST = b"GET /metrics HTTP/1.1\r\nHost: tidemark\r\nUser-Agent: slow"


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS: line")


def _sockets(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return count


def _scrape(url: str, context: ssl.SSLContext | None = None) -> tuple[int, float, bytes]:
    began = time.monotonic()
    with urllib.request.urlopen(url, timeout=15, context=context) as resp:
        body = resp.read()
        return resp.status, time.monotonic() - began, body


def _half_open(port: int, half: bytes = HALF_REQUEST) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if half:
        s.sendall(half)
    return s


def _hung_up(s: socket.socket) -> bool:
    """True once the server closed this connection (EOF or reset)."""
    readable, _, _ = select.select([s], [], [], 0)
    if not readable:
        return False
    try:
        return s.recv(1024) == b""
    except OSError:
        return True


class Attacker:
    """Keeps `FLOOD` half-sent connections open, replacing those the server drops."""

    def __init__(self, port: int, half: bytes) -> None:
        self.port = port
        self.half = half
        self.open: list[socket.socket] = []
        self.opened = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def burst(self) -> float:
        began = time.monotonic()
        for _ in range(FLOOD):
            self.open.append(_half_open(self.port, self.half))
            self.opened += 1
        return time.monotonic() - began

    def _run(self) -> None:
        while not self.stop.is_set():
            alive = [s for s in self.open if not _hung_up(s)]
            for s in set(self.open) - set(alive):
                s.close()
            self.open = alive
            for _ in range(min(50, FLOOD - len(self.open))):
                self.open.append(_half_open(self.port, self.half))
                self.opened += 1
            time.sleep(0.05)

    def close(self) -> None:
        for s in self.open:
            s.close()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_slowloris_flood_does_not_stop_scrapes(
    mock_only: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path, scheme: str
) -> None:
    topic = mock_only.new_topic(1)
    config = write_config(tmp_path / "tidemark.yaml", mock_only, [product("orders", topic)])
    env = {"TIDEMARK_SERVER__READ_TIMEOUT": str(READ_TIMEOUT)}
    context, half = None, HALF_REQUEST
    if scheme == "https":
        tls = make_tls_files(tmp_path / "tls")
        web = tmp_path / "web.yml"
        web.write_text(
            f"tls_server_config:\n  cert_file: {tls.server_cert}\n  key_file: {tls.server_key}\n"
        )
        env["TIDEMARK_SERVER__WEB_CONFIG_FILE"] = str(web)
        daemon: TidemarkProcess = TLSTidemarkProcess(config, tmp_path, env=env, tls=tls)
        context, half = ssl.create_default_context(cafile=tls.ca_cert), b""  # no ClientHello
        try:
            _flood_and_scrape(daemon.start(), context, half)
        finally:
            daemon.kill()
    else:
        _flood_and_scrape(tidemark(config, env=env), context, half)


def _flood_and_scrape(daemon: TidemarkProcess, context: ssl.SSLContext | None, half: bytes) -> None:
    assert daemon.process is not None
    pid = daemon.process.pid
    quiet = [_scrape(daemon.metrics_url, context)[1] for _ in range(10)]  # warms the pool too
    threads_before, sockets_before, rss_before = _threads(pid), _sockets(pid), _rss_mib(pid)

    attacker = Attacker(daemon.port, half)
    try:
        burst_seconds = attacker.burst()
        threads_flooded = _threads(pid)
        attacker.thread.start()
        latencies: list[float] = []
        for i in range(40):
            url = daemon.metrics_url if i % 4 else daemon.healthz_url
            status, took, body = _scrape(url, context)
            assert status == 200
            if i % 4:
                assert b"tidemark_up 1.0" in body
            latencies.append(took)
            time.sleep(0.1)
        threads_peak = max(threads_flooded, _threads(pid))
        sockets_peak, rss_peak = _sockets(pid), _rss_mib(pid)
        attacker.stop.set()
        attacker.thread.join(10)
        stopped = time.monotonic()
        # Every attacking connection is hung up on by read_timeout (or evicted sooner).
        while not all(_hung_up(s) for s in attacker.open):
            assert time.monotonic() - stopped < READ_TIMEOUT + 10, "slow clients still held"
            time.sleep(0.05)
        clients_released = time.monotonic() - stopped
        while _sockets(pid) > sockets_before + 2:
            assert time.monotonic() - stopped < READ_TIMEOUT + 10, "daemon still holds sockets"
            time.sleep(0.05)
        sockets_released = time.monotonic() - stopped
    finally:
        attacker.stop.set()
        attacker.close()

    p50 = statistics.median(latencies)
    print(
        f"\nslowloris ({daemon.url.split(':')[0]}): {FLOOD} half-sent connections opened "
        f"in {burst_seconds:.2f}s, "
        f"{attacker.opened} in all; scrapes p50 {statistics.median(quiet) * 1000:.1f} ms "
        f"without a flood, under it p50 {p50 * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms (n={len(latencies)}); daemon threads "
        f"{threads_before} before, {threads_peak} at peak; sockets {sockets_before} before, "
        f"{sockets_peak} during, RSS {rss_before:.1f} -> {rss_peak:.1f} MiB, "
        f"released {sockets_released:.2f}s after the flood stopped "
        f"(clients saw hang-ups after {clients_released:.2f}s; read_timeout {READ_TIMEOUT}s)"
    )
    assert p50 < 0.5 and max(latencies) < 3.0, latencies  # generous: 2 shared cores
    assert threads_peak <= threads_before + 2  # one event loop: no thread per connection
    assert clients_released < READ_TIMEOUT + 2.0
    assert daemon.get("/healthz")[0] == 200
    assert rss_peak < rss_before + 25  # asyncio start_tls: +300 MiB under the same flood


def test_connections_past_the_limit_do_not_pile_up(
    mock_only: Broker, tidemark: Callable[..., TidemarkProcess], tmp_path: Path
) -> None:
    """max_connections bounds what the daemon holds, however many clients connect."""
    topic = mock_only.new_topic(1)
    config = write_config(tmp_path / "tidemark.yaml", mock_only, [product("orders", topic)])
    daemon = tidemark(
        config,
        env={"TIDEMARK_SERVER__READ_TIMEOUT": "30", "TIDEMARK_SERVER__MAX_CONNECTIONS": "16"},
    )
    assert daemon.process is not None
    pid = daemon.process.pid
    sockets_before = _sockets(pid)
    clients = [_half_open(daemon.port) for _ in range(200)]
    try:
        time.sleep(0.5)
        held = _sockets(pid) - sockets_before
        status, took, _ = _scrape(daemon.metrics_url)
        print(
            f"\nlimit 16: 200 slow clients -> daemon holds {held} sockets; "
            f"scrape {took * 1000:.1f} ms"
        )
        assert status == 200
        assert held <= 16
        alive = sum(not _hung_up(s) for s in clients)
        assert alive <= 16
    finally:
        for s in clients:
            s.close()
