"""`tidemark discover`: the products discovery would make, as YAML to review and pin.

Lists the cluster's topics once, applies the `discover:` section (from --config,
else the defaults) and, for each topic it would monitor, prints a `products:`
entry: topic-only, or `confluent` with the registered `<topic>-value` contract
and the event-time field chosen. With --contracts-dir the registered schemas are
written there as .avsc files, so the printed config runs as it is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

import yaml
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from monitor.config import DiscoverConfig, Settings, load_settings
from monitor.contract.registry import ConfluentRegistryLookup
from monitor.errors import ConfigError
from monitor.logs import LibrdkafkaLogger
from monitor.redact import REDACTOR
from monitor.runtime.discovery import Discoverer, Planned

_FIELDS = ("name", "owner", "tier", "topic", "encoding", "contract", "event_time")


def _entry(planned: Planned, contracts_dir: Path | None, out_dir: str) -> dict[str, Any]:
    cfg = planned.config
    entry: dict[str, Any] = {}
    for key in _FIELDS:
        value = getattr(cfg, key)
        if value is None:
            continue
        entry[key] = value
    if planned.contract is not None:
        file = f"{cfg.name}.avsc"
        entry["contract"] = f"{out_dir}/{file}"
        if contracts_dir is not None:
            contracts_dir.mkdir(parents=True, exist_ok=True)
            (contracts_dir / file).write_text(json.dumps(planned.contract.schema, indent=2) + "\n")
    else:
        entry.pop("event_time", None)  # topic-only: always the Kafka timestamp
    return entry


def discover_command(
    bootstrap: str | None,
    registry_url: str | None,
    config: Path | None,
    contracts_dir: Path | None,
    timeout: float = 10.0,
    out: TextIO = sys.stdout,
) -> int:
    settings: Settings | None = load_settings(config) if config is not None else None
    section = (settings.discover if settings else None) or DiscoverConfig()
    conf: dict[str, Any] = settings.kafka.librdkafka() if settings else {}
    if bootstrap:
        conf["bootstrap.servers"] = bootstrap
    if "bootstrap.servers" not in conf:
        raise ConfigError("discover: pass --bootstrap or --config")
    registry_conf: dict[str, Any] | None = None
    if registry_url:
        registry_conf = {"url": registry_url}
    elif settings is not None and settings.schema_registry.url:
        registry_conf = settings.schema_registry.client_conf()
    try:
        admin = AdminClient(conf, logger=LibrdkafkaLogger())
        topics = sorted(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise ConfigError(
            f"discover: the cluster did not answer: {REDACTOR(str(exc.args[0]))}"
        ) from None
    lookup = ConfluentRegistryLookup(registry_conf) if registry_conf else None
    explicit = {p.topic for p in settings.products} if settings else set()
    discoverer = Discoverer(
        section,
        explicit=explicit,
        registry=lookup.client if lookup else None,
        registry_describe=lookup._cause if lookup else None,
    )
    products: list[dict[str, Any]] = []
    skipped: list[str] = []
    left_out: list[str] = []
    for topic in topics:
        if not discoverer.wanted(topic):
            skipped.append(topic)
            continue
        if len(products) >= section.max_products:
            left_out.append(topic)
            continue
        out_dir = contracts_dir.as_posix() if contracts_dir is not None else "contracts"
        products.append(_entry(discoverer.plan(topic), contracts_dir, out_dir))
    checked = sum(1 for p in products if p["encoding"] != "none")
    out.write(
        f"# tidemark discover: {len(topics)} topics; {len(products)} products "
        f"({checked} with a registered contract, {len(products) - checked} topic-only)\n"
    )
    if skipped:
        out.write(f"# not monitored (excluded, internal or configured): {', '.join(skipped)}\n")
    if left_out:
        out.write(f"# beyond max_products ({section.max_products}): {len(left_out)} topics\n")
    if checked and contracts_dir is None:
        out.write("# contracts: rerun with --contracts-dir DIR to write the registered schemas\n")
    document: dict[str, Any] = {"products": products}
    if registry_conf and checked:
        document = {"schema_registry": {"url": registry_conf["url"]}, **document}
    yaml.safe_dump(document, out, sort_keys=False)
    return 0
