"""Fixtures of the stream processor's tests: trained tiny models, unique topics, a processor
subprocess that can be scraped, signalled and killed, and helpers to publish and read back."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.topics import committed_offsets

from capture.encoding import CONTENT_TYPE_BATCH, CONTENT_TYPE_JSON
from capture.publisher import partition_of

ANTINEX = str(Path(sys.executable).with_name("antinex"))
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Model directories trained once per session: ``v1`` and ``v2`` (binary, different seeds)
    and ``multi`` (benign, portscan, finscan)."""
    os.environ.update(QUIET_TF)
    from support import tiny_model

    root = tmp_path_factory.mktemp("models")
    return {
        "v1": tiny_model.train(root / "v1", version="v1", seed=0),
        "v2": tiny_model.train(root / "v2", version="v2", seed=1),
        "multi": tiny_model.train(root / "multi", version="m1", classes=tiny_model.MULTI_CLASSES),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Topics -------------------------------------------------------------------------------------


class Topics:
    """Creates uniquely named topics and deletes them (and named groups) afterwards."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.created: list[str] = []
        self.groups: list[str] = []

    def new(self, stem: str, partitions: int = 1) -> str:
        from kafka.admin import KafkaAdminClient, NewTopic

        name = f"test-sp-{stem}-{uuid.uuid4().hex[:10]}"
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        admin.create_topics([NewTopic(name, partitions, 1)])
        admin.close()
        self.created.append(name)
        return name

    def name(self, stem: str) -> str:
        """A unique name for a topic that something else creates."""
        name = f"test-sp-{stem}-{uuid.uuid4().hex[:10]}"
        self.created.append(name)
        return name

    def group(self, stem: str) -> str:
        name = f"test-sp-{stem}-{uuid.uuid4().hex[:10]}"
        self.groups.append(name)
        return name

    def cleanup(self) -> None:
        from kafka.admin import KafkaAdminClient
        from kafka.errors import KafkaError

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        work = ((admin.delete_topics, self.created), (admin.delete_groups, self.groups))
        for call, names in work:
            for name in names:
                with contextlib.suppress(KafkaError):
                    call([name])
        admin.close()


@pytest.fixture(scope="module")
def topics(kafka_bootstrap: str) -> Iterator[Topics]:
    made = Topics(kafka_bootstrap)
    yield made
    made.cleanup()


# Publishing and reading ----------------------------------------------------------------------


def batch_value(records: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, records, allow_pickle=False)
    return out.getvalue()


class Publisher:
    """Sends batch or JSON messages to a packets topic, each flow to its partition."""

    def __init__(self, bootstrap: str) -> None:
        from kafka import KafkaProducer

        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", max_request_size=8 << 20, linger_ms=2
        )

    def batches(
        self, topic: str, records: np.ndarray, partitions: int, per_message: int = 500
    ) -> int:
        """Publish ``records`` as batch messages; returns the number of messages."""
        owner = np.array([partition_of(f.decode(), partitions) for f in records["flow_id"]])
        sent = 0
        for partition in range(partitions):
            rows = records[owner == partition]
            for start in range(0, len(rows), per_message):
                self.raw(topic, batch_value(rows[start : start + per_message]), partition)
                sent += 1
        self.producer.flush()
        return sent

    def batch(self, topic: str, records: np.ndarray, partition: int) -> None:
        """Send one batch message and wait for its ack."""
        self.raw(topic, batch_value(records), partition)
        self.producer.flush()

    def raw(
        self,
        topic: str,
        value: bytes,
        partition: int = 0,
        content_type: bytes | None = CONTENT_TYPE_BATCH,
        key: bytes | None = None,
    ) -> None:
        headers = [("content-type", content_type)] if content_type else []
        self.producer.send(topic, value=value, key=key, partition=partition, headers=headers)

    def json(self, topic: str, record: dict[str, Any] | bytes, partition: int = 0) -> None:
        value = record if isinstance(record, bytes) else json.dumps(record).encode()
        self.raw(topic, value, partition, CONTENT_TYPE_JSON)

    def flush(self) -> None:
        self.producer.flush()

    def close(self) -> None:
        self.producer.close()


@pytest.fixture(scope="module")
def publisher(kafka_bootstrap: str) -> Iterator[Publisher]:
    made = Publisher(kafka_bootstrap)
    yield made
    made.close()


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[Any]:
    """Every message of ``topic`` from the beginning until ``expected`` arrived (or timeout)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    deadline = time.monotonic() + timeout
    partitions = None
    while not partitions and time.monotonic() < deadline:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            time.sleep(0.2)
    received: list[Any] = []
    if partitions:
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        while len(received) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                received.extend(batch)
    consumer.close()
    return received


def group_state(bootstrap: str, group: str) -> str:
    """``Empty``, ``Stable``, ``PreparingRebalance``... as the coordinator reports it."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return str(admin.describe_groups([group])[group]["group_state"])
    finally:
        admin.close()


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    finally:
        consumer.close()
    return {tp.partition: offset for tp, offset in ends.items()}


def wait_until(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# The processor as a subprocess -------------------------------------------------------------


class ProcessorRun:
    """``antinex process`` in a subprocess, with JSON logs in a file and metrics on a port."""

    def __init__(self, workdir: Path, bootstrap: str, model: Path, topic: str, **flags: Any):
        self.port = free_port()
        self.log_path = workdir / f"processor-{self.port}.log"
        self.flags = {
            "bootstrap-servers": bootstrap,
            "model": str(model),
            "packets-topic": topic,
            "metrics-port": self.port,
            "reload-check-s": 0.5,
            **{k.replace("_", "-"): v for k, v in flags.items()},
        }
        command = [ANTINEX, "--log-format", "json", "process"]
        for flag, value in self.flags.items():
            command += [f"--{flag}", str(value)]
        env = {**os.environ, **QUIET_TF, "PYTHONUNBUFFERED": "1"}
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                logged = json.loads(line)
                if isinstance(logged, dict) and (name is None or logged.get("event") == name):
                    found.append(logged)
        return found

    def wait_for_event(self, name: str, timeout: float = 90.0) -> dict[str, Any]:
        def seen() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"processor exited {self.proc.returncode}: {self.tail()}")
            found = self.events(name)
            return found[-1] if found else None

        return wait_until(seen, timeout, f"event {name}", every=0.2)

    def wait_assigned(self, timeout: float = 90.0) -> list[int]:
        """Partitions of the latest non-empty assignment."""

        def assigned() -> list[int] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"processor exited {self.proc.returncode}: {self.tail()}")
            found = [e["partitions"] for e in self.events("partitions_assigned") if e["partitions"]]
            return found[-1] if found else None

        return wait_until(assigned, timeout, "a partition assignment", every=0.2)

    def scrape(self) -> list[Any]:
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return list(text_string_to_metric_families(reply.read().decode()))

    def value(self, sample_name: str, **labels: str) -> float:
        """The value of one sample (0 when absent), e.g. ``..._total`` with its labels."""
        for family in self.scrape():
            for sample in family.samples:
                if sample.name == sample_name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    def scored(self) -> float:
        name = "antinex_processor_records_scored_total"
        return self.value(name, verdict="attack") + self.value(name, verdict="benign")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._log.close()

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])


class Launcher:
    """Starts processors for one module and kills whatever is still running at its end."""

    def __init__(self, workdir: Path, bootstrap: str) -> None:
        self.workdir = workdir
        self.bootstrap = bootstrap
        self.runs: list[ProcessorRun] = []

    def start(self, model: Path, topic: str, **flags: Any) -> ProcessorRun:
        flags.setdefault("state_dir", str(self.workdir / "state"))
        run = ProcessorRun(self.workdir, self.bootstrap, model, topic, **flags)
        self.runs.append(run)
        return run

    def cleanup(self) -> None:
        for run in self.runs:
            with contextlib.suppress(Exception):
                run.kill()


@pytest.fixture(scope="module")
def processors(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str
) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("processors"), kafka_bootstrap)
    yield launcher
    launcher.cleanup()


class KafkaTools:
    """Reading topics and group offsets back, for assertions."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def read(self, topic: str, expected: int, timeout: float = 30.0) -> list[Any]:
        return read_topic(self.bootstrap, topic, expected, timeout)

    def committed(self, group: str) -> dict[int, int]:
        return committed_offsets(self.bootstrap, group)

    def group_state(self, group: str) -> str:
        return group_state(self.bootstrap, group)

    def ends(self, topic: str, partitions: int) -> dict[int, int]:
        return end_offsets(self.bootstrap, topic, partitions)

    def wait_committed(self, group: str, topic: str, partitions: int, timeout: float = 60) -> None:
        """Wait until the group has committed every partition up to its end."""
        ends = self.ends(topic, partitions)
        wait_until(
            lambda: self.committed(group) == ends, timeout, f"{group} to commit {ends}", every=0.3
        )

    @staticmethod
    def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
        return wait_until(condition, timeout, what)


@pytest.fixture(scope="module")
def kafka_tools(kafka_bootstrap: str) -> KafkaTools:
    return KafkaTools(kafka_bootstrap)


@pytest.fixture
def kcat() -> str:
    path = shutil.which("kcat")
    if path is None:
        pytest.skip("kcat is not installed")
    return path
