"""``antinex process`` (score packet records from Kafka, publish alerts) and ``antinex alerts``
(show the alerts as they arrive)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from antinex.logs import event
from antinex.options import UsageError, add_flag, non_negative_float, positive_int
from capture.cli import add_kafka_flags, add_metrics_flags, kafka_client_options, start_metrics

log = logging.getLogger("antinex.processor")

DEFAULT_STATE_DIR = "~/.cache/antinex/processor"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``process`` and ``alerts`` subcommands."""
    _register_process(subparsers)
    _register_alerts(subparsers)


def _register_process(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "process",
        help="Score packet records from Kafka with a model and publish alerts",
        description="Join a consumer group on the packets topic, score every record with the "
        "model, publish alerts (one per flow per window) and dead letters, and commit offsets "
        "once the broker has acknowledged them. A new model version under --model is loaded "
        "between batches. SIGINT/SIGTERM finish the batch, commit and exit 0.",
        epilog="exit codes: 0 stopped by a signal, 1 runtime failure (e.g. broker unreachable "
        "for --connect-timeout-s), 2 bad usage, a model that fails its checks, or TLS/SASL "
        "settings the broker refuses",
    )
    scope = "processor"
    add_flag(
        parser,
        "--model",
        scope=scope,
        required=True,
        help="Model directory (or a directory whose `current` pointer names the version)",
    )

    kafka = parser.add_argument_group("kafka")
    add_kafka_flags(kafka)
    add_flag(kafka, "--packets-topic", default="antinex.packets", help="Topic of packet records")
    add_flag(kafka, "--alerts-topic", default="antinex.alerts", help="Topic alerts go to")
    add_flag(
        kafka,
        "--dead-letter-topic",
        scope=scope,
        default="antinex.deadletter",
        help="Topic of records that could not be scored, with the reason in headers",
    )
    add_flag(kafka, "--group-id", scope=scope, default="antinex-processor", help="Consumer group")
    add_flag(
        kafka,
        "--auto-offset-reset",
        scope=scope,
        default="earliest",
        choices=["earliest", "latest"],
        help="Where a group without committed offsets starts",
    )
    add_flag(
        kafka,
        "--session-timeout-s",
        scope=scope,
        default=10.0,
        type=non_negative_float,
        help="Seconds without heartbeat before the group gives this processor's partitions away",
    )
    add_flag(
        kafka,
        "--max-poll-messages",
        scope=scope,
        default=64,
        type=positive_int,
        help="Most Kafka messages (batches of records) scored together",
    )
    add_flag(kafka, "--fetch-max-mb", scope=scope, default=64, type=positive_int, help="Fetch MiB")
    add_flag(
        kafka,
        "--partition-fetch-max-mb",
        scope=scope,
        default=16,
        type=positive_int,
        help="Fetch MiB per partition",
    )
    add_flag(
        kafka,
        "--fetch-max-wait-ms",
        scope=scope,
        default=50,
        type=positive_int,
        help="Longest time the broker holds a fetch waiting for new records",
    )
    add_flag(
        kafka,
        "--check-crcs",
        scope=scope,
        default="auto",
        choices=["auto", "on", "off"],
        help="Verify record CRCs; auto: only when the native crc32c package is installed",
    )
    add_flag(
        kafka,
        "--connect-timeout-s",
        scope=scope,
        default=60.0,
        type=non_negative_float,
        help="Give up (exit 1) when the broker does not answer for this long; 0 retries forever",
    )

    alerting = parser.add_argument_group("alerts")
    add_flag(
        parser,
        "--score-threads",
        scope=scope,
        default=1,
        type=positive_int,
        help="BLAS threads for scoring; 1 leaves the other core to the Kafka client's IO thread",
    )
    add_flag(
        alerting,
        "--alert-window-s",
        scope=scope,
        default=60.0,
        type=non_negative_float,
        help="At most one alert per flow per this many seconds (later ones are summarised)",
    )
    add_flag(
        alerting,
        "--max-flows",
        scope=scope,
        default=100_000,
        type=positive_int,
        help="Most flows with an open alert window; the oldest is closed first",
    )
    add_flag(
        alerting,
        "--top-features",
        scope=scope,
        default=5,
        type=int,
        help="Features listed in each alert as weighing most for its score",
    )

    state = parser.add_argument_group("state")
    add_flag(
        state,
        "--state-dir",
        scope=scope,
        default=DEFAULT_STATE_DIR,
        help="Where the highest scored offset per partition is kept (to count duplicates)",
    )
    add_flag(
        state,
        "--reload-check-s",
        scope=scope,
        default=5.0,
        type=non_negative_float,
        help="How often the model directory is checked for a new version; 0 never",
    )
    add_flag(
        state,
        "--shutdown-timeout-s",
        scope=scope,
        default=30.0,
        type=non_negative_float,
        help="Longest wait for the broker's acks when stopping",
    )
    add_metrics_flags(parser, scope, 9109)
    parser.set_defaults(run=run_process)


def _register_alerts(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "alerts",
        help="Show alerts as they arrive (a table, or JSON lines)",
        description="Read the alerts topic and print each alert: time, rule/attack, source → "
        "destination, score and packets; or the alert documents as JSON lines with --json.",
        epilog="exit codes: 0 done or interrupted, 1 broker unreachable, 2 bad usage or "
        "TLS/SASL settings the broker refuses",
    )
    scope = "alerts"
    add_kafka_flags(parser)
    add_flag(parser, "--alerts-topic", default="antinex.alerts", help="Topic of alerts")
    add_flag(
        parser,
        "--from-beginning",
        scope=scope,
        switch=True,
        help="Start with the oldest alert kept, not the next new one",
    )
    add_flag(
        parser, "--limit", scope=scope, default=0, type=int, help="Stop after this many; 0 never"
    )
    add_flag(parser, "--json", scope=scope, switch=True, help="Print alert documents as JSON lines")
    add_flag(
        parser,
        "--idle-exit-s",
        scope=scope,
        default=0.0,
        type=non_negative_float,
        help="Stop when no alert arrived for this many seconds; 0 waits forever",
    )
    add_flag(
        parser,
        "--connect-timeout-s",
        scope=scope,
        default=30.0,
        type=non_negative_float,
        help="Give up (exit 1) when the broker does not answer for this long",
    )
    parser.set_defaults(run=run_alerts)


def run_process(args: argparse.Namespace) -> int:
    from models.artifact import ModelRefused
    from stream_processor.reload import load_checked

    if args.top_features < 0:
        raise UsageError(f"--top-features {args.top_features} is negative")
    try:
        model = load_checked(Path(args.model))
    except ModelRefused as err:  # Keras' own messages may span lines: keep one
        raise UsageError(f"model refused: {' '.join(str(err).split())}") from err
    event(
        log,
        logging.INFO,
        "model_loaded",
        path=str(model.directory),
        version=model.version,
        features=len(model.manifest.features),
        threshold=model.manifest.threshold,
        classes=",".join(model.manifest.classes),
        forward="numpy" if model.forward is not None else "keras",
    )
    stop = threading.Event()
    handlers = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in handlers}
    try:
        return _serve(args, model, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(args: argparse.Namespace, model: object, stop: threading.Event) -> int:
    """Connect, then process until ``stop`` (SIGTERM/SIGINT) is set."""
    from threadpoolctl import threadpool_limits

    from stream_processor import clients
    from stream_processor.offsets import ScoredMarks
    from stream_processor.outbox import Outbox
    from stream_processor.processor import LoopSettings, Processor

    threadpool_limits(args.score_threads)
    start_metrics(args)
    settings = clients.KafkaSettings(
        bootstrap_servers=args.bootstrap_servers,
        packets_topic=args.packets_topic,
        alerts_topic=args.alerts_topic,
        dead_letter_topic=args.dead_letter_topic,
        group_id=args.group_id,
        auto_offset_reset=args.auto_offset_reset,
        session_timeout_s=args.session_timeout_s,
        max_poll_messages=args.max_poll_messages,
        fetch_max_mb=args.fetch_max_mb,
        partition_fetch_max_mb=args.partition_fetch_max_mb,
        fetch_max_wait_ms=args.fetch_max_wait_ms,
        check_crcs=args.check_crcs,
        connect_timeout_s=args.connect_timeout_s,
        client_options=kafka_client_options(args),
    )
    if not clients.wait_for_broker(settings, stop):
        return 0
    loop = LoopSettings(
        model_path=Path(args.model),
        state_dir=Path(args.state_dir).expanduser(),
        alert_window_s=args.alert_window_s,
        max_flows=args.max_flows,
        reload_check_s=args.reload_check_s,
        top_features=args.top_features,
        shutdown_timeout_s=args.shutdown_timeout_s,
    )
    outbox = Outbox(
        clients.make_producer(settings),
        settings.alerts_topic,
        settings.dead_letter_topic,
        args.alert_window_s,
    )
    processor = Processor(
        loop,
        model,
        lambda listener: clients.make_consumer(settings, listener),
        outbox,
        ScoredMarks(loop.state_dir, settings.group_id, settings.packets_topic),
        stop,
    )
    event(
        log,
        logging.INFO,
        "processor_started",
        topic=settings.packets_topic,
        group=settings.group_id,
        alerts_topic=settings.alerts_topic,
        dead_letter_topic=settings.dead_letter_topic,
    )
    return processor.run()


def run_alerts(args: argparse.Namespace) -> int:
    from stream_processor.tail import AlertTail

    if args.limit < 0:
        raise UsageError(f"--limit {args.limit} is negative; give 0 for no limit")
    tail = AlertTail(
        bootstrap_servers=args.bootstrap_servers,
        topic=args.alerts_topic,
        from_beginning=args.from_beginning,
        client_options=kafka_client_options(args),
        connect_timeout_s=args.connect_timeout_s,
    )
    return tail.run(as_json=args.json, limit=args.limit, idle_exit_s=args.idle_exit_s)
