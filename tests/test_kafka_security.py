"""The Kafka TLS and SASL flags of the sensor, the processor and the alerts tail against a real
broker of this module's own: an SSL listener and a SASL_SSL listener (PLAIN) beside PLAINTEXT,
with a certificate authority made at test time."""

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
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from antinex import broker, broker_tls

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ANTINEX = str(Path(sys.executable).with_name("antinex"))
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "default"
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
USER, PASSWORD = "sensor", "correct horse battery staple"
PACKETS = 3000


@dataclass(frozen=True)
class SecureBroker:
    """The broker's listeners and the files a client needs to reach them."""

    plaintext: str
    listeners: broker_tls.SecureListeners
    stranger_ca: Path  # a CA that did not sign the broker's certificate
    pcap: Path

    @property
    def ca(self) -> str:
        return str(self.listeners.certificates.ca_certificate)

    def ssl_flags(self, ca: Path | str | None = None) -> list[str]:
        return [
            "--bootstrap-servers", self.listeners.ssl_bootstrap,
            "--security-protocol", "SSL",
            "--ssl-cafile", str(ca or self.ca),
        ]  # fmt: skip

    def sasl_flags(self, password: str = PASSWORD) -> list[str]:
        return [
            "--bootstrap-servers", self.listeners.sasl_ssl_bootstrap,
            "--security-protocol", "SASL_SSL",
            "--ssl-cafile", self.ca,
            "--sasl-mechanism", "PLAIN",
            "--sasl-username", USER,
            "--sasl-password", password,
        ]  # fmt: skip

    def sasl_client_options(self) -> dict[str, str]:
        """The same settings as kafka-python keyword arguments."""
        return {
            "bootstrap_servers": self.listeners.sasl_ssl_bootstrap,
            "security_protocol": "SASL_SSL",
            "ssl_cafile": self.ca,
            "sasl_mechanism": "PLAIN",
            "sasl_plain_username": USER,
            "sasl_plain_password": PASSWORD,
        }


def free_ports(count: int) -> list[int]:
    """``count`` different ports free on the loopback address (held together while chosen)."""
    with contextlib.ExitStack() as held:
        probes = [held.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind((broker.HOST, 0))
        return [int(probe.getsockname()[1]) for probe in probes]


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """A broker with SSL and SASL_SSL listeners on free ports, started once for the module."""
    for tool in ("java", "mvn", "openssl"):
        if shutil.which(tool) is None:
            pytest.skip(f"a broker with TLS listeners needs {tool}")
    from support.traffic import write_pcap
    from test_broker import free_port_pair

    root = tmp_path_factory.mktemp("secure-kafka")
    state_dir = root / "kafka"
    shared = broker.BrokerPaths(Path(broker.DEFAULT_STATE_DIR).expanduser())
    cached = broker.cached_jars(shared, broker.DEFAULT_VERSION)
    if cached is not None:  # the jars the shared broker fetched, not a second download
        (state_dir / "jars").mkdir(parents=True)
        (state_dir / "jars" / broker.DEFAULT_VERSION).symlink_to(cached)

    port = free_port_pair()
    ssl_port, sasl_ssl_port = [p for p in free_ports(4) if p not in (port, port + 1)][:2]
    listeners = broker_tls.SecureListeners(
        ssl_port=ssl_port,
        sasl_ssl_port=sasl_ssl_port,
        certificates=broker_tls.make_certificates(root / "tls"),
        plain_users={USER: PASSWORD},
    )
    stranger = broker_tls.make_certificates(root / "stranger").ca_certificate
    extra = broker_tls.secure_listener_settings(port, listeners)
    broker.start_broker(state_dir, port, timeout=120, extra_settings=extra)
    try:
        yield SecureBroker(
            plaintext=broker.bootstrap_address(port),
            listeners=listeners,
            stranger_ca=stranger,
            pcap=write_pcap(root / "traffic.pcap", PACKETS),
        )
    finally:
        broker.stop_broker(state_dir)


def unique(stem: str) -> str:
    return f"test-security-{stem}-{uuid.uuid4().hex[:10]}"


def run_antinex(*argv: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **QUIET_TF, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [ANTINEX, "--log-format", "json", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def logged(text: str, name: str) -> list[dict[str, Any]]:
    """The JSON log events called ``name`` in ``text``."""
    found = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("event") == name:
                found.append(entry)
    return found


def replay(secure_broker: SecureBroker, topic: str, flags: list[str]) -> dict[str, Any]:
    """Replay the module's pcap into ``topic``; return the sensor's ``sensor_stopped`` event."""
    sensor = run_antinex(
        "sensor", "--pcap", str(secure_broker.pcap), "--packets-topic", topic,
        "--partitions", "2", "--metrics-port", "0", *flags,
    )  # fmt: skip
    assert 0 == sensor.returncode, sensor.stderr[-3000:]
    (stopped,) = logged(sensor.stderr, "sensor_stopped")
    return stopped


def scored_total(metrics_port: int) -> float:
    """The processor's records scored, over both verdicts; 0 while its endpoint is not up."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return 0.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "antinex_processor_records_scored_total"
    )


def records_in_topic(options: dict[str, str], topic: str, expected: int) -> int:
    """Records in the batch messages of ``topic`` (each says how many in its header), read with
    ``options`` until ``expected`` were seen or 30 s passed."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(enable_auto_commit=False, **options)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        seen = 0
        deadline = time.monotonic() + 30
        while seen < expected and time.monotonic() < deadline:
            for message in (m for batch in consumer.poll(timeout_ms=500).values() for m in batch):
                seen += int(dict(message.headers)["records"])
        return seen
    finally:
        consumer.close()


class TestTlsListener:
    def test_sensor_over_tls_feeds_a_processor_over_tls_that_scores_every_record(
        self, secure_broker: SecureBroker, tmp_path: Path
    ) -> None:
        """Every record the sensor publishes over SSL is scored by a processor reading over
        SSL, and the alerts tail over SASL_SSL shows every alert the processor published."""
        packets, alerts = unique("packets"), unique("alerts")
        stopped = replay(secure_broker, packets, secure_broker.ssl_flags())
        assert PACKETS == stopped["captured"]
        assert stopped["decoded"] == stopped["published"]

        metrics_port = free_ports(1)[0]
        log_path = tmp_path / "processor.log"
        command = [
            ANTINEX, "--log-format", "json", "process", "--model", str(DEFAULT_MODEL),
            "--packets-topic", packets, "--alerts-topic", alerts,
            "--dead-letter-topic", unique("dead"), "--group-id", unique("group"),
            "--state-dir", str(tmp_path / "state"), "--metrics-port", str(metrics_port),
            *secure_broker.ssl_flags(),
        ]  # fmt: skip
        env = {**os.environ, **QUIET_TF, "PYTHONUNBUFFERED": "1"}
        with log_path.open("w") as log:
            processor = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 120
            while scored_total(metrics_port) < stopped["published"]:
                assert processor.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.5)
            processor.send_signal(signal.SIGTERM)
            assert 0 == processor.wait(timeout=60), log_path.read_text()[-3000:]
        finally:
            if processor.poll() is None:
                processor.kill()
                processor.wait(timeout=30)
        (totals,) = logged(log_path.read_text(), "processor_stopped")
        assert stopped["published"] == totals["scored"]

        tail = run_antinex(
            "alerts", "--alerts-topic", alerts, "--from-beginning", "--json",
            "--idle-exit-s", "3", *secure_broker.sasl_flags(),
        )  # fmt: skip
        assert 0 == tail.returncode, tail.stderr[-3000:]
        assert totals["alerts"] == len(tail.stdout.splitlines())


class TestSaslSslListener:
    def test_sensor_with_the_right_password_publishes_every_record(
        self, secure_broker: SecureBroker
    ) -> None:
        """Records published over SASL_SSL as user ``sensor`` read back, all of them, over
        SASL_SSL."""
        topic = unique("sasl")
        stopped = replay(secure_broker, topic, secure_broker.sasl_flags())

        assert stopped["decoded"] == stopped["published"]
        options = secure_broker.sasl_client_options()
        assert stopped["published"] == records_in_topic(options, topic, stopped["published"])

    def test_alerts_tail_with_the_right_password_shows_what_was_published(
        self, secure_broker: SecureBroker
    ) -> None:
        """Alert documents written over SASL_SSL come out of ``antinex alerts`` over SASL_SSL."""
        from kafka import KafkaProducer

        topic = unique("sasl-alerts")
        documents = [{"rule": {"name": "syn_scan"}, "antinex": {"score": s}} for s in (0.9, 0.8)]
        producer = KafkaProducer(acks="all", **secure_broker.sasl_client_options())
        try:
            for document in documents:
                producer.send(topic, json.dumps(document).encode())
            producer.flush(timeout=30)
        finally:
            producer.close()

        tail = run_antinex(
            "alerts", "--alerts-topic", topic, "--from-beginning", "--json", "--limit", "2",
            *secure_broker.sasl_flags(),
        )  # fmt: skip

        assert 0 == tail.returncode, tail.stderr[-3000:]
        assert documents == [json.loads(line) for line in tail.stdout.splitlines()]


# What each command needs besides the broker flags, to get as far as connecting.
COMMANDS = {
    "sensor": lambda b: ["sensor", "--pcap", str(b.pcap), "--metrics-port", "0"],
    "process": lambda b: ["process", "--model", str(DEFAULT_MODEL), "--metrics-port", "0"],
    "alerts": lambda b: ["alerts", "--idle-exit-s", "1"],
}


def assert_one_sentence(result: subprocess.CompletedProcess[str], *named: str) -> None:
    """Exit 2 with one ``antinex:`` line on stderr that names each of ``named``, no traceback."""
    assert 2 == result.returncode, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    messages = [line for line in result.stderr.splitlines() if line.startswith("antinex: ")]
    assert 1 == len(messages), result.stderr[-3000:]
    for text in named:
        assert text in messages[0]


class TestRefusals:
    @pytest.mark.parametrize("command", sorted(COMMANDS))
    def test_a_wrong_password_ends_in_one_sentence_naming_the_flags(
        self, secure_broker: SecureBroker, command: str
    ) -> None:
        """The broker's refusal of the SASL credentials is reported at once, not retried."""
        started = time.monotonic()
        result = run_antinex(
            *COMMANDS[command](secure_broker), *secure_broker.sasl_flags("wrong password")
        )

        assert_one_sentence(result, "refused SASL user 'sensor'", "--sasl-password")
        assert time.monotonic() - started < 60

    # The processor makes the same check as the others, after loading its model (seconds), so
    # the wrong password alone tries it.
    @pytest.mark.parametrize("command", ["alerts", "sensor"])
    def test_a_wrong_ca_ends_in_one_sentence_naming_the_file(
        self, secure_broker: SecureBroker, command: str
    ) -> None:
        """A broker certificate that ``--ssl-cafile`` does not vouch for is reported at once."""
        stranger = str(secure_broker.stranger_ca)
        result = run_antinex(*COMMANDS[command](secure_broker), *secure_broker.ssl_flags(stranger))

        assert_one_sentence(result, f"--ssl-cafile {stranger} does not vouch for")

    def test_a_missing_ca_file_ends_in_one_sentence_naming_it(
        self, secure_broker: SecureBroker, tmp_path: Path
    ) -> None:
        """A ``--ssl-cafile`` that does not exist is named, before any connection is tried."""
        missing = str(tmp_path / "absent.pem")
        result = run_antinex(*COMMANDS["alerts"](secure_broker), *secure_broker.ssl_flags(missing))

        assert_one_sentence(result, f"--ssl-cafile {missing} cannot be used")
