"""structlog set-up: JSON lines in production, readable output on a terminal.

Everything the process writes goes through here, so that with format json every
line on stdout/stderr parses as JSON and no line carries a secret: stdlib
logging (httpx, the registry client), librdkafka's log lines (LibrdkafkaLogger,
the `logger=` of every Kafka client), uncaught exceptions (sys/threading
excepthooks). The last processor before rendering masks secrets (monitor.redact).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Hashable, MutableMapping
from types import TracebackType
from typing import Any, Literal

import structlog

from monitor.redact import REDACTOR


def _redact(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """Last step before rendering: no secret leaves in any field (see monitor.redact)."""
    return {key: REDACTOR.scrub(value) for key, value in event_dict.items()}


def configure_logging(
    fmt: Literal["auto", "json", "console"] = "auto", level: str = "info"
) -> None:
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        # One write() per line: print() writes the line and its newline apart, and the
        # processes of `run --workers N` share stderr, so their lines would interleave.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Any library using stdlib logging goes the same way.
    threshold = logging.getLevelNamesMapping()[level.upper()]
    logging.basicConfig(handlers=[_ToStructlog()], level=threshold, force=True)
    # httpx logs every registry request at info: at the default level that is one line
    # per look-up and per subject poll, noise that hides what operators look for.
    for chatty in _CHATTY_LIBRARIES:
        logging.getLogger(chatty).setLevel(
            threshold if threshold <= logging.DEBUG else logging.WARNING
        )
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_uncaught


_CHATTY_LIBRARIES = ("httpx", "httpcore")


class _ToStructlog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format string must not kill the caller
            message = str(record.msg)
        structlog.get_logger(record.name).log(record.levelno, message)


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    """Uncaught exceptions as one (redacted) log event, not a raw traceback."""
    structlog.get_logger("tidemark").critical("uncaught_exception", exc_info=(exc_type, exc, tb))


def _log_thread_uncaught(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    structlog.get_logger("tidemark").critical(
        "uncaught_exception",
        thread=args.thread.name if args.thread is not None else None,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


# librdkafka syslog levels as confluent-kafka maps them to Python levels.
_WARNING = logging.WARNING


class RepeatLimiter:
    """Lets a repeated log event through once per `interval` per key, counting the rest.

    A broker outage repeats the same complaint many times a second (a connect
    failure per broker per retry, an error callback per request); the counters
    keep every occurrence, the log keeps one per key per interval.
    """

    def __init__(
        self,
        interval: float = 30.0,
        max_keys: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: dict[Hashable, tuple[float, int]] = {}  # key -> (logged at, suppressed)

    def admit(self, key: Hashable) -> int | None:
        """None to drop this occurrence; else how many were dropped since the last one logged."""
        now = self._clock()
        with self._lock:
            last = self._recent.get(key)
            if last is not None and now - last[0] < self._interval:
                self._recent[key] = (last[0], last[1] + 1)
                return None
            if last is None and len(self._recent) >= self._max_keys:
                self._recent.clear()  # rare: only with hundreds of distinct keys
            self._recent[key] = (now, 0)
            return last[1] if last is not None else 0


class LibrdkafkaLogger:
    """The `logger=` of every Kafka client: librdkafka's lines as structlog events.

    With a logger, confluent-kafka sets `log.queue`: librdkafka queues its lines
    and they are delivered inside poll()/consume()/close() on the calling thread,
    never on a librdkafka thread, so each client must be polled. confluent-kafka
    calls `log(level, "%s [%s] %s", facility, client, text)`.

    Warnings and errors are logged once per (client, facility, level) per
    interval (RepeatLimiter), with the number suppressed since. Debug and info
    lines (asked for with `debug=`) are never suppressed.
    """

    def __init__(
        self, name: str = "tidemark.librdkafka", limiter: RepeatLimiter | None = None
    ) -> None:
        self._log = structlog.get_logger(name)
        self._limiter = limiter or RepeatLimiter()

    def log(self, level: int, msg: str, *args: Any) -> None:
        if len(args) == 3:
            facility, client, text = (str(a) for a in args)
        else:  # not confluent-kafka's call shape: log it whole
            facility, client, text = "", "", (msg % args if args else msg)
        fields: dict[str, Any] = {"facility": facility, "client": client, "message": text}
        if level >= _WARNING:
            suppressed = self._limiter.admit((client, facility, level))
            if suppressed is None:
                return
            if suppressed:
                fields["suppressed"] = suppressed
        self._log.log(level, "librdkafka_logged", **fields)
