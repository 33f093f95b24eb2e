"""``antinex demo``: the whole pipeline on one machine, from a capture to alerts on screen.

It starts the processor with the default model, tails the alerts topic for the person at the
terminal, replays a lab capture through the sensor into Kafka, waits until every record is
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
        "arrive, and finish with a summary. With --live (root), first record a fresh capture "
        "with the lab's quick scenario.",
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
        help="Record a fresh capture with the lab's quick scenario first (root)",
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
    with tempfile.TemporaryDirectory(prefix="antinex-demo-") as work:
        pcap = _live_capture(Path(work)) if args.live else Path(args.pcap)
        if not pcap.is_file():
            raise UsageError(f"capture {pcap} does not exist; give one with --pcap")
        return _run_pipeline(args, pcap, topics, Path(work), stamp)


def _live_capture(work: Path) -> Path:
    if os.geteuid() != 0:
        raise UsageError("--live builds network namespaces and needs root; run it as root")
    out = work / "lab"
    print("recording the lab's quick scenario (about a minute) ...", flush=True)
    _antinex("lab", "run", "--scenario", "quick", "--out", str(out)).check_returncode()
    return out / "capture.pcap"


def _run_pipeline(
    args: argparse.Namespace, pcap: Path, topics: dict[str, str], work: Path, stamp: str
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
        sensor = _antinex(
            "sensor",
            "--pcap",
            str(pcap),
            "--speed",
            args.speed,
            *kafka,
            "--packets-topic",
            topics["packets"],
            "--metrics-port",
            str(SENSOR_METRICS_PORT),
            log=work / "sensor.log",
        )
        if sensor.returncode != 0:
            raise RuntimeFailure(f"the sensor failed; its log: {_tail_of(work / 'sensor.log')}")
        published = _sensor_figure(work / "sensor.log", "published")
        scored = _wait_until_scored(published, processor, args.timeout)
    finally:
        _stop(processor)
        time.sleep(1.5)  # let the tail print the last alerts
        if tail is not None:
            _stop(tail)
    _summary(args, pcap, work, topics, published, scored)
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
    for line in log.read_text().splitlines():
        if "sensor_stopped" in line:
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
    pcap: Path,
    work: Path,
    topics: dict[str, str],
    published: int,
    scored: int,
) -> None:
    captured = _sensor_figure(work / "sensor.log", "captured")
    alerts = _read_alerts(args.bootstrap_servers, topics["alerts"])
    by_type = Counter(
        (a.get("antinex", {}).get("attack_type") or a.get("rule", {}).get("name") or "attack")
        for a in alerts
    )
    print("\nsummary")
    print(f"  capture            {pcap}")
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
