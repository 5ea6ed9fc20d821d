"""Integration-test harness: real brokers, a schema-registry stand-in, the daemon, scraping.

See README.md here for what each broker implementation does differently.
"""

from .brokers import Broker, MockBroker, TansuBroker, mock_broker, tansu_broker
from .daemon import DaemonError, TidemarkProcess
from .ports import free_port, wait_for_port
from .registry_server import RegistryServer
from .scrape import Samples, scrape, wait_for

__all__ = [
    "Broker",
    "DaemonError",
    "MockBroker",
    "RegistryServer",
    "Samples",
    "TansuBroker",
    "TidemarkProcess",
    "free_port",
    "mock_broker",
    "scrape",
    "tansu_broker",
    "wait_for",
    "wait_for_port",
]
