"""A bad config fails at start-up naming the file, the key (with line) and the problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from monitor.config import KafkaConfig, load_settings, loggable
from monitor.durations import parse_duration
from monitor.errors import ConfigError
from monitor.runtime.build import build_pipeline

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "config" / "contracts"

MINIMAL = """\
kafka:
  bootstrap_servers: 127.0.0.1:9092
products:
  - name: orders
    owner: team-checkout
    topic: shop.orders
    contract: contracts/orders.avsc
    encoding: avro-raw
    event_time: occurred_at
"""


@pytest.fixture()
def config_dir(tmp_path: Path) -> Path:
    shutil.copytree(CONTRACTS, tmp_path / "contracts")
    return tmp_path


def write(config_dir: Path, text: str) -> Path:
    path = config_dir / "tidemark.yaml"
    path.write_text(text)
    return path


def test_shipped_example_config_validates() -> None:
    settings = load_settings(REPO / "config" / "example.yaml")
    assert [p.name for p in settings.products] == ["orders", "payments"]
    built = build_pipeline(settings)
    assert set(built.pipeline.products) == {"shop.orders.v1", "pay.payments.v1"}


def test_contract_paths_are_relative_to_the_config_file(config_dir: Path) -> None:
    settings = load_settings(write(config_dir, MINIMAL))
    assert settings.products[0].contract == config_dir / "contracts" / "orders.avsc"


def test_durations_accept_units(config_dir: Path) -> None:
    text = MINIMAL + "    max_out_of_orderness: 1m30s\n    idle_timeout: 2h\n"
    product = load_settings(write(config_dir, text)).products[0]
    assert product.max_out_of_orderness == 90.0
    assert product.idle_timeout == 7200.0


@pytest.mark.parametrize(
    ("value", "seconds"), [(30, 30.0), ("250ms", 0.25), ("5m", 300.0), ("1h30m", 5400.0)]
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["5 minutes", "m5", "-3", True, "", [1]])
def test_parse_duration_rejects_nonsense(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_error_names_file_line_key_and_problem(config_dir: Path) -> None:
    text = MINIMAL + "    freshness:\n      target: 1.5\n"
    path = write(config_dir, text)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    message = str(err.value)
    assert f"{path}:11: products[0].freshness.target" in message
    assert "less than 1" in message


def test_unknown_key_is_reported_with_its_line(config_dir: Path) -> None:
    path = write(
        config_dir, MINIMAL.replace("    encoding:", "    encodng: avro-raw\n    encoding:")
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert f"{path}:8: products[0].encodng: unknown key" in str(err.value)


def test_missing_key_is_reported(config_dir: Path) -> None:
    path = write(config_dir, MINIMAL.replace("    owner: team-checkout\n", ""))
    with pytest.raises(ConfigError, match=r"products\[0\]\.owner: required key is missing"):
        load_settings(path)


def test_bad_encoding_lists_the_choices(config_dir: Path) -> None:
    path = write(config_dir, MINIMAL.replace("encoding: avro-raw", "encoding: protobuf"))
    with pytest.raises(ConfigError, match=r"avro-raw.*confluent.*avro-single-object"):
        load_settings(path)


def test_confluent_encoding_requires_a_registry(config_dir: Path) -> None:
    path = write(config_dir, MINIMAL.replace("encoding: avro-raw", "encoding: confluent"))
    with pytest.raises(ConfigError, match=r"schema_registry\.url"):
        load_settings(path)


def test_topic_claimed_twice_is_rejected(config_dir: Path) -> None:
    second = MINIMAL.split("products:\n", 1)[1].replace("name: orders", "name: orders2")
    path = write(config_dir, MINIMAL + second)
    with pytest.raises(ConfigError, match="already monitored by product 'orders'"):
        load_settings(path)


def test_product_name_must_be_label_safe(config_dir: Path) -> None:
    path = write(config_dir, MINIMAL.replace("name: orders", "name: 'orders v1'"))
    with pytest.raises(ConfigError, match="metric label"):
        load_settings(path)


def test_secret_in_plain_properties_is_refused(config_dir: Path) -> None:
    text = MINIMAL.replace("kafka:\n", "kafka:\n  properties:\n    ssl.key.password: hunter2\n")
    with pytest.raises(ConfigError) as err:
        load_settings(write(config_dir, text))
    assert "secret_properties" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_not_yaml_names_the_line(config_dir: Path) -> None:
    path = write(config_dir, "kafka: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: not valid YAML"):
        load_settings(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_settings(tmp_path / "nope.yaml")


def test_environment_overrides_the_file(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDEMARK_KAFKA__BOOTSTRAP_SERVERS", "broker-a:9093")
    monkeypatch.setenv("TIDEMARK_KAFKA__SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("TIDEMARK_SERVER__PORT", "9999")
    settings = load_settings(write(config_dir, MINIMAL))
    assert settings.kafka.bootstrap_servers == "broker-a:9093"
    assert settings.server.port == 9999
    assert settings.kafka.librdkafka()["sasl.password"] == "s3cret"
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings.model_dump(mode="json"))


def test_missing_contract_file_names_product_and_key(config_dir: Path) -> None:
    path = write(config_dir, MINIMAL.replace("orders.avsc", "nope.avsc"))
    settings = load_settings(path)
    with pytest.raises(ConfigError, match=r"products\[0\]\.contract \(orders\).*nope\.avsc"):
        build_pipeline(settings)


def test_event_time_field_must_exist_in_contract(config_dir: Path) -> None:
    path = write(config_dir, MINIMAL.replace("event_time: occurred_at", "event_time: created"))
    with pytest.raises(ConfigError, match=r"products\[0\]\.event_time \(orders\)"):
        build_pipeline(load_settings(path))


def test_start_up_log_view_masks_secrets_and_url_credentials(config_dir: Path) -> None:
    text = MINIMAL.replace(
        "kafka:\n",
        "schema_registry:\n  url: https://svc:regpass@registry:8081\n"
        "  basic_auth_user_info: svc:regpass\nkafka:\n  sasl_password: kafkapass\n",
    )
    view = str(loggable(load_settings(write(config_dir, text))))
    assert "regpass" not in view
    assert "kafkapass" not in view
    assert "https://***@registry:8081" in view


def test_workers_default_to_one_and_the_flag_overrides_the_file(config_dir: Path) -> None:
    from monitor.config import with_workers

    settings = load_settings(write(config_dir, MINIMAL))
    assert settings.kafka.workers == 1
    assert with_workers(settings, 3).kafka.workers == 3
    with pytest.raises(ConfigError, match="--workers"):
        with_workers(settings, 0)
    path = write(config_dir, MINIMAL.replace("kafka:\n", "kafka:\n  workers: 65\n"))
    with pytest.raises(ConfigError, match="workers"):
        load_settings(path)


def test_consumer_ships_with_a_short_fetch_queue_backoff() -> None:
    """librdkafka's 1 s default stalls fetching on every backlog; the user still wins."""
    assert KafkaConfig().librdkafka()["fetch.queue.backoff.ms"] == 10
    own = KafkaConfig(properties={"fetch.queue.backoff.ms": 500})
    assert own.librdkafka()["fetch.queue.backoff.ms"] == 500
