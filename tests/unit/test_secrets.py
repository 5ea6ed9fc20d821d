"""Secrets: refused where they would be logged, masked wherever text leaves the process."""

from __future__ import annotations

import base64
import json
import logging
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from monitor.config import load_settings, loggable
from monitor.errors import ConfigError
from monitor.logs import LibrdkafkaLogger, RepeatLimiter, configure_logging
from monitor.redact import REDACTOR, Redactor, looks_secret, mask_patterns
from tests.unit.test_config import MINIMAL

REPO = Path(__file__).resolve().parents[2]

SECRET = "s3cr3t-Value-9f8e7d"


@pytest.fixture()
def config_dir(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "config" / "contracts", tmp_path / "contracts")
    return tmp_path


def write(config_dir: Path, text: str) -> Path:
    path = config_dir / "tidemark.yaml"
    path.write_text(text)
    return path


def with_section(section: str, body: str) -> str:
    """MINIMAL plus `section:` holding `body` (already indented by two spaces)."""
    if section == "kafka":
        return MINIMAL.replace("kafka:\n", f"kafka:\n{body}")
    return f"{section}:\n{body}{MINIMAL}"


# --- refusing secrets in maps that are logged ----------------------------------------
@pytest.mark.parametrize(
    "key",
    [
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.config",
        "ssl.key.pem",
        "sasl.oauthbearer.assertion.private.key.passphrase",
    ],
)
def test_kafka_properties_refuse_secret_keys(config_dir: Path, key: str) -> None:
    text = with_section("kafka", f"  properties:\n    {key}: {SECRET}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(write(config_dir, text))
    message = str(err.value)
    assert f"kafka.properties: '{key}' holds a secret" in message
    assert "kafka.secret_properties" in message
    assert SECRET not in message


@pytest.mark.parametrize(
    "key",
    ["bearer.auth.token", "basic.auth.user.info", "ssl.key.password", "bearer.auth.client.secret"],
)
def test_registry_properties_refuse_secret_keys(config_dir: Path, key: str) -> None:
    text = with_section(
        "schema_registry", f"  url: http://registry:8081\n  properties:\n    {key}: {SECRET}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_settings(write(config_dir, text))
    message = str(err.value)
    assert f"schema_registry.properties: '{key}' holds a secret" in message
    assert "schema_registry.secret_properties" in message
    assert SECRET not in message


@pytest.mark.parametrize(
    ("key", "value", "what"),
    [
        (
            "sasl.oauthbearer.token.endpoint.url",
            f"https://svc:{SECRET}@idp/token",
            "credentials in a URL",
        ),
        ("sasl.oauthbearer.extensions", f"clientSecret={SECRET}", "'clientSecret'"),
        (
            "ssl.certificate.pem",
            f"-----BEGIN PRIVATE KEY-----\\n{SECRET}\\n-----END PRIVATE KEY-----",
            "PEM",
        ),
    ],
)
def test_secret_shaped_values_are_refused_under_any_key(
    config_dir: Path, key: str, value: str, what: str
) -> None:
    text = with_section("kafka", f'  properties:\n    {key}: "{value}"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(write(config_dir, text))
    assert what in str(err.value)
    assert SECRET not in str(err.value)


def test_keys_naming_where_a_secret_is_are_accepted(config_dir: Path) -> None:
    text = with_section(
        "schema_registry",
        "  url: http://registry:8081\n  properties:\n"
        "    bearer.auth.credentials.source: STATIC_TOKEN\n"
        "    bearer.auth.logical.cluster: lsrc-1\n",
    ).replace(
        "kafka:\n",
        "kafka:\n  properties:\n    sasl.oauthbearer.token.endpoint.url: https://idp/token\n"
        "    ssl.keystore.location: /etc/tidemark/keystore.p12\n",
    )
    settings = load_settings(write(config_dir, text))
    assert settings.schema_registry.properties["bearer.auth.logical.cluster"] == "lsrc-1"


def test_registry_secret_properties_reach_the_client_only(config_dir: Path) -> None:
    text = with_section(
        "schema_registry",
        f"  url: http://registry:8081\n  secret_properties:\n    bearer.auth.token: {SECRET}\n",
    )
    settings = load_settings(write(config_dir, text))
    assert settings.schema_registry.client_conf()["bearer.auth.token"] == SECRET
    assert SECRET not in json.dumps(loggable(settings))
    assert SECRET in settings.secret_values()


def test_secret_values_lists_every_configured_secret(config_dir: Path) -> None:
    text = (
        "schema_registry:\n  url: https://svc:urlpass1@registry\n"
        "  basic_auth_user_info: svc:basicpass1\n"
        "  secret_properties:\n    ssl.key.password: regkeypass1\n"
        + MINIMAL.replace(
            "kafka:\n",
            "kafka:\n  sasl_password: saslpass1\n  secret_properties:\n"
            "    sasl.oauthbearer.config: principal=a clientSecret=cfgpass1\n",
        )
    )
    values = " ".join(load_settings(write(config_dir, text)).secret_values())
    for secret in ("urlpass1", "basicpass1", "regkeypass1", "saslpass1", "cfgpass1"):
        assert secret in values


def test_yaml_error_does_not_quote_the_line(config_dir: Path) -> None:
    text = MINIMAL.replace("kafka:\n", f"kafka:\n  sasl_password: {SECRET}: oops\n")
    path = write(config_dir, text)
    with pytest.raises(ConfigError, match=rf"{path}:2: not valid YAML") as err:
        load_settings(path)
    assert SECRET not in str(err.value)


# --- masking -------------------------------------------------------------------------
def test_registered_values_are_masked_in_every_form() -> None:
    redactor = Redactor([SECRET, f"svc:{SECRET}x", "https://u:p%40ss-word@host"])
    text = (
        f"a {SECRET} b {base64.b64encode(f'svc:{SECRET}x'.encode()).decode()} "
        f"c {SECRET}x d p@ss-word e p%40ss-word"
    )
    masked = redactor(text)
    assert "s3cr3t" not in masked and "ss-word" not in masked, masked
    assert masked.startswith("a *** b *** c ")


def test_short_values_are_not_masked_by_value() -> None:
    assert Redactor(["abc"])("abcdef abc") == "abcdef abc"


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ("GET https://svc:pw123456@registry/schemas", "pw123456"),
        ("principal=svc clientSecret=abcdef123 scope=read", "abcdef123"),
        ("sasl.password=hunter22 other=1", "hunter22"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload", "eyJhbGciOiJIUzI1NiJ9"),
        ("key -----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- end", "MIIE"),
    ],
)
def test_credential_shapes_are_masked_without_registration(text: str, gone: str) -> None:
    masked = mask_patterns(text)
    assert gone not in masked, masked
    assert looks_secret(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "Received ApiVersionResponse (v3, 13 bytes, CorrId 1, rtt 1.22ms)",
        "Group 'g' changed state up -> wait-join (join-state init)",
        "sasl_plaintext://127.0.0.1:9092/bootstrap: Connected (#1)",
        "scope=read principal=svc",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert mask_patterns(text) == text
    assert looks_secret(text) is None


# --- the log pipeline ------------------------------------------------------------------
@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """SECRET registered; logging restored after. Tests call configure_logging first:
    it binds sys.stderr, which pytest swaps between setup and call."""
    hooks = sys.excepthook
    REDACTOR.add(SECRET)
    yield capsys
    REDACTOR.clear()
    sys.excepthook = hooks
    structlog.reset_defaults()
    logging.basicConfig(handlers=[logging.NullHandler()], force=True)


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_every_log_path_is_json_and_masked(json_logs: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "debug")
    structlog.get_logger("t").info("thing_done", detail=f"token={SECRET}", nested={"x": [SECRET]})
    logging.getLogger("httpx").info("HTTP Request: GET https://svc:%s@registry/x", SECRET)
    LibrdkafkaLogger().log(
        logging.DEBUG, "%s [%s] %s", "CONF", "tidemark#consumer-1", f"pw {SECRET}"
    )
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        structlog.get_logger("t").exception("thing_failed")
        sys.excepthook(*sys.exc_info())  # type: ignore[arg-type]
    records = lines(json_logs)
    assert [r["event"] for r in records] == [
        "thing_done",
        "HTTP Request: GET https://***@registry/x",
        "librdkafka_logged",
        "thing_failed",
        "uncaught_exception",
    ]
    assert SECRET not in json.dumps(records)
    assert records[2]["facility"] == "CONF" and records[2]["level"] == "debug"


def test_repeated_librdkafka_complaints_are_logged_once_per_interval(
    json_logs: pytest.CaptureFixture[str],
) -> None:
    configure_logging("json", "debug")
    now = [0.0]
    logger = LibrdkafkaLogger(limiter=RepeatLimiter(interval=30.0, clock=lambda: now[0]))
    for _ in range(100):  # an outage: the same FAIL line over and over
        logger.log(logging.ERROR, "%s [%s] %s", "FAIL", "c#1", "Connect failed")
        logger.log(logging.DEBUG, "%s [%s] %s", "BROKER", "c#1", "retrying")
        now[0] += 0.5
    logger.log(logging.ERROR, "%s [%s] %s", "FAIL", "c#2", "another client")
    records = lines(json_logs)
    fails = [r for r in records if r["facility"] == "FAIL"]
    assert [(r["client"], r.get("suppressed")) for r in fails] == [
        ("c#1", None),  # t=0
        ("c#1", 59),  # t=30: the 59 lines since
        ("c#2", None),
    ], fails
    assert sum(r["facility"] == "BROKER" for r in records) == 100  # debug: never dropped


def test_registry_requests_are_logged_only_at_debug(
    json_logs: pytest.CaptureFixture[str],
) -> None:
    configure_logging("json", "info")
    logging.getLogger("httpx").info("HTTP Request: GET https://registry/subjects")
    logging.getLogger("httpx").warning("HTTP retry")
    assert [r["event"] for r in lines(json_logs)] == ["HTTP retry"]
    configure_logging("json", "debug")
    logging.getLogger("httpx").info("HTTP Request: GET https://registry/subjects")
    assert [r["event"] for r in lines(json_logs)] == ["HTTP Request: GET https://registry/subjects"]


def test_repeat_limiter_is_bounded() -> None:
    limiter = RepeatLimiter(interval=30.0, max_keys=10, clock=lambda: 0.0)
    for key in range(1000):
        assert limiter.admit(key) == 0
    assert len(limiter._recent) <= 10
