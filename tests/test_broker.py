"""Tests of ``antinex kafka``: properties rendering and status offline, the real broker online."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from antinex import broker, cli
from antinex.options import env_name

RunAntinex = Callable[..., tuple[int, str, str]]


@pytest.fixture
def antinex(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> RunAntinex:
    """Run ``antinex ARGS...`` in this process; return its exit code, stdout and stderr."""
    # Only the kafka subcommand: its tests must not depend on other subcommands importing.
    monkeypatch.setattr(cli, "SUBCOMMANDS", ("antinex.broker_cli",))
    # The shared broker is the one on the default port; ANTINEX_KAFKA_STATE_DIR may say
    # where it lives.
    for flag in ("--port", "--kafka-version", "--timeout"):
        monkeypatch.delenv(env_name(flag, "kafka"), raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def poll_records(consumer: Any, seconds: float = 30.0) -> list[Any]:
    """The records ``consumer`` receives until its first non-empty poll, or ``seconds`` pass."""
    received: list[Any] = []
    deadline = time.monotonic() + seconds
    while not received and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            received.extend(records)
    return received


@pytest.fixture
def scratch_topic(kafka_bootstrap: str) -> Iterator[str]:
    """A topic name used by one test only; the topic and its ``-group`` go after the test."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    topic = f"test-broker-{uuid.uuid4().hex[:12]}"
    yield topic
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    with contextlib.suppress(KafkaError):
        admin.delete_topics([topic])
    with contextlib.suppress(KafkaError):
        admin.delete_groups([f"{topic}-group"])
    admin.close()


def free_port_pair() -> int:
    """A port that is free on the loopback address, and so is the one after it."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((broker.HOST, 0))
            port = probe.getsockname()[1]
        if port < 65534 and broker._port_free(port) and broker._port_free(port + 1):
            return port
    raise RuntimeError("no two adjacent free ports found on the loopback address")


class TestServerProperties:
    def test_client_and_controller_listen_on_loopback_ports_next_to_each_other(self) -> None:
        """The client listener is on the port given, the controller on the one after it."""
        settings = parse_properties(
            broker.render_properties(broker.server_settings(19092, Path("/d")))
        )

        assert settings["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
        assert settings["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
        assert settings["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
        assert settings["controller.listener.names"] == "CONTROLLER"

    def test_node_is_broker_and_controller_with_single_replica_internal_topics(self) -> None:
        """One node plays both roles and never waits for replicas it does not have."""
        settings = parse_properties(
            broker.render_properties(broker.server_settings(9092, Path("/d")))
        )

        assert settings["process.roles"] == "broker,controller"
        assert settings["node.id"] == "1"
        for key in (
            "offsets.topic.replication.factor",
            "transaction.state.log.replication.factor",
            "transaction.state.log.min.isr",
            "num.partitions",
        ):
            assert settings[key] == "1", key
        assert settings["group.initial.rebalance.delay.ms"] == "0"
        assert settings["auto.create.topics.enable"] == "true"

    def test_message_limit_fits_a_four_mib_record(self) -> None:
        """The broker accepts a batch holding one 4 MiB record."""
        settings = broker.server_settings(9092, Path("/d"))

        assert int(settings["message.max.bytes"]) > 4 * 2**20 + 64 * 2**10

    def test_data_dir_is_written_with_backslashes_escaped(self) -> None:
        """Java reads a backslash in a properties value as an escape, so it is doubled."""
        text = broker.render_properties(broker.server_settings(9092, Path("/tmp/a\\b")))

        assert "log.dirs=/tmp/a\\\\b" in text.splitlines()

    def test_cluster_id_is_sixteen_bytes_in_unpadded_url_safe_base64(self) -> None:
        """Cluster ids look like the ones ``kafka-storage random-uuid`` prints."""
        cluster_id = broker.new_cluster_id()

        assert len(cluster_id) == 22
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
        assert not cluster_id.startswith("-")


class TestWithoutBroker:
    def test_status_of_an_empty_state_dir_is_not_running(
        self, antinex: RunAntinex, tmp_path: Path
    ) -> None:
        """``status`` says not running and exits 3 when nothing was ever started."""
        code, out, _ = antinex("kafka", "status", "--state-dir", str(tmp_path / "kafka"))

        assert code == broker.EXIT_NOT_RUNNING
        assert out.splitlines()[0] == "kafka: not running"

    def test_status_ignores_a_recorded_pid_that_is_not_a_kafka_broker(
        self, antinex: RunAntinex, tmp_path: Path
    ) -> None:
        """A pid left behind and reused by another program does not count as the broker."""
        paths = broker.BrokerPaths(tmp_path)
        record = {"pid": os.getpid(), "port": 9092, "version": "4.4.0", "started_at": 0}
        paths.info_file.write_text(json.dumps(record))

        code, out, _ = antinex("kafka", "status", "--state-dir", str(tmp_path))

        assert code == broker.EXIT_NOT_RUNNING
        assert out.splitlines()[0] == "kafka: not running"

    def test_stop_when_nothing_runs_exits_zero_and_says_so(
        self, antinex: RunAntinex, tmp_path: Path
    ) -> None:
        """Stopping a broker that is not running is not an error."""
        code, out, _ = antinex("kafka", "stop", "--state-dir", str(tmp_path))

        assert code == 0
        assert out == "kafka was not running\n"

    def test_kafka_version_before_4_is_a_usage_error(
        self, antinex: RunAntinex, tmp_path: Path
    ) -> None:
        """Only KRaft-only releases, 4.0.0 and later, are run."""
        code, _, err = antinex(
            "kafka", "start", "--state-dir", str(tmp_path), "--kafka-version", "3.9.1"
        )

        assert code == 2
        assert "--kafka-version '3.9.1' is not supported" in err
        assert len(err.strip().splitlines()) == 1

    @pytest.mark.skipif(shutil.which("java") is None, reason="needs java on PATH")
    def test_start_on_a_taken_port_fails_with_one_sentence(
        self, antinex: RunAntinex, tmp_path: Path
    ) -> None:
        """Another program listening on the port stops the start before anything is fetched."""
        with socket.socket() as squatter:
            squatter.bind((broker.HOST, 0))
            squatter.listen()
            port = squatter.getsockname()[1]

            code, _, err = antinex(
                "kafka", "start", "--state-dir", str(tmp_path), "--port", str(port)
            )

        assert code == 1
        assert f"antinex: port {port} on 127.0.0.1 is in use by another program" in err
        assert not (tmp_path / "jars").exists()

    def test_is_up_is_false_when_nothing_listens(self) -> None:
        """A closed port answers no metadata request."""
        assert not broker.is_up(broker.bootstrap_address(free_port_pair()), timeout=1.0)


@pytest.mark.kafka
class TestSharedBroker:
    def test_status_reports_the_running_broker(
        self, antinex: RunAntinex, kafka_bootstrap: str
    ) -> None:
        """``status`` exits 0 and names the address and version of the running broker."""
        code, out, _ = antinex("kafka", "status")

        assert code == 0
        lines = out.splitlines()
        assert lines[0] == "kafka: running"
        assert f"bootstrap: {kafka_bootstrap}" in lines
        assert any(line.startswith("version: 4.") for line in lines)

    def test_start_when_running_exits_zero_and_says_already_running(
        self, antinex: RunAntinex, kafka_bootstrap: str
    ) -> None:
        """A second start leaves the running broker alone."""
        code, out, _ = antinex("kafka", "start")

        assert code == 0
        assert f"already running on {kafka_bootstrap}" in out

    def test_topic_with_three_partitions_round_trips_a_message(
        self, kafka_bootstrap: str, scratch_topic: str
    ) -> None:
        """kafka-python creates a topic, produces to one partition and consumes it in a group."""
        from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
        from kafka.admin import NewTopic

        topic = scratch_topic
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        partitions = admin.describe_topics([topic])[0]["partitions"]
        admin.close()
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        producer.send(topic, key=b"sensor-1", value=b"record", partition=2).get(timeout=30)
        producer.close()

        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=f"{topic}-group",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        received = poll_records(consumer)
        consumer.commit()
        committed = consumer.committed(TopicPartition(topic, 2))
        consumer.close()

        assert len(partitions) == 3
        assert [(r.partition, r.key, r.value) for r in received] == [(2, b"sensor-1", b"record")]
        assert committed == 1

    def test_four_mib_record_round_trips_through_an_auto_created_topic(
        self, kafka_bootstrap: str, scratch_topic: str
    ) -> None:
        """The broker creates a topic on first produce and takes and serves a 4 MiB record."""
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition

        topic = scratch_topic
        payload = os.urandom(4 * 2**20)
        producer = KafkaProducer(
            bootstrap_servers=kafka_bootstrap, max_request_size=broker.MAX_MESSAGE_BYTES
        )
        producer.send(topic, value=payload).get(timeout=60)
        producer.close()

        consumer = KafkaConsumer(
            bootstrap_servers=kafka_bootstrap,
            fetch_max_bytes=broker.MAX_MESSAGE_BYTES,
            max_partition_fetch_bytes=broker.MAX_MESSAGE_BYTES,
        )
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        received = poll_records(consumer)
        consumer.close()

        assert [payload] == [r.value for r in received]


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("java") is None or shutil.which("mvn") is None, reason="needs java and mvn"
)
def test_own_broker_starts_stops_and_restarts_with_its_data(
    antinex: RunAntinex, tmp_path: Path
) -> None:
    """A broker on other ports keeps a produced record across stop and start."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    shared = broker.BrokerPaths(Path(broker.DEFAULT_STATE_DIR).expanduser())
    cached = broker.cached_jars(shared, broker.DEFAULT_VERSION)
    if cached is not None:  # reuse the jars the shared broker fetched
        (tmp_path / "jars").mkdir()
        (tmp_path / "jars" / broker.DEFAULT_VERSION).symlink_to(cached)
    port = free_port_pair()
    flags = ("--state-dir", str(tmp_path), "--port", str(port), "--timeout", "120")
    bootstrap = broker.bootstrap_address(port)
    try:
        code, out, err = antinex("kafka", "start", *flags)
        assert code == 0, err
        assert f"started on {bootstrap}" in out

        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        producer.send("kept", value=b"survives a restart").get(timeout=30)
        producer.close()

        code, out, _ = antinex("kafka", "stop", *flags)
        assert code == 0
        assert out.startswith("kafka stopped")
        assert antinex("kafka", "status", *flags)[0] == broker.EXIT_NOT_RUNNING
        code, out, err = antinex("kafka", "start", *flags)
        assert code == 0, err

        consumer = KafkaConsumer(bootstrap_servers=bootstrap)
        consumer.assign([TopicPartition("kept", 0)])
        consumer.seek_to_beginning()
        values = [record.value for record in poll_records(consumer)]
        consumer.close()
        assert values == [b"survives a restart"]
    finally:
        antinex("kafka", "stop", *flags)
