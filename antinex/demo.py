"""``antinex demo``: the whole pipeline on one machine, from a capture to alerts on screen.

It starts the processor with the default model, tails the alerts topic for the person at the
terminal, feeds the sensor (a shipped lab capture replayed, or with ``--live`` the lab's quick
scenario captured live on its victim's interface) into Kafka, waits until every record is
scored, and ends with a summary. Each run uses topics of its own, so its counts are exact.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from antinex.options import RuntimeFailure, UsageError, add_flag, non_negative_float

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "models" / "default"
DEFAULT_CAPTURE = ROOT / "lab" / "captures" / "demo.pcap"
SENSOR_METRICS_PORT = 9108
PROCESSOR_METRICS_PORT = 9109


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="Run the whole pipeline on a lab capture and show the alerts",
        description="Start the processor with the default model, replay a lab capture through "
        "the sensor into the local Kafka broker (antinex kafka start), print alerts as they "
        "arrive, and finish with a summary. With --live (root), run the lab's quick scenario "
        "instead and stream its victim's interface live through the sensor.",
    )
    scope = "demo"
    add_flag(parser, "--model", scope=scope, default=str(DEFAULT_MODEL), help="Model directory")
    add_flag(parser, "--pcap", scope=scope, default=str(DEFAULT_CAPTURE), help="Capture to replay")
    add_flag(
        parser,
        "--speed",
        scope=scope,
        default="20",
        help="Replay pace: max, recorded, or a factor of the recorded pace",
    )
    add_flag(
        parser,
        "--live",
        scope=scope,
        switch=True,
        help="Capture the lab's quick scenario live instead of replaying --pcap (root)",
    )
    add_flag(
        parser, "--bootstrap-servers", default="127.0.0.1:9092", help="Kafka bootstrap servers"
    )
    add_flag(
        parser,
        "--timeout",
        scope=scope,
        default=120.0,
        type=non_negative_float,
        help="Seconds to wait for the processor to score every record",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from antinex.broker import is_up

    if not is_up(args.bootstrap_servers, timeout=5):
        raise RuntimeFailure(
            f"no Kafka broker answers at {args.bootstrap_servers}; start one with "
            "`antinex kafka start` (or `make demo`, which does)"
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    topics = {name: f"antinex.demo-{stamp}.{name}" for name in ("packets", "alerts", "dead")}
    if args.live and os.geteuid() != 0:
        raise UsageError("--live builds network namespaces and needs root; run it as root")
    if not args.live and not Path(args.pcap).is_file():
        raise UsageError(f"capture {args.pcap} does not exist; give one with --pcap")
    feed = _live if args.live else _replay
    with tempfile.TemporaryDirectory(prefix="antinex-demo-") as work:
        return _run_pipeline(args, feed, topics, Path(work), stamp)


# A feed puts packet records on the packets topic and returns its sensor's log and a line that
# says where the packets came from.
Feed = Callable[[argparse.Namespace, dict[str, str], Path], tuple[Path, str]]


def _replay(args: argparse.Namespace, topics: dict[str, str], work: Path) -> tuple[Path, str]:
    log = work / "sensor.log"
    sensor = _antinex(
        "sensor",
        "--pcap",
        args.pcap,
        "--speed",
        args.speed,
        "--bootstrap-servers",
        args.bootstrap_servers,
        "--packets-topic",
        topics["packets"],
        "--metrics-port",
        str(SENSOR_METRICS_PORT),
        log=log,
    )
    if sensor.returncode != 0:
        raise RuntimeFailure(f"the sensor failed; its log: {_tail_of(log)}")
    return log, f"{args.pcap} (replayed, speed {args.speed})"


def _live(args: argparse.Namespace, topics: dict[str, str], work: Path) -> tuple[Path, str]:
    out = work / "lab"
    print(
        "running the lab's quick scenario (about a minute): benign clients and attack tools "
        "against a victim, its interface captured live\n",
        flush=True,
    )
    lab = _antinex(
        "lab",
        "run",
        "--scenario",
        "quick",
        "--out",
        str(out),
        "--stream-to",
        args.bootstrap_servers,
        "--packets-topic",
        topics["packets"],
        "--stream-metrics-port",
        str(SENSOR_METRICS_PORT),
        log=work / "lab.log",
    )
    if lab.returncode != 0:
        raise RuntimeFailure(f"the lab run failed; its log: {_tail_of(work / 'lab.log')}")
    return out / "logs" / "stream.log", "live capture of the lab's quick scenario"


def _run_pipeline(
    args: argparse.Namespace, feed: Feed, topics: dict[str, str], work: Path, stamp: str
) -> int:
    kafka = ["--bootstrap-servers", args.bootstrap_servers]
    processor = _start(
        "process",
        "--model",
        args.model,
        *kafka,
        "--packets-topic",
        topics["packets"],
        "--alerts-topic",
        topics["alerts"],
        "--dead-letter-topic",
        topics["dead"],
        "--group-id",
        f"antinex-demo-{stamp}",
        "--auto-offset-reset",
        "earliest",
        "--state-dir",
        str(work / "processor"),
        "--metrics-port",
        str(PROCESSOR_METRICS_PORT),
        log=work / "processor.log",
    )
    tail = None
    try:
        _wait_for_metric(PROCESSOR_METRICS_PORT, "antinex_processor_model_info", processor, 90)
        print(f"processor ready (model {args.model}); alerts as they arrive:\n", flush=True)
        tail = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "antinex.cli",
                "alerts",
                *kafka,
                "--alerts-topic",
                topics["alerts"],
                "--from-beginning",
            ],
        )
        sensor_log, source = feed(args, topics, work)
        published = _sensor_figure(sensor_log, "published")
        scored = _wait_until_scored(published, processor, args.timeout)
    finally:
        _stop(processor)
        time.sleep(1.5)  # let the tail print the last alerts
        if tail is not None:
            _stop(tail)
    _summary(args, source, sensor_log, topics, published, scored)
    return 0


def _antinex(*argv: str, log: Path | None = None) -> subprocess.CompletedProcess:
    out = open(log, "w") if log else None  # noqa: SIM115 - closed below
    try:
        return subprocess.run(
            [sys.executable, "-m", "antinex.cli", *argv], stdout=out, stderr=out, check=False
        )
    finally:
        if out:
            out.close()


def _start(*argv: str, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "antinex.cli", *argv], stdout=out, stderr=subprocess.STDOUT
        )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def _metrics(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
        text = reply.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def _wait_for_metric(port: int, name: str, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeFailure("the processor stopped on start; see the lines above")
        try:
            if name in _metrics(port):
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeFailure(f"the processor did not come up within {seconds:.0f} s")


def _wait_until_scored(published: int, processor: subprocess.Popen, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    consumed = 0
    while time.monotonic() < deadline and processor.poll() is None:
        with contextlib.suppress(OSError):
            consumed = int(
                _metrics(PROCESSOR_METRICS_PORT).get("antinex_processor_records_consumed_total", 0)
            )
        if consumed >= published:
            break
        time.sleep(0.5)
    return consumed


def _sensor_figure(log: Path, name: str) -> int:
    """A count from the sensor's closing ``sensor_stopped`` event (text or JSON log)."""
    for line in log.read_text().splitlines():
        if "sensor_stopped" not in line:
            continue
        if line.startswith("{"):
            return int(json.loads(line).get(name, 0))
        for part in line.split():
            if part.startswith(f"{name}="):
                return int(part.split("=", 1)[1])
    return 0


def _tail_of(log: Path) -> str:
    lines = log.read_text().strip().splitlines()
    return lines[-1] if lines else "(empty)"


def _read_alerts(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap.split(","),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    try:
        return [json.loads(message.value) for message in consumer]
    finally:
        consumer.close()


def _summary(
    args: argparse.Namespace,
    source: str,
    sensor_log: Path,
    topics: dict[str, str],
    published: int,
    scored: int,
) -> None:
    captured = _sensor_figure(sensor_log, "captured")
    alerts = _read_alerts(args.bootstrap_servers, topics["alerts"])
    by_type = Counter(
        (a.get("antinex", {}).get("attack_type") or a.get("rule", {}).get("name") or "attack")
        for a in alerts
    )
    print("\nsummary")
    print(f"  packets from       {source}")
    print(f"  packets captured   {captured:,}")
    print(f"  records published  {published:,}  (topic {topics['packets']})")
    print(f"  records scored     {scored:,}")
    print(f"  alerts             {len(alerts):,}  (topic {topics['alerts']})")
    for attack_type, count in by_type.most_common():
        print(f"    {attack_type:<22} {count:,}")
    print(
        f"  metrics            sensor :{SENSOR_METRICS_PORT}/metrics, processor "
        f":{PROCESSOR_METRICS_PORT}/metrics while they run; deploy/ has Prometheus and "
        "Grafana set up to scrape and show them"
    )
