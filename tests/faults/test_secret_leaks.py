"""No configured secret reaches the daemon's output, its /metrics or its error messages.

Each scenario plants a distinct random secret in every key it sets (kafka
sasl_password and secret_properties, sasl.oauthbearer.config's clientSecret, a PEM key,
the registry's URL userinfo, basic auth, bearer token), runs the real daemon with
logging at debug and librdkafka debug=all against the mock cluster (librdkafka
prints its configuration, every request and every error), lets it work for a few
seconds and then looks for every secret, and the forms it takes on the wire
(base64 `user:secret`, URL-quoted), in all of stdout/stderr and in a /metrics,
/readyz and /healthz scrape. Each scenario also proves its secrets were loaded and
used: registry look-ups succeed only with the right credentials (the stand-in
answers 401 otherwise), the bearer token arrives in an Authorization header, and
SASL is attempted (the mock broker refuses it: "SASL Handshake not supported").
Secrets put in a non-secret map are refused at start-up without being echoed.
"""

from __future__ import annotations

import base64
import json
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from daemon_support import ORDERS, avro, confluent, order, product, whole_seconds_ago
from harness import Broker, RegistryServer, TidemarkProcess, scrape, wait_for
from harness import registry_server as registry_module
from harness.daemon import free_port

USER = "tidemark"


def secret(tag: str) -> str:
    """A distinct random secret; the tag says where it was planted when one leaks."""
    return f"{tag}-{secrets.token_urlsafe(18)}"


@dataclass
class Scenario:
    name: str
    secrets: dict[str, str]  # where -> value
    kafka: dict[str, Any] = field(default_factory=dict)
    registry: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    registry_credentials: tuple[str, str] | None = None
    url_credentials: tuple[str, str] | None = None
    expect: str = "consumes"  # or "auth_refused", "config_refused"


def scenarios() -> list[Scenario]:
    s = {
        k: secret(k)
        for k in ("sasl", "keypw", "kspw", "oidc", "cfg", "pem", "url", "basic", "token")
    }
    return [
        Scenario(
            "kafka-secrets-and-url-credentials",
            {k: s[k] for k in ("sasl", "keypw", "kspw", "oidc", "cfg", "pem", "url")},
            kafka={
                "sasl_username": USER,
                "secret_properties": {
                    "ssl.key.password": s["keypw"],
                    "ssl.keystore.password": s["kspw"],
                    "sasl.oauthbearer.client.secret": s["oidc"],
                    "sasl.oauthbearer.config": f"principal={USER} clientSecret={s['cfg']}",
                    "ssl.key.pem": f"-----BEGIN PRIVATE KEY-----\n{s['pem']}\n"
                    "-----END PRIVATE KEY-----",
                },
            },
            env={"TIDEMARK_KAFKA__SASL_PASSWORD": s["sasl"]},  # how operators pass secrets
            registry_credentials=(USER, s["url"]),
            url_credentials=(USER, s["url"]),
        ),
        Scenario(
            "registry-basic-auth",
            {"basic": s["basic"]},
            env={"TIDEMARK_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO": f"{USER}:{s['basic']}"},
            registry_credentials=(USER, s["basic"]),
        ),
        Scenario(
            "registry-bearer-token",
            {"token": s["token"]},
            registry={
                "properties": {
                    "bearer.auth.credentials.source": "STATIC_TOKEN",
                    "bearer.auth.logical.cluster": "lsrc-test",
                },
                "secret_properties": {"bearer.auth.token": s["token"]},
            },
        ),
        Scenario(
            "sasl-refused-by-broker",
            {"sasl": s["sasl"], "cfg": s["cfg"]},
            kafka={
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": USER,
                "sasl_password": s["sasl"],
                "secret_properties": {
                    "sasl.oauthbearer.config": f"principal={USER} clientSecret={s['cfg']}"
                },
            },
            expect="auth_refused",
        ),
        Scenario(
            "secret-in-kafka-properties",
            {"cfg": s["cfg"]},
            kafka={"properties": {"sasl.oauthbearer.config": f"clientSecret={s['cfg']}"}},
            expect="config_refused",
        ),
        Scenario(
            "secret-in-registry-properties",
            {"token": s["token"]},
            registry={"properties": {"bearer.auth.token": s["token"]}},
            expect="config_refused",
        ),
    ]


def forms(value: str) -> set[str]:
    """The secret as it may appear in text: itself, URL-quoted, inside basic auth."""
    return {value, quote(value, safe=""), base64.b64encode(f"{USER}:{value}".encode()).decode()}


@pytest.fixture
def authorization_headers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Authorization headers the registry stand-in received (it runs in this process)."""
    seen: list[str] = []
    original = registry_module._Handler._auth

    def recording(self: Any) -> tuple[str | None, bool]:
        seen.append(self.headers.get("Authorization", ""))
        return original(self)

    monkeypatch.setattr(registry_module._Handler, "_auth", recording)
    yield seen


def write_config(path: Path, broker: Broker, topic: str, registry_url: str, sc: Scenario) -> Path:
    kafka: dict[str, Any] = {
        "bootstrap_servers": broker.bootstrap,
        "group_id": f"tidemark-leak-{secrets.token_hex(4)}",
        "poll_timeout": 0.1,
        "commit_interval": 0.5,
        "start_from": "earliest",
        **sc.kafka,
    }
    kafka["properties"] = {"debug": "all", **sc.kafka.get("properties", {})}
    config = {
        "kafka": kafka,
        "schema_registry": {"url": registry_url, "retry_after": 1, **sc.registry},
        "lag": {"refresh_interval": 0.5},
        "logging": {"format": "json", "level": "debug"},
        "products": [product("orders", topic, encoding="confluent")],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.parametrize("sc", scenarios(), ids=lambda sc: sc.name)
def test_no_secret_leaks(
    mock_only: Broker,
    tidemark: Callable[..., TidemarkProcess],
    authorization_headers: list[str],
    tmp_path: Path,
    sc: Scenario,
) -> None:
    broker = mock_only
    with RegistryServer(credentials=sc.registry_credentials) as registry:
        url = registry.url
        if sc.url_credentials:
            user, password = sc.url_credentials
            url = url.replace("http://", f"http://{user}:{quote(password, safe='')}@")
        topic = broker.new_topic(2)
        schema_id = registry.register(f"{topic}-value", json.dumps(ORDERS))
        for seq in range(8):
            body = avro(ORDERS, order(whole_seconds_ago(10), seq))
            broker.produce(topic, seq % 2, confluent(schema_id, body))
        broker.flush()
        registry.clear_log()
        authorization_headers.clear()
        config = write_config(tmp_path / "tidemark.yaml", broker, topic, url, sc)
        daemon = TidemarkProcess(config, tmp_path, env=sc.env, port=free_port())
        scraped = run(daemon, sc, registry, authorization_headers)

    text = daemon.output() + "\n".join(scraped)
    leaks = {where: v for where, value in sc.secrets.items() for v in forms(value) if v in text}
    assert not leaks, f"secrets leaked: {leaks}\n{daemon.log_tail(15)}"
    lines = daemon.output().splitlines()
    print(f"{sc.name}: {len(lines)} lines, {sum(len(x) for x in scraped)} bytes scraped, clean")


def run(
    daemon: TidemarkProcess, sc: Scenario, registry: RegistryServer, headers: list[str]
) -> list[str]:
    """Run the scenario; returns the HTTP bodies scraped while the daemon ran."""
    if sc.expect == "config_refused":
        with pytest.raises(AssertionError, match="exited with 2"):
            daemon.start(ready_timeout=20)
        assert "secret_properties" in daemon.output(), daemon.log_tail()
        return []
    if sc.expect == "auth_refused":
        with pytest.raises(AssertionError, match="not ready"):
            daemon.start(ready_timeout=6)  # never ready: the broker refuses SASL
        assert daemon.returncode is None, daemon.log_tail()
        bodies = [daemon.get(path)[1] for path in ("/metrics", "/readyz", "/healthz")]
        assert daemon.stop(signal.SIGTERM, timeout=30) == 0, daemon.log_tail()
        assert "_AUTHENTICATION" in daemon.output(), "SASL was not attempted"
        return bodies
    daemon.start(ready_timeout=30)
    try:
        s = wait_for(
            daemon.metrics_url, lambda s: s.value("tidemark_events_total", product="orders") == 8
        )
        time.sleep(2.0)  # debug=all keeps logging: heartbeats, fetches, metadata
        bodies = [s.text, scrape(daemon.metrics_url).text]
        bodies += [daemon.get(path)[1] for path in ("/readyz", "/healthz")]
    finally:
        assert daemon.stop(signal.SIGTERM, timeout=30) == 0, daemon.log_tail()
    # The secrets were used: the look-ups needed them.
    assert registry.count("GET", "/schemas/ids/") >= 1
    if sc.registry_credentials:
        assert all(r.user == USER for r in registry.requests), registry.requests
    if "token" in sc.secrets:
        assert f"Bearer {sc.secrets['token']}" in headers, headers
    return bodies
