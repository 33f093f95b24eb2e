"""``antinex sensor``: capture live or replay a pcap, publish packet records."""

from __future__ import annotations

import argparse
import logging

from antinex.kafka_security import check_broker_security
from antinex.logs import event
from antinex.options import UsageError, add_flag, non_negative_float, positive_int

log = logging.getLogger("antinex.sensor")


def add_kafka_flags(parser: argparse.ArgumentParser) -> None:
    """Flags for reaching the broker, shared by every command that talks to Kafka."""
    add_flag(
        parser,
        "--bootstrap-servers",
        default="127.0.0.1:9092",
        help="Kafka bootstrap servers, comma separated",
    )
    add_flag(
        parser,
        "--security-protocol",
        default="PLAINTEXT",
        choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
        help="Kafka security protocol",
    )
    add_flag(parser, "--ssl-cafile", help="CA bundle that signed the broker's certificate")
    add_flag(parser, "--ssl-certfile", help="Client certificate (PEM) for TLS client auth")
    add_flag(parser, "--ssl-keyfile", help="Client private key (PEM) for TLS client auth")
    add_flag(
        parser,
        "--sasl-mechanism",
        choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
        help="SASL mechanism",
    )
    add_flag(parser, "--sasl-username", help="SASL user name")
    add_flag(parser, "--sasl-password", help="SASL password (prefer the environment variable)")


def kafka_client_options(args: argparse.Namespace) -> dict[str, str]:
    """kafka-python keyword arguments for the security flags that were given, once the broker
    has not refused them: a certificate the CA does not vouch for, or rejected credentials,
    raise ``UsageError`` here rather than leave the client retrying."""
    names = {
        "security_protocol": "security_protocol",
        "ssl_cafile": "ssl_cafile",
        "ssl_certfile": "ssl_certfile",
        "ssl_keyfile": "ssl_keyfile",
        "sasl_mechanism": "sasl_mechanism",
        "sasl_username": "sasl_plain_username",
        "sasl_password": "sasl_plain_password",
    }
    options = {kw: getattr(args, flag) for flag, kw in names.items() if getattr(args, flag)}
    if options.get("security_protocol") == "PLAINTEXT":
        del options["security_protocol"]
    check_broker_security(args.bootstrap_servers, options)
    return options


def add_metrics_flags(parser: argparse.ArgumentParser, scope: str, port: int) -> None:
    add_flag(
        parser,
        "--metrics-port",
        scope=scope,
        default=port,
        type=int,
        help="Port of the Prometheus metrics endpoint; 0 turns it off",
    )
    add_flag(
        parser,
        "--metrics-address",
        scope=scope,
        default="127.0.0.1",
        help="Address the metrics endpoint binds to",
    )


def start_metrics(args: argparse.Namespace) -> None:
    if not args.metrics_port:
        return
    from prometheus_client import start_http_server

    try:
        start_http_server(args.metrics_port, addr=args.metrics_address)
    except OSError as err:
        raise UsageError(
            f"cannot serve metrics on {args.metrics_address}:{args.metrics_port} "
            f"({err.strerror}); choose another --metrics-port"
        ) from err
    event(
        log,
        logging.INFO,
        "metrics_serving",
        address=f"http://{args.metrics_address}:{args.metrics_port}/metrics",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sensor",
        help="Capture packets (live or from a pcap) and publish packet records",
        description="Read frames from a live interface or a pcap/pcapng file, decode each into "
        "a packet record, and publish the records to Kafka (default) or write them as JSON "
        "lines or CSV. SIGINT/SIGTERM flush what is pending and exit 0.",
        epilog="exit codes: 0 done, 1 runtime failure, 2 bad usage or input (TLS/SASL settings "
        "the broker refuses included)",
    )
    scope = "sensor"
    source = parser.add_argument_group("source (one of)")
    add_flag(source, "--interface", scope=scope, help="Capture live on this interface (root)")
    add_flag(
        source,
        "--netns",
        scope=scope,
        help="Network namespace (as `ip netns` names it) that --interface lives in; the broker "
        "connection and metrics stay in the sensor's own namespace",
    )
    add_flag(source, "--pcap", scope=scope, help="Replay this pcap or pcapng file")
    add_flag(source, "--filter", scope=scope, help="BPF filter for live capture, e.g. 'tcp'")
    add_flag(
        source,
        "--speed",
        scope=scope,
        default="max",
        help="Replay pace: max, recorded, or a factor of the recorded pace",
    )
    add_flag(
        source,
        "--user",
        scope=scope,
        help="Run as this user once the capture socket and the output are open (needs root)",
    )
    add_flag(
        source,
        "--socket-buffer-mb",
        scope=scope,
        default=64,
        type=positive_int,
        help="Kernel receive buffer of the live capture socket, MiB",
    )

    output = parser.add_argument_group("output")
    add_flag(
        output,
        "--output",
        scope=scope,
        default="kafka",
        choices=["kafka", "jsonl", "csv"],
        help="Where records go",
    )
    add_flag(
        output,
        "--out",
        scope=scope,
        default="-",
        help="File for --output jsonl|csv; - is standard output",
    )
    add_flag(
        output,
        "--payload-bytes",
        scope=scope,
        default=16,
        type=int,
        help="Payload bytes kept in payload_hex (0 keeps none)",
    )
    add_flag(
        output,
        "--context-table-size",
        scope=scope,
        default=100_000,
        type=int,
        help="Hosts, host pairs and flows kept for context features; 0 turns them off",
    )
    add_flag(
        output,
        "--limit",
        scope=scope,
        default=0,
        type=int,
        help="Stop after this many packets; 0 means no limit",
    )
    add_flag(
        output,
        "--duration",
        scope=scope,
        default=0.0,
        type=non_negative_float,
        help="Stop after this many seconds; 0 means no limit",
    )

    kafka = parser.add_argument_group("kafka")
    add_kafka_flags(kafka)
    add_flag(kafka, "--packets-topic", default="antinex.packets", help="Topic of packet records")
    add_flag(
        kafka,
        "--partitions",
        scope=scope,
        default=3,
        type=positive_int,
        help="Partitions of the packets topic when the sensor creates it",
    )
    add_flag(
        kafka,
        "--encoding",
        scope=scope,
        default="batch",
        choices=["batch", "json"],
        help="batch: many records per message (.npy); json: one JSON record per message",
    )
    add_flag(
        kafka,
        "--batch-records",
        scope=scope,
        default=500,
        type=positive_int,
        help="Records per batch message",
    )
    add_flag(
        kafka,
        "--linger-ms",
        scope=scope,
        default=25,
        type=int,
        help="Longest wait before a partly filled batch is sent",
    )
    add_flag(
        kafka,
        "--compression",
        scope=scope,
        default="lz4",
        choices=["none", "gzip", "lz4", "zstd", "snappy"],
        help="Kafka compression (zstd and snappy need their Python package)",
    )
    add_flag(
        kafka,
        "--queue-batches",
        scope=scope,
        default=256,
        type=positive_int,
        help="Batches that may wait for the broker before new ones are dropped",
    )
    add_metrics_flags(parser, scope, 9108)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from capture.context import ContextTracker
    from capture.sensor import Sensor
    from capture.sinks import FileSink
    from capture.sources import LiveSource, PcapSource, drop_privileges, look_up_user

    if bool(args.interface) == bool(args.pcap):
        raise UsageError("give exactly one of --interface IFACE or --pcap FILE")
    if args.netns and not args.interface:
        raise UsageError("--netns names the namespace of --interface; give --interface too")
    if not 0 <= args.payload_bytes <= 1500:
        raise UsageError(f"--payload-bytes {args.payload_bytes} is outside 0..1500")
    if args.limit < 0:
        raise UsageError(f"--limit {args.limit} is negative; give 0 for no limit")
    user = look_up_user(args.user) if args.user else None
    if args.pcap:
        source: PcapSource | LiveSource = PcapSource(args.pcap, args.speed)
    elif args.netns:
        from capture import netns

        with netns.inside(args.netns):
            source = LiveSource(args.interface, args.filter, args.socket_buffer_mb << 20)
    else:
        source = LiveSource(args.interface, args.filter, args.socket_buffer_mb << 20)
    start_metrics(args)
    if args.output == "kafka":
        from capture.publisher import KafkaPublisher, KafkaSettings

        if user is not None:
            # Limitation: a module first imported after the drop must be readable by that user
            # (a Python under /root is not), so the broker client is imported while still root,
            # and before the publisher's thread would import it at the same time.
            import kafka  # noqa: F401

        settings = KafkaSettings(
            bootstrap_servers=args.bootstrap_servers,
            topic=args.packets_topic,
            partitions=args.partitions,
            batch_records=args.batch_records,
            linger_ms=args.linger_ms,
            compression=args.compression,
            queue_batches=args.queue_batches,
            encoding=args.encoding,
            payload_bytes=args.payload_bytes,
            client_options=kafka_client_options(args),
        )
        output: KafkaPublisher | FileSink = KafkaPublisher(settings)
    else:
        output = FileSink(args.out, args.output)
    context = ContextTracker(args.context_table_size) if args.context_table_size > 0 else None
    sensor = Sensor(source, output, args.payload_bytes, args.limit, args.duration, context)
    if user is not None:
        drop_privileges(user)
    report = sensor.run()
    return 0 if report.captured == 0 or report.published or args.output != "kafka" else 1
