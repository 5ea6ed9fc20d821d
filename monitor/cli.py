"""Command line: run, validate, compat, discover, demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from monitor import __version__
from monitor.errors import TidemarkError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tidemark",
        description="Freshness, completeness and contract SLIs for Kafka data products.",
    )
    parser.add_argument("--version", action="version", version=f"tidemark {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="consume, check contracts and serve /metrics")
    run.add_argument("--config", type=Path, help="YAML file (default: $TIDEMARK_CONFIG)")
    run.add_argument(
        "--workers",
        type=int,
        help="consumer processes behind one /metrics (default: kafka.workers, 1)",
    )

    validate = sub.add_parser(
        "validate", help="check the config and every contract; non-zero exit on any problem"
    )
    validate.add_argument("--config", type=Path, help="YAML file (default: $TIDEMARK_CONFIG)")

    compat = sub.add_parser("compat", help="is a schema change compatible, and if not, why")
    compat.add_argument("old", type=Path, help="the schema in use (.avsc)")
    compat.add_argument("new", type=Path, help="the proposed schema (.avsc)")
    compat.add_argument("--mode", choices=("backward", "forward", "full"), default="backward")

    discover = sub.add_parser(
        "discover",
        help="list the cluster's topics and print the products config discovery would use",
    )
    discover.add_argument("--bootstrap", help="Kafka bootstrap servers (default: --config's)")
    discover.add_argument("--registry", help="Schema Registry URL (default: --config's)")
    discover.add_argument(
        "--config", type=Path, help="YAML file whose kafka, registry and discover: apply"
    )
    discover.add_argument(
        "--contracts-dir", type=Path, help="write the registered schemas here as .avsc files"
    )

    demo = sub.add_parser(
        "demo", help="embedded Kafka-protocol cluster, fault-injecting producer and a monitor"
    )
    demo.add_argument("--port", type=int, default=9308, help="HTTP port for /metrics")
    demo.add_argument("--bind", default="127.0.0.1", help="HTTP bind address")
    demo.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many seconds (0: Ctrl-C)"
    )
    demo.add_argument(
        "--summary-interval", type=float, default=5.0, help="seconds between live summaries"
    )
    produce = sub.add_parser(
        "produce-demo",
        help="the demo's fault-injecting producer against a real cluster and registry",
    )
    produce.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    produce.add_argument("--registry", required=True, help="Schema Registry URL")
    produce.add_argument("--rate", type=float, default=200.0, help="events/s per product")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args.config, args.workers)
        if args.command == "validate":
            return _validate(args.config)
        if args.command == "compat":
            return _compat(args.old, args.new, args.mode)
        if args.command == "discover":
            from monitor.runtime.discover_cli import discover_command

            return discover_command(args.bootstrap, args.registry, args.config, args.contracts_dir)
        if args.command == "demo":
            from monitor.demo.run import run_demo

            return run_demo(
                port=args.port,
                bind=args.bind,
                duration=args.duration,
                summary_interval=args.summary_interval,
            )
        if args.command == "produce-demo":
            from monitor.demo.run import produce_demo

            return produce_demo(args.bootstrap, args.registry, args.rate)
    except TidemarkError as exc:
        from monitor.redact import REDACTOR

        print(f"tidemark: {REDACTOR(str(exc))}", file=sys.stderr)
        return 2
    return 2


def _run(config: Path | None, workers: int | None = None) -> int:
    from monitor.config import load_settings, with_workers
    from monitor.logs import configure_logging
    from monitor.runtime.app import run

    settings = load_settings(config)
    if workers is not None:
        settings = with_workers(settings, workers)
    configure_logging(settings.logging.format, settings.logging.level)
    try:
        return run(settings)
    except TidemarkError as exc:  # logged, so a JSON log stays JSON (and redacted)
        import structlog

        structlog.get_logger("tidemark").error("tidemark_failed", error=str(exc))
        return 2


def _validate(config: Path | None) -> int:
    from monitor.config import load_settings
    from monitor.runtime.build import build_pipeline

    settings = load_settings(config)
    built = build_pipeline(settings)
    for topic, product in built.pipeline.products.items():
        cfg = product.config
        if cfg.contract is None:
            print(f"ok  {cfg.name}: topic {cfg.topic}, topic-only, event time kafka-timestamp")
            continue
        setup = built.setups[topic]
        contract = (
            cfg.contract.name
            if isinstance(cfg.contract, Path)
            else f"subject {cfg.contract.subject} version {setup.version and setup.version.version}"
        )
        print(
            f"ok  {cfg.name}: topic {cfg.topic}, {cfg.encoding}, contract {contract}, "
            f"event time {cfg.event_time}, owner {cfg.owner}"
        )
        if setup.filled:
            print(f"    from the contract: {', '.join(setup.filled)}")
        if setup.expected_volume:
            print(f"    {setup.expected_volume}")
        if len(setup.rules):
            ratio = "" if cfg.rules_sample_ratio >= 1 else f" (sampled {cfg.rules_sample_ratio})"
            print(f"    rules evaluated{ratio}: {', '.join(setup.rules.names)}")
        for name, why in setup.not_evaluated:
            print(f"    not evaluated: {name}: {why}")
    return 0


def _compat(old: Path, new: Path, mode: str) -> int:
    from monitor.contract.compat import check_compatibility, format_report
    from monitor.contract.model import Contract

    # Load both as contracts first: an invalid schema is an error, not "incompatible".
    schemas = [Contract.load(path).schema for path in (old, new)]
    report = check_compatibility(schemas[0], schemas[1], mode)  # type: ignore[arg-type]
    print(format_report(report))
    return 0 if report.compatible else 1


if __name__ == "__main__":
    raise SystemExit(main())
