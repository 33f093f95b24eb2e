"""The dashboard and the alerting rules against a real pipeline: local Kafka, the processor, two
sensors replaying a capture with attack traffic in it, and Prometheus scraping them every second.

Every query of every dashboard panel must return data, and so must every alerting rule, read as
described in ``deployfiles.condition_operands``: a rule's condition is empty while it does not
fire, so the test evaluates the operands of its comparisons instead, which are empty only when a
metric is missing or misnamed. Some series exist only after an event (a dropped record, a dead
letter, a refused model), so the test makes each of those happen the way it happens in service:
one sensor's broker is unreachable, a garbage message lands on the packets topic, and the model
directory is switched to a version of another record schema.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from deployfiles import (
    PROCESSOR_JOB,
    PROMETHEUS_CONFIG,
    RULES,
    SENSOR_JOB,
    Query,
    dashboard_queries,
    rule_queries,
    rules,
    yaml_file,
)

pytestmark = [pytest.mark.kafka, pytest.mark.prometheus, pytest.mark.slow]

# The capture's recorded pace, replayed as recorded. The sensor updates its metrics every 1024
# packets, so this is also how often its counters move: about every second.
PACKETS_PER_SECOND = 1000
SCAN_PORTS = 512
CAPTURE_SECONDS = 90  # longer than the test needs: the sensors are stopped once it is done
DATA_DEADLINE_SECONDS = 75.0  # from the sensors' start until every query must have data


# The capture --------------------------------------------------------------------------------


def write_capture(path: Path) -> Path:
    """A pcap of benign synthetic traffic with a SYN scan and a few runt frames mixed in.

    The scan frames look like the attack records the tiny model learned (SYN without ACK to
    many ports, window 1024, the MSS option alone, no payload); the runts are too short for an
    Ethernet header, so the sensor counts them as undecodable.
    """
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import RawPcapWriter
    from support.traffic import synthetic_frames

    scan = [
        bytes(
            Ether(src="02:00:00:00:0e:01", dst="02:00:00:00:0e:02")
            / IP(src="198.51.100.66", dst="203.0.113.9", ttl=45, flags=0, id=number)
            / TCP(
                sport=40000 + number,
                dport=1 + number * 127 % 65000,
                flags="S",
                seq=number * 2654435761 & 0xFFFFFFFF,
                window=1024,
                options=[("MSS", 1460)],
            )
        )
        for number in range(SCAN_PORTS)
    ]
    runt = b"\x02\x00\x00\x00\x00\x01\x02\x00"
    total = PACKETS_PER_SECOND * CAPTURE_SECONDS
    benign = synthetic_frames(total)
    writer = RawPcapWriter(str(path), linktype=1)
    writer.write_header(None)
    start_us = int(time.time()) * 1_000_000
    for number in range(total):
        if number % 1000 == 999:
            frame = runt
        elif number % 5 == 0:
            frame = scan[number // 5 % SCAN_PORTS]
        else:
            frame = next(benign)
        sec, usec = divmod(start_us + number * 1_000_000 // PACKETS_PER_SECOND, 1_000_000)
        writer.write_packet(frame, sec=sec, usec=usec)
    writer.close()
    return path


# Processes ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Service:
    """A process the test started, with its output in a file for the failure message."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.name} (exit {self.process.poll()}) ---\n" + "\n".join(text)

    def stop(self, grace: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Services:
    """Starts processes and stops every one of them, last started first."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Service] = []

    def start(self, name: str, command: list[str]) -> Service:
        log = self.directory / f"{name}.log"
        # Only the flags given here: ANTINEX_* variables of the shell must not change a default.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANTINEX_")}
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.directory
            )
        service = Service(name, process, log)
        self.started.append(service)
        return service

    def antinex(self, name: str, *args: str) -> Service:
        return self.start(name, [sys.executable, "-m", "antinex.cli", *args])

    def report(self) -> str:
        return "\n".join(service.tail() for service in self.started)

    def stop_all(self) -> None:
        for service in reversed(self.started):
            service.stop()


# Prometheus ---------------------------------------------------------------------------------


class Prometheus:
    """The HTTP API of a Prometheus server."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.load(answer)
        assert "success" == body["status"], body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        assert "vector" == data["resultType"], f"{expr} gives a {data['resultType']}"
        return data["result"]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/-/ready", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False


def scrape_config(tmp_path: Path, ports: dict[str, list[int]], prometheus_port: int) -> Path:
    """deploy/prometheus/prometheus.yml with every job's targets on this host, scraped every
    second, and deploy/prometheus/rules.yml evaluated every second."""
    config = yaml_file(PROMETHEUS_CONFIG)
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(RULES)]
    ports = {**ports, "prometheus": [prometheus_port]}
    jobs = []
    for job in config["scrape_configs"]:
        targets = [f"127.0.0.1:{port}" for port in ports[job["job_name"]]]
        jobs.append({"job_name": job["job_name"], "static_configs": [{"targets": targets}]})
    config["scrape_configs"] = jobs
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


# Fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    started = Services(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def topics(kafka_bootstrap: str) -> Iterator[dict[str, str]]:
    """Topics of this test only, created as the compose kafka-topics service creates them."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError

    prefix = f"test-deploy-{uuid.uuid4().hex[:10]}"
    names = {"packets": f"{prefix}.packets", "alerts": f"{prefix}.alerts"}
    names["dead_letter"] = f"{prefix}.deadletter"
    names["group"] = f"{prefix}-processor"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics(
        [NewTopic(names["packets"], 3, 1)]
        + [NewTopic(names[kind], 1, 1) for kind in ("alerts", "dead_letter")]
    )
    try:
        yield names
    finally:
        with contextlib.suppress(KafkaError):
            admin.delete_topics([names[k] for k in ("packets", "alerts", "dead_letter")])
        with contextlib.suppress(KafkaError):
            admin.delete_groups([names["group"]])
        admin.close()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model directory whose ``current`` pointer names a tiny model with attack types."""
    from support import tiny_model

    root = tmp_path / "models"
    tiny_model.train(root / "v1", version="tiny-v1", classes=tiny_model.MULTI_CLASSES)
    (root / "current").symlink_to("v1")
    return root


def refuse_next_version(model_dir: Path) -> None:
    """Point ``current`` at a copy of the model that claims another record schema."""
    broken = model_dir / "v2-other-schema"
    shutil.copytree(model_dir / "v1", broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest.update(model_version="tiny-v2", schema_version=manifest["schema_version"] + 1)
    (broken / "manifest.json").write_text(json.dumps(manifest))
    (model_dir / "current.next").symlink_to(broken.name)
    (model_dir / "current.next").replace(model_dir / "current")


def publish_garbage(bootstrap: str, topic: str) -> None:
    """One message on the packets topic that is no record at all: a dead letter to be."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    producer.send(topic, value=b"this is not a packet record", partition=0).get(timeout=10)
    producer.close()


# The test -----------------------------------------------------------------------------------


def alert_expr(name: str) -> str:
    (expr,) = [rule["expr"] for rule in rules() if rule.get("alert") == name]
    return expr


# What the pipeline must have done, besides exporting every series: the capture holds benign
# traffic, a scan and runts, and one message on the packets topic is garbage.
PIPELINE_EVENTS = [
    Query(
        "benign records were scored", 'antinex_processor_records_scored_total{verdict="benign"} > 0'
    ),
    Query(
        "attack records were scored", 'antinex_processor_records_scored_total{verdict="attack"} > 0'
    ),
    Query("alerts were published", "antinex_processor_alerts_published_total > 0"),
    Query(
        "the garbage message was dead-lettered", "antinex_processor_records_dead_lettered_total > 0"
    ),
    Query("runt frames were counted", "antinex_sensor_packets_undecodable_total > 0"),
    # Two alerts would fire: for the sensor cut off from its broker, for the refused model.
    Query("records are dropped", alert_expr("AntinexSensorRecordsDropped")),
    Query("a model version was refused", alert_expr("AntinexModelReloadFailed")),
]


def empty_queries(prometheus: Prometheus, queries: list[Query]) -> list[Query]:
    return [query for query in queries if not prometheus.query(query.expr)]


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed")
def test_every_panel_and_rule_has_data_from_a_running_pipeline(
    tmp_path: Path,
    kafka_bootstrap: str,
    topics: dict[str, str],
    model_dir: Path,
    services: Services,
) -> None:
    """With the pipeline running, each dashboard query and each rule operand returns series."""
    capture = write_capture(tmp_path / "capture.pcap")
    ports = {"sensor": free_port(), "cut_off_sensor": free_port(), "processor": free_port()}
    prometheus_port = free_port()
    config = scrape_config(
        tmp_path,
        {
            SENSOR_JOB: [ports["sensor"], ports["cut_off_sensor"]],
            PROCESSOR_JOB: [ports["processor"]],
        },
        prometheus_port,
    )
    services.start(
        "prometheus",
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            "--log.level=warn",
        ],
    )
    prometheus = Prometheus(prometheus_port)

    kafka = ["--bootstrap-servers", kafka_bootstrap, "--packets-topic", topics["packets"]]
    services.antinex(
        "processor", "process", "--model", str(model_dir), *kafka,
        "--alerts-topic", topics["alerts"], "--dead-letter-topic", topics["dead_letter"],
        "--group-id", topics["group"], "--state-dir", str(tmp_path / "state"),
        "--reload-check-s", "1", "--alert-window-s", "5", "--shutdown-timeout-s", "5",
        "--metrics-port", str(ports["processor"]),
    )  # fmt: skip
    # The tiny model saw no context statistics in training; leave them out here too.
    replay = ["--pcap", str(capture), "--speed", "recorded", "--context-table-size", "0"]
    services.antinex(
        "sensor", "sensor", *replay, *kafka, "--linger-ms", "100",
        "--metrics-port", str(ports["sensor"]),
    )  # fmt: skip
    # A sensor whose broker does not answer: its one-batch queue overflows and drops records.
    unreachable = f"127.0.0.1:{free_port()}"
    services.antinex(
        "cut_off_sensor", "sensor", *replay, "--bootstrap-servers", unreachable,
        "--packets-topic", topics["packets"], "--queue-batches", "1", "--batch-records", "10",
        "--linger-ms", "50", "--metrics-port", str(ports["cut_off_sensor"]),
    )  # fmt: skip
    started = time.monotonic()
    publish_garbage(kafka_bootstrap, topics["packets"])

    queries = dashboard_queries() + list({q.expr: q for q in rule_queries()}.values())
    missing = queries + PIPELINE_EVENTS
    refused = False
    while missing and time.monotonic() - started < DATA_DEADLINE_SECONDS:
        time.sleep(2)
        for service in services.started:
            assert service.process.poll() is None, services.report()
        if not refused and prometheus.ready() and prometheus.query("antinex_processor_model_info"):
            refuse_next_version(model_dir)  # once the processor runs: its watcher sees the switch
            refused = True
        if prometheus.ready():
            missing = empty_queries(prometheus, missing)

    assert [] == [f"{q.where}: {q.expr}" for q in missing], services.report()

    # The rules load and evaluate without error, and the two that would fire name the right target.
    groups = prometheus.get("/api/v1/rules")["groups"]
    loaded = [rule for group in groups for rule in group["rules"]]
    assert sorted(rule.get("alert") or rule["record"] for rule in rules()) == sorted(
        rule["name"] for rule in loaded
    )
    assert [] == [(r["name"], r.get("lastError")) for r in loaded if r["health"] != "ok"]
    dropping = prometheus.query(alert_expr("AntinexSensorRecordsDropped"))
    cut_off = f"127.0.0.1:{ports['cut_off_sensor']}"
    assert [cut_off] == sorted({series["metric"]["instance"] for series in dropping})
    refusing = prometheus.query(alert_expr("AntinexModelReloadFailed"))
    assert [f"127.0.0.1:{ports['processor']}"] == [s["metric"]["instance"] for s in refusing]
