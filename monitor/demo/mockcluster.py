"""An in-process Kafka-protocol cluster (librdkafka's mock cluster) for the demo and tests.

The brokers listen on real 127.0.0.1 TCP ports, so any Kafka client in this process or
another can use `bootstrap_servers` for as long as the `MockCluster` is open.

Why ctypes: confluent-kafka does not wrap librdkafka's mock API (`rd_kafka_mock_*`), but
the librdkafka that `confluent_kafka.cimpl` links exports it. Driving it directly gives
the broker addresses without reading logs and creates topics with a chosen partition
count; the mock answers no CreateTopics request, so `AdminClient.create_topics` only
times out ("waiting for controller"), and auto-created topics get 4 partitions.
Where those symbols cannot be resolved (for instance a platform whose dynamic loader
does not search an extension's dependencies), the cluster is started the documented
way instead, by a client configured with `test.mock.num.brokers`, and the address is
read from its "Mock cluster enabled" log line; `create_topic` is then unavailable.
"""

from __future__ import annotations

import ctypes
import logging
import re
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from monitor.errors import TidemarkError

_log = logging.getLogger(__name__)

_P = ctypes.c_void_p
_RD_KAFKA_PRODUCER = 0
_ERR_TOPIC_ALREADY_EXISTS = 36
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "rd_kafka_conf_new": (_P, []),
    "rd_kafka_conf_destroy": (None, [_P]),
    "rd_kafka_conf_set_log_cb": (None, [_P, _P]),
    "rd_kafka_new": (_P, [ctypes.c_int, _P, ctypes.c_char_p, ctypes.c_size_t]),
    "rd_kafka_destroy": (None, [_P]),
    "rd_kafka_mock_cluster_new": (_P, [_P, ctypes.c_int]),
    "rd_kafka_mock_cluster_destroy": (None, [_P]),
    "rd_kafka_mock_cluster_bootstraps": (ctypes.c_char_p, [_P]),
    "rd_kafka_mock_topic_create": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]),
    "rd_kafka_mock_broker_set_down": (ctypes.c_int, [_P, ctypes.c_int32]),
    "rd_kafka_mock_broker_set_up": (ctypes.c_int, [_P, ctypes.c_int32]),
    "rd_kafka_mock_group_initial_rebalance_delay_ms": (None, [_P, ctypes.c_int32]),
    "rd_kafka_mock_push_request_errors_array": (
        None,
        [_P, ctypes.c_int16, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int)],
    ),
    "rd_kafka_mock_clear_request_errors": (None, [_P, ctypes.c_int16]),
    "rd_kafka_err2str": (ctypes.c_char_p, [ctypes.c_int]),
}
_ADDRESS_LINE = re.compile(r"Mock cluster enabled: .* replaced with (\S+)")


def _load_mock_api() -> ctypes.CDLL | None:
    """The librdkafka that confluent-kafka uses, with the mock API typed; None if absent."""
    from confluent_kafka import cimpl

    try:
        lib = ctypes.CDLL(cimpl.__file__)
        for name, (restype, argtypes) in _SIGNATURES.items():
            func = getattr(lib, name)
            func.restype = restype
            func.argtypes = argtypes
    except (OSError, AttributeError) as exc:
        _log.debug("librdkafka mock API not reachable through ctypes: %s", exc)
        return None
    return lib


class MockCluster:
    """librdkafka's mock cluster with `num_brokers` brokers; close() (or `with`) stops it.

    Topics are auto-created with 4 partitions on first use; `create_topic` sets another
    count. Data lives in memory and is lost on close.
    """

    def __init__(self, num_brokers: int = 3, *, native: bool | None = None) -> None:
        """`native=None` picks the ctypes path when available; True/False force one."""
        self._rk: int | None = None
        self._cluster: int | None = None
        self._client: Any = None
        self._lib = _load_mock_api() if native is not False else None
        if num_brokers < 1:
            raise TidemarkError(f"MockCluster needs at least one broker, got {num_brokers}")
        if native and self._lib is None:
            raise TidemarkError(
                "librdkafka's mock API (rd_kafka_mock_*) is not reachable from this "
                "confluent-kafka build; use MockCluster(native=None) to fall back"
            )
        self.num_brokers = num_brokers
        if self._lib is not None:
            self.bootstrap_servers = self._start_native(self._lib)
        else:
            self.bootstrap_servers = self._start_with_client()

    @property
    def native(self) -> bool:
        """True when the mock API is driven directly (create_topic and broker control work)."""
        return self._lib is not None

    def _start_native(self, lib: ctypes.CDLL) -> str:
        conf = lib.rd_kafka_conf_new()
        lib.rd_kafka_conf_set_log_cb(conf, None)  # the owning handle only hosts the mock
        errstr = ctypes.create_string_buffer(512)
        rk = lib.rd_kafka_new(_RD_KAFKA_PRODUCER, conf, errstr, len(errstr))
        if not rk:
            lib.rd_kafka_conf_destroy(conf)
            detail = errstr.value.decode(errors="replace")
            raise TidemarkError(f"cannot create the librdkafka handle for the mock: {detail}")
        cluster = lib.rd_kafka_mock_cluster_new(rk, self.num_brokers)
        if not cluster:
            lib.rd_kafka_destroy(rk)
            raise TidemarkError(
                "librdkafka could not start its mock cluster (binding 127.0.0.1 ports failed?)"
            )
        self._rk, self._cluster = rk, cluster
        servers: bytes = lib.rd_kafka_mock_cluster_bootstraps(cluster)
        return servers.decode()

    def _start_with_client(self, timeout: float = 5.0) -> str:
        from confluent_kafka import Producer

        captured: list[str] = []

        class _Capture(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                message = record.getMessage()
                if not captured and _ADDRESS_LINE.search(message):
                    captured.append(message)
                else:  # keep librdkafka's chatter off stderr; callers may enable DEBUG
                    _log.debug("librdkafka: %s", message)

        logger = logging.Logger(f"{__name__}.owner")  # unregistered: no parent handlers
        logger.addHandler(_Capture())
        self._client = Producer({"test.mock.num.brokers": self.num_brokers, "logger": logger})
        deadline = time.monotonic() + timeout
        while not captured and time.monotonic() < deadline:
            self._client.poll(0.01)
        match = _ADDRESS_LINE.search(captured[0]) if captured else None
        if match is None:
            self._client = None
            raise TidemarkError(
                f"librdkafka's mock cluster did not report its address within {timeout}s"
            )
        return match.group(1)

    def create_topic(self, name: str, partitions: int, replication_factor: int = 1) -> None:
        """Create `name` with `partitions` partitions; an existing topic is an error."""
        lib, cluster = self._require_native("create_topic")
        err = lib.rd_kafka_mock_topic_create(
            cluster, name.encode(), partitions, min(replication_factor, self.num_brokers)
        )
        if err == _ERR_TOPIC_ALREADY_EXISTS:
            raise TidemarkError(
                f"mock topic {name!r} already exists (auto-created on first use with 4 "
                "partitions?); create topics before producing to or reading them"
            )
        if err:
            raise TidemarkError(
                f"mock cluster refused topic {name!r} ({partitions} partitions): "
                f"{lib.rd_kafka_err2str(err).decode()}"
            )

    def set_broker_up(self, broker_id: int, up: bool) -> None:
        """Take broker `broker_id` (1..num_brokers) down or bring it back, keeping its data."""
        lib, cluster = self._require_native("set_broker_up")
        setter = lib.rd_kafka_mock_broker_set_up if up else lib.rd_kafka_mock_broker_set_down
        err = setter(cluster, broker_id)
        if err:
            raise TidemarkError(
                f"cannot set mock broker {broker_id} {'up' if up else 'down'}: "
                f"{lib.rd_kafka_err2str(err).decode()} (ids run 1..{self.num_brokers})"
            )

    def set_group_initial_rebalance_delay(self, seconds: float) -> None:
        """How long a new consumer group waits for more members before its first
        assignment (the mock's default is 3 s, like Kafka's group.initial.rebalance.delay.ms).
        """
        lib, cluster = self._require_native("set_group_initial_rebalance_delay")
        lib.rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, int(seconds * 1000))

    def push_request_errors(self, api_key: int, errors: Sequence[int]) -> None:
        """Answer the next len(errors) requests of `api_key` (any client) with these codes.

        E.g. api_key 8 (OffsetCommit) with [29] makes the next commit fail with
        TOPIC_AUTHORIZATION_FAILED on every partition, as a broker would.
        """
        lib, cluster = self._require_native("push_request_errors")
        codes = (ctypes.c_int * len(errors))(*errors)
        lib.rd_kafka_mock_push_request_errors_array(cluster, api_key, len(errors), codes)

    def clear_request_errors(self, api_key: int) -> None:
        """Drop errors pushed for `api_key` that no request has taken yet."""
        lib, cluster = self._require_native("clear_request_errors")
        lib.rd_kafka_mock_clear_request_errors(cluster, api_key)

    def _require_native(self, what: str) -> tuple[ctypes.CDLL, int]:
        if self._lib is None or self._cluster is None:
            reason = "is closed" if self._lib is not None else "was started without ctypes"
            raise TidemarkError(f"MockCluster.{what} is unavailable: the cluster {reason}")
        return self._lib, self._cluster

    def close(self) -> None:
        """Stop the brokers; clients still connected see connection refused. Idempotent."""
        if self._lib is not None and self._cluster is not None:
            self._lib.rd_kafka_mock_cluster_destroy(self._cluster)
            self._lib.rd_kafka_destroy(self._rk)
            self._cluster = self._rk = None
        if self._client is not None:
            self._client.poll(0)
            self._client = None  # destroying the owning client destroys its mock cluster

    def __enter__(self) -> MockCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if hasattr(self, "_client"):  # __init__ may have failed before setting state
            self.close()
