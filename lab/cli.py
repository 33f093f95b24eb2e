"""``antinex lab``: run attack scenarios against a victim in network namespaces, capture them
live with the sensor and tcpdump, and write the label file of the attack windows."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from antinex.logs import event
from antinex.options import EXIT_FAILURE, UsageError, add_flag, non_negative_float

log = logging.getLogger("antinex.lab")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``antinex lab run|list|clean``."""
    parser = subparsers.add_parser(
        "lab",
        help="Run attack scenarios in network namespaces and capture labelled traffic",
        description="run: build a victim, benign clients and attackers in network namespaces "
        "joined by a bridge, serve a web shop and DNS on the victim, play a scenario of benign "
        "traffic and real attack tools (nmap, masscan, hping3, hydra, sqlmap, slowhttptest), "
        "and capture it on the victim's interface with the sensor and tcpdump. Writes "
        "DIR/capture.pcap, DIR/records.jsonl, DIR/labels.json (for `antinex dataset build "
        "--labels`), DIR/summary.json and DIR/logs/. Needs root. list: the built-in scenarios. "
        "clean: remove namespaces left by a run that was killed.",
        epilog="exit codes: 0 done, 1 runtime failure or interrupted run, 2 bad usage or input",
    )
    parser.add_argument("action", choices=["run", "list", "clean"], help="What to do")
    scope = "lab"
    add_flag(parser, "--scenario", scope=scope, help="Built-in scenario name or a scenario file")
    add_flag(parser, "--out", scope=scope, help="Directory the run writes its files to")
    add_flag(
        parser,
        "--duration",
        scope=scope,
        default=0.0,
        type=non_negative_float,
        help="Seconds of traffic; 0 keeps the scenario's own duration",
    )
    add_flag(
        parser,
        "--stream-to",
        scope=scope,
        help="Also publish the victim's packets live to this Kafka bootstrap address, "
        "as `antinex sensor` does",
    )
    add_flag(
        parser,
        "--packets-topic",
        scope=scope,
        default="antinex.packets",
        help="Topic for --stream-to",
    )
    add_flag(
        parser,
        "--stream-metrics-port",
        scope=scope,
        default=0,
        type=int,
        help="Metrics port of the streaming sensor; 0 turns its endpoint off",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from lab import scenario as scenarios

    if args.action == "list":
        for name in scenarios.builtin_names():
            loaded = scenarios.load(name)
            print(f"{name:8s} {loaded.duration_s:5.0f} s  {loaded.description}")
        return 0
    if args.action == "clean":
        from lab.network import remove_leftovers

        removed = remove_leftovers()
        event(log, logging.INFO, "lab_leftovers_removed", namespaces=len(removed))
        return 0
    if not args.scenario or not args.out:
        raise UsageError("antinex lab run needs --scenario NAME|FILE and --out DIR")
    loaded = scenarios.load(args.scenario)
    if args.duration and args.duration > 3600:
        raise UsageError(f"--duration {args.duration:g} is over an hour; give at most 3600")
    from lab.report import format_summary
    from lab.runner import run_lab
    from lab.services import StreamTarget

    stream = None
    if args.stream_to:
        stream = StreamTarget(args.stream_to, args.packets_topic, args.stream_metrics_port)
    summary = run_lab(loaded, Path(args.out), args.duration or None, stream)
    print(format_summary(summary))
    if summary["interrupted"]:
        print(f"antinex: the run was interrupted; partial results are in {args.out}")
        return EXIT_FAILURE
    return 0
