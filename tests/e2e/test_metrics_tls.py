"""A real Prometheus scrapes a real Tidemark over TLS with basic auth and a client cert.

Tidemark gets a web-config file in exporter-toolkit's format (server certificate from a
throwaway CA made at test time, client certificates required, one bcrypt user);
Prometheus gets the scrape config its users already write (`scheme: https`,
`tls_config`, `basic_auth`). Jobs that lack the password or the client certificate
must see `up == 0`: the protection is real, not just the happy path.
"""

from __future__ import annotations

import base64
import gzip
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml
from alerting_stack import Prometheus, free_port, spawn, wait_until
from live_tidemark import REPO, MockBroker, Product, write_config
from prometheus_client.openmetrics.parser import text_string_to_metric_families

sys.path.insert(0, str(REPO / "tests" / "integration"))
from harness.certs import TLSFiles, TLSTidemarkProcess, make_tls_files

USER, PASSWORD = "prometheus", "scrape-me-over-tls"


def _basic_auth() -> dict[str, str]:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _job(name: str, port: int, tls: TLSFiles, workdir: Path, **overrides: Any) -> dict[str, Any]:
    (workdir / "password").write_text(PASSWORD)
    job: dict[str, Any] = {
        "job_name": name,
        "scheme": "https",
        "tls_config": {
            "ca_file": str(tls.ca_cert),
            "cert_file": str(tls.client_cert),
            "key_file": str(tls.client_key),
        },
        "basic_auth": {"username": USER, "password_file": str(workdir / "password")},
        "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
    }
    job.update(overrides)
    return {k: v for k, v in job.items() if v is not None}


def test_prometheus_scrapes_over_tls_with_basic_auth(tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Prometheus not installed (apt-get install prometheus)")
    tls = make_tls_files(tmp_path / "tls")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    web_config = tmp_path / "web-config.yml"
    web_config.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {
                    "cert_file": str(tls.server_cert),
                    "key_file": str(tls.server_key),
                    "client_auth_type": "RequireAndVerifyClientCert",
                    "client_ca_file": str(tls.ca_cert),
                },
                "basic_auth_users": {USER: hashed},
            }
        )
    )
    broker = MockBroker()
    topic = broker.new_topic(1)
    config = write_config(
        tmp_path / "tidemark.yaml",
        broker.bootstrap,
        [Product("orders", "team-checkout", "gold", topic, 1)],
        threshold=60,
        idle_timeout=60,
        out_of_orderness=1,
    )
    daemon = TLSTidemarkProcess(
        config,
        tmp_path,
        env={"TIDEMARK_SERVER__WEB_CONFIG_FILE": str(web_config)},
        tls=tls,
    )
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    try:
        daemon.start()
        jobs = [
            _job("tidemark", daemon.port, tls, workdir),
            _job("no_password", daemon.port, tls, workdir, basic_auth=None),
            _job(
                "no_client_cert",
                daemon.port,
                tls,
                workdir,
                tls_config={"ca_file": str(tls.ca_cert)},
            ),
            _job("plain_http", daemon.port, tls, workdir, scheme="http", tls_config=None),
        ]
        (workdir / "prometheus.yml").write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                    "scrape_configs": jobs,
                }
            )
        )
        port = free_port()
        process = spawn(
            "prometheus",
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            workdir,
        )
        prometheus = Prometheus(f"http://127.0.0.1:{port}", process, workdir / "none", workdir)
        try:
            process.wait_ready(f"{prometheus.url}/-/ready")
            prometheus.wait_for('up{job="tidemark"} == 1', timeout=30)
            series = prometheus.wait_for('tidemark_up{job="tidemark"}', timeout=30)
            assert series[0]["value"][1] == "1"
            for job in ("no_password", "no_client_cert", "plain_http"):
                wait_until(
                    lambda job=job: prometheus.query(f'up{{job="{job}"}} == 0'),
                    30,
                    f"{job} scraped and refused",
                )
            errors = {t["labels"]["job"]: t["lastError"] for t in prometheus.targets()}
            assert "401" in errors["no_password"], errors
            assert errors["tidemark"] == "", errors
            # The daemon's whole exposition is valid OpenMetrics, gzipped on request.
            request = urllib.request.Request(
                f"{daemon.url}/metrics",
                headers={
                    "Accept": "application/openmetrics-text;version=1.0.0",
                    "Accept-Encoding": "gzip",
                    **_basic_auth(),
                },
            )
            with urllib.request.urlopen(request, timeout=5, context=daemon.context) as resp:
                assert resp.headers["Content-Encoding"] == "gzip"
                text = gzip.decompress(resp.read()).decode()
            families = {f.name for f in text_string_to_metric_families(text)}
            assert "tidemark_up" in families and text.endswith("# EOF\n")
        finally:
            process.stop()
    finally:
        if daemon.returncode is None and daemon.process is not None:
            daemon.stop(timeout=10)
        daemon.kill()
        broker.close()
    logs = daemon.output()
    assert PASSWORD not in logs and hashed not in logs
