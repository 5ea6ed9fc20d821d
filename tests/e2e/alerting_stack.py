"""Real Prometheus and Alertmanager for end-to-end tests, and helpers to query them.

Used by tests/e2e/conftest.py's fixtures; import the classes from here in tests
(`from alerting_stack import Prometheus, Alertmanager, wait_until`).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules"
AM_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seconds(duration: str) -> float:
    """Prometheus duration ("1h30m", "5m", "250ms") in seconds."""
    parts = re.findall(r"(\d+)(ms|[smhdwy])", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def _http(url: str, data: Any = None, timeout: float = 5.0) -> Any:
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read().decode()
    return json.loads(text) if text.strip() else None


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` on timeout."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass(slots=True)
class Process:
    """A child process whose output goes to a log file, stopped by `stop()`."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, url: str, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.log_tail()}")
            try:
                return urllib.request.urlopen(url, timeout=1).status == 200
            except OSError:
                return False

        wait_until(ready, timeout, f"{self.name} at {url}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


def spawn(name: str, args: list[str], workdir: Path) -> Process:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    return Process(name, popen, log)


# --- Alertmanager -----------------------------------------------------------------


class Webhook(ThreadingHTTPServer):
    notifications: list[dict[str, Any]]


class WebhookHandler(BaseHTTPRequestHandler):
    server: Webhook

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        payload = json.loads(self.rfile.read(length))
        payload["_path"] = self.path.strip("/")
        self.server.notifications.append(payload)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass(slots=True)
class Alertmanager:
    url: str
    process: Process
    notifications: list[dict[str, Any]]  # webhook payloads; payload["receiver"] names the route

    def alerts(self, active: bool = True, **labels: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts filtered by exact label values (inhibited ones included)."""
        query = [("active", str(active).lower()), ("inhibited", "true"), ("silenced", "true")]
        query += [("filter", f'{k}="{v}"') for k, v in labels.items()]
        return list(_http(f"{self.url}/api/v2/alerts?{urllib.parse.urlencode(query)}"))

    def post(self, alerts: list[dict[str, Any]]) -> None:
        """POST /api/v2/alerts: [{"labels": {...}, "annotations": {...}}, ...]."""
        _http(f"{self.url}/api/v2/alerts", alerts)

    def wait_for_alert(self, timeout: float = 30.0, **labels: str) -> dict[str, Any]:
        found = wait_until(lambda: self.alerts(**labels), timeout, f"alert {labels}")
        return dict(found[0])

    def wait_for_notification(
        self, receiver: str, status: str = "firing", timeout: float = 30.0, **labels: str
    ) -> dict[str, Any]:
        def match() -> dict[str, Any] | None:
            for note in list(self.notifications):
                for alert in note["alerts"]:
                    if (
                        note["receiver"] == receiver
                        and alert["status"] == status
                        and labels.items() <= alert["labels"].items()
                    ):
                        return note
            return None

        return dict(wait_until(match, timeout, f"{status} {labels} at receiver {receiver}"))


FAST_TIMERS = {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1m"}


def alertmanager_config(webhook_url: str) -> dict[str, Any]:
    """The shipped config with receivers redirected to `webhook_url/<receiver>`, fast timers."""
    config = yaml.safe_load(AM_CONFIG.read_text())
    config["receivers"] = [
        {
            "name": r["name"],
            "webhook_configs": [{"url": f"{webhook_url}/{r['name']}", "send_resolved": True}],
        }
        for r in config["receivers"]
    ]
    routes = [config["route"]]
    while routes:
        route = routes.pop()
        for key, value in FAST_TIMERS.items():
            if key in route or route is config["route"]:
                route[key] = value
        routes.extend(route.get("routes", []))
    return config


# --- Prometheus -------------------------------------------------------------------


@dataclass(slots=True)
class Prometheus:
    url: str
    process: Process
    targets_file: Path
    rules_dir: Path  # the temporary copy Prometheus loads
    scraped: set[str] = field(default_factory=set)

    def set_targets(self, targets: list[str], **labels: str) -> None:
        """Scrape these host:port targets as job "tidemark" (picked up within ~1s)."""
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": targets, "labels": labels}]))
        tmp.replace(self.targets_file)
        self.scraped = set(targets)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; returns the result vector ([{"metric": {...}, "value": [t, "v"]}])."""
        body = _http(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def value(self, expr: str) -> float | None:
        """The single sample's value of an instant query, or None when it is empty."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr} returned {len(result)} series"
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until `expr` returns at least one series (e.g. "tidemark_up == 1")."""
        return list(wait_until(lambda: self.query(expr), timeout, f"{expr!r} in Prometheus"))

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts as Prometheus sees them (/api/v1/alerts)."""
        return list(_http(f"{self.url}/api/v1/alerts")["data"]["alerts"])

    def targets(self) -> list[dict[str, Any]]:
        return list(_http(f"{self.url}/api/v1/targets")["data"]["activeTargets"])


def copy_rules(dest: Path, max_for: str) -> Path:
    """Copy the shipped rule files, clamping every `for:` and `keep_firing_for:` to `max_for`."""
    dest.mkdir(parents=True, exist_ok=True)
    limit = seconds(max_for)
    for path in sorted(RULES.glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                for key in ("for", "keep_firing_for"):
                    if key in rule and seconds(rule[key]) > limit:
                        rule[key] = max_for
        (dest / path.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest
